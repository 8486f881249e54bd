// raceguard.running_balance(): a running balance per group, serialized.
//
// This file is the guard's per-row path, the trigger itself, top to bottom:
// an INSERT reads the row's amount and group, finds the group's last entry,
// adds the amount and writes the balance and seq, or refuses the row;
// UPDATE of the ledger's columns and DELETE are refused. What it needs from
// elsewhere is kept apart, so that this reads as the steps of an append:
// running_balance_state.cpp, the catalog side, runs once per trigger
// (arguments, columns, chain indexes); running_balance_lookup.cpp holds the
// group lock, the last-entry lookup and what the backend remembers between
// appends.
//
// Design. The ledger's rows are the only state: each append reads the
// group's last row (highest seq) and writes balance = last balance + amount
// and seq = last seq + 1. Nothing is kept elsewhere, so a rolled-back append
// (transaction or savepoint), an append that ON CONFLICT skips, a crash or a
// TRUNCATE leave nothing to repair: the next append reads whatever rows exist.
//
// What is locked, in what order. Before reading, an append takes a
// transaction-level lock on (ledger root, hash of the group key): an
// advisory-type lock in PostgreSQL's lock manager, tagged so that it cannot
// meet the application's own advisory locks (field4 = RACEGUARD_LOCK_TAG).
// It is held until the transaction ends, so appends to one group run one
// transaction at a time and appends to different groups do not wait for each
// other (two groups share a lock only if their 32-bit hashes collide). A
// transaction appending to one group takes one lock and waits for nothing
// else of ours, so it cannot deadlock; transactions appending to several
// groups in different orders can, and the lock manager then raises 40P01.
//
// How the last row is found. Through a btree index whose leading columns are
// the group columns followed by seq (required; on a partitioned ledger each
// partition's index is searched and the highest seq wins), under
// SnapshotSelf: every committed row plus this transaction's own, including
// rows inserted earlier by the same statement. The scan reads the group
// from its end (backward) and stops at the first row it sees, so it fetches
// one heap row however many entries other backends appended; the last seq
// this backend wrote for the group, when it knows one, bounds the scan below,
// so the btree does not read the rest of the group's leaf page. Within a
// statement, when every append computed so far was really inserted
// (AppendTracker, running_balance_lookup.hpp), the group's last entry is
// known without reading it. The cost is at most one index descent per
// partition, whatever the ledger's size or the number of rows the
// transaction already appended.
//
// REPEATABLE READ / SERIALIZABLE. The transaction's snapshot may predate the
// lock. If the last row found is not this transaction's own and its creator
// is not visible to the snapshot, the append would build on a row the
// transaction cannot see: it fails with 40001 instead.
//
// Why seq is required: without an ordering column stored in the rows, the
// group's last row cannot be found without scanning the group or keeping
// state outside the ledger, and outside state is exactly what an ON CONFLICT
// skip (the BEFORE trigger runs, the row is never inserted) would corrupt.
#include "running_balance.hpp"

#include "citus.hpp"
#include "compat.hpp"
#include "running_balance_lookup.hpp"
#include "running_balance_restore.hpp"
#include "running_balance_shared.hpp"
#include "running_balance_state.hpp"
#include "stats.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "common/int.h"
#include "utils/datum.h"
#include "utils/guc.h"
}

#include <string>

