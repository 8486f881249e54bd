// raceguard.claim(), claim_lease(), release_lease(), extend_lease():
// FOR UPDATE SKIP LOCKED claims, and leases with fencing tokens (SPEC §4).
//
// They run with the caller's privileges (SECURITY INVOKER, row-level
// security applies) and evaluate the caller's filter and order_by under the
// caller's own search_path, as SQL the caller could run anyway. Everything
// they add to that SQL themselves is schema-qualified (functions, operators,
// casts) and every identifier is quoted, so nothing planted in the caller's
// schemas is ever called by them.
//
// Nothing a user names can meet a name of ours: the statements introduce one
// name only, claim_lease()'s CTE, chosen to differ from the table's name and
// invisible to the caller's SQL inside it, and no output column a user
// column can be named like (ctid, tableoid); the token and the times are
// parameters, and the caller's filter and order_by may not refer to
// parameters. The filter and order_by are checked to be one expression and
// one ORDER BY list (check_caller_sql) and sit on lines of their own, so a
// trailing "-- comment" in them ends where they end.
//
// One plan per call shape: the statement for a (function, table, filter,
// order_by, batch, lease columns) is prepared once per backend and kept;
// token, expiry and the current time are parameters. PostgreSQL's plan cache
// replans it when the table changes, or when the search_path or the user
// differs from when it was planned.
#include "citus.hpp"
#include "claim.hpp"
#include "compat.hpp"
#include "set_returning.hpp"
#include "stats.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relation.h"
#include "access/transam.h"
#include "access/tupconvert.h"
#include "catalog/namespace.h"
#include "catalog/pg_sequence.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "utils/datetime.h"
#include "utils/plancache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
}

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace raceguard {

namespace {

// The target's table, checked: a table's row type, UPDATE privilege.
struct ClaimTarget {
    Oid relid;
    std::string name;            // the table's own name, unquoted
    std::string qualified_name;  // quoted schema.table
};

ClaimTarget claim_target(FunctionCallInfo fcinfo) {
    const Oid type = pg_call([&] { return get_fn_expr_argtype(fcinfo->flinfo, 0); });
    struct Found {
        Oid relid;
        char kind;
        const char* schema;
        const char* name;
        const char* type_name;
        bool may_update;
    };
    const Found found = pg_call([&] {
        Found result{};
        result.relid = get_typ_typrelid(type);
        // Built-in types as SQL writes them ("integer"), others schema-qualified.
        result.type_name = type < FirstNormalObjectId ? format_type_be(type) : format_type_be_qualified(type);
        if (OidIsValid(result.relid)) {
            result.kind = get_rel_relkind(result.relid);
            result.schema = get_namespace_name(get_rel_namespace(result.relid));
            result.name = get_rel_name(result.relid);
            // FOR UPDATE needs UPDATE on the table or on one of its columns.
            const Oid user = GetUserId();
            result.may_update = pg_class_aclcheck(result.relid, user, ACL_UPDATE) == ACLCHECK_OK ||
                                pg_attribute_aclcheck_all(result.relid, user, ACL_UPDATE, ACLMASK_ANY) == ACLCHECK_OK;
        }
        return result;
    });
    if (!OidIsValid(found.relid) || (found.kind != RELKIND_RELATION && found.kind != RELKIND_PARTITIONED_TABLE))
        throw Error(ERRCODE_WRONG_OBJECT_TYPE, std::string(found.type_name) + " is not the row type of a table")
            .with_hint("Pass a NULL of the table's row type, e.g. raceguard.claim(NULL::invoices, ...).");
    const std::string qualified = pg_call([&] { return quote_qualified_identifier(found.schema, found.name); });
    if (!found.may_update)
        throw Error(ERRCODE_INSUFFICIENT_PRIVILEGE,
                    "permission denied for table " + qualified + ": claiming a row locks it, which needs UPDATE privilege");
    return ClaimTarget{found.relid, found.name, qualified};
}

std::string quoted_identifier(const char* name) { return pg_call([&] { return quote_identifier(name); }); }

// A lease column: present, and of the type a lease needs.
std::string lease_column(const ClaimTarget& target, FunctionCallInfo fcinfo, int argument, const char* parameter,
                         Oid wanted_type, const char* wanted_name) {
    if (PG_ARGISNULL(argument))
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, std::string(parameter) + " must not be NULL");
    const char* column = NameStr(*PG_GETARG_NAME(argument));
    const Oid relid = target.relid;
    struct Column {
        AttrNumber attnum;
        Oid type;
    };
    const Column found = pg_call([&] {
        Column result{};
        result.attnum = get_attnum(relid, column);
        if (result.attnum > 0)
            result.type = get_atttype(relid, result.attnum);
        return result;
    });
    const std::string where = "column \"" + std::string(column) + "\" of table " + target.qualified_name;
    const std::string needed = std::string("A lease needs a ") + wanted_name + " column (" + parameter + ") on the table.";
    if (found.attnum < 0)
        throw Error(ERRCODE_FEATURE_NOT_SUPPORTED, where + " is a system column").with_hint(needed);
    if (found.attnum == 0)
        throw Error(ERRCODE_UNDEFINED_COLUMN, where + " does not exist").with_hint(needed);
    if (found.type != wanted_type)
        throw Error(ERRCODE_DATATYPE_MISMATCH,
                    where + " has type " + type_name(found.type) + ", a lease's " + parameter + " needs " + wanted_name);
    return quoted_identifier(column);
}

// The table and its two lease columns, from the arguments at `first_column`
// (token_column) and the one after it (until_column).
struct LeaseTarget {
    ClaimTarget table;
    std::string token_column;
    std::string until_column;
};

LeaseTarget lease_target(FunctionCallInfo fcinfo, int first_column) {
    LeaseTarget target{claim_target(fcinfo), {}, {}};
    target.token_column = lease_column(target.table, fcinfo, first_column, "token_column", INT8OID, "bigint");
    target.until_column = lease_column(target.table, fcinfo, first_column + 1, "until_column", TIMESTAMPTZOID,
                                       "timestamp with time zone");
    return target;
}

// claim_lease()'s attempts_column and max_attempts (1.1; a call through
// 1.0's shorter definition has neither): the quoted column, empty without
// one, and the count below which a row is leased: max_attempts, or without
// it the column type's maximum, since a row at that maximum cannot count
// another attempt (it is left alone, a dead letter, rather than failing the
// whole call with 22003 and stopping every row behind it).
struct Attempts {
    std::string column;
    int64 lease_below;
};

Attempts attempts_arguments(FunctionCallInfo fcinfo, const LeaseTarget& target, int argument) {
    Attempts attempts{{}, 0};
    const bool has_column = PG_NARGS() > argument && !PG_ARGISNULL(argument);
    const bool has_max = PG_NARGS() > argument + 1 && !PG_ARGISNULL(argument + 1);
    const int32 max_attempts = has_max ? PG_GETARG_INT32(argument + 1) : 0;
    if (has_max) {
        if (max_attempts < 1)
            throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                        "max_attempts must be at least 1, not " + std::to_string(max_attempts));
        if (!has_column)
            throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "max_attempts needs attempts_column")
                .with_hint("max_attempts compares the count in attempts_column; name that column too.");
    }
    if (!has_column)
        return attempts;
    const Oid type = pg_call([&] {
        const AttrNumber attnum = get_attnum(target.table.relid, NameStr(*PG_GETARG_NAME(argument)));
        return attnum > 0 ? get_atttype(target.table.relid, attnum) : InvalidOid;
    });
    const Oid wanted = type == INT2OID || type == INT4OID ? type : INT8OID;
    attempts.column = lease_column(target.table, fcinfo, argument, "attempts_column", wanted,
                                   "smallint, integer or bigint");
    if (attempts.column == target.token_column || attempts.column == target.until_column)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                    "attempts_column must differ from token_column and until_column, not " + attempts.column);
    const int64 type_max = wanted == INT2OID ? PG_INT16_MAX : wanted == INT4OID ? PG_INT32_MAX : PG_INT64_MAX;
    if (max_attempts > type_max)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                    "max_attempts " + std::to_string(max_attempts) + " is out of reach of column \"" +
                        NameStr(*PG_GETARG_NAME(argument)) + "\" of table " + target.table.qualified_name +
                        ": its type " + type_name(wanted) + " counts up to " + std::to_string(type_max))
            .with_hint("Use a max_attempts of at most " + std::to_string(type_max) +
                       ", or a wider attempts column.");
    attempts.lease_below = has_max ? max_attempts : type_max;
    return attempts;
}

