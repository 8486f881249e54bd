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
// One plan per call shape: the statement for a (function, table, filter,
// order_by, batch, lease columns) is prepared once per backend and kept;
// lease and token are parameters. PostgreSQL's plan cache replans it when the
// table changes, or when the search_path or the user differs from when it was
// planned.
#include "claim.hpp"

extern "C" {
#include "access/transam.h"
#include "access/tupconvert.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
}

#include <string>
#include <unordered_map>

namespace raceguard {

namespace {

// The target's table, checked: a table's row type, UPDATE privilege.
struct ClaimTarget {
    Oid relid;
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
    return ClaimTarget{found.relid, qualified};
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
        const char* table;
    };
    const Column found = pg_call([&] {
        Column result{};
        result.attnum = get_attnum(relid, column);
        if (result.attnum > 0)
            result.type = get_atttype(relid, result.attnum);
        result.table = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
        return result;
    });
    if (found.attnum <= 0)
        throw Error(ERRCODE_UNDEFINED_COLUMN,
                    "column \"" + std::string(column) + "\" of table " + found.table + " does not exist")
            .with_hint(std::string("A lease needs a ") + wanted_name + " column (" + parameter + ") on the table.");
    if (found.type != wanted_type)
        throw Error(ERRCODE_DATATYPE_MISMATCH,
                    "column \"" + std::string(column) + "\" of table " + found.table + " has type " +
                        type_name(found.type) + ", a lease's " + parameter + " needs " + wanted_name);
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

int32 batch_argument(FunctionCallInfo fcinfo, int argument) {
    const bool is_null = PG_ARGISNULL(argument);
    const int32 batch = is_null ? 0 : PG_GETARG_INT32(argument);
    if (is_null || batch < 1)
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE,
                    "batch must be at least 1, not " + (is_null ? std::string("<NULL>") : std::to_string(batch)));
    return batch;
}

Datum lease_argument(FunctionCallInfo fcinfo, int argument) {
    const bool is_null = PG_ARGISNULL(argument);
    const Datum lease = is_null ? static_cast<Datum>(0) : PG_GETARG_DATUM(argument);
    const bool positive = !is_null && pg_call([&] {
        Interval zero{};
        return DatumGetBool(DirectFunctionCall2(interval_gt, lease, IntervalPGetDatum(&zero)));
    });
    if (!positive) {
        const std::string shown =
            is_null ? std::string("<NULL>")
                    : std::string(pg_call([&] { return DatumGetCString(DirectFunctionCall1(interval_out, lease)); }));
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "lease must be a positive interval, not " + shown);
    }
    return lease;
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

std::string order_clause(FunctionCallInfo fcinfo, int argument) {
    const std::string order_by = text_argument(fcinfo, argument, "");
    return order_by.empty() ? std::string() : " ORDER BY " + order_by;
}

// ---- kept plans ---------------------------------------------------------

// Plans kept across calls (SPI_keepplan), by statement text, which holds
// every part of the call shape. A backend sees
// few call shapes; past the limit the cache starts over.
std::unordered_map<std::string, SPIPlanPtr>& kept_plans() {
    static std::unordered_map<std::string, SPIPlanPtr> plans;
    return plans;
}
constexpr size_t MAX_KEPT_PLANS = 256;

SPIPlanPtr plan_for(const std::string& statement, int parameter_count, Oid* parameter_types) {
    auto& plans = kept_plans();
    const auto found = plans.find(statement);
    if (found != plans.end())
        return found->second;
    if (plans.size() >= MAX_KEPT_PLANS) {
        for (auto& entry : plans) {
            SPIPlanPtr kept = entry.second;
            pg_call([&] { SPI_freeplan(kept); });
        }
        plans.clear();
    }
    SPIPlanPtr plan = pg_call([&] {
        SPIPlanPtr prepared = SPI_prepare(statement.c_str(), parameter_count, parameter_types);
        if (prepared == nullptr)
            elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
        SPI_keepplan(prepared);
        return prepared;
    });
    plans.emplace(statement, plan);
    return plan;
}

// C-side: runs the plan and copies its rows, converted to the table's row
// type (which may hold dropped columns), into the function's result.
void materialize_rows(FunctionCallInfo fcinfo, SPIPlanPtr plan, Datum* values, const char* nulls) {
    auto* result_info = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
    if (result_info == nullptr || !IsA(result_info, ReturnSetInfo) ||
        (result_info->allowedModes & SFRM_Materialize) == 0)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("set-valued function called in context that cannot accept a set")));
    TupleDesc result_descriptor = nullptr;
    if (get_call_result_type(fcinfo, nullptr, &result_descriptor) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "the claim functions return a table's row type");

    const int status = SPI_execute_plan(plan, values, nulls, false, 0);
    if (status != SPI_OK_SELECT && status != SPI_OK_UPDATE_RETURNING)
        elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(status));

    MemoryContext query_context = result_info->econtext->ecxt_per_query_memory;
    MemoryContext previous = MemoryContextSwitchTo(query_context);
    TupleDesc stored_descriptor = CreateTupleDescCopy(result_descriptor);
    Tuplestorestate* store = tuplestore_begin_heap(true, false, work_mem);
    TupleConversionMap* map =
        convert_tuples_by_position(SPI_tuptable->tupdesc, stored_descriptor,
                                   "the claimed rows do not match the table's row type");
    for (uint64 i = 0; i < SPI_processed; ++i) {
        HeapTuple row = SPI_tuptable->vals[i];
        tuplestore_puttuple(store, map != nullptr ? execute_attr_map_tuple(row, map) : row);
    }
    MemoryContextSwitchTo(previous);
    result_info->returnMode = SFRM_Materialize;
    result_info->setResult = store;
    result_info->setDesc = stored_descriptor;
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

}  // namespace

