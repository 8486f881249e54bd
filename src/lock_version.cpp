// raceguard.lock_version(): optimistic locking enforced by a trigger.
//
// INSERT: a NULL version becomes 1. UPDATE, with o the stored version and n
// the one in the new row (NULL counts as 0):
//   n = o      the client echoed the version it read: store o + 1;
//   n = o + 1  the client (an ORM) bumped it already: accept;
//   otherwise  a stale write (40001).
// One refinement makes the echo safe at READ COMMITTED: when the UPDATE waited
// for another transaction's row lock and proceeds on the newer row, OLD is a
// version the client cannot have read (it is not in the statement's
// snapshot), so an assigned n = o there is an old pre-bump, hence stale; only
// a relative increment (lock_version = lock_version + 1) gives n = o + 1.
// Whatever rule rejects a write, its DETAIL says so when OLD changed after
// the statement began: that is looked up on the error path only.
#include "lock_version.hpp"

#include "compat.hpp"
#include "stats.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "access/tupmacs.h"
}

#include <string>

namespace raceguard {

namespace {

constexpr FiringRules LOCK_VERSION_FIRING = {true, false, ON_INSERT | ON_UPDATE};

int64 version_from_datum(Datum value, Oid type) {
    switch (type) {
        case INT2OID: return DatumGetInt16(value);
        case INT4OID: return DatumGetInt32(value);
        default: return DatumGetInt64(value);
    }
}

Datum version_to_datum(int64 version, Oid type) {
    switch (type) {
        case INT2OID: return Int16GetDatum(static_cast<int16>(version));
        case INT4OID: return Int32GetDatum(static_cast<int32>(version));
        default: return Int64GetDatum(version);
    }
}

// The version stored in a row; NULL counts as 0.
int64 version_of(HeapTuple row, TupleDesc columns, const LockVersionState* state) {
    bool is_null = false;
    const Datum value = heap_getattr(row, state->version_attnum, columns, &is_null);
    return is_null ? 0 : version_from_datum(value, state->version_type);
}

// Whether the version sits at its cached fixed offset inside this very
// tuple. A row written before ALTER TABLE ... ADD COLUMN holds fewer
// attributes than the table has (the added column's value lives in the
// descriptor's missing value), and an earlier BEFORE trigger returning OLD
// hands such a row over as the new one: there the offset is past its end.
bool version_at_fixed_offset(HeapTuple row, Form_pg_attribute attribute, int offset) {
    if (HeapTupleHasNulls(row) || offset < 0 || HeapTupleHeaderGetNatts(row->t_data) < attribute->attnum)
        return false;
    const size_t end = static_cast<size_t>(row->t_data->t_hoff) + static_cast<size_t>(offset) +
                       static_cast<size_t>(attribute->attlen);
    return end <= row->t_len;
}

HeapTuple with_version(HeapTuple row, TupleDesc columns, const LockVersionState* state, int64 version) {
    Datum value = version_to_datum(version, state->version_type);
    const Form_pg_attribute attribute = TupleDescAttr(columns, state->version_attnum - 1);
    const int offset = compat::cached_attribute_offset(columns, state->version_attnum - 1);
    if (version_at_fixed_offset(row, attribute, offset)) {
        // The common case, and the bulk UPDATE's: the version sits at a fixed
        // offset (heap_getattr just worked it out), so a copy with the new
        // value written there is the modified row, without deforming and
        // forming every column.
        HeapTuple copy = pg_call([&] { return heap_copytuple(row); });
        char* field = reinterpret_cast<char*>(copy->t_data) + copy->t_data->t_hoff + offset;
        store_att_byval(field, value, attribute->attlen);
        return copy;
    }
    // Anything else, the short row included: heap_modify_tuple_by_cols
    // deforms it (missing attributes come from the descriptor) and forms a
    // full row.
    int column = state->version_attnum;
    bool is_null = false;
    return pg_call([&] { return heap_modify_tuple_by_cols(row, columns, 1, &column, &value, &is_null); });
}

enum class StaleKind { mismatch, changed_while_waiting, blind_write };

const char* column_name(const TriggerData* trigger_data, const LockVersionState* state) {
    return NameStr(TupleDescAttr(RelationGetDescr(trigger_data->tg_relation), state->version_attnum - 1)->attname);
}

// kind says which rule rejected the write; row_changed says whether OLD was
// committed after the statement began (the UPDATE waited for it and went on
// with the newer row), which the DETAIL reports whatever the rule.
[[noreturn]] void throw_stale_write(const TriggerData* trigger_data, const LockVersionState* state,
                                    StaleKind kind, bool row_changed, int64 stored, int64 sent) {
    Relation relation = trigger_data->tg_relation;
    const std::string column = column_name(trigger_data, state);
    const std::string table = RelationGetRelationName(relation);
    const bool show_versions = may_select_column(relation, state->version_attnum);
    std::string message = "stale write to table \"" + table + "\": ";
    std::string hint = "Re-read the row and retry the update with its current \"" + column + "\".";
    if (kind == StaleKind::blind_write) {
        message += "the UPDATE does not set column \"" + column + "\", and strict=true rejects blind writes";
        hint = "Set \"" + column + "\" to the version you read (or to that version + 1), "
               "or use WHERE \"" + column + "\" = <version read>.";
    } else if (show_versions && kind == StaleKind::changed_while_waiting) {
        message += "another transaction changed the row to \"" + column + "\" " + std::to_string(stored) +
                   " while this update waited for it, and the update sent " + std::to_string(sent);
    } else if (show_versions) {
        message += "column \"" + column + "\" is " + std::to_string(stored) + " in the stored row, the update sent " +
                   std::to_string(sent);
    } else {
        message += "the update's \"" + column + "\" is not the stored row's current version";
    }
    Error error = table_error(relation, state->stale_sqlstate, message);
    error.with_column(column).with_hint(hint);
    if (row_changed && kind == StaleKind::blind_write)
        error.with_detail("Another transaction updated the row after this statement began.");
    else if (row_changed)
        error.with_detail("Another transaction updated the row after this statement began, so the version "
                          "sent cannot have been read from the current row.");
    if (state->stale_sqlstate == ERRCODE_CHECK_VIOLATION)
        error.with_constraint(trigger_data->tg_trigger->tgname);
    throw error;
}

[[noreturn]] void throw_version_overflow(const TriggerData* trigger_data, const LockVersionState* state) {
    const std::string column = column_name(trigger_data, state);
    Error error = table_error(trigger_data->tg_relation, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                              "column \"" + column + "\" of table \"" +
                                  RelationGetRelationName(trigger_data->tg_relation) +
                                  "\" cannot go past " + std::to_string(state->max_version) + ", the maximum of " +
                                  type_name(state->version_type));
    error.with_column(column).with_constraint(trigger_data->tg_trigger->tgname);
    error.with_hint("Retype the column to a wider integer type (ALTER COLUMN ... TYPE bigint).");
    throw error;
}

void* build_lock_version_state(const TriggerData* trigger_data, MemoryContext into) {
    const LockVersionState validated =
        validate_lock_version(describe_fired_trigger(trigger_data, LOCK_VERSION_GUARD));
    auto* state = pg_call([&] { return static_cast<LockVersionState*>(MemoryContextAlloc(into, sizeof(LockVersionState))); });
    *state = validated;
    return state;
}

Datum on_insert(const TriggerData* trigger_data, const LockVersionState* state) {
    HeapTuple row = trigger_data->tg_trigtuple;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);
    bool is_null = false;
    heap_getattr(row, state->version_attnum, columns, &is_null);
    return PointerGetDatum(is_null ? with_version(row, columns, state, 1) : row);
}

Datum on_update(const TriggerData* trigger_data, const LockVersionState* state, stats::Counters* counters) {
    HeapTuple old_row = trigger_data->tg_trigtuple;
    HeapTuple new_row = trigger_data->tg_newtuple;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);
    const int64 stored = version_of(old_row, columns, state);
    const int64 sent = version_of(new_row, columns, state);
    const bool assigned = bms_is_member(state->version_attnum - FirstLowInvalidHeapAttributeNumber,
                                        trigger_data->tg_updatedcols);

