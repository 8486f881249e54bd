// raceguard.running_balance(): serialized per-group running balances (SPEC §3).
#pragma once

#include "guard_kind.hpp"

namespace raceguard {

inline constexpr const char* RUNNING_BALANCE_GUARD = "raceguard.running_balance()";

// What the trigger's arguments say, before anything is resolved against the
// table: shared by the trigger and by raceguard.guards.
struct RunningBalanceArguments {
    std::string amount;
    std::string balance;
    std::vector<std::string> groups;
    std::string seq;          // empty when not given
    bool has_min_balance = false;
    std::string min_balance;
    std::string initial;      // "0" when not given
};

RunningBalanceArguments parse_running_balance_arguments(const TriggerDefinition& definition);

Datum running_balance_trigger(FunctionCallInfo fcinfo);

extern const GuardKind RUNNING_BALANCE_KIND;

}  // namespace raceguard
