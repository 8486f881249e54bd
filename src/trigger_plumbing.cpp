#include "trigger_plumbing.hpp"

extern "C" {
#include "access/genam.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/heap.h"
#include "catalog/indexing.h"
#include "utils/fmgroids.h"
}

namespace raceguard {

namespace {

std::string timing_of(int16 trigger_type) {
    if (TRIGGER_FOR_BEFORE(trigger_type))
        return "BEFORE";
    if (TRIGGER_FOR_INSTEAD(trigger_type))
        return "INSTEAD OF";
    return "AFTER";
}

std::string allowed_timings(const FiringRules& rules) {
    if (rules.before_allowed && rules.after_allowed)
        return "BEFORE or AFTER";
    return rules.before_allowed ? "BEFORE" : "AFTER";
}

std::string event_list(unsigned events, const char* conjunction) {
    static const std::pair<unsigned, const char*> names[] = {
        {ON_INSERT, "INSERT"}, {ON_UPDATE, "UPDATE"}, {ON_DELETE, "DELETE"}, {ON_TRUNCATE, "TRUNCATE"}};
    std::vector<const char*> present;
    for (const auto& [bit, name] : names)
        if (events & bit)
            present.push_back(name);
    std::string text;
    for (size_t i = 0; i < present.size(); ++i) {
        if (i > 0)
            text += (i + 1 == present.size()) ? std::string(" ") + conjunction + " " : ", ";
        text += present[i];
    }
    return text;
}

unsigned events_of(int16 trigger_type) {
    unsigned events = 0;
    if (TRIGGER_FOR_INSERT(trigger_type))
        events |= ON_INSERT;
    if (TRIGGER_FOR_UPDATE(trigger_type))
        events |= ON_UPDATE;
    if (TRIGGER_FOR_DELETE(trigger_type))
        events |= ON_DELETE;
    if (TRIGGER_FOR_TRUNCATE(trigger_type))
        events |= ON_TRUNCATE;
    return events;
}

}  // namespace

TriggerDefinition describe_trigger(const char* guard, Relation relation, const Trigger* trigger) {
    TriggerDefinition definition;
    definition.guard = guard;
    definition.trigger_name = trigger->tgname;
    const char* schema = pg_call([&] { return get_namespace_name(RelationGetNamespace(relation)); });
    definition.schema_name = schema != nullptr ? schema : "";
    definition.table_name = RelationGetRelationName(relation);
    definition.trigger_type = trigger->tgtype;
    definition.update_of_columns = trigger->tgnattr > 0;
    definition.has_when_condition = trigger->tgqual != nullptr;
    for (int i = 0; i < trigger->tgnargs; ++i)
        definition.arguments.emplace_back(trigger->tgargs[i]);
    definition.columns = RelationGetDescr(relation);
    return definition;
}

TriggerDefinition describe_fired_trigger(const TriggerData* trigger_data, const char* guard) {
    return describe_trigger(guard, trigger_data->tg_relation, trigger_data->tg_trigger);
}

OpenTrigger open_trigger(Oid trigger_oid) {
    return pg_call([&] {
        OpenTrigger result{};
        const Oid relid = trigger_table(trigger_oid);
        if (!OidIsValid(relid))
            return result;
        result.relation = table_open(relid, AccessShareLock);
        const TriggerDesc* descriptor = result.relation->trigdesc;
        for (int i = 0; descriptor != nullptr && i < descriptor->numtriggers; ++i)
            if (descriptor->triggers[i].tgoid == trigger_oid)
                result.trigger = &descriptor->triggers[i];
        return result;
    });
}

void close_trigger(const OpenTrigger& open) {
    if (open.relation != nullptr)
        pg_call([&] { table_close(open.relation, AccessShareLock); });
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

std::string quoted_value(const std::string& text) {
    constexpr size_t shown = 60;
    if (text.size() <= shown)
        return quoted(text);
    // Cut at a character boundary (UTF-8 continuation bytes are 10xxxxxx).
    size_t cut = shown;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
        --cut;
    return quoted(text.substr(0, cut) + "...") + " (" + std::to_string(text.size()) + " bytes)";
}

Error definition_error(const TriggerDefinition& definition, int sqlstate, const std::string& what) {
    Error error(sqlstate, "trigger " + quoted(definition.trigger_name) + " on table " +
                              quoted(definition.table_name) + ": " + what);
    error.with_table(definition.schema_name, definition.table_name);
    return error;
}

Error table_error(Relation relation, int sqlstate, std::string message) {
    Error error(sqlstate, std::move(message));
    const char* schema = pg_call([&] { return get_namespace_name(RelationGetNamespace(relation)); });
    error.with_table(schema != nullptr ? schema : "", RelationGetRelationName(relation));
    return error;
}

void check_firing(const TriggerDefinition& definition, const FiringRules& rules) {
    const int16 type = definition.trigger_type;
    const std::string guard = definition.guard;
    if (!TRIGGER_FOR_ROW(type))
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               guard + " must be fired FOR EACH ROW, not FOR EACH STATEMENT");
    const bool timing_ok = (TRIGGER_FOR_BEFORE(type) && rules.before_allowed) ||
                           (TRIGGER_FOR_AFTER(type) && rules.after_allowed);
    if (!timing_ok)
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               guard + " must be fired " + allowed_timings(rules) + ", not " +
                                   timing_of(type));
    const unsigned unsupported = events_of(type) & ~rules.events_allowed;
    if (unsupported != 0)
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               guard + " must be fired on " + event_list(rules.events_allowed, "or") +
                                   ", not on " + event_list(unsupported, "or"));
    // A row the condition skips, or an UPDATE that does not name a listed
    // column (while an earlier BEFORE trigger changes one), is written
    // unguarded: for running_balance a row outside the chain or a rewritten
    // balance, for the others the lost update or overwrite they exist to stop.
    if (definition.has_when_condition)
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               guard + " must be fired for every row, without a WHEN condition")
            .with_hint("Create the trigger without WHEN: the rows the condition skips would pass unguarded.");
    if (definition.update_of_columns)
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               guard + " must be fired on every UPDATE, not on UPDATE OF a column list")
            .with_hint("Leave out the column list: an UPDATE that does not name a listed column would pass "
                       "unguarded, even when an earlier BEFORE trigger changes that column.");
}

