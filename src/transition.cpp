// raceguard.transition(): a status column that moves only along declared
// edges, and never twice along the same one.
//
// Arguments: the column, then edges 'FROM>TO' in the column's own text form
// ('>TO' declares a start state: an INSERT, or an UPDATE from NULL). A state
// holding '>', '=' or '"', or leading or trailing blanks, is written in
// double quotes ('""' inside them is one '"'); an unquoted NULL, in any
// case, is the NULL state, and '"NULL"' the text NULL.
//
// Per row: an INSERT must start in a declared state; an UPDATE that changes
// the column (by the type's equality) must follow a declared edge. An
// UPDATE that leaves it unchanged is accepted, except in one case: at READ
// COMMITTED an UPDATE that waited for another transaction's row lock goes
// on with that transaction's version of the row (OLD is then not in the
// statement's snapshot). When it also assigns the column, the guard looks
// up the version the statement saw (through the primary key or replica
// identity index, and the update chain from that version to OLD): if the
// column changed to its present value in between, this write repeats that
// transition and is refused, unless the self-edge X>X is declared. Only that
// rare re-aimed row pays a lookup. On a partitioned table, a row an UPDATE
// moves to another partition is checked as that UPDATE, and its INSERT into
// the other partition recognized (below, "rows moved between partitions").
#include "transition.hpp"

#include "compat.hpp"
#include "stats.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "access/heapam.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "executor/tuptable.h"
#include "utils/datum.h"
#include "utils/typcache.h"
}

#include <string>
#include <vector>

namespace raceguard {

namespace {

constexpr FiringRules TRANSITION_FIRING = {true, false, ON_INSERT | ON_UPDATE};

// ---- the arguments ----------------------------------------------------------

// One side of an edge, as written.
struct StateText {
    bool is_null = false;
    std::string text;  // the column's text form, quotes removed
};

struct Edge {
    bool is_start = false;  // '>TO'
    StateText from;
    StateText to;
    std::string argument;  // as written
};

struct TransitionArguments {
    std::string column;
    std::vector<Edge> edges;
};

[[noreturn]] void throw_malformed(const TriggerDefinition& definition, const std::string& argument,
                                  const std::string& why) {
    throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                           "malformed edge " + quoted_value(argument) + ": " + why)
        .with_hint("Write each edge as 'from>to' ('>to' for a state a row may start in), in the column's text "
                   "form; put a state holding >, = or \" in double quotes, and write an unquoted NULL for the "
                   "NULL state.");
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// One state as written: "quoted" (with "" for "), NULL, or plain text.
StateText parse_state_text(const TriggerDefinition& definition, const std::string& argument,
                           const std::string& part) {
    if (!part.empty() && part.front() == '"') {
        std::string text;
        size_t i = 1;
        for (;; ++i) {
            if (i >= part.size())
                throw_malformed(definition, argument, "a quoted state is not closed");
            if (part[i] == '"') {
                if (i + 1 < part.size() && part[i + 1] == '"') {
                    text += '"';
                    ++i;
                    continue;
                }
                break;
            }
            text += part[i];
        }
        if (i + 1 != part.size())
            throw_malformed(definition, argument, "text follows a quoted state");
        return StateText{false, text};
    }
    if (part.find('"') != std::string::npos)
        throw_malformed(definition, argument, "a \" inside an unquoted state (quote the whole state)");
    if (is_blank(part.front()) || is_blank(part.back()))
        throw_malformed(definition, argument, "a state begins or ends with a blank (quote it if it is meant)");
    if (pg_strcasecmp(part.c_str(), "null") == 0)
        return StateText{true, ""};
    return StateText{false, part};
}

// The position of the one '>' outside double quotes; npos when there is none;
// -2 (as size_t) when there are several.
constexpr size_t SEVERAL = static_cast<size_t>(-2);
size_t unquoted_separator(const std::string& argument, char separator) {
    bool quoted_part = false;
    size_t found = std::string::npos;
    for (size_t i = 0; i < argument.size(); ++i) {
        if (argument[i] == '"')
            quoted_part = !quoted_part;  // "" inside quotes toggles twice
        else if (!quoted_part && argument[i] == separator)
            found = found == std::string::npos ? i : SEVERAL;
    }
    return found;
}

bool quotes_balanced(const std::string& argument) {
    size_t quotes = 0;
    for (const char c : argument)
        quotes += c == '"' ? 1 : 0;
    return quotes % 2 == 0;
}

TransitionArguments parse_transition_arguments(const TriggerDefinition& definition) {
    const std::vector<std::string>& arguments = definition.arguments;
    if (arguments.empty() || arguments.front().empty())
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string(definition.guard) + " needs the column, then its edges")
            .with_hint("For example raceguard.transition('status', '>open', 'open>assigned', 'assigned>closed').");
    TransitionArguments parsed;
    parsed.column = arguments.front();
    for (size_t a = 1; a < arguments.size(); ++a) {
        const std::string& argument = arguments[a];
        if (argument.empty())
            throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                   "empty argument; after the column come edges 'from>to'");
        if (!quotes_balanced(argument))
            throw_malformed(definition, argument, "a double quote is not closed");
        const size_t separator = unquoted_separator(argument, '>');
        if (separator == SEVERAL)
            throw_malformed(definition, argument, "more than one > outside double quotes");
        if (separator == std::string::npos) {
            if (unquoted_separator(argument, '=') != std::string::npos)
                throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                       "unknown option " + quoted_value(argument.substr(0, argument.find('='))) +
                                           " in argument " + quoted_value(argument) + "; " + definition.guard +
                                           " accepts no options");
            throw_malformed(definition, argument, "no > (only the first argument names a column)");
        }
        Edge edge;
        edge.argument = argument;
        const std::string from = argument.substr(0, separator);
        const std::string to = argument.substr(separator + 1);
        if (to.empty())
            throw_malformed(definition, argument, "no state after >");
        edge.is_start = from.empty();
        if (!edge.is_start)
            edge.from = parse_state_text(definition, argument, from);
        edge.to = parse_state_text(definition, argument, to);
        parsed.edges.push_back(edge);
    }
    if (parsed.edges.empty())
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string(definition.guard) + " needs at least one edge after the column")
            .with_hint("For example raceguard.transition('status', '>open', 'open>assigned', 'assigned>closed').");
    return parsed;
}

