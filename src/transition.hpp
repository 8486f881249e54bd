// raceguard.transition(): a status that moves only along declared edges, and
// never twice along the same one (SPEC §8).
#pragma once

#include "guard_kind.hpp"

namespace raceguard {

inline constexpr const char* TRANSITION_GUARD = "raceguard.transition()";

// Everything the per-row path needs, resolved once per trigger. The states
// named in the edges are parsed once with the column type's input function;
// a state is an index into `states`, and NULL is the index state_count.
struct TransitionState {
    AttrNumber attnum;
    Oid type;
    Oid collation;
    bool compares_by_image;  // equal values are equal images (by-value types but floats)
    FmgrInfo equality;       // the type's = operator (typcache), for the others
    int state_count;
    Datum* states;
    // (state_count + 1)^2 flags: allowed[from * (state_count + 1) + to]
    // holds for a declared edge from>to (NULL counted as a state).
    bool* allowed;
    // state_count + 1 flags: an INSERT may start in the state, and an
    // UPDATE may move from NULL to it (>to).
    bool* starts;
    bool declares_null;  // NULL appears in an edge
    // On a partition: the trigger on the root partitioned table this one was
    // cloned from (a row moved between partitions is checked once, as an
    // UPDATE, and its INSERT into the other partition is recognized by it).
    Oid root_trigger;
};

// Validates the definition and builds the state in `into`; throws the error
// the trigger's first row would raise.
const TransitionState* build_transition(const TriggerDefinition& definition, MemoryContext into);

// check_guards()' own findings on a valid transition guard: declared states
// that no edge from a start state reaches, and a table without a primary key
// or replica identity index (see docs/transition.md).
std::vector<std::string> transition_warnings(const TriggerDefinition& definition, Relation relation);

Datum transition_trigger(FunctionCallInfo fcinfo);

extern const GuardKind TRANSITION_KIND;

}  // namespace raceguard
