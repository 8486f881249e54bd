// raceguard.running_balance(): finding a group's last entry.
//
// The steps of an append that the per-row path (running_balance.cpp) leaves
// to this file: the group lock that serializes the group's appends, the
// backward index scan over the ledger's parts that finds the last entry, and
// the tracker that lets an append skip that scan (the hint table, and the
// exact answers of one statement's appends). It is the part of the guard
// that decides the cost of an append, and the part whose code must stay
// C-side: see "C-side" below.
#include "running_balance_lookup.hpp"

#include "compat.hpp"
#include "running_balance_group_lock.hpp"
#include "running_balance_shared.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
}

namespace raceguard {

// What this backend last wrote for a group.
//
// As a hint, seq bounds a lookup below: if nothing at or after it exists
// (rolled back, skipped, truncated, or another group sharing the slot), the
// lookup searches the whole group. As an exact answer (`exact`), it replaces
// the lookup: see AppendTracker.
struct SeqHint {
    uint32 group_hash;
    bool valid;
    int64 seq;
    // Exact answer: valid while `epoch` is the tracker's current epoch.
    bool exact;
    uint64 epoch;
    int64 balance;                                   // integer family only
    Datum group_values[MAX_CACHED_GROUP_COLUMNS];    // by-value group columns only
    uint64 last_used;                                // the tracker's clock
};
// The hint table starts small and grows (to at most MAX_HINT_SLOTS) when
// groups keep evicting each other, so a ledger costs memory by the groups a
// backend appends to, not a fixed megabyte. A group may sit in any of the
// HINT_WAYS slots of its bucket, the least recently used giving way, so that
// groups whose hashes share a bucket do not keep evicting each other (and
// forcing lookups) while there is room.
constexpr int FIRST_HINT_SLOTS = 64;
constexpr int MAX_HINT_SLOTS = 16384;
constexpr int HINT_WAYS = 4;
static_assert(FIRST_HINT_SLOTS % HINT_WAYS == 0, "the hint table is made of whole buckets");

namespace {

// Bumped at every transaction end and subtransaction abort.
uint64 transaction_generation = 1;

// A table's inserts, updates and deletes counted so far in this
// transaction (pgstat's per-transaction counters). Stay 0 when track_counts
// is off, which keeps every append on the lookup path.
TableWrites counted_writes_of(const PgStat_TableStatus* info) {
    TableWrites total{};
    for (const PgStat_TableXactStatus* level = info != nullptr ? info->trans : nullptr; level != nullptr;
         level = level->upper) {
        total.inserted += level->tuples_inserted;
        total.updated += level->tuples_updated;
        total.deleted += level->tuples_deleted;
    }
    return total;
}

// Exactly one insert and nothing else: the previous append went in. (An
// ON CONFLICT DO UPDATE instead of the insert counts as an update.)
bool exactly_one_insert_since(const TableWrites& before, const TableWrites& now) {
    return now.inserted == before.inserted + 1 && now.updated == before.updated && now.deleted == before.deleted;
}

// ---- this transaction's appends, to confirm as it commits ---------------
// (running_balance_shared.hpp). For each group, the last append of the
// transaction and what became of its row. Every insert into a leaf fires
// the guard there, unless something wrote around it (which confirms
// nothing), so an append's row went in exactly when the leaf counted one
// insert, and no update or delete, between that append and the next one
// on the leaf, or commit when there is none. Whether the row then stays is
// the transaction's: a rolled-back savepoint confirms nothing.

enum class RowFate : uint8 { unknown, inserted, not_known_inserted };

struct AppendToConfirm {
    Oid root_trigger;
    uint64 layout;
    uint32 group_hash;
    int group_count;
    Datum group_values[shared_last_entries::MAX_GROUP_COLUMNS];
    uint64 generation;  // read under the group's lock in this transaction, or 0
    uint32 slot_epoch;  // the slot's, as this transaction's lookup left it
    int64 seq;
    int64 balance;
    Oid leaf;
    RowFate fate;
    const PgStat_TableStatus* leaf_writes;
    TableWrites writes_before;  // the leaf's, when the append began
    Oid lock_relid;             // the group lock's key: (lock_relid, group_hash)
    bool handed_over;           // written in flight at pre-commit
};

// Beyond this many groups in one transaction (a bulk load), the rest stay
// unconfirmed: their next appends read the ledger.
constexpr int MAX_APPENDS_TO_CONFIRM = 32;
AppendToConfirm appends_to_confirm[MAX_APPENDS_TO_CONFIRM];
int appends_to_confirm_count = 0;
bool confirm_none = false;
// Some append of this transaction has no record (or a guard that cannot
// confirm): its group's lock may share a key with a recorded one, so no
// lock is handed over.
bool hand_over_none = false;
// Some entry was handed over at pre-commit: no append may follow (as one
// could from another extension's pre-commit work), without its lock or
// past the record that ends the entry's mark.
bool handed_over_groups = false;
// This transaction's pre-commit (or pre-prepare) wait is done: an append
// after it (another extension's commit-time work, run after ours) waits
// at once for any transaction it builds on, since nothing else will.
bool awaited_writers_done = false;
TransactionId confirming_transaction = InvalidTransactionId;

// The transactions that handed over entries this transaction built on,
// still in flight when read: it must not commit before them, nor if one
// did not commit (running_balance_shared.hpp). Beyond this many, an append
// waits for its predecessor at once.
// Each is kept with the subtransaction that first built on it, or the
// outermost one that did since: a rolled-back subtransaction's rows are
// gone, and so is its reason to wait (subtransaction ids only grow, so
// those it and its children noted are the ones from its id on).
constexpr int MAX_AWAITED_WRITERS = 8;
TransactionId awaited_writers[MAX_AWAITED_WRITERS];
Oid awaited_ledgers[MAX_AWAITED_WRITERS];  // for the message
SubTransactionId awaited_since[MAX_AWAITED_WRITERS];
int awaited_writer_count = 0;

// C-side: waits until WRITER, which handed over a group, has ended; when
// BUILT_ON, this transaction's append used its entry, so it must have
// committed.
void wait_for_writer(TransactionId writer, Oid ledger, bool built_on) {
    if (TransactionIdIsCurrentTransactionId(writer))
        return;  // cannot be: no append follows this transaction's hand-over
    XactLockTableWait(writer, nullptr, nullptr, XLTW_None);
    if (!built_on || TransactionIdDidCommit(writer))
        return;
    const char* name = get_rel_name(ledger);
    ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                    errmsg("could not serialize an append to table \"%s\": the transaction whose entry it built on did "
                           "not commit",
                           name != nullptr ? name : "?"),
                    errdetail("That transaction failed while committing, after it had let the group go."),
                    errhint("Retry the transaction.")));
}

