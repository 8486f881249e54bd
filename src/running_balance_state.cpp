// raceguard.running_balance(): the catalog side, run once per trigger.
//
// Everything the guard decides from the catalog rather than from the row:
// parsing the trigger's arguments and options, resolving and checking the
// amount, balance, seq and group columns, parsing initial= and min_balance=,
// finding the ledger's root and parts and, in each part, the chain index
// that finds a group's last entry. The result is the plain-data
// RunningBalanceState (running_balance_state.hpp), built at the trigger's
// first row and by raceguard.guards and check_guards() through
// RUNNING_BALANCE_KIND. Kept apart from the per-row path
// (running_balance.cpp), which only reads what is built here.
#include "citus.hpp"
#include "running_balance_lookup.hpp"
#include "running_balance_state.hpp"
#include "running_balance_shared.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_opfamily.h"
#include "commands/defrem.h"
#include "common/hashfn.h"
#include "utils/fmgroids.h"
#include "utils/partcache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
}

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

namespace raceguard {

RunningBalanceArguments parse_running_balance_arguments(const TriggerDefinition& definition) {
    const TriggerArguments parsed = parse_arguments(definition, {"seq", "min_balance", "initial"});
    if (parsed.columns.size() < 2)
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string(definition.guard) +
                                   " needs the amount column and the balance column, then the group columns")
            .with_hint("raceguard.running_balance('amount', 'running_balance', 'account_id', 'seq=entry_no')");
    RunningBalanceArguments arguments;
    arguments.amount = parsed.columns[0];
    arguments.balance = parsed.columns[1];
    arguments.groups.assign(parsed.columns.begin() + 2, parsed.columns.end());
    if (parsed.columns.size() - 2 > INDEX_MAX_KEYS - 1)
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE, "too many group columns");
    const std::string* seq = parsed.option("seq");
    if (seq == nullptr || seq->empty())
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string(definition.guard) + " needs seq=<column>: the append order is kept in the "
                                                               "rows, so that each append can find its group's last entry")
            .with_hint("Add a bigint column for the entry number, e.g. entry_no, and pass 'seq=entry_no'.");
    arguments.seq = *seq;
    if (const std::string* minimum = parsed.option("min_balance")) {
        arguments.has_min_balance = true;
        arguments.min_balance = *minimum;
    }
    const std::string* initial = parsed.option("initial");
    arguments.initial = initial != nullptr ? *initial : "0";
    return arguments;
}

namespace {

constexpr FiringRules RUNNING_BALANCE_FIRING = {true, false, ON_INSERT | ON_UPDATE | ON_DELETE};

// An index's key columns, as find_part_index judges them.
struct IndexShape {
    bool plain_btree;
    int key_count;
    AttrNumber key_attnums[INDEX_MAX_KEYS];
    Oid opfamilies[INDEX_MAX_KEYS];
    Oid input_types[INDEX_MAX_KEYS];
    Oid collations[INDEX_MAX_KEYS];
    Oid equality_operators[INDEX_MAX_KEYS];
    bool descending[INDEX_MAX_KEYS];
    NameData name;
};

// A group column of one partition, as an index key must compare it.
struct GroupColumnShape {
    std::string name;
    AttrNumber attnum;
    Oid collation;
    Oid equality_operator;  // the type's default "=", as GROUP BY uses
};

// ---- definition ---------------------------------------------------------

// On Citus a group's chain must live in one shard (SPEC §9). A table
// distributed by a column that is not a group column spreads each group over
// the shards, and each shard would keep a chain of its own, silently: seq 1
// once per shard. Checked on the Citus table (CREATE TRIGGER and
// check_guards() on the coordinator) and on its shards (their first row).
// Returns how Citus places the relation.
citus::TablePlacement check_citus_placement(const TriggerDefinition& definition,
                                            const RunningBalanceArguments& arguments, Oid relid) {
    const citus::TablePlacement placement = citus::placement_of(relid);
    if (placement.placement != citus::Placement::distributed)
        return placement;
    for (const std::string& group : arguments.groups)
        if (group == placement.distribution_column)
            return placement;
    const std::string table = placement.is_shard ? "its table " + quoted(placement.table_name) : "the table";
    const std::string distributed = "Citus distributes " + table + " by column " +
                                    quoted(placement.distribution_column) + ", ";
    throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                           arguments.groups.empty()
                               ? distributed + "and the ledger has no group columns: each shard would keep a "
                                               "balance of its own"
                               : distributed + "which is not one of its group columns: each shard would keep a "
                                               "chain of its own for the same group")
        .with_hint(arguments.groups.empty()
                       ? "A ledger with one balance for the whole table can be a Citus reference table; or group "
                         "it by the column it is distributed by (see docs/citus.md)."
                       : "Distribute the ledger by one of its group columns, e.g. SELECT "
                         "create_distributed_table('" + placement.table_name + "', '" + arguments.groups[0] +
                             "'), then create the trigger (see docs/citus.md).");
}

