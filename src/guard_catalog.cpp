// Seeing and checking the guards (SPEC §5): the functions behind the view
// raceguard.guards, raceguard.check_guards() and the check at migration
// time. A guard is checked by running the very builder its trigger runs at
// its first row, on the table as it is now.
#include "guard_catalog.hpp"

#include "citus.hpp"
#include "compat.hpp"
#include "immutable_once_set.hpp"
#include "lock_version.hpp"
#include "running_balance.hpp"
#include "transition.hpp"

extern "C" {
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
}

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace raceguard {

std::string json_string(const std::string& text) {
    std::string json = "\"";
    for (const char c : text) {
        switch (c) {
            case '"': json += "\\\""; break;
            case '\\': json += "\\\\"; break;
            case '\n': json += "\\n"; break;
            case '\r': json += "\\r"; break;
            case '\t': json += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char escaped[8];
                    snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(c));
                    json += escaped;
                } else {
                    json += c;
                }
        }
    }
    return json + "\"";
}

std::string json_bool(bool value) { return value ? "true" : "false"; }

std::string json_number(const std::string& text) {
    // JSON's number: -?digits(.digits)?; anything else stays a string.
    size_t i = (!text.empty() && text[0] == '-') ? 1 : 0;
    const size_t digits_start = i;
    while (i < text.size() && isdigit(static_cast<unsigned char>(text[i])))
        ++i;
    bool ok = i > digits_start && !(text[digits_start] == '0' && i - digits_start > 1);
    if (ok && i < text.size() && text[i] == '.') {
        const size_t fraction_start = ++i;
        while (i < text.size() && isdigit(static_cast<unsigned char>(text[i])))
            ++i;
        ok = i > fraction_start;
    }
    return ok && i == text.size() ? text : json_string(text);
}

namespace {

const GuardKind* const GUARD_KINDS[] = {&LOCK_VERSION_KIND, &IMMUTABLE_ONCE_SET_KIND, &RUNNING_BALANCE_KIND,
                                        &TRANSITION_KIND};

// The guard a trigger function is, if it is one of raceguard's.
const GuardKind* guard_kind_of(Oid function_oid) {
    struct Name {
        const char* schema;
        const char* function;
    };
    const Name name = pg_call([&] {
        Name result{};
        const Oid schema = get_func_namespace(function_oid);
        if (OidIsValid(schema)) {
            result.schema = get_namespace_name(schema);
            result.function = get_func_name(function_oid);
        }
        return result;
    });
    if (name.schema == nullptr || name.function == nullptr || std::string(name.schema) != "raceguard")
        return nullptr;
    for (const GuardKind* kind : GUARD_KINDS)
        if (std::string(name.function) == kind->name)
            return kind;
    return nullptr;
}

// Whether the current user may see the guards of a table: a superuser, a
// role with the privileges of the table's owner, or one holding any
// privilege on the table or on one of its columns (a role that can lock the
// table anyway). The view raceguard.guards, check_guards() and
// verify_running_balance() show only these tables, and the helpers behind
// them neither open, lock nor describe any other.
bool may_see_guards_of(Oid relid) {
    return pg_call([&] {
        const Oid user = GetUserId();
        HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
        if (!HeapTupleIsValid(tuple))
            return false;  // dropped meanwhile
        const Oid owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple))->relowner;
        ReleaseSysCache(tuple);
        return has_privs_of_role(user, owner) ||
               pg_class_aclmask(relid, user, compat::any_table_privilege(), ACLMASK_ANY) != 0 ||
               pg_attribute_aclcheck_all(relid, user, ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_REFERENCES,
                                         ACLMASK_ANY) == ACLCHECK_OK;
    });
}

// open_trigger(), for a trigger on a table the current user may see;
// otherwise nothing is opened or locked, and both are null.
OpenTrigger open_visible_trigger(Oid trigger_oid) {
    const Oid relid = pg_call([&] { return trigger_table(trigger_oid); });
    if (!OidIsValid(relid) || !may_see_guards_of(relid))
        return OpenTrigger{};
    return open_trigger(trigger_oid);
}