// C-side: an append built on an entry handed over by WRITER.
void await_writer(TransactionId writer, Oid ledger) {
    const SubTransactionId subtransaction = GetCurrentSubTransactionId();
    for (int w = 0; w < awaited_writer_count; ++w)
        if (TransactionIdEquals(awaited_writers[w], writer)) {
            awaited_since[w] = Min(awaited_since[w], subtransaction);
            return;
        }
    if (awaited_writer_count == MAX_AWAITED_WRITERS || awaited_writers_done) {
        wait_for_writer(writer, ledger, true);
        return;
    }
    awaited_writers[awaited_writer_count] = writer;
    awaited_ledgers[awaited_writer_count] = ledger;
    awaited_since[awaited_writer_count] = subtransaction;
    ++awaited_writer_count;
}

// A subtransaction rolled back: the writers only it (or its children)
// built on are no longer awaited.
void forget_awaited_since(SubTransactionId rolled_back) {
    int kept = 0;
    for (int w = 0; w < awaited_writer_count; ++w)
        if (awaited_since[w] < rolled_back) {
            awaited_writers[kept] = awaited_writers[w];
            awaited_ledgers[kept] = awaited_ledgers[w];
            awaited_since[kept] = awaited_since[w];
            ++kept;
        }
    awaited_writer_count = kept;
}

// As the transaction commits or prepares, before it hands anything over.
void wait_for_awaited_writers() {
    for (int w = 0; w < awaited_writer_count; ++w)
        wait_for_writer(awaited_writers[w], awaited_ledgers[w], true);
    awaited_writer_count = 0;
    awaited_writers_done = true;
}

// The last append begun on each leaf in this transaction. An insert
// counted on a leaf is the row of the append begun last there only if every
// earlier append's row was counted before it began: a row whose guard fired
// but that is inserted later (a CHECK constraint's function, or anything
// else run between a row's BEFORE triggers and its insert, appending to the
// same leaf) would be counted as the later append's. So once an append on a
// leaf begins with the leaf's previous append not counted exactly (skipped,
// turned into an update, or still to be inserted), no append on that leaf
// confirms until the transaction ends.
struct LeafWindow {
    Oid leaf;
    bool attributable;
    TableWrites writes_before;  // at the leaf's last append
    int unsettled;              // the record of that append while its fate is unknown, or -1
};

