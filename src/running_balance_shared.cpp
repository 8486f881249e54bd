// running_balance's shared memory of each group's last entry (see the
// header for when an entry is trusted). Everything here is C-side: plain
// data in shared memory, spinlocks held for a few loads and stores, and
// hooks that must never fail; no object with a destructor.
#include "running_balance_shared.hpp"

#include "compat.hpp"

extern "C" {
#include "common/hashfn.h"
#include "executor/executor.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
}

namespace raceguard::shared_last_entries {

namespace {

constexpr const char* SEGMENT_NAME = "raceguard_last_entries.layout1";
// 4,096 buckets of 4 entries: about 1.2 MB, the last entries of 16,384
// groups; a group whose slot another took is looked up in every part.
constexpr int BUCKETS = 4096;
constexpr int WAYS = 4;
// Prepared transactions that wrote around a guard, tracked until they end;
// past this many, no entry is trusted until the server restarts.
constexpr int MAX_PREPARED_BYPASSERS = 16;

struct Entry {
    Oid database;
    Oid root_trigger;
    uint32 group_hash;
    Oid leaf;
    uint64 layout;
    uint64 generation;  // 0: empty
    int64 seq;
    uint64 last_used;
    Datum group_values[MAX_GROUP_COLUMNS];
};

struct Bucket {
    slock_t lock;
    uint64 clock;
    Entry ways[WAYS];
};

struct Directory {
    pg_atomic_uint64 generation;  // starts at 1: 0 means "trust nothing"
    pg_atomic_uint32 bypassers;   // transactions in flight that may write around a guard
    slock_t prepared_lock;
    int prepared_count;
    bool prepared_overflowed;
    TransactionId prepared[MAX_PREPARED_BYPASSERS];
    Bucket buckets[BUCKETS];
};

Directory* directory = nullptr;
bool preloaded = false;

// This backend's transaction is counted in Directory::bypassers.
bool counted_as_bypasser = false;
// This transaction ran a statement with session_replication_role = replica.
bool saw_replica_role = false;

shmem_startup_hook_type previous_startup_hook = nullptr;
ExecutorFinish_hook_type previous_executor_finish = nullptr;
ProcessUtility_hook_type previous_process_utility = nullptr;

Size directory_size() { return MAXALIGN(sizeof(Directory)); }

void attach_directory() {
    if (previous_startup_hook != nullptr)
        previous_startup_hook();
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    auto* made = static_cast<Directory*>(ShmemInitStruct(SEGMENT_NAME, directory_size(), &found));
    if (!found) {
        memset(made, 0, directory_size());
        pg_atomic_init_u64(&made->generation, 1);
        pg_atomic_init_u32(&made->bypassers, 0);
        SpinLockInit(&made->prepared_lock);
        for (Bucket& bucket : made->buckets)
            SpinLockInit(&bucket.lock);
    }
    LWLockRelease(AddinShmemInitLock);
    directory = made;
}

void count_as_bypasser() {
    if (directory == nullptr || counted_as_bypasser)
        return;
    pg_atomic_fetch_add_u32(&directory->bypassers, 1);
    counted_as_bypasser = true;
}

// After the transaction's rows became visible (or were rolled back): move
// the generation first, so that whoever sees the count drop sees it moved.
void end_bypass() {
    if (!counted_as_bypasser)
        return;
    pg_atomic_fetch_add_u64(&directory->generation, 1);
    pg_atomic_fetch_sub_u32(&directory->bypassers, 1);
    counted_as_bypasser = false;
}

bool wrote_around_guards_by_role() {
    return (saw_replica_role || SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA) &&
           TransactionIdIsValid(GetTopTransactionIdIfAny());
}

// A prepared bypasser: its rows become visible at COMMIT PREPARED, perhaps
// in another backend, so it is tracked by xid until it is no longer in
// progress.
void hand_over_to_prepared() {
    const TransactionId xid = GetTopTransactionIdIfAny();
    if (TransactionIdIsValid(xid)) {
        SpinLockAcquire(&directory->prepared_lock);
        if (directory->prepared_count < MAX_PREPARED_BYPASSERS)
            directory->prepared[directory->prepared_count++] = xid;
        else
            directory->prepared_overflowed = true;
        SpinLockRelease(&directory->prepared_lock);
    }
    pg_atomic_fetch_sub_u32(&directory->bypassers, 1);
    counted_as_bypasser = false;
}

void on_transaction_event(XactEvent event, void*) {
    switch (event) {
    case XACT_EVENT_PRE_COMMIT:
    case XACT_EVENT_PARALLEL_PRE_COMMIT:
        if (wrote_around_guards_by_role())
            count_as_bypasser();
        break;
    case XACT_EVENT_PRE_PREPARE:
        if (wrote_around_guards_by_role())
            count_as_bypasser();
        if (counted_as_bypasser)
            hand_over_to_prepared();
        break;
    case XACT_EVENT_COMMIT:
    case XACT_EVENT_PARALLEL_COMMIT:
    case XACT_EVENT_ABORT:
    case XACT_EVENT_PARALLEL_ABORT:
    case XACT_EVENT_PREPARE:
        end_bypass();
        saw_replica_role = false;
        break;
    }
}

void note_replica_role() {
    if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
        saw_replica_role = true;
}

// Every statement's executor, top-level and nested (functions, procedures,
// triggers): a write with session_replication_role = replica skips guards
// that are not ENABLE ALWAYS, whatever the role is at commit.
void on_executor_finish(QueryDesc* query) {
    note_replica_role();
    if (previous_executor_finish != nullptr)
        previous_executor_finish(query);
    else
        standard_ExecutorFinish(query);
    note_replica_role();
}

// COPY FROM writes without the executor's entry points.
#if PG_VERSION_NUM >= 140000
void on_process_utility(PlannedStmt* statement, const char* text, bool read_only_tree, ProcessUtilityContext context,
                        ParamListInfo parameters, QueryEnvironment* environment, DestReceiver* destination,
                        QueryCompletion* completion) {
    note_replica_role();
    if (previous_process_utility != nullptr)
        previous_process_utility(statement, text, read_only_tree, context, parameters, environment, destination,
                                 completion);
    else
        standard_ProcessUtility(statement, text, read_only_tree, context, parameters, environment, destination,
                                completion);
    note_replica_role();
}
#else
void on_process_utility(PlannedStmt* statement, const char* text, ProcessUtilityContext context,
                        ParamListInfo parameters, QueryEnvironment* environment, DestReceiver* destination,
                        QueryCompletion* completion) {
    note_replica_role();
    if (previous_process_utility != nullptr)
        previous_process_utility(statement, text, context, parameters, environment, destination, completion);
    else
        standard_ProcessUtility(statement, text, context, parameters, environment, destination, completion);
    note_replica_role();
}
#endif

// Forgets the prepared bypassers that ended; true when none is left.
bool prepared_bypassers_ended() {
    TransactionId pending[MAX_PREPARED_BYPASSERS];
    SpinLockAcquire(&directory->prepared_lock);
    const bool overflowed = directory->prepared_overflowed;
    const int count = directory->prepared_count;
    for (int i = 0; i < count; ++i)
        pending[i] = directory->prepared[i];
    SpinLockRelease(&directory->prepared_lock);
    if (overflowed)
        return false;
    if (count == 0)
        return true;
    TransactionId ended[MAX_PREPARED_BYPASSERS];
    int ended_count = 0;
    for (int i = 0; i < count; ++i)
        if (!TransactionIdIsInProgress(pending[i]))
            ended[ended_count++] = pending[i];
    if (ended_count == 0)
        return false;
    // Their rows are visible (or gone): entries from before are not trusted.
    pg_atomic_fetch_add_u64(&directory->generation, 1);
    SpinLockAcquire(&directory->prepared_lock);
    for (int e = 0; e < ended_count; ++e)
        for (int i = 0; i < directory->prepared_count; ++i)
            if (directory->prepared[i] == ended[e]) {
                directory->prepared[i] = directory->prepared[--directory->prepared_count];
                break;
            }
    const bool none_left = directory->prepared_count == 0;
    SpinLockRelease(&directory->prepared_lock);
    return none_left;
}

Bucket* bucket_of(const GroupKey& key) {
    const uint32 mixed = hash_combine(hash_combine(key.group_hash, key.root_trigger), MyDatabaseId);
    return &directory->buckets[mixed % BUCKETS];
}

bool same_group(const Entry& entry, const GroupKey& key) {
    if (entry.database != MyDatabaseId || entry.root_trigger != key.root_trigger || entry.group_hash != key.group_hash)
        return false;
    for (int g = 0; g < key.group_count; ++g)
        if (entry.group_values[g] != key.group_values[g])
            return false;
    return true;
}

}  // namespace

void initialize() {
    if (!process_shared_preload_libraries_in_progress)
        return;
    preloaded = true;
    compat::request_preload_memory(directory_size);
    previous_startup_hook = shmem_startup_hook;
    shmem_startup_hook = attach_directory;
    previous_executor_finish = ExecutorFinish_hook;
    ExecutorFinish_hook = on_executor_finish;
    previous_process_utility = ProcessUtility_hook;
    ProcessUtility_hook = on_process_utility;
    RegisterXactCallback(on_transaction_event, nullptr);
}

bool available() { return preloaded && directory != nullptr; }

void note_possible_bypass() { count_as_bypasser(); }

uint64 trusted_generation() {
    if (!available())
        return 0;
    // This transaction's own rows written around a guard are visible to it
    // before anyone counts them (a replica-mode write is counted at commit).
    if (counted_as_bypasser || saw_replica_role || SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
        return 0;
    if (pg_atomic_read_u32(&directory->bypassers) != 0)
        return 0;
    SpinLockAcquire(&directory->prepared_lock);
    const bool any_prepared = directory->prepared_count != 0 || directory->prepared_overflowed;
    SpinLockRelease(&directory->prepared_lock);
    if (any_prepared && !prepared_bypassers_ended())
        return 0;
    // Pairs with end_bypass(): a count seen dropped means a generation seen moved.
    pg_read_barrier();
    return pg_atomic_read_u64(&directory->generation);
}

bool find(const GroupKey& key, uint64 generation, int64* seq, Oid* leaf) {
    if (generation == 0 || !available())
        return false;
    Bucket* bucket = bucket_of(key);
    bool found = false;
    SpinLockAcquire(&bucket->lock);
    for (Entry& entry : bucket->ways)
        if (entry.generation != 0 && same_group(entry, key)) {
            found = entry.generation == generation && entry.layout == key.layout;
            *seq = entry.seq;
            *leaf = entry.leaf;
            entry.last_used = ++bucket->clock;
            break;
        }
    SpinLockRelease(&bucket->lock);
    return found;
}

void store(const GroupKey& key, uint64 generation, int64 seq, Oid leaf) {
    if (!available())
        return;
    Bucket* bucket = bucket_of(key);
    SpinLockAcquire(&bucket->lock);
    Entry* chosen = nullptr;
    for (Entry& entry : bucket->ways)
        if (entry.generation != 0 && same_group(entry, key)) {
            chosen = &entry;
            break;
        }
    if (chosen == nullptr && generation != 0)
        for (Entry& entry : bucket->ways)
            if (chosen == nullptr || entry.generation == 0 ||
                (chosen->generation != 0 && entry.last_used < chosen->last_used))
                chosen = &entry;
    if (chosen != nullptr) {
        chosen->database = MyDatabaseId;
        chosen->root_trigger = key.root_trigger;
        chosen->layout = key.layout;
        chosen->group_hash = key.group_hash;
        for (int g = 0; g < MAX_GROUP_COLUMNS; ++g)
            chosen->group_values[g] = g < key.group_count ? key.group_values[g] : 0;
        chosen->generation = generation;
        chosen->seq = seq;
        chosen->leaf = leaf;
        chosen->last_used = ++bucket->clock;
    }
    SpinLockRelease(&bucket->lock);
}

}  // namespace raceguard::shared_last_entries