bool is_integer_type(Oid type) { return type == INT2OID || type == INT4OID || type == INT8OID; }

int64 integer_type_max(Oid type) {
    return type == INT2OID ? PG_INT16_MAX : type == INT4OID ? PG_INT32_MAX : PG_INT64_MAX;
}

int64 integer_type_min(Oid type) {
    return type == INT2OID ? PG_INT16_MIN : type == INT4OID ? PG_INT32_MIN : PG_INT64_MIN;
}

// A plain decimal number: optional sign, digits, optional fraction.
bool looks_numeric(const std::string& text, bool allow_fraction) {
    size_t i = (!text.empty() && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
    bool digits = false;
    bool point = false;
    for (; i < text.size(); ++i) {
        if (std::isdigit(static_cast<unsigned char>(text[i])))
            digits = true;
        else if (text[i] == '.' && allow_fraction && !point)
            point = true;
        else
            return false;
    }
    return digits;
}

// A numeric typmod's scale. The encoding 15 introduced (an 11-bit signed
// scale) reads every earlier typmod the same way, whose scales are 0..1000.
int numeric_typmod_scale(int32 typmod) { return ((((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024); }

// A column the guard reads (the amount, a group column): a generated column
// is computed only after BEFORE triggers run, so the guard would read NULL.
ResolvedColumn resolve_read_column(const TriggerDefinition& definition, const std::string& name) {
    const ResolvedColumn column = resolve_column(definition, name);
    if (TupleDescAttr(definition.columns, column.attnum - 1)->attgenerated != '\0')
        throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                               "column " + quoted(name) + " is a generated column; PostgreSQL computes it after " +
                                   definition.guard + " has run, so the guard cannot read it")
            .with_column(name);
    return column;
}

}  // namespace

std::string type_name_with_typmod(Oid type, int32 typmod) {
    return pg_call([&] { return format_type_with_typemod(type, typmod); });
}

namespace {

// Parses initial= or min_balance= as a value of the balance column.
void parse_balance_option(const TriggerDefinition& definition, const char* key, const std::string& text,
                          RunningBalanceState& state, int64* integer, Datum* numeric_value,
                          MemoryContext into) {
    const bool integer_family = state.family == Family::integer;
    if (!looks_numeric(text, !integer_family))
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string("option ") + quoted(key) + " must be " +
                                   (integer_family ? "an integer" : "a number") + " (a value of the balance column's type " +
                                   type_name(state.balance_type) + "), not " + quoted_value(text));
    if (integer_family) {
        errno = 0;
        char* end = nullptr;
        const long long value = std::strtoll(text.c_str(), &end, 10);
        if (errno == ERANGE || value < state.balance_min || value > state.balance_max)
            throw definition_error(definition, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                                   std::string("option ") + quoted(key) + " = " + quoted_value(text) + " is out of range for type " +
                                       type_name(state.balance_type));
        *integer = value;
        return;
    }
    // Read exactly as written, then held to the balance column's typmod: a
    // value the column would round or cannot hold is refused, never changed.
    const int32 typmod = state.balance_typmod;
    struct Parsed {
        Datum exact;
        Datum stored;
    };
    Parsed parsed{};
    try {
        parsed = pg_call([&] {
            MemoryContext old = MemoryContextSwitchTo(into);
            Parsed result{};
            result.exact = DirectFunctionCall3(numeric_in, CStringGetDatum(text.c_str()), ObjectIdGetDatum(InvalidOid),
                                               Int32GetDatum(-1));
            result.stored = typmod >= 0 ? DirectFunctionCall2(numeric, result.exact, Int32GetDatum(typmod)) : result.exact;
            MemoryContextSwitchTo(old);
            return result;
        });
    } catch (const PgError& error) {
        if (error.data->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
            throw;
        throw definition_error(definition, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                               std::string("option ") + quoted(key) + " = " + quoted_value(text) +
                                   " is out of range for the balance column's type " +
                                   type_name_with_typmod(state.balance_type, typmod));
    }
    const bool rounded = pg_call([&] {
        return DatumGetInt32(DirectFunctionCall2(numeric_cmp, parsed.exact, parsed.stored)) != 0;
    });
    if (rounded)
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               std::string("option ") + quoted(key) + " = " + quoted_value(text) +
                                   " has more decimal places than the balance column's type " +
                                   type_name_with_typmod(state.balance_type, typmod) + " keeps");
    *numeric_value = parsed.stored;
}

struct PartColumns {
    Oid relid;
    char relkind;
};

std::vector<PartColumns> ledger_parts(Oid root_relid) {
    std::vector<PartColumns> parts;
    const char root_kind = pg_call([&] { return get_rel_relkind(root_relid); });
    if (root_kind != RELKIND_PARTITIONED_TABLE) {
        parts.push_back({root_relid, root_kind});
        return parts;
    }
    List* all = pg_call([&] { return find_all_inheritors(root_relid, AccessShareLock, nullptr); });
    const int count = list_length(all);
    for (int i = 0; i < count; ++i) {
        const Oid relid = list_nth_oid(all, i);
        const char kind = pg_call([&] { return get_rel_relkind(relid); });
        if (kind != RELKIND_PARTITIONED_TABLE)
            parts.push_back({relid, kind});
    }
    return parts;
}

std::string relation_name(Oid relid) {
    const char* name = pg_call([&] { return get_rel_name(relid); });
    return name != nullptr ? name : "?";
}

AttrNumber attnum_in(Oid relid, const std::string& column) {
    return pg_call([&] { return get_attnum(relid, column.c_str()); });
}

// Why an index with the right leading columns cannot serve as the chain index.
std::string index_mismatch(const IndexShape& shape, int group_count, AttrNumber seq_attnum,
                           const std::vector<GroupColumnShape>& groups, Oid seq_type) {
    if (!shape.plain_btree)
        return "it is not a plain btree index (partial, expression or another access method)";
    if (shape.key_count < group_count + 1)
        return "it has too few key columns";
    bool seen[INDEX_MAX_KEYS] = {};
    for (int k = 0; k < group_count; ++k) {
        int position = -1;
        for (int g = 0; g < group_count; ++g)
            if (groups[g].attnum == shape.key_attnums[k])
                position = g;
        if (position < 0)
            return "its key column " + std::to_string(k + 1) + " is not a group column";
        if (seen[position])
            return "it lists group column " + quoted(groups[position].name) + " more than once";
        seen[position] = true;
        if (shape.collations[k] != groups[position].collation)
            return "it compares group column " + quoted(groups[position].name) +
                   " with another collation than the column's own, so it would group other values together";
        if (shape.equality_operators[k] != groups[position].equality_operator)
            return "it compares group column " + quoted(groups[position].name) +
                   " with an operator class whose equality is not the type's default";
    }
    if (shape.key_attnums[group_count] != seq_attnum)
        return "its key column after the group columns is not the seq column";
    if (shape.opfamilies[group_count] != INTEGER_BTREE_FAM_OID || shape.input_types[group_count] != seq_type)
        return "it orders the seq column with another operator class than the integer one";
    return "";
}

// Finds, in one partition, a valid btree index whose leading key columns are
// the group columns (each once, in any order, compared as GROUP BY compares
// them: the column's collation, the type's default equality) followed by
// seq. Key options are allowed: DESC on seq only changes the direction the
// last entry is read in, and no other option changes an equality match.
LedgerPart find_part_index(const TriggerDefinition& definition, const RunningBalanceArguments& arguments,
                           const RunningBalanceState& state, Oid relid, MemoryContext into) {
    LedgerPart part{};
    part.relid = relid;
    part.balance_attnum = attnum_in(relid, arguments.balance);
    part.seq_attnum = attnum_in(relid, arguments.seq);
    const int group_count = state.group_count;
    std::vector<GroupColumnShape> groups;
    for (int g = 0; g < group_count; ++g) {
        GroupColumnShape group{};
        group.name = arguments.groups[g];
        group.attnum = attnum_in(relid, group.name);
        const AttrNumber attnum = group.attnum;
        const Oid type = state.groups[g].type;
        pg_call([&] {
            Oid column_type = InvalidOid;
            int32 column_typmod = -1;
            get_atttypetypmodcoll(relid, attnum, &column_type, &column_typmod, &group.collation);
            group.equality_operator = lookup_type_cache(type, TYPECACHE_EQ_OPR)->eq_opr;
        });
        groups.push_back(group);
    }
    part.keys = pg_call([&] {
        return static_cast<IndexKey*>(MemoryContextAllocZero(into, sizeof(IndexKey) * (group_count > 0 ? group_count : 1)));
    });

    List* indexes = pg_call([&] {
        Relation relation = table_open(relid, AccessShareLock);
        List* list = RelationGetIndexList(relation);
        table_close(relation, NoLock);
        return list;
    });
    std::string near_misses;
    const int index_count = list_length(indexes);
    for (int i = 0; i < index_count && !OidIsValid(part.index_relid); ++i) {
        const Oid index_relid = list_nth_oid(indexes, i);
        // Plain data out of the index's relcache entry; no C++ object lives
        // across these calls.
        const IndexShape shape = pg_call([&] {
            IndexShape result{};
            Relation index = index_open(index_relid, AccessShareLock);
            const Form_pg_index form = index->rd_index;
            result.plain_btree = index->rd_rel->relam == BTREE_AM_OID && form->indisvalid && form->indisready &&
                                 heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, nullptr) &&
                                 heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr);
            result.key_count = form->indnkeyatts;
            for (int k = 0; k < result.key_count && k < INDEX_MAX_KEYS; ++k) {
                result.key_attnums[k] = form->indkey.values[k];
                result.opfamilies[k] = index->rd_opfamily[k];
                result.input_types[k] = index->rd_opcintype[k];
                result.collations[k] = index->rd_indcollation[k];
                result.descending[k] = (index->rd_indoption[k] & INDOPTION_DESC) != 0;
                result.equality_operators[k] = get_opfamily_member(index->rd_opfamily[k], index->rd_opcintype[k],
                                                                   index->rd_opcintype[k], BTEqualStrategyNumber);
            }
            namestrcpy(&result.name, RelationGetRelationName(index));
            index_close(index, NoLock);
            return result;
        });
        // Only indexes that lead with the group and seq columns are candidates.
        bool leads_with_chain_columns = shape.key_count >= group_count + 1;
        for (int k = 0; leads_with_chain_columns && k <= group_count; ++k) {
            bool chain_column = shape.key_attnums[k] == part.seq_attnum;
            for (const GroupColumnShape& group : groups)
                chain_column = chain_column || group.attnum == shape.key_attnums[k];
            leads_with_chain_columns = chain_column;
        }
        if (!leads_with_chain_columns)
            continue;
        const std::string mismatch = index_mismatch(shape, group_count, part.seq_attnum, groups, state.seq_type);
        if (!mismatch.empty()) {
            near_misses += std::string(near_misses.empty() ? "" : " ") + "Index " + quoted(NameStr(shape.name)) +
                           " cannot serve: " + mismatch + ".";
            continue;
        }
        for (int k = 0; k < group_count; ++k) {
            IndexKey& key = part.keys[k];
            key.index_attno = static_cast<AttrNumber>(k + 1);
            for (int g = 0; g < group_count; ++g)
                if (groups[g].attnum == shape.key_attnums[k])
                    key.group_position = g;
            key.collation = shape.collations[k];
            const Oid equality_operator = shape.equality_operators[k];
            pg_call([&] { fmgr_info_cxt(get_opcode(equality_operator), &key.equality, into); });
        }
        const Oid seq_type = state.seq_type;
        pg_call([&] {
            const Oid at_least = get_opfamily_member(INTEGER_BTREE_FAM_OID, seq_type, seq_type,
                                                     BTGreaterEqualStrategyNumber);
            fmgr_info_cxt(get_opcode(at_least), &part.seq_at_least, into);
        });
        part.index_relid = index_relid;
        part.seq_index_attno = static_cast<AttrNumber>(group_count + 1);
        part.seq_descending = shape.descending[group_count];
    }
    if (!OidIsValid(part.index_relid)) {
        std::string columns;
        for (const std::string& group : arguments.groups)
            columns += quoted(group) + ", ";
        columns += quoted(arguments.seq);
        Error error = definition_error(definition, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                                       std::string(definition.guard) + " needs a btree index on (" + columns +
                                           ") of " + quoted(relation_name(relid)) +
                                           " to find each group's last entry");
        if (!near_misses.empty())
            error.with_detail(near_misses);
        error.with_hint("CREATE UNIQUE INDEX ON " + quoted(relation_name(relid)) + " (" + columns +
                        "); on a partitioned ledger, a plain (non-unique) index on the parent.");
        throw error;
    }
    return part;
}