    // Each outcome is counted before it is reported: a rejection's count
    // outlives the error (the statistics are flushed at abort too).
    ++counters->n[stats::LV_ROWS];
    if (state->strict && !assigned) {
        ++counters->n[stats::LV_BLIND];
        throw_stale_write(trigger_data, state, StaleKind::blind_write, row_changed_while_waiting(old_row), stored,
                          sent);
    }
    if (stored < state->max_version && sent == stored + 1) {
        ++counters->n[stats::LV_BUMPED];
        return PointerGetDatum(new_row);
    }
    if (sent != stored) {
        ++counters->n[stats::LV_STALE];
        throw_stale_write(trigger_data, state, StaleKind::mismatch, row_changed_while_waiting(old_row), stored, sent);
    }
    if (assigned && row_changed_while_waiting(old_row)) {
        ++counters->n[stats::LV_STALE];
        throw_stale_write(trigger_data, state, StaleKind::changed_while_waiting, true, stored, sent);
    }
    if (stored >= state->max_version) {
        ++counters->n[stats::LV_OVERFLOW];
        throw_version_overflow(trigger_data, state);
    }
    HeapTuple bumped = with_version(new_row, columns, state, stored + 1);
    ++counters->n[stats::LV_BUMPED];
    return PointerGetDatum(bumped);
}

}  // namespace

