// Cumulative statistics per guard: see stats.hpp for the design.
//
// The shared table. One LWLock guards it; a backend takes it once per
// transaction that counted something (exclusive, to add its counts), and a
// reader of raceguard.stats takes it shared per row it shows. Entries sit
// in a dense array (entries[0, count)); an open-addressing index of int32
// buckets (linear probing, at most half full) finds an entry by its key.
// A new key past the capacity takes the place of the least recently
// updated entry (a scan of the array, only then).
//
// Everything here that runs at transaction end or under the LWLock is
// plain C-side code: no allocation, nothing that can ereport.
#include "stats.hpp"

#include "compat.hpp"
#include "set_returning.hpp"

extern "C" {
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "storage/dsm.h"
#include "storage/lwlock.h"
#include "utils/guc.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
}

#include <cstring>
#include <string>

namespace raceguard::stats {

uint64 pending_generation = 1;

namespace {

// ---- settings ---------------------------------------------------------------

bool track_stats = true;
int max_tracked_guards = 1000;

void track_stats_changed(bool, void*) {
    // Cached pointers to pending counters (or to the sink) are re-decided.
    ++pending_generation;
}

// ---- the shared table -------------------------------------------------------

enum class Kind : uint32 { trigger = 1, claim_table = 2 };

struct Key {
    Oid database;
    Oid object;  // a trigger's OID, or a table's (claims)
    Kind kind;
};

bool same_key(const Key& a, const Key& b) {
    return a.database == b.database && a.object == b.object && a.kind == b.kind;
}

uint32 key_hash(const Key& key) {
    return hash_bytes(reinterpret_cast<const unsigned char*>(&key), sizeof(Key));
}

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
    // Then SharedEntry[capacity] and int32 buckets[bucket_mask + 1].
};

constexpr const char* SEGMENT_NAME = "raceguard_stats";
constexpr const char* TRANCHE_NAME = "raceguard_stats";

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

SharedEntry* entries_of(SharedTable* table) {
    return reinterpret_cast<SharedEntry*>(reinterpret_cast<char*>(table) + MAXALIGN(sizeof(SharedTable)));
}

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
    int32* buckets = buckets_of(table);
    for (uint32 i = 0; i <= table->bucket_mask; ++i)
        buckets[i] = -1;
}

// The entry of KEY, or -1. With the lock held.
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

Directory* directory = nullptr;
SharedTable* shared = nullptr;  // set once the table is reachable; the lock is directory->lock
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
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    char* memory = static_cast<char*>(ShmemInitStruct(SEGMENT_NAME, preloaded_size(), &found));
    if (!found) {
        initialize_directory(memory);
        initialize_table(memory + MAXALIGN(sizeof(Directory)));
    }
    LWLockRelease(AddinShmemInitLock);
    directory = reinterpret_cast<Directory*>(memory);
    shared = reinterpret_cast<SharedTable*>(memory + MAXALIGN(sizeof(Directory)));
    LWLockRegisterTranche(directory->tranche, TRANCHE_NAME);
}

// C-side: finds the shared table (17+: makes it at first use); stays null
// where there is none.
void attach() {
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

// C-side, for the guards' path: attach(), but a failure (no room for the
// segment, say) turns the statistics off in this session with a WARNING
// instead of failing the guarded statement. The error is caught the only
// way PostgreSQL allows, by rolling back a subtransaction around it.
bool gave_up = false;

void attach_or_give_up() {
    if (shared != nullptr || gave_up || !compat::has_dsm_registry)
        return;
    MemoryContext caller_context = CurrentMemoryContext;
    ResourceOwner caller_owner = CurrentResourceOwner;
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(caller_context);
    PG_TRY();
    {
        attach();
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

// ---- pending counters -------------------------------------------------------

struct PendingEntry {
    Key key;  // hash key
    Guard guard;
    Counters counters;
};

HTAB* pending = nullptr;
Counters sink;  // what is counted while nothing is collected; never read

// Dropped triggers and tables whose entries go when the drop commits.
Key* forgotten = nullptr;
int forgotten_count = 0;
int forgotten_capacity = 0;

constexpr long PENDING_KEPT = 64;  // a bigger table is freed after its flush

// Adds the pending counters to the shared table and forgets them.
void flush_pending() {
    if (pending == nullptr)
        return;
    if (hash_get_num_entries(pending) == 0)
        return;
    ++pending_generation;
    HASH_SEQ_STATUS scan;
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
        const int32 index = find_entry(shared, forgotten[i]);
        if (index >= 0 && same_key(entries[index].key, forgotten[i]))
            remove_entry(shared, index);
    }
    LWLockRelease(&directory->lock);
}

void at_transaction_end(XactEvent event, void*) {
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
        case XACT_EVENT_PREPARE:
            forget_committed_drops();
            break;
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
            break;
        default:
            return;
    }
    forgotten_count = 0;
    flush_pending();
}

void ensure_callback() {
    static bool registered = false;
    if (registered)
        return;
    RegisterXactCallback(at_transaction_end, nullptr);
    registered = true;
}

// C-side: the pending counters of KEY, or the sink.
Counters* pending_counters(const Key& key, Guard guard) {
    attach_or_give_up();
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
    }
    return &item->counters;
}