// ---- routing: the parts one partition's appends read -------------------
//
// A clone on leaf L reads the group's last entry only in the leaves where the
// group's rows can be. Walking from the ledger's root down to L, a level
// whose partition key is made of group columns only, each compared as the
// group compares it (the column's own collation, the type's default operator
// class for the partition method, hence the type's default equality), sends
// every row of one group to the same child: equal groups have equal keys, and
// equal keys route alike (a hash opclass hashes equal values alike, a btree
// opclass puts them in the same list or range, the DEFAULT partition
// included). PostgreSQL enforces every partition's constraint, its
// ancestors' included, on every row: a row inserted into a leaf directly, or
// changed by a BEFORE trigger, that belongs elsewhere fails the partition
// check after the triggers, and ATTACH validates the rows it brings. So the
// group's whole chain lies below the deepest such level; the walk stops at
// the first level that fails the test (an expression, a column outside the
// group, another collation or operator class).

// One partitioned level's key, as plain data.
struct LevelKey {
    char strategy;
    int column_count;
    AttrNumber attnums[PARTITION_MAX_KEYS];  // 0: an expression
    Oid opfamilies[PARTITION_MAX_KEYS];
    Oid collations[PARTITION_MAX_KEYS];
};

LevelKey partition_key_of(Oid relid) {
    return pg_call([&] {
        LevelKey result{};
        Relation relation = relation_open(relid, AccessShareLock);
        const PartitionKey key = RelationGetPartitionKey(relation);
        result.strategy = static_cast<char>(key->strategy);
        result.column_count = key->partnatts;
        for (int k = 0; k < key->partnatts && k < PARTITION_MAX_KEYS; ++k) {
            result.attnums[k] = key->partattrs[k];
            result.opfamilies[k] = key->partopfamily[k];
            result.collations[k] = key->partcollation[k];
        }
        relation_close(relation, NoLock);
        return result;
    });
}

