// The error boundary's out-of-line half: converting caught errors into plain
// palloc'd data and raising them. See boundary.hpp for the rules.
#include "boundary.hpp"

#include <cstring>

namespace raceguard::detail {

namespace {

// Allocation that never ereports: these run inside catch handlers, where a
// longjmp would abandon the exception object.
void* alloc_quietly(Size size) noexcept {
    return palloc_extended(size, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
}

const char* copy_quietly(const char* text, size_t length) noexcept {
    if (length == 0)
        return nullptr;
    auto* copy = static_cast<char*>(alloc_quietly(length + 1));
    if (copy != nullptr)
        std::memcpy(copy, text, length + 1);
    return copy;
}

const char* copy_quietly(const std::string& text) noexcept {
    return copy_quietly(text.c_str(), text.size());
}

PendingError out_of_memory_fallback = {
    nullptr, ERRCODE_OUT_OF_MEMORY, "out of memory", nullptr, nullptr,
    nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

const PendingError* pending_from(const PgError& error) noexcept {
    auto* pending = static_cast<PendingError*>(alloc_quietly(sizeof(PendingError)));
    if (pending == nullptr)
        return &out_of_memory_fallback;
    pending->postgres_error = error.data;
    return pending;
}

const PendingError* pending_from(const Error& error) noexcept {
    auto* pending = static_cast<PendingError*>(alloc_quietly(sizeof(PendingError)));
    if (pending == nullptr)
        return &out_of_memory_fallback;
    pending->sqlstate = error.sqlstate;
    pending->message = copy_quietly(error.message);
    if (pending->message == nullptr)
        return &out_of_memory_fallback;
    pending->detail = copy_quietly(error.detail);
    pending->hint = copy_quietly(error.hint);
    pending->schema = copy_quietly(error.schema);
    pending->table = copy_quietly(error.table);
    pending->column = copy_quietly(error.column);
    pending->constraint = copy_quietly(error.constraint);
    return pending;
}

const PendingError* pending_from_cxx(int sqlstate, const char* what) noexcept {
    auto* pending = static_cast<PendingError*>(alloc_quietly(sizeof(PendingError)));
    if (pending == nullptr)
        return &out_of_memory_fallback;
    pending->sqlstate = sqlstate;
    if (what == nullptr || *what == '\0')
        what = "C++ exception";
    pending->message = copy_quietly(what, std::strlen(what));
    return pending->message ? pending : &out_of_memory_fallback;
}

void raise_pending(const PendingError* pending) {
    if (pending->postgres_error != nullptr)
        ReThrowError(pending->postgres_error);
    ereport(ERROR,
            (errcode(pending->sqlstate),
             errmsg_internal("%s", pending->message),
             pending->detail ? errdetail_internal("%s", pending->detail) : 0,
             pending->hint ? errhint("%s", pending->hint) : 0,
             pending->schema ? err_generic_string(PG_DIAG_SCHEMA_NAME, pending->schema) : 0,
             pending->table ? err_generic_string(PG_DIAG_TABLE_NAME, pending->table) : 0,
             pending->column ? err_generic_string(PG_DIAG_COLUMN_NAME, pending->column) : 0,
             pending->constraint ? err_generic_string(PG_DIAG_CONSTRAINT_NAME, pending->constraint) : 0));
    pg_unreachable();
}

ErrorData* call_catching(void (*thunk)(void*), void* context) {
    MemoryContext caller_context = CurrentMemoryContext;
    ErrorData* volatile caught = nullptr;
    PG_TRY();
    {
        thunk(context);
    }
    PG_CATCH();
    {
        // CopyErrorData refuses to copy into ErrorContext, where elog left us.
        MemoryContextSwitchTo(caller_context);
        caught = CopyErrorData();
        FlushErrorState();
    }
    PG_END_TRY();
    return caught;
}

}  // namespace raceguard::detail