GuardDescription describe_transition(const TriggerDefinition& definition) {
    const TransitionArguments parsed = parse_transition_arguments(definition);
    GuardDescription description;
    description.columns.push_back(parsed.column);
    std::string edges = "[";
    for (size_t i = 0; i < parsed.edges.size(); ++i)
        edges += (i > 0 ? ", " : "") + json_string(parsed.edges[i].argument);
    description.options = {{"edges", edges + "]"}};
    return description;
}

// ---- the states, parsed by the column type's input function -----------------

struct ParsedValue {
    bool ok;
    Datum value;
    int sqlstate;
    const char* message;
};

// The settings an input function may read, fixed while the states are
// parsed: otherwise a session that SET them (DateStyle DMY, another
// TimeZone, IntervalStyle sql_standard, array_nulls off) would build other
// values from the same edges, and let a row start or move where no edge
// says. The values are PostgreSQL's own defaults, UTC for the time zone.
constexpr const char* STATE_SETTINGS[][2] = {
    {"datestyle", "ISO, MDY"},
    {"intervalstyle", "postgres"},
    {"timezone", "UTC"},
    {"timezone_abbreviations", "Default"},
    {"array_nulls", "on"},
    {"lc_monetary", "C"},
};

// Runs the type's input function in a subtransaction, so that a state the
// type rejects is reported (check_guards() goes on to the next guard) with
// the input function's own SQLSTATE, and nothing it did is left behind;
// under STATE_SETTINGS, which the subtransaction's end restores.
ParsedValue parse_value(const std::string& text, Oid type, int32 typmod, MemoryContext into) {
    const char* input = text.c_str();
    return pg_call([&] {
        ParsedValue result{};
        Oid input_function = InvalidOid;
        Oid io_parameter = InvalidOid;
        getTypeInputInfo(type, &input_function, &io_parameter);
        int16 length = 0;
        bool by_value = false;
        get_typlenbyval(type, &length, &by_value);
        const MemoryContext caller_context = CurrentMemoryContext;
        const ResourceOwner caller_owner = CurrentResourceOwner;
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(caller_context);
        PG_TRY();
        {
            const int settings_level = NewGUCNestLevel();
            for (const auto& setting : STATE_SETTINGS)
                (void)set_config_option(setting[0], setting[1], PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
                                        false);
            const Datum parsed = OidInputFunctionCall(input_function, const_cast<char*>(input), io_parameter, typmod);
            MemoryContextSwitchTo(into);
            result.value = datumCopy(parsed, by_value, length);
            MemoryContextSwitchTo(caller_context);
            result.ok = true;
            AtEOXact_GUC(false, settings_level);
            ReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(caller_context);
            CurrentResourceOwner = caller_owner;
        }
        PG_CATCH();
        {
            MemoryContextSwitchTo(caller_context);
            ErrorData* error = CopyErrorData();
            FlushErrorState();
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(caller_context);
            CurrentResourceOwner = caller_owner;
            result.ok = false;
            result.sqlstate = error->sqlerrcode;
            result.message = error->message;
        }
        PG_END_TRY();
        return result;
    });
}

bool equal_values(const TransitionState* state, Datum a, Datum b) {
    if (state->compares_by_image)
        return a == b;
    return DatumGetBool(FunctionCall2Coll(const_cast<FmgrInfo*>(&state->equality), state->collation, a, b));
}

// The state's index, state_count for NULL, -1 for a value no edge names.
int state_index(const TransitionState* state, Datum value, bool is_null) {
    if (is_null)
        return state->state_count;
    for (int i = 0; i < state->state_count; ++i)
        if (equal_values(state, state->states[i], value))
            return i;
    return -1;
}

