// raceguard.immutable_once_set(): once a listed column holds a value, an
// UPDATE may keep it (same stored image, as datum_image_eq compares it) or,
// with allow_unset=true, set it back to NULL; anything else is a check
// violation named after the trigger. NULL -> value is always allowed; INSERT
// and DELETE pass through.
//
// At READ COMMITTED the loser of a race to set a NULL column waits for the
// winner's row lock and then sees the winner's value as OLD, so it fails
// here; at REPEATABLE READ PostgreSQL rejects it before the trigger runs.
#include "immutable_once_set.hpp"

#include "stats.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "access/detoast.h"
#include "utils/datum.h"
}

#include <cstring>
#include <string>
#include <vector>

namespace raceguard {

namespace {

// BEFORE or AFTER (an AFTER or deferred constraint trigger sees the final
// row); INSERT and DELETE may be in the event list and are no-ops.
constexpr FiringRules IMMUTABLE_ONCE_SET_FIRING = {true, true, ON_INSERT | ON_UPDATE | ON_DELETE};

void* build_immutable_once_set_state(const TriggerData* trigger_data, MemoryContext into) {
    const TriggerDefinition definition = describe_fired_trigger(trigger_data, IMMUTABLE_ONCE_SET_GUARD);
    const int argument_count = static_cast<int>(definition.arguments.size());
    auto* state = pg_call([&] {
        return static_cast<ImmutableOnceSetState*>(MemoryContextAllocZero(into, sizeof(ImmutableOnceSetState)));
    });
    auto* columns = pg_call([&] {
        return static_cast<WriteOnceColumn*>(
            MemoryContextAllocZero(into, sizeof(WriteOnceColumn) * (argument_count > 0 ? argument_count : 1)));
    });
    *state = validate_immutable_once_set(definition, columns);
    return state;
}

// Two on-disk TOAST pointers to the same value: equal without reading it.
bool same_toast_pointer(Datum old_value, Datum new_value) {
    const auto* old_varlena = reinterpret_cast<const struct varlena*>(DatumGetPointer(old_value));
    const auto* new_varlena = reinterpret_cast<const struct varlena*>(DatumGetPointer(new_value));
    if (!VARATT_IS_EXTERNAL_ONDISK(old_varlena) || !VARATT_IS_EXTERNAL_ONDISK(new_varlena))
        return false;
    varatt_external old_pointer;
    varatt_external new_pointer;
    VARATT_EXTERNAL_GET_POINTER(old_pointer, old_varlena);
    VARATT_EXTERNAL_GET_POINTER(new_pointer, new_varlena);
    return old_pointer.va_toastrelid == new_pointer.va_toastrelid &&
           old_pointer.va_valueid == new_pointer.va_valueid;
}

bool unchanged(const WriteOnceColumn& column, Datum old_value, Datum new_value) {
    if (column.by_value)
        return old_value == new_value;  // what datum_image_eq does for these, without a call
    if (column.type_length > 0)
        return std::memcmp(DatumGetPointer(old_value), DatumGetPointer(new_value), column.type_length) == 0;
    if (column.type_length == -1 && same_toast_pointer(old_value, new_value))
        return true;
    // Variable length: may detoast, so through the boundary.
    return pg_call([&] { return datum_image_eq(old_value, new_value, column.by_value, column.type_length); });
}

[[noreturn]] void throw_overwrite(const TriggerData* trigger_data, const ImmutableOnceSetState* state,
                                  const WriteOnceColumn& column, Datum old_value, Datum new_value,
                                  bool new_is_null) {
    Relation relation = trigger_data->tg_relation;
    const std::string name =
        NameStr(TupleDescAttr(RelationGetDescr(relation), column.attnum - 1)->attname);
    const std::string table = RelationGetRelationName(relation);
    const char* trigger_name = trigger_data->tg_trigger->tgname;
    Error error = table_error(relation, ERRCODE_CHECK_VIOLATION,
                              std::string(new_is_null ? "cannot unset" : "cannot change") + " column \"" + name +
                                  "\" of table \"" + table + "\": it is already set, and trigger \"" +
                                  trigger_name + "\" makes it write-once");
    error.with_column(name).with_constraint(trigger_name);
    if (may_select_column(relation, column.attnum))
        error.with_detail("The stored value is " + value_text(old_value, column.type) + "; the update sent " +
                          (new_is_null ? std::string("NULL") : value_text(new_value, column.type)) + ".");
    if (new_is_null && !state->allow_unset)
        error.with_hint("To allow setting it back to NULL, recreate the trigger with 'allow_unset=true'.");
    throw error;
}

void check_update(const TriggerData* trigger_data, const ImmutableOnceSetState* state, stats::Counters* counters) {
    ++counters->n[stats::IO_ROWS];
    HeapTuple old_row = trigger_data->tg_trigtuple;
    HeapTuple new_row = trigger_data->tg_newtuple;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);
    for (int i = 0; i < state->column_count; ++i) {
        const WriteOnceColumn& column = state->columns[i];
        bool old_is_null = false;
        const Datum old_value = heap_getattr(old_row, column.attnum, columns, &old_is_null);
        if (old_is_null)
            continue;  // not set yet: anything goes
        bool new_is_null = false;
        const Datum new_value = heap_getattr(new_row, column.attnum, columns, &new_is_null);
        if (new_is_null ? state->allow_unset : unchanged(column, old_value, new_value))
            continue;
        ++counters->n[stats::IO_VIOLATIONS];  // counted before the error, which aborts
        throw_overwrite(trigger_data, state, column, old_value, new_value, new_is_null);
    }
}

}  // namespace

