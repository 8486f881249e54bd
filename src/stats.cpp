// Cumulative statistics per guard: see stats.hpp for the design. This file
// counts: the settings, the shared table and how a backend reaches it, the
// pending counters and their flush at transaction end. The SQL-callable
// functions that show, reset and prune the table are stats_functions.cpp.
//
// The shared table. One LWLock guards it; a backend takes it once per
// transaction that counted something (exclusive, to add its counts), and a
// reader of raceguard.stats takes it shared per row it shows. Entries sit
// in a dense array (entries[0, count)); an open-addressing index of int32
// buckets (linear probing, at most half full) finds an entry by its key.
// A new key past the capacity takes the place of the least recently
// updated entry (a scan of the array, only then).
//
// Entries of dropped guards. The DROPs a sql_drop event trigger sees are
// forgotten through it (stats_functions.cpp); an object access hook sees
// every other deletion too, in a backend that has raceguard loaded and the
// table attached: clone triggers removed by DETACH PARTITION, temporary
// tables at session end or by DISCARD TEMP, ON COMMIT DROP. Both forget at
// commit. What neither sees (a DETACH in a session that never loaded
// raceguard, a DROP committed by COMMIT PREPARED, a dropped database) is a
// leftover, reclaimed when room is needed: see reclaim_leftovers().
//
// Everything here that runs at transaction end or under the LWLock is
// plain C-side code: no allocation, nothing that can ereport.
#include "stats_table.hpp"

#include "compat.hpp"
#include "running_balance_shared.hpp"

extern "C" {
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "common/hashfn.h"
#include "storage/dsm.h"
#include "storage/lwlock.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
}

#include <cstring>

