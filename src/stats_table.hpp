// The statistics' shared table (stats.cpp keeps it), as the SQL-callable
// functions that read, reset and prune it (stats_functions.cpp) see it.
// Internal to the statistics.
#pragma once

#include "stats.hpp"

extern "C" {
#include "storage/dsm.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
}

namespace raceguard::stats {

enum class Kind : uint32 { trigger = 1, claim_table = 2 };

struct Key {
    Oid database;
    Oid object;  // a trigger's OID, or a table's (claims)
    Kind kind;
};

struct SharedEntry {
    Key key;
    Guard guard;
    uint64 stamp;       // the table's clock when last updated (least recently updated goes first)
    TimestampTz since;  // when counting started: made, or reset
    Counters counters;
};

// Where the table is, and its lock. 17+: the DSM registry's named segment,
// pointing at the table's own segment (made at first use, at the size the
// setting has then, so that the registry's segment never changes size);
// before, with raceguard preloaded, the table follows it in the main
// shared memory.
struct Directory {
    LWLock lock;
    int tranche;
    dsm_handle table;
};

struct SharedTable {
    uint32 capacity;
    uint32 count;
    uint32 bucket_mask;  // bucket_count - 1
    uint64 clock;
    uint64 added;       // entries made since the server started
    uint64 reclaim_at;  // `added` from which leftovers are looked for again when full
    // Then SharedEntry[capacity] and int32 buckets[bucket_mask + 1].
};

// Set once the table is reachable (attach()); the lock is directory->lock.
extern Directory* directory;
extern SharedTable* shared;

SharedEntry* entries_of(SharedTable* table);

// The entry of KEY, or -1. With the lock held.
int32 find_entry(SharedTable* table, const Key& key);

// C-side: finds the shared table (17+: makes it at first use, unless
// MAKE_TABLE is false); stays null where there is none. May ereport (17+:
// no room for a segment, say).
void attach(bool make_table = true);

// C-side: attach(), for the callers that statistics must never fail (the
// guards, a DROP): a failure turns the statistics off in this session with
// a WARNING instead. The error is caught the only way PostgreSQL allows, by
// rolling back a subtransaction around it.
void attach_or_give_up(bool make_table);

// Registers the callback that flushes the pending counters and forgets the
// dropped guards' entries at transaction end (once per backend).
void ensure_callback();

// C-side: KEY's entry goes when the transaction commits (a dropped trigger
// or table); a rollback keeps it. Never fails: a key it has no memory for
// stays a leftover (stats.cpp).
void forget_at_commit(const Key& key);

}  // namespace raceguard::stats
