// raceguard.claim() and the lease functions (SPEC §4).
#pragma once

#include "trigger_plumbing.hpp"

namespace raceguard {

Datum claim(FunctionCallInfo fcinfo);
Datum claim_lease(FunctionCallInfo fcinfo);
Datum release_lease(FunctionCallInfo fcinfo);
Datum extend_lease(FunctionCallInfo fcinfo);

}  // namespace raceguard