namespace raceguard::stats {

uint64 pending_generation = 1;

Directory* directory = nullptr;
SharedTable* shared = nullptr;  // set once the table is reachable; the lock is directory->lock

namespace {

// ---- settings ---------------------------------------------------------------

bool track_stats = true;
int max_tracked_guards = 1000;

void track_stats_changed(bool, void*) {
    // Cached pointers to pending counters (or to the sink) are re-decided.
    ++pending_generation;
}

// ---- the shared table -------------------------------------------------------

bool same_key(const Key& a, const Key& b) {
    return a.database == b.database && a.object == b.object && a.kind == b.kind;
}

uint32 key_hash(const Key& key) {
    return hash_bytes(reinterpret_cast<const unsigned char*>(&key), sizeof(Key));
}

// The shared memory's name carries its layout's version (Directory,
// SharedTable, SharedEntry, Counters). From PostgreSQL 17 on, the DSM
// registry finds the segment by name in the running server, where a library
// of another raceguard version may have made it already (a package updated
// under a running server: backends started before keep the old library); a
// library must never attach to a segment laid out by another. 1.2 and 1.3
// named it "raceguard_stats" (7 counter slots, no reclaim counters); change
// the version with any change of layout.
constexpr const char* SEGMENT_NAME = "raceguard_stats.layout2";
constexpr const char* TRANCHE_NAME = "raceguard_stats";
static_assert(sizeof(SharedTable) == 40 && sizeof(SharedEntry) == 104 && COUNTER_SLOTS == 8,
              "the statistics' shared layout changed: give SEGMENT_NAME a new version, then update this check");

uint32 bucket_count_for(uint32 capacity) {
    uint32 buckets = 16;
    while (buckets < 2 * capacity)
        buckets <<= 1;
    return buckets;
}

Size table_size_for(uint32 capacity) {
    return MAXALIGN(sizeof(SharedTable)) + MAXALIGN(sizeof(SharedEntry) * capacity) +
           sizeof(int32) * bucket_count_for(capacity);
}

Size table_size() { return table_size_for(static_cast<uint32>(max_tracked_guards)); }

int32* buckets_of(SharedTable* table) {
    return reinterpret_cast<int32*>(reinterpret_cast<char*>(entries_of(table)) +
                                    MAXALIGN(sizeof(SharedEntry) * table->capacity));
}

// Made once per server start, by the first backend (17+) or the postmaster.
void initialize_table(void* memory) {
    auto* table = static_cast<SharedTable*>(memory);
    table->capacity = static_cast<uint32>(max_tracked_guards);
    table->count = 0;
    table->bucket_mask = bucket_count_for(table->capacity) - 1;
    table->clock = 0;
    table->added = 0;
    table->reclaim_at = 0;
    int32* buckets = buckets_of(table);
    for (uint32 i = 0; i <= table->bucket_mask; ++i)
        buckets[i] = -1;
}

// Removes entry INDEX; the array's last entry takes its place. With the
// lock held exclusively.
void remove_entry(SharedTable* table, int32 index) {
    SharedEntry* entries = entries_of(table);
    int32* buckets = buckets_of(table);
    const uint32 mask = table->bucket_mask;
    // Its bucket, emptied by backward shift: every later entry of the
    // probe run that may move up does.
    uint32 hole = key_hash(entries[index].key) & mask;
    while (buckets[hole] != index)
        hole = (hole + 1) & mask;
    buckets[hole] = -1;
    for (uint32 next = (hole + 1) & mask; buckets[next] >= 0; next = (next + 1) & mask) {
        const uint32 home = key_hash(entries[buckets[next]].key) & mask;
        // Stays if its home lies cyclically in (hole, next].
        const bool stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
        if (stays)
            continue;
        buckets[hole] = buckets[next];
        buckets[next] = -1;
        hole = next;
    }
    const int32 last = static_cast<int32>(table->count) - 1;
    if (index != last) {
        uint32 b = key_hash(entries[last].key) & mask;
        while (buckets[b] != last)
            b = (b + 1) & mask;
        buckets[b] = index;
        entries[index] = entries[last];
    }
    --table->count;
}

// A new, zeroed entry for KEY; the least recently updated entry makes room
// when the table is full. With the lock held exclusively.
int32 add_entry(SharedTable* table, const Key& key, Guard guard, TimestampTz now) {
    SharedEntry* entries = entries_of(table);
    if (table->count >= table->capacity) {
        int32 oldest = 0;
        for (uint32 i = 1; i < table->count; ++i)
            if (entries[i].stamp < entries[oldest].stamp)
                oldest = static_cast<int32>(i);
        remove_entry(table, oldest);
    }
    const int32 index = static_cast<int32>(table->count++);
    ++table->added;
    SharedEntry& entry = entries[index];
    std::memset(&entry, 0, sizeof(entry));
    entry.key = key;
    entry.guard = guard;
    entry.since = now;
    int32* buckets = buckets_of(table);
    uint32 b = key_hash(key) & table->bucket_mask;
    while (buckets[b] >= 0)
        b = (b + 1) & table->bucket_mask;
    buckets[b] = index;
    return index;
}

// ---- attaching --------------------------------------------------------------

shmem_startup_hook_type previous_startup_hook = nullptr;

void initialize_directory(void* memory) {
    auto* made = static_cast<Directory*>(memory);
    made->tranche = LWLockNewTrancheId();
    LWLockInitialize(&made->lock, made->tranche);
    made->table = DSM_HANDLE_INVALID;
}

Size preloaded_size() { return MAXALIGN(sizeof(Directory)) + table_size(); }

// Before 17, with raceguard preloaded: the table in the main shared memory.
void startup_preloaded() {
    if (previous_startup_hook != nullptr)
        previous_startup_hook();
    char* memory = static_cast<char*>(compat::preloaded_struct(SEGMENT_NAME, preloaded_size(), [](void* made) {
        initialize_directory(made);
        initialize_table(static_cast<char*>(made) + MAXALIGN(sizeof(Directory)));
    }));
    directory = reinterpret_cast<Directory*>(memory);
    shared = reinterpret_cast<SharedTable*>(memory + MAXALIGN(sizeof(Directory)));
    LWLockRegisterTranche(directory->tranche, TRANCHE_NAME);
}

bool gave_up = false;

}  // namespace

void attach_or_give_up(bool make_table) {
    if (shared != nullptr || gave_up || !compat::has_dsm_registry)
        return;
    MemoryContext caller_context = CurrentMemoryContext;
    ResourceOwner caller_owner = CurrentResourceOwner;
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(caller_context);
    PG_TRY();
    {
        attach(make_table);
        ReleaseCurrentSubTransaction();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(caller_context);
        ErrorData* error = CopyErrorData();
        FlushErrorState();
        RollbackAndReleaseCurrentSubTransaction();
        gave_up = true;
        shared = nullptr;
        ereport(WARNING, (errmsg("raceguard statistics are off in this session: %s", error->message)));
        FreeErrorData(error);
    }
    PG_END_TRY();
    MemoryContextSwitchTo(caller_context);
    CurrentResourceOwner = caller_owner;
}

namespace {

// ---- pending counters -------------------------------------------------------

// running_balance's last append, counted once its insert is seen: the
// table's statistics entry (compat::table_statistics) and what it had
// counted before the row's insert. `table` is null when there is none.
struct UnconfirmedAppend {
    const PgStat_TableStatus* table;
    compat::AttemptedWrites before;
};

struct PendingEntry {
    Key key;  // hash key
    Guard guard;
    Counters counters;
    UnconfirmedAppend unconfirmed;
};

PendingEntry* pending_entry_of(Counters* counters) {
    return reinterpret_cast<PendingEntry*>(reinterpret_cast<char*>(counters) - offsetof(PendingEntry, counters));
}

// The unconfirmed append's row was inserted if the table counted an insert
// since, and more inserts than deletes (an ON CONFLICT that found its
// conflict after inserting deletes the row again). Every other insert into
// the table fires the guard, which settles first; only rows written around
// it (the trigger disabled) could be taken for this one.
void settle_append(PendingEntry* item) {
    if (item->unconfirmed.table == nullptr)
        return;
    const compat::AttemptedWrites now = compat::attempted_writes(item->unconfirmed.table);
    const compat::AttemptedWrites& before = item->unconfirmed.before;
    if (now.inserted - before.inserted > now.deleted - before.deleted)
        ++item->counters.n[RB_APPENDS];
    item->unconfirmed.table = nullptr;
}

HTAB* pending = nullptr;
Counters sink;  // what is counted while nothing is collected; never read

// Dropped triggers and tables whose entries go when the drop commits, each
// with the subtransaction level of its DROP: a rolled-back savepoint takes
// its drops back with it.
struct Forgotten {
    Key key;
    int level;
};
Forgotten* forgotten = nullptr;
int forgotten_count = 0;
int forgotten_capacity = 0;
constexpr int FORGOTTEN_KEPT = 1024;  // a bigger list is freed at transaction end

constexpr long PENDING_KEPT = 64;  // a bigger table is freed after its flush

// Adds the pending counters to the shared table and forgets them. At
// commit, the counts of the guards this transaction dropped are left out:
// their entries go at this commit too, and adding their counts afterwards
// would make them again.
void flush_pending(bool committed) {
    if (pending == nullptr)
        return;
    if (hash_get_num_entries(pending) == 0)
        return;
    ++pending_generation;
    if (committed)
        for (int i = 0; i < forgotten_count; ++i)
            hash_search(pending, &forgotten[i].key, HASH_REMOVE, nullptr);
    HASH_SEQ_STATUS scan;
    // The last appends' inserts are known by now (this runs before
    // PostgreSQL closes its own statistics of the transaction).
    hash_seq_init(&scan, pending);
    while (auto* item = static_cast<PendingEntry*>(hash_seq_search(&scan)))
        settle_append(item);
    if (shared != nullptr) {
        const TimestampTz now = GetCurrentTimestamp();
        LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
        SharedEntry* entries = entries_of(shared);
        hash_seq_init(&scan, pending);
        while (auto* item = static_cast<PendingEntry*>(hash_seq_search(&scan))) {
            int32 index = find_entry(shared, item->key);
            if (index >= 0 && entries[index].guard != item->guard) {
                remove_entry(shared, index);  // an OID reused by another kind of guard
                index = -1;
            }
            if (index < 0)
                index = add_entry(shared, item->key, item->guard, now);
            SharedEntry& entry = entries[index];
            for (int i = 0; i < COUNTER_SLOTS; ++i)
                entry.counters.n[i] += item->counters.n[i];
            if (item->counters.wait_max_us > entry.counters.wait_max_us)
                entry.counters.wait_max_us = item->counters.wait_max_us;
            entry.stamp = ++shared->clock;
        }
        LWLockRelease(&directory->lock);
    }
    if (hash_get_num_entries(pending) > PENDING_KEPT) {
        hash_destroy(pending);
        pending = nullptr;
        return;
    }
    hash_seq_init(&scan, pending);
    while (auto* item = static_cast<PendingEntry*>(hash_seq_search(&scan)))
        hash_search(pending, &item->key, HASH_REMOVE, nullptr);
}

void forget_committed_drops() {
    if (forgotten_count == 0 || shared == nullptr)
        return;
    LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
    SharedEntry* entries = entries_of(shared);
    for (int i = 0; i < forgotten_count; ++i) {
        const int32 index = find_entry(shared, forgotten[i].key);
        if (index >= 0 && same_key(entries[index].key, forgotten[i].key))
            remove_entry(shared, index);
    }
    LWLockRelease(&directory->lock);
}

// A prepared transaction's DROPs may still be rolled back (ROLLBACK
// PREPARED), and a module hears nothing of COMMIT PREPARED, which may run
// in another session: their guards' entries stay, with this transaction's
// counts, and become leftovers if the DROP commits. A reclaim is due from
// now (one that runs before COMMIT PREPARED still sees them and keeps
// them; the next is due later). Under the lock, taken only if this
// transaction dropped something.
void expect_leftovers() {
    if (forgotten_count == 0 || shared == nullptr)
        return;
    LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
    shared->reclaim_at = shared->added;
    LWLockRelease(&directory->lock);
}

void at_transaction_end(XactEvent event, void*) {
    bool committed = false;
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
            forget_committed_drops();
            committed = true;
            break;
        case XACT_EVENT_PREPARE:
            expect_leftovers();
            break;
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
            break;
        default:
            return;
    }
    flush_pending(committed);
    forgotten_count = 0;
    if (forgotten_capacity > FORGOTTEN_KEPT) {
        pfree(forgotten);
        forgotten = nullptr;
        forgotten_capacity = 0;
    }
}

// ---- leftover entries ---------------------------------------------------

// Whether the trigger or table of KEY exists, or still may: its catalog row
// seen through a dirty snapshot, which keeps a row whose creation has not
// aborted and whose deletion has not committed (another transaction's DROP
// in progress, or prepared, may still be rolled back). C-side.
bool may_exist(Relation catalog, Oid index, AttrNumber oid_column, Oid object) {
    ScanKeyData key;
    ScanKeyInit(&key, oid_column, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(object));
    SnapshotData dirty;
    InitDirtySnapshot(dirty);
    SysScanDesc scan = systable_beginscan(catalog, index, true, &dirty, 1, &key);
    const bool found = HeapTupleIsValid(systable_getnext(scan));
    systable_endscan(scan);
    return found;
}

bool dropped_in_this_transaction(const Key& key) {
    for (int i = 0; i < forgotten_count; ++i)
        if (same_key(forgotten[i].key, key))
            return true;
    return false;
}

// Leftover entries (see the top of this file) take room from live guards;
// they go before a live guard's entry is made to. When the table is full,
// the backend that is about to count a guard not counted yet in its
// transaction removes the entries of its database whose trigger or table no
// longer exists, a catalog lookup each, outside the lock. At most once per
// a quarter of the capacity of new entries (table-wide): a table full of
// live guards costs at most four lookups per new entry, spread over time.
// Other databases' leftovers wait for their own backends, or go as the
// least recently updated. C-side; reads the catalog as the guard does,
// allocates only before taking the lock.
void reclaim_leftovers() {
    const uint32 capacity = shared->capacity;
    auto* keys = static_cast<Key*>(palloc(sizeof(Key) * capacity));
    uint32 copied = 0;
    LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
    const bool due = shared->count >= shared->capacity && shared->added >= shared->reclaim_at;
    if (due) {
        shared->reclaim_at = shared->added + (capacity >= 8 ? capacity / 4 : 2);
        const SharedEntry* entries = entries_of(shared);
        for (uint32 i = 0; i < shared->count; ++i)
            if (entries[i].key.database == MyDatabaseId)
                keys[copied++] = entries[i].key;
    }
    LWLockRelease(&directory->lock);
    if (!due) {
        pfree(keys);
        return;
    }
    // The dirty snapshot reads the catalog as it is now, not as this
    // transaction's catalog snapshot saw it: an entry is made only once its
    // creator's transaction has ended, so its trigger is found.
    Relation triggers = table_open(TriggerRelationId, AccessShareLock);
    Relation classes = table_open(RelationRelationId, AccessShareLock);
    uint32 dead = 0;
    for (uint32 i = 0; i < copied; ++i) {
        // This transaction's own DROPs are forgotten at its commit, and
        // kept if it rolls back.
        if (dropped_in_this_transaction(keys[i]))
            continue;
        const bool exists = keys[i].kind == Kind::trigger
                                ? may_exist(triggers, TriggerOidIndexId, Anum_pg_trigger_oid, keys[i].object)
                                : may_exist(classes, ClassOidIndexId, Anum_pg_class_oid, keys[i].object);
        if (!exists)
            keys[dead++] = keys[i];
    }
    table_close(classes, AccessShareLock);
    table_close(triggers, AccessShareLock);
    if (dead > 0) {
        LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
        for (uint32 i = 0; i < dead; ++i) {
            const int32 index = find_entry(shared, keys[i]);
            if (index >= 0)
                remove_entry(shared, index);
        }
        LWLockRelease(&directory->lock);
    }
    pfree(keys);
}

// ---- the object access hook -----------------------------------------------

object_access_hook_type previous_object_access_hook = nullptr;

// Every deletion of a trigger or relation in this backend, also those no
// event trigger sees: its entry goes when the deletion commits. Runs inside
// the DROP (or DETACH, or session exit), so it must not fail: it only
// notes the key, and forget_at_commit() drops a key it has no memory for.
void on_object_access(ObjectAccessType access, Oid class_id, Oid object_id, int sub_id, void* argument) {
    if (previous_object_access_hook != nullptr)
        previous_object_access_hook(access, class_id, object_id, sub_id, argument);
    // A trigger created, altered (ALTER TABLE ... DISABLE TRIGGER) or
    // dropped: the transaction may write around a guard until it ends
    // (running_balance_shared.hpp).
    if (class_id == TriggerRelationId && (access == OAT_POST_CREATE || access == OAT_POST_ALTER || access == OAT_DROP))
        shared_last_entries::note_possible_bypass();
    // A TRUNCATE removes a ledger's entries without a row trigger: any
    // confirmed last entry of its groups is gone with them.
    if (class_id == RelationRelationId && access == OAT_TRUNCATE)
        shared_last_entries::note_possible_bypass();
    // A column altered (ALTER TABLE ... ALTER COLUMN ... TYPE ... USING)
    // can rewrite a ledger's balances, seqs or groups without a row trigger.
    if (class_id == RelationRelationId && access == OAT_POST_ALTER && sub_id != 0)
        shared_last_entries::note_possible_bypass();
    if (access != OAT_DROP || sub_id != 0 || shared == nullptr)
        return;
    if (class_id == TriggerRelationId)
        forget_at_commit(Key{MyDatabaseId, object_id, Kind::trigger});
    else if (class_id == RelationRelationId)
        forget_at_commit(Key{MyDatabaseId, object_id, Kind::claim_table});
}

// C-side: the pending counters of KEY, or the sink.
Counters* pending_counters(const Key& key, Guard guard) {
    attach_or_give_up(true);
    if (!track_stats || shared == nullptr)
        return &sink;
    ensure_callback();
    if (pending == nullptr) {
        HASHCTL control{};
        control.keysize = sizeof(Key);
        control.entrysize = sizeof(PendingEntry);
        control.hcxt = TopMemoryContext;
        pending = hash_create("raceguard pending statistics", 16, &control, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    }
    bool found = false;
    auto* item = static_cast<PendingEntry*>(hash_search(pending, &key, HASH_ENTER, &found));
    if (!found) {
        item->guard = guard;
        std::memset(&item->counters, 0, sizeof(item->counters));
        item->unconfirmed.table = nullptr;
        // Unlocked reads, checked again under the lock: a stale value only
        // moves the reclaim to the next guard counted.
        if (shared->count >= shared->capacity && shared->added >= shared->reclaim_at)
            reclaim_leftovers();
    }
    return &item->counters;
}

}  // namespace

// ---- what the SQL-callable functions use (stats_table.hpp) ------------------

SharedEntry* entries_of(SharedTable* table) {
    return reinterpret_cast<SharedEntry*>(reinterpret_cast<char*>(table) + MAXALIGN(sizeof(SharedTable)));
}

int32 find_entry(SharedTable* table, const Key& key) {
    SharedEntry* entries = entries_of(table);
    int32* buckets = buckets_of(table);
    for (uint32 b = key_hash(key) & table->bucket_mask;; b = (b + 1) & table->bucket_mask) {
        const int32 index = buckets[b];
        if (index < 0)
            return -1;
        if (same_key(entries[index].key, key))
            return index;
    }
}

void attach(bool make_table) {
    if (shared != nullptr || !compat::has_dsm_registry)
        return;
    bool found = false;
    directory = static_cast<Directory*>(
        compat::named_segment(SEGMENT_NAME, sizeof(Directory), initialize_directory, &found));
    if (directory == nullptr)
        return;
    LWLockRegisterTranche(directory->tranche, TRANCHE_NAME);
    LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
    dsm_segment* segment = nullptr;
    if (directory->table == DSM_HANDLE_INVALID) {
        if (!make_table) {
            LWLockRelease(&directory->lock);
            return;
        }
        segment = dsm_create(table_size(), 0);
        dsm_pin_segment(segment);  // lives until the server stops
        initialize_table(dsm_segment_address(segment));
        directory->table = dsm_segment_handle(segment);
    } else {
        segment = dsm_attach(directory->table);
        if (segment == nullptr)
            elog(ERROR, "cannot attach raceguard's statistics segment");
    }
    dsm_pin_mapping(segment);  // mapped until the backend exits
    LWLockRelease(&directory->lock);
    shared = static_cast<SharedTable*>(dsm_segment_address(segment));
}

// A savepoint rolled back forgets the drops made inside it; one released
// hands them to its parent, whose own rollback may still take them back.
void at_subtransaction_end(SubXactEvent event, SubTransactionId, SubTransactionId, void*) {
    if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
        return;
    const int level = GetCurrentTransactionNestLevel();
    int kept = 0;
    for (int i = 0; i < forgotten_count; ++i) {
        if (forgotten[i].level >= level) {
            if (event == SUBXACT_EVENT_ABORT_SUB)
                continue;
            forgotten[i].level = level - 1;
        }
        forgotten[kept++] = forgotten[i];
    }
    forgotten_count = kept;
}

void ensure_callback() {
    static bool registered = false;
    if (registered)
        return;
    RegisterXactCallback(at_transaction_end, nullptr);
    RegisterSubXactCallback(at_subtransaction_end, nullptr);
    registered = true;
}

void forget_at_commit(const Key& key) {
    if (forgotten_count == forgotten_capacity) {
        const int capacity = forgotten_capacity == 0 ? 16 : forgotten_capacity * 2;
        auto* grown = static_cast<Forgotten*>(MemoryContextAllocExtended(
            TopMemoryContext, sizeof(Forgotten) * capacity, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE));
        if (grown == nullptr)
            return;  // a leftover: reclaimed when room is needed
        if (forgotten != nullptr) {
            std::memcpy(grown, forgotten, sizeof(Forgotten) * forgotten_count);
            pfree(forgotten);
        }
        forgotten = grown;
        forgotten_capacity = capacity;
    }
    forgotten[forgotten_count++] = Forgotten{key, GetCurrentTransactionNestLevel()};
}

Counters* trigger_counters_slow(TriggerCacheEntry* entry, Guard guard) {
    const Key key{MyDatabaseId, entry->trigger_oid, Kind::trigger};
    Counters* counters = pg_call([&] { return pending_counters(key, guard); });
    entry->counters = counters;
    entry->counters_generation = pending_generation;
    return counters;
}

void count_append(Counters* counters, Relation relation) {
    if (counters == &sink)
        return;
    PendingEntry* item = pending_entry_of(counters);
    settle_append(item);  // the previous append's insert is known now
    const PgStat_TableStatus* table = relation->pgstat_info;
    if (table == nullptr)
        table = pg_call([&] { return compat::table_statistics(relation); });
    if (table == nullptr) {
        ++counters->n[RB_APPENDS];  // PostgreSQL counts nothing here: counted as computed
        return;
    }
    item->unconfirmed = UnconfirmedAppend{table, compat::attempted_writes(table)};
}

Counters* claim_counters(Oid relid) {
    const Key key{MyDatabaseId, relid, Kind::claim_table};
    return pg_call([&] { return pending_counters(key, Guard::claim); });
}

void initialize() {
    DefineCustomBoolVariable("raceguard.track_stats", "Collects raceguard's statistics per guard (raceguard.stats).",
                             nullptr, &track_stats, true, PGC_SUSET, 0, nullptr, track_stats_changed, nullptr);
    DefineCustomIntVariable("raceguard.max_tracked_guards",
                            "How many guards (triggers, and tables claimed from) raceguard.stats tracks at most.",
                            "Past it, the least recently updated guard's statistics are dropped.",
                            &max_tracked_guards, 1000, 10, 1000000,
                            // Read when the table is made: at server start when preloaded (a setting
                            // defined later cannot be PGC_POSTMASTER), else at first use (17+).
                            process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP, 0,
                            nullptr, nullptr, nullptr);
    compat::reserve_setting_prefix("raceguard");
    // The callbacks that flush and forget, and the hook that sees every
    // deletion, from the start: a DROP must find nothing to register.
    ensure_callback();
    previous_object_access_hook = object_access_hook;
    object_access_hook = on_object_access;
    if (!compat::has_dsm_registry && process_shared_preload_libraries_in_progress) {
        compat::request_preload_memory(preloaded_size);
        previous_startup_hook = shmem_startup_hook;
        shmem_startup_hook = startup_preloaded;
    }
}

}  // namespace raceguard::stats