Datum claim(FunctionCallInfo fcinfo) {
    const ClaimTarget target = claim_target(fcinfo);
    const std::string filter = text_argument(fcinfo, 1, "true");
    const int32 batch = batch_argument(fcinfo, 2);
    // The batch is part of the statement (and of its call shape): a LIMIT
    // the planner can see lets it pick the index a hand-written claim gets.
    const std::string statement = "SELECT " + target.qualified_name + ".* FROM " + target.qualified_name +
                                  " WHERE (" + filter + ")" + order_clause(fcinfo, 3) + " LIMIT " +
                                  std::to_string(batch) + " FOR UPDATE SKIP LOCKED";
    with_spi([&] {
        SPIPlanPtr plan = plan_for(statement, 0, nullptr);
        pg_call([&] { materialize_rows(fcinfo, plan, nullptr, nullptr); });
    });
    return static_cast<Datum>(0);
}

Datum claim_lease(FunctionCallInfo fcinfo) {
    const LeaseTarget target = lease_target(fcinfo, 5);
    const std::string& token_column = target.token_column;
    const std::string& until_column = target.until_column;
    const std::string filter = text_argument(fcinfo, 1, "true");
    const int32 batch = batch_argument(fcinfo, 2);
    const Datum lease = lease_argument(fcinfo, 3);
    const std::string& table = target.table.qualified_name;
    // Lock what is claimable (not leased, or the lease ran out; not locked),
    // then write one new token and the expiry into exactly those rows.
    const std::string statement =
        "WITH token AS (SELECT pg_catalog.nextval('raceguard.lease_token_seq'::pg_catalog.regclass) AS value),"
        " claimable AS (SELECT tableoid AS claimed_table, ctid AS claimed_row FROM " + table +
        " WHERE (" + filter + ") AND (" + until_column + " IS NULL OR " + until_column +
        " OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp())" + order_clause(fcinfo, 4) +
        " LIMIT " + std::to_string(batch) + " FOR UPDATE SKIP LOCKED)"
        " UPDATE " + table + " SET " + token_column + " = (SELECT value FROM token), " + until_column +
        " = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $1"
        " FROM claimable WHERE " + table + ".tableoid OPERATOR(pg_catalog.=) claimable.claimed_table AND " + table +
        ".ctid OPERATOR(pg_catalog.=) claimable.claimed_row RETURNING " + table + ".*";
    with_spi([&] {
        Oid types[1] = {INTERVALOID};
        SPIPlanPtr plan = plan_for(statement, 1, types);
        Datum values[1] = {lease};
        pg_call([&] { materialize_rows(fcinfo, plan, values, nullptr); });
    });
    return static_cast<Datum>(0);
}

namespace {

// release_lease() and extend_lease(): one UPDATE of the rows that still
// hold the token (fencing); returns how many it changed.
Datum update_leased_rows(FunctionCallInfo fcinfo, const LeaseTarget& target, const std::string& assignments,
                         const Datum* lease) {
    const int64 token = token_argument(fcinfo, 1);
    const std::string statement = "UPDATE " + target.table.qualified_name + " SET " + assignments + " WHERE " +
                                  target.token_column + " OPERATOR(pg_catalog.=) $1";
    const uint64 changed = with_spi([&] {
        Oid types[2] = {INT8OID, INTERVALOID};
        Datum values[2] = {Int64GetDatum(token), lease != nullptr ? *lease : static_cast<Datum>(0)};
        return run_update(plan_for(statement, lease != nullptr ? 2 : 1, types), values, nullptr);
    });
    return Int64GetDatum(static_cast<int64>(changed));
}

}  // namespace

Datum release_lease(FunctionCallInfo fcinfo) {
    const LeaseTarget target = lease_target(fcinfo, 2);
    return update_leased_rows(fcinfo, target, target.token_column + " = NULL, " + target.until_column + " = NULL",
                              nullptr);
}

Datum extend_lease(FunctionCallInfo fcinfo) {
    const LeaseTarget target = lease_target(fcinfo, 3);
    token_argument(fcinfo, 1);  // a NULL token is reported before a bad lease
    const Datum lease = lease_argument(fcinfo, 2);
    return update_leased_rows(fcinfo, target,
                              target.until_column + " = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $2",
                              &lease);
}

}  // namespace raceguard