// ---- what raceguard.stats shows ------------------------------------------------

// The view's counter columns, in order, and which guard's slot each shows.
struct Column {
    Guard guard;
    int slot;  // -1: the longest wait; RB_WAIT_US: the total wait (both in ms)
};
constexpr Column COLUMNS[] = {
    {Guard::lock_version, LV_ROWS},  // rows_checked (immutable_once_set: IO_ROWS, also 0)
    {Guard::lock_version, LV_BUMPED},
    {Guard::lock_version, LV_STALE},
    {Guard::lock_version, LV_BLIND},
    {Guard::lock_version, LV_OVERFLOW},
    {Guard::immutable_once_set, IO_VIOLATIONS},
    {Guard::running_balance, RB_APPENDS},
    {Guard::running_balance, RB_WAITED},
    {Guard::running_balance, RB_WAIT_US},
    {Guard::running_balance, -1},
    {Guard::running_balance, RB_SERIALIZATION},
    {Guard::running_balance, RB_MIN_BALANCE},
    {Guard::running_balance, RB_UPDATES},
    {Guard::running_balance, RB_DELETES},
    {Guard::claim, CL_CALLS},
    {Guard::claim, CL_ROWS},
    {Guard::claim, CL_LEASES},
    {Guard::claim, CL_RELEASES},
    {Guard::claim, CL_RELEASES_FENCED},
    {Guard::claim, CL_EXTENDS},
    {Guard::claim, CL_EXTENDS_FENCED},
};
constexpr int COLUMN_COUNT = sizeof(COLUMNS) / sizeof(COLUMNS[0]);
// guard, the counters, stats_reset
constexpr int OUTPUT_COLUMNS = 1 + COLUMN_COUNT + 1;

const char* guard_name(Guard guard) {
    switch (guard) {
        case Guard::lock_version: return "lock_version";
        case Guard::immutable_once_set: return "immutable_once_set";
        case Guard::running_balance: return "running_balance";
        case Guard::claim: return "claim";
    }
    return "unknown";
}

bool guard_from_name(const char* name, Guard* guard) {
    for (Guard candidate : {Guard::lock_version, Guard::immutable_once_set, Guard::running_balance, Guard::claim})
        if (std::strcmp(name, guard_name(candidate)) == 0) {
            *guard = candidate;
            return true;
        }
    return false;
}

void add_row(const Materialized& result, Datum* values, bool* nulls) {
    tuplestore_putvalues(result.store, result.descriptor, values, nulls);
}

}  // namespace

Counters* trigger_counters_slow(TriggerCacheEntry* entry, Guard guard) {
    const Key key{MyDatabaseId, entry->trigger_oid, Kind::trigger};
    Counters* counters = pg_call([&] { return pending_counters(key, guard); });
    entry->counters = counters;
    entry->counters_generation = pending_generation;
    return counters;
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
    if (!compat::has_dsm_registry && process_shared_preload_libraries_in_progress) {
        compat::request_preload_memory(preloaded_size);
        previous_startup_hook = shmem_startup_hook;
        shmem_startup_hook = startup_preloaded;
    }
}

// raceguard.guard_stats(object oid, guard text): the counters of a trigger
// (or, for 'claim', of the claims on a table), zero when nothing was counted
// since tracking began, as one row; no row when statistics are not collected.
Datum guard_stats(FunctionCallInfo fcinfo) {
    const Oid object = PG_GETARG_OID(0);
    const char* name = pg_call([&] { return text_to_cstring(PG_GETARG_TEXT_PP(1)); });
    Guard guard{};
    if (!guard_from_name(name, &guard))
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "unknown guard \"" + std::string(name) + "\"")
            .with_hint("One of lock_version, immutable_once_set, running_balance, claim.");
    const Key key{MyDatabaseId, object, guard == Guard::claim ? Kind::claim_table : Kind::trigger};
    pg_call([&] {
        attach();
        const Materialized result = begin_materialized(fcinfo);
        if (shared == nullptr)
            return;
        bool tracked = false;
        SharedEntry entry{};
        LWLockAcquire(&directory->lock, LW_SHARED);
        const int32 index = find_entry(shared, key);
        if (index >= 0 && entries_of(shared)[index].guard == guard) {
            entry = entries_of(shared)[index];
            tracked = true;
        }
        LWLockRelease(&directory->lock);
        if (!tracked)
            std::memset(&entry.counters, 0, sizeof(entry.counters));
        Datum values[OUTPUT_COLUMNS];
        bool nulls[OUTPUT_COLUMNS];
        values[0] = CStringGetTextDatum(guard_name(guard));
        nulls[0] = false;
        for (int c = 0; c < COLUMN_COUNT; ++c) {
            const Column& column = COLUMNS[c];
            // rows_checked is lock_version's and immutable_once_set's.
            const bool applies = column.guard == guard || (c == 0 && guard == Guard::immutable_once_set);
            nulls[1 + c] = !applies;
            values[1 + c] = 0;
            if (!applies)
                continue;
            if (column.slot == -1)
                values[1 + c] = Float8GetDatum(static_cast<double>(entry.counters.wait_max_us) / 1000.0);
            else if (guard == Guard::running_balance && column.slot == RB_WAIT_US)
                values[1 + c] = Float8GetDatum(static_cast<double>(entry.counters.n[RB_WAIT_US]) / 1000.0);
            else
                values[1 + c] = Int64GetDatum(entry.counters.n[column.slot]);
        }
        values[OUTPUT_COLUMNS - 1] = tracked ? TimestampTzGetDatum(entry.since) : 0;
        nulls[OUTPUT_COLUMNS - 1] = !tracked;
        add_row(result, values, nulls);
    });
    return static_cast<Datum>(0);
}