int32 batch_argument(FunctionCallInfo fcinfo, int argument) {
    const bool is_null = PG_ARGISNULL(argument);
    const int32 batch = is_null ? 0 : PG_GETARG_INT32(argument);
    if (is_null || batch < 1)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                    "batch must be at least 1, not " + (is_null ? std::string("<NULL>") : std::to_string(batch)));
    return batch;
}

// When a lease ends: clock_timestamp() + lease, computed once, and refused
// unless it is later than that clock_timestamp(). Comparing the interval
// with zero is not enough: it counts a month as 30 days, so '1 month -29
// days' is "positive" yet moves the clock back from a date in February.
struct LeaseExpiry {
    TimestampTz now;
    TimestampTz until;
};

LeaseExpiry lease_expiry(FunctionCallInfo fcinfo, int argument) {
    const bool is_null = PG_ARGISNULL(argument);
    const Datum lease = is_null ? static_cast<Datum>(0) : PG_GETARG_DATUM(argument);
    LeaseExpiry expiry{};
    if (!is_null)
        expiry = pg_call([&] {
            LeaseExpiry computed{};
            computed.now = GetCurrentTimestamp();
            computed.until = DatumGetTimestampTz(
                DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(computed.now), lease));
            return computed;
        });
    if (is_null || !(expiry.until > expiry.now)) {
        const std::string shown =
            is_null ? std::string("<NULL>")
                    : std::string(pg_call([&] { return DatumGetCString(DirectFunctionCall1(interval_out, lease)); }));
        Error error(ERRCODE_INVALID_PARAMETER_VALUE, "lease must be a positive interval, not " + shown);
        if (!is_null)
            error.with_detail("A lease ends at clock_timestamp() + lease, which must be later than clock_timestamp(); "
                              "months and days count as calendar months and days from now.");
        throw error;
    }
    return expiry;
}