// Whether the partitioned table `relid` sends all rows of one group to one
// of its partitions. Columns are matched by name: a level's attnums may
// differ from the firing partition's (column order, dropped columns).
bool level_routes_groups(const RunningBalanceArguments& arguments, const RunningBalanceState& state, Oid relid) {
    const LevelKey key = partition_key_of(relid);
    const bool hash = key.strategy == PARTITION_STRATEGY_HASH;
    for (int k = 0; k < key.column_count; ++k) {
        const AttrNumber attnum = key.attnums[k];
        if (attnum == InvalidAttrNumber)
            return false;
        const std::string name = pg_call([&] { return get_attname(relid, attnum, false); });
        int g = 0;
        while (g < state.group_count && arguments.groups[g] != name)
            ++g;
        if (g == state.group_count)
            return false;
        const GroupColumn& group = state.groups[g];
        const Oid family = key.opfamilies[k];
        const Oid key_collation = key.collations[k];
        const bool same_comparison = pg_call([&] {
            Oid type = InvalidOid;
            int32 typmod = -1;
            Oid collation = InvalidOid;
            get_atttypetypmodcoll(relid, attnum, &type, &typmod, &collation);
            if (type != group.type || collation != group.collation || key_collation != collation)
                return false;
            const Oid opclass = GetDefaultOpClass(type, hash ? HASH_AM_OID : BTREE_AM_OID);
            if (!OidIsValid(opclass) || get_opclass_family(opclass) != family)
                return false;
            // The family's equality is the one the group (and its chain index) uses.
            const Oid input_type = get_opclass_input_type(opclass);
            const Oid equality = get_opfamily_member(family, input_type, input_type,
                                                     hash ? HTEqualStrategyNumber : BTEqualStrategyNumber);
            return OidIsValid(equality) && equality == lookup_type_cache(type, TYPECACHE_EQ_OPR)->eq_opr;
        });
        if (!same_comparison)
            return false;
    }
    return key.column_count > 0;
}