const std::string* TriggerArguments::option(std::string_view key) const {
    for (const auto& [name, value] : options)
        if (name == key)
            return &value;
    return nullptr;
}

TriggerArguments parse_arguments(const TriggerDefinition& definition,
                                 std::initializer_list<std::string_view> known_options) {
    TriggerArguments parsed;
    for (const std::string& argument : definition.arguments) {
        if (argument.empty())
            throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                   "empty argument; arguments are column names and key=value options");
        const size_t equals = argument.find('=');
        if (equals == std::string::npos) {
            parsed.columns.push_back(argument);
            continue;
        }
        std::string key = argument.substr(0, equals);
        std::string value = argument.substr(equals + 1);
        bool known = false;
        std::string accepted;
        for (std::string_view option : known_options) {
            known = known || option == key;
            accepted += (accepted.empty() ? "" : ", ") + std::string(option);
        }
        if (!known)
            throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                   "unknown option " + quoted(key) + " in argument " + quoted(argument) +
                                       "; " + definition.guard + " accepts " +
                                       (accepted.empty() ? std::string("no options") : accepted));
        if (parsed.option(key) != nullptr)
            throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                   "option " + quoted(key) + " is given more than once");
        parsed.options.emplace_back(std::move(key), std::move(value));
    }
    return parsed;
}

bool parse_bool_option(const TriggerDefinition& definition, const std::string& key,
                       const std::string& value) {
    bool result = false;
    if (!parse_bool(value.c_str(), &result))
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               "option " + quoted(key) + " must be true or false, not " + quoted(value));
    return result;
}

ResolvedColumn resolve_column(const TriggerDefinition& definition, const std::string& name) {
    const TupleDesc columns = definition.columns;
    for (int i = 0; i < columns->natts; ++i) {
        const Form_pg_attribute column = TupleDescAttr(columns, i);
        if (!column->attisdropped && name == NameStr(column->attname))
            return ResolvedColumn{column->attnum, column->atttypid};
    }
    if (SystemAttributeByName(name.c_str()) != nullptr)
        throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                               "column " + quoted(name) + " is a system column; " + definition.guard +
                                   " guards user columns only");
    throw definition_error(definition, ERRCODE_UNDEFINED_COLUMN,
                           "column " + quoted(name) + " does not exist")
        .with_hint("Column names are matched exactly as stored: lower case unless the column was created quoted.");
}

