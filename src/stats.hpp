// Cumulative statistics per guard (raceguard.stats), the way PostgreSQL's
// own pg_stat_* views work.
//
// Where the counts live:
//  - per row, in backend-local counters (Counters): a guard bumps plain
//    integers and takes no lock. A trigger's cache entry (fn_extra) points at
//    its pending counters, so the per-row cost is a compare and an increment;
//  - at transaction end (commit, abort, prepare: a rejected row's count
//    survives the error that rejects it) the pending counters of the
//    transaction are added to one table in shared memory, under one LWLock
//    taken once per transaction that counted anything, and forgotten;
//  - the shared table holds raceguard.max_tracked_guards entries. A new
//    entry takes a free one, or the least recently updated one's; an event
//    trigger and an object access hook forget the entries of dropped
//    triggers and tables when their drop commits, and entries of guards
//    that no longer exist and no drop forgot are reclaimed before a live
//    guard's entry gives way (stats.cpp). The table is fixed in size:
//    memory stays flat however many guards come and go.
// The shared memory is the DSM registry's on PostgreSQL 17 and later (no
// configuration); before, it exists only with raceguard in
// shared_preload_libraries, and without it nothing is counted and
// raceguard.stats says so. The guards work the same either way.
// Counters are lost on a crash or restart, like pg_stat_*.
#pragma once

#include "boundary.hpp"
#include "trigger_cache.hpp"

namespace raceguard::stats {

// What a row of raceguard.stats describes.
enum class Guard : uint8 { lock_version = 1, immutable_once_set, running_balance, claim, transition };

// One guard's counters. What each slot counts depends on the guard. They
// are laid out in shared memory too: a change here changes the layout
// (stats.cpp's SEGMENT_NAME).
constexpr int COUNTER_SLOTS = 8;
struct Counters {
    int64 n[COUNTER_SLOTS];
    int64 wait_max_us;  // running_balance: the longest wait for a group lock
};

// The slots, per guard.
enum LockVersionSlot { LV_ROWS, LV_BUMPED, LV_STALE, LV_BLIND, LV_OVERFLOW };
enum ImmutableOnceSetSlot { IO_ROWS, IO_VIOLATIONS };
// RB_RESTORED: entries the restore path kept as loaded, with the seq and
// balance they carried (raceguard.stats' entries_restored).
enum RunningBalanceSlot {
    RB_APPENDS,
    RB_WAITED,
    RB_WAIT_US,
    RB_SERIALIZATION,
    RB_MIN_BALANCE,
    RB_UPDATES,
    RB_DELETES,
    RB_RESTORED
};
// TR_REFUSED counts every refused row (undeclared edges and start states,
// duplicates, and the 40001 when the version read cannot be found);
// TR_DUPLICATES the duplicate transitions among them.
enum TransitionSlot { TR_ROWS, TR_REFUSED, TR_DUPLICATES };
enum ClaimSlot { CL_CALLS, CL_ROWS, CL_LEASES, CL_RELEASES, CL_RELEASES_FENCED, CL_EXTENDS, CL_EXTENDS_FENCED };

// Bumped whenever cached pointers to pending counters go stale (the
// pending counters were flushed, or raceguard.track_stats changed).
extern uint64 pending_generation;

Counters* trigger_counters_slow(TriggerCacheEntry* entry, Guard guard);

// The fired trigger's pending counters (call after trigger_state, which
// points fn_extra at the trigger's cache entry). When nothing is counted
// (raceguard.track_stats off, no shared memory), a sink nobody reads.
inline Counters* trigger_counters(FunctionCallInfo fcinfo, Guard guard) {
    auto* entry = static_cast<TriggerCacheEntry*>(fcinfo->flinfo->fn_extra);
    if (likely(entry->counters_generation == pending_generation))
        return static_cast<Counters*>(entry->counters);
    return trigger_counters_slow(entry, guard);
}

// running_balance: counts an append computed for a row of RELATION, before
// the row's insert. An INSERT ... ON CONFLICT or a later trigger may still
// skip the row, so it counts once the insert is seen: at the trigger's next
// append, or at transaction end (through PostgreSQL's own count of the
// table's inserts in this transaction; with track_counts off there is none,
// and the append counts at once).
void count_append(Counters* counters, Relation relation);

// The pending counters of the claim functions on table RELID.
Counters* claim_counters(Oid relid);

// _PG_init's part: settings, and the shared memory at preload time.
void initialize();

// SQL-callable.
Datum guard_stats(FunctionCallInfo fcinfo);
Datum transition_stats(FunctionCallInfo fcinfo);
Datum tracked_objects(FunctionCallInfo fcinfo);
Datum reset(FunctionCallInfo fcinfo);
Datum forget_dropped(FunctionCallInfo fcinfo);

}  // namespace raceguard::stats
