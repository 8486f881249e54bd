// The materialized-set preamble: see set_returning.hpp.
#include "set_returning.hpp"

extern "C" {
#include "funcapi.h"
}

namespace raceguard {

Materialized begin_materialized(FunctionCallInfo fcinfo) {
    auto* result_info = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
    if (result_info == nullptr || !IsA(result_info, ReturnSetInfo) ||
        (result_info->allowedModes & SFRM_Materialize) == 0)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("set-valued function called in context that cannot accept a set")));
    TupleDesc descriptor = nullptr;
    if (get_call_result_type(fcinfo, nullptr, &descriptor) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "return type must be a row type");
    MemoryContext previous = MemoryContextSwitchTo(result_info->econtext->ecxt_per_query_memory);
    Materialized result{tuplestore_begin_heap(true, false, work_mem), CreateTupleDescCopy(descriptor)};
    MemoryContextSwitchTo(previous);
    result_info->returnMode = SFRM_Materialize;
    result_info->setResult = result.store;
    result_info->setDesc = result.descriptor;
    return result;
}

}  // namespace raceguard
