// Every function PostgreSQL calls: extern "C" shims that run their C++ body
// inside the error boundary (boundary.hpp).
#include "boundary.hpp"
#include "boundary_probe.hpp"
#include "citus.hpp"
#include "claim.hpp"
#include "guard_catalog.hpp"
#include "immutable_once_set.hpp"
#include "lock_version.hpp"
#include "running_balance.hpp"
#include "running_balance_group_lock.hpp"
#include "running_balance_restore.hpp"
#include "running_balance_shared.hpp"
#include "stats.hpp"
#include "transition.hpp"

// One SQL-callable symbol whose body is raceguard::body, run in the boundary.
#define RACEGUARD_ENTRY(symbol, body)        \
    PG_FUNCTION_INFO_V1(symbol);             \
    Datum symbol(PG_FUNCTION_ARGS) {         \
        return raceguard::run_entry<body>(fcinfo); \
    }

namespace raceguard {

// A guard's body, its own errors named for the user on a Citus shard
// (citus.hpp). The try costs nothing until a guard throws.
template <Datum (*Body)(FunctionCallInfo)>
Datum guard_body(FunctionCallInfo fcinfo) {
    try {
        return Body(fcinfo);
    } catch (Error& error) {
        if (CALLED_AS_TRIGGER(fcinfo)) {
            const auto* data = reinterpret_cast<const TriggerData*>(fcinfo->context);
            citus::name_user_objects(error, data->tg_relation, data->tg_trigger->tgname);
        }
        throw;
    }
}

}  // namespace raceguard

extern "C" {

PG_MODULE_MAGIC;

// Settings, and at shared_preload_libraries time the statistics' shared
// memory (stats.hpp). Plain C-side code: nothing here has a destructor.
// stats::initialize reserves the prefix, so every setting is defined before.
void _PG_init(void);
void _PG_init(void) {
    raceguard::define_restoring_setting();
    raceguard::stats::initialize();
    raceguard::shared_last_entries::initialize();
    raceguard::initialize_group_lock_wakeups();
}

// The guards (trigger functions).
RACEGUARD_ENTRY(raceguard_lock_version, raceguard::guard_body<raceguard::lock_version_trigger>)
RACEGUARD_ENTRY(raceguard_immutable_once_set, raceguard::guard_body<raceguard::immutable_once_set_trigger>)
RACEGUARD_ENTRY(raceguard_running_balance, raceguard::guard_body<raceguard::running_balance_trigger>)
RACEGUARD_ENTRY(raceguard_transition, raceguard::guard_body<raceguard::transition_trigger>)

// Claims and leases.
RACEGUARD_ENTRY(raceguard_claim, raceguard::claim)
RACEGUARD_ENTRY(raceguard_claim_lease, raceguard::claim_lease)
RACEGUARD_ENTRY(raceguard_release_lease, raceguard::release_lease)
RACEGUARD_ENTRY(raceguard_extend_lease, raceguard::extend_lease)

// Seeing and checking the guards.
RACEGUARD_ENTRY(raceguard_guard_definition, raceguard::guard_definition)
RACEGUARD_ENTRY(raceguard_guard_problems, raceguard::guard_problems)
RACEGUARD_ENTRY(raceguard_check_guard_ddl, raceguard::check_guard_ddl)

// Statistics per guard (raceguard.stats).
RACEGUARD_ENTRY(raceguard_guard_stats, raceguard::stats::guard_stats)
RACEGUARD_ENTRY(raceguard_transition_stats, raceguard::stats::transition_stats)
RACEGUARD_ENTRY(raceguard_tracked_objects, raceguard::stats::tracked_objects)
RACEGUARD_ENTRY(raceguard_stats_reset, raceguard::stats::reset)
RACEGUARD_ENTRY(raceguard_forget_dropped_stats, raceguard::stats::forget_dropped)

// The boundary's test hook (sql/boundary.sql names it).
RACEGUARD_ENTRY(raceguard_boundary_probe, raceguard::boundary_probe)

}  // extern "C"
