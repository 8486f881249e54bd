// running_balance's group lock: the transaction-level lock on (ledger
// root, group hash) that serializes a group's appends, and how a waiter
// gets it.
//
// PostgreSQL's lock manager hands a released lock to the first waiter in
// its queue, asleep or not. On a hot account, where every transaction
// waits, the lock then sits with a process that still has to be scheduled
// while running ones could use it: on a busy machine the account's appends
// run at the pace of wakeups (a lock convoy). Row locks do not convoy the
// same way: a running transaction that finds the row's locker committed
// takes the row at once. So, with raceguard preloaded, a waiter first
// sleeps on a condition variable that the holder broadcasts right after
// it releases its group locks (commit, abort, or a rolled-back savepoint),
// and tries again without queueing, as a running transaction may too. The
// first to try gets the lock. A waiter that has not got it within a short
// window (100 ms, or deadlock_timeout if shorter) queues in the lock
// manager as before, which is fair from then on (no one can take the lock
// past a queued waiter) and is where deadlocks are detected. Without
// preloading, and with lock_timeout set (which counts only a queued wait),
// every waiter queues at once. A lock held by a prepared transaction is
// released by COMMIT or ROLLBACK PREPARED in a backend that did not take
// it and so wakes no one: its waiters go on at the end of the window.
#pragma once

#include "stats.hpp"

namespace raceguard {

// locktag_field4 of raceguard's advisory-type locks ("RG"): user advisory
// locks use 1 and 2. The group locks, and the mark of prepared transactions
// that wrote around a guard (running_balance_shared.cpp).
constexpr uint16 RACEGUARD_LOCK_TAG = 0x5247;

// From _PG_init while shared_preload_libraries loads raceguard: reserves
// the condition variables and registers the broadcast. Otherwise nothing.
void initialize_group_lock_wakeups();

// C-side: takes the group's lock until transaction end, counting a wait.
// Owned by the (sub)transaction, once however often it is taken.
void take_group_lock(Oid root_relid, uint32 group_hash, stats::Counters* counters);

// C-side, at pre-commit: lets the group's lock go before the commit ends,
// once the group's last entry is handed over (running_balance_shared.hpp),
// and wakes its waiters.
void hand_over_group_lock(Oid root_relid, uint32 group_hash);

}  // namespace raceguard