// Runs the guard's own builder on the table as it is now, in a scratch
// memory context. Throws the Error its first row would raise.
void check_definition(const GuardKind& kind, const OpenTrigger& open) {
    TriggerData data{};
    data.type = T_TriggerData;
    data.tg_event = TRIGGER_EVENT_ROW;
    data.tg_relation = open.relation;
    data.tg_trigger = const_cast<Trigger*>(open.trigger);
    MemoryContext scratch = pg_call([] {
        return AllocSetContextCreate(CurrentMemoryContext, "raceguard guard check", ALLOCSET_SMALL_SIZES);
    });
    try {
        kind.builder(&data, scratch);
    } catch (const Error&) {
        pg_call([&] { MemoryContextDelete(scratch); });
        throw;
    }
    pg_call([&] { MemoryContextDelete(scratch); });
}

// What check_guards() says: the error without its "trigger ... on table ...:"
// prefix (the row names both).
std::string problem_text(const Error& error, const OpenTrigger& open) {
    const std::string prefix = "trigger \"" + std::string(open.trigger->tgname) + "\" on table \"" +
                               RelationGetRelationName(open.relation) + "\": ";
    if (error.message.compare(0, prefix.size(), prefix) == 0)
        return error.message.substr(prefix.size());
    return error.message;
}

std::string argument_text(const Trigger* trigger, int index) { return trigger->tgargs[index]; }

// The BEFORE ROW triggers on the guard's table, other than raceguard's own,
// that fire after it (PostgreSQL fires them in name order), or with
// `earlier` before it, on one of EVENTS (TriggerEvent bits): a later one
// could change a row after the guard checked it.
std::vector<std::string> neighbouring_before_triggers(const OpenTrigger& open, unsigned events, bool earlier) {
    std::vector<std::string> names;
    const TriggerDesc* triggers = open.relation->trigdesc;
    for (int i = 0; triggers != nullptr && i < triggers->numtriggers; ++i) {
        const Trigger* other = &triggers->triggers[i];
        const bool on_event = ((events & ON_INSERT) && TRIGGER_FOR_INSERT(other->tgtype)) ||
                              ((events & ON_UPDATE) && TRIGGER_FOR_UPDATE(other->tgtype));
        if (TRIGGER_FOR_ROW(other->tgtype) && TRIGGER_FOR_BEFORE(other->tgtype) && on_event &&
            (strcmp(other->tgname, open.trigger->tgname) > 0) != earlier && other->tgoid != open.trigger->tgoid &&
            guard_kind_of(other->tgfoid) == nullptr)
            names.emplace_back(other->tgname);
    }
    return names;
}

// A ledger that is a Citus reference table is correct (every node's copy
// takes the same appends in one order), but each append writes to every
// node, one transaction at a time per group across the cluster: appends
// from several nodes at once crawl and deadlock. Said where the guard is
// created and listed, not refused.
const char* const CITUS_REFERENCE_LEDGER =
    "warning: a Citus reference table: each append writes every node's copy, and appends to a group serialize "
    "across the whole cluster, so appends from several nodes at once are slow and may deadlock (40P01); "
    "distribute the ledger by a group column to scale out (see docs/citus.md)";

bool is_citus_reference_ledger(const GuardKind& kind, Relation relation) {
    return &kind == &RUNNING_BALANCE_KIND &&
           citus::placement_of(RelationGetRelid(relation)).placement == citus::Placement::reference;
}

