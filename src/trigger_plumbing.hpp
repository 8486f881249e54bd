// What every raceguard trigger shares: checking how it was fired, parsing its
// arguments, resolving its columns and building errors that name the trigger,
// the table and the argument at fault.
//
// All of this runs when a trigger's state is built (once per trigger, see
// trigger_cache.hpp), never per row. It works on a TriggerDefinition rather
// than on TriggerData so that a definition read from pg_trigger can be
// validated by the same code.
#pragma once

#include "boundary.hpp"

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace raceguard {

// A trigger as validation sees it.
struct TriggerDefinition {
    const char* guard;  // e.g. "raceguard.lock_version()"
    std::string trigger_name;
    std::string schema_name;
    std::string table_name;
    int16 trigger_type;  // pg_trigger.tgtype
    bool update_of_columns;  // UPDATE OF column, ... (pg_trigger.tgattr not empty)
    bool has_when_condition;  // WHEN (...) (pg_trigger.tgqual)
    std::vector<std::string> arguments;
    TupleDesc columns;  // the table's row type
};

TriggerDefinition describe_trigger(const char* guard, Relation relation, const Trigger* trigger);
TriggerDefinition describe_fired_trigger(const TriggerData* trigger_data, const char* guard);

// A trigger (by OID) as the relcache has it, with its table opened
// (AccessShareLock); both null when there is no such trigger.
struct OpenTrigger {
    Relation relation;
    const Trigger* trigger;
};
OpenTrigger open_trigger(Oid trigger_oid);
void close_trigger(const OpenTrigger& open);

// A name in double quotes, as messages show names.
std::string quoted(const std::string& text);

// An argument's value in double quotes, cut short when it is long, so that
// a message stays readable whatever was passed.
std::string quoted_value(const std::string& text);

// An error about a trigger's definition: names the trigger and the table.
Error definition_error(const TriggerDefinition& definition, int sqlstate, const std::string& what);

// An error about a row of a table (a guard violation): carries the table.
Error table_error(Relation relation, int sqlstate, std::string message);

enum TriggerEvent : unsigned {
    ON_INSERT = 1u << 0,
    ON_UPDATE = 1u << 1,
    ON_DELETE = 1u << 2,
    ON_TRUNCATE = 1u << 3,
};

struct FiringRules {
    bool before_allowed;
    bool after_allowed;
    unsigned events_allowed;  // TriggerEvent bits
};

// Throws 39P01 unless the trigger is a ROW trigger with an allowed timing and
// only allowed events, fired for every row of those events: no WHEN
// condition and no UPDATE OF column list, either of which lets rows past
// the guard while it looks installed.
void check_firing(const TriggerDefinition& definition, const FiringRules& rules);

// A plain argument names a column; "key=value" is an option.
struct TriggerArguments {
    std::vector<std::string> columns;
    std::vector<std::pair<std::string, std::string>> options;

    const std::string* option(std::string_view key) const;
};

// Throws 22023 for an unknown or repeated option or an empty argument.
TriggerArguments parse_arguments(const TriggerDefinition& definition,
                                 std::initializer_list<std::string_view> known_options);

// Parses an option's boolean value with PostgreSQL's spellings; throws 22023.
bool parse_bool_option(const TriggerDefinition& definition, const std::string& key,
                       const std::string& value);

struct ResolvedColumn {
    AttrNumber attnum;
    Oid type;
};

// Finds a user column by its exact stored name: 42703 when it does not exist
// (dropped columns included), 0A000 for a system column.
ResolvedColumn resolve_column(const TriggerDefinition& definition, const std::string& name);

// resolve_column for a column the guard writes (a version, a balance, a
// seq): also 0A000 for a generated column, which PostgreSQL recomputes after
// BEFORE triggers, so the guard's value would never be stored.
ResolvedColumn resolve_written_column(const TriggerDefinition& definition, const std::string& name);

// 42804 naming the column, its type and what the guard accepts.
Error column_type_error(const TriggerDefinition& definition, const std::string& column,
                        Oid type, const char* accepted);

std::string type_name(Oid type);

// A value as its type's output function writes it (error paths only).
std::string value_text(Datum value, Oid type);

// The table a trigger (by OID) is on; InvalidOid when there is no such
// trigger. C-side: call it through pg_call.
Oid trigger_table(Oid trigger_oid);

// The trigger the user created (a partition clone's topmost parent) and its
// table; the fired trigger and its table when it is no clone.
struct RootTrigger {
    Oid trigger_oid;
    Oid relid;
};
RootTrigger root_trigger(const TriggerData* trigger_data);

// True when OLD is not in the statement's snapshot: at READ COMMITTED the
// UPDATE waited for another transaction's row lock and now works on the
// version that transaction committed after the statement began.
bool row_changed_while_waiting(HeapTuple old_row);

// Whether the current user may see the column's values in an error, by the
// rules PostgreSQL applies to its own constraint errors (row-level security
// hides everything; otherwise table or column SELECT privilege).
bool may_select_column(Relation relation, AttrNumber attnum);

}  // namespace raceguard