namespace {

// The arguments, parsed and checked without looking at the table.
struct LockVersionArguments {
    std::string column;
    bool strict;
    bool stale_is_check_violation;  // sqlstate=23514
};

LockVersionArguments parse_lock_version_arguments(const TriggerDefinition& definition) {
    const TriggerArguments arguments = parse_arguments(definition, {"strict", "sqlstate"});
    if (arguments.columns.size() > 1)
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string(definition.guard) + " takes at most one column, got " +
                                   std::to_string(arguments.columns.size()));
    LockVersionArguments parsed;
    parsed.column = arguments.columns.empty() ? "lock_version" : arguments.columns.front();
    const std::string* strict = arguments.option("strict");
    parsed.strict = strict != nullptr && parse_bool_option(definition, "strict", *strict);
    const std::string* sqlstate = arguments.option("sqlstate");
    if (sqlstate != nullptr && *sqlstate != "23514" && *sqlstate != "40001")
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               "option \"sqlstate\" must be 40001 or 23514, not \"" + *sqlstate + "\"");
    parsed.stale_is_check_violation = sqlstate != nullptr && *sqlstate == "23514";
    return parsed;
}

GuardDescription describe_lock_version(const TriggerDefinition& definition) {
    const LockVersionArguments parsed = parse_lock_version_arguments(definition);
    GuardDescription description;
    description.columns.push_back(parsed.column);
    description.options = {{"strict", json_bool(parsed.strict)},
                           {"sqlstate", json_string(parsed.stale_is_check_violation ? "23514" : "40001")}};
    return description;
}

}  // namespace

LockVersionState validate_lock_version(const TriggerDefinition& definition) {
    check_firing(definition, LOCK_VERSION_FIRING);
    const LockVersionArguments arguments = parse_lock_version_arguments(definition);
    const ResolvedColumn column = resolve_written_column(definition, arguments.column);

    LockVersionState state{};
    state.version_attnum = column.attnum;
    state.version_type = column.type;
    switch (column.type) {
        case INT2OID: state.max_version = PG_INT16_MAX; break;
        case INT4OID: state.max_version = PG_INT32_MAX; break;
        case INT8OID: state.max_version = PG_INT64_MAX; break;
        default: throw column_type_error(definition, arguments.column, column.type, "smallint, integer or bigint");
    }
    state.strict = arguments.strict;
    state.stale_sqlstate = arguments.stale_is_check_violation ? ERRCODE_CHECK_VIOLATION : ERRCODE_T_R_SERIALIZATION_FAILURE;
    return state;
}

Datum lock_version_trigger(FunctionCallInfo fcinfo) {
    const TriggerData* trigger_data = require_trigger_call(fcinfo, LOCK_VERSION_GUARD);
    const auto* state = trigger_state<LockVersionState>(fcinfo, trigger_data, build_lock_version_state);
    if (TRIGGER_FIRED_BY_INSERT(trigger_data->tg_event))
        return on_insert(trigger_data, state);
    return on_update(trigger_data, state, stats::trigger_counters(fcinfo, stats::Guard::lock_version));
}

extern const GuardKind LOCK_VERSION_KIND = {"lock_version", build_lock_version_state, describe_lock_version};

}  // namespace raceguard
