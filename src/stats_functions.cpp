// raceguard.stats's SQL-callable functions: the counters of one guard
// (guard_stats, which the view calls per guard), what the shared table
// holds for this database (tracked_objects), stats_reset(), and the event
// trigger that forgets dropped guards. Kept apart from the counting
// (stats.cpp), which runs on the guards' path; these run only when asked,
// and see the shared table through stats_table.hpp.
#include "stats_table.hpp"

#include "set_returning.hpp"

extern "C" {
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "utils/tuplestore.h"
}

#include <cstring>
#include <string>

namespace raceguard::stats {

namespace {

// ---- what raceguard.stats shows ------------------------------------------------

// The view's counter columns, in order, and which guard's slot each shows.
struct Column {
    Guard guard;
    int slot;  // -1: the longest wait; RB_WAIT_US: the total wait (both in ms)
};
constexpr Column COLUMNS[] = {
    {Guard::lock_version, LV_ROWS},  // rows_checked (immutable_once_set: IO_ROWS, also 0)
    {Guard::lock_version, LV_BUMPED},
    {Guard::lock_version, LV_STALE},
    {Guard::lock_version, LV_BLIND},
    {Guard::lock_version, LV_OVERFLOW},
    {Guard::immutable_once_set, IO_VIOLATIONS},
    {Guard::running_balance, RB_APPENDS},
    {Guard::running_balance, RB_WAITED},
    {Guard::running_balance, RB_WAIT_US},
    {Guard::running_balance, -1},
    {Guard::running_balance, RB_SERIALIZATION},
    {Guard::running_balance, RB_MIN_BALANCE},
    {Guard::running_balance, RB_UPDATES},
    {Guard::running_balance, RB_DELETES},
    {Guard::running_balance, RB_RESTORED},  // entries_restored (1.4)
    {Guard::claim, CL_CALLS},
    {Guard::claim, CL_ROWS},
    {Guard::claim, CL_LEASES},
    {Guard::claim, CL_RELEASES},
    {Guard::claim, CL_RELEASES_FENCED},
    {Guard::claim, CL_EXTENDS},
    {Guard::claim, CL_EXTENDS_FENCED},
};
constexpr int COLUMN_COUNT = sizeof(COLUMNS) / sizeof(COLUMNS[0]);
// guard, the counters, stats_reset
constexpr int OUTPUT_COLUMNS = 1 + COLUMN_COUNT + 1;
// The library serves the SQL declarations of older versions too, until
// ALTER EXTENSION UPDATE: 1.2 and 1.3 declare guard_stats without
// entries_restored, so that column is left out of a result of their shape.
constexpr int RESTORED_COLUMN = 1 + 14;
constexpr int OUTPUT_COLUMNS_BEFORE_1_4 = OUTPUT_COLUMNS - 1;
static_assert(COLUMNS[RESTORED_COLUMN - 1].slot == RB_RESTORED, "RESTORED_COLUMN is entries_restored's place");

const char* guard_name(Guard guard) {
    switch (guard) {
        case Guard::lock_version: return "lock_version";
        case Guard::immutable_once_set: return "immutable_once_set";
        case Guard::running_balance: return "running_balance";
        case Guard::claim: return "claim";
        case Guard::transition: return "transition";
    }
    return "unknown";
}

bool guard_from_name(const char* name, Guard* guard) {
    for (Guard candidate :
         {Guard::lock_version, Guard::immutable_once_set, Guard::running_balance, Guard::claim, Guard::transition})
        if (std::strcmp(name, guard_name(candidate)) == 0) {
            *guard = candidate;
            return true;
        }
    return false;
}

void add_row(const Materialized& result, Datum* values, bool* nulls) {
    tuplestore_putvalues(result.store, result.descriptor, values, nulls);
}

// A copy of the guard's shared entry; false (and zero counters) when it is
// not tracked. C-side: the caller has attached, and shared is set.
bool read_entry(const Key& key, Guard guard, SharedEntry* entry) {
    bool tracked = false;
    LWLockAcquire(&directory->lock, LW_SHARED);
    const int32 index = find_entry(shared, key);
    if (index >= 0 && entries_of(shared)[index].guard == guard) {
        *entry = entries_of(shared)[index];
        tracked = true;
    }
    LWLockRelease(&directory->lock);
    if (!tracked)
        std::memset(&entry->counters, 0, sizeof(entry->counters));
    return tracked;
}

}  // namespace

// raceguard.guard_stats(object oid, guard text): the counters of a trigger
// (or, for 'claim', of the claims on a table), zero when nothing was counted
// since tracking began, as one row; no row when statistics are not collected.
Datum guard_stats(FunctionCallInfo fcinfo) {
    const Oid object = PG_GETARG_OID(0);
    const char* name = pg_call([&] { return text_to_cstring(PG_GETARG_TEXT_PP(1)); });
    Guard guard{};
    if (!guard_from_name(name, &guard))
        throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "unknown guard \"" + std::string(name) + "\"")
            .with_hint("One of lock_version, immutable_once_set, running_balance, claim, transition.");
    const Key key{MyDatabaseId, object, guard == Guard::claim ? Kind::claim_table : Kind::trigger};
    pg_call([&] {
        attach();
        const Materialized result = begin_materialized(fcinfo);
        const int shape = result.descriptor->natts;
        if (shape != OUTPUT_COLUMNS && shape != OUTPUT_COLUMNS_BEFORE_1_4)
            ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                            errmsg("raceguard.guard_stats() is declared with %d columns; this library returns %d",
                                   shape, OUTPUT_COLUMNS),
                            errhint("Update the extension: ALTER EXTENSION raceguard UPDATE.")));
        if (shared == nullptr)
            return;
        SharedEntry entry{};
        const bool tracked = read_entry(key, guard, &entry);
        Datum values[OUTPUT_COLUMNS];
        bool nulls[OUTPUT_COLUMNS];
        values[0] = CStringGetTextDatum(guard_name(guard));
        nulls[0] = false;
        for (int c = 0; c < COLUMN_COUNT; ++c) {
            const Column& column = COLUMNS[c];
            // rows_checked is lock_version's, immutable_once_set's and transition's.
            const bool applies =
                column.guard == guard || (c == 0 && (guard == Guard::immutable_once_set || guard == Guard::transition));
            nulls[1 + c] = !applies;
            values[1 + c] = 0;
            if (!applies)
                continue;
            if (column.slot == -1)
                values[1 + c] = Float8GetDatum(static_cast<double>(entry.counters.wait_max_us) / 1000.0);
            else if (guard == Guard::running_balance && column.slot == RB_WAIT_US)
                values[1 + c] = Float8GetDatum(static_cast<double>(entry.counters.n[RB_WAIT_US]) / 1000.0);
            else
                values[1 + c] = Int64GetDatum(entry.counters.n[column.slot]);
        }
        values[OUTPUT_COLUMNS - 1] = tracked ? TimestampTzGetDatum(entry.since) : 0;
        nulls[OUTPUT_COLUMNS - 1] = !tracked;
        if (shape == OUTPUT_COLUMNS_BEFORE_1_4) {
            std::memmove(&values[RESTORED_COLUMN], &values[RESTORED_COLUMN + 1],
                         sizeof(Datum) * (OUTPUT_COLUMNS - RESTORED_COLUMN - 1));
            std::memmove(&nulls[RESTORED_COLUMN], &nulls[RESTORED_COLUMN + 1],
                         sizeof(bool) * (OUTPUT_COLUMNS - RESTORED_COLUMN - 1));
        }
        add_row(result, values, nulls);
    });
    return static_cast<Datum>(0);
}