namespace raceguard {

namespace {

// ---- errors -------------------------------------------------------------

std::string column_of(const TriggerData* trigger_data, AttrNumber attnum) {
    return NameStr(TupleDescAttr(RelationGetDescr(trigger_data->tg_relation), attnum - 1)->attname);
}

std::string table_of(const TriggerData* trigger_data) { return RelationGetRelationName(trigger_data->tg_relation); }

Error guard_violation(const TriggerData* trigger_data, int sqlstate, std::string message, AttrNumber column) {
    Error error = table_error(trigger_data->tg_relation, sqlstate, std::move(message));
    error.with_constraint(trigger_data->tg_trigger->tgname);
    if (column != InvalidAttrNumber)
        error.with_column(column_of(trigger_data, column));
    return error;
}

// The group key as a row literal, "(42,EUR)", when the user may see it.
std::string group_key_text(const TriggerData* trigger_data, const RunningBalanceState* state,
                           const Datum* group_values) {
    std::string text = "(";
    for (int g = 0; g < state->group_count; ++g) {
        if (!may_select_column(trigger_data->tg_relation, state->groups[g].attnum))
            return "";
        text += (g > 0 ? "," : "") + value_text(group_values[g], state->groups[g].type);
    }
    return text + ")";
}

[[noreturn]] void throw_null(const TriggerData* trigger_data, AttrNumber attnum, const char* role) {
    throw guard_violation(trigger_data, ERRCODE_NOT_NULL_VIOLATION,
                          "null value in column " + quoted(column_of(trigger_data, attnum)) + " of table " +
                              quoted(table_of(trigger_data)) + ": a running balance needs " + role,
                          attnum);
}

[[noreturn]] void throw_out_of_range(const TriggerData* trigger_data, AttrNumber attnum, Oid type) {
    throw guard_violation(trigger_data, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                          "column " + quoted(column_of(trigger_data, attnum)) + " of table " +
                              quoted(table_of(trigger_data)) + " would go out of range for type " + type_name(type),
                          attnum);
}

// 23514 for an amount the ledger cannot add exactly; its value in DETAIL
// only for a user who may read the column.
[[noreturn]] void throw_amount_refused(const TriggerData* trigger_data, const RunningBalanceState* state,
                                       Datum amount, const std::string& why) {
    Error error = guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                                  "the amount of an append to table " + quoted(table_of(trigger_data)) + " " + why,
                                  state->amount_attnum);
    if (may_select_column(trigger_data->tg_relation, state->amount_attnum))
        error.with_detail("The amount is " + value_text(amount, state->amount_type) + ".");
    throw error;
}

std::string balance_text(const RunningBalanceState* state, Datum value) { return value_text(value, state->balance_type); }

bool created_by_this_transaction(TransactionId creator) { return TransactionIdIsCurrentTransactionId(creator); }

// 40001 at REPEATABLE READ and SERIALIZABLE: the transaction's snapshot
// may predate the group's lock, and an append must not build on a last
// entry (another transaction's) that the snapshot does not see.
void check_last_entry_visible(const TriggerData* trigger_data, const RunningBalanceState* state,
                              const Datum* group_values, const LastEntry& last, stats::Counters* counters) {
    if (!last.found || !IsolationUsesXactSnapshot() || created_by_this_transaction(last.creator))
        return;
    const TransactionId creator = last.creator;
    const int64 last_seq = last.seq;
    const bool invisible = pg_call([&] {
        return XidInMVCCSnapshot(creator, GetActiveSnapshot()) &&
               !entry_visible_to_snapshot(state, group_values, last_seq);
    });
    if (invisible) {
        Error error = table_error(trigger_data->tg_relation, ERRCODE_T_R_SERIALIZATION_FAILURE,
                                  "could not serialize an append to table " + quoted(table_of(trigger_data)) +
                                      ": the group's last entry was committed after this transaction's snapshot");
        const std::string key = group_key_text(trigger_data, state, group_values);
        if (!key.empty() && may_select_column(trigger_data->tg_relation, state->seq_attnum))
            error.with_detail("Group " + key + " is at seq " + std::to_string(last.seq) +
                              ", which this transaction cannot see.");
        error.with_hint("Retry the transaction.");
        ++counters->n[stats::RB_SERIALIZATION];  // counted before the error, which aborts
        throw error;
    }
}

// ---- arithmetic ---------------------------------------------------------

struct NewBalance {
    Datum value;
    bool overflow;
    bool below_minimum;
    bool previous_not_finite;  // numeric: the group's last balance is NaN or infinite
    bool rounded;              // numeric: the balance's typmod would round the sum
};

NewBalance add_amount(const RunningBalanceState* state, Datum previous, Datum amount) {
    NewBalance result{};
    if (state->family == Family::integer) {
        const int64 before = integer_from_datum(previous, state->balance_type);
        const int64 added = integer_from_datum(amount, state->amount_type);
        int64 after = 0;
        if (pg_add_s64_overflow(before, added, &after) || after < state->balance_min || after > state->balance_max) {
            result.overflow = true;
            return result;
        }
        result.value = integer_to_datum(after, state->balance_type);
        result.below_minimum = state->has_min_balance && added < 0 && after < state->min_balance_integer;
        return result;
    }
    // The amount is finite (on_insert checked). numeric_add and the typmod
    // coercion raise 22003 on overflow; it is reported naming the column.
    const int32 typmod = state->balance_typmod;
    const bool check_rounding = state->amount_may_round;
    const bool has_minimum = state->has_min_balance;
    const Datum minimum = state->min_balance_numeric;
    try {
        result = pg_call([&] {
            NewBalance sum{};
            const Datum exact = DirectFunctionCall2(numeric_add, previous, amount);
            if (compat::numeric_is_special(DatumGetNumeric(exact))) {
                sum.previous_not_finite = true;
                return sum;
            }
            sum.value = typmod >= 0 ? DirectFunctionCall2(numeric, exact, Int32GetDatum(typmod)) : exact;
            sum.rounded = check_rounding && DatumGetInt32(DirectFunctionCall2(numeric_cmp, sum.value, exact)) != 0;
            sum.below_minimum =
                has_minimum &&
                DatumGetInt32(DirectFunctionCall2(numeric_cmp, amount, DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))) < 0 &&
                DatumGetInt32(DirectFunctionCall2(numeric_cmp, sum.value, minimum)) < 0;
            return sum;
        });
    } catch (const PgError& error) {
        if (error.data->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
            throw;
        result = NewBalance{};
        result.overflow = true;
    }
    return result;
}

// Refuses a new balance the ledger cannot take: out of the column's range,
// after a last balance that is not finite, rounded, or below min_balance.
void check_new_balance(const TriggerData* trigger_data, const RunningBalanceState* state, const Datum* group_values,
                       Datum previous, Datum amount, const NewBalance& balance, stats::Counters* counters) {
    if (balance.overflow)
        throw_out_of_range(trigger_data, state->balance_attnum, state->balance_type);
    if (balance.previous_not_finite)
        throw guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                              "the group's last balance in table " + quoted(table_of(trigger_data)) +
                                  " is not a finite number, so no balance can follow it",
                              state->balance_attnum)
            .with_hint("Rows were written with the guard bypassed; repair the chain (raceguard.verify_running_balance()).");
    if (balance.rounded)
        throw_amount_refused(trigger_data, state, amount,
                             "has more decimal places than balance column " +
                                 quoted(column_of(trigger_data, state->balance_attnum)) + " (" +
                                 type_name_with_typmod(NUMERICOID, state->balance_typmod) +
                                 ") keeps: the balance would be rounded");
    if (balance.below_minimum) {
        Error error = guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                                      "append to table " + quoted(table_of(trigger_data)) +
                                          " would take the balance below min_balance",
                                      state->balance_attnum);
        const std::string key = group_key_text(trigger_data, state, group_values);
        if (!key.empty() && may_select_column(trigger_data->tg_relation, state->balance_attnum) &&
            may_select_column(trigger_data->tg_relation, state->amount_attnum))
            error.with_detail("Group " + key + ": balance " + balance_text(state, previous) + " + amount " +
                              value_text(amount, state->amount_type) + " = " + balance_text(state, balance.value) +
                              ", below the minimum " +
                              (state->family == Family::integer ? std::to_string(state->min_balance_integer)
                                                                : balance_text(state, state->min_balance_numeric)) +
                              ".");
        ++counters->n[stats::RB_MIN_BALANCE];
        throw error;
    }
}

