// running_balance's group lock (see the header for why a waiter may take
// it before a queued one). C-side throughout: runs inside pg_call, with no
// object that has a destructor.
#include "running_balance_group_lock.hpp"

#include "compat.hpp"

extern "C" {
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
}

namespace raceguard {

namespace {

constexpr const char* SEGMENT_NAME = "raceguard_group_lock_wakeups.layout1";
// Groups share a condition variable by hash: a sharing group's release only
// wakes a waiter to try again.
constexpr int WAKEUP_COUNT = 1024;
constexpr int64 BARGING_WINDOW_MS = 100;

ConditionVariable* wakeups = nullptr;  // WAKEUP_COUNT of them, when preloaded
shmem_startup_hook_type previous_startup_hook = nullptr;

// The wakeups of the groups this transaction locked, to broadcast when
// their locks are released.
uint64 locked_wakeups[WAKEUP_COUNT / 64];
bool any_locked = false;

Size wakeups_size() { return MAXALIGN(sizeof(ConditionVariable) * WAKEUP_COUNT); }

void attach_wakeups() {
    if (previous_startup_hook != nullptr)
        previous_startup_hook();
    wakeups = static_cast<ConditionVariable*>(compat::preloaded_struct(SEGMENT_NAME, wakeups_size(), [](void* made) {
        for (int i = 0; i < WAKEUP_COUNT; ++i)
            ConditionVariableInit(&static_cast<ConditionVariable*>(made)[i]);
    }));
}

int wakeup_of(uint32 group_hash) { return static_cast<int>(group_hash % WAKEUP_COUNT); }

void note_locked(uint32 group_hash) {
    if (wakeups == nullptr)
        return;
    const int index = wakeup_of(group_hash);
    locked_wakeups[index / 64] |= UINT64CONST(1) << (index % 64);
    any_locked = true;
}

// After the locks of a transaction (commit, abort, PREPARE) or of a
// rolled-back subtransaction were released: wake those who wait for them.
// Marks are kept until the transaction ends, since a subtransaction's
// rollback releases only its own locks.
void broadcast_released(ResourceReleasePhase phase, bool is_commit, bool is_top_level, void*) {
    if (phase != RESOURCE_RELEASE_AFTER_LOCKS || !any_locked || (!is_top_level && is_commit))
        return;
    for (int word = 0; word < WAKEUP_COUNT / 64; ++word)
        for (uint64 bits = locked_wakeups[word]; bits != 0; bits &= bits - 1)
            ConditionVariableBroadcast(&wakeups[word * 64 + __builtin_ctzll(bits)]);
    if (is_top_level) {
        memset(locked_wakeups, 0, sizeof(locked_wakeups));
        any_locked = false;
    }
}

bool try_lock(const LOCKTAG* tag) { return LockAcquire(tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL; }

// Sleeps until a holder of a group on this wakeup releases its locks, and
// tries again, for at most the window. True when the lock was taken.
bool take_when_released(const LOCKTAG* tag, uint32 group_hash, TimestampTz started) {
    // lock_timeout runs only in the lock manager's queue: with it set, the
    // waiter queues at once, so that it means what it says.
    if (wakeups == nullptr || LockTimeout > 0)
        return false;
    const int64 window_ms = Min(BARGING_WINDOW_MS, static_cast<int64>(DeadlockTimeout));
    const TimestampTz deadline = started + window_ms * 1000;
    ConditionVariable* wakeup = &wakeups[wakeup_of(group_hash)];
    bool taken = false;
    ConditionVariablePrepareToSleep(wakeup);
    for (;;) {
        taken = try_lock(tag);
        const int64 remaining_ms = (deadline - GetCurrentTimestamp()) / 1000;
        if (taken || remaining_ms <= 0)
            break;
        (void)ConditionVariableTimedSleep(wakeup, static_cast<long>(remaining_ms), PG_WAIT_EXTENSION);
    }
    (void)ConditionVariableCancelSleep();
    return taken;
}

void group_lock_tag(LOCKTAG* tag, Oid root_relid, uint32 group_hash) {
    SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, root_relid, group_hash, RACEGUARD_LOCK_TAG);
}

// Tried without waiting first, so that a wait is seen and counted (the
// count before the wait, which may end in an error; its time after).
void take_group_lock_as_owner(Oid root_relid, uint32 group_hash, stats::Counters* counters) {
    LOCKTAG tag;
    group_lock_tag(&tag, root_relid, group_hash);
    const LockAcquireResult first = LockAcquire(&tag, ExclusiveLock, false, true);
    if (first == LOCKACQUIRE_NOT_AVAIL) {
        ++counters->n[stats::RB_WAITED];
        const TimestampTz started = GetCurrentTimestamp();
        if (!take_when_released(&tag, group_hash, started))
            (void)LockAcquire(&tag, ExclusiveLock, false, false);
        const int64 waited = GetCurrentTimestamp() - started;  // microseconds
        counters->n[stats::RB_WAIT_US] += waited;
        if (waited > counters->wait_max_us)
            counters->wait_max_us = waited;
    } else if (first != LOCKACQUIRE_OK) {
        // Held already: one count per owner, so that one release at
        // pre-commit lets it go.
        LockRelease(&tag, ExclusiveLock, false);
    }
    note_locked(group_hash);
}

}  // namespace

void initialize_group_lock_wakeups() {
    if (!process_shared_preload_libraries_in_progress)
        return;
    compat::request_preload_memory(wakeups_size);
    previous_startup_hook = shmem_startup_hook;
    shmem_startup_hook = attach_wakeups;
    RegisterResourceReleaseCallback(broadcast_released, nullptr);
}

// The lock is owned by the (sub)transaction, not by the statement's portal,
// whose resource owner may outlive the statement until commit: a
// transaction that hands its groups over at pre-commit
// (running_balance_shared.hpp) then finds every such lock with its
// top-level resource owner. A subtransaction's abort still releases what it
// took.
void take_group_lock(Oid root_relid, uint32 group_hash, stats::Counters* counters) {
    ResourceOwner statement_owner = CurrentResourceOwner;
    CurrentResourceOwner = CurTransactionResourceOwner;
    PG_TRY();
    {
        take_group_lock_as_owner(root_relid, group_hash, counters);
    }
    PG_FINALLY();
    {
        CurrentResourceOwner = statement_owner;
    }
    PG_END_TRY();
}

void hand_over_group_lock(Oid root_relid, uint32 group_hash) {
    LOCKTAG tag;
    group_lock_tag(&tag, root_relid, group_hash);
    ResourceOwner statement_owner = CurrentResourceOwner;
    CurrentResourceOwner = TopTransactionResourceOwner;
    // No error to guard against: a lock not found is a WARNING.
    const bool released = LockRelease(&tag, ExclusiveLock, false);
    CurrentResourceOwner = statement_owner;
    if (released && wakeups != nullptr)
        ConditionVariableBroadcast(&wakeups[wakeup_of(group_hash)]);
}

}  // namespace raceguard