// raceguard.transition_stats(trigger oid): a transition guard's counters
// that raceguard.stats shows after stats_reset (1.5 added them at the end of
// the view, so that the update changes it in place), as one row; no row
// when statistics are not collected.
Datum transition_stats(FunctionCallInfo fcinfo) {
    const Oid trigger_oid = PG_GETARG_OID(0);
    const Key key{MyDatabaseId, trigger_oid, Kind::trigger};
    pg_call([&] {
        attach();
        const Materialized result = begin_materialized(fcinfo);
        if (shared == nullptr)
            return;
        SharedEntry entry{};
        read_entry(key, Guard::transition, &entry);
        Datum values[2] = {Int64GetDatum(entry.counters.n[TR_REFUSED]), Int64GetDatum(entry.counters.n[TR_DUPLICATES])};
        bool nulls[2] = {false, false};
        add_row(result, values, nulls);
    });
    return static_cast<Datum>(0);
}

// raceguard.tracked_objects(): what the shared table holds for this
// database: (object, guard). Says with a NOTICE when nothing is collected.
Datum tracked_objects(FunctionCallInfo fcinfo) {
    pg_call([&] {
        attach();
        const Materialized result = begin_materialized(fcinfo);
        if (shared == nullptr) {
            ereport(NOTICE,
                    (errmsg("raceguard statistics are not collected: raceguard is not in shared_preload_libraries"),
                     errhint("Before PostgreSQL 17, raceguard.stats needs shared_preload_libraries = 'raceguard' "
                             "and a restart; the guards themselves work without it.")));
            return;
        }
        LWLockAcquire(&directory->lock, LW_SHARED);
        // Copied out first: a tuplestore may allocate (and so ereport).
        const uint32 count = shared->count;
        auto* found = static_cast<SharedEntry*>(palloc_extended(sizeof(SharedEntry) * (count > 0 ? count : 1),
                                                                MCXT_ALLOC_NO_OOM));
        uint32 copied = 0;
        if (found != nullptr) {
            const SharedEntry* entries = entries_of(shared);
            for (uint32 i = 0; i < count; ++i)
                if (entries[i].key.database == MyDatabaseId)
                    found[copied++] = entries[i];
        }
        LWLockRelease(&directory->lock);
        if (found == nullptr)
            ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
        for (uint32 i = 0; i < copied; ++i) {
            Datum values[2] = {ObjectIdGetDatum(found[i].key.object), CStringGetTextDatum(guard_name(found[i].guard))};
            bool nulls[2] = {false, false};
            add_row(result, values, nulls);
        }
        pfree(found);
    });
    return static_cast<Datum>(0);
}

