// raceguard.running_balance(): a running balance per group, serialized.
//
// Design. The ledger's rows are the only state: each append reads the
// group's last row (highest seq) and writes balance = last balance + amount
// and seq = last seq + 1. Nothing is kept elsewhere, so a rolled-back append
// (transaction or savepoint), an append that ON CONFLICT skips, a crash or a
// TRUNCATE leave nothing to repair: the next append reads whatever rows exist.
//
// What is locked, in what order. Before reading, an append takes a
// transaction-level lock on (ledger root, hash of the group key): an
// advisory-type lock in PostgreSQL's lock manager, tagged so that it cannot
// meet the application's own advisory locks (field4 = RACEGUARD_LOCK_TAG).
// It is held until the transaction ends, so appends to one group run one
// transaction at a time and appends to different groups do not wait for each
// other (two groups share a lock only if their 32-bit hashes collide). A
// transaction appending to one group takes one lock and waits for nothing
// else of ours, so it cannot deadlock; transactions appending to several
// groups in different orders can, and the lock manager then raises 40P01.
//
// How the last row is found. Through a btree index whose leading columns are
// the group columns followed by seq (required; on a partitioned ledger each
// partition's index is searched and the highest seq wins), under
// SnapshotSelf: every committed row plus this transaction's own, including
// rows inserted earlier by the same statement. The scan reads the group
// from its end (backward) and stops at the first row it sees, so it fetches
// one heap row however many entries other backends appended; the last seq
// this backend wrote for the group, when it knows one, bounds the scan below,
// so the btree does not read the rest of the group's leaf page. Within a
// statement, when every append computed so far was really inserted
// (AppendTracker below), the group's last entry is known without reading it.
// The cost is at most one index descent per partition, whatever the
// ledger's size or the number of rows the transaction already appended.
//
// REPEATABLE READ / SERIALIZABLE. The transaction's snapshot may predate the
// lock. If the last row found is not this transaction's own and its creator
// is not visible to the snapshot, the append would build on a row the
// transaction cannot see: it fails with 40001 instead.
//
// Why seq is required: without an ordering column stored in the rows, the
// group's last row cannot be found without scanning the group or keeping
// state outside the ledger, and outside state is exactly what an ON CONFLICT
// skip (the BEFORE trigger runs, the row is never inserted) would corrupt.
#include "running_balance.hpp"

#include "compat.hpp"
#include "stats.hpp"
#include "trigger_cache.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/indexing.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_opfamily.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
}

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

