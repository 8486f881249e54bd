// Citus's catalog, read by name at run time (see citus.hpp).
#include "citus.hpp"

extern "C" {
#include "access/genam.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/guc.h"
}

#include <cctype>
#include <cstdlib>
#include <cstring>

namespace raceguard::citus {

namespace {

// C-side: connects SPI and runs a read-only query of Citus's catalog with
// one parameter, leaving its first row (if any) in SPI_tuptable; the caller
// reads it and calls SPI_finish(). An error aborts the transaction, which
// disconnects SPI.
void connect_and_select(const char* query, Oid parameter_type, Datum parameter) {
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    Oid types[1] = {parameter_type};
    Datum values[1] = {parameter};
    const int status = SPI_execute_with_args(query, 1, types, values, nullptr, true, 1);
    if (status != SPI_OK_SELECT)
        elog(ERROR, "reading Citus's catalog failed: %s", SPI_result_code_string(status));
}

// One row of pg_dist_partition, as plain data (palloc'd strings in the
// caller's memory context; null when there is no row).
struct PartitionRow {
    bool found;
    char method;             // partmethod: 'h', 'r', 'a' distributed, 'n' none
    char replication_model;  // repmodel: 't' for reference tables
    const char* table_name;
    const char* distribution_column;  // null without a partition key
};

PartitionRow read_partition_row(Oid relid) {
    return pg_call([&] {
        PartitionRow row{};
        MemoryContext caller = CurrentMemoryContext;
        // column_to_column_name() is Citus's own reading of partkey.
        connect_and_select(
            "SELECT p.partmethod::pg_catalog.text, p.repmodel::pg_catalog.text, c.relname::pg_catalog.text,"
            "       CASE WHEN p.partkey IS NOT NULL"
            "            THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)::pg_catalog.text END"
            "  FROM pg_catalog.pg_dist_partition p"
            "  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid::pg_catalog.oid"
            " WHERE p.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
            OIDOID, ObjectIdGetDatum(relid));
        if (SPI_processed == 1) {
            const auto text_at = [&](int column) -> const char* {
                char* value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, column);
                return value != nullptr ? MemoryContextStrdup(caller, value) : nullptr;
            };
            const char* method = text_at(1);
            const char* model = text_at(2);
            row.found = true;
            row.method = method != nullptr ? method[0] : '\0';
            row.replication_model = model != nullptr ? model[0] : '\0';
            row.table_name = text_at(3);
            row.distribution_column = text_at(4);
        }
        SPI_finish();
        return row;
    });
}

// The Citus table a relation is a shard of: Citus names a shard after its
// table, "<table>_<shard id>" (a long name cut short and followed by a hash
// before the shard id), in the table's schema. InvalidOid when the name has
// no shard id, or this node does not know that shard.
Oid table_of_shard(Oid relid) {
    struct Named {
        const char* name;
        Oid schema;
    };
    const Named named = pg_call([&] { return Named{get_rel_name(relid), get_rel_namespace(relid)}; });
    if (named.name == nullptr)
        return InvalidOid;
    const std::string name = named.name;
    const size_t underscore = name.rfind('_');
    if (underscore == std::string::npos || underscore + 1 == name.size() || underscore + 1 + 19 < name.size())
        return InvalidOid;
    for (size_t i = underscore + 1; i < name.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(name[i])))
            return InvalidOid;
    const int64 shard_id = std::strtoll(name.c_str() + underscore + 1, nullptr, 10);
    struct Table {
        Oid relid;
        const char* name;
        Oid schema;
    };
    const Table table = pg_call([&] {
        Table found{};
        connect_and_select("SELECT s.logicalrelid::pg_catalog.oid FROM pg_catalog.pg_dist_shard s"
                           " WHERE s.shardid OPERATOR(pg_catalog.=) $1",
                           INT8OID, Int64GetDatum(shard_id));
        if (SPI_processed == 1) {
            bool is_null = false;
            const Datum value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &is_null);
            found.relid = is_null ? InvalidOid : DatumGetObjectId(value);
        }
        SPI_finish();
        if (OidIsValid(found.relid)) {
            found.name = get_rel_name(found.relid);
            found.schema = get_rel_namespace(found.relid);
        }
        return found;
    });
    if (!OidIsValid(table.relid) || table.name == nullptr || table.schema != named.schema || table.relid == relid)
        return InvalidOid;
    // The shard id alone could be a coincidence (a table of the user's named
    // like a shard): the rest of the name must be the table's, whole or cut.
    const std::string prefix = name.substr(0, underscore);
    const std::string table_name = table.name;
    if (prefix == table_name)
        return table.relid;
    // A name too long for its shard id is cut (at a character boundary)
    // and followed by "_" and 8 hex digits of a hash.
    const size_t hash_length = 9;
    const size_t kept = prefix.size() > hash_length ? prefix.size() - hash_length : 0;
    if (kept > 0 && prefix[kept] == '_' && table_name.size() + (name.size() - underscore) >= NAMEDATALEN &&
        table_name.compare(0, kept, prefix, 0, kept) == 0)
        return table.relid;
    return InvalidOid;
}

