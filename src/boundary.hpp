// The C++ <-> PostgreSQL error boundary.
//
// PostgreSQL reports errors with ereport(ERROR), which longjmps; a longjmp
// across a C++ frame skips that frame's destructors, and a C++ exception that
// reaches PostgreSQL's C code kills the backend. So the two worlds meet only
// here, and the rules are:
//
//  1. Every SQL-callable function is an extern "C" shim whose C++ body runs
//     inside run_entry<Body>. run_entry catches everything: our own Error, a
//     PostgreSQL error carried as PgError, any std::exception. It raises the
//     matching PostgreSQL error only after the C++ stack has unwound, outside
//     any catch block, with the original SQLSTATE and fields.
//  2. C++ code calls a PostgreSQL function that may ereport(ERROR) through
//     pg_call(). pg_call catches the error with PG_TRY, copies it and throws
//     it as PgError, so the C++ stack unwinds normally; run_entry re-raises it
//     unchanged. A caught PostgreSQL error is always re-raised: nothing here
//     swallows one, since only a (sub)transaction abort may do that. A caller
//     may catch a PgError only to throw a more precise Error with the same
//     SQLSTATE instead (a guard naming the column its arithmetic overflowed).
//  3. Code that calls PostgreSQL directly (the per-row paths) keeps no object
//     with a destructor alive in its frames, so a longjmp through them skips
//     nothing. Nothing with a destructor is stored in palloc'd memory.
#pragma once

#include "pg.hpp"

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace raceguard {

// An error raised by raceguard itself, with every field ereport can carry.
struct Error : std::exception {
    int sqlstate;
    std::string message;
    std::string detail;
    std::string hint;
    std::string schema;      // PG_DIAG_SCHEMA_NAME
    std::string table;       // PG_DIAG_TABLE_NAME
    std::string column;      // PG_DIAG_COLUMN_NAME
    std::string constraint;  // PG_DIAG_CONSTRAINT_NAME

    Error(int sqlstate, std::string message)
        : sqlstate(sqlstate), message(std::move(message)) {}

    Error& with_detail(std::string text) { detail = std::move(text); return *this; }
    Error& with_hint(std::string text) { hint = std::move(text); return *this; }
    Error& with_constraint(std::string name) { constraint = std::move(name); return *this; }
    Error& with_column(std::string name) { column = std::move(name); return *this; }
    Error& with_table(std::string schema_name, std::string table_name) {
        schema = std::move(schema_name);
        table = std::move(table_name);
        return *this;
    }

    const char* what() const noexcept override { return message.c_str(); }
};

// A PostgreSQL error caught by pg_call. The ErrorData was copied into the
// memory context that was current when pg_call began.
struct PgError : std::exception {
    ErrorData* data;
    explicit PgError(ErrorData* data) : data(data) {}
    const char* what() const noexcept override { return data->message ? data->message : "PostgreSQL error"; }
};

namespace detail {

// A caught error, flattened into palloc'd plain data so that run_entry can
// raise it after every C++ object is gone.
struct PendingError {
    ErrorData* postgres_error;  // re-raised as is when set
    int sqlstate;
    const char* message;
    const char* detail;
    const char* hint;
    const char* schema;
    const char* table;
    const char* column;
    const char* constraint;
};

const PendingError* pending_from(const PgError& error) noexcept;
const PendingError* pending_from(const Error& error) noexcept;
const PendingError* pending_from_cxx(int sqlstate, const char* what) noexcept;
[[noreturn]] void raise_pending(const PendingError* pending);
// Runs thunk(context) under PG_TRY; returns the copied error, or nullptr.
ErrorData* call_catching(void (*thunk)(void*), void* context);

}  // namespace detail

// Runs a call into PostgreSQL; a PostgreSQL error comes out as PgError.
// The callable must not create objects with destructors (it is C-side code).
template <typename Call>
auto pg_call(Call&& call) -> decltype(call()) {
    using Result = decltype(call());
    static_assert(std::is_void_v<Result> || std::is_trivially_copyable_v<Result>,
                  "pg_call returns plain values only");
    using Callable = std::remove_reference_t<Call>;
    if constexpr (std::is_void_v<Result>) {
        ErrorData* caught = detail::call_catching(
            [](void* callable) { (*static_cast<Callable*>(callable))(); }, &call);
        if (caught != nullptr)
            throw PgError(caught);
    } else {
        struct Frame {
            Callable* callable;
            Result result;
        } frame{&call, Result{}};
        ErrorData* caught = detail::call_catching(
            [](void* raw) {
                auto* f = static_cast<Frame*>(raw);
                f->result = (*f->callable)();
            },
            &frame);
        if (caught != nullptr)
            throw PgError(caught);
        return frame.result;
    }
}

// Runs the C++ body of an SQL-callable function (rule 1 above).
template <Datum (*Body)(FunctionCallInfo)>
Datum run_entry(FunctionCallInfo fcinfo) {
    const detail::PendingError* pending = nullptr;
    try {
        return Body(fcinfo);
    } catch (const PgError& error) {
        pending = detail::pending_from(error);
    } catch (const Error& error) {
        pending = detail::pending_from(error);
    } catch (const std::bad_alloc&) {
        pending = detail::pending_from_cxx(ERRCODE_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& error) {
        pending = detail::pending_from_cxx(ERRCODE_INTERNAL_ERROR, error.what());
    } catch (...) {
        pending = detail::pending_from_cxx(ERRCODE_INTERNAL_ERROR, "unknown C++ exception");
    }
    // The handlers have finished: no exception object and no C++ frame is
    // alive below this point, so the longjmp is safe.
    detail::raise_pending(pending);
}

}  // namespace raceguard