namespace raceguard {

namespace {

constexpr FiringRules RUNNING_BALANCE_FIRING = {true, false, ON_INSERT | ON_UPDATE | ON_DELETE};

// locktag_field4 of raceguard's group locks ("RG"): user advisory locks use 1 and 2.
constexpr uint16 RACEGUARD_LOCK_TAG = 0x5247;

enum class Family { integer, numeric };

// One group column as the firing relation stores it.
struct GroupColumn {
    AttrNumber attnum;
    Oid type;
    Oid collation;
    int16 type_length;
    bool by_value;
    bool hashable;
    FmgrInfo hash;  // the type's default hash function, for the lock key
};

// One group column as a scan key of one partition's index.
struct IndexKey {
    AttrNumber index_attno;
    int group_position;  // which group column supplies the value
    Oid collation;
    FmgrInfo equality;   // the index opfamily's "="
};

// A partition (or the ledger itself) and the index that finds its last row.
struct LedgerPart {
    Oid relid;
    Oid index_relid;
    AttrNumber balance_attnum;
    AttrNumber seq_attnum;
    AttrNumber seq_index_attno;
    bool seq_descending;    // the index keeps seq in descending order
    FmgrInfo seq_at_least;  // integer ">=" on seq, for a hinted scan
    IndexKey* keys;         // group_count entries
};

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

// What this backend last wrote for a group.
//
// As a hint, seq bounds a lookup below: if nothing at or after it exists
// (rolled back, skipped, truncated, or another group sharing the slot), the
// lookup searches the whole group. As an exact answer (`exact`), it replaces
// the lookup: see AppendTracker.
constexpr int MAX_CACHED_GROUP_COLUMNS = 4;
struct SeqHint {
    uint32 group_hash;
    bool valid;
    int64 seq;
    // Exact answer: valid while `epoch` is the tracker's current epoch.
    bool exact;
    uint64 epoch;
    int64 balance;                                   // integer family only
    Datum group_values[MAX_CACHED_GROUP_COLUMNS];    // by-value group columns only
    uint64 last_used;                                // the tracker's clock
};
// The hint table starts small and grows (to at most MAX_HINT_SLOTS) when
// groups keep evicting each other, so a ledger costs memory by the groups a
// backend appends to, not a fixed megabyte. A group may sit in any of the
// HINT_WAYS slots of its bucket, the least recently used giving way, so that
// groups whose hashes share a bucket do not keep evicting each other (and
// forcing lookups) while there is room.
constexpr int FIRST_HINT_SLOTS = 64;
constexpr int MAX_HINT_SLOTS = 16384;
constexpr int HINT_WAYS = 4;
static_assert(FIRST_HINT_SLOTS % HINT_WAYS == 0, "the hint table is made of whole buckets");

// Knowing a group's last entry without reading it. Within one statement of
// a transaction holding the group's lock, the only appends to the group are this
// transaction's own, computed right here; an entry computed here is the
// group's last one if its row was really inserted. An append's row is
// inserted or not before the trigger's next call; the table's own
// transaction-level write counters (pgstat's, which heap_insert bumps) tell
// which: exactly one more insert and no other write since the previous call,
// within the same command (so nothing else ran SQL in between: no nested
// statement, no statement with the guard bypassed), means the previous
// call's row went in. Anything else (an ON CONFLICT skip,
// a later trigger that skipped the row, writes around the trigger, a
// subtransaction abort, a new transaction) starts a new epoch, which
// forgets every exact answer; lookups then read the index again.
// A table's inserts, updates and deletes counted so far in this transaction.
struct TableWrites {
    int64 inserted;
    int64 updated;
    int64 deleted;
};

struct AppendTracker {
    MemoryContext context;          // the trigger state's, for `hints`
    SeqHint* hints;                 // slot_count entries, made at the first append
    int slot_count;
    int evictions;                  // slots taken over by another group since the table was made
    uint64 clock;                   // stamps SeqHint::last_used
    uint64 transaction_generation;  // of the epoch
    uint64 epoch;
    bool expecting_insert;          // the previous call computed an append
    TableWrites writes_before;      // the table's counted writes at that call
    CommandId command;              // the command that call ran in
};

// Bumped at every transaction end and subtransaction abort.
uint64 transaction_generation = 1;

struct RunningBalanceState {
    // Columns of the firing relation.
    AttrNumber amount_attnum;
    AttrNumber balance_attnum;
    AttrNumber seq_attnum;
    Oid amount_type;
    Oid balance_type;
    Oid seq_type;
    int32 balance_typmod;
    Family family;
    int64 balance_min;  // integer family: the balance type's range
    int64 balance_max;
    int64 seq_max;
    // initial and min_balance, as int64 (integer family) or numeric.
    int64 initial_integer;
    int64 min_balance_integer;
    Datum initial_numeric;
    Datum min_balance_numeric;
    bool amount_may_round;  // numeric: the balance's typmod could round an amount
    bool has_min_balance;
    int group_count;
    GroupColumn* groups;
    Oid root_relid;  // the lock key: a partitioned ledger has one chain per group
    int part_count;
    LedgerPart* parts;
    AppendTracker* tracker;  // written by the per-row path
    bool uses_hints;          // one part: a partitioned ledger reads every partition anyway
    bool exact_cache_usable;  // plain (unpartitioned) ledger, integer family, by-value groups
};

void forget_transaction(XactEvent event, void*) {
    if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
        event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
        ++transaction_generation;
}

void forget_subtransaction(SubXactEvent event, SubTransactionId, SubTransactionId, void*) {
    if (event == SUBXACT_EVENT_ABORT_SUB)
        ++transaction_generation;
}

void ensure_transaction_callbacks() {
    static bool registered = false;
    if (registered)
        return;
    pg_call([] {
        RegisterXactCallback(forget_transaction, nullptr);
        RegisterSubXactCallback(forget_subtransaction, nullptr);
    });
    registered = true;
}

// The table's inserts, updates and deletes counted so far in this
// transaction (pgstat's per-transaction counters). Stay 0 when track_counts
// is off, which keeps every append on the lookup path.
TableWrites counted_writes(Relation relation) {
    TableWrites total{};
    const PgStat_TableStatus* info = relation->pgstat_info;
    for (const PgStat_TableXactStatus* level = info != nullptr ? info->trans : nullptr; level != nullptr;
         level = level->upper) {
        total.inserted += level->tuples_inserted;
        total.updated += level->tuples_updated;
        total.deleted += level->tuples_deleted;
    }
    return total;
}

// Exactly one insert and nothing else: the previous append went in. (An
// ON CONFLICT DO UPDATE instead of the insert counts as an update.)
bool exactly_one_insert_since(const TableWrites& before, const TableWrites& now) {
    return now.inserted == before.inserted + 1 && now.updated == before.updated && now.deleted == before.deleted;
}

// ---- definition ---------------------------------------------------------

bool is_integer_type(Oid type) { return type == INT2OID || type == INT4OID || type == INT8OID; }

int64 integer_type_max(Oid type) {
    return type == INT2OID ? PG_INT16_MAX : type == INT4OID ? PG_INT32_MAX : PG_INT64_MAX;
}

int64 integer_type_min(Oid type) {
    return type == INT2OID ? PG_INT16_MIN : type == INT4OID ? PG_INT32_MIN : PG_INT64_MIN;
}

int64 integer_from_datum(Datum value, Oid type) {
    return type == INT2OID ? DatumGetInt16(value) : type == INT4OID ? DatumGetInt32(value) : DatumGetInt64(value);
}

Datum integer_to_datum(int64 value, Oid type) {
    return type == INT2OID   ? Int16GetDatum(static_cast<int16>(value))
           : type == INT4OID ? Int32GetDatum(static_cast<int32>(value))
                             : Int64GetDatum(value);
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

std::string type_name_with_typmod(Oid type, int32 typmod) {
    return pg_call([&] { return format_type_with_typemod(type, typmod); });
}

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

// The trigger the user created (a clone's topmost parent) and its table,
// the ledger's root, where a partitioned ledger keeps its chains.
struct LedgerRoot {
    Oid trigger_oid;
    Oid relid;
};

LedgerRoot ledger_root(const TriggerData* trigger_data) {
    const Oid firing_relid = RelationGetRelid(trigger_data->tg_relation);
    const Oid fired_oid = trigger_data->tg_trigger->tgoid;
    if (!trigger_data->tg_trigger->tgisclone)
        return LedgerRoot{fired_oid, firing_relid};
    return pg_call([&] {
        LedgerRoot root{fired_oid, firing_relid};
        Oid trigger_oid = fired_oid;
        Relation triggers = table_open(TriggerRelationId, AccessShareLock);
        while (OidIsValid(trigger_oid)) {
            ScanKeyData key;
            ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(trigger_oid));
            SysScanDesc scan = systable_beginscan(triggers, TriggerOidIndexId, true, nullptr, 1, &key);
            HeapTuple tuple = systable_getnext(scan);
            if (HeapTupleIsValid(tuple)) {
                const auto* form = reinterpret_cast<Form_pg_trigger>(GETSTRUCT(tuple));
                root = LedgerRoot{trigger_oid, form->tgrelid};
                trigger_oid = form->tgparentid;
            } else {
                trigger_oid = InvalidOid;
            }
            systable_endscan(scan);
        }
        table_close(triggers, AccessShareLock);
        return root;
    });
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

void* build_running_balance_state(const TriggerData* trigger_data, MemoryContext into) {
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

    const LedgerRoot root = ledger_root(trigger_data);
    if (root.trigger_oid != trigger_data->tg_trigger->tgoid) {
        // A partition's clone: the ledger's parts are the root trigger's,
        // found once for the whole ledger rather than once per partition.
        const auto* root_state = static_cast<const RunningBalanceState*>(
            other_trigger_state(root.trigger_oid, build_running_balance_state));
        state.root_relid = root_state->root_relid;
        state.part_count = root_state->part_count;
        state.parts = root_state->parts;
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
    }

    state.tracker = pg_call([&] {
        return static_cast<AppendTracker*>(MemoryContextAllocZero(into, sizeof(AppendTracker)));
    });
    state.tracker->context = into;
    state.uses_hints = state.part_count == 1;
    state.exact_cache_usable = state.family == Family::integer && state.part_count == 1 &&
                               state.parts[0].relid == RelationGetRelid(trigger_data->tg_relation) &&
                               state.group_count <= MAX_CACHED_GROUP_COLUMNS;
    for (int g = 0; g < state.group_count; ++g) {
        const GroupColumn& group = state.groups[g];
        // Binary equality must be the type's equality: not so for floats (-0 = 0).
        if (!group.by_value || group.type == FLOAT4OID || group.type == FLOAT8OID)
            state.exact_cache_usable = false;
    }
    ensure_transaction_callbacks();
    auto* stored = pg_call([&] {
        return static_cast<RunningBalanceState*>(MemoryContextAlloc(into, sizeof(RunningBalanceState)));
    });
    *stored = state;
    return stored;
}

// ---- the hint table -----------------------------------------------------

SeqHint* hint_bucket(const AppendTracker* tracker, uint32 group_hash) {
    const int buckets = tracker->slot_count / HINT_WAYS;
    return &tracker->hints[(group_hash % static_cast<uint32>(buckets)) * HINT_WAYS];
}

// The slot holding the group's hint, or null.
SeqHint* find_hint(AppendTracker* tracker, uint32 group_hash) {
    SeqHint* bucket = hint_bucket(tracker, group_hash);
    for (int way = 0; way < HINT_WAYS; ++way)
        if (bucket[way].valid && bucket[way].group_hash == group_hash) {
            bucket[way].last_used = ++tracker->clock;
            return &bucket[way];
        }
    return nullptr;
}

// The slot to write the group's hint into: its own, a free one, or the
// bucket's least recently used (an eviction).
SeqHint* slot_for_hint(AppendTracker* tracker, uint32 group_hash) {
    SeqHint* bucket = hint_bucket(tracker, group_hash);
    SeqHint* chosen = nullptr;
    for (int way = 0; way < HINT_WAYS; ++way) {
        SeqHint* candidate = &bucket[way];
        if (candidate->valid && candidate->group_hash == group_hash) {
            chosen = candidate;
            break;
        }
        const bool better = chosen == nullptr || (chosen->valid && !candidate->valid) ||
                            (chosen->valid && candidate->valid && candidate->last_used < chosen->last_used);
        if (better)
            chosen = candidate;
    }
    if (chosen->valid && chosen->group_hash != group_hash && tracker->evictions <= tracker->slot_count)
        ++tracker->evictions;
    chosen->last_used = ++tracker->clock;
    return chosen;
}

// ---- the per-row path ---------------------------------------------------
// The functions below marked "C-side" run inside one pg_call: they use no
// object with a destructor, so a PostgreSQL error longjmps over nothing.

struct LastEntry {
    bool found;
    Datum balance;  // of the balance column's type, in the caller's memory
    int64 seq;
    TransactionId creator;
};

// C-side: records one entry if it is later than what `last` holds.
void take_if_later(const RunningBalanceState* state, const LedgerPart* part, TupleTableSlot* slot, LastEntry* last) {
    bool seq_is_null = false;
    const int64 seq = integer_from_datum(slot_getattr(slot, part->seq_attnum, &seq_is_null), state->seq_type);
    if (last->found && seq <= last->seq)
        return;
    bool balance_is_null = false;
    const Datum balance = slot_getattr(slot, part->balance_attnum, &balance_is_null);
    bool should_free = false;
    HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
    last->found = true;
    last->seq = seq;
    last->creator = HeapTupleHeaderGetXmin(tuple->t_data);
    if (balance_is_null)
        last->balance = state->family == Family::integer ? integer_to_datum(state->initial_integer, state->balance_type)
                                                          : state->initial_numeric;
    else if (state->family == Family::integer)
        last->balance = balance;  // by value
    else
        last->balance = datumCopy(balance, false, -1);
    if (should_free)
        heap_freetuple(tuple);
}

// C-side: the group's last entry in one part: the scan starts from the
// group's end (backward in the index's order, forward when it keeps seq
// descending) and takes the first visible entry, so one heap row is read
// whatever other backends appended since. A hint bounds the scan below: the
// btree then stops at it instead of reading the group's whole leaf page.
void scan_part(const RunningBalanceState* state, const LedgerPart* part, const Datum* group_values,
               const int64* hint, Snapshot snapshot, LastEntry* last) {
    Relation heap = table_open(part->relid, AccessShareLock);
    Relation index = index_open(part->index_relid, AccessShareLock);
    ScanKeyData keys[INDEX_MAX_KEYS];
    const int key_count = state->group_count + 1;
    for (int k = 0; k < state->group_count; ++k) {
        const IndexKey* key = &part->keys[k];
        ScanKeyEntryInitializeWithInfo(&keys[k], 0, key->index_attno, BTEqualStrategyNumber, InvalidOid,
                                       key->collation, const_cast<FmgrInfo*>(&key->equality),
                                       group_values[key->group_position]);
    }
    if (hint != nullptr)
        ScanKeyEntryInitializeWithInfo(&keys[state->group_count], 0, part->seq_index_attno,
                                       BTGreaterEqualStrategyNumber, InvalidOid, InvalidOid,
                                       const_cast<FmgrInfo*>(&part->seq_at_least),
                                       integer_to_datum(*hint, state->seq_type));
    else  // seq IS NOT NULL: rows written around the trigger have no place in the chain
        ScanKeyEntryInitialize(&keys[state->group_count], SK_ISNULL | SK_SEARCHNOTNULL, part->seq_index_attno,
                               InvalidStrategy, InvalidOid, InvalidOid, InvalidOid, static_cast<Datum>(0));
    IndexScanDesc scan = compat::index_beginscan(heap, index, snapshot, key_count);
    index_rescan(scan, keys, key_count, nullptr, 0);
    TupleTableSlot* slot = table_slot_create(heap, nullptr);
    if (index_getnext_slot(scan, part->seq_descending ? ForwardScanDirection : BackwardScanDirection, slot))
        take_if_later(state, part, slot, last);
    ExecDropSingleTupleTableSlot(slot);
    index_endscan(scan);
    index_close(index, NoLock);
    table_close(heap, NoLock);
}

// C-side: the group's last entry over every part of the ledger. Any entry at
// or after the hint means the last one is among those (seq only grows).
LastEntry find_last_entry(const RunningBalanceState* state, const Datum* group_values, const int64* hint) {
    LastEntry last{};
    if (hint != nullptr) {
        for (int p = 0; p < state->part_count; ++p)
            scan_part(state, &state->parts[p], group_values, hint, SnapshotSelf, &last);
        if (last.found)
            return last;
    }
    for (int p = 0; p < state->part_count; ++p)
        scan_part(state, &state->parts[p], group_values, nullptr, SnapshotSelf, &last);
    return last;
}

// C-side: whether the transaction's snapshot sees some version of the
// group's entry `seq`. The newest version's creator may be a later UPDATE of
// a column outside the ledger (a memo); what matters is the append itself,
// and every version of an entry has the same amount, balance and seq.
bool entry_visible_to_snapshot(const RunningBalanceState* state, const Datum* group_values, int64 seq) {
    LastEntry visible{};
    for (int p = 0; p < state->part_count; ++p)
        scan_part(state, &state->parts[p], group_values, &seq, GetActiveSnapshot(), &visible);
    return visible.found && visible.seq == seq;
}

// C-side: the group key's hash (the lock key).
uint32 group_hash_of(const RunningBalanceState* state, const Datum* group_values) {
    uint32 hash = 0;
    for (int g = 0; g < state->group_count; ++g) {
        const GroupColumn* group = &state->groups[g];
        // A type without a hash function shares one lock slot per ledger:
        // still correct, only coarser.
        const uint32 column_hash =
            group->hashable ? DatumGetUInt32(FunctionCall1Coll(const_cast<FmgrInfo*>(&group->hash), group->collation,
                                                               group_values[g]))
                            : 0;
        hash = hash_combine(hash, column_hash);
    }
    return hash;
}

// C-side: the lock that serializes the group's appends until transaction
// end. Tried without waiting first, so that a wait is seen and counted (the
// count before the wait, which may end in an error; its time after).
uint32 lock_group(const RunningBalanceState* state, const Datum* group_values, stats::Counters* counters) {
    const uint32 hash = group_hash_of(state, group_values);
    LOCKTAG tag;
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, state->root_relid, hash, RACEGUARD_LOCK_TAG);
    if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
        return hash;
    ++counters->n[stats::RB_WAITED];
    const TimestampTz started = GetCurrentTimestamp();
    (void)LockAcquire(&tag, ExclusiveLock, false, false);
    const int64 waited = GetCurrentTimestamp() - started;  // microseconds
    counters->n[stats::RB_WAIT_US] += waited;
    if (waited > counters->wait_max_us)
        counters->wait_max_us = waited;
    return hash;
}

bool created_by_this_transaction(TransactionId creator) { return TransactionIdIsCurrentTransactionId(creator); }

// ---- errors -------------------------------------------------------------

std::string column_of(const TriggerData* trigger_data, AttrNumber attnum) {
    return NameStr(TupleDescAttr(RelationGetDescr(trigger_data->tg_relation), attnum - 1)->attname);
}

std::string table_of(const TriggerData* trigger_data) { return RelationGetRelationName(trigger_data->tg_relation); }

Error guard_violation(const TriggerData* trigger_data, int sqlstate, std::string message, AttrNumber column) {
    Error error = table_error(trigger_data->tg_relation, sqlstate, std::move(message));
    error.with_constraint(trigger_data->tg_trigger->tgname);
    if (column != InvalidAttrNumber)
        error.with_column(column_of(trigger_data, column));
    return error;
}

// The group key as a row literal, "(42,EUR)", when the user may see it.
std::string group_key_text(const TriggerData* trigger_data, const RunningBalanceState* state,
                           const Datum* group_values) {
    std::string text = "(";
    for (int g = 0; g < state->group_count; ++g) {
        if (!may_select_column(trigger_data->tg_relation, state->groups[g].attnum))
            return "";
        text += (g > 0 ? "," : "") + value_text(group_values[g], state->groups[g].type);
    }
    return text + ")";
}

[[noreturn]] void throw_null(const TriggerData* trigger_data, AttrNumber attnum, const char* role) {
    throw guard_violation(trigger_data, ERRCODE_NOT_NULL_VIOLATION,
                          "null value in column " + quoted(column_of(trigger_data, attnum)) + " of table " +
                              quoted(table_of(trigger_data)) + ": a running balance needs " + role,
                          attnum);
}

[[noreturn]] void throw_out_of_range(const TriggerData* trigger_data, AttrNumber attnum, Oid type) {
    throw guard_violation(trigger_data, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                          "column " + quoted(column_of(trigger_data, attnum)) + " of table " +
                              quoted(table_of(trigger_data)) + " would go out of range for type " + type_name(type),
                          attnum);
}

// 23514 for an amount the ledger cannot add exactly; its value in DETAIL
// only for a user who may read the column.
[[noreturn]] void throw_amount_refused(const TriggerData* trigger_data, const RunningBalanceState* state,
                                       Datum amount, const std::string& why) {
    Error error = guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                                  "the amount of an append to table " + quoted(table_of(trigger_data)) + " " + why,
                                  state->amount_attnum);
    if (may_select_column(trigger_data->tg_relation, state->amount_attnum))
        error.with_detail("The amount is " + value_text(amount, state->amount_type) + ".");
    throw error;
}

std::string balance_text(const RunningBalanceState* state, Datum value) { return value_text(value, state->balance_type); }

// ---- arithmetic ---------------------------------------------------------

struct NewBalance {
    Datum value;
    bool overflow;
    bool below_minimum;
    bool previous_not_finite;  // numeric: the group's last balance is NaN or infinite
    bool rounded;              // numeric: the balance's typmod would round the sum
};

NewBalance add_amount(const RunningBalanceState* state, Datum previous, Datum amount) {
    NewBalance result{};
    if (state->family == Family::integer) {
        const int64 before = integer_from_datum(previous, state->balance_type);
        const int64 added = integer_from_datum(amount, state->amount_type);
        int64 after = 0;
        if (pg_add_s64_overflow(before, added, &after) || after < state->balance_min || after > state->balance_max) {
            result.overflow = true;
            return result;
        }
        result.value = integer_to_datum(after, state->balance_type);
        result.below_minimum = state->has_min_balance && added < 0 && after < state->min_balance_integer;
        return result;
    }
    // The amount is finite (on_insert checked). numeric_add and the typmod
    // coercion raise 22003 on overflow; it is reported naming the column.
    const int32 typmod = state->balance_typmod;
    const bool check_rounding = state->amount_may_round;
    const bool has_minimum = state->has_min_balance;
    const Datum minimum = state->min_balance_numeric;
    try {
        result = pg_call([&] {
            NewBalance sum{};
            const Datum exact = DirectFunctionCall2(numeric_add, previous, amount);
            if (compat::numeric_is_special(DatumGetNumeric(exact))) {
                sum.previous_not_finite = true;
                return sum;
            }
            sum.value = typmod >= 0 ? DirectFunctionCall2(numeric, exact, Int32GetDatum(typmod)) : exact;
            sum.rounded = check_rounding && DatumGetInt32(DirectFunctionCall2(numeric_cmp, sum.value, exact)) != 0;
            sum.below_minimum =
                has_minimum &&
                DatumGetInt32(DirectFunctionCall2(numeric_cmp, amount, DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))) < 0 &&
                DatumGetInt32(DirectFunctionCall2(numeric_cmp, sum.value, minimum)) < 0;
            return sum;
        });
    } catch (const PgError& error) {
        if (error.data->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
            throw;
        result = NewBalance{};
        result.overflow = true;
    }
    return result;
}

// ---- events -------------------------------------------------------------

Datum on_insert(const TriggerData* trigger_data, const RunningBalanceState* state, stats::Counters* counters) {
    HeapTuple row = trigger_data->tg_trigtuple;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);