// The root of the subtree that holds every row of any group appended to
// `leaf`: the ledger's root if its own partition key does not route groups,
// `leaf` itself if every level on the way does.
Oid routed_subtree(const RunningBalanceArguments& arguments, const RunningBalanceState& state, Oid ledger_relid,
                   Oid leaf) {
    // get_partition_ancestors: parent first, topmost last; the ledger may
    // itself be a partition of a table the guard is not on.
    List* ancestors = pg_call([&] { return get_partition_ancestors(leaf); });
    std::vector<Oid> path;  // ledger root ... leaf
    path.push_back(leaf);
    bool reached_root = false;
    for (int i = 0; i < list_length(ancestors) && !reached_root; ++i) {
        const Oid ancestor = list_nth_oid(ancestors, i);
        path.insert(path.begin(), ancestor);
        reached_root = ancestor == ledger_relid;
    }
    if (!reached_root)
        return ledger_relid;
    Oid subtree = ledger_relid;
    for (size_t level = 0; level + 1 < path.size(); ++level) {
        if (!level_routes_groups(arguments, state, path[level]))
            break;
        subtree = path[level + 1];
    }
    return subtree;
}

// The root state's parts that lie in `subtree`, in the root state's order.
// Shallow copies: their index keys stay in the root state's memory, which
// lives at least as long as this state (other_trigger_state).
void take_routed_parts(const RunningBalanceState& root_state, Oid subtree, Oid leaf, RunningBalanceState& state,
                       MemoryContext into) {
    std::vector<int> chosen;
    bool has_leaf = false;
    if (subtree == leaf) {
        for (int p = 0; p < root_state.part_count; ++p)
            if (root_state.parts[p].relid == leaf)
                chosen.push_back(p);
    } else if (subtree != root_state.root_relid) {
        List* members = pg_call([&] { return find_all_inheritors(subtree, AccessShareLock, nullptr); });
        for (int p = 0; p < root_state.part_count; ++p) {
            const Oid relid = root_state.parts[p].relid;
            if (pg_call([&] { return list_member_oid(members, relid); }))
                chosen.push_back(p);
        }
    }
    for (const int p : chosen)
        has_leaf = has_leaf || root_state.parts[p].relid == leaf;
    if (!has_leaf) {
        // Not routed, or the leaf is not (yet) among the ledger's parts as
        // the root state saw them: read every part, as without routing.
        state.part_count = root_state.part_count;
        state.parts = root_state.parts;
        return;
    }
    const int count = static_cast<int>(chosen.size());
    state.part_count = count;
    state.parts = pg_call([&] { return static_cast<LedgerPart*>(MemoryContextAlloc(into, sizeof(LedgerPart) * count)); });
    for (int i = 0; i < count; ++i)
        state.parts[i] = root_state.parts[chosen[i]];
}

