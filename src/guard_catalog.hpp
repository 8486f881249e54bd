// Seeing and checking the guards (SPEC §5).
#pragma once

#include "guard_kind.hpp"

namespace raceguard {

// SQL: raceguard.guard_definition(trigger oid) -> (guard, columns, options)
Datum guard_definition(FunctionCallInfo fcinfo);
// SQL: raceguard.guard_problems(trigger oid) -> text[]
Datum guard_problems(FunctionCallInfo fcinfo);
// SQL: raceguard.check_guard_ddl(object oid, command_tag text): raises the
// error a guard's first row would raise, for the event trigger.
Datum check_guard_ddl(FunctionCallInfo fcinfo);

}  // namespace raceguard