std::vector<std::string> guard_problems_of(const GuardKind& kind, const OpenTrigger& open) {
    std::vector<std::string> problems;
    try {
        check_definition(kind, open);
    } catch (const Error& error) {
        problems.push_back(problem_text(error, open));
    }
    const Trigger* trigger = open.trigger;
    if (trigger->tgenabled == TRIGGER_DISABLED)
        problems.push_back("disabled: the guard does not run (ALTER TABLE ... ENABLE TRIGGER " +
                           std::string(trigger->tgname) + ")");
    else if (trigger->tgenabled == TRIGGER_FIRES_ON_REPLICA)
        problems.push_back("enabled only for session_replication_role = replica: the guard does not run in normal sessions");

    const TriggerDesc* triggers = open.relation->trigdesc;
    if (&kind == &IMMUTABLE_ONCE_SET_KIND) {
        bool allow_unset = false;
        for (int a = 0; a < trigger->tgnargs; ++a) {
            const std::string argument = argument_text(trigger, a);
            if (argument.rfind("allow_unset=", 0) == 0) {
                bool value = false;
                allow_unset = parse_bool(argument.c_str() + 12, &value) && value;
            }
        }
        bool has_lock_version = false;
        for (int i = 0; triggers != nullptr && i < triggers->numtriggers; ++i)
            has_lock_version = has_lock_version || guard_kind_of(triggers->triggers[i].tgfoid) == &LOCK_VERSION_KIND;
        const bool partitioned = open.relation->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ||
                                 open.relation->rd_rel->relispartition;
        if (TRIGGER_FOR_AFTER(trigger->tgtype) && partitioned)
            problems.push_back("warning: AFTER on a partitioned table: an UPDATE that moves a row to another "
                               "partition fires no AFTER UPDATE row trigger, so that change is not checked; "
                               "use BEFORE UPDATE");
        if (allow_unset && !has_lock_version)
            problems.push_back("warning: allow_unset=true on a table with no lock_version guard: an ORM that saves "
                               "every column can unset the column from a stale object");
    }
    // Enabled ALWAYS or REPLICA, a guard also runs on the rows the apply
    // worker of a logical replication subscription writes (it runs as
    // replica), rows the publisher's own guard has already computed.
    const char* replica_mode = trigger->tgenabled == TRIGGER_FIRES_ALWAYS       ? "ALWAYS"
                               : trigger->tgenabled == TRIGGER_FIRES_ON_REPLICA ? "REPLICA"
                                                                                 : nullptr;
    const std::string keep_as_created = "on a subscriber keep the trigger as created (ALTER TABLE ... ENABLE TRIGGER " +
                                        std::string(trigger->tgname) + ")";
    if (replica_mode != nullptr && &kind == &RUNNING_BALANCE_KIND)
        problems.push_back(std::string("warning: ENABLE ") + replica_mode +
                           ": the guard runs on rows applied by logical replication, where it recomputes the "
                           "publisher's balances and seq in the order rows arrive (the initial copy is not in seq "
                           "order) and refuses each replicated UPDATE that carries the publisher's values, which "
                           "stops replication; " + keep_as_created + " and append only on the publisher");
    // lock_version accepts the publisher's versions (each replicated UPDATE
    // carries stored + 1), except on a row whose version the publisher left
    // NULL (a row from before the guard): it writes 1 there, and the copy
    // then counts one ahead, silently. immutable_once_set accepts whatever
    // the publisher's guard accepted: nothing to say.
    if (replica_mode != nullptr && &kind == &LOCK_VERSION_KIND)
        problems.push_back(std::string("warning: ENABLE ") + replica_mode +
                           ": the guard runs on rows applied by logical replication, where a row whose version "
                           "is NULL on the publisher gets a version, and the subscriber's copy then counts one "
                           "ahead of the publisher; " + keep_as_created);
    if (is_citus_reference_ledger(kind, open.relation))
        problems.push_back(CITUS_REFERENCE_LEDGER);
    if (&kind == &TRANSITION_KIND)
        for (std::string& warning :
             transition_warnings(describe_trigger(TRANSITION_GUARD, open.relation, open.trigger), open.relation))
            problems.push_back(std::move(warning));
    if (&kind == &RUNNING_BALANCE_KIND)
        for (const std::string& other : neighbouring_before_triggers(open, ON_INSERT, false))
            problems.push_back("BEFORE INSERT trigger \"" + other +
                               "\" fires after this one (names sort later) and could change the amount or a "
                               "group column after the balance was computed");
    // One on UPDATE only (those on INSERT too are reported above) could
    // change an entry's ledger columns after the guard allowed the UPDATE.
    if (&kind == &RUNNING_BALANCE_KIND && TRIGGER_FOR_UPDATE(open.trigger->tgtype)) {
        const std::vector<std::string> on_insert = neighbouring_before_triggers(open, ON_INSERT, false);
        for (const std::string& other : neighbouring_before_triggers(open, ON_UPDATE, false))
            if (std::find(on_insert.begin(), on_insert.end(), other) == on_insert.end())
                problems.push_back("BEFORE UPDATE trigger \"" + other +
                                   "\" fires after this one (names sort later) and could change an entry's amount, "
                                   "balance, seq or group after the UPDATE was checked");
    }
    if (&kind == &TRANSITION_KIND)
        for (const std::string& other : neighbouring_before_triggers(open, ON_INSERT | ON_UPDATE, false))
            problems.push_back("warning: BEFORE trigger \"" + other +
                               "\" fires after this one (names sort later) and could change the status after it "
                               "was checked; give the guard a name that sorts after it");
    // One that fires before the guard is checked with the guard, but a status
    // it sets on its own (the UPDATE not naming the column) hides a duplicate
    // transition from the guard (docs/transition.md).
    if (&kind == &TRANSITION_KIND)
        for (const std::string& other : neighbouring_before_triggers(open, ON_UPDATE, true))
            problems.push_back("warning: BEFORE UPDATE trigger \"" + other +
                               "\" fires before this one: if it sets the status of an UPDATE that does not name "
                               "the column, a duplicate transition made that way is not detected");
    return problems;
}