int64 token_argument(FunctionCallInfo fcinfo, int argument) {
    if (PG_ARGISNULL(argument))
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "token must not be NULL");
    return PG_GETARG_INT64(argument);
}

std::string text_argument(FunctionCallInfo fcinfo, int argument, const char* if_null) {
    if (PG_ARGISNULL(argument))
        return if_null;
    return pg_call([&] { return text_to_cstring(PG_GETARG_TEXT_PP(argument)); });
}

// The caller's SQL: the filter (a condition) and order_by (an ORDER BY list,
// or empty).
struct CallerSql {
    std::string filter;
    std::string order_by;
};

CallerSql caller_sql(FunctionCallInfo fcinfo, int filter_argument, int order_argument) {
    return CallerSql{text_argument(fcinfo, filter_argument, "true"), text_argument(fcinfo, order_argument, "")};
}

// The caller's filter, as the WHERE condition of a statement of ours. The
// doubled parentheses keep the filter one operand even where
// check_caller_sql has accepted it as "a) OR (b".
std::string where_condition(const CallerSql& sql) { return "((\n" + sql.filter + "\n))"; }

std::string order_clause(const CallerSql& sql) {
    return sql.order_by.empty() ? std::string() : "\nORDER BY\n" + sql.order_by + "\n";
}

// Whether a parsed statement is the check's SELECT and nothing more: the
// filter stayed in its WHERE and order_by in its ORDER BY.
bool is_plain_select(const CachedPlanSource* source, bool with_order) {
    if (source->raw_parse_tree == nullptr || !IsA(source->raw_parse_tree->stmt, SelectStmt))
        return false;
    const auto* select = reinterpret_cast<const SelectStmt*>(source->raw_parse_tree->stmt);
    return select->op == SETOP_NONE && select->distinctClause == NIL && select->intoClause == nullptr &&
           list_length(select->targetList) == 1 && list_length(select->fromClause) == 1 &&
           select->whereClause != nullptr && select->groupClause == NIL && select->havingClause == nullptr &&
           select->windowClause == NIL && select->valuesLists == NIL && (select->sortClause != NIL) == with_order &&
           select->limitOffset == nullptr && select->limitCount == nullptr && list_length(select->lockingClause) == 1 &&
           select->withClause == nullptr;
}

// Checks, before a call shape's first plan, that the filter is one
// expression and order_by one ORDER BY list over the table's columns, and
// that neither refers to a parameter: prepared on their own, with no
// parameters, as "SELECT table.* FROM table WHERE (filter) ORDER BY
// order_by FOR UPDATE", they must parse as that statement alone. (FOR UPDATE
// makes it take the lock the claim takes anyway, and no other.) Parse errors
// are PostgreSQL's own (42601, 42703, 42P02, ...).
void check_caller_sql(const ClaimTarget& target, const CallerSql& sql) {
    const auto parses_alone = [&](bool with_order) {
        const std::string statement = "SELECT " + target.qualified_name + ".* FROM " + target.qualified_name +
                                      " WHERE (\n" + sql.filter + "\n)" +
                                      (with_order ? order_clause(sql) : std::string()) + " FOR UPDATE";
        return pg_call([&] {
            SPIPlanPtr plan = SPI_prepare(statement.c_str(), 0, nullptr);
            if (plan == nullptr)
                elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
            List* sources = SPI_plan_get_plan_sources(plan);
            const bool alone = list_length(sources) == 1 &&
                               is_plain_select(static_cast<const CachedPlanSource*>(linitial(sources)), with_order);
            SPI_freeplan(plan);
            return alone;
        });
    };
    if (!parses_alone(false))
        throw Error(ERRCODE_SYNTAX_ERROR, "filter must be one SQL condition")
            .with_hint("The filter is used as WHERE (filter): it cannot close that parenthesis to add clauses or "
                       "statements of its own.");
    if (!sql.order_by.empty() && !parses_alone(true))
        throw Error(ERRCODE_SYNTAX_ERROR, "order_by must be one ORDER BY list")
            .with_hint("order_by is used as ORDER BY order_by: it cannot add LIMIT, OFFSET, FOR UPDATE or other "
                       "clauses or statements of its own.");
}

// ---- kept plans ---------------------------------------------------------

// Plans kept across calls (SPI_keepplan), by statement text, which holds
// every part of the call shape. A backend sees few call shapes; past the
// limit the least recently used plans that no call is running are freed. A
// running plan is never freed: a filter may itself call a claim, whose new
// plans must not free the plan of the claim that runs the filter.
struct KeptPlan {
    SPIPlanPtr plan;
    uint64 last_used;
    int running;  // calls executing the plan now (nested claims)
};

std::unordered_map<std::string, KeptPlan>& kept_plans() {
    static std::unordered_map<std::string, KeptPlan> plans;
    return plans;
}
uint64 plan_use_clock = 0;
constexpr size_t MAX_KEPT_PLANS = 256;

// A kept plan, marked running while this object lives (until the call that
// executes it returns or unwinds). The map's nodes never move, and a running
// entry is never erased, so the pointer stays valid.
class RunningPlan {
public:
    explicit RunningPlan(KeptPlan* entry) : entry_(entry) {
        ++entry_->running;
        entry_->last_used = ++plan_use_clock;
    }
    ~RunningPlan() { --entry_->running; }
    RunningPlan(const RunningPlan&) = delete;
    RunningPlan& operator=(const RunningPlan&) = delete;
    SPIPlanPtr plan() const { return entry_->plan; }

private:
    KeptPlan* entry_;
};

