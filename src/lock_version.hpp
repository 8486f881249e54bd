// raceguard.lock_version(): optimistic locking enforced by a trigger (SPEC §1).
#pragma once

#include "guard_kind.hpp"

namespace raceguard {

inline constexpr const char* LOCK_VERSION_GUARD = "raceguard.lock_version()";

// Everything the per-row path needs, resolved once per trigger.
struct LockVersionState {
    AttrNumber version_attnum;
    Oid version_type;  // int2, int4 or int8
    int64 max_version;
    bool strict;          // strict=true: reject UPDATEs that do not assign the version
    int stale_sqlstate;   // 40001, or 23514 with sqlstate=23514
};

// Validates a lock_version trigger definition; throws the error its first
// row would raise.
LockVersionState validate_lock_version(const TriggerDefinition& definition);

Datum lock_version_trigger(FunctionCallInfo fcinfo);

extern const GuardKind LOCK_VERSION_KIND;

}  // namespace raceguard
