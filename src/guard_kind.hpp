// What the catalog side (raceguard.guards, check_guards(), the check at
// migration time) knows of each guard. One place decides what a valid guard
// is: the state builder the trigger itself runs at its first row.
#pragma once

#include "trigger_cache.hpp"
#include "trigger_plumbing.hpp"

#include <string>
#include <utility>
#include <vector>

namespace raceguard {

// A guard's arguments as raceguard.guards shows them: its columns, and every
// option with its effective value (defaults included) as JSON.
struct GuardDescription {
    std::vector<std::string> columns;
    std::vector<std::pair<std::string, std::string>> options;  // key, JSON value
};

struct GuardKind {
    const char* name;  // the SQL function in schema raceguard, and raceguard.guards.guard
    StateBuilder builder;
    // Parses the arguments (throws Error when they do not parse).
    GuardDescription (*describe)(const TriggerDefinition& definition);
};

std::string json_string(const std::string& text);
std::string json_bool(bool value);
// A number option as a JSON number when it reads as one, else a string.
std::string json_number(const std::string& text);

}  // namespace raceguard
