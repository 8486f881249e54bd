// The one place for differences between PostgreSQL majors (13, 15, 17, 18
// are the targets; 14 and 16 compile by construction). Code elsewhere calls
// these names and never tests PG_VERSION_NUM itself.
#pragma once

#include "pg.hpp"

extern "C" {
#include "access/genam.h"
#include "access/tupdesc.h"
#include "access/xlog.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/numeric.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#if PG_VERSION_NUM >= 170000
#include "storage/dsm_registry.h"
#endif
}

namespace raceguard::compat {

// Whether a numeric is NaN or +-Infinity (infinities arrived in 14).
inline bool numeric_is_special(Numeric value) {
#if PG_VERSION_NUM >= 140000
    return numeric_is_nan(value) || numeric_is_inf(value);
#else
    return numeric_is_nan(value);
#endif
}

// Where pgstat counts this transaction's writes to the table, made now if
// it is not yet (from 15 pgstat makes it at the table's first counted
// write); null when track_counts is off. Can allocate: call inside pg_call.
inline const PgStat_TableStatus* table_write_counters(Relation relation) {
#if PG_VERSION_NUM >= 150000
    if (!pgstat_should_count_relation(relation))
        return nullptr;
#endif
    return relation->pgstat_info;
}

// The timeline this server writes WAL on. Only meaningful once recovery is
// over (a standby writes no WAL); the caller has made sure of that.
inline TimeLineID wal_insertion_timeline() {
#if PG_VERSION_NUM >= 150000
    return GetWALInsertionTimeLine();
#else
    // Before 15 each backend keeps its own copy, which RecoveryInProgress()
    // brings up to date the first time it sees recovery over (in a backend
    // that connected to a standby before its promotion too).
    (void)RecoveryInProgress();
    return ThisTimeLineID;
#endif
}

// The byte offset of column INDEX (0-based) from the start of a tuple's data
// when every column before it has a fixed width and none is NULL, as the
// descriptor caches it once heap_getattr has worked it out; -1 when unknown.
// 18 moved the cache from pg_attribute's image to the CompactAttribute array.
inline int cached_attribute_offset(TupleDesc columns, int index) {
#if PG_VERSION_NUM >= 180000
    return TupleDescCompactAttr(columns, index)->attcacheoff;
#else
    return TupleDescAttr(columns, index)->attcacheoff;
#endif
}

// An index scan with KEY_COUNT scan keys and no ORDER BY operators, without
// instrumentation (18 added the parameter for EXPLAIN ANALYZE's counts).
inline IndexScanDesc index_beginscan(Relation heap, Relation index, Snapshot snapshot, int key_count) {
#if PG_VERSION_NUM >= 180000
    return ::index_beginscan(heap, index, snapshot, nullptr, key_count, 0);
#else
    return ::index_beginscan(heap, index, snapshot, key_count, 0);
#endif
}

// Whether `user` owns the relation (or is a superuser); pg_class_ownercheck
// became object_ownercheck in 16.
inline bool owns_relation(Oid relid, Oid user) {
#if PG_VERSION_NUM >= 160000
    return object_ownercheck(RelationRelationId, relid, user);
#else
    return pg_class_ownercheck(relid, user);
#endif
}

// Whether `user` was granted SET on the parameter (GRANT SET ON PARAMETER,
// which arrived in 15; before, only a superuser sets a PGC_SUSET setting).
inline bool may_set_parameter(const char* name, Oid user) {
#if PG_VERSION_NUM >= 150000
    return pg_parameter_aclcheck(name, user, ACL_SET) == ACLCHECK_OK;
#else
    (void)name, (void)user;
    return false;
#endif
}

// Every privilege a table can be granted: the roles that hold any of them
// may see its guards (MAINTAIN arrived in 17).
inline AclMode any_table_privilege() {
    AclMode privileges = ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_DELETE | ACL_TRUNCATE | ACL_REFERENCES | ACL_TRIGGER;
#if PG_VERSION_NUM >= 170000
    privileges |= ACL_MAINTAIN;
#endif
    return privileges;
}

// ---- shared memory for the statistics ----------------------------------

// Whether a library loaded after the server started can still get shared
// memory by name: the DSM registry (GetNamedDSMSegment) arrived in 17.
// Before, shared memory is only sized at startup, for shared_preload_libraries.
constexpr bool has_dsm_registry = PG_VERSION_NUM >= 170000;

// The named segment of SIZE bytes, made and initialized by INIT once per
// server start; nullptr where there is no DSM registry. May ereport.
inline void* named_segment(const char* name, size_t size, void (*init)(void*), bool* found) {
#if PG_VERSION_NUM >= 170000
    return GetNamedDSMSegment(name, size, init, found);
#else
    (void)name, (void)size, (void)init;
    *found = false;
    return nullptr;
#endif
}

// At shared_preload_libraries time: reserves SIZE() bytes of the main shared
// memory. 15 added shmem_request_hook, the only place such requests are
// allowed from then on; before, _PG_init itself makes them. Each part of
// raceguard that keeps shared memory calls this once (at most four).
inline void request_preload_memory(Size (*size)()) {
#if PG_VERSION_NUM >= 150000
    static Size (*requested_sizes[4])() = {};
    static int requested = 0;
    static shmem_request_hook_type previous = nullptr;
    Assert(requested < 4);
    if (requested == 0) {
        previous = shmem_request_hook;
        shmem_request_hook = [] {
            if (previous != nullptr)
                previous();
            for (int i = 0; i < requested; ++i)
                RequestAddinShmemSpace(requested_sizes[i]());
        };
    }
    requested_sizes[requested++] = size;
#else
    RequestAddinShmemSpace(size());
#endif
}

// From a shmem_startup_hook: the named struct of SIZE bytes in the main
// shared memory, made and initialized by INIT in the first process to ask.
inline void* preloaded_struct(const char* name, Size size, void (*init)(void*)) {
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    void* memory = ShmemInitStruct(name, size, &found);
    if (!found)
        init(memory);
    LWLockRelease(AddinShmemInitLock);
    return memory;
}

// A setting of PostgreSQL's own by name (its record in the GUC tables), or
// nullptr. 16 made find_option public; before, the sorted array is searched.
inline config_generic* find_core_setting(const char* name) {
#if PG_VERSION_NUM >= 160000
    return find_option(name, false, true, ERROR);
#else
    config_generic** settings = get_guc_variables();
    const int count = GetNumConfigOptions();
    for (int i = 0; i < count; ++i)
        if (pg_strcasecmp(settings[i]->name, name) == 0)
            return settings[i];
    return nullptr;
#endif
}

// A table's per-backend statistics entry, where PostgreSQL counts this
// transaction's inserts and deletes; nullptr when it counts nothing for the
// table (track_counts off). From 15 on the entry is attached at the table's
// first counted event, so this attaches it (it may allocate, and so
// ereport); before, opening the table did. The entry lives at least until
// the transaction ends: PostgreSQL flushes it only between transactions.
inline PgStat_TableStatus* table_statistics(Relation relation) {
#if PG_VERSION_NUM >= 150000
    if (!pgstat_should_count_relation(relation))
        return nullptr;
#endif
    return relation->pgstat_info;
}

// The inserts and deletes of a table that statistics entry has counted so
// far in this transaction: those of subtransactions rolled back included,
// so the numbers only grow (save at a TRUNCATE of the table, which zeroes
// them). Plain reads.
struct AttemptedWrites {
    int64 inserted;
    int64 deleted;
};
inline AttemptedWrites attempted_writes(const PgStat_TableStatus* table) {
#if PG_VERSION_NUM >= 160000
    AttemptedWrites total{table->counts.tuples_inserted, table->counts.tuples_deleted};
#else
    AttemptedWrites total{table->t_counts.t_tuples_inserted, table->t_counts.t_tuples_deleted};
#endif
    for (const PgStat_TableXactStatus* level = table->trans; level != nullptr; level = level->upper) {
        total.inserted += level->tuples_inserted;
        total.deleted += level->tuples_deleted;
    }
    return total;
}

// Refuses (15+) or warns about (13, 14) settings of our prefix that no
// DefineCustom*Variable call defined: a misspelt raceguard.* setting.
inline void reserve_setting_prefix(const char* prefix) {
#if PG_VERSION_NUM >= 150000
    MarkGUCPrefixReserved(prefix);
#else
    EmitWarningsOnPlaceholders(prefix);
#endif
}

}  // namespace raceguard::compat