// A value as errors show it: a quoted literal, so that the text 'NULL' and
// NULL read apart.
std::string literal(Datum value, Oid type) {
    std::string text = "'";
    for (const char c : value_text(value, type))
        text += c == '\'' ? std::string("''") : std::string(1, c);
    return text + "'";
}

std::string state_text(const TransitionState* state, int index) {
    return index == state->state_count ? std::string("NULL") : literal(state->states[index], state->type);
}

}  // namespace

const TransitionState* build_transition(const TriggerDefinition& definition, MemoryContext into) {
    check_firing(definition, TRANSITION_FIRING);
    // Both events: on UPDATE alone any state could be inserted, on INSERT
    // alone any change made.
    if (!TRIGGER_FOR_INSERT(definition.trigger_type) || !TRIGGER_FOR_UPDATE(definition.trigger_type))
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               std::string(definition.guard) + " must be fired on INSERT and UPDATE, not on " +
                                   (TRIGGER_FOR_INSERT(definition.trigger_type) ? "INSERT" : "UPDATE") + " alone")
            .with_hint("Create it BEFORE INSERT OR UPDATE ... FOR EACH ROW.");
    const TransitionArguments arguments = parse_transition_arguments(definition);
    const ResolvedColumn column = resolve_column(definition, arguments.column);
    const Form_pg_attribute attribute = TupleDescAttr(definition.columns, column.attnum - 1);
    // A BEFORE trigger sees a stored generated column before PostgreSQL
    // computes it, and no trigger sees a virtual one's value.
    if (attribute->attgenerated != '\0')
        throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                               "column " + quoted(arguments.column) +
                                   " is a generated column, whose value a BEFORE trigger does not see")
            .with_column(arguments.column)
            .with_hint("Guard the column the status is computed from.");

    auto* state = pg_call([&] {
        return static_cast<TransitionState*>(MemoryContextAllocZero(into, sizeof(TransitionState)));
    });
    state->attnum = column.attnum;
    state->type = column.type;
    state->collation = attribute->attcollation;
    const Oid equality = pg_call([&] {
        TypeCacheEntry* entry = lookup_type_cache(column.type, TYPECACHE_EQ_OPR);
        return entry->eq_opr;
    });
    if (!OidIsValid(equality))
        throw column_type_error(definition, arguments.column, column.type, "a type with an equality operator")
            .with_hint("The guard compares states with the type's = operator (its default btree or hash "
                       "operator class).");
    pg_call([&] { fmgr_info_cxt(get_opcode(equality), &state->equality, into); });
    const Oid base_type = pg_call([&] { return getBaseType(column.type); });
    state->compares_by_image = attribute->attbyval && base_type != FLOAT4OID && base_type != FLOAT8OID;

    // The distinct states, in order of first mention, parsed once.
    const int most = static_cast<int>(arguments.edges.size()) * 2;
    state->states = pg_call([&] { return static_cast<Datum*>(MemoryContextAllocZero(into, sizeof(Datum) * most)); });
    struct EdgeIndexes {
        int from;  // -1: a start state
        int to;
    };
    std::vector<EdgeIndexes> indexes;
    constexpr int NULL_STATE = -3;  // until state_count is known
    auto index_of = [&](const Edge& edge, const StateText& text) {
        if (text.is_null) {
            state->declares_null = true;
            return NULL_STATE;
        }
        const ParsedValue parsed = parse_value(text.text, column.type, attribute->atttypmod, into);
        if (!parsed.ok)
            throw definition_error(definition, parsed.sqlstate,
                                   "state " + quoted_value(text.text) + " in edge " + quoted_value(edge.argument) +
                                       " is not a value of column " + quoted(arguments.column) + " (type " +
                                       type_name(column.type) + "): " + parsed.message)
                .with_column(arguments.column);
        for (int i = 0; i < state->state_count; ++i)
            if (pg_call([&] { return equal_values(state, state->states[i], parsed.value); }))
                return i;
        state->states[state->state_count] = parsed.value;
        return state->state_count++;
    };
    for (const Edge& edge : arguments.edges)
        indexes.push_back(EdgeIndexes{edge.is_start ? -1 : index_of(edge, edge.from), index_of(edge, edge.to)});

    const int width = state->state_count + 1;
    state->allowed = pg_call([&] { return static_cast<bool*>(MemoryContextAllocZero(into, width * width)); });
    state->starts = pg_call([&] { return static_cast<bool*>(MemoryContextAllocZero(into, width)); });
    for (size_t e = 0; e < indexes.size(); ++e) {
        const int from = indexes[e].from == NULL_STATE ? state->state_count : indexes[e].from;
        const int to = indexes[e].to == NULL_STATE ? state->state_count : indexes[e].to;
        bool& flag = from == -1 ? state->starts[to] : state->allowed[from * width + to];
        if (flag)
            throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                   "edge " + quoted_value(arguments.edges[e].argument) +
                                       " is declared more than once (states are compared with the type's =)");
        flag = true;
    }
    return state;
}