void evict_idle_plans(std::unordered_map<std::string, KeptPlan>& plans) {
    while (plans.size() >= MAX_KEPT_PLANS) {
        auto victim = plans.end();
        for (auto entry = plans.begin(); entry != plans.end(); ++entry)
            if (entry->second.running == 0 &&
                (victim == plans.end() || entry->second.last_used < victim->second.last_used))
                victim = entry;
        if (victim == plans.end())
            return;  // every kept plan is running (claims nested that deep): keep them all for now
        SPIPlanPtr idle = victim->second.plan;
        plans.erase(victim);
        pg_call([&] { SPI_freeplan(idle); });
    }
}

// The kept plan for a statement; `check` runs before a statement is
// prepared for the first time.
template <typename Check>
KeptPlan* plan_for(const std::string& statement, int parameter_count, Oid* parameter_types, Check&& check) {
    auto& plans = kept_plans();
    const auto found = plans.find(statement);
    if (found != plans.end())
        return &found->second;
    check();
    evict_idle_plans(plans);
    SPIPlanPtr plan = pg_call([&] {
        SPIPlanPtr prepared = SPI_prepare(statement.c_str(), parameter_count, parameter_types);
        if (prepared == nullptr)
            elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
        SPI_keepplan(prepared);
        return prepared;
    });
    try {
        return &plans.emplace(statement, KeptPlan{plan, 0, 0}).first->second;
    } catch (...) {
        pg_call([&] { SPI_freeplan(plan); });
        throw;
    }
}

KeptPlan* plan_for(const std::string& statement, int parameter_count, Oid* parameter_types) {
    return plan_for(statement, parameter_count, parameter_types, [] {});
}

// A row claim_lease updated, and its position among the rows it locked.
struct PositionedRow {
    int64 position;
    HeapTuple row;
};

int by_position(const void* left, const void* right) {
    const int64 a = static_cast<const PositionedRow*>(left)->position;
    const int64 b = static_cast<const PositionedRow*>(right)->position;
    return a < b ? -1 : a > b ? 1 : 0;
}

// C-side: runs the plan and copies its rows, converted to the table's row
// type (which may hold dropped columns), into the function's result. With
// `positioned`, the plan's last column is each row's position among the
// rows it locked, and the rows go out in that order, without it. Not every
// locked row need come back: a BEFORE UPDATE trigger that returns NULL
// skips its row, so the positions may have gaps; each comes back once.
uint64 materialize_rows(FunctionCallInfo fcinfo, SPIPlanPtr plan, Datum* values, const char* nulls,
                        bool positioned = false) {
    const Materialized result = begin_materialized(fcinfo);

    const int status = SPI_execute_plan(plan, values, nulls, false, 0);
    if (status != SPI_OK_SELECT && status != SPI_OK_UPDATE_RETURNING)
        elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(status));

    auto* result_info = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
    MemoryContext previous = MemoryContextSwitchTo(result_info->econtext->ecxt_per_query_memory);
    TupleDesc returned = SPI_tuptable->tupdesc;
    const uint64 rows = SPI_processed;
    HeapTuple* ordered = SPI_tuptable->vals;
    if (positioned) {
        // The rows without their position, sorted by it.
        const int columns = returned->natts - 1;
        TupleDesc trimmed = CreateTemplateTupleDesc(columns);
        for (int column = 1; column <= columns; ++column)
            TupleDescCopyEntry(trimmed, column, returned, column);
        const size_t slots = rows > 0 ? rows : 1;
        auto* placed = static_cast<PositionedRow*>(palloc(sizeof(PositionedRow) * slots));
        Datum* row_values = static_cast<Datum*>(palloc(sizeof(Datum) * returned->natts));
        bool* row_nulls = static_cast<bool*>(palloc(sizeof(bool) * returned->natts));
        for (uint64 i = 0; i < rows; ++i) {
            heap_deform_tuple(SPI_tuptable->vals[i], returned, row_values, row_nulls);
            const int64 position = row_nulls[columns] ? 0 : DatumGetInt64(row_values[columns]);
            if (position < 1)
                elog(ERROR, "claimed row position %lld out of place", static_cast<long long>(position));
            placed[i] = PositionedRow{position, heap_form_tuple(trimmed, row_values, row_nulls)};
        }
        qsort(placed, rows, sizeof(PositionedRow), by_position);
        ordered = static_cast<HeapTuple*>(palloc(sizeof(HeapTuple) * slots));
        for (uint64 i = 0; i < rows; ++i) {
            if (i > 0 && placed[i].position == placed[i - 1].position)
                elog(ERROR, "claimed row position %lld returned twice", static_cast<long long>(placed[i].position));
            ordered[i] = placed[i].row;
        }
        returned = trimmed;
    }
    TupleConversionMap* map = convert_tuples_by_position(returned, result.descriptor,
                                                         "the claimed rows do not match the table's row type");
    for (uint64 i = 0; i < rows; ++i) {
        HeapTuple row = ordered[i];
        tuplestore_puttuple(result.store, map != nullptr ? execute_attr_map_tuple(row, map) : row);
    }
    MemoryContextSwitchTo(previous);
    return rows;
}