    bool is_null = false;
    const Datum amount = heap_getattr(row, state->amount_attnum, columns, &is_null);
    if (is_null)
        throw_null(trigger_data, state->amount_attnum, "an amount");
    if (state->family == Family::numeric &&
        pg_call([&] { return compat::numeric_is_special(DatumGetNumeric(amount)); }))
        throw_amount_refused(trigger_data, state, amount, "is not a finite number: a running balance adds only finite amounts");
    Datum group_values[INDEX_MAX_KEYS];
    for (int g = 0; g < state->group_count; ++g) {
        group_values[g] = heap_getattr(row, state->groups[g].attnum, columns, &is_null);
        if (is_null)
            throw_null(trigger_data, state->groups[g].attnum, "a group for every entry");
    }

    // Was the previous append's row inserted? Then every exact answer of
    // this epoch still holds; otherwise start a new epoch.
    AppendTracker* tracker = state->tracker;
    if (state->uses_hints &&
        (tracker->hints == nullptr || (tracker->evictions > tracker->slot_count && tracker->slot_count < MAX_HINT_SLOTS))) {
        // First append, or too many groups for the table: (re)make it. The
        // hints and exact answers it held are forgotten (a new epoch).
        const int slots = tracker->hints == nullptr ? FIRST_HINT_SLOTS : tracker->slot_count * 4;
        SeqHint* const previous = tracker->hints;
        tracker->hints = pg_call([&] {
            if (previous != nullptr)
                pfree(previous);
            return static_cast<SeqHint*>(MemoryContextAllocZero(tracker->context, sizeof(SeqHint) * slots));
        });
        tracker->slot_count = slots;
        tracker->evictions = 0;
        ++tracker->epoch;
    }
    SeqHint* const hints = tracker->hints;
    const TableWrites writes_now = counted_writes(trigger_data->tg_relation);
    const CommandId command_now = GetCurrentCommandId(false);
    const bool previous_inserted = tracker->transaction_generation == transaction_generation &&
                                   tracker->expecting_insert && tracker->command == command_now &&
                                   exactly_one_insert_since(tracker->writes_before, writes_now);
    if (!previous_inserted) {
        tracker->transaction_generation = transaction_generation;
        ++tracker->epoch;
    }

