// running_balance's shared memory of each group's last entry: which leaf
// of a partitioned ledger holds it, and its seq, remembered across backends
// so that an append reads that one leaf instead of every partition.
//
// Only with raceguard in shared_preload_libraries: then every backend of the
// server runs the hooks below, which is what makes a remembered entry
// provably current. An entry is trusted only if all of these hold:
//  - it was written by an append through the guard (every append of the
//    group writes its slot, under the group's lock), with the generation
//    read under the group's lock, and the generation has not moved since:
//    it moves after every transaction that may have written around a guard
//    or changed one (any trigger created, altered or dropped);
//  - the writer and the reader saw the same ledger: the same leaves with
//    the same clones of the guard (a partition detached, written to
//    unguarded and attached again has a new clone), and neither had an
//    invalidation pending that would change that;
//  - no such transaction is in flight (counted from before its rows can be
//    seen until after they are): one that altered a trigger (ALTER TABLE
//    ... DISABLE/ENABLE TRIGGER), one that wrote with session_replication_role
//    = replica (a superuser's bypass, a logical replication worker), one
//    that kept restored rows (raceguard.restoring), and a prepared one of
//    those until it is committed or rolled back;
//  - the leaf still holds the entry at that seq, and nothing after it
//    (one index descent, under SnapshotSelf, as the full lookup reads).
// Anything else, and every lookup without preloading, reads every part.
//
// A confirmed entry also spares that descent, on any ledger: it carries the
// entry's balance and its transaction, and is written by that transaction
// as it commits, still holding the group's lock, once it knows that its
// last append to the group really went into the ledger (its row was
// counted inserted and nothing undid it: no savepoint rolled back, no
// write around a guard). Every append first writes its group's entry
// unconfirmed, so an append that aborts, or whose row ON CONFLICT or a
// later trigger skipped, leaves no confirmed entry behind; a TRUNCATE, or
// a column altered, counts as a write around the guards. Only the integer
// family, and only a guard that nothing can skip unnoticed (the conditions
// above, and no BEFORE INSERT or UPDATE trigger after it that could change
// the row).
//
// Handed over at pre-commit: a transaction whose every append under a
// group lock can be confirmed writes those entries as its commit begins
// (XACT_EVENT_PRE_COMMIT, when no user code can run any more) marked in
// flight, lets the locks go, and only then waits for the transactions
// whose entries it built on, before its commit record is written. The
// next append of the group builds on an entry whose transaction has not
// finished, so:
//  - it waits for that transaction before it commits (or prepares), and
//    fails with 40001 if it did not commit (its commit failed after the
//    hand-over: a wait there canceled or timed out, an I/O error, a NOTIFY
//    queue full, an ON COMMIT action; SERIALIZABLE transactions, whose
//    commit may still fail its checks, never hand over). Commits of a
//    group's appends thus come in seq order, in the WAL as on a standby;
//  - an append that cannot use the entry (another generation, another
//    group on the slot, a state that does not trust it) waits for every
//    transaction in flight on the slot to end before it reads the ledger,
//    whose rows it could not see yet;
//  - a slot with transactions in flight is never given to another group,
//    and a transaction hands over only the groups it could mark: so an
//    append that finds no transaction in flight on its slot knows that no
//    transaction still committing wrote its group;
//  - a transaction in flight that aborts forgets the slot's entry and
//    moves the slot's epoch: an entry built on it, by an append that will
//    fail, is then not handed over (the append keeps its lock to its end),
//    which stops a chain of such failures at the next append.
// Each transaction clears its own mark as it ends, before its locks, and
// so before its waiters, go.
#pragma once

#include "boundary.hpp"

namespace raceguard::shared_last_entries {

// The group columns an entry keeps (by-value columns, compared by image).
constexpr int MAX_GROUP_COLUMNS = 4;

// A group of one ledger's guard (the trigger the user created).
struct GroupKey {
    Oid root_trigger;
    uint64 layout;  // the ledger's leaves and their clones, as the state saw them
    uint32 group_hash;
    int group_count;
    const Datum* group_values;
};

// From _PG_init: follows writes as a replica in every backend, and while
// shared_preload_libraries loads raceguard reserves the memory too.
void initialize();

// Whether this server keeps shared last entries (raceguard preloaded).
bool available();

// This transaction may write around a guard: no entry is trusted until it
// ends (and none written before it, after).
void note_possible_bypass();

// The same for a row kept by raceguard.restoring, which this backend's
// exact answers must also know of (with or without the shared memory).
void note_restored_row();

// Whether this transaction wrote rows around a guard so far: as a replica
// (session_replication_role, even set and reset within one statement) or
// kept by raceguard.restoring. Followed in every backend since raceguard
// was loaded in it, preloaded or not.
bool this_transaction_wrote_around_guards();

// The generation to compare entries with and to write them under, or 0
// when none may be trusted now. Read before a lookup.
uint64 trusted_generation();

// Whether this transaction may have written around a guard so far: the
// above, or it changed a trigger (counted only with the shared memory).
bool this_transaction_may_bypass();

// The most transactions in flight on one slot (a hot group's chain of
// commits): a transaction that finds no room keeps its locks to its end.
constexpr int MAX_IN_FLIGHT = 8;

struct Remembered {
    int64 seq;
    Oid leaf;
    bool confirmed;  // then also:
    int64 balance;
    TransactionId creator;  // the top-level transaction that appended it
    // The transactions that handed the slot over and have not ended
    // (whatever the generation).
    TransactionId in_flight[MAX_IN_FLIGHT];
    int in_flight_count;
};

// The epoch of no slot: a slot's epoch is never 0.
constexpr uint32 NO_SLOT_EPOCH = 0;

// The group's remembered last entry, if written under GENERATION (which
// may be 0: then only whether the slot is in flight is filled in).
bool find(const GroupKey& key, uint64 generation, Remembered* found);

// Remembers the group's last entry, unconfirmed (GENERATION 0: forgets
// it). Returns the slot's epoch after the write (NO_SLOT_EPOCH: none).
uint32 store(const GroupKey& key, uint64 generation, int64 seq, Oid leaf);

// Confirms the group's last entry: only by the transaction that appended
// it, as it commits, holding the group's lock.
void confirm(const GroupKey& key, uint64 generation, int64 seq, Oid leaf, int64 balance, TransactionId creator);

// The same at pre-commit, marked in flight for CREATOR; false when no slot
// could be kept for it, or the slot's epoch is no longer EPOCH, the one
// store() returned for the append (the group's lock must then be held to
// the end).
bool hand_over(const GroupKey& key, uint64 generation, int64 seq, Oid leaf, int64 balance, TransactionId creator,
               uint32 epoch);

// As CREATOR, which handed the group over, ends: clears the mark, and
// forgets the entry unless it committed. Never fails.
void end_hand_over(const GroupKey& key, TransactionId creator, bool committed);

}  // namespace raceguard::shared_last_entries
