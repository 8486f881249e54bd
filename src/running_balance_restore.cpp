#include "running_balance_restore.hpp"

#include "compat.hpp"
#include "running_balance.hpp"
#include "running_balance_lookup.hpp"
#include "running_balance_state.hpp"
#include "stats.hpp"
#include "trigger_cache.hpp"
#include "trigger_plumbing.hpp"

#include <string>

namespace raceguard {

bool restoring_setting = false;

namespace {

constexpr const char* SETTING_NAME = "raceguard.restoring";

// What the restore path needs of a trigger: where a row carries its seq and
// balance. Built like a guard's state, without the chain index, which a
// parallel restore may not have made yet.
struct RestoredEntryColumns {
    AttrNumber balance_attnum;
    AttrNumber seq_attnum;
    Oid seq_type;
};

void* build_restored_entry_columns(const TriggerData* trigger_data, MemoryContext into) {
    const TriggerDefinition definition = describe_fired_trigger(trigger_data, RUNNING_BALANCE_GUARD);
    const RunningBalanceArguments arguments = parse_running_balance_arguments(definition);
    const ResolvedColumn balance = resolve_written_column(definition, arguments.balance);
    const ResolvedColumn seq = resolve_written_column(definition, arguments.seq);
    if (seq.type != INT2OID && seq.type != INT4OID && seq.type != INT8OID)
        throw column_type_error(definition, arguments.seq, seq.type, "smallint, integer or bigint");
    auto* columns = pg_call([&] {
        return static_cast<RestoredEntryColumns*>(MemoryContextAllocZero(into, sizeof(RestoredEntryColumns)));
    });
    columns->balance_attnum = balance.attnum;
    columns->seq_attnum = seq.attnum;
    columns->seq_type = seq.type;
    return columns;
}

// Whether the row carries what a dumped entry carries: a balance, and a seq
// of at least 1 (an entry's seq starts at 1; a column's DEFAULT 0 is not one).
bool carries_entry(const TriggerData* trigger_data, const RestoredEntryColumns* columns) {
    const TupleDesc descriptor = RelationGetDescr(trigger_data->tg_relation);
    bool balance_null = true;
    bool seq_null = true;
    heap_getattr(trigger_data->tg_trigtuple, columns->balance_attnum, descriptor, &balance_null);
    const Datum seq = heap_getattr(trigger_data->tg_trigtuple, columns->seq_attnum, descriptor, &seq_null);
    if (balance_null || seq_null)
        return false;
    const int64 seq_value = columns->seq_type == INT2OID   ? DatumGetInt16(seq)
                            : columns->seq_type == INT4OID ? DatumGetInt32(seq)
                                                           : DatumGetInt64(seq);
    return seq_value >= 1;
}

// What one statement decided, so that the privilege is looked up and the
// WARNING raised once per statement, not per row.
struct StatementVerdict {
    TimestampTz transaction_start;
    TimestampTz statement_start;
    CommandId command;
    Oid user;
    bool user_may_set;
    bool announced_kept;
    bool announced_ignored;
};
StatementVerdict verdict{};

void start_statement_verdict() {
    const TimestampTz transaction_start = GetCurrentTransactionStartTimestamp();
    const TimestampTz statement_start = GetCurrentStatementStartTimestamp();
    const CommandId command = GetCurrentCommandId(false);
    if (verdict.transaction_start == transaction_start && verdict.statement_start == statement_start &&
        verdict.command == command)
        return;
    verdict = StatementVerdict{};
    verdict.transaction_start = transaction_start;
    verdict.statement_start = statement_start;
    verdict.command = command;
    verdict.user = InvalidOid;
}

void announce_kept(const TriggerData* trigger_data) {
    const std::string table = quoted(RelationGetRelationName(trigger_data->tg_relation));
    const std::string message = std::string(SETTING_NAME) + " is on: ledger " + table +
                                " keeps the seq and balance that its restored rows carry, unchecked";
    pg_call([&] {
        ereport(WARNING,
                (errmsg_internal("%s", message.c_str()),
                 errdetail("Rows that carry both their seq and their balance are kept as they are; any other row "
                           "is appended as usual."),
                 errhint("After the restore, check each ledger with raceguard.verify_running_balance(), and turn "
                         "raceguard.restoring off for anything but a restore.")));
    });
}

void announce_ignored(const TriggerData* trigger_data, const std::string& reason) {
    const std::string table = quoted(RelationGetRelationName(trigger_data->tg_relation));
    const std::string message = std::string(SETTING_NAME) + " is on but not honoured here: " + reason;
    const std::string detail = "Rows of ledger " + table + " are appended as usual: their seq and balance are "
                               "computed, not kept.";
    pg_call([&] {
        ereport(WARNING, (errmsg_internal("%s", message.c_str()), errdetail_internal("%s", detail.c_str()),
                          errhint("Only a superuser, or a role granted SET on raceguard.restoring, keeps restored "
                                  "rows, in its own session and not through a SECURITY DEFINER function.")));
    });
}

}  // namespace

void define_restoring_setting() {
    DefineCustomBoolVariable(SETTING_NAME,
                             "Keeps the seq and balance of ledger rows that carry them, as a restore loads them.",
                             "Only for pg_restore and dump scripts: a superuser, or a role granted SET on it, sets "
                             "it; never honoured inside SECURITY DEFINER functions.",
                             &restoring_setting, false, PGC_SUSET, 0, nullptr, nullptr, nullptr);
}

bool keep_restored_entry(FunctionCallInfo fcinfo, const TriggerData* trigger_data) {
    // Only a BEFORE ROW INSERT has a row to keep; anything else goes the
    // usual way, which refuses a firing mode the guard cannot serve.
    const ::TriggerEvent event = trigger_data->tg_event;
    if (!TRIGGER_FIRED_FOR_ROW(event) || !TRIGGER_FIRED_BEFORE(event) || !TRIGGER_FIRED_BY_INSERT(event) ||
        trigger_data->tg_trigtuple == nullptr)
        return false;
    // The columns from the guard's own state when it is built (no switching
    // back and forth for a session that also appends), else from the
    // arguments alone.
    const auto* entry = static_cast<const TriggerCacheEntry*>(fcinfo->flinfo->fn_extra);
    const RunningBalanceState* guard_state = nullptr;
    RestoredEntryColumns columns{};
    if (entry != nullptr && entry->valid && entry->builder == build_running_balance_state &&
        entry->trigger_oid == trigger_data->tg_trigger->tgoid) {
        guard_state = static_cast<const RunningBalanceState*>(entry->state);
        columns = RestoredEntryColumns{guard_state->balance_attnum, guard_state->seq_attnum, guard_state->seq_type};
    } else {
        columns = *trigger_state<RestoredEntryColumns>(fcinfo, trigger_data, build_restored_entry_columns);
    }
    if (!carries_entry(trigger_data, &columns))
        return false;

    pg_call([] { start_statement_verdict(); });
    Oid user = InvalidOid;
    int security_context = 0;
    GetUserIdAndSecContext(&user, &security_context);
    // Definer rights are not inherited: a SECURITY DEFINER function (or a
    // maintenance command run as a table's owner) never keeps a row, whoever
    // owns it and whatever its caller set.
    if (security_context & (SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION)) {
        if (!verdict.announced_ignored) {
            verdict.announced_ignored = true;
            announce_ignored(trigger_data, "inside a SECURITY DEFINER function or a security-restricted operation");
        }
        return false;
    }
    if (verdict.user != user) {
        verdict.user = user;
        verdict.user_may_set = pg_call([&] { return superuser_arg(user) || compat::may_set_parameter(SETTING_NAME, user); });
    }
    if (!verdict.user_may_set) {
        if (!verdict.announced_ignored) {
            verdict.announced_ignored = true;
            const char* name = pg_call([&] { return GetUserNameFromId(user, true); });
            announce_ignored(trigger_data, "role " + quoted(name != nullptr ? name : std::to_string(user)) +
                                               " may not set " + SETTING_NAME);
        }
        return false;
    }
    if (!verdict.announced_kept) {
        verdict.announced_kept = true;
        announce_kept(trigger_data);
    }
    // What this backend knew of the group's last entry may no longer hold:
    // the next append reads it again.
    if (guard_state != nullptr)
        guard_state->tracker->expecting_insert = false;
    ++stats::trigger_counters(fcinfo, stats::Guard::running_balance)->n[stats::RB_RESTORED];
    return true;
}

}  // namespace raceguard