    uint32 group_hash = 0;
    LastEntry last{};
    bool known = false;
    if (state->exact_cache_usable) {
        group_hash = pg_call([&] { return group_hash_of(state, group_values); });
        const SeqHint* slot = find_hint(tracker, group_hash);
        known = slot != nullptr && slot->exact && slot->epoch == tracker->epoch;
        for (int g = 0; known && g < state->group_count; ++g)
            known = slot->group_values[g] == group_values[g];
        if (known) {
            // This transaction holds the group's lock since it wrote the
            // entry (a subtransaction abort would have ended the epoch).
            last.found = true;
            last.seq = slot->seq;
            last.balance = integer_to_datum(slot->balance, state->balance_type);
            last.creator = GetCurrentTransactionIdIfAny();
        }
    }
    if (!known)
        last = pg_call([&] {
            group_hash = lock_group(state, group_values, counters);
            const SeqHint* hint = hints != nullptr ? find_hint(tracker, group_hash) : nullptr;
            return find_last_entry(state, group_values, hint != nullptr ? &hint->seq : nullptr);
        });
    tracker->expecting_insert = false;  // until this append is computed
    if (last.found && IsolationUsesXactSnapshot() && !created_by_this_transaction(last.creator)) {
        const TransactionId creator = last.creator;
        const int64 last_seq = last.seq;
        const bool invisible = pg_call([&] {
            return XidInMVCCSnapshot(creator, GetActiveSnapshot()) &&
                   !entry_visible_to_snapshot(state, group_values, last_seq);
        });
        if (invisible) {
            Error error = table_error(trigger_data->tg_relation, ERRCODE_T_R_SERIALIZATION_FAILURE,
                                      "could not serialize an append to table " + quoted(table_of(trigger_data)) +
                                          ": the group's last entry was committed after this transaction's snapshot");
            const std::string key = group_key_text(trigger_data, state, group_values);
            if (!key.empty() && may_select_column(trigger_data->tg_relation, state->seq_attnum))
                error.with_detail("Group " + key + " is at seq " + std::to_string(last.seq) +
                                  ", which this transaction cannot see.");
            error.with_hint("Retry the transaction.");
            ++counters->n[stats::RB_SERIALIZATION];  // counted before the error, which aborts
            throw error;
        }
    }

