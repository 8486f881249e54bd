// Exercises the boundary the way guard code uses it: errors raised several
// C++ frames deep, each frame holding an object with a destructor. The
// regression test checks the SQLSTATE and fields that reach the client, that
// every destructor ran, and that the backend still works afterwards.
#include "boundary_probe.hpp"

#include <stdexcept>
#include <string>

namespace raceguard {

namespace {

int destructor_runs = 0;

struct CountsItsDestruction {
    std::string payload = "a heap-allocated string that must be freed";
    ~CountsItsDestruction() { ++destructor_runs; }
};

constexpr int PROBE_DEPTH = 5;

int descend(const std::string& mode, int depth) {
    CountsItsDestruction alive;
    if (depth < PROBE_DEPTH)
        return descend(mode, depth + 1) + static_cast<int>(alive.payload.empty());
    if (mode == "raceguard_error")
        throw Error(ERRCODE_CHECK_VIOLATION, "probe: raceguard error from depth " + std::to_string(depth))
            .with_detail("probe detail")
            .with_hint("probe hint")
            .with_constraint("probe_constraint");
    if (mode == "postgres_error")
        return pg_call([] { return DatumGetInt32(DirectFunctionCall1(int4in, CStringGetDatum("not a number"))); });
    if (mode == "std_exception")
        throw std::runtime_error("probe: std::runtime_error from depth " + std::to_string(depth));
    if (mode == "ok")
        return pg_call([] { return DatumGetInt32(DirectFunctionCall1(int4in, CStringGetDatum("42"))); });
    throw Error(ERRCODE_INVALID_PARAMETER_VALUE, "probe: unknown mode \"" + mode + "\"");
}

}  // namespace

Datum boundary_probe(FunctionCallInfo fcinfo) {
    const char* mode_text = pg_call([&] { return text_to_cstring(PG_GETARG_TEXT_PP(0)); });
    const std::string mode = mode_text;
    if (mode == "destructor_runs")
        return Int32GetDatum(destructor_runs);
    return Int32GetDatum(descend(mode, 1));
}

}  // namespace raceguard