uint64 run_update(SPIPlanPtr plan, Datum* values, const char* nulls) {
    return pg_call([&] {
        const int status = SPI_execute_plan(plan, values, nulls, false, 0);
        if (status != SPI_OK_UPDATE)
            elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(status));
        return SPI_processed;
    });
}

// SPI_connect / SPI_finish around a body; on an error PostgreSQL's
// transaction abort cleans SPI up.
template <typename Body>
auto with_spi(Body&& body) -> decltype(body()) {
    pg_call([] {
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
    });
    if constexpr (std::is_void_v<decltype(body())>) {
        body();
        pg_call([] { SPI_finish(); });
    } else {
        auto result = body();
        pg_call([] { SPI_finish(); });
        return result;
    }
}

// ---- lease tokens -------------------------------------------------------

// A token is the WAL timeline times 2^48 plus the next value of
// raceguard.lease_token_seq. A crash restarts the sequence from its last WAL
// record on disk, so a token is handed out only once that record is flushed
// (make_token_durable). A promoted standby may not have received the
// primary's last records, but it writes on a new timeline, so its tokens
// differ from every token of the old primary in the high bits.
//
// That needs every value of the sequence a timeline uses to stay in one
// block of 2^48 values. The sequence starts in block 0 (values below 2^48).
// pg_upgrade starts the new cluster on timeline 1 again, and so does a
// restore into a new cluster, so raceguard.lease_tokens_after_upgrade(old
// timeline) moves the sequence up by as many blocks as the old timeline,
// above every token handed out before, and bounds it to its new block with
// its MAXVALUE. A value past block 0 is used only within such a bound: a
// sequence that ran out of block 0, or one restored from a dump (which
// keeps the value, not the bound), is refused.
//
// On Citus every node has a sequence of its own, so a node's Citus group id
// (pg_dist_local_group; the coordinator's is 0) goes into bits 40..47 of
// its tokens, and its sequence values within a block stay below 2^40:
// token = (timeline + block) × 2^48 + group × 2^40 + value within the block.
// Group 0, and every node without Citus, make the same tokens as before; a
// worker's tokens move above the ones it made before (group ≥ 1), and no two
// groups share one. The high bits are unchanged, so tokens stay below 2^53
// (exact in a JavaScript number) while timeline + block is below 32.
constexpr int TOKEN_VALUE_BITS = 48;
constexpr int64 TOKEN_VALUE_LIMIT = int64{1} << TOKEN_VALUE_BITS;
constexpr int64 TOKEN_HIGH_LIMIT = int64{1} << (63 - TOKEN_VALUE_BITS);  // timeline + block: tokens stay positive
constexpr int TOKEN_GROUP_SHIFT = 40;
constexpr int64 TOKEN_GROUP_LIMIT = int64{1} << (TOKEN_VALUE_BITS - TOKEN_GROUP_SHIFT);  // Citus groups 0..255
constexpr int64 TOKEN_NODE_VALUE_LIMIT = int64{1} << TOKEN_GROUP_SHIFT;

struct LeaseToken {
    int64 token;
    Oid sequence;
};