    const Datum previous = last.found ? last.balance
                           : state->family == Family::integer
                               ? integer_to_datum(state->initial_integer, state->balance_type)
                               : state->initial_numeric;
    const NewBalance balance = add_amount(state, previous, amount);
    if (balance.overflow)
        throw_out_of_range(trigger_data, state->balance_attnum, state->balance_type);
    if (balance.previous_not_finite)
        throw guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                              "the group's last balance in table " + quoted(table_of(trigger_data)) +
                                  " is not a finite number, so no balance can follow it",
                              state->balance_attnum)
            .with_hint("Rows were written with the guard bypassed; repair the chain (raceguard.verify_running_balance()).");
    if (balance.rounded)
        throw_amount_refused(trigger_data, state, amount,
                             "has more decimal places than balance column " +
                                 quoted(column_of(trigger_data, state->balance_attnum)) + " (" +
                                 type_name_with_typmod(NUMERICOID, state->balance_typmod) +
                                 ") keeps: the balance would be rounded");
    if (balance.below_minimum) {
        Error error = guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                                      "append to table " + quoted(table_of(trigger_data)) +
                                          " would take the balance below min_balance",
                                      state->balance_attnum);
        const std::string key = group_key_text(trigger_data, state, group_values);
        if (!key.empty() && may_select_column(trigger_data->tg_relation, state->balance_attnum) &&
            may_select_column(trigger_data->tg_relation, state->amount_attnum))
            error.with_detail("Group " + key + ": balance " + balance_text(state, previous) + " + amount " +
                              value_text(amount, state->amount_type) + " = " + balance_text(state, balance.value) +
                              ", below the minimum " +
                              (state->family == Family::integer ? std::to_string(state->min_balance_integer)
                                                                : balance_text(state, state->min_balance_numeric)) +
                              ".");
        ++counters->n[stats::RB_MIN_BALANCE];
        throw error;
    }
    const int64 seq = last.found ? last.seq + 1 : 1;
    if (seq > state->seq_max)
        throw_out_of_range(trigger_data, state->seq_attnum, state->seq_type);

    if (hints != nullptr) {
        SeqHint& slot = *slot_for_hint(tracker, group_hash);
        slot.group_hash = group_hash;
        slot.valid = true;
        slot.seq = seq;
        slot.exact = state->exact_cache_usable;
        if (slot.exact) {
            slot.epoch = tracker->epoch;
            slot.balance = integer_from_datum(balance.value, state->balance_type);
            for (int g = 0; g < state->group_count; ++g)
                slot.group_values[g] = group_values[g];
        }
    }
    tracker->expecting_insert = true;
    tracker->writes_before = writes_now;
    tracker->command = command_now;

    int replaced[2] = {state->balance_attnum, state->seq_attnum};
    Datum values[2] = {balance.value, integer_to_datum(seq, state->seq_type)};
    bool nulls[2] = {false, false};
    HeapTuple appended = pg_call([&] { return heap_modify_tuple_by_cols(row, columns, 2, replaced, values, nulls); });
    ++counters->n[stats::RB_APPENDS];
    return PointerGetDatum(appended);
}