constexpr int MAX_LEAF_WINDOWS = 64;
LeafWindow leaf_windows[MAX_LEAF_WINDOWS];
int leaf_window_count = 0;
int last_window = 0;  // where the last lookup found its leaf: a bulk load stays on one

LeafWindow* leaf_window_of(Oid leaf) {
    if (last_window < leaf_window_count && leaf_windows[last_window].leaf == leaf)
        return &leaf_windows[last_window];
    for (int w = 0; w < leaf_window_count; ++w)
        if (leaf_windows[w].leaf == leaf) {
            last_window = w;
            return &leaf_windows[w];
        }
    return nullptr;
}

bool counted_row_is_the_appends(Oid leaf) {
    const LeafWindow* window = leaf_window_of(leaf);
    return window != nullptr && window->attributable;
}

// The records by group, open addressing over twice as many slots as
// records (none is removed before the transaction ends), so that a bulk
// load over many groups finds a group's record, or that it has none, in
// about one probe per row.
constexpr int RECORD_SLOTS = 2 * MAX_APPENDS_TO_CONFIRM;
static_assert((RECORD_SLOTS & (RECORD_SLOTS - 1)) == 0, "a power of two, probed by mask");
int8 record_slots[RECORD_SLOTS];  // record index + 1; 0: empty

uint32 record_slot_start(Oid root_trigger, uint32 group_hash) {
    return hash_combine(group_hash, root_trigger) & (RECORD_SLOTS - 1);
}

AppendToConfirm* append_to_confirm_of(Oid root_trigger, uint32 group_hash, int group_count, const Datum* group_values) {
    for (uint32 slot = record_slot_start(root_trigger, group_hash);; slot = (slot + 1) & (RECORD_SLOTS - 1)) {
        if (record_slots[slot] == 0)
            return nullptr;
        AppendToConfirm& known = appends_to_confirm[record_slots[slot] - 1];
        if (known.root_trigger != root_trigger || known.group_hash != group_hash || known.group_count != group_count)
            continue;
        bool same = true;
        for (int g = 0; same && g < group_count; ++g)
            same = known.group_values[g] == group_values[g];
        if (same)
            return &known;
    }
}

AppendToConfirm* new_append_to_confirm(Oid root_trigger, uint32 group_hash) {
    if (appends_to_confirm_count == MAX_APPENDS_TO_CONFIRM)
        return nullptr;
    uint32 slot = record_slot_start(root_trigger, group_hash);
    while (record_slots[slot] != 0)
        slot = (slot + 1) & (RECORD_SLOTS - 1);
    record_slots[slot] = static_cast<int8>(appends_to_confirm_count + 1);
    return &appends_to_confirm[appends_to_confirm_count++];
}

// What became of the leaf's last append, seen from NOW (the leaf's counts
// at the next append there).
void settle_last_append_on(LeafWindow* window, const TableWrites& now) {
    const int unsettled = window->unsettled;
    window->unsettled = -1;
    if (unsettled < 0 || unsettled >= appends_to_confirm_count)
        return;
    AppendToConfirm& known = appends_to_confirm[unsettled];
    // The record may since stand for a later append of its group, on another leaf.
    if (known.leaf == window->leaf && known.fate == RowFate::unknown)
        known.fate = exactly_one_insert_since(known.writes_before, now) && window->attributable
                         ? RowFate::inserted
                         : RowFate::not_known_inserted;
}

// At every append's beginning: the leaf's window, updated for NOW, with its
// last append settled; null when there are too many leaves to follow.
LeafWindow* open_leaf_window(Oid leaf, const TableWrites& now) {
    LeafWindow* window = leaf_window_of(leaf);
    if (window == nullptr) {
        if (leaf_window_count == MAX_LEAF_WINDOWS) {
            confirm_none = true;  // too many leaves to follow
            return nullptr;
        }
        window = &leaf_windows[leaf_window_count++];
        window->leaf = leaf;
        window->attributable = true;
        window->unsettled = -1;
    } else if (!exactly_one_insert_since(window->writes_before, now)) {
        window->attributable = false;
    }
    settle_last_append_on(window, now);
    window->writes_before = now;
    return window;
}

void forget_appends_to_confirm() {
    appends_to_confirm_count = 0;
    memset(record_slots, 0, sizeof(record_slots));
    leaf_window_count = 0;
    last_window = 0;
    confirm_none = false;
    hand_over_none = false;
    handed_over_groups = false;
    confirming_transaction = InvalidTransactionId;
    awaited_writer_count = 0;
    awaited_writers_done = false;
}