LeaseToken take_lease_token() {
    struct Taken {
        Oid sequence;
        int64 value;
        TimeLineID timeline;
        int64 max_value;  // the sequence's MAXVALUE, read when the value is past block 0
    };
    const Taken taken = pg_call([] {
        Taken result{};
        result.sequence = get_relname_relid("lease_token_seq", get_namespace_oid("raceguard", false));
        if (!OidIsValid(result.sequence))
            elog(ERROR, "sequence raceguard.lease_token_seq is missing");
        result.value = nextval_internal(result.sequence, true);  // refuses on a standby, checks USAGE
        result.timeline = compat::wal_insertion_timeline();
        if (result.value >= TOKEN_VALUE_LIMIT) {
            HeapTuple tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(result.sequence));
            if (!HeapTupleIsValid(tuple))
                elog(ERROR, "cache lookup failed for sequence %u", result.sequence);
            result.max_value = reinterpret_cast<Form_pg_sequence>(GETSTRUCT(tuple))->seqmax;
            ReleaseSysCache(tuple);
        }
        return result;
    });
    const int64 block = taken.value >= 0 ? taken.value >> TOKEN_VALUE_BITS : 0;
    if (taken.value < 0 || static_cast<int64>(taken.timeline) + block >= TOKEN_HIGH_LIMIT)
        throw Error(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                    "lease tokens are exhausted: sequence value " + std::to_string(taken.value) + " on timeline " +
                        std::to_string(taken.timeline))
            .with_detail("A token is the timeline times 2^48 plus a value of raceguard.lease_token_seq: the timeline "
                         "plus the value's block of 2^48 values must stay below " +
                         std::to_string(TOKEN_HIGH_LIMIT) + ".");
    if (block > 0 && taken.max_value >= (block + 1) * TOKEN_VALUE_LIMIT)
        throw Error(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                    "lease tokens are exhausted: sequence value " + std::to_string(taken.value) +
                        " is past 2^48 and raceguard.lease_token_seq is not bounded to its block")
            .with_detail("Past 2^48 a value is used only in the block raceguard.lease_tokens_after_upgrade() moved "
                         "the sequence to, below the MAXVALUE it set (" + std::to_string((block + 1) * TOKEN_VALUE_LIMIT - 1) +
                         " here); the sequence's MAXVALUE is " + std::to_string(taken.max_value) +
                         ": it ran out of its first 2^48 values, or it was restored from a dump, which keeps the "
                         "value but not the bound.")
            .with_hint("After pg_upgrade or a restore into another cluster, run "
                       "raceguard.lease_tokens_after_upgrade(old_timeline); see docs/operations.md.");
    const int64 token = (static_cast<int64>(taken.timeline) << TOKEN_VALUE_BITS) + taken.value;
    const std::optional<int32> citus_group = citus::local_group_id();
    if (!citus_group)
        return LeaseToken{token, taken.sequence};
    const int32 group = *citus_group;
    const int64 within_block = taken.value & (TOKEN_VALUE_LIMIT - 1);
    if (group < 0 || group >= TOKEN_GROUP_LIMIT)
        throw Error(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                    "lease tokens cannot be made on Citus group " + std::to_string(group))
            .with_detail("On Citus a token carries the node's group id (pg_dist_local_group) in 8 bits: groups 0 to " +
                         std::to_string(TOKEN_GROUP_LIMIT - 1) + " can lease.");
    if (within_block >= TOKEN_NODE_VALUE_LIMIT)
        throw Error(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                    "lease tokens are exhausted on this Citus node: sequence value " + std::to_string(taken.value) +
                        " is past 2^40 within its block")
            .with_detail("On Citus a token is (timeline + block) × 2^48 + group × 2^40 + the sequence value within "
                         "its block, which must stay below 2^40 so that no two groups share a token.");
    return LeaseToken{token + (static_cast<int64>(group) << TOKEN_GROUP_SHIFT), taken.sequence};
}

// Flushes the WAL up to the sequence's last record, the one a restart after
// a crash resumes from, so the token just taken cannot come back. The
// sequence logs once per 32 values: most calls find it flushed already.
void make_token_durable(const LeaseToken& token) {
    const Oid sequence = token.sequence;
    pg_call([&] {
        Relation relation = relation_open(sequence, AccessShareLock);
        Buffer buffer = ReadBuffer(relation, 0);
        LockBuffer(buffer, BUFFER_LOCK_SHARE);
        const XLogRecPtr last_record = PageGetLSN(BufferGetPage(buffer));
        UnlockReleaseBuffer(buffer);
        relation_close(relation, AccessShareLock);
        XLogFlush(last_record);
    });
}

// ---- Citus ----------------------------------------------------------------

// How claim_lease's UPDATE finds the rows its locking scan claimed. On one
// node (and on a Citus table with one shard): by ctid and tableoid. Citus
// plans an UPDATE that joins on ctid only when it runs in one shard, which
// it knows from the UPDATE's own WHERE: on a distributed table the caller's
// filter is repeated there, and it must pin the distribution column. A
// reference table's copies differ in their ctids: its rows are found by
// primary key.
struct RowMatch {
    citus::Placement placement = citus::Placement::not_citus;
    std::string distribution_column;
    std::vector<std::string> key_columns;  // quoted: a reference table's primary key
};

RowMatch row_match(const ClaimTarget& target) {
    const citus::TablePlacement placement = citus::placement_of(target.relid);
    RowMatch match;
    match.placement = placement.placement;
    match.distribution_column = placement.distribution_column;
    if (placement.placement != citus::Placement::reference)
        return match;
    const Oid relid = target.relid;
    List* key = pg_call([&] {
        List* names = NIL;
        Relation relation = relation_open(relid, AccessShareLock);
        List* indexes = RelationGetIndexList(relation);
        for (int i = 0; i < list_length(indexes) && names == NIL; ++i) {
            Relation index = index_open(list_nth_oid(indexes, i), AccessShareLock);
            if (index->rd_index->indisprimary)
                for (int k = 0; k < index->rd_index->indnkeyatts; ++k)
                    names = lappend(names, get_attname(relid, index->rd_index->indkey.values[k], false));
            index_close(index, AccessShareLock);
        }
        relation_close(relation, AccessShareLock);
        return names;
    });
    if (key == NIL)
        throw Error(ERRCODE_FEATURE_NOT_SUPPORTED,
                    "claim_lease() on table " + target.qualified_name +
                        ", a Citus reference table, needs a primary key")
            .with_detail("Each node's copy of a reference table keeps its rows at other places (ctid): the "
                         "claimed rows are found again by their primary key.");
    for (int k = 0; k < list_length(key); ++k)
        match.key_columns.push_back(quoted_identifier(static_cast<const char*>(list_nth(key, k))));
    return match;
}

// A name for a column of the statement's own that is none of the table's.
std::string name_unlike_columns(const ClaimTarget& target, std::string name) {
    const Oid relid = target.relid;
    while (pg_call([&] { return get_attnum(relid, name.c_str()) != InvalidAttrNumber; }))
        name += "_";
    return name;
}

}  // namespace

