// running_balance's shared memory of each group's last entry (see the
// header for when an entry is trusted). Everything here is C-side: plain
// data in shared memory, spinlocks held for a few loads and stores, and
// hooks that must never fail; no object with a destructor.
#include "running_balance_shared.hpp"

#include "compat.hpp"
#include "running_balance_group_lock.hpp"

extern "C" {
#include "access/twophase.h"
#include "common/hashfn.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc_tables.h"
}

namespace raceguard::shared_last_entries {

namespace {

constexpr const char* SEGMENT_NAME = "raceguard_last_entries.layout1";
// 4,096 buckets of 4 entries: about 1.2 MB, the last entries of 16,384
// groups; a group whose slot another took is looked up in every part.
constexpr int BUCKETS = 4096;
constexpr int WAYS = 4;
// A prepared transaction that wrote around a guard holds this lock in
// share mode (taken as it prepares, so PostgreSQL keeps it with the
// prepared transaction, through a restart or a promotion, until COMMIT or
// ROLLBACK PREPARED); whoever can take it exclusively knows none is left.
// An advisory-type tag in no database, with raceguard's field4 ("RG") and
// a field3 of its own.
constexpr uint32 PREPARED_BYPASS_MARK = 0x50425950;  // "PBYP"

struct Entry {
    Oid database;
    Oid root_trigger;
    uint32 group_hash;
    Oid leaf;
    uint64 layout;
    uint64 generation;  // 0: empty
    int64 seq;
    bool confirmed;
    int64 balance;           // when confirmed
    TransactionId creator;   // when confirmed
    // Transactions that handed the slot over and have not ended (invalid:
    // free places): while any is, the way is not given to another slot.
    TransactionId in_flight[MAX_IN_FLIGHT];
    uint32 epoch;  // moves when one of them aborts
    uint64 last_used;
    Datum group_values[MAX_GROUP_COLUMNS];
};

struct Bucket {
    slock_t lock;
    uint64 clock;
    uint32 last_epoch;  // a new slot's epoch is never one its way had
    Entry ways[WAYS];
};

struct Directory {
    pg_atomic_uint64 generation;  // starts at 1: 0 means "trust nothing"
    pg_atomic_uint32 bypassers;   // transactions in flight that may write around a guard
    // Prepared bypassers: marked (counted up) as each prepares; checked
    // (the mark lock free) up to a count. Trust needs them equal. At start,
    // one mark stands for those a restart recovered, if any can exist.
    pg_atomic_uint64 prepared_marks;
    pg_atomic_uint64 prepared_checked;
    Bucket buckets[BUCKETS];
};

Directory* directory = nullptr;
bool preloaded = false;

// This backend's transaction is counted in Directory::bypassers.
bool counted_as_bypasser = false;
// This backend's transaction kept restored rows (noted with or without the
// shared memory).
bool kept_restored_rows = false;
// session_replication_role was set to replica in this transaction (or the
// session began so): guards that are not ENABLE ALWAYS were off for it.
bool saw_replica_role = false;

shmem_startup_hook_type previous_startup_hook = nullptr;
GucEnumAssignHook previous_role_assign = nullptr;

Size directory_size() { return MAXALIGN(sizeof(Directory)); }

void initialize_directory(void* memory) {
    auto* made = static_cast<Directory*>(memory);
    memset(made, 0, directory_size());
    pg_atomic_init_u64(&made->generation, 1);
    pg_atomic_init_u32(&made->bypassers, 0);
    pg_atomic_init_u64(&made->prepared_marks, max_prepared_xacts > 0 ? 1 : 0);
    pg_atomic_init_u64(&made->prepared_checked, 0);
    for (Bucket& bucket : made->buckets)
        SpinLockInit(&bucket.lock);
}

void attach_directory() {
    if (previous_startup_hook != nullptr)
        previous_startup_hook();
    directory = static_cast<Directory*>(compat::preloaded_struct(SEGMENT_NAME, directory_size(), initialize_directory));
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

void prepared_bypass_tag(LOCKTAG* tag) {
    SET_LOCKTAG_ADVISORY(*tag, InvalidOid, 0, PREPARED_BYPASS_MARK, RACEGUARD_LOCK_TAG);
}

// A prepared bypasser: its rows become visible at COMMIT PREPARED, perhaps
// in another backend or after a restart, so it keeps the mark lock until
// then, and counts a mark before it stops counting as in flight.
void hand_over_to_prepared() {
    LOCKTAG tag;
    prepared_bypass_tag(&tag);
    (void)LockAcquire(&tag, ShareLock, false, false);
    pg_atomic_fetch_add_u64(&directory->prepared_marks, 1);
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
        kept_restored_rows = false;
        break;
    }
}

// Wraps the assign hook of session_replication_role, which every way of
// setting it runs (SET, SET LOCAL, set_config() even in the middle of a
// statement, a function's SET clause, ALTER ROLE ... SET, PGOPTIONS).
void on_replication_role_assigned(int value, void* extra) {
    if (value == SESSION_REPLICATION_ROLE_REPLICA)
        saw_replica_role = true;
    if (previous_role_assign != nullptr)
        previous_role_assign(value, extra);
}

void wrap_replication_role_assign() {
    config_generic* setting = compat::find_core_setting("session_replication_role");
    if (setting == nullptr || setting->vartype != PGC_ENUM)
        elog(ERROR, "raceguard: setting \"session_replication_role\" not found");
    auto* role = reinterpret_cast<config_enum*>(setting);
    previous_role_assign = role->assign_hook;
    role->assign_hook = on_replication_role_assigned;
}

// True when no prepared transaction that wrote around a guard is left:
// tried only while marks outnumber checks, by taking the mark lock without
// waiting (and letting it go at once).
bool prepared_bypassers_ended() {
    const uint64 marks = pg_atomic_read_u64(&directory->prepared_marks);
    if (pg_atomic_read_u64(&directory->prepared_checked) >= marks)
        return true;
    LOCKTAG tag;
    prepared_bypass_tag(&tag);
    if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
        return false;
    LockRelease(&tag, ExclusiveLock, false);
    // Their rows are visible (or gone): entries from before are not trusted.
    pg_atomic_fetch_add_u64(&directory->generation, 1);
    uint64 checked = pg_atomic_read_u64(&directory->prepared_checked);
    while (checked < marks && !pg_atomic_compare_exchange_u64(&directory->prepared_checked, &checked, marks)) {
    }
    return pg_atomic_read_u64(&directory->prepared_marks) == marks;
}

Bucket* bucket_of(const GroupKey& key) {
    const uint32 mixed = hash_combine(hash_combine(key.group_hash, key.root_trigger), MyDatabaseId);
    return &directory->buckets[mixed % BUCKETS];
}

// An entry's slot is its lock's: groups whose hashes collide share the
// group lock, and the last append of any of them owns the slot. (Equal
// groups may differ in image, as -0 and 0 do: one's append then makes the
// other's lookup miss, never trust a stale entry.)
bool same_slot(const Entry& entry, const GroupKey& key) {
    return entry.database == MyDatabaseId && entry.root_trigger == key.root_trigger &&
           entry.group_hash == key.group_hash;
}

bool any_in_flight(const Entry& entry) {
    for (TransactionId writer : entry.in_flight)
        if (TransactionIdIsValid(writer))
            return true;
    return false;
}

bool occupied(const Entry& entry) { return entry.generation != 0 || any_in_flight(entry); }

bool same_group(const Entry& entry, const GroupKey& key) {
    if (!same_slot(entry, key))
        return false;
    for (int g = 0; g < key.group_count; ++g)
        if (entry.group_values[g] != key.group_values[g])
            return false;
    return true;
}

}  // namespace

void initialize() {
    // Whether this transaction wrote as a replica is followed in every
    // backend that loads raceguard, preloaded or not: a statement's exact
    // answers (running_balance_lookup.hpp) must not take a row written
    // around the guard, even by set_config() in the middle of the
    // statement, for the row of an append that was skipped.
    wrap_replication_role_assign();
    RegisterXactCallback(on_transaction_event, nullptr);
    if (!process_shared_preload_libraries_in_progress)
        return;
    preloaded = true;
    compat::request_preload_memory(directory_size);
    previous_startup_hook = shmem_startup_hook;
    shmem_startup_hook = attach_directory;
}

bool available() { return preloaded && directory != nullptr; }

void note_possible_bypass() { count_as_bypasser(); }

void note_restored_row() {
    kept_restored_rows = true;
    count_as_bypasser();
}

bool this_transaction_wrote_around_guards() {
    return kept_restored_rows || saw_replica_role || SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA;
}

uint64 trusted_generation() {
    if (!available())
        return 0;
    // This transaction's own rows written around a guard are visible to it
    // before anyone counts them (a replica-mode write is counted at commit).
    if (counted_as_bypasser || saw_replica_role || SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
        return 0;
    if (pg_atomic_read_u32(&directory->bypassers) != 0)
        return 0;
    // A bypasser that prepared counted its mark before it stopped counting
    // as in flight: seen not in flight means its mark is seen.
    pg_read_barrier();
    if (!prepared_bypassers_ended())
        return 0;
    // Pairs with end_bypass(): a count seen dropped means a generation seen moved.
    pg_read_barrier();
    return pg_atomic_read_u64(&directory->generation);
}

bool this_transaction_may_bypass() { return counted_as_bypasser || this_transaction_wrote_around_guards(); }

bool find(const GroupKey& key, uint64 generation, Remembered* found_entry) {
    found_entry->in_flight_count = 0;
    if (!available())
        return false;
    Bucket* bucket = bucket_of(key);
    bool found = false;
    SpinLockAcquire(&bucket->lock);
    for (Entry& entry : bucket->ways)
        if (occupied(entry) && same_slot(entry, key)) {
            found = generation != 0 && entry.generation == generation && entry.layout == key.layout &&
                    same_group(entry, key);
            found_entry->seq = entry.seq;
            found_entry->leaf = entry.leaf;
            found_entry->confirmed = entry.confirmed;
            found_entry->balance = entry.balance;
            found_entry->creator = entry.creator;
            for (TransactionId writer : entry.in_flight)
                if (TransactionIdIsValid(writer))
                    found_entry->in_flight[found_entry->in_flight_count++] = writer;
            entry.last_used = ++bucket->clock;
            break;
        }
    SpinLockRelease(&bucket->lock);
    return found;
}

namespace {

// Writes the slot's entry. Handing over (IN_FLIGHT valid) also marks that
// transaction in flight, only if the slot's epoch is still EPOCH and has a
// free place. False when nothing was written: no generation, every way of
// the bucket in flight for other slots, or (handing over) the epoch moved
// or no place.
bool write_entry(const GroupKey& key, uint64 generation, int64 seq, Oid leaf, bool confirmed, int64 balance,
                 TransactionId creator, TransactionId in_flight, uint32 epoch, uint32* written_epoch_out) {
    if (!available())
        return false;
    Bucket* bucket = bucket_of(key);
    SpinLockAcquire(&bucket->lock);
    Entry* chosen = nullptr;
    for (Entry& entry : bucket->ways)
        if (occupied(entry) && same_slot(entry, key)) {
            chosen = &entry;
            break;
        }
    if (chosen == nullptr && generation != 0) {
        for (Entry& entry : bucket->ways) {
            if (any_in_flight(entry))
                continue;  // another slot's, in flight
            if (chosen == nullptr || entry.generation == 0 ||
                (chosen->generation != 0 && entry.last_used < chosen->last_used))
                chosen = &entry;
        }
        if (chosen != nullptr) {
            // A free or evicted way: a new slot, with an epoch no append
            // can have read (0 stands for "no slot").
            if (++bucket->last_epoch == NO_SLOT_EPOCH)
                ++bucket->last_epoch;
            chosen->epoch = bucket->last_epoch;
        }
    }
    int place = -1;
    if (chosen != nullptr && TransactionIdIsValid(in_flight)) {
        for (int p = 0; p < MAX_IN_FLIGHT && place < 0; ++p)
            if (!TransactionIdIsValid(chosen->in_flight[p]))
                place = p;
        if (place < 0 || chosen->epoch != epoch)
            chosen = nullptr;
    }
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
        chosen->confirmed = confirmed;
        chosen->balance = balance;
        chosen->creator = creator;
        if (place >= 0)
            chosen->in_flight[place] = in_flight;
        chosen->last_used = ++bucket->clock;
    }
    const uint32 written_epoch = chosen != nullptr ? chosen->epoch : NO_SLOT_EPOCH;
    SpinLockRelease(&bucket->lock);
    if (written_epoch_out != nullptr)
        *written_epoch_out = written_epoch;
    return chosen != nullptr;
}

}  // namespace

uint32 store(const GroupKey& key, uint64 generation, int64 seq, Oid leaf) {
    uint32 epoch = NO_SLOT_EPOCH;
    (void)write_entry(key, generation, seq, leaf, false, 0, InvalidTransactionId, InvalidTransactionId, 0, &epoch);
    return epoch;
}

void confirm(const GroupKey& key, uint64 generation, int64 seq, Oid leaf, int64 balance, TransactionId creator) {
    if (generation != 0)
        (void)write_entry(key, generation, seq, leaf, true, balance, creator, InvalidTransactionId, 0, nullptr);
}

bool hand_over(const GroupKey& key, uint64 generation, int64 seq, Oid leaf, int64 balance, TransactionId creator,
               uint32 epoch) {
    return generation != 0 && TransactionIdIsValid(creator) &&
           write_entry(key, generation, seq, leaf, true, balance, creator, creator, epoch, nullptr);
}

void end_hand_over(const GroupKey& key, TransactionId creator, bool committed) {
    if (!available())
        return;
    Bucket* bucket = bucket_of(key);
    SpinLockAcquire(&bucket->lock);
    for (Entry& entry : bucket->ways) {
        if (!same_slot(entry, key))
            continue;
        bool was_in_flight = false;
        for (TransactionId& writer : entry.in_flight)
            if (TransactionIdEquals(writer, creator)) {
                writer = InvalidTransactionId;
                was_in_flight = true;
            }
        // Aborted: the entry (its own, or one built on it by an append that
        // will fail) is not the group's.
        if (was_in_flight && !committed) {
            entry.generation = 0;
            entry.confirmed = false;
            ++entry.epoch;
        }
        if (was_in_flight)
            break;
    }
    SpinLockRelease(&bucket->lock);
}

}  // namespace raceguard::shared_last_entries
