// Every function PostgreSQL calls: extern "C" shims that run their C++ body
// inside the error boundary (boundary.hpp).
#include "boundary.hpp"
#include "boundary_probe.hpp"
#include "claim.hpp"
#include "guard_catalog.hpp"
#include "immutable_once_set.hpp"
#include "lock_version.hpp"
#include "running_balance.hpp"

extern "C" {

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(raceguard_lock_version);
Datum raceguard_lock_version(PG_FUNCTION_ARGS) {
    return raceguard::run_entry<raceguard::lock_version_trigger>(fcinfo);
}

PG_FUNCTION_INFO_V1(raceguard_immutable_once_set);
Datum raceguard_immutable_once_set(PG_FUNCTION_ARGS) {
    return raceguard::run_entry<raceguard::immutable_once_set_trigger>(fcinfo);
}

PG_FUNCTION_INFO_V1(raceguard_running_balance);
Datum raceguard_running_balance(PG_FUNCTION_ARGS) {
    return raceguard::run_entry<raceguard::running_balance_trigger>(fcinfo);
}

PG_FUNCTION_INFO_V1(raceguard_running_balance_layout);
Datum raceguard_running_balance_layout(PG_FUNCTION_ARGS) {
    return raceguard::run_entry<raceguard::running_balance_layout>(fcinfo);
}

PG_FUNCTION_INFO_V1(raceguard_claim);
Datum raceguard_claim(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::claim>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_claim_lease);
Datum raceguard_claim_lease(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::claim_lease>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_release_lease);
Datum raceguard_release_lease(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::release_lease>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_extend_lease);
Datum raceguard_extend_lease(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::extend_lease>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_guard_definition);
Datum raceguard_guard_definition(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::guard_definition>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_guard_problems);
Datum raceguard_guard_problems(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::guard_problems>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_check_guard_ddl);
Datum raceguard_check_guard_ddl(PG_FUNCTION_ARGS) { return raceguard::run_entry<raceguard::check_guard_ddl>(fcinfo); }

PG_FUNCTION_INFO_V1(raceguard_boundary_probe);
Datum raceguard_boundary_probe(PG_FUNCTION_ARGS) {
    return raceguard::run_entry<raceguard::boundary_probe>(fcinfo);
}

}  // extern "C"