void settle_before_commit() {
    for (int a = 0; a < appends_to_confirm_count; ++a) {
        AppendToConfirm& known = appends_to_confirm[a];
        if (known.fate == RowFate::unknown)
            known.fate = exactly_one_insert_since(known.writes_before, counted_writes_of(known.leaf_writes)) &&
                                 counted_row_is_the_appends(known.leaf)
                             ? RowFate::inserted
                             : RowFate::not_known_inserted;
    }
    if (shared_last_entries::this_transaction_may_bypass())
        confirm_none = true;
    confirming_transaction = GetTopTransactionIdIfAny();
}

shared_last_entries::GroupKey key_of(const AppendToConfirm& known) {
    return shared_last_entries::GroupKey{known.root_trigger, known.layout, known.group_hash, known.group_count,
                                         known.group_values};
}

bool confirmable(const AppendToConfirm& known) {
    return !confirm_none && TransactionIdIsValid(confirming_transaction) && known.fate == RowFate::inserted &&
           known.generation != 0;
}

// At pre-commit, after settle_before_commit and before the awaited
// writers: hands over the groups whose every append is confirmable, and
// lets their locks go (running_balance_shared.hpp). A lock is let go only if every record
// under its key was handed over; the others are kept to the end.
void hand_over_at_pre_commit() {
    if (hand_over_none || confirm_none || IsolationIsSerializable() || !TransactionIdIsValid(confirming_transaction))
        return;
    // Built on an entry whose transaction already failed: this one will
    // fail too, and hands nothing over that others could build on.
    for (int w = 0; w < awaited_writer_count; ++w)
        if (TransactionIdDidAbort(awaited_writers[w]))
            return;
    bool kept[MAX_APPENDS_TO_CONFIRM] = {};
    for (int a = 0; a < appends_to_confirm_count; ++a) {
        AppendToConfirm& known = appends_to_confirm[a];
        known.handed_over = confirmable(known) &&
                            shared_last_entries::hand_over(key_of(known), known.generation, known.seq, known.leaf,
                                                           known.balance, confirming_transaction, known.slot_epoch);
        kept[a] = !known.handed_over;
        handed_over_groups |= known.handed_over;
    }
    for (int a = 0; a < appends_to_confirm_count; ++a) {
        const AppendToConfirm& known = appends_to_confirm[a];
        bool release = known.handed_over;
        for (int b = 0; release && b < appends_to_confirm_count; ++b) {
            const AppendToConfirm& other = appends_to_confirm[b];
            if (other.lock_relid == known.lock_relid && other.group_hash == known.group_hash)
                release = b < a ? false : !kept[b];  // the first record of a key releases it
        }
        if (release)
            hand_over_group_lock(known.lock_relid, known.group_hash);
    }
}

// At commit, still holding every group lock the transaction did not hand
// over; or at abort after a hand-over.
void confirm_at_end(bool committed) {
    for (int a = 0; a < appends_to_confirm_count; ++a) {
        const AppendToConfirm& known = appends_to_confirm[a];
        if (known.handed_over)
            shared_last_entries::end_hand_over(key_of(known), confirming_transaction, committed);
        else if (committed && confirmable(known))
            shared_last_entries::confirm(key_of(known), known.generation, known.seq, known.leaf, known.balance,
                                         confirming_transaction);
    }
    forget_appends_to_confirm();
}

void forget_transaction(XactEvent event, void*) {
    if (event == XACT_EVENT_PRE_COMMIT) {
        if (appends_to_confirm_count > 0) {
            settle_before_commit();
            hand_over_at_pre_commit();
        }
        // After the hand-over: the next appends of its groups need not
        // wait for those this one waits for.
        wait_for_awaited_writers();
    }
    if (event == XACT_EVENT_PRE_PREPARE)
        wait_for_awaited_writers();
    if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) && appends_to_confirm_count > 0)
        confirm_at_end(event == XACT_EVENT_COMMIT);
    if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
        event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE) {
        ++transaction_generation;
        forget_appends_to_confirm();
    }
}

void forget_subtransaction(SubXactEvent event, SubTransactionId rolled_back, SubTransactionId, void*) {
    if (event == SUBXACT_EVENT_ABORT_SUB) {
        ++transaction_generation;
        // Its group locks are released, and its rows gone.
        confirm_none = true;
        forget_awaited_since(rolled_back);
    }
}