Datum claim(FunctionCallInfo fcinfo) {
    const ClaimTarget target = claim_target(fcinfo);
    const CallerSql sql = caller_sql(fcinfo, 1, 3);
    const int32 batch = batch_argument(fcinfo, 2);
    // The batch is part of the statement (and of its call shape): a LIMIT
    // the planner can see lets it pick the index a hand-written claim gets.
    const std::string& table = target.qualified_name;
    const std::string statement = "SELECT " + table + ".* FROM " + table + " WHERE " + where_condition(sql) +
                                  order_clause(sql) + " LIMIT " + std::to_string(batch) + " FOR UPDATE SKIP LOCKED";
    const uint64 claimed = with_spi([&] {
        const RunningPlan running(plan_for(statement, 0, nullptr, [&] { check_caller_sql(target, sql); }));
        return pg_call([&] { return materialize_rows(fcinfo, running.plan(), nullptr, nullptr); });
    });
    stats::Counters* counters = stats::claim_counters(target.relid);
    ++counters->n[stats::CL_CALLS];
    counters->n[stats::CL_ROWS] += static_cast<int64>(claimed);
    return static_cast<Datum>(0);
}

Datum claim_lease(FunctionCallInfo fcinfo) {
    const LeaseTarget target = lease_target(fcinfo, 5);
    const std::string& token_column = target.token_column;
    const std::string& until_column = target.until_column;
    const CallerSql sql = caller_sql(fcinfo, 1, 4);
    const int32 batch = batch_argument(fcinfo, 2);
    const LeaseExpiry expiry = lease_expiry(fcinfo, 3);
    const Attempts attempts = attempts_arguments(fcinfo, target, 7);
    const std::string& table = target.table.qualified_name;
    // Lock what is claimable (not leased, or the lease ran out; not locked;
    // below max_attempts, and below the attempts column's maximum), then write the token, the expiry and the attempt
    // into exactly those rows. The first CTE is materialized, so the locking
    // scan runs once whatever the plan; the second numbers its rows in the
    // order it stored them, order_by's, and the rows go out in that order.
    // The CTEs' names are the names the statement adds: they only have to
    // differ from the table's, since the caller's filter and order_by,
    // inside the first CTE's own definition, cannot see them (tables of
    // those names are theirs). The first returns the table's columns first,
    // so order_by means what it means in claim() (names and positions), then
    // ctid and tableoid, which no user column can be named.
    const RowMatch match = row_match(target.table);
    const bool routed = match.placement == citus::Placement::distributed;
    // On a distributed table the filter also stands in the UPDATE, where the
    // statement's own names are visible too: they differ from its text.
    std::string claimed = "claimed";
    while (target.table.name == claimed || target.table.name == claimed + "_order" ||
           (routed && sql.filter.find(claimed) != std::string::npos))
        claimed += "_rows";
    const std::string positions = claimed + "_order";
    const std::string attempts_condition =
        attempts.column.empty() ? std::string()
                                : " AND (" + attempts.column + " IS NULL OR " + attempts.column +
                                      " OPERATOR(pg_catalog.<) " + std::to_string(attempts.lease_below) + ")";
    const std::string attempts_assignment =
        attempts.column.empty()
            ? std::string()
            : ", " + attempts.column + " = COALESCE(" + table + "." + attempts.column +
                  ", 0) OPERATOR(pg_catalog.+) 1";
    // The columns that find a claimed row again, and how the UPDATE matches them.
    std::string row_columns = "ctid, tableoid";
    std::string row_condition = table + ".tableoid OPERATOR(pg_catalog.=) " + positions + ".tableoid AND " + table +
                                ".ctid OPERATOR(pg_catalog.=) " + positions + ".ctid";
    if (!match.key_columns.empty()) {
        row_columns.clear();
        row_condition.clear();
        for (const std::string& column : match.key_columns) {
            row_columns += (row_columns.empty() ? "" : ", ") + column;
            row_condition += (row_condition.empty() ? "" : " AND ") + table + "." + column +
                             " OPERATOR(pg_catalog.=) " + positions + "." + column;
        }
    }
    if (routed)
        row_condition = where_condition(sql) + " AND " + row_condition;
    // The position's name: the function's own (row_number) unless the
    // filter, now beside it, could mean a column of the table by that name.
    const std::string position =
        quoted_identifier(routed ? name_unlike_columns(target.table, "row_number").c_str() : "row_number");
    const std::string statement =
        "WITH " + claimed + " AS MATERIALIZED (SELECT " + table + ".*, ctid, tableoid FROM " + table + " WHERE " +
        where_condition(sql) + " AND (" + until_column + " IS NULL OR " + until_column +
        " OPERATOR(pg_catalog.<=) $3)" + attempts_condition + order_clause(sql) + " LIMIT " +
        std::to_string(batch) + " FOR UPDATE SKIP LOCKED), " + positions + " AS MATERIALIZED (SELECT " +
        row_columns + ", pg_catalog.row_number() OVER () AS " + position + " FROM " + claimed + ")"
        " UPDATE " + table + " SET " + token_column + " = $1, " + until_column + " = $2" + attempts_assignment +
        " FROM " + positions + " WHERE " + row_condition + " RETURNING " + table + ".*, " + positions + "." +
        position;
    const auto lease = [&] {
        return with_spi([&] {
            Oid types[3] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
            const RunningPlan running(plan_for(statement, 3, types, [&] { check_caller_sql(target.table, sql); }));
            const LeaseToken token = take_lease_token();
            Datum values[3] = {Int64GetDatum(token.token), TimestampTzGetDatum(expiry.until),
                               TimestampTzGetDatum(expiry.now)};
            const uint64 leased =
                pg_call([&] { return materialize_rows(fcinfo, running.plan(), values, nullptr, true); });
            if (leased > 0)
                make_token_durable(token);
            return leased;
        });
    };
    uint64 leased_rows = 0;
    if (!routed) {
        leased_rows = lease();
    } else {
        // Citus refuses the UPDATE (0A000, naming ctid) when the filter does
        // not route it to one shard: said in the caller's terms.
        try {
            leased_rows = lease();
        } catch (const PgError& error) {
            if (error.data->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED)
                throw;
            const std::string column = quoted(match.distribution_column);
            throw Error(ERRCODE_FEATURE_NOT_SUPPORTED,
                        "claim_lease() on table " + table + ", which Citus distributes by column " + column +
                            ", needs a filter that pins " + column + " to one value")
                .with_detail(std::string("Citus: ") + (error.data->message != nullptr ? error.data->message : ""))
                .with_hint("Lease from one queue at a time: a filter such as " + match.distribution_column +
                           " = 'emails' AND status = 'pending' (see docs/citus.md).");
        }
    }
    stats::Counters* counters = stats::claim_counters(target.table.relid);
    ++counters->n[stats::CL_CALLS];
    counters->n[stats::CL_ROWS] += static_cast<int64>(leased_rows);
    counters->n[stats::CL_LEASES] += static_cast<int64>(leased_rows);
    return static_cast<Datum>(0);
}

