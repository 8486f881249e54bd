// Citus (SPEC §9): how Citus places a table, and which Citus node this is.
//
// raceguard has no link-time dependency on Citus. When the citus extension
// is installed in the database, these functions read Citus's own catalog
// (pg_dist_partition, pg_dist_shard, pg_dist_local_group) by name at run
// time; without it they answer "no Citus" after one catalog lookup. They run
// where a guard's definition is checked (a trigger's first row, CREATE
// TRIGGER, check_guards()) and once per claim_lease() call, never per row.
#pragma once

#include "boundary.hpp"

#include <optional>
#include <string>

namespace raceguard::citus {

enum class Placement {
    not_citus,     // no Citus, or a table Citus does not manage
    distributed,   // hash-, range- or append-distributed: one shard per key range
    reference,     // a full copy on every node
    single_shard,  // one shard in all (Citus local and single-shard tables)
};

struct TablePlacement {
    bool citus_installed = false;     // the citus extension is installed in this database
    Placement placement = Placement::not_citus;
    bool is_shard = false;            // the relation is one shard of the Citus table below
    Oid table_relid = InvalidOid;     // the Citus table (the relation itself, or the one it is a shard of)
    std::string table_name;           // its name
    std::string distribution_column;  // a distributed table's distribution column
};

// Whether the citus extension is installed in this database.
bool installed();

// How Citus places a relation: as a Citus table, or as a shard of one (a
// shard is known when this node has the Citus metadata, as workers have
// since Citus 11).
TablePlacement placement_of(Oid relid);

// Whether this backend serves a connection that Citus opened from another
// node (or from this one to itself): Citus names them "citus_internal
// gpid=...". Any role can set its application_name, so this may only ever
// lead to a refusal, never to a row being accepted unchecked.
bool is_internal_connection();

// This node's Citus group id (pg_dist_local_group; the coordinator's is 0),
// none without Citus.
std::optional<int32> local_group_id();

// An error a guard raised on a Citus shard, in the names its user knows:
// the table and the trigger the user created instead of the shard's
// ("orders" for "orders_102032", "orders_lock" for "orders_lock_102032"),
// in the message, DETAIL, HINT and the table and constraint fields. Citus
// passes SQLSTATE, DETAIL and HINT on to the client but drops the table,
// column and constraint fields, so the constraint's name also goes into
// DETAIL. Nothing changes for a table that is no shard.
void name_user_objects(Error& error, Relation relation, const char* trigger_name);

}  // namespace raceguard::citus