// Records the append as its group's last in this transaction, or, when
// this state cannot confirm it, makes sure an earlier one of the group is
// not confirmed in its place.
void note_append_to_confirm(const RunningBalanceState* state, const PendingAppend& append, int64 seq,
                            Datum balance, const Datum* group_values, uint32 slot_epoch) {
    if (state->group_count > shared_last_entries::MAX_GROUP_COLUMNS) {
        hand_over_none = true;
        return;  // such a guard never confirms (writes_shared_entries)
    }
    AppendToConfirm* known =
        append_to_confirm_of(state->root_trigger_oid, append.group_hash, state->group_count, group_values);
    if (!state->trusts_confirmed_entries || confirm_none) {
        if (known != nullptr)
            known->fate = RowFate::not_known_inserted;
        hand_over_none = true;
        return;
    }
    // An exact answer was not read under the lock: the generation read
    // when the group was looked up in this transaction still holds for it.
    const uint64 generation = !append.known_exactly ? append.shared_generation
                              : known != nullptr    ? known->generation
                                                    : 0;
    if (known == nullptr) {
        known = new_append_to_confirm(state->root_trigger_oid, append.group_hash);
        if (known == nullptr) {
            hand_over_none = true;
            return;
        }
    }
    known->root_trigger = state->root_trigger_oid;
    known->layout = state->layout;
    known->group_hash = append.group_hash;
    known->group_count = state->group_count;
    for (int g = 0; g < shared_last_entries::MAX_GROUP_COLUMNS; ++g)
        known->group_values[g] = g < state->group_count ? group_values[g] : 0;
    known->generation = generation;
    // Stored under the lock after the lookup: an entry in flight that the
    // append built on and that then aborted moves the epoch or empties the
    // slot, and this append is then not handed over.
    known->slot_epoch = !append.known_exactly ? slot_epoch : known->slot_epoch;
    known->seq = seq;
    known->balance = integer_from_datum(balance, state->balance_type);
    known->leaf = append.leaf;
    known->fate = RowFate::unknown;
    known->leaf_writes = append.leaf_writes;
    known->writes_before = append.writes_now;
    known->lock_relid = state->root_relid;
    known->handed_over = false;
    LeafWindow* window = leaf_window_of(append.leaf);
    if (window != nullptr)
        window->unsettled = static_cast<int>(known - appends_to_confirm);
    else
        known->fate = RowFate::not_known_inserted;  // its leaf is not followed
}

// ---- the hint table -----------------------------------------------------

SeqHint* hint_bucket(const AppendTracker* tracker, uint32 group_hash) {
    const int buckets = tracker->slot_count / HINT_WAYS;
    return &tracker->hints[(group_hash % static_cast<uint32>(buckets)) * HINT_WAYS];
}

// The slot holding the group's hint, or null.
SeqHint* find_hint(AppendTracker* tracker, uint32 group_hash) {
    SeqHint* bucket = hint_bucket(tracker, group_hash);
    for (int way = 0; way < HINT_WAYS; ++way)
        if (bucket[way].valid && bucket[way].group_hash == group_hash) {
            bucket[way].last_used = ++tracker->clock;
            return &bucket[way];
        }
    return nullptr;
}

// The slot to write the group's hint into: its own, a free one, or the
// bucket's least recently used (an eviction).
SeqHint* slot_for_hint(AppendTracker* tracker, uint32 group_hash) {
    SeqHint* bucket = hint_bucket(tracker, group_hash);
    SeqHint* chosen = nullptr;
    for (int way = 0; way < HINT_WAYS; ++way) {
        SeqHint* candidate = &bucket[way];
        if (candidate->valid && candidate->group_hash == group_hash) {
            chosen = candidate;
            break;
        }
        const bool better = chosen == nullptr || (chosen->valid && !candidate->valid) ||
                            (chosen->valid && candidate->valid && candidate->last_used < chosen->last_used);
        if (better)
            chosen = candidate;
    }
    if (chosen->valid && chosen->group_hash != group_hash && tracker->evictions <= tracker->slot_count)
        ++tracker->evictions;
    chosen->last_used = ++tracker->clock;
    return chosen;
}

// ---- the lookup ---------------------------------------------------------
// The functions below marked "C-side" run inside one pg_call: they use no
// object with a destructor, so a PostgreSQL error longjmps over nothing.

// C-side: records one entry if it is later than what `last` holds.
void take_if_later(const RunningBalanceState* state, const LedgerPart* part, TupleTableSlot* slot, LastEntry* last) {
    bool seq_is_null = false;
    const int64 seq = integer_from_datum(slot_getattr(slot, part->seq_attnum, &seq_is_null), state->seq_type);
    if (last->found && seq <= last->seq)
        return;
    bool balance_is_null = false;
    const Datum balance = slot_getattr(slot, part->balance_attnum, &balance_is_null);
    bool should_free = false;
    HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
    last->found = true;
    last->seq = seq;
    last->creator = HeapTupleHeaderGetXmin(tuple->t_data);
    if (balance_is_null)
        last->balance = state->family == Family::integer ? integer_to_datum(state->initial_integer, state->balance_type)
                                                          : state->initial_numeric;
    else if (state->family == Family::integer)
        last->balance = balance;  // by value
    else
        last->balance = datumCopy(balance, false, -1);
    if (should_free)
        heap_freetuple(tuple);
}