namespace {

struct ImmutableOnceSetArguments {
    std::vector<std::string> columns;
    bool allow_unset;
};

ImmutableOnceSetArguments parse_immutable_once_set_arguments(const TriggerDefinition& definition) {
    const TriggerArguments arguments = parse_arguments(definition, {"allow_unset"});
    if (arguments.columns.empty())
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string(definition.guard) + " needs at least one column")
            .with_hint("List the write-once columns: raceguard.immutable_once_set('owner_id').");
    const std::string* allow_unset = arguments.option("allow_unset");
    return ImmutableOnceSetArguments{
        arguments.columns, allow_unset != nullptr && parse_bool_option(definition, "allow_unset", *allow_unset)};
}

GuardDescription describe_immutable_once_set(const TriggerDefinition& definition) {
    const ImmutableOnceSetArguments parsed = parse_immutable_once_set_arguments(definition);
    GuardDescription description;
    description.columns = parsed.columns;
    description.options = {{"allow_unset", json_bool(parsed.allow_unset)}};
    return description;
}

}  // namespace

ImmutableOnceSetState validate_immutable_once_set(const TriggerDefinition& definition,
                                                  WriteOnceColumn* columns) {
    check_firing(definition, IMMUTABLE_ONCE_SET_FIRING);
    const ImmutableOnceSetArguments arguments = parse_immutable_once_set_arguments(definition);
    ImmutableOnceSetState state{};
    for (const std::string& name : arguments.columns) {
        const ResolvedColumn resolved = resolve_column(definition, name);
        for (int i = 0; i < state.column_count; ++i)
            if (columns[i].attnum == resolved.attnum)
                throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                       "column \"" + name + "\" is listed more than once");
        const Form_pg_attribute attribute = TupleDescAttr(definition.columns, resolved.attnum - 1);
        // A BEFORE trigger sees a stored generated column before PostgreSQL
        // computes it (NEW still holds the old value), and no trigger sees a
        // virtual one's value: a change would pass unchecked.
        if (attribute->attgenerated != '\0') {
            const bool stored = attribute->attgenerated == ATTRIBUTE_GENERATED_STORED;
            if (!stored || TRIGGER_FOR_BEFORE(definition.trigger_type))
                throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                                       "column " + quoted(name) +
                                           (stored ? " is a generated column, which a BEFORE trigger sees before "
                                                     "PostgreSQL computes it"
                                                   : " is a virtual generated column, whose value no trigger sees") +
                                           ", so a change to it would pass unchecked")
                    .with_column(name)
                    .with_hint("Fire the trigger AFTER UPDATE (it sees a STORED column's computed value), or guard "
                               "the columns the value is computed from.");
        }
        columns[state.column_count++] =
            WriteOnceColumn{resolved.attnum, resolved.type, attribute->attlen, attribute->attbyval};
    }
    state.columns = columns;
    state.allow_unset = arguments.allow_unset;
    return state;
}

Datum immutable_once_set_trigger(FunctionCallInfo fcinfo) {
    const TriggerData* trigger_data = require_trigger_call(fcinfo, IMMUTABLE_ONCE_SET_GUARD);
    const auto* state = trigger_state<ImmutableOnceSetState>(fcinfo, trigger_data, build_immutable_once_set_state);
    if (TRIGGER_FIRED_BY_UPDATE(trigger_data->tg_event))
        check_update(trigger_data, state, stats::trigger_counters(fcinfo, stats::Guard::immutable_once_set));
    if (TRIGGER_FIRED_AFTER(trigger_data->tg_event))
        return PointerGetDatum(nullptr);
    return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigger_data->tg_event) ? trigger_data->tg_newtuple
                                                                           : trigger_data->tg_trigtuple);
}

extern const GuardKind IMMUTABLE_ONCE_SET_KIND = {"immutable_once_set", build_immutable_once_set_state, describe_immutable_once_set};

}  // namespace raceguard