namespace {

void* build_transition_state(const TriggerData* trigger_data, MemoryContext into) {
    auto* state =
        const_cast<TransitionState*>(build_transition(describe_fired_trigger(trigger_data, TRANSITION_GUARD), into));
    // Only clones meet moved rows.
    state->root_trigger = trigger_data->tg_trigger->tgisclone ? root_trigger(trigger_data).trigger_oid : InvalidOid;
    return state;
}

// ---- rows moved between partitions ------------------------------------------
//
// An UPDATE that moves a row to another partition is a DELETE from its
// partition and an INSERT into the other: the guard's clone fires BEFORE
// UPDATE on the first (the edge is checked there) and BEFORE INSERT on the
// second, where the row's state is no start state as a rule. So the last row
// each root trigger's clones let through as an UPDATE is remembered, and an
// INSERT the start check refuses is let through as that row's move when it
// is on another partition, in the same transaction, with no relcache
// invalidation since (no partition attached or detached), and is the same
// row, every column matched by name, and the version the UPDATE replaced is
// deleted by this (sub)transaction with PostgreSQL's "moved to another
// partition" mark. The last proves the move: an UPDATE whose move did not
// happen (a BEFORE DELETE trigger on the source returned NULL, or it failed
// and its savepoint was rolled back) leaves no such version, and a later
// INSERT of the same row is a new row. Any INSERT the guard sees on the
// partitions consumes the memo, so that a move whose row entered in a start
// state leaves nothing for a later INSERT. Plain data in a context of its
// own; only partitions pay for it.
struct MovedRowMemo {
    bool valid;
    Oid root_trigger;
    TransactionId transaction;
    uint64 at_invalidation;
    Oid source_relid;
    ItemPointerData source_tid;  // OLD's, in the source partition
    HeapTuple row;
    TupleDesc columns;  // a copy of the source partition's row type
    Oid columns_relid;
    uint64 columns_at_invalidation;
};
// One per root trigger (several transition guards on one table); past that,
// the oldest gives way, and its move is refused, never let through.
constexpr int MOVED_ROW_SLOTS = 8;
MovedRowMemo moved_rows[MOVED_ROW_SLOTS];
int next_moved_row_slot = 0;
MemoryContext moved_row_context = nullptr;

MovedRowMemo* moved_row_slot(Oid root_trigger) {
    for (MovedRowMemo& memo : moved_rows)
        if (memo.root_trigger == root_trigger)
            return &memo;
    MovedRowMemo* memo = &moved_rows[next_moved_row_slot];
    next_moved_row_slot = (next_moved_row_slot + 1) % MOVED_ROW_SLOTS;
    memo->valid = false;
    memo->root_trigger = root_trigger;
    return memo;
}

// Called on the per-row path of an UPDATE let through on a partition.
void remember_update(const TriggerData* trigger_data, const TransitionState* state) {
    Relation relation = trigger_data->tg_relation;
    if (moved_row_context == nullptr)
        moved_row_context = AllocSetContextCreate(TopMemoryContext, "raceguard transition moved rows",
                                                  ALLOCSET_SMALL_SIZES);
    MovedRowMemo* memo = moved_row_slot(state->root_trigger);
    memo->valid = false;
    if (memo->row != nullptr) {
        heap_freetuple(memo->row);
        memo->row = nullptr;
    }
    const MemoryContext caller = MemoryContextSwitchTo(moved_row_context);
    if (memo->columns == nullptr || memo->columns_relid != RelationGetRelid(relation) ||
        memo->columns_at_invalidation != trigger_state_invalidations()) {
        if (memo->columns != nullptr)
            FreeTupleDesc(memo->columns);
        memo->columns = nullptr;
        memo->columns = CreateTupleDescCopy(RelationGetDescr(relation));
        memo->columns_relid = RelationGetRelid(relation);
        memo->columns_at_invalidation = trigger_state_invalidations();
    }
    memo->row = heap_copytuple(trigger_data->tg_newtuple);
    MemoryContextSwitchTo(caller);
    memo->transaction = GetTopTransactionIdIfAny();
    memo->at_invalidation = trigger_state_invalidations();
    memo->source_relid = RelationGetRelid(relation);
    memo->source_tid = trigger_data->tg_trigtuple->t_self;
    memo->valid = true;
}

// An INSERT let through as a new row on a partition: whatever UPDATE was
// remembered is not to be matched by a later INSERT.
void forget_moved_row(const TransitionState* state) {
    for (MovedRowMemo& memo : moved_rows)
        if (memo.root_trigger == state->root_trigger)
            memo.valid = false;
}

// Whether the version the remembered UPDATE replaced is deleted by this
// transaction (an aborted subtransaction's delete does not count) and marked
// as moved to another partition. C-side.
bool moved_by_this_command(const MovedRowMemo* memo) {
    Relation source = try_relation_open(memo->source_relid, AccessShareLock);
    if (source == nullptr)
        return false;
    bool moved = false;
    TupleTableSlot* slot = table_slot_create(source, nullptr);
    ItemPointerData tid = memo->source_tid;
    if (table_tuple_fetch_row_version(source, &tid, SnapshotAny, slot)) {
        bool should_free = false;
        HeapTuple version = ExecFetchSlotHeapTuple(slot, false, &should_free);
        HeapTupleHeader header = version->t_data;
        moved = (header->t_infomask & HEAP_XMAX_INVALID) == 0 && !HEAP_XMAX_IS_LOCKED_ONLY(header->t_infomask) &&
                HeapTupleHeaderIndicatesMovedPartitions(header) &&
                TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(header));
        if (should_free)
            heap_freetuple(version);
    }
    ExecDropSingleTupleTableSlot(slot);
    relation_close(source, AccessShareLock);
    return moved;
}