// C-side: the group's last entry in one part: the scan starts from the
// group's end (backward in the index's order, forward when it keeps seq
// descending) and takes the first visible entry, so one heap row is read
// whatever other backends appended since. A hint bounds the scan below: the
// btree then stops at it instead of reading the group's whole leaf page.
void scan_part(const RunningBalanceState* state, const LedgerPart* part, const Datum* group_values,
               const int64* hint, Snapshot snapshot, LastEntry* last) {
    Relation heap = table_open(part->relid, AccessShareLock);
    Relation index = index_open(part->index_relid, AccessShareLock);
    ScanKeyData keys[INDEX_MAX_KEYS];
    const int key_count = state->group_count + 1;
    for (int k = 0; k < state->group_count; ++k) {
        const IndexKey* key = &part->keys[k];
        ScanKeyEntryInitializeWithInfo(&keys[k], 0, key->index_attno, BTEqualStrategyNumber, InvalidOid,
                                       key->collation, const_cast<FmgrInfo*>(&key->equality),
                                       group_values[key->group_position]);
    }
    if (hint != nullptr)
        ScanKeyEntryInitializeWithInfo(&keys[state->group_count], 0, part->seq_index_attno,
                                       BTGreaterEqualStrategyNumber, InvalidOid, InvalidOid,
                                       const_cast<FmgrInfo*>(&part->seq_at_least),
                                       integer_to_datum(*hint, state->seq_type));
    else  // seq IS NOT NULL: rows written around the trigger have no place in the chain
        ScanKeyEntryInitialize(&keys[state->group_count], SK_ISNULL | SK_SEARCHNOTNULL, part->seq_index_attno,
                               InvalidStrategy, InvalidOid, InvalidOid, InvalidOid, static_cast<Datum>(0));
    IndexScanDesc scan = compat::index_beginscan(heap, index, snapshot, key_count);
    index_rescan(scan, keys, key_count, nullptr, 0);
    TupleTableSlot* slot = table_slot_create(heap, nullptr);
    if (index_getnext_slot(scan, part->seq_descending ? ForwardScanDirection : BackwardScanDirection, slot))
        take_if_later(state, part, slot, last);
    ExecDropSingleTupleTableSlot(slot);
    index_endscan(scan);
    index_close(index, NoLock);
    table_close(heap, NoLock);
}

// C-side: the group's last entry over every part of the ledger. Any entry at
// or after the hint means the last one is among those (seq only grows).
LastEntry find_last_entry(const RunningBalanceState* state, const Datum* group_values, const int64* hint) {
    LastEntry last{};
    if (hint != nullptr) {
        for (int p = 0; p < state->part_count; ++p)
            scan_part(state, &state->parts[p], group_values, hint, SnapshotSelf, &last);
        if (last.found)
            return last;
    }
    for (int p = 0; p < state->part_count; ++p)
        scan_part(state, &state->parts[p], group_values, nullptr, SnapshotSelf, &last);
    return last;
}

// C-side, under the group's lock: the generation of the shared last
// entries to read and write them under, or 0. Invalidations sent so far are
// taken in first, so that a state that no longer matches the catalog (a
// partition attached, a clone disabled) neither trusts nor writes an entry.
uint64 shared_generation_now(const RunningBalanceState* state) {
    AcceptInvalidationMessages();
    if (trigger_state_invalidations() != state->built_at_invalidation)
        return 0;
    return shared_last_entries::trusted_generation();
}

