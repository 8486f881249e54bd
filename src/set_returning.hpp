// What raceguard's set-returning functions share: the preamble of a
// function that returns its rows materialized (the claim functions,
// raceguard.guard_stats() and tracked_objects()). Kept out of the trigger
// plumbing: no trigger returns a set.
#pragma once

#include "pg.hpp"

extern "C" {
#include "utils/tuplestore.h"
}

namespace raceguard {

// A function's result set: the tuplestore to fill and its row type, both in
// the query's memory.
struct Materialized {
    Tuplestorestate* store;
    TupleDesc descriptor;
};

// C-side: checks that the caller accepts a materialized set (0A000 if not)
// and that the function returns a row type, then makes an empty result the
// function's; the caller adds the rows.
Materialized begin_materialized(FunctionCallInfo fcinfo);

}  // namespace raceguard