// Whether an INSERT on a partition is the second half of the last UPDATE
// remembered for its root trigger; consumes the memo. C-side.
bool is_moved_row(const TriggerData* trigger_data, const TransitionState* state) {
    MovedRowMemo* memo = moved_row_slot(state->root_trigger);
    if (!memo->valid || memo->transaction != GetTopTransactionIdIfAny() ||
        memo->at_invalidation != trigger_state_invalidations() ||
        memo->source_relid == RelationGetRelid(trigger_data->tg_relation))
        return false;
    memo->valid = false;
    if (!moved_by_this_command(memo))
        return false;
    TupleDesc inserted_columns = RelationGetDescr(trigger_data->tg_relation);
    TupleDesc updated_columns = memo->columns;
    int matched = 0;
    for (int i = 0; i < inserted_columns->natts; ++i) {
        const Form_pg_attribute inserted = TupleDescAttr(inserted_columns, i);
        if (inserted->attisdropped)
            continue;
        int j = 0;
        while (j < updated_columns->natts && (TupleDescAttr(updated_columns, j)->attisdropped ||
                                              strcmp(NameStr(TupleDescAttr(updated_columns, j)->attname),
                                                     NameStr(inserted->attname)) != 0))
            ++j;
        if (j == updated_columns->natts)
            return false;
        bool inserted_null = false;
        bool updated_null = false;
        const Datum inserted_value = heap_getattr(trigger_data->tg_trigtuple, i + 1, inserted_columns, &inserted_null);
        const Datum updated_value = heap_getattr(memo->row, j + 1, updated_columns, &updated_null);
        if (inserted_null != updated_null ||
            (!inserted_null && !datum_image_eq(inserted_value, updated_value, inserted->attbyval, inserted->attlen)))
            return false;
        ++matched;
    }
    int updated_count = 0;
    for (int j = 0; j < updated_columns->natts; ++j)
        updated_count += TupleDescAttr(updated_columns, j)->attisdropped ? 0 : 1;
    return matched == updated_count;
}

const char* column_name(const TriggerData* trigger_data, const TransitionState* state) {
    return NameStr(TupleDescAttr(RelationGetDescr(trigger_data->tg_relation), state->attnum - 1)->attname);
}

std::string shown_value(const TransitionState* state, Datum value, bool is_null) {
    return is_null ? std::string("NULL") : literal(value, state->type);
}

Error transition_error(const TriggerData* trigger_data, const TransitionState* state, int sqlstate,
                       const std::string& what) {
    Relation relation = trigger_data->tg_relation;
    const std::string column = column_name(trigger_data, state);
    Error error = table_error(relation, sqlstate,
                              what + " of column \"" + column + "\" of table \"" + RelationGetRelationName(relation) +
                                  "\"");
    error.with_column(column).with_constraint(trigger_data->tg_trigger->tgname);
    return error;
}

[[noreturn]] void throw_undeclared_start(const TriggerData* trigger_data, const TransitionState* state,
                                         Datum value, bool is_null) {
    Error error = transition_error(trigger_data, state, ERRCODE_CHECK_VIOLATION, "undeclared start state");
    const char* trigger_name = trigger_data->tg_trigger->tgname;
    if (may_select_column(trigger_data->tg_relation, state->attnum)) {
        std::string starts;
        for (int i = 0; i <= state->state_count; ++i)
            if (state->starts[i])
                starts += (starts.empty() ? "" : ", ") + state_text(state, i);
        error.with_detail("The new row's state is " + shown_value(state, value, is_null) + "; trigger \"" +
                          trigger_name + "\" lets a row start in " +
                          (starts.empty() ? std::string("no state") : starts) + ".");
    }
    error.with_hint("Declare the start state with an edge '>state' if rows may start in it.");
    throw error;
}

