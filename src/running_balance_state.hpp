// The running_balance guard's per-trigger state: what its catalog side
// (running_balance_state.cpp) builds once per trigger, from the trigger's
// arguments, the table's columns and the chain index of each part, and what
// its per-row path (running_balance.cpp, running_balance_lookup.cpp) reads.
// Internal to the guard; plain data only, since it lives in the trigger
// cache's memory (trigger_cache.hpp).
#pragma once

#include "running_balance.hpp"

namespace raceguard {

enum class Family { integer, numeric };

// One group column as the firing relation stores it.
struct GroupColumn {
    AttrNumber attnum;
    Oid type;
    Oid collation;
    int16 type_length;
    bool by_value;
    bool hashable;
    FmgrInfo hash;  // the type's default hash function, for the lock key
};

// One group column as a scan key of one partition's index.
struct IndexKey {
    AttrNumber index_attno;
    int group_position;  // which group column supplies the value
    Oid collation;
    FmgrInfo equality;   // the index opfamily's "="
};

// A partition (or the ledger itself) and the index that finds its last row.
struct LedgerPart {
    Oid relid;
    Oid index_relid;
    AttrNumber balance_attnum;
    AttrNumber seq_attnum;
    AttrNumber seq_index_attno;
    bool seq_descending;    // the index keeps seq in descending order
    FmgrInfo seq_at_least;  // integer ">=" on seq, for a hinted scan
    IndexKey* keys;         // group_count entries
};

struct AppendTracker;  // running_balance_lookup.hpp

struct RunningBalanceState {
    // Columns of the firing relation.
    AttrNumber amount_attnum;
    AttrNumber balance_attnum;
    AttrNumber seq_attnum;
    Oid amount_type;
    Oid balance_type;
    Oid seq_type;
    int32 balance_typmod;
    Family family;
    int64 balance_min;  // integer family: the balance type's range
    int64 balance_max;
    int64 seq_max;
    // initial and min_balance, as int64 (integer family) or numeric.
    int64 initial_integer;
    int64 min_balance_integer;
    Datum initial_numeric;
    Datum min_balance_numeric;
    bool amount_may_round;  // numeric: the balance's typmod could round an amount
    bool has_min_balance;
    // Citus (SPEC §9): the citus extension is installed, and the firing
    // relation is a shard Citus's catalog knows (while Citus copies rows
    // into a new shard the catalog may not show it yet). A row that reaches
    // a new shard in the transaction that created it is a copy of an
    // existing entry, and is refused (running_balance.cpp).
    bool citus_installed;
    bool citus_shard;
    int group_count;
    GroupColumn* groups;
    Oid root_relid;  // the lock key: a partitioned ledger has one chain per group
    // The parts a lookup reads: every leaf of the ledger, or on a partition's
    // clone only the leaves its partition keys route the group to (just the
    // firing partition when every level is partitioned by group columns).
    int part_count;
    LedgerPart* parts;
    AppendTracker* tracker;  // written by the per-row path
    bool uses_hints;          // one part: hints are per part, and a lookup over many reads them all anyway
    // One part, the firing relation itself (a plain ledger, or a partition
    // every group of which lives in it), integer family, by-value groups.
    bool exact_cache_usable;
    // The shared last entries (running_balance_shared.hpp), keyed by the
    // trigger the user created. Every append that reads several parts,
    // when an entry can keep its groups, writes (or forgets) its group's
    // entry, and first tries the entry's leaf alone when the guard cannot
    // be skipped unnoticed: it fires on INSERT, UPDATE and DELETE, and
    // every leaf's clone is enabled (ENABLE or ENABLE ALWAYS). All appends
    // to a group read the same parts, so one that reads one part has
    // nothing to remember.
    Oid root_trigger_oid;
    bool writes_shared_entries;
    bool reads_shared_entries;
    // Takes a confirmed entry's balance and seq without reading the ledger,
    // and confirms its own appends at commit: the integer family, and a
    // guard nothing skips unnoticed (the conditions of reads_shared_entries,
    // on any number of parts).
    bool trusts_confirmed_entries;
    bool every_clone_enabled;          // of the ledger (the root trigger's state)
    uint64 layout;                     // the ledger's leaves and their clones, fingerprinted
    uint64 built_at_invalidation;      // trigger_state_invalidations() when the build began
};

// The StateBuilder (trigger_cache.hpp) of raceguard.running_balance().
void* build_running_balance_state(const TriggerData* trigger_data, MemoryContext into);

// A value of an integer column (smallint, integer, bigint) as int64, and back.
inline int64 integer_from_datum(Datum value, Oid type) {
    return type == INT2OID ? DatumGetInt16(value) : type == INT4OID ? DatumGetInt32(value) : DatumGetInt64(value);
}

inline Datum integer_to_datum(int64 value, Oid type) {
    return type == INT2OID   ? Int16GetDatum(static_cast<int16>(value))
           : type == INT4OID ? Int32GetDatum(static_cast<int32>(value))
                             : Int64GetDatum(value);
}

// A type's name with its modifier, e.g. numeric(12,2), for messages.
std::string type_name_with_typmod(Oid type, int32 typmod);

}  // namespace raceguard