bool same_image(HeapTuple old_row, HeapTuple new_row, TupleDesc columns, AttrNumber attnum) {
    bool old_null = false;
    bool new_null = false;
    const Datum old_value = heap_getattr(old_row, attnum, columns, &old_null);
    const Datum new_value = heap_getattr(new_row, attnum, columns, &new_null);
    if (old_null || new_null)
        return old_null == new_null;
    const Form_pg_attribute attribute = TupleDescAttr(columns, attnum - 1);
    return pg_call([&] { return datum_image_eq(old_value, new_value, attribute->attbyval, attribute->attlen); });
}

Datum on_update(const TriggerData* trigger_data, const RunningBalanceState* state, stats::Counters* counters) {
    state->tracker->expecting_insert = false;
    TupleDesc columns = RelationGetDescr(trigger_data->tg_relation);
    AttrNumber ledger_columns[INDEX_MAX_KEYS + 3];
    int count = 0;
    ledger_columns[count++] = state->amount_attnum;
    ledger_columns[count++] = state->balance_attnum;
    ledger_columns[count++] = state->seq_attnum;
    for (int g = 0; g < state->group_count; ++g)
        ledger_columns[count++] = state->groups[g].attnum;
    for (int i = 0; i < count; ++i)
        if (!same_image(trigger_data->tg_trigtuple, trigger_data->tg_newtuple, columns, ledger_columns[i])) {
            ++counters->n[stats::RB_UPDATES];
            throw guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                                  "cannot change column " + quoted(column_of(trigger_data, ledger_columns[i])) +
                                      " of ledger table " + quoted(table_of(trigger_data)) +
                                      ": its entries are history",
                                  ledger_columns[i])
                .with_hint("Append a correcting entry instead.");
        }
    return PointerGetDatum(trigger_data->tg_newtuple);
}

}  // namespace

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