[[noreturn]] void throw_undeclared_edge(const TriggerData* trigger_data, const TransitionState* state, Datum old_value,
                                        bool old_is_null, Datum new_value, bool new_is_null) {
    Error error = transition_error(trigger_data, state, ERRCODE_CHECK_VIOLATION, "undeclared transition");
    if (may_select_column(trigger_data->tg_relation, state->attnum))
        error.with_detail("The update changes it from " + shown_value(state, old_value, old_is_null) + " to " +
                          shown_value(state, new_value, new_is_null) + ", which trigger \"" +
                          trigger_data->tg_trigger->tgname + "\" does not declare as an edge.");
    throw error;
}

[[noreturn]] void throw_duplicate(const TriggerData* trigger_data, const TransitionState* state, Datum original,
                                  bool original_is_null, Datum current, bool current_is_null) {
    Error error = transition_error(trigger_data, state, ERRCODE_CHECK_VIOLATION, "duplicate transition");
    if (may_select_column(trigger_data->tg_relation, state->attnum)) {
        const std::string now = shown_value(state, current, current_is_null);
        const std::string written = current_is_null ? std::string("NULL") : value_text(current, state->type);
        error.with_detail("Another transaction changed it from " + shown_value(state, original, original_is_null) +
                          " to " + now + " after this statement began, and this update sets it to " + now +
                          " again: a duplicate transition (trigger \"" + trigger_data->tg_trigger->tgname +
                          "\" does not declare the self-edge " + written + ">" + written + ").");
    } else {
        error.with_detail("Another transaction changed it to the value this update sets after this statement "
                          "began: a duplicate transition.");
    }
    error.with_hint("Re-read the row: the transition was already made.");
    throw error;
}

[[noreturn]] void throw_duplicate_start(const TriggerData* trigger_data, const TransitionState* state, Datum current,
                                        bool current_is_null) {
    Error error = transition_error(trigger_data, state, ERRCODE_CHECK_VIOLATION, "duplicate transition");
    if (may_select_column(trigger_data->tg_relation, state->attnum)) {
        const std::string now = shown_value(state, current, current_is_null);
        error.with_detail("Another transaction inserted the row with it set to " + now +
                          " after this statement began, and this update sets it to " + now +
                          " again: a duplicate start (trigger \"" + trigger_data->tg_trigger->tgname +
                          "\" does not declare the self-edge).");
    } else {
        error.with_detail("Another transaction inserted the row, with the value this update sets, after this "
                          "statement began: a duplicate transition.");
    }
    error.with_hint("Re-read the row: the transition was already made.");
    throw error;
}

[[noreturn]] void throw_undecidable(const TriggerData* trigger_data, const TransitionState* state) {
    Error error = transition_error(trigger_data, state, ERRCODE_T_R_SERIALIZATION_FAILURE,
                                   "cannot tell whether this update repeats another transaction's transition");
    error.with_detail("Another transaction updated the row after this statement began, and the version this "
                      "statement read could not be found through the table's primary key or replica identity "
                      "index (there is none, or the key changed).");
    error.with_hint("Retry the transaction.");
    throw error;
}

// What the column held in the version of the row this statement read,
// compared with its value in OLD; `inserted` when there was none: another
// transaction inserted the row after the statement began (an INSERT ... ON
// CONFLICT DO UPDATE takes the conflicting row as it is now).
enum class Original { same, changed, inserted, unknown };