// ---- Citus --------------------------------------------------------------

// Whether a row is one of the existing entries that Citus copies into a new
// shard (create_distributed_table, create_reference_table,
// citus_schema_distribute on a ledger that already has its trigger and
// rows): Citus creates the shard with its trigger and copies the rows into
// it in the same transaction, on a connection of its own, where the catalog
// may not show the shard yet. Appended again, in copy order, they would get
// new seq and balances, and the new chains would be self-consistent, so
// verify_running_balance() could not tell. Such a row is refused; no row is
// ever kept unchecked on this evidence (the application name is anyone's to
// set), only through raceguard.restoring. The cost per row is one field.
bool is_citus_copy(const TriggerData* trigger_data, const RunningBalanceState* state) {
    return unlikely(state->citus_installed) &&
           trigger_data->tg_relation->rd_createSubid != InvalidSubTransactionId &&
           (state->citus_shard || citus::is_internal_connection());
}

[[noreturn]] void throw_citus_copy(const TriggerData* trigger_data) {
    throw table_error(trigger_data->tg_relation, ERRCODE_FEATURE_NOT_SUPPORTED,
                      "ledger table " + quoted(table_of(trigger_data)) +
                          " takes no rows into a Citus shard in the transaction that created the shard")
        .with_detail("Citus copies a ledger's existing entries into a new shard in the transaction that creates "
                     "it (create_distributed_table or create_reference_table on a ledger that has its trigger and "
                     "rows): appended again, they would get new seq and balances in copy order. To distribute such "
                     "a ledger, drop its trigger, distribute the table and create the trigger again (docs/citus.md).")
        .with_hint("Drop the trigger, distribute the table and create the trigger in one transaction, then check "
                   "the ledger with raceguard.verify_running_balance(); append once that transaction has "
                   "committed.");
}

// ---- events -------------------------------------------------------------