// C-side, under the group's lock: the group's last entry as a confirmed
// shared entry holds it, or read from the one leaf the shared entry names,
// if that leaf still holds it at the remembered seq and nothing after it
// (running_balance_shared.hpp).
//
// An entry handed over by a transaction still committing is taken, and
// that transaction awaited before this one commits. Any other way to the
// entry first waits for such a transaction to end: its rows are not in the
// ledger for this one to see until then.
bool find_remembered_last_entry(const RunningBalanceState* state, const Datum* group_values, uint32 group_hash,
                                uint64 generation, LastEntry* last) {
    const shared_last_entries::GroupKey key{state->root_trigger_oid, state->layout, group_hash, state->group_count,
                                            group_values};
    shared_last_entries::Remembered remembered{};
    const bool matched = shared_last_entries::find(key, generation, &remembered);
    // The entry is the group's last if it was written by the last holder
    // of the lock: with transactions in flight, by one of them (the last).
    bool creator_in_flight = false;
    for (int w = 0; w < remembered.in_flight_count; ++w)
        creator_in_flight |= TransactionIdEquals(remembered.in_flight[w], remembered.creator);
    if (matched && remembered.confirmed && state->trusts_confirmed_entries &&
        (remembered.in_flight_count == 0 || creator_in_flight)) {
        last->found = true;
        last->seq = remembered.seq;
        last->balance = integer_to_datum(remembered.balance, state->balance_type);
        last->creator = remembered.creator;
        if (creator_in_flight)
            await_writer(remembered.creator, state->root_relid);
        return true;
    }
    // No one can join them while this transaction holds the lock.
    for (int w = 0; w < remembered.in_flight_count; ++w)
        wait_for_writer(remembered.in_flight[w], state->root_relid, false);
    if (!matched || !state->reads_shared_entries)
        return false;
    const int64 seq = remembered.seq;
    for (int p = 0; p < state->part_count; ++p)
        if (state->parts[p].relid == remembered.leaf) {
            LastEntry probed{};
            scan_part(state, &state->parts[p], group_values, &seq, SnapshotSelf, &probed);
            if (!probed.found || probed.seq != seq)
                return false;
            *last = probed;
            return true;
        }
    return false;
}

// C-side: the group key's hash (the lock key).
uint32 group_hash_of(const RunningBalanceState* state, const Datum* group_values) {
    uint32 hash = 0;
    for (int g = 0; g < state->group_count; ++g) {
        const GroupColumn* group = &state->groups[g];
        // A type without a hash function shares one lock slot per ledger:
        // still correct, only coarser.
        const uint32 column_hash =
            group->hashable ? DatumGetUInt32(FunctionCall1Coll(const_cast<FmgrInfo*>(&group->hash), group->collation,
                                                               group_values[g]))
                            : 0;
        hash = hash_combine(hash, column_hash);
    }
    return hash;
}

// C-side: the lock that serializes the group's appends until transaction
// end (running_balance_group_lock.hpp); returns the group's hash.
uint32 lock_group(const RunningBalanceState* state, const Datum* group_values, stats::Counters* counters) {
    const uint32 hash = group_hash_of(state, group_values);
    take_group_lock(state->root_relid, hash, counters);
    return hash;
}

}  // namespace

void ensure_transaction_callbacks() {
    static bool registered = false;
    if (registered)
        return;
    pg_call([] {
        RegisterXactCallback(forget_transaction, nullptr);
        RegisterSubXactCallback(forget_subtransaction, nullptr);
    });
    registered = true;
}

// C-side: whether the transaction's snapshot sees some version of the
// group's entry `seq`. The newest version's creator may be a later UPDATE of
// a column outside the ledger (a memo); what matters is the append itself,
// and every version of an entry has the same amount, balance and seq.
bool entry_visible_to_snapshot(const RunningBalanceState* state, const Datum* group_values, int64 seq) {
    LastEntry visible{};
    for (int p = 0; p < state->part_count; ++p)
        scan_part(state, &state->parts[p], group_values, &seq, GetActiveSnapshot(), &visible);
    return visible.found && visible.seq == seq;
}

// ---- the tracker's steps in an append -----------------------------------

PendingAppend begin_append(const RunningBalanceState* state, Relation relation) {
    if (unlikely(handed_over_groups))
        throw table_error(relation, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                          "cannot append to table " + quoted(RelationGetRelationName(relation)) +
                              " while the transaction commits: it has let its groups go");
    PendingAppend append{};
    // Was the previous append's row inserted? Then every exact answer of
    // this epoch still holds; otherwise start a new epoch.
    AppendTracker* tracker = state->tracker;
    if (state->uses_hints &&
        (tracker->hints == nullptr || (tracker->evictions > tracker->slot_count && tracker->slot_count < MAX_HINT_SLOTS))) {
        // First append, or too many groups for the table: (re)make it. The
        // hints and exact answers it held are forgotten (a new epoch).
        const int slots = tracker->hints == nullptr ? FIRST_HINT_SLOTS : tracker->slot_count * 4;
        SeqHint* const previous = tracker->hints;
        tracker->hints = pg_call([&] {
            if (previous != nullptr)
                pfree(previous);
            return static_cast<SeqHint*>(MemoryContextAllocZero(tracker->context, sizeof(SeqHint) * slots));
        });
        tracker->slot_count = slots;
        tracker->evictions = 0;
        ++tracker->epoch;
    }
    append.leaf = RelationGetRelid(relation);
    append.leaf_writes = relation->pgstat_info != nullptr
                             ? relation->pgstat_info
                             : pg_call([&] { return compat::table_write_counters(relation); });
    append.writes_now = counted_writes_of(append.leaf_writes);
    append.command_now = GetCurrentCommandId(false);
    append.statement_command = ActiveSnapshotSet() ? GetActiveSnapshot()->curcid : InvalidCommandId;
    if (shared_last_entries::available())
        (void)open_leaf_window(append.leaf, append.writes_now);
    // A row written around the guard in this transaction (as a replica,
    // even within this statement) could be taken for a skipped append's.
    const bool previous_inserted = !shared_last_entries::this_transaction_wrote_around_guards() &&
                                   tracker->transaction_generation == transaction_generation &&
                                   tracker->expecting_insert && tracker->command == append.command_now &&
                                   append.statement_command != InvalidCommandId &&
                                   tracker->statement_command == append.statement_command &&
                                   exactly_one_insert_since(tracker->writes_before, append.writes_now);
    if (!previous_inserted) {
        tracker->transaction_generation = transaction_generation;
        ++tracker->epoch;
    }
    return append;
}