TablePlacement placement_from(const PartitionRow& row, Oid table_relid, bool is_shard) {
    TablePlacement placement;
    placement.is_shard = is_shard;
    placement.table_relid = table_relid;
    placement.table_name = row.table_name != nullptr ? row.table_name : "";
    if (row.method == 'h' || row.method == 'r' || row.method == 'a') {
        placement.placement = Placement::distributed;
        placement.distribution_column = row.distribution_column != nullptr ? row.distribution_column : "";
    } else if (row.replication_model == 't') {
        placement.placement = Placement::reference;
    } else {
        placement.placement = Placement::single_shard;
    }
    return placement;
}

}  // namespace

bool installed() {
    return pg_call([] { return OidIsValid(get_extension_oid("citus", true)); });
}

TablePlacement placement_of(Oid relid) {
    TablePlacement placement;
    if (!installed())
        return placement;
    const PartitionRow own = read_partition_row(relid);
    const Oid table = own.found ? relid : table_of_shard(relid);
    const PartitionRow of_table = own.found || !OidIsValid(table) ? own : read_partition_row(table);
    if (of_table.found)
        placement = placement_from(of_table, table, !own.found);
    placement.citus_installed = true;
    return placement;
}

bool is_internal_connection() {
    // Citus's own prefix (CITUS_APPLICATION_NAME_PREFIX) for the connections it makes.
    static constexpr char prefix[] = "citus_internal gpid=";
    return application_name != nullptr && std::strncmp(application_name, prefix, sizeof(prefix) - 1) == 0;
}

std::optional<int32> local_group_id() {
    // Citus keeps its catalog in pg_catalog: the table exists only where the
    // extension is installed, and looking it up by name costs a cache probe.
    struct Group {
        bool citus;
        int32 id;
    };
    const Group group = pg_call([] {
        const Oid relid = get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE);
        if (!OidIsValid(relid))
            return Group{false, 0};
        Relation relation = table_open(relid, AccessShareLock);
        const AttrNumber attnum = get_attnum(relid, "groupid");
        int32 group = 0;
        bool found = false;
        SysScanDesc scan = systable_beginscan(relation, InvalidOid, false, nullptr, 0, nullptr);
        HeapTuple tuple = systable_getnext(scan);
        if (HeapTupleIsValid(tuple) && attnum > 0) {
            bool is_null = true;
            const Datum value = heap_getattr(tuple, attnum, RelationGetDescr(relation), &is_null);
            if (!is_null) {
                group = DatumGetInt32(value);
                found = true;
            }
        }
        systable_endscan(scan);
        table_close(relation, AccessShareLock);
        if (!found)
            elog(ERROR, "pg_catalog.pg_dist_local_group holds no group id");
        return Group{true, group};
    });
    return group.citus ? std::optional<int32>(group.id) : std::nullopt;
}

namespace {

void replace_all(std::string& text, const std::string& from, const std::string& to) {
    for (size_t at = text.find(from); !from.empty() && at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
}

}  // namespace

void name_user_objects(Error& error, Relation relation, const char* trigger_name) {
    const TablePlacement placement = placement_of(RelationGetRelid(relation));
    if (!placement.is_shard)
        return;
    const std::string shard = RelationGetRelationName(relation);
    // Citus names a shard's trigger like the shard, "<trigger>_<shard id>",
    // when that fits (a longer name is cut and hashed): the name without the
    // shard id is used when the table has a trigger of that name.
    const std::string suffix = shard.substr(shard.rfind('_'));
    const std::string shard_trigger = trigger_name;
    const bool suffixed = shard_trigger.size() > suffix.size() &&
                          shard_trigger.compare(shard_trigger.size() - suffix.size(), suffix.size(), suffix) == 0;
    const std::string stripped = suffixed ? shard_trigger.substr(0, shard_trigger.size() - suffix.size()) : "";
    const Oid table_relid = placement.table_relid;
    const bool known = suffixed && pg_call([&] { return OidIsValid(get_trigger_oid(table_relid, stripped.c_str(), true)); });
    const std::string trigger = known ? stripped : shard_trigger;
    for (std::string* text : {&error.message, &error.detail, &error.hint}) {
        replace_all(*text, "\"" + shard_trigger + "\"", "\"" + trigger + "\"");
        replace_all(*text, "\"" + shard + "\"", "\"" + placement.table_name + "\"");
    }
    if (!error.table.empty())
        error.table = placement.table_name;
    if (!error.constraint.empty()) {
        error.constraint = trigger;
        error.detail += (error.detail.empty() ? "" : "\n") + std::string("Constraint \"") + trigger + "\" on table \"" +
                        placement.table_name + "\".";
    }
}

}  // namespace raceguard::citus