void warn_unchecked(const Error& problem, const std::string& command) {
    const std::string detail = "check_function_bodies is off (as pg_dump and pg_restore set it), so the "
                               "migration-time check lets this " + command +
                               " through; the guard fails at its first row until it is fixed.";
    const std::string hint = (problem.hint.empty() ? std::string() : problem.hint + " ") +
                             "raceguard.check_guards() lists the guard's problems.";
    pg_call([&] {
        ereport(WARNING, (errmsg_internal("%s", problem.message.c_str()), errdetail_internal("%s", detail.c_str()),
                          errhint("%s", hint.c_str())));
    });
}

Datum text_array(const std::vector<std::string>& items, Oid element_type) {
    const int count = static_cast<int>(items.size());
    std::vector<const char*> strings;
    for (const std::string& item : items)
        strings.push_back(item.c_str());
    const char* const* data = strings.data();
    return pg_call([&] {
        Datum* elements = static_cast<Datum*>(palloc(sizeof(Datum) * (count > 0 ? count : 1)));
        for (int i = 0; i < count; ++i)
            elements[i] = element_type == NAMEOID ? DirectFunctionCall1(namein, CStringGetDatum(data[i]))
                                                  : CStringGetTextDatum(data[i]);
        return PointerGetDatum(element_type == NAMEOID
                                   ? construct_array(elements, count, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR)
                                   : construct_array(elements, count, TEXTOID, -1, false, TYPALIGN_INT));
    });
}

}  // namespace

// NULL for a trigger that is not a guard on a table the current user may
// see (the view shows no row for it).
Datum guard_definition(FunctionCallInfo fcinfo) {
    const Oid trigger_oid = PG_GETARG_OID(0);
    const OpenTrigger open = open_visible_trigger(trigger_oid);
    if (open.trigger == nullptr) {
        close_trigger(open);
        PG_RETURN_NULL();
    }
    const GuardKind* kind = guard_kind_of(open.trigger->tgfoid);
    if (kind == nullptr) {
        close_trigger(open);
        PG_RETURN_NULL();
    }
    const std::string guard_display = std::string("raceguard.") + kind->name + "()";  // as errors name it
    const TriggerDefinition definition = describe_trigger(guard_display.c_str(), open.relation, open.trigger);
    GuardDescription description;
    try {
        description = kind->describe(definition);
    } catch (const Error& error) {
        // Arguments that do not parse: shown as written.
        description = GuardDescription{};
        for (const std::string& argument : definition.arguments) {
            const size_t equals = argument.find('=');
            if (equals == std::string::npos)
                description.columns.push_back(argument);
            else
                description.options.emplace_back(argument.substr(0, equals), json_string(argument.substr(equals + 1)));
        }
        description.options.emplace_back("invalid", json_string(problem_text(error, open)));
    }
    close_trigger(open);

    std::string options = "{";
    for (size_t i = 0; i < description.options.size(); ++i)
        options += (i > 0 ? ", " : "") + json_string(description.options[i].first) + ": " +
                   description.options[i].second;
    options += "}";
    const Datum columns = text_array(description.columns, NAMEOID);
    const std::string guard_name = kind->name;
    return pg_call([&] {
        TupleDesc descriptor = nullptr;
        if (get_call_result_type(fcinfo, nullptr, &descriptor) != TYPEFUNC_COMPOSITE)
            elog(ERROR, "guard_definition must return a composite type");
        Datum values[3] = {CStringGetTextDatum(guard_name.c_str()), columns, CStringGetTextDatum(options.c_str())};
        bool nulls[3] = {false, false, false};
        return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(descriptor), values, nulls));
    });
}

// NULL for a trigger on a table the current user may not see.
Datum guard_problems(FunctionCallInfo fcinfo) {
    const Oid trigger_oid = PG_GETARG_OID(0);
    const OpenTrigger open = open_visible_trigger(trigger_oid);
    if (open.relation == nullptr)
        PG_RETURN_NULL();
    std::vector<std::string> problems;
    const GuardKind* kind = open.trigger != nullptr ? guard_kind_of(open.trigger->tgfoid) : nullptr;
    if (kind != nullptr)
        problems = guard_problems_of(*kind, open);
    close_trigger(open);
    const Datum array = text_array(problems, TEXTOID);
    PG_RETURN_DATUM(array);
}

