// A test hook for the error boundary; the regression suite creates an SQL
// function for it (the extension itself does not).
#pragma once

#include "boundary.hpp"

namespace raceguard {
Datum boundary_probe(FunctionCallInfo fcinfo);
}