// Finds the version visible to the statement's snapshot through the primary
// key (or replica identity) index with OLD's key, and makes sure it is the
// same row: OLD must be at the end of its update chain. C-side code (inside
// pg_call); `original_out` is filled when the column changed.
Original original_version(const TriggerData* trigger_data, const TransitionState* state, Datum* original_out,
                          bool* original_null_out) {
    Relation relation = trigger_data->tg_relation;
    HeapTuple old_row = trigger_data->tg_trigtuple;
    TupleDesc columns = RelationGetDescr(relation);
    // OLD is no UPDATE's new version, and the statement's snapshot does not
    // see it: no version of the row existed for the statement. Not on a
    // partition, where a row another transaction moved in from another
    // partition is inserted too.
    if ((old_row->t_data->t_infomask & HEAP_UPDATED) == 0 && !relation->rd_rel->relispartition)
        return Original::inserted;
    List* index_list = RelationGetIndexList(relation);
    list_free(index_list);
    const Oid index_oid = OidIsValid(relation->rd_pkindex) ? relation->rd_pkindex : relation->rd_replidindex;
    if (!OidIsValid(index_oid) || !ActiveSnapshotSet())
        return Original::unknown;
    Relation index = index_open(index_oid, AccessShareLock);
    const int key_count = IndexRelationGetNumberOfKeyAttributes(index);
    ScanKeyData keys[INDEX_MAX_KEYS];
    bool usable = true;
    for (int k = 0; k < key_count && usable; ++k) {
        const AttrNumber attnum = index->rd_index->indkey.values[k];
        bool is_null = false;
        const Datum value = attnum > 0 ? heap_getattr(old_row, attnum, columns, &is_null) : 0;
        const Oid type = index->rd_opcintype[k];
        const Oid equal_operator =
            get_opfamily_member(index->rd_opfamily[k], type, type, BTEqualStrategyNumber);
        usable = attnum > 0 && !is_null && OidIsValid(equal_operator) && index->rd_rel->relam == BTREE_AM_OID;
        if (usable) {
            ScanKeyInit(&keys[k], static_cast<AttrNumber>(k + 1), BTEqualStrategyNumber, get_opcode(equal_operator),
                        value);
            keys[k].sk_collation = index->rd_indcollation[k];
        }
    }
    Original result = Original::unknown;
    if (usable) {
        TupleTableSlot* seen = table_slot_create(relation, nullptr);
        TupleTableSlot* link = table_slot_create(relation, nullptr);
        IndexScanDesc scan = compat::index_beginscan(relation, index, GetActiveSnapshot(), key_count);
        index_rescan(scan, keys, key_count, nullptr, 0);
        // Every visible match, not the first only: from 17 on the primary key
        // may be deferrable, and this transaction's own rows may then share
        // the key until commit.
        while (result == Original::unknown && index_getnext_slot(scan, ForwardScanDirection, seen)) {
            // Follow the update chain from the version seen to OLD.
            ItemPointerData tid = seen->tts_tid;
            bool reached = false;
            TransactionId expected_xmin = InvalidTransactionId;
            for (int hop = 0; hop < 1000; ++hop) {
                if (ItemPointerEquals(&tid, &old_row->t_self)) {
                    reached = true;
                    break;
                }
                if (!table_tuple_fetch_row_version(relation, &tid, SnapshotAny, link))
                    break;
                bool should_free = false;
                HeapTuple version = ExecFetchSlotHeapTuple(link, false, &should_free);
                HeapTupleHeader header = version->t_data;
                const bool linked = expected_xmin == InvalidTransactionId ||
                                    TransactionIdEquals(HeapTupleHeaderGetXmin(header), expected_xmin);
                ItemPointerData next = header->t_ctid;
                const bool ends = !linked || HeapTupleHeaderIndicatesMovedPartitions(header) ||
                                  ItemPointerEquals(&next, &tid) ||
                                  (header->t_infomask & HEAP_XMAX_INVALID) != 0;
                expected_xmin = HeapTupleHeaderGetUpdateXid(header);
                if (should_free)
                    heap_freetuple(version);
                if (ends)
                    break;
                tid = next;
            }
            if (reached) {
                bool seen_null = false;
                bool old_null = false;
                const Datum seen_value = slot_getattr(seen, state->attnum, &seen_null);
                const Datum old_value = heap_getattr(old_row, state->attnum, columns, &old_null);
                const bool same =
                    seen_null == old_null && (seen_null || equal_values(state, seen_value, old_value));
                result = same ? Original::same : Original::changed;
                if (!same) {
                    int16 length = 0;
                    bool by_value = false;
                    get_typlenbyval(state->type, &length, &by_value);
                    *original_null_out = seen_null;
                    *original_out = seen_null ? 0 : datumCopy(seen_value, by_value, length);
                }
            }
        }
        index_endscan(scan);
        ExecDropSingleTupleTableSlot(link);
        ExecDropSingleTupleTableSlot(seen);
    }
    index_close(index, AccessShareLock);
    return result;
}

// An UPDATE that keeps the column: accepted unless it repeats, on the row
// another transaction moved after this statement began, that transition.
void check_unchanged(const TriggerData* trigger_data, const TransitionState* state, stats::Counters* counters,
                     Datum value, bool is_null) {
    const bool assigned =
        bms_is_member(state->attnum - FirstLowInvalidHeapAttributeNumber, trigger_data->tg_updatedcols);
    if (!assigned || !row_changed_while_waiting(trigger_data->tg_trigtuple))
        return;
    const int index = state_index(state, value, is_null);
    if (index >= 0 && state->allowed[index * (state->state_count + 1) + index])
        return;  // the self-edge X>X is declared
    Datum original = 0;
    bool original_is_null = false;
    const Original found =
        pg_call([&] { return original_version(trigger_data, state, &original, &original_is_null); });
    if (found == Original::same)
        return;
    ++counters->n[stats::TR_REFUSED];
    if (found == Original::unknown)
        throw_undecidable(trigger_data, state);
    ++counters->n[stats::TR_DUPLICATES];
    if (found == Original::inserted)
        throw_duplicate_start(trigger_data, state, value, is_null);
    throw_duplicate(trigger_data, state, original, original_is_null, value, is_null);
}