Datum check_guard_ddl(FunctionCallInfo fcinfo) {
    const Oid object_oid = PG_GETARG_OID(0);
    const std::string command = pg_call([&] { return text_to_cstring(PG_GETARG_TEXT_PP(1)); });
    // The triggers to check: the one created, or every guard on an altered
    // table and its partitions. Tables the current user may not see are
    // neither locked nor checked: the DDL that fires this has the privileges
    // it needs on what it changes, and a direct call must not lock others'.
    std::vector<Oid> triggers;
    if (command == "CREATE TRIGGER") {
        triggers.push_back(object_oid);
    } else {
        List* tables = pg_call([&] {
            const char kind = get_rel_relkind(object_oid);
            if (kind == RELKIND_PARTITIONED_TABLE)
                return find_all_inheritors(object_oid, NoLock, nullptr);
            // ALTER TABLE also names indexes, views, sequences: no guards there.
            return kind == RELKIND_RELATION || kind == RELKIND_FOREIGN_TABLE ? list_make1_oid(object_oid) : NIL;
        });
        const int count = list_length(tables);
        for (int t = 0; t < count; ++t) {
            const Oid relid = list_nth_oid(tables, t);
            if (!may_see_guards_of(relid))
                continue;
            List* oids = pg_call([&] {
                List* result = NIL;
                Relation relation = try_relation_open(relid, AccessShareLock);
                if (relation == nullptr)
                    return result;  // a partition dropped meanwhile
                const TriggerDesc* descriptor = relation->trigdesc;
                for (int i = 0; descriptor != nullptr && i < descriptor->numtriggers; ++i)
                    result = lappend_oid(result, descriptor->triggers[i].tgoid);
                relation_close(relation, AccessShareLock);
                return result;
            });
            for (int i = 0; i < list_length(oids); ++i)
                triggers.push_back(list_nth_oid(oids, i));
        }
    }
    for (const Oid trigger_oid : triggers) {
        const OpenTrigger open = open_visible_trigger(trigger_oid);
        const GuardKind* kind = open.trigger != nullptr ? guard_kind_of(open.trigger->tgfoid) : nullptr;
        // A disabled guard does not run, so it does not hold DDL back (and
        // ALTER TABLE ... DISABLE TRIGGER can switch off a broken one).
        if (kind == nullptr || open.trigger->tgenabled == TRIGGER_DISABLED) {
            close_trigger(open);
            continue;
        }
        std::optional<Error> broken;
        try {
            check_definition(*kind, open);
        } catch (const Error& error) {
            broken = error;
        }
        // Citus runs a CREATE TRIGGER on a reference table again on every
        // node: the coordinator (group 0) says it once.
        if (!broken && command == "CREATE TRIGGER" && is_citus_reference_ledger(*kind, open.relation) &&
            citus::local_group_id().value_or(0) == 0) {
            const std::string message = "trigger \"" + std::string(open.trigger->tgname) + "\" on table \"" +
                                        RelationGetRelationName(open.relation) + "\": " +
                                        std::string(CITUS_REFERENCE_LEDGER).substr(strlen("warning: "));
            pg_call([&] { ereport(WARNING, (errmsg_internal("%s", message.c_str()))); });
        }
        if (broken && command != "CREATE TRIGGER") {
            broken->message = "after this " + command + " a raceguard guard cannot work: " + broken->message;
            broken->with_hint("Drop or recreate trigger \"" + std::string(open.trigger->tgname) + "\" on table \"" +
                              RelationGetRelationName(open.relation) +
                              "\" first, in the same migration (DROP TRIGGER, then CREATE TRIGGER with the new "
                              "column names).");
        }
        close_trigger(open);
        if (!broken)
            continue;
        // pg_dump and pg_restore turn check_function_bodies off, and
        // PostgreSQL's own validators then skip their checks: a restore must
        // recreate every trigger it dumped, broken ones included (a refused
        // CREATE TRIGGER would just be missing from the restored database).
        // The DDL passes with a WARNING; check_guards() still reports it.
        if (!check_function_bodies) {
            warn_unchecked(*broken, command);
            continue;
        }
        // Otherwise the DDL fails with the guard's own SQLSTATE.
        throw *broken;
    }
    PG_RETURN_VOID();
}

}  // namespace raceguard
