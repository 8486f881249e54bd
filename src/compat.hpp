// The one place for differences between PostgreSQL majors (13, 15, 17, 18
// are the targets; 14 and 16 compile by construction). Code elsewhere calls
// these names and never tests PG_VERSION_NUM itself.
#pragma once

#include "pg.hpp"

extern "C" {
#include "utils/numeric.h"
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

}  // namespace raceguard::compat
