// running_balance's restore path: the setting raceguard.restoring.
//
// A dump holds a ledger's entries with their seq and balance, and
// pg_restore -j may create a partitioned ledger's trigger on the parent
// before every partition's data is in, so the trigger's clones fire on the
// dumped rows, in whatever order they arrive. Such rows must be kept as
// dumped, not appended again. Keeping a row unchecked is a way around the
// guard, so it is opened only by a setting no ordinary role can make:
//  - raceguard.restoring is PGC_SUSET: a superuser sets it (SET, PGOPTIONS,
//    ALTER ROLE ... SET), or, from PostgreSQL 15 on, a role a superuser
//    granted SET ON PARAMETER raceguard.restoring;
//  - a row is kept only when the current user may set it itself (so a
//    superuser's ALTER ROLE app SET, or a SET before SET ROLE app, opens
//    nothing for app), never inside a SECURITY DEFINER function or a
//    security-restricted operation (definer rights are not inherited), and
//    only for a BEFORE ROW INSERT that carries both its seq and its balance;
//  - each statement that keeps rows says so in one WARNING, and the kept
//    rows are counted in raceguard.stats (entries_restored).
// Every other row, and every row when the setting is off, is appended as
// always. docs/operations.md ("Backups") states the threat model.
#pragma once

#include "boundary.hpp"

namespace raceguard {

// The setting; false unless a privileged role turned it on.
extern bool restoring_setting;

// Defines raceguard.restoring (from _PG_init, before the prefix is reserved).
void define_restoring_setting();

// With raceguard.restoring on: whether the fired row is a restored entry to
// keep as it is (and then it is counted and, once per statement, announced).
// Otherwise false, and the row is appended as usual.
bool keep_restored_entry(FunctionCallInfo fcinfo, const TriggerData* trigger_data);

}  // namespace raceguard