namespace {

// A restore loads entries that already carry their seq and balance: keep
// them. pg_dump's scripts and pg_restore run with check_function_bodies off
// (the setting PostgreSQL's own validators read as "restoring"), and
// pg_restore -j may create the ledger's trigger on a partitioned parent
// before every partition's data, or its chain index, is in, so its clones
// fire on that data. Only the table's owner (who could disable the trigger
// anyway) restores this way; anyone else's appends are computed as always.
// Checked before the trigger's state is built, since the chain index may
// not be restored yet: the columns come from the arguments, at a cost paid
// only while check_function_bodies is off.
bool restoring_entry(const TriggerData* trigger_data) {
    if (likely(check_function_bodies) || !TRIGGER_FIRED_BY_INSERT(trigger_data->tg_event))
        return false;
    const TriggerDefinition definition = describe_fired_trigger(trigger_data, RUNNING_BALANCE_GUARD);
    RunningBalanceArguments arguments;
    try {
        arguments = parse_running_balance_arguments(definition);
    } catch (const Error&) {
        return false;  // the normal path reports the definition's error
    }
    TupleDesc columns = definition.columns;
    HeapTuple row = trigger_data->tg_trigtuple;
    int carried = 0;
    for (int i = 0; i < columns->natts; ++i) {
        const Form_pg_attribute column = TupleDescAttr(columns, i);
        if (column->attisdropped || (arguments.balance != NameStr(column->attname) && arguments.seq != NameStr(column->attname)))
            continue;
        bool is_null = false;
        heap_getattr(row, column->attnum, columns, &is_null);
        carried += is_null ? 0 : 1;
    }
    if (carried != 2)
        return false;
    const Oid relid = RelationGetRelid(trigger_data->tg_relation);
    return pg_call([&] { return compat::owns_relation(relid, GetUserId()); });
}

}  // namespace