ResolvedColumn resolve_written_column(const TriggerDefinition& definition, const std::string& name) {
    const ResolvedColumn column = resolve_column(definition, name);
    if (TupleDescAttr(definition.columns, column.attnum - 1)->attgenerated != '\0')
        throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                               "column " + quoted(name) + " is a generated column; " + definition.guard +
                                   " writes it, and PostgreSQL would overwrite what the guard wrote")
            .with_column(name)
            .with_hint("Use a plain column (ALTER TABLE ... ALTER COLUMN ... DROP EXPRESSION).");
    return column;
}

std::string type_name(Oid type) { return pg_call([&] { return format_type_be(type); }); }

Error column_type_error(const TriggerDefinition& definition, const std::string& column,
                        Oid type, const char* accepted) {
    Error error = definition_error(definition, ERRCODE_DATATYPE_MISMATCH,
                                   "column " + quoted(column) + " has type " + type_name(type) + "; " +
                                       definition.guard + " needs " + accepted);
    error.with_column(column);
    return error;
}

Oid trigger_table(Oid trigger_oid) {
    Relation triggers = table_open(TriggerRelationId, AccessShareLock);
    ScanKeyData key;
    ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(trigger_oid));
    SysScanDesc scan = systable_beginscan(triggers, TriggerOidIndexId, true, nullptr, 1, &key);
    HeapTuple tuple = systable_getnext(scan);
    const Oid relid = HeapTupleIsValid(tuple) ? reinterpret_cast<Form_pg_trigger>(GETSTRUCT(tuple))->tgrelid : InvalidOid;
    systable_endscan(scan);
    table_close(triggers, AccessShareLock);
    return relid;
}

std::string value_text(Datum value, Oid type) {
    return pg_call([&] {
        Oid output_function = InvalidOid;
        bool is_varlena = false;
        getTypeOutputInfo(type, &output_function, &is_varlena);
        return static_cast<const char*>(OidOutputFunctionCall(output_function, value));
    });
}

RootTrigger root_trigger(const TriggerData* trigger_data) {
    const Oid firing_relid = RelationGetRelid(trigger_data->tg_relation);
    const Oid fired_oid = trigger_data->tg_trigger->tgoid;
    if (!trigger_data->tg_trigger->tgisclone)
        return RootTrigger{fired_oid, firing_relid};
    return pg_call([&] {
        RootTrigger root{fired_oid, firing_relid};
        Oid trigger_oid = fired_oid;
        Relation triggers = table_open(TriggerRelationId, AccessShareLock);
        while (OidIsValid(trigger_oid)) {
            ScanKeyData key;
            ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(trigger_oid));
            SysScanDesc scan = systable_beginscan(triggers, TriggerOidIndexId, true, nullptr, 1, &key);
            HeapTuple tuple = systable_getnext(scan);
            if (HeapTupleIsValid(tuple)) {
                const auto* form = reinterpret_cast<Form_pg_trigger>(GETSTRUCT(tuple));
                root = RootTrigger{trigger_oid, form->tgrelid};
                trigger_oid = form->tgparentid;
            } else {
                trigger_oid = InvalidOid;
            }
            systable_endscan(scan);
        }
        table_close(triggers, AccessShareLock);
        return root;
    });
}

bool row_changed_while_waiting(HeapTuple old_row) {
    const TransactionId creator = HeapTupleHeaderGetXmin(old_row->t_data);
    return pg_call([&] {
        if (!ActiveSnapshotSet() || TransactionIdIsCurrentTransactionId(creator))
            return false;
        return XidInMVCCSnapshot(creator, GetActiveSnapshot());
    });
}

bool may_select_column(Relation relation, AttrNumber attnum) {
    const Oid relid = RelationGetRelid(relation);
    return pg_call([&] {
        const Oid user = GetUserId();
        if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
            return false;
        if (pg_class_aclcheck(relid, user, ACL_SELECT) == ACLCHECK_OK)
            return true;
        return pg_attribute_aclcheck(relid, attnum, user, ACL_SELECT) == ACLCHECK_OK;
    });
}

}  // namespace raceguard