// raceguard.tracked_objects(): what the shared table holds for this
// database: (object, guard). Says with a NOTICE when nothing is collected.
Datum tracked_objects(FunctionCallInfo fcinfo) {
    pg_call([&] {
        attach();
        const Materialized result = begin_materialized(fcinfo);
        if (shared == nullptr) {
            ereport(NOTICE,
                    (errmsg("raceguard statistics are not collected: raceguard is not in shared_preload_libraries"),
                     errhint("Before PostgreSQL 17, raceguard.stats needs shared_preload_libraries = 'raceguard' "
                             "and a restart; the guards themselves work without it.")));
            return;
        }
        LWLockAcquire(&directory->lock, LW_SHARED);
        // Copied out first: a tuplestore may allocate (and so ereport).
        const uint32 count = shared->count;
        auto* found = static_cast<SharedEntry*>(palloc_extended(sizeof(SharedEntry) * (count > 0 ? count : 1),
                                                                MCXT_ALLOC_NO_OOM));
        uint32 copied = 0;
        if (found != nullptr) {
            const SharedEntry* entries = entries_of(shared);
            for (uint32 i = 0; i < count; ++i)
                if (entries[i].key.database == MyDatabaseId)
                    found[copied++] = entries[i];
        }
        LWLockRelease(&directory->lock);
        if (found == nullptr)
            ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
        for (uint32 i = 0; i < copied; ++i) {
            Datum values[2] = {ObjectIdGetDatum(found[i].key.object), CStringGetTextDatum(guard_name(found[i].guard))};
            bool nulls[2] = {false, false};
            add_row(result, values, nulls);
        }
        pfree(found);
    });
    return static_cast<Datum>(0);
}

// raceguard.stats_reset(): every counter of this database's guards back to
// zero, counting again from now. EXECUTE is revoked from PUBLIC.
Datum reset(FunctionCallInfo) {
    pg_call([] {
        attach();
        if (shared == nullptr)
            return;
        const TimestampTz now = GetCurrentTimestamp();
        LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
        SharedEntry* entries = entries_of(shared);
        for (uint32 i = 0; i < shared->count; ++i) {
            if (entries[i].key.database != MyDatabaseId)
                continue;
            std::memset(&entries[i].counters, 0, sizeof(entries[i].counters));
            entries[i].since = now;
        }
        LWLockRelease(&directory->lock);
    });
    return static_cast<Datum>(0);
}

// The event trigger on sql_drop: the entries of the triggers and tables a
// DROP removed go when it commits (a rolled-back DROP keeps them).
Datum forget_dropped(FunctionCallInfo fcinfo) {
    if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
        throw Error(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, "forget_dropped_stats() can only be called as an event trigger");
    const std::string query = "SELECT classid, objid FROM pg_catalog.pg_event_trigger_dropped_objects() "
                              "WHERE objsubid OPERATOR(pg_catalog.=) 0 AND classid OPERATOR(pg_catalog.=) ANY ('{" +
                              std::to_string(TriggerRelationId) + "," + std::to_string(RelationRelationId) +
                              "}'::pg_catalog.oid[])";
    pg_call([&] {
        attach();
        if (shared == nullptr)
            return;
        ensure_callback();
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
        if (SPI_execute(query.c_str(), true, 0) != SPI_OK_SELECT)
            elog(ERROR, "SPI_execute failed");
        for (uint64 row = 0; row < SPI_processed; ++row) {
            bool is_null = false;
            const Oid classid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &is_null));
            const Oid objid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2, &is_null));
            if (forgotten_count == forgotten_capacity) {
                const int capacity = forgotten_capacity == 0 ? 16 : forgotten_capacity * 2;
                forgotten = static_cast<Key*>(forgotten == nullptr
                                                  ? MemoryContextAlloc(TopMemoryContext, sizeof(Key) * capacity)
                                                  : repalloc(forgotten, sizeof(Key) * capacity));
                forgotten_capacity = capacity;
            }
            forgotten[forgotten_count++] =
                Key{MyDatabaseId, objid, classid == TriggerRelationId ? Kind::trigger : Kind::claim_table};
        }
        SPI_finish();
    });
    return static_cast<Datum>(0);
}

}  // namespace raceguard::stats