// raceguard.stats_reset(): every counter of this database's guards back to
// zero, counting again from now. EXECUTE is revoked from PUBLIC.
Datum reset(FunctionCallInfo) {
    pg_call([] {
        attach();
        if (shared == nullptr)
            return;
        const TimestampTz now = GetCurrentTimestamp();
        LWLockAcquire(&directory->lock, LW_EXCLUSIVE);
        SharedEntry* entries = entries_of(shared);
        for (uint32 i = 0; i < shared->count; ++i) {
            if (entries[i].key.database != MyDatabaseId)
                continue;
            std::memset(&entries[i].counters, 0, sizeof(entries[i].counters));
            entries[i].since = now;
        }
        LWLockRelease(&directory->lock);
    });
    return static_cast<Datum>(0);
}

// On sql_drop: the entries of the triggers and tables a DROP removed go when
// it commits (a rolled-back DROP keeps them). Called by the event trigger's
// PL/pgSQL function (1.4, so that a DROP works without the library), or as
// the event trigger function itself (1.2 and 1.3). Called anywhere else it
// changes nothing: pg_event_trigger_dropped_objects() refuses to run (39P01)
// where statistics are collected, and there is nothing to forget elsewhere.
// A DROP must never fail because of the statistics: the shared table is
// reached as the guards reach it, giving up (with a WARNING) where it cannot
// be, and never made here (where there is none yet, there is nothing to
// forget).
Datum forget_dropped(FunctionCallInfo) {
    const std::string query = "SELECT classid, objid FROM pg_catalog.pg_event_trigger_dropped_objects() "
                              "WHERE objsubid OPERATOR(pg_catalog.=) 0 AND classid OPERATOR(pg_catalog.=) ANY ('{" +
                              std::to_string(TriggerRelationId) + "," + std::to_string(RelationRelationId) +
                              "}'::pg_catalog.oid[])";
    pg_call([&] {
        attach_or_give_up(false);
        if (shared == nullptr)
            return;
        if (SPI_connect() != SPI_OK_CONNECT)
            elog(ERROR, "SPI_connect failed");
        if (SPI_execute(query.c_str(), true, 0) != SPI_OK_SELECT)
            elog(ERROR, "SPI_execute failed");
        for (uint64 row = 0; row < SPI_processed; ++row) {
            bool is_null = false;
            const Oid classid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &is_null));
            const Oid objid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2, &is_null));
            forget_at_commit(Key{MyDatabaseId, objid, classid == TriggerRelationId ? Kind::trigger : Kind::claim_table});
        }
        SPI_finish();
    });
    return static_cast<Datum>(0);
}

}  // namespace raceguard::stats
