// The running_balance guard's way to a group's last entry: the group lock,
// the index lookup over the ledger's parts, and what this backend remembers
// of the groups it appended to (the hint table, and the exact answers that
// spare a lookup). Kept apart from the per-row path (running_balance.cpp) so
// that the trigger reads as the steps of an append, with this machinery
// behind begin_append, find_group_last_entry and remember_append.
#pragma once

#include "running_balance_state.hpp"
#include "stats.hpp"

extern "C" {
#include "pgstat.h"
}

namespace raceguard {

// The most group columns whose values an exact answer keeps.
constexpr int MAX_CACHED_GROUP_COLUMNS = 4;

struct SeqHint;  // running_balance_lookup.cpp

// Knowing a group's last entry without reading it. Within one statement of
// a transaction holding the group's lock, the only appends to the group are this
// transaction's own, computed right here; an entry computed here is the
// group's last one if its row was really inserted. An append's row is
// inserted or not before the trigger's next call; the table's own
// transaction-level write counters (pgstat's, which heap_insert bumps) tell
// which: exactly one more insert and no other write since the previous call,
// within the same command (so nothing else ran SQL in between: no nested
// statement, no statement with the guard bypassed), means the previous
// call's row went in. Anything else (an ON CONFLICT skip,
// a later trigger that skipped the row, writes around the trigger, a
// subtransaction abort, a new transaction) starts a new epoch, which
// forgets every exact answer; lookups then read the index again.
// A table's inserts, updates and deletes counted so far in this transaction.
struct TableWrites {
    int64 inserted;
    int64 updated;
    int64 deleted;
};

struct AppendTracker {
    MemoryContext context;          // the trigger state's, for `hints`
    SeqHint* hints;                 // slot_count entries, made at the first append
    int slot_count;
    int evictions;                  // slots taken over by another group since the table was made
    uint64 clock;                   // stamps SeqHint::last_used
    uint64 transaction_generation;  // of the epoch
    uint64 epoch;
    bool expecting_insert;          // the previous call computed an append
    TableWrites writes_before;      // the table's counted writes at that call
    CommandId command;              // the command that call ran in
    CommandId statement_command;    // its statement's snapshot's command
};

struct LastEntry {
    bool found;
    Datum balance;  // of the balance column's type, in the caller's memory
    int64 seq;
    TransactionId creator;
};

// One append, from begin_append to remember_append.
struct PendingAppend {
    TableWrites writes_now;  // the table's counted writes when it began
    const PgStat_TableStatus* leaf_writes;  // where pgstat counts them (null: not counted)
    CommandId command_now;   // the command it runs in
    // The command its statement's snapshot was taken at. The command it
    // runs in alone does not tell statements apart: a subtransaction
    // committed within a statement (as statistics' first attach does from
    // PostgreSQL 17) moves the command counter, so that the next statement
    // can run in the same command as the rows of this one.
    CommandId statement_command;
    bool known_exactly;      // the statement's exact answer, not a lookup under the lock
    uint32 group_hash;       // the lock key, set by find_group_last_entry
    Oid leaf;                // the firing relation, where the row goes
    // The shared entries' generation read under the group's lock, or 0:
    // the append's entry is then written as forgotten.
    uint64 shared_generation;
};

// An append's first step: makes the hint table at the first append (and
// remakes it bigger when groups keep evicting each other), and starts a new
// epoch unless the previous append's row was inserted.
PendingAppend begin_append(const RunningBalanceState* state, Relation relation);

// The group's last entry: the exact answer when this statement's appends
// know it, else read from the ledger with the group locked until
// transaction end. Until remember_append, no insert is expected.
LastEntry find_group_last_entry(const RunningBalanceState* state, const Datum* group_values,
                                stats::Counters* counters, PendingAppend* append);

// The append is computed (its row is the group's entry SEQ): remembered as
// the group's hint, and as its exact answer where the state allows one.
void remember_append(const RunningBalanceState* state, const PendingAppend& append, int64 seq, Datum balance,
                     const Datum* group_values);

// C-side: whether the transaction's snapshot sees some version of the
// group's entry `seq`. The newest version's creator may be a later UPDATE of
// a column outside the ledger (a memo); what matters is the append itself,
// and every version of an entry has the same amount, balance and seq.
bool entry_visible_to_snapshot(const RunningBalanceState* state, const Datum* group_values, int64 seq);

// Registers the callbacks that end exact answers at transaction end and
// subtransaction abort, and confirm the transaction's appends as it
// commits (once per backend).
void ensure_transaction_callbacks();

}  // namespace raceguard