// Whether equal values of the group column are equal images, so that a
// remembered value can be compared byte for byte: by-value types, but not
// floats (-0 = 0), nor a domain over one.
bool compares_by_image(const GroupColumn& group) {
    const Oid base_type = pg_call([&] { return getBaseType(group.type); });
    return group.by_value && base_type != FLOAT4OID && base_type != FLOAT8OID;
}

// Whether a BEFORE ROW INSERT or UPDATE trigger fires after the guard on the
// firing table (names sort later): it could change a row's group or seq
// after the guard remembered them, or an entry's balance after the guard
// checked its UPDATE (check_guards() reports such a trigger).
bool later_before_write_trigger(const TriggerData* trigger_data) {
    const TriggerDesc* triggers = trigger_data->tg_relation->trigdesc;
    const char* guard_name = trigger_data->tg_trigger->tgname;
    for (int t = 0; triggers != nullptr && t < triggers->numtriggers; ++t) {
        const Trigger& other = triggers->triggers[t];
        if ((TRIGGER_TYPE_MATCHES(other.tgtype, TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_INSERT) ||
             TRIGGER_TYPE_MATCHES(other.tgtype, TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_UPDATE)) &&
            strcmp(other.tgname, guard_name) > 0)
            return true;
    }
    return false;
}

// The clones of the root trigger on the ledger's leaves: whether each is
// enabled for ordinary sessions (ENABLE or ENABLE ALWAYS; a leaf whose clone
// is disabled, or fires only in replica sessions, takes rows that no append
// sees), and a fingerprint of the leaves and their clones. A partition
// detached and attached again gets a new clone, so a shared entry written
// before (when the leaf may have taken rows unguarded) is not trusted
// after (running_balance_shared.hpp).
struct LedgerClones {
    bool every_leaf_enabled;
    uint64 layout;
};

LedgerClones ledger_clones(Oid root_trigger, Oid root_relid) {
    if (pg_call([&] { return get_rel_relkind(root_relid); }) != RELKIND_PARTITIONED_TABLE)
        return LedgerClones{true, root_trigger};
    return pg_call([&] {
        List* members = find_all_inheritors(root_relid, AccessShareLock, nullptr);
        List* clones = list_make1_oid(root_trigger);
        LedgerClones found{true, hash_bytes_uint32(root_trigger)};
        Relation triggers = table_open(TriggerRelationId, AccessShareLock);
        // Parents come before their partitions in the list.
        for (int i = 0; i < list_length(members); ++i) {
            const Oid relid = list_nth_oid(members, i);
            const bool leaf = get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE;
            bool has_clone = false;
            ScanKeyData key;
            ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
            SysScanDesc scan = systable_beginscan(triggers, TriggerRelidNameIndexId, true, nullptr, 1, &key);
            for (HeapTuple tuple = systable_getnext(scan); HeapTupleIsValid(tuple); tuple = systable_getnext(scan)) {
                const auto* form = reinterpret_cast<Form_pg_trigger>(GETSTRUCT(tuple));
                if (!list_member_oid(clones, form->tgparentid))
                    continue;
                has_clone = true;
                clones = lappend_oid(clones, form->oid);
                found.layout = hash_combine64(found.layout, (static_cast<uint64>(relid) << 32) | form->oid);
                if (leaf && form->tgenabled != TRIGGER_FIRES_ON_ORIGIN && form->tgenabled != TRIGGER_FIRES_ALWAYS)
                    found.every_leaf_enabled = false;
            }
            systable_endscan(scan);
            if (leaf && !has_clone)
                found.every_leaf_enabled = false;
        }
        table_close(triggers, AccessShareLock);
        return found;
    });
}

}  // namespace