LastEntry find_group_last_entry(const RunningBalanceState* state, const Datum* group_values,
                                stats::Counters* counters, PendingAppend* append) {
    AppendTracker* tracker = state->tracker;
    SeqHint* const hints = tracker->hints;
    uint32 group_hash = 0;
    LastEntry last{};
    bool known = false;
    if (state->exact_cache_usable) {
        group_hash = pg_call([&] { return group_hash_of(state, group_values); });
        const SeqHint* slot = find_hint(tracker, group_hash);
        known = slot != nullptr && slot->exact && slot->epoch == tracker->epoch;
        for (int g = 0; known && g < state->group_count; ++g)
            known = slot->group_values[g] == group_values[g];
        if (known) {
            // This transaction holds the group's lock since it wrote the
            // entry (a subtransaction abort would have ended the epoch).
            last.found = true;
            last.seq = slot->seq;
            last.balance = integer_to_datum(slot->balance, state->balance_type);
            last.creator = GetCurrentTransactionIdIfAny();
            append->known_exactly = true;
        }
    }
    if (!known)
        last = pg_call([&] {
            group_hash = lock_group(state, group_values, counters);
            if (state->writes_shared_entries)
                append->shared_generation = shared_generation_now(state);
            // Consulted whatever the generation: a slot in flight must be
            // waited for. A state that writes no shared entries has none:
            // whether it does is fixed by the trigger's columns, and no
            // other backend's state of the trigger writes one either.
            LastEntry remembered{};
            if (state->writes_shared_entries &&
                find_remembered_last_entry(state, group_values, group_hash, append->shared_generation, &remembered))
                return remembered;
            const SeqHint* hint = hints != nullptr ? find_hint(tracker, group_hash) : nullptr;
            return find_last_entry(state, group_values, hint != nullptr ? &hint->seq : nullptr);
        });
    tracker->expecting_insert = false;  // until this append is computed
    append->group_hash = group_hash;
    return last;
}

void remember_append(const RunningBalanceState* state, const PendingAppend& append, int64 seq, Datum balance,
                     const Datum* group_values) {
    AppendTracker* tracker = state->tracker;
    if (tracker->hints != nullptr) {
        SeqHint& slot = *slot_for_hint(tracker, append.group_hash);
        slot.group_hash = append.group_hash;
        slot.valid = true;
        slot.seq = seq;
        slot.exact = state->exact_cache_usable;
        if (slot.exact) {
            slot.epoch = tracker->epoch;
            slot.balance = integer_from_datum(balance, state->balance_type);
            for (int g = 0; g < state->group_count; ++g)
                slot.group_values[g] = group_values[g];
        }
    }
    // An exact answer's group was marked unconfirmed by this transaction's
    // first append to it, under the lock it still holds: nothing to write.
    uint32 slot_epoch = shared_last_entries::NO_SLOT_EPOCH;
    if (state->writes_shared_entries && !append.known_exactly) {
        const shared_last_entries::GroupKey key{state->root_trigger_oid, state->layout, append.group_hash,
                                                state->group_count, group_values};
        slot_epoch = shared_last_entries::store(key, append.shared_generation, seq, append.leaf);
    }
    if (shared_last_entries::available())
        note_append_to_confirm(state, append, seq, balance, group_values, slot_epoch);
    tracker->expecting_insert = true;
    tracker->writes_before = append.writes_now;
    tracker->command = append.command_now;
    tracker->statement_command = append.statement_command;
}

}  // namespace raceguard
