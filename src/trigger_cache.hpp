// Per-trigger state, built once and reused for every row.
//
// A guard parses its arguments, resolves its columns and checks how it is
// fired once, into a plain-data state object. States live in a backend-local
// hash keyed by the trigger's OID (like ri_triggers.c's constraint cache),
// in memory that outlives queries; fn_extra points at the hash entry so that
// the per-row path is a pointer check. A relcache invalidation (ALTER TABLE,
// CREATE/DROP/ALTER TRIGGER, ATTACH PARTITION, ...) marks the entries stale,
// and the next row rebuilds them; at transaction end stale entries are freed
// (trigger_cache.cpp says why a pointer left in fn_extra stays harmless), so
// the cache holds only the guards in use.
#pragma once

#include "boundary.hpp"

namespace raceguard {

// Builds a guard's state for the fired trigger, allocating only in `into`.
// May throw Error (a bad definition) or PgError.
using StateBuilder = void* (*)(const TriggerData* trigger_data, MemoryContext into);

struct TriggerCacheEntry {
    Oid trigger_oid;  // hash key
    bool valid;
    StateBuilder builder;
    MemoryContext state_context;
    void* state;
    // The trigger's pending statistics (stats::Counters), valid while
    // counters_generation is stats::pending_generation (stats.hpp).
    void* counters;
    uint64 counters_generation;
};

void* trigger_state_slow(FunctionCallInfo fcinfo, const TriggerData* trigger_data, StateBuilder builder);

// The guard's state for this trigger; builds it on the first row after a
// change. The hot path does no lookup at all.
template <typename State>
inline const State* trigger_state(FunctionCallInfo fcinfo, const TriggerData* trigger_data,
                                  StateBuilder builder) {
    auto* entry = static_cast<const TriggerCacheEntry*>(fcinfo->flinfo->fn_extra);
    if (likely(entry != nullptr && entry->valid && entry->builder == builder &&
               entry->trigger_oid == trigger_data->tg_trigger->tgoid))
        return static_cast<const State*>(entry->state);
    return static_cast<const State*>(trigger_state_slow(fcinfo, trigger_data, builder));
}

// Another trigger's state (by OID), built for it as if it had fired, and
// cached like its own. Valid as long as the calling trigger's own state: an
// invalidation makes both stale, and the caller's rebuild asks again.
const void* other_trigger_state(Oid trigger_oid, StateBuilder builder);

// How many relcache invalidations this backend has processed: a state built
// when it was N is current while it still is N.
uint64 trigger_state_invalidations();

// Checks that the function was called by the trigger manager; 39P01 if not.
const TriggerData* require_trigger_call(FunctionCallInfo fcinfo, const char* guard);

}  // namespace raceguard