Datum running_balance_trigger(FunctionCallInfo fcinfo) {
    const TriggerData* trigger_data = require_trigger_call(fcinfo, RUNNING_BALANCE_GUARD);
    if (unlikely(restoring_entry(trigger_data))) {
        // What this backend knew of the group's last entry may no longer
        // hold: the next append reads it again.
        const auto* entry = static_cast<const TriggerCacheEntry*>(fcinfo->flinfo->fn_extra);
        if (entry != nullptr && entry->valid && entry->builder == build_running_balance_state &&
            entry->trigger_oid == trigger_data->tg_trigger->tgoid)
            static_cast<const RunningBalanceState*>(entry->state)->tracker->expecting_insert = false;
        return PointerGetDatum(trigger_data->tg_trigtuple);
    }
    const auto* state = trigger_state<RunningBalanceState>(fcinfo, trigger_data, build_running_balance_state);
    stats::Counters* counters = stats::trigger_counters(fcinfo, stats::Guard::running_balance);
    if (TRIGGER_FIRED_BY_INSERT(trigger_data->tg_event))
        return on_insert(trigger_data, state, counters);
    if (TRIGGER_FIRED_BY_UPDATE(trigger_data->tg_event))
        return on_update(trigger_data, state, counters);
    ++counters->n[stats::RB_DELETES];
    throw guard_violation(trigger_data, ERRCODE_CHECK_VIOLATION,
                          "cannot delete from ledger table " + quoted(table_of(trigger_data)) +
                              ": its entries are history",
                          InvalidAttrNumber)
        .with_hint("Append a correcting entry instead.");
}

extern const GuardKind RUNNING_BALANCE_KIND = {"running_balance", build_running_balance_state, describe_running_balance};

}  // namespace raceguard