Datum on_update(const TriggerData* trigger_data, const TransitionState* state, stats::Counters* counters) {
    HeapTuple old_row = trigger_data->tg_trigtuple;
    HeapTuple new_row = trigger_data->tg_newtuple;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);
    bool old_is_null = false;
    bool new_is_null = false;
    const Datum old_value = heap_getattr(old_row, state->attnum, columns, &old_is_null);
    const Datum new_value = heap_getattr(new_row, state->attnum, columns, &new_is_null);
    ++counters->n[stats::TR_ROWS];
    if (old_is_null == new_is_null && (old_is_null || equal_values(state, old_value, new_value))) {
        check_unchanged(trigger_data, state, counters, old_value, old_is_null);
        if (OidIsValid(state->root_trigger))
            remember_update(trigger_data, state);
        return PointerGetDatum(new_row);
    }
    const int from = state_index(state, old_value, old_is_null);
    const int to = state_index(state, new_value, new_is_null);
    const bool allowed = from >= 0 && to >= 0 &&
                         (state->allowed[from * (state->state_count + 1) + to] || (old_is_null && state->starts[to]));
    if (likely(allowed)) {
        if (OidIsValid(state->root_trigger))
            remember_update(trigger_data, state);
        return PointerGetDatum(new_row);
    }
    ++counters->n[stats::TR_REFUSED];
    throw_undeclared_edge(trigger_data, state, old_value, old_is_null, new_value, new_is_null);
}

Datum on_insert(const TriggerData* trigger_data, const TransitionState* state, stats::Counters* counters) {
    HeapTuple row = trigger_data->tg_trigtuple;
    bool is_null = false;
    const Datum value = heap_getattr(row, state->attnum, RelationGetDescr(trigger_data->tg_relation), &is_null);
    ++counters->n[stats::TR_ROWS];
    const int index = state_index(state, value, is_null);
    if (likely(index >= 0 && state->starts[index])) {
        if (OidIsValid(state->root_trigger))
            forget_moved_row(state);
        return PointerGetDatum(row);
    }
    // A row an UPDATE moves here from another partition, checked there.
    if (OidIsValid(state->root_trigger) && pg_call([&] { return is_moved_row(trigger_data, state); }))
        return PointerGetDatum(row);
    ++counters->n[stats::TR_REFUSED];
    throw_undeclared_start(trigger_data, state, value, is_null);
}

// The declared states no edge from a start state reaches.
std::vector<int> unreachable_states(const TransitionState* state) {
    const int width = state->state_count + 1;
    std::vector<bool> reached(width, false);
    std::vector<int> work;
    for (int i = 0; i < width; ++i)
        if (state->starts[i]) {
            reached[i] = true;
            work.push_back(i);
        }
    while (!work.empty()) {
        const int from = work.back();
        work.pop_back();
        for (int to = 0; to < width; ++to)
            if (state->allowed[from * width + to] && !reached[to]) {
                reached[to] = true;
                work.push_back(to);
            }
    }
    std::vector<int> missing;
    for (int i = 0; i < width; ++i)
        if (!reached[i] && (i < state->state_count || state->declares_null))
            missing.push_back(i);
    return missing;
}

}  // namespace

std::vector<std::string> transition_warnings(const TriggerDefinition& definition, Relation relation) {
    std::vector<std::string> warnings;
    MemoryContext scratch = pg_call([] {
        return AllocSetContextCreate(CurrentMemoryContext, "raceguard transition check", ALLOCSET_SMALL_SIZES);
    });
    try {
        const TransitionState* state = build_transition(definition, scratch);
        bool has_start = false;
        for (int i = 0; i <= state->state_count; ++i)
            has_start = has_start || state->starts[i];
        if (!has_start)
            warnings.push_back("warning: no start state is declared ('>state'): every INSERT is refused");
        else
            for (const int i : unreachable_states(state))
                warnings.push_back("warning: state " + state_text(state, i) +
                                   " is not reached by any edge from a start state: only rows already in it, or "
                                   "inserted before the guard, can be in it");
    } catch (const Error&) {
        // The definition's own error is reported by the caller.
    }
    pg_call([&] { MemoryContextDelete(scratch); });
    const bool has_key = pg_call([&] {
        List* indexes = RelationGetIndexList(relation);
        list_free(indexes);
        return OidIsValid(relation->rd_pkindex) || OidIsValid(relation->rd_replidindex);
    });
    if (!has_key && relation->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
        warnings.push_back("warning: no primary key or replica identity index: an UPDATE that waited for another "
                           "transaction's change of the row and assigns the column its present value is refused "
                           "with 40001, since the version it read cannot be found (docs/transition.md)");
    return warnings;
}

Datum transition_trigger(FunctionCallInfo fcinfo) {
    const TriggerData* trigger_data = require_trigger_call(fcinfo, TRANSITION_GUARD);
    const auto* state = trigger_state<TransitionState>(fcinfo, trigger_data, build_transition_state);
    stats::Counters* counters = stats::trigger_counters(fcinfo, stats::Guard::transition);
    if (TRIGGER_FIRED_BY_INSERT(trigger_data->tg_event))
        return on_insert(trigger_data, state, counters);
    return on_update(trigger_data, state, counters);
}

extern const GuardKind TRANSITION_KIND = {"transition", build_transition_state, describe_transition};

}  // namespace raceguard
