// raceguard.immutable_once_set(): write-once columns (SPEC §2).
#pragma once

#include "guard_kind.hpp"

namespace raceguard {

inline constexpr const char* IMMUTABLE_ONCE_SET_GUARD = "raceguard.immutable_once_set()";

struct WriteOnceColumn {
    AttrNumber attnum;
    Oid type;
    int16 type_length;
    bool by_value;
};

struct ImmutableOnceSetState {
    bool allow_unset;  // allow_unset=true: a set column may go back to NULL
    int column_count;
    WriteOnceColumn* columns;
};

// Validates the definition; fills `columns` (which must hold one entry per
// argument) and returns the column count and option.
ImmutableOnceSetState validate_immutable_once_set(const TriggerDefinition& definition,
                                                  WriteOnceColumn* columns);

Datum immutable_once_set_trigger(FunctionCallInfo fcinfo);

extern const GuardKind IMMUTABLE_ONCE_SET_KIND;

}  // namespace raceguard