namespace {

// release_lease() and extend_lease(): one UPDATE of the rows that still
// hold the token (fencing); returns how many it changed.
Datum update_leased_rows(FunctionCallInfo fcinfo, const LeaseTarget& target, const std::string& assignments,
                         const TimestampTz* until, int matched_slot, int fenced_slot) {
    const int64 token = token_argument(fcinfo, 1);
    const std::string statement = "UPDATE " + target.table.qualified_name + " SET " + assignments + " WHERE " +
                                  target.token_column + " OPERATOR(pg_catalog.=) $1";
    const uint64 changed = with_spi([&] {
        Oid types[2] = {INT8OID, TIMESTAMPTZOID};
        Datum values[2] = {Int64GetDatum(token), until != nullptr ? TimestampTzGetDatum(*until) : static_cast<Datum>(0)};
        const RunningPlan running(plan_for(statement, until != nullptr ? 2 : 1, types));
        return run_update(running.plan(), values, nullptr);
    });
    // A call that found no row holding the token was fenced off.
    ++stats::claim_counters(target.table.relid)->n[changed > 0 ? matched_slot : fenced_slot];
    return Int64GetDatum(static_cast<int64>(changed));
}

}  // namespace

// retry_after (1.1; a call through 1.0's shorter definition has none): NULL
// releases as 1.0 did, claimable at once; otherwise the rows are claimable
// from clock_timestamp() + retry_after, computed once, which must not be
// earlier than that clock_timestamp() (zero is "at once", a negative
// interval is refused: a backoff formula that produced one is wrong).
Datum release_lease(FunctionCallInfo fcinfo) {
    const LeaseTarget target = lease_target(fcinfo, 2);
    token_argument(fcinfo, 1);  // a NULL token is reported before a bad retry_after
    if (PG_NARGS() <= 4 || PG_ARGISNULL(4))
        return update_leased_rows(fcinfo, target,
                                  target.token_column + " = NULL, " + target.until_column + " = NULL", nullptr,
                                  stats::CL_RELEASES, stats::CL_RELEASES_FENCED);
    const Datum retry_after = PG_GETARG_DATUM(4);
    const LeaseExpiry retry = pg_call([&] {
        LeaseExpiry computed{};
        computed.now = GetCurrentTimestamp();
        computed.until = DatumGetTimestampTz(
            DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(computed.now), retry_after));
        return computed;
    });
    if (retry.until < retry.now) {
        const std::string shown = pg_call([&] { return DatumGetCString(DirectFunctionCall1(interval_out, retry_after)); });
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "retry_after must not be negative, not " + shown)
            .with_detail("Released rows are claimable from clock_timestamp() + retry_after, which must not be earlier "
                         "than clock_timestamp(); months and days count as calendar months and days from now.");
    }
    return update_leased_rows(fcinfo, target, target.token_column + " = NULL, " + target.until_column + " = $2",
                              &retry.until, stats::CL_RELEASES, stats::CL_RELEASES_FENCED);
}

Datum extend_lease(FunctionCallInfo fcinfo) {
    const LeaseTarget target = lease_target(fcinfo, 3);
    token_argument(fcinfo, 1);  // a NULL token is reported before a bad lease
    const LeaseExpiry expiry = lease_expiry(fcinfo, 2);
    return update_leased_rows(fcinfo, target, target.until_column + " = $2", &expiry.until, stats::CL_EXTENDS,
                              stats::CL_EXTENDS_FENCED);
}

}  // namespace raceguard