void* build_running_balance_state(const TriggerData* trigger_data, MemoryContext into) {
    const uint64 invalidations_at_start = trigger_state_invalidations();
    const TriggerDefinition definition = describe_fired_trigger(trigger_data, RUNNING_BALANCE_GUARD);
    check_firing(definition, RUNNING_BALANCE_FIRING);
    if (!TRIGGER_FOR_INSERT(definition.trigger_type))
        throw definition_error(definition, ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                               std::string(definition.guard) + " must be fired on INSERT (and on UPDATE and DELETE, "
                                                               "to keep the ledger's history unchanged)");
    const RunningBalanceArguments arguments = parse_running_balance_arguments(definition);

    RunningBalanceState state{};
    const ResolvedColumn amount = resolve_read_column(definition, arguments.amount);
    const ResolvedColumn balance = resolve_written_column(definition, arguments.balance);
    const ResolvedColumn seq = resolve_written_column(definition, arguments.seq);
    state.amount_attnum = amount.attnum;
    state.amount_type = amount.type;
    state.balance_attnum = balance.attnum;
    state.balance_type = balance.type;
    state.balance_typmod = TupleDescAttr(definition.columns, balance.attnum - 1)->atttypmod;
    state.seq_attnum = seq.attnum;
    state.seq_type = seq.type;
    if (is_integer_type(amount.type) && is_integer_type(balance.type)) {
        state.family = Family::integer;
        state.balance_min = integer_type_min(balance.type);
        state.balance_max = integer_type_max(balance.type);
    } else if (amount.type == NUMERICOID && balance.type == NUMERICOID) {
        state.family = Family::numeric;
        const int32 amount_typmod = TupleDescAttr(definition.columns, amount.attnum - 1)->atttypmod;
        const bool amount_fits = amount_typmod >= 0 && state.balance_typmod >= 0 &&
                                 numeric_typmod_scale(amount_typmod) <= numeric_typmod_scale(state.balance_typmod);
        if (amount_typmod >= 0 && state.balance_typmod >= 0 && !amount_fits)
            throw definition_error(definition, ERRCODE_DATATYPE_MISMATCH,
                                   "amount column " + quoted(arguments.amount) + " (" +
                                       type_name_with_typmod(NUMERICOID, amount_typmod) +
                                       ") keeps more decimal places than balance column " +
                                       quoted(arguments.balance) + " (" +
                                       type_name_with_typmod(NUMERICOID, state.balance_typmod) +
                                       "), so balances would be rounded")
                .with_column(arguments.amount)
                .with_hint("Give the balance column at least the amount column's scale.");
        // An unconstrained amount may have more decimal places than the
        // balance keeps: each append checks that its balance was not rounded.
        state.amount_may_round = state.balance_typmod >= 0 && !amount_fits;
    } else {
        const bool amount_ok = is_integer_type(amount.type) || amount.type == NUMERICOID;
        const std::string& column = amount_ok ? arguments.balance : arguments.amount;
        const Oid type = amount_ok ? balance.type : amount.type;
        throw column_type_error(definition, column, type,
                                "smallint, integer, bigint or numeric, the same family for amount and balance");
    }
    if (!is_integer_type(seq.type))
        throw column_type_error(definition, arguments.seq, seq.type, "smallint, integer or bigint for seq");
    state.seq_max = integer_type_max(seq.type);
    if (amount.attnum == balance.attnum || amount.attnum == seq.attnum || balance.attnum == seq.attnum)
        throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                               "the amount, balance and seq columns must be three different columns");

    parse_balance_option(definition, "initial", arguments.initial, state, &state.initial_integer,
                         &state.initial_numeric, into);
    if (arguments.has_min_balance) {
        state.has_min_balance = true;
        parse_balance_option(definition, "min_balance", arguments.min_balance, state, &state.min_balance_integer,
                             &state.min_balance_numeric, into);
    }

    state.group_count = static_cast<int>(arguments.groups.size());
    const int group_count = state.group_count;
    state.groups = pg_call([&] {
        return static_cast<GroupColumn*>(MemoryContextAllocZero(into, sizeof(GroupColumn) * (group_count > 0 ? group_count : 1)));
    });
    for (int g = 0; g < group_count; ++g) {
        const std::string& name = arguments.groups[g];
        const ResolvedColumn column = resolve_read_column(definition, name);
        if (column.attnum == amount.attnum || column.attnum == balance.attnum || column.attnum == seq.attnum)
            throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                   "group column " + quoted(name) + " is also the amount, balance or seq column");
        for (int other = 0; other < g; ++other)
            if (state.groups[other].attnum == column.attnum)
                throw definition_error(definition, ERRCODE_INVALID_PARAMETER_VALUE,
                                       "group column " + quoted(name) + " is listed more than once");
        GroupColumn& group = state.groups[g];
        const Form_pg_attribute attribute = TupleDescAttr(definition.columns, column.attnum - 1);
        group.attnum = column.attnum;
        group.type = column.type;
        group.collation = attribute->attcollation;
        group.type_length = attribute->attlen;
        group.by_value = attribute->attbyval;
        const Oid type = column.type;
        const Oid hash_function = pg_call([&] {
            TypeCacheEntry* entry = lookup_type_cache(type, TYPECACHE_HASH_PROC);
            return entry->hash_proc;
        });
        group.hashable = OidIsValid(hash_function);
        if (group.hashable)
            pg_call([&] { fmgr_info_cxt(hash_function, &group.hash, into); });
    }

    const citus::TablePlacement placement =
        check_citus_placement(definition, arguments, RelationGetRelid(trigger_data->tg_relation));
    state.citus_installed = placement.citus_installed;
    state.citus_shard = placement.is_shard;

    const RootTrigger root = root_trigger(trigger_data);  // a partitioned ledger keeps its chains there
    if (root.trigger_oid != trigger_data->tg_trigger->tgoid) {
        // A partition's clone: the ledger's parts are the root trigger's,
        // found once for the whole ledger rather than once per partition;
        // it reads only those its partition keys route its groups to.
        const auto* root_state = static_cast<const RunningBalanceState*>(
            other_trigger_state(root.trigger_oid, build_running_balance_state));
        state.root_relid = root_state->root_relid;
        const Oid leaf = RelationGetRelid(trigger_data->tg_relation);
        const Oid subtree = routed_subtree(arguments, state, state.root_relid, leaf);
        take_routed_parts(*root_state, subtree, leaf, state, into);
        state.every_clone_enabled = root_state->every_clone_enabled;
        state.layout = root_state->layout;
    } else {
        state.root_relid = root.relid;
        const std::vector<PartColumns> parts = ledger_parts(state.root_relid);
        state.part_count = static_cast<int>(parts.size());
        const int part_count = state.part_count;
        state.parts = pg_call([&] {
            return static_cast<LedgerPart*>(
                MemoryContextAllocZero(into, sizeof(LedgerPart) * (part_count > 0 ? part_count : 1)));
        });
        for (int p = 0; p < part_count; ++p) {
            if (parts[p].relkind != RELKIND_RELATION)
                throw definition_error(definition, ERRCODE_FEATURE_NOT_SUPPORTED,
                                       "partition " + quoted(relation_name(parts[p].relid)) +
                                           " is not a plain table; a ledger's partitions must be indexable tables");
            state.parts[p] = find_part_index(definition, arguments, state, parts[p].relid, into);
        }
        const LedgerClones clones = ledger_clones(root.trigger_oid, state.root_relid);
        state.every_clone_enabled = clones.every_leaf_enabled;
        state.layout = clones.layout;
    }
    state.root_trigger_oid = root.trigger_oid;
    state.built_at_invalidation = invalidations_at_start;

    state.tracker = pg_call([&] {
        return static_cast<AppendTracker*>(MemoryContextAllocZero(into, sizeof(AppendTracker)));
    });
    state.tracker->context = into;
    state.uses_hints = state.part_count == 1;
    state.exact_cache_usable = state.family == Family::integer && state.part_count == 1 &&
                               state.parts[0].relid == RelationGetRelid(trigger_data->tg_relation) &&
                               state.group_count <= MAX_CACHED_GROUP_COLUMNS;
    bool groups_compare_by_image = true;
    for (int g = 0; g < state.group_count; ++g)
        groups_compare_by_image = groups_compare_by_image && compares_by_image(state.groups[g]);
    state.exact_cache_usable = state.exact_cache_usable && groups_compare_by_image;
    // Every append writes (or forgets) its group's entry, so that no entry
    // outlives a later append. A state that reads one part (an
    // unpartitioned ledger, or a partition that holds every entry of its
    // groups) has no leaf to look up, only confirmed entries to use.
    state.writes_shared_entries = shared_last_entries::available() &&
                                  state.group_count <= shared_last_entries::MAX_GROUP_COLUMNS &&
                                  groups_compare_by_image;
    const char firing_mode = trigger_data->tg_trigger->tgenabled;
    const bool cannot_be_skipped_unnoticed =
        state.writes_shared_entries && state.every_clone_enabled &&
        (firing_mode == TRIGGER_FIRES_ON_ORIGIN || firing_mode == TRIGGER_FIRES_ALWAYS) &&
        TRIGGER_FOR_UPDATE(definition.trigger_type) && TRIGGER_FOR_DELETE(definition.trigger_type) &&
        !later_before_write_trigger(trigger_data);
    state.reads_shared_entries = cannot_be_skipped_unnoticed && state.part_count > 1;
    // A TEMP ledger may be ON COMMIT DELETE ROWS: emptied at every commit,
    // after the transaction confirmed its entries, by no TRUNCATE anyone sees.
    state.trusts_confirmed_entries = cannot_be_skipped_unnoticed && state.family == Family::integer &&
                                     trigger_data->tg_relation->rd_rel->relpersistence != RELPERSISTENCE_TEMP;
    ensure_transaction_callbacks();
    auto* stored = pg_call([&] {
        return static_cast<RunningBalanceState*>(MemoryContextAlloc(into, sizeof(RunningBalanceState)));
    });
    *stored = state;
    return stored;
}

namespace {

GuardDescription describe_running_balance(const TriggerDefinition& definition) {
    const RunningBalanceArguments arguments = parse_running_balance_arguments(definition);
    GuardDescription description;
    description.columns = {arguments.amount, arguments.balance};
    description.columns.insert(description.columns.end(), arguments.groups.begin(), arguments.groups.end());
    description.options = {
        {"seq", json_string(arguments.seq)},
        {"min_balance", arguments.has_min_balance ? json_number(arguments.min_balance) : std::string("null")},
        {"initial", json_number(arguments.initial)},
    };
    return description;
}

}  // namespace

extern const GuardKind RUNNING_BALANCE_KIND = {"running_balance", build_running_balance_state, describe_running_balance};

}  // namespace raceguard