Datum on_insert(const TriggerData* trigger_data, const RunningBalanceState* state, stats::Counters* counters) {
    if (is_citus_copy(trigger_data, state))
        throw_citus_copy(trigger_data);
    HeapTuple row = trigger_data->tg_trigtuple;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);

    bool is_null = false;
    const Datum amount = heap_getattr(row, state->amount_attnum, columns, &is_null);
    if (is_null)
        throw_null(trigger_data, state->amount_attnum, "an amount");
    if (state->family == Family::numeric &&
        pg_call([&] { return compat::numeric_is_special(DatumGetNumeric(amount)); }))
        throw_amount_refused(trigger_data, state, amount, "is not a finite number: a running balance adds only finite amounts");
    Datum group_values[INDEX_MAX_KEYS];
    for (int g = 0; g < state->group_count; ++g) {
        group_values[g] = heap_getattr(row, state->groups[g].attnum, columns, &is_null);
        if (is_null)
            throw_null(trigger_data, state->groups[g].attnum, "a group for every entry");
    }

    PendingAppend append = begin_append(state, trigger_data->tg_relation);
    const LastEntry last = find_group_last_entry(state, group_values, counters, &append);
    check_last_entry_visible(trigger_data, state, group_values, last, counters);

    const Datum previous = last.found ? last.balance
                           : state->family == Family::integer
                               ? integer_to_datum(state->initial_integer, state->balance_type)
                               : state->initial_numeric;
    const NewBalance balance = add_amount(state, previous, amount);
    check_new_balance(trigger_data, state, group_values, previous, amount, balance, counters);
    // Compared before adding: a bigint seq at its last value would wrap.
    if (last.found && last.seq >= state->seq_max)
        throw_out_of_range(trigger_data, state->seq_attnum, state->seq_type);
    const int64 seq = last.found ? last.seq + 1 : 1;

    remember_append(state, append, seq, balance.value, group_values);
    int replaced[2] = {state->balance_attnum, state->seq_attnum};
    Datum values[2] = {balance.value, integer_to_datum(seq, state->seq_type)};
    bool nulls[2] = {false, false};
    HeapTuple appended = pg_call([&] { return heap_modify_tuple_by_cols(row, columns, 2, replaced, values, nulls); });
    stats::count_append(counters, trigger_data->tg_relation);
    return PointerGetDatum(appended);
}

bool same_image(HeapTuple old_row, HeapTuple new_row, TupleDesc columns, AttrNumber attnum) {
    bool old_null = false;
    bool new_null = false;
    const Datum old_value = heap_getattr(old_row, attnum, columns, &old_null);
    const Datum new_value = heap_getattr(new_row, attnum, columns, &new_null);
    if (old_null || new_null)
        return old_null == new_null;
    const Form_pg_attribute attribute = TupleDescAttr(columns, attnum - 1);
    return pg_call([&] { return datum_image_eq(old_value, new_value, attribute->attbyval, attribute->attlen); });
}

Datum on_update(const TriggerData* trigger_data, const RunningBalanceState* state, stats::Counters* counters) {
    state->tracker->expecting_insert = false;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);
    AttrNumber ledger_columns[INDEX_MAX_KEYS + 3];
    int count = 0;
    ledger_columns[count++] = state->amount_attnum;
    ledger_columns[count++] = state->balance_attnum;
    ledger_columns[count++] = state->seq_attnum;
    for (int g = 0; g < state->group_count; ++g)
        ledger_columns[count++] = state->groups[g].attnum;
    for (int i = 0; i < count; ++i)
        if (!same_image(trigger_data->tg_trigtuple, trigger_data->tg_newtuple, columns, ledger_columns[i])) {
            ++counters->n[stats::RB_UPDATES];
            throw guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                                  "cannot change column " + quoted(column_of(trigger_data, ledger_columns[i])) +
                                      " of ledger table " + quoted(table_of(trigger_data)) +
                                      ": its entries are history",
                                  ledger_columns[i])
                .with_hint("Append a correcting entry instead.");
        }
    return PointerGetDatum(trigger_data->tg_newtuple);
}

}  // namespace

Datum running_balance_trigger(FunctionCallInfo fcinfo) {
    const TriggerData* trigger_data = require_trigger_call(fcinfo, RUNNING_BALANCE_GUARD);
    // A restore that keeps dumped entries (running_balance_restore.hpp).
    if (unlikely(restoring_setting) && keep_restored_entry(fcinfo, trigger_data)) {
        // A row kept as dumped is written around the lookup.
        shared_last_entries::note_restored_row();
        return PointerGetDatum(trigger_data->tg_trigtuple);
    }
    const auto* state = trigger_state<RunningBalanceState>(fcinfo, trigger_data, build_running_balance_state);
    stats::Counters* counters = stats::trigger_counters(fcinfo, stats::Guard::running_balance);
    if (TRIGGER_FIRED_BY_INSERT(trigger_data->tg_event))
        return on_insert(trigger_data, state, counters);
    if (TRIGGER_FIRED_BY_UPDATE(trigger_data->tg_event))
        return on_update(trigger_data, state, counters);
    ++counters->n[stats::RB_DELETES];
    throw guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                          "cannot delete from ledger table " + quoted(table_of(trigger_data)) +
                              ": its entries are history",
                          InvalidAttrNumber)
        .with_hint("Append a correcting entry instead.");
}

}  // namespace raceguard
