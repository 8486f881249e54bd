"""Model-based randomized test of raceguard.running_balance().

Each shape is a random ledger (amount/balance/seq types, zero to three
group columns of several types and collations, random chain indexes with
DESC, NULLS FIRST, other collations, duplicated keys, INCLUDE, partial or
expression indexes, generated columns, partitioning by a column outside
the group (an integer pk by range, list or hash, or a time-like created_at
date by range, a partition per month or per day, whose appends usually
carry the newest day but sometimes an older one or one from the future) or
by group columns (hash, list, range, one or two levels: the guard then
reads only the leaves the keys route a group to), odd initial= and
min_balance= values). CREATE TRIGGER may refuse a shape with a clear
definition error; a shape it accepts gets random workloads, checked against
a model of the chain that is computed here, independently of the guard:

- one session: every statement's outcome (ok, or its SQLSTATE) and every
  stored balance and seq are predicted exactly;
- two deterministic REPEATABLE READ probes: an append after another
  transaction updated a memo of the group's last entry must succeed; one
  after another transaction appended to the group must fail with 40001;
- several sessions at READ COMMITTED and REPEATABLE READ, retrying on
  40001/40P01: every committed append present exactly once, nothing else;
- events between appends: two sessions append in turn while a third
  detaches, re-attaches, drops and creates partitions (PARTITION OF, or
  CREATE TABLE with rows already in it, some with seqs past the chain's,
  then ATTACH), truncates one partition or the whole ledger, runs VACUUM
  FULL and CLUSTER; and writes bypass the guard: the owner's DISABLE
  TRIGGER, a superuser's session_replication_role = replica, ENABLE
  REPLICA TRIGGER (the guard then fires only in replica sessions) and
  ENABLE ALWAYS TRIGGER (in every session), with rows of any seq (past the
  chain's, lower, NULL, the type's last) and balance (NULL, near the type's
  limit) into the leaf holding the group's last entry, another leaf or the
  parent; and a transaction stays open (a savepoint rolled back sometimes)
  while the superuser's replica-role writes and another session's appends
  go in, then commits, rolls back, or (with max_prepared_transactions)
  prepares and is committed or rolled back by another session. Every
  append is predicted by the rule the guard must follow
  whatever happened: the group's previous entry is its committed (or own)
  row with the highest non-NULL seq among the partitions attached now (a
  NULL balance there counting as initial), the append gets its seq + 1 and
  balance + amount (seq 1 and initial + amount when there is none); a tie
  on the highest seq allows each tied row's balance. What PostgreSQL alone
  decides (whether DDL succeeds, the leaf a row is routed to) is read from
  the server, not predicted.

After each workload the ledger is checked in SQL (groups by the columns'
own equality, as GROUP BY does): seq is 1..n in every group and balance =
previous balance (or initial) + amount exactly; verify_running_balance()
must agree. After the events workload, whose bypassed writes and events
may leave chains that are not clean, every stored row must be the model's
(seq, balance, leaf) and verify_running_balance() must report exactly the
problems the model's rows have (only whether there are any when the order
of a group's rows is not fixed: equal seqs, several NULL seqs); a ledger
the model holds clean must pass the chain check too. A failing
single-session workload is reduced before printing.

The predictions follow the server's major (server_version_num), since what
an input function accepts changes between majors: numeric has Infinity only
from 14 on. check_input_model() compares those rules with the server under
test before the first shape.
"""
import os
import copy
import sys
import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal, Context, InvalidOperation, ROUND_HALF_UP, localcontext

import harness
from harness import Session, Crash, DEFINITION_SQLSTATES, RETRYABLE

TEST = None
HAVE_CI = False
# The server's server_version_num (main() reads it): what its input
# functions accept depends on the major (see literal_error).
SERVER_VERSION_NUM = None

INT_RANGE = {"smallint": (-2**15, 2**15 - 1), "integer": (-2**31, 2**31 - 1), "bigint": (-2**63, 2**63 - 1)}
WIDE = Context(prec=2000)

TABLE = "ledger"
TRIGGER = "ledger_rb"


def fam(type_name):
    return "integer" if type_name in INT_RANGE else "numeric" if type_name.startswith("numeric") else "other"


def typmod(type_name):
    """(precision, scale) of numeric(p,s), or None."""
    if "(" not in type_name:
        return None
    inner = type_name[type_name.index("(") + 1:-1].split(",")
    return int(inner[0]), int(inner[1]) if len(inner) > 1 else 0


# ---- values -------------------------------------------------------------

def numeric_fit(value, type_name):
    """The value stored into a column of this numeric type: ('ok', v),
    ('overflow', None) or ('special', v) for NaN/Infinity."""
    if not value.is_finite():
        if value.is_nan():
            return "special", value
        return ("overflow", None) if typmod(type_name) else ("special", value)
    mod = typmod(type_name)
    if mod is None:
        return "ok", value
    precision, scale = mod
    with localcontext(WIDE):
        rounded = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        if rounded != 0 and rounded.adjusted() >= precision - scale:
            return "overflow", None
    return "ok", rounded


INFINITY_SPELLINGS = {"infinity", "+infinity", "-infinity", "inf", "+inf", "-inf"}


def literal_error(text, sql_type):
    """The SQLSTATE with which the server under test refuses the literal
    '<text>'::<sql_type> in its input function, or None. numeric has
    Infinity and -Infinity from PostgreSQL 14 on; before, numeric_in refuses
    them (22P02, invalid text representation). NaN it has always had, and
    float8 all three. (A typmod's limits are applied later, when the value
    is assigned to its column: numeric_fit.)"""
    if text is None:
        return None
    if sql_type.startswith("numeric") and text.strip().lower() in INFINITY_SPELLINGS and SERVER_VERSION_NUM < 140000:
        return "22P02"
    return None


def check_input_model(session):
    """The model's literal_error against this server, for every special
    spelling the generator writes (amounts as numeric, group values as
    numeric or float8): a major whose input rules the model does not know
    fails here, before any shape, instead of as a wrong prediction."""
    samples = [("numeric", t) for t in ("NaN", "Infinity", "-Infinity", "-0")] + \
              [("float8", t) for t in ("NaN", "nan", "Infinity", "inf", "-0")]
    wrong = []
    for sql_type, text in samples:
        outcome = session.run("SELECT %s::" + sql_type, (text,), log=False)
        actual = None if outcome.ok else outcome.sqlstate
        if actual != literal_error(text, sql_type):
            wrong.append("'%s'::%s: the model expects %s, the server (server_version_num %d) gives %s" % (
                text, sql_type, literal_error(text, sql_type) or "ok", SERVER_VERSION_NUM, actual or "ok"))
    return wrong


def stored_value(text, type_name):
    """What the column stores for this input: ('ok', value) or ('error', sqlstate).
    Every amount is written as '<text>'::numeric (COPY reads it with the
    column's own input function, which refuses the same spellings)."""
    if text is None:
        return "ok", None
    error = literal_error(text, "numeric")
    if error:
        return "error", error
    if fam(type_name) == "integer":
        lo, hi = INT_RANGE[type_name]
        value = int(text)
        return ("ok", value) if lo <= value <= hi else ("error", "22003")
    status, value = numeric_fit(Decimal(text), type_name)
    if status == "overflow":
        return "error", "22003"
    return "ok", value


def option_value(text, balance_type):
    """An initial=/min_balance= value: the Decimal/int if it is exactly a
    value of the balance type, else None (it must be refused)."""
    import re
    if fam(balance_type) == "integer":
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            return None
        value = int(text)
        lo, hi = INT_RANGE[balance_type]
        return value if lo <= value <= hi else None
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", text):
        return None
    value = Decimal(text)
    status, fitted = numeric_fit(value, balance_type)
    if status != "ok" or fitted != value:
        return None
    return value


def amount_text(rng, shape):
    """A random amount (as SQL text) fitting the amount column, mostly small."""
    t = shape["amount_type"]
    roll = rng.random()
    if fam(t) == "integer":
        lo, hi = INT_RANGE[t]
        if roll < 0.06:
            return str(rng.choice([lo, hi, lo + 1, hi - 1, 0]))
        if roll < 0.08:
            return "-0"
        return str(rng.randint(-60, 100))
    mod = typmod(t)
    scale = mod[1] if mod else rng.choice([0, 2, 4, 7])
    if roll < 0.04 and mod is None:
        return rng.choice(["NaN", "Infinity", "-Infinity"])
    if roll < 0.07:
        if mod:
            digits = mod[0] - mod[1]
            return ("-" if rng.random() < 0.5 else "") + "9" * max(digits, 0) + ("." + "9" * scale if scale else "")
        return ("-" if rng.random() < 0.5 else "") + "9" * rng.choice([20, 40, 130]) + ".5"
    if roll < 0.09:
        return "-0"
    whole = rng.randint(-60, 100)
    if scale == 0:
        return str(whole)
    frac = rng.randint(0, 10**scale - 1)
    sign = "-" if whole < 0 else ""
    return "%s%d.%0*d" % (sign, abs(whole), scale, frac)


# Group column types: (SQL type, collation or None, spellings(rng, key) -> text, canonical(text) -> key).
def group_spellings():
    def ints(rng, k):
        return rng.choice([str(k), "0" + str(k) if k >= 0 else str(k), " %d " % k])

    def texts(rng, k):
        return "k%d" % k

    def texts_ci(rng, k):
        base = "Key%d" % k
        return rng.choice([base, base.lower(), base.upper()])

    def numerics(rng, k):
        if k == 5:
            return "NaN"
        return rng.choice([str(k), "%d.0" % k, "%d.00" % k, "%de0" % k])

    def uuids(rng, k):
        u = uuid.UUID(int=k * 7919 + 1)
        return rng.choice([str(u), str(u).upper(), "{%s}" % u, u.hex])

    def bools(rng, k):
        return rng.choice({0: ["false", "f", "no", "0"], 1: ["true", "t", "yes", "1"]}[k % 2])

    def dates(rng, k):
        d = date(2024, 1, 1) + timedelta(days=k)
        return rng.choice([d.isoformat(), d.strftime("%Y%m%d")])

    def floats(rng, k):
        if k == 0:
            return rng.choice(["0", "-0", "0.0", "-0.0"])
        if k == 1:
            return rng.choice(["NaN", "nan"])
        if k == 2:
            return rng.choice(["Infinity", "inf"])
        return rng.choice([str(k), "%de0" % k, "%d.0" % k])

    return {
        "integer": ("integer", None, ints, 8),
        "bigint": ("bigint", None, ints, 8),
        "text_c": ("text", '"C"', texts, 6),
        "text_ci": ("text", "public.ci", texts_ci, 5),
        "numeric": ("numeric", None, numerics, 6),
        "uuid": ("uuid", None, uuids, 6),
        "boolean": ("boolean", None, bools, 2),
        "date": ("date", None, dates, 6),
        "float8": ("float8", None, floats, 5),
    }


GROUP_KINDS = group_spellings()
SIMPLE_GROUP_KINDS = {"integer", "bigint", "text_c", "numeric", "uuid", "boolean", "date"}


# ---- shapes -------------------------------------------------------------

def make_shape(rng, index):
    s = {"index": index, "schema": "rb_%d_%d" % (os.getpid(), index)}
    int_types = list(INT_RANGE)
    num_types = ["numeric", "numeric(12,2)", "numeric(20,4)", "numeric(6,2)", "numeric(30,0)", "numeric(38,10)"]
    roll = rng.random()
    if roll < 0.45:
        s["amount_type"], s["balance_type"] = rng.choice(int_types), rng.choice(int_types)
    elif roll < 0.93:
        s["amount_type"], s["balance_type"] = rng.choice(num_types), rng.choice(num_types)
    else:
        s["amount_type"], s["balance_type"] = rng.choice([("integer", "numeric"), ("numeric", "bigint"),
                                                          ("real", "real"), ("money", "money")])
    s["seq_type"] = rng.choice(int_types) if rng.random() < 0.95 else rng.choice(["numeric", "text"])
    kinds = [k for k in GROUP_KINDS if HAVE_CI or k != "text_ci"]
    s["groups"] = [rng.choice(kinds) for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3]))]
    s["partitioned"] = rng.random() < 0.4
    if s["partitioned"]:
        # By a column outside the group: an integer pk (range, list or hash)
        # or a time-like created_at, by month or by day (range).
        s["partition_kind"] = rng.choice(["range", "list", "hash", "time"])
        s["partitions"] = rng.randint(1, 5)
        s["default_partition"] = s["partition_kind"] != "hash" and rng.random() < 0.4
        if s["partition_kind"] == "time":
            s["time_unit"] = rng.choice(["month", "day"])
    # Generated columns: the ledger's own (must be refused) or an unrelated one.
    gen_roll = rng.random()
    s["generated"] = (rng.choice(["balance", "seq", "amount", "group"]) if gen_roll < 0.08
                      else "other" if gen_roll < 0.2 else None)
    if s["generated"] == "group" and not s["groups"]:
        s["generated"] = "other"
    if s["partitioned"]:
        s["layout"] = partition_layout(rng, s)
    # Options.
    numeric_balance = fam(s["balance_type"]) == "numeric"
    odd = ["0", "-0", "+7", "007", "-100", "1.", ".5", "0.125", "1e3", " 5", "5 ", "NaN", "", "abc", "--1",
           "99999999999999999999999999", "-9223372036854775808", "9223372036854775807", "9223372036854775808",
           "32767", "32768", "-32769", "2147483648", "1.5", "10000.00", "9999.99", "-0.001"]
    s["initial"] = None
    if rng.random() < 0.4:
        s["initial"] = rng.choice(odd) if rng.random() < 0.5 else str(rng.randint(-50, 200))
    s["min_balance"] = None
    if rng.random() < 0.45:
        s["min_balance"] = rng.choice(odd) if rng.random() < 0.3 else str(rng.choice([0, 0, -20, 10]))
    s["option_order"] = rng.random()
    s["indexes"] = make_indexes(rng, s)
    s["unique_idem"] = True
    # Is this the documented happy case, which must be accepted?
    amount_mod, balance_mod = typmod(s["amount_type"]), typmod(s["balance_type"])
    types_plain = (fam(s["amount_type"]) == "integer" and fam(s["balance_type"]) == "integer") or (
        s["amount_type"] == "numeric" and s["balance_type"] == "numeric") or (
        amount_mod and balance_mod and amount_mod[1] <= balance_mod[1])
    options_ok = all(v is None or option_value(v, s["balance_type"]) is not None
                     for v in (s["initial"], s["min_balance"])) if fam(s["balance_type"]) != "other" else False
    s["must_accept"] = bool(types_plain and s["seq_type"] in INT_RANGE and options_ok and
                            all(g in SIMPLE_GROUP_KINDS for g in s["groups"]) and
                            s["generated"] in (None, "other") and
                            all(ix["plain_chain"] or not ix["chain_like"] for ix in s["indexes"]) and
                            any(ix["plain_chain"] for ix in s["indexes"]))
    return s


def group_col(i):
    return "g%d" % (i + 1)


def partition_layout(rng, s):
    """The partitioning levels, top down: "pk" (partitioned by pk, a column
    outside the group: every leaf is read) or a group column's level (hash,
    list or range by it: the guard routes each append to the leaves below
    it). Sometimes two levels, in either order; a generated column cannot be
    a partition key."""
    columns = [i for i in range(len(s["groups"])) if not (s["generated"] == "group" and i == 0)]
    if not columns or rng.random() < 0.4:
        return ["pk"]

    def group_level(i):
        kind = s["groups"][i]
        level = {"column": i, "method": rng.choice(["hash", "list", "range"])}
        spell = GROUP_KINDS[kind][2]
        keys = list(range(GROUP_KINDS[kind][3]))
        if level["method"] == "hash":
            level["modulus"] = rng.randint(1, 4)
        elif level["method"] == "list":
            # Some keys listed (one spelling each: equal values cannot be
            # listed twice), the rest and NULL in the DEFAULT partition.
            rng.shuffle(keys)
            listed = keys[:rng.randint(1, len(keys))]
            cut = rng.randint(1, len(listed))
            level["lists"] = [[spell(rng, k) for k in chunk] for chunk in (listed[:cut], listed[cut:]) if chunk]
        else:
            level["split"] = spell(rng, rng.choice(keys))  # below, at or above; NULL in the DEFAULT
        return level

    first = group_level(rng.choice(columns))
    roll = rng.random()
    if roll < 0.4:
        return [first]
    if roll < 0.65:
        return [first, "pk"]
    if roll < 0.85:
        return ["pk", first]
    others = [i for i in columns if i != first["column"]]
    return [first, group_level(rng.choice(others))] if others else [first, "pk"]


def partition_columns(s):
    """The partition key columns of every level (a unique index must hold them)."""
    return [pk_column(s) if level == "pk" else group_col(level["column"]) for level in s["layout"]]


def pk_column(s):
    """The partition key outside the group: created_at (a date) for time
    partitioning, else the integer pk."""
    return "created_at" if s.get("partition_kind") == "time" else "pk"


def pk_type(s):
    return "date" if s.get("partition_kind") == "time" else "integer"


TIME_BASE = date(2024, 1, 1)


def time_bound(s, p):
    """The first day of time partition p (p may pass the shape's last one)."""
    if s["time_unit"] == "day":
        return TIME_BASE + timedelta(days=p)
    return date(TIME_BASE.year + p // 12, p % 12 + 1, 1)


def time_span_days(s):
    """Days covered by the shape's own time partitions."""
    return (time_bound(s, s["partitions"]) - TIME_BASE).days


def partition_group_columns(s):
    return [level["column"] for level in s["layout"] if level != "pk"]


def make_indexes(rng, s):
    """One to three indexes: chain indexes, mutated or not, and unrelated ones."""
    indexes = []
    for n in range(rng.randint(1, 3)):
        ix = {"chain_like": True, "plain_chain": False, "unique": False, "sql": None}
        if n > 0 and rng.random() < 0.35:
            ix["chain_like"] = False
            ix["kind"] = rng.choice(["memo", "hash_group", "idem_seq", "seq_only"])
            indexes.append(ix)
            continue
        keys = [group_col(i) for i in range(len(s["groups"]))]
        rng.shuffle(keys)
        mutations = []
        keyspecs = [[k, "", ""] for k in keys]  # name, collation, order
        if keyspecs and rng.random() < 0.12:
            dup = rng.choice(keyspecs)[0]
            keyspecs.insert(rng.randint(0, len(keyspecs)), [dup, "", ""])
            mutations.append("duplicated key")
        keyspecs.append(["sq", "", ""])
        for spec in keyspecs:
            if rng.random() < 0.1:
                spec[2] = rng.choice([" DESC", " NULLS FIRST", " DESC NULLS LAST"])
                mutations.append("order")
            if spec[0].startswith("g"):
                kind = s["groups"][int(spec[0][1:]) - 1]
                if kind.startswith("text") and rng.random() < 0.3:
                    spec[1] = rng.choice([' COLLATE "C"', ' COLLATE "POSIX"'] + ([" COLLATE public.ci"] if HAVE_CI else []))
                    column_collation = GROUP_KINDS[kind][1]
                    if spec[1].split("COLLATE ")[1] != column_collation:
                        mutations.append("collation")
        if keyspecs and rng.random() < 0.06:
            keyspecs.append(["memo", "", ""])  # extra trailing key: still usable
        ix["include"] = rng.random() < 0.2
        ix["partial"] = rng.random() < 0.08
        ix["expression"] = bool(keys) and rng.random() < 0.06
        if ix["partial"]:
            mutations.append("partial")
        if ix["expression"]:
            mutations.append("expression")
        ix["unique"] = not s["partitioned"] and not mutations and rng.random() < 0.6
        ix["keyspecs"] = keyspecs
        ix["mutations"] = mutations
        ix["plain_chain"] = not mutations
        indexes.append(ix)
    return indexes


def index_sql(s, ix, n):
    t = TABLE
    if not ix["chain_like"]:
        kind = ix["kind"]
        if kind == "memo":
            return "CREATE INDEX ledger_x%d ON %s (memo)" % (n, t)
        if kind == "hash_group":
            return "CREATE INDEX ledger_x%d ON %s USING hash (%s)" % (n, t, group_col(0) if s["groups"] else "memo")
        if kind == "idem_seq":
            return "CREATE INDEX ledger_x%d ON %s (idem, sq)" % (n, t)
        return "CREATE INDEX ledger_x%d ON %s (sq)" % (n, t)
    parts = []
    for name, collation, order in ix["keyspecs"]:
        if ix["expression"] and name.startswith("g") and not parts:
            parts.append("(%s IS NOT NULL)%s" % (name, order))
            continue
        parts.append(name + collation + order)
    sql = "CREATE %sINDEX ledger_x%d ON %s (%s)" % ("UNIQUE " if ix["unique"] else "", n, t, ", ".join(parts))
    if ix["include"]:
        sql += " INCLUDE (amt, bal)"
    if ix["partial"]:
        sql += " WHERE memo IS NOT NULL"
    return sql


def trigger_args(s):
    args = ["amt", "bal"] + [group_col(i) for i in range(len(s["groups"]))]
    options = ["seq=sq"]
    if s["initial"] is not None:
        options.append("initial=" + s["initial"])
    if s["min_balance"] is not None:
        options.append("min_balance=" + s["min_balance"])
    if s["option_order"] < 0.5:
        return args + options
    return options[::-1] + args


def shape_ddl(s):
    """The statements that build the shape, the CREATE TRIGGER last."""
    ddl = ["DROP SCHEMA IF EXISTS %s CASCADE" % s["schema"], "CREATE SCHEMA %s" % s["schema"],
           "SET search_path = %s, public" % s["schema"]]
    cols = ["id bigint NOT NULL"]
    if s["partitioned"]:
        cols.append("%s %s NOT NULL" % (pk_column(s), pk_type(s)))
    for i, kind in enumerate(s["groups"]):
        sql_type, collation, _, _ = GROUP_KINDS[kind]
        if s["generated"] == "group" and i == 0:
            cols.append("g1_src %s%s" % (sql_type, " COLLATE " + collation if collation else ""))
            cols.append("g1 %s%s GENERATED ALWAYS AS (g1_src) STORED" % (sql_type, " COLLATE " + collation if collation else ""))
            continue
        cols.append("%s %s%s" % (group_col(i), sql_type, " COLLATE " + collation if collation else ""))
    if s["generated"] == "amount":
        cols.append("amt_src %s" % s["amount_type"])
        cols.append("amt %s GENERATED ALWAYS AS (amt_src) STORED" % s["amount_type"])
    else:
        cols.append("amt %s" % s["amount_type"])
    cols.append("bal %s%s" % (s["balance_type"], " GENERATED ALWAYS AS (amt) STORED" if s["generated"] == "balance" else ""))
    cols.append("sq %s%s" % (s["seq_type"], " GENERATED ALWAYS AS (1) STORED" if s["generated"] == "seq" else ""))
    cols.append("memo text")
    cols.append("idem text")
    if s["generated"] == "other":
        cols.append("memo_len integer GENERATED ALWAYS AS (length(memo)) STORED")
    create = "CREATE TABLE %s (%s)" % (TABLE, ", ".join(cols))
    if s["partitioned"]:
        ddl.append(create + partition_by(s, s["layout"][0]))
        ddl += partitions_ddl(s, TABLE, s["layout"])
        ddl.append("CREATE UNIQUE INDEX ledger_idem ON %s (idem, %s)" % (TABLE, ", ".join(partition_columns(s))))
    else:
        ddl.append(create)
        ddl.append("CREATE UNIQUE INDEX ledger_idem ON %s (idem)" % TABLE)
    ddl.append("CREATE UNIQUE INDEX ledger_id ON %s (id%s)" % (
        TABLE, "".join(", " + c for c in partition_columns(s)) if s["partitioned"] else ""))
    for n, ix in enumerate(s["indexes"]):
        ddl.append(index_sql(s, ix, n))
    args = ", ".join(harness.quote_literal(a) for a in trigger_args(s))
    ddl.append("CREATE TRIGGER %s BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW "
               "EXECUTE FUNCTION raceguard.running_balance(%s)" % (TRIGGER, TABLE, args))
    return ddl


def partition_by(s, level):
    if level == "pk":
        method = "range" if s["partition_kind"] == "time" else s["partition_kind"]
        return " PARTITION BY %s (%s)" % (method.upper(), pk_column(s))
    return " PARTITION BY %s (%s)" % (level["method"].upper(), group_col(level["column"]))


def partitions_ddl(s, parent, levels):
    """The partitions of `parent` by levels[0], each partitioned by the next level."""
    level = levels[0]
    bounds = []
    if level == "pk":
        for p in range(s["partitions"]):
            bounds.append(pk_bound(s, p))
        if s["default_partition"]:
            bounds.append("DEFAULT")
    else:
        if level["method"] == "hash":
            bounds = ["WITH (MODULUS %d, REMAINDER %d)" % (level["modulus"], r) for r in range(level["modulus"])]
        elif level["method"] == "list":
            bounds = ["IN (%s)" % ", ".join(harness.quote_literal(v) for v in values) for values in level["lists"]]
        else:
            split = harness.quote_literal(level["split"])
            bounds = ["FROM (MINVALUE) TO (%s)" % split, "FROM (%s) TO (MAXVALUE)" % split]
        if level["method"] != "hash":
            bounds.append("DEFAULT")
    ddl = []
    for p, bound in enumerate(bounds):
        child = "%s_%s" % (parent, "pd" if bound == "DEFAULT" else "p%d" % p)
        sub = partition_by(s, levels[1]) if len(levels) > 1 else ""
        ddl.append("CREATE TABLE %s PARTITION OF %s %s%s" % (
            child, parent, bound if bound == "DEFAULT" else "FOR VALUES " + bound, sub))
        if len(levels) > 1:
            ddl += partitions_ddl(s, child, levels[1:])
    return ddl


def pk_bound(s, p):
    """The bound of pk partition p (p may pass the shape's last one: a
    partition created later)."""
    kind = s["partition_kind"]
    if kind == "range":
        return "FROM (%d) TO (%d)" % (p * 10, (p + 1) * 10)
    if kind == "list":
        return "IN (%s)" % ", ".join(str(v) for v in range(p * 10, (p + 1) * 10))
    if kind == "hash":
        return "WITH (MODULUS %d, REMAINDER %d)" % (s["partitions"], p)
    return "FROM ('%s') TO ('%s')" % (time_bound(s, p), time_bound(s, p + 1))


def partition_key(s, idem, rng, clock=None):
    """Rows with one idempotency key always go to one partition. A time key
    follows `clock` (days since TIME_BASE, a Clock): usually its newest day,
    sometimes backdated, sometimes from the future (clock skew), which
    lands in a later partition, in the DEFAULT, or nowhere when
    `clock.unrouted` allows it and there is no DEFAULT."""
    if s["partition_kind"] == "time":
        span = time_span_days(s)
        if idem is not None:
            return str(TIME_BASE + timedelta(days=sum(map(ord, idem)) % span))
        day = clock.key(rng, span, s["default_partition"]) if clock is not None else rng.randrange(span)
        return str(TIME_BASE + timedelta(days=day))
    top = s["partitions"] * 10 + (15 if s["default_partition"] else 0)
    if idem is not None:
        return sum(map(ord, idem)) % top
    return rng.randrange(top)


class Clock:
    """The ledger's clock for time keys: it moves forward through the
    partitions as entries come; an entry carries its newest day, or one
    before (backdated), or one after (a client's clock running ahead)."""

    def __init__(self, unrouted=False):
        self.now = 0
        self.unrouted = unrouted

    def key(self, rng, span, has_default):
        self.now = min(self.now + rng.choice([0, 0, 1, 1, 2, max(1, span // 8)]), span - 1)
        roll = rng.random()
        if roll < 0.15:
            return rng.randrange(self.now + 1)  # backdated
        if roll < 0.25:
            ahead = self.now + rng.randint(1, max(2, span // 3))
            if ahead >= span and not (has_default or self.unrouted):
                return span - 1
            return ahead  # from the future
        return self.now


# ---- the model ----------------------------------------------------------

class Model:
    """The chains as they must be: per group (canonical key), its entries."""

    def __init__(self, s, initial, min_balance):
        self.s = s
        self.initial = initial
        self.min_balance = min_balance
        self.groups = {}   # key -> list of (id, amount, balance)
        self.rows = {}     # id -> (key, seq, balance, idem)
        self.idems = {}    # idem -> id

    def snapshot(self):
        return copy.deepcopy((self.groups, self.rows, self.idems))

    def restore(self, saved):
        self.groups, self.rows, self.idems = copy.deepcopy(saved)


def canonical(s, values):
    key = []
    for kind, text in zip(s["groups"], values):
        if text is None:
            return None
        t = text.strip()
        if kind in ("integer", "bigint"):
            key.append(int(t))
        elif kind == "text_c":
            key.append(text)
        elif kind == "text_ci":
            key.append(text.lower())
        elif kind == "numeric":
            key.append("NaN" if t == "NaN" else Decimal(t))
        elif kind == "uuid":
            key.append(uuid.UUID(t))
        elif kind == "boolean":
            key.append(t in ("true", "t", "yes", "1"))
        elif kind == "date":
            key.append(t.replace("-", ""))
        elif kind == "float8":
            f = float(t.replace("Infinity", "inf"))
            key.append("NaN" if f != f else f)
    return tuple(key)


class Append:
    """One row to append."""

    def __init__(self, row_id, groups, amount, idem, memo, pk):
        self.id = row_id
        self.groups = groups
        self.amount = amount
        self.idem = idem
        self.memo = memo
        self.pk = pk


def predict_append(model, a, last=None):
    """('ok', balance, seq) or ('error', sqlstate) or ('either', balance, seq)
    for a special amount the guard may accept exactly or refuse, or
    ('reject', None) for one it must refuse with some 22xxx/23xxx error.
    The group's previous entry is the model's last one, or `last`
    ((seq, balance), or (0, initial) for none) when given."""
    s = model.s
    status, amount = stored_value(a.amount, s["amount_type"])
    if status == "error":
        return "error", amount
    if amount is None:
        return "error", "23502"
    if isinstance(amount, Decimal) and not amount.is_finite():
        # Refused before the group is read, so before a NULL group's 23502.
        return "error", "23514"
    key = canonical(s, a.groups)
    if key is None:
        return "error", "23502"
    if last is None:
        entries = model.groups.get(key, [])
        last = (len(entries), entries[-1][2] if entries else model.initial)
    seq, previous = last[0] + 1, last[1]
    if fam(s["balance_type"]) == "integer":
        new = previous + amount
        lo, hi = INT_RANGE[s["balance_type"]]
        if not lo <= new <= hi:
            return "error", "22003"
        if model.min_balance is not None and amount < 0 and new < model.min_balance:
            return "error", "23514"
    else:
        if isinstance(amount, Decimal) and amount.is_nan():
            return "reject", None
        try:
            with localcontext(WIDE) as ctx:
                ctx.traps[InvalidOperation] = True
                new = previous + amount
        except InvalidOperation:
            return "reject", None
        fit, fitted = numeric_fit(new, s["balance_type"])
        if fit == "overflow":
            return ("error", "22003") if new.is_finite() else ("reject", None)
        if fitted != new:
            return "reject", None  # the balance type cannot hold prev + amount exactly
        if model.min_balance is not None and amount < 0 and new < model.min_balance:
            return "error", "23514"
        if not amount.is_finite() or not previous.is_finite():
            return "either", new, seq
    lo, hi = INT_RANGE[s["seq_type"]]
    if seq > hi:
        return "error", "22003"
    return "ok", new, seq


def apply_append(model, a, balance, seq):
    key = canonical(model.s, a.groups)
    model.groups.setdefault(key, []).append((a.id, a.amount, balance))
    model.rows[a.id] = (key, seq, balance, a.idem)
    if a.idem is not None:
        model.idems[a.idem] = a.id


# ---- workload -----------------------------------------------------------

class Gen:
    """Random operations for one shape."""

    def __init__(self, rng, s):
        self.rng = rng
        self.s = s
        self.next_id = 1
        self.clock = Clock()
        # Canonical groups of this shape: a few, each with several spellings.
        self.group_pool = []
        pool_size = rng.randint(1, 4)
        for _ in range(pool_size):
            self.group_pool.append([rng.randrange(GROUP_KINDS[k][3]) for k in s["groups"]])

    def group_values(self, which=None):
        keys = self.rng.choice(self.group_pool) if which is None else which
        values = [GROUP_KINDS[k][2](self.rng, key) for k, key in zip(self.s["groups"], keys)]
        if values and self.rng.random() < 0.03:
            values[self.rng.randrange(len(values))] = None
        return values

    def append(self, allow_special=True, which=None):
        rng = self.rng
        a_text = amount_text(rng, self.s)
        if not allow_special and a_text in ("NaN", "Infinity", "-Infinity"):
            a_text = "1"
        if rng.random() < 0.02:
            a_text = None
        idem = "k%d" % rng.randrange(12) if rng.random() < 0.3 else None
        row_id = self.next_id
        self.next_id += 1
        pk = partition_key(self.s, idem, rng, self.clock) if self.s["partitioned"] else None
        a = Append(row_id, self.group_values(which), a_text, idem, "m%d" % row_id, pk)
        self.group_of_idem(a)
        return a

    def group_of_idem(self, a):
        """A unique index on a partitioned ledger holds the partition key: with
        a group column in it, rows with one idempotency key are given one
        group, so that (idem, ...) conflicts exactly when idem does."""
        if a.idem is not None and self.s["partitioned"] and partition_group_columns(self.s):
            which = self.group_pool[sum(map(ord, a.idem)) % len(self.group_pool)]
            a.groups = [GROUP_KINDS[k][2](self.rng, key) for k, key in zip(self.s["groups"], which)]

    def op(self, known_ids):
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return ("insert", [self.append()])
        if roll < 0.42:
            return ("multi", [self.append(False) for _ in range(rng.randint(2, 5))])
        if roll < 0.5:
            return ("select", [self.append(False) for _ in range(rng.randint(1, 5))])
        if roll < 0.58:
            return ("copy", [self.append(False) for _ in range(rng.randint(1, 5))])
        if roll < 0.68:
            rows = [self.append(False) for _ in range(rng.randint(1, 3))]
            for r in rows:
                if r.idem is None:
                    r.idem = "k%d" % rng.randrange(12)
                    if self.s["partitioned"]:
                        r.pk = partition_key(self.s, r.idem, rng, self.clock)
                    self.group_of_idem(r)
            action = rng.choice(["nothing", "update"])
            if action == "update":  # one row per key in a DO UPDATE statement
                seen = set()
                rows = [r for r in rows if not (r.idem in seen or seen.add(r.idem))]
            return ("upsert_" + action, rows)
        target = rng.choice(known_ids) if known_ids and rng.random() < 0.85 else 10**6
        if roll < 0.8:
            return ("memo", target)
        if roll < 0.85:
            return ("orm_save", target)
        if roll < 0.9:
            return ("change_seq", target)
        if roll < 0.93 and self.s["groups"]:
            if rng.random() < 0.5:
                return ("change_group", target)
            # Move the entry to another group: A unless it is in A, then B.
            kind = self.s["groups"][0]
            keys = rng.sample(range(GROUP_KINDS[kind][3]), 2) if GROUP_KINDS[kind][3] > 2 else [0, 1]
            if kind in ("float8", "numeric"):
                keys = [3, 4]
            return ("move_group", (target, GROUP_KINDS[kind][2](rng, keys[0]), GROUP_KINDS[kind][2](rng, keys[1])))
        if roll < 0.96:
            return ("change_amount", target)
        return ("delete", target)


def cols_sql(s):
    return ["id"] + ([pk_column(s)] if s["partitioned"] else []) + [group_col(i) for i in range(len(s["groups"]))] + \
           ["amt_src" if s["generated"] == "amount" else "amt", "memo", "idem"]


def group_insert_cols(s):
    return [("g1_src" if s["generated"] == "group" and i == 0 else group_col(i)) for i in range(len(s["groups"]))]


def row_values(s, a):
    vals = [str(a.id)] + ([str(a.pk)] if s["partitioned"] else []) + list(a.groups) + [a.amount, a.memo, a.idem]
    return vals


def row_types(s):
    types = ["bigint"] + ([pk_type(s)] if s["partitioned"] else [])
    types += [GROUP_KINDS[k][0] for k in s["groups"]]
    types += ["numeric" if fam(s["amount_type"]) != "integer" else "numeric", "text", "text"]
    return types


def insert_cols(s):
    return ["id"] + ([pk_column(s)] if s["partitioned"] else []) + group_insert_cols(s) + \
           ["amt_src" if s["generated"] == "amount" else "amt", "memo", "idem"]


def op_sql(session, s, op):
    """The statement(s) of one op: (sql, params, copy_data)."""
    kind, arg = op
    cols = ", ".join(insert_cols(s))
    types = row_types(s)

    def tuple_sql(a):
        vals = row_values(s, a)
        parts = []
        for v, t in zip(vals, types):
            parts.append(session.text("%s::" + t, (v,)))
        return "(" + ", ".join(parts) + ")"

    if kind == "insert" or kind == "multi":
        return "INSERT INTO %s (%s) VALUES %s" % (TABLE, cols, ", ".join(tuple_sql(a) for a in arg)), None
    if kind == "select":
        return "INSERT INTO %s (%s) SELECT * FROM (VALUES %s) AS v ORDER BY 1" % (
            TABLE, cols, ", ".join(tuple_sql(a) for a in arg)), None
    if kind == "copy":
        lines = []
        for a in arg:
            lines.append("\t".join("\\N" if v is None else v.replace("\\", "\\\\") for v in row_values(s, a)))
        return "COPY %s (%s) FROM STDIN" % (TABLE, cols), "\n".join(lines) + "\n"
    if kind.startswith("upsert"):
        target = "(idem, %s)" % ", ".join(partition_columns(s)) if s["partitioned"] else "(idem)"
        action = "DO NOTHING" if kind == "upsert_nothing" else "DO UPDATE SET memo = EXCLUDED.memo"
        return "INSERT INTO %s (%s) VALUES %s ON CONFLICT %s %s" % (
            TABLE, cols, ", ".join(tuple_sql(a) for a in arg), target, action), None
    if kind == "memo":
        return "UPDATE %s SET memo = memo || '+' WHERE id = %d" % (TABLE, arg), None
    if kind == "orm_save":
        sets = ["amt = amt", "bal = bal", "sq = sq", "memo = 'saved'"] + \
               ["%s = %s" % (g, g) for g in group_insert_cols(s) if not g.endswith("_src") and
                not (s["generated"] == "group" and g == "g1")]
        if s["generated"] in ("balance", "seq", "amount"):
            sets = [x for x in sets if not x.startswith({"balance": "bal", "seq": "sq", "amount": "amt"}[s["generated"]])]
        return "UPDATE %s SET %s WHERE id = %d" % (TABLE, ", ".join(sets), arg), None
    if kind == "change_seq":
        return "UPDATE %s SET sq = sq + 1 WHERE id = %d" % (TABLE, arg), None
    if kind == "change_group":
        return "UPDATE %s SET g%d = g%d WHERE id = %d" % (TABLE, 1, 1, arg), None
    if kind == "move_group":
        target, a, b = arg
        sql_type = GROUP_KINDS[s["groups"][0]][0]
        return session.text("UPDATE %s SET g1 = CASE WHEN g1 = %%s::%s THEN %%s::%s ELSE %%s::%s END WHERE id = %d" % (
            TABLE, sql_type, sql_type, sql_type, target), (a, b, a)), None
    if kind == "change_amount":
        return "UPDATE %s SET amt = 0 WHERE id = %d AND amt <> 0" % (TABLE, arg), None
    if kind == "delete":
        return "DELETE FROM %s WHERE id = %d" % (TABLE, arg), None
    raise AssertionError(kind)


def predict_op(model, op):
    """('ok', rowcount) / ('error', sqlstate) / ('reject',) / ('either',) and the
    model after success (applied by the caller through `effects`)."""
    kind, arg = op
    s = model.s
    if kind in ("insert", "multi", "select", "copy", "upsert_nothing", "upsert_update"):
        if kind != "copy":
            # A VALUES literal is cast when the statement is parsed: its
            # input error comes before any row is inserted.
            for a in arg:
                for value, sql_type in zip(row_values(s, a), row_types(s)):
                    if literal_error(value, sql_type):
                        return ("error", literal_error(value, sql_type)), None
        work = Model(s, model.initial, model.min_balance)
        work.groups, work.rows, work.idems = copy.deepcopy((model.groups, model.rows, model.idems))
        either = False
        for a in arg:
            p = predict_append(work, a)
            if p[0] == "error":
                return ("error", p[1]), None
            if p[0] == "reject":
                return ("reject",), None
            if p[0] == "either":
                either = True
            if a.idem is not None and a.idem in work.idems:
                if kind == "upsert_nothing" or kind == "upsert_update":
                    continue
                return ("error", "23505"), None
            if a.id in work.rows:
                return ("error", "23505"), None
            apply_append(work, a, p[1], p[2])
        return (("either",) if either else ("ok", None)), work
    if kind == "move_group":
        arg = arg[0]
    present = arg in model.rows
    if kind == "change_amount" and present:
        key = model.rows[arg][0]
        text = [entry[1] for entry in model.groups[key] if entry[0] == arg][0]
        if stored_value(text, s["amount_type"])[1] == 0:
            return ("ok", 0), None
    if kind in ("memo", "orm_save"):
        return ("ok", 1 if present else 0), None
    if kind == "change_group":
        return ("ok", 1 if present else 0), None  # g1 = g1: same image, allowed
    return (("error", "23514") if present else ("ok", 0)), None


# ---- running a shape ----------------------------------------------------

class ShapeRun:
    def __init__(self, s, rng):
        self.s = s
        self.rng = rng
        self.log = []
        self.session = None

    def build(self):
        """Creates the shape: None if accepted, else the CREATE TRIGGER's outcome."""
        self.session = Session(self.log, schema=self.s["schema"])
        for sql in shape_ddl(self.s)[:-1]:
            self.session.must(sql)
        return self.session.run(shape_ddl(self.s)[-1])

    def close(self):
        if self.session:
            self.session.close()


def check_definition_error(run, outcome, where):
    """A refusal: a definition SQLSTATE naming the trigger and the table."""
    s = run.s
    if outcome.sqlstate not in DEFINITION_SQLSTATES:
        TEST.fail(s["index"], "refusal with unexpected SQLSTATE",
                  "%s refused with %s (expected one of %s): %s" % (where, outcome.sqlstate,
                                                                   sorted(DEFINITION_SQLSTATES), outcome.message),
                  harness.render(run.log))
        return False
    if not harness.names_trigger_and_table(outcome, TRIGGER, TABLE):
        TEST.fail(s["index"], "refusal without trigger/table name",
                  "%s refused with %s but the message does not name trigger %s and table %s: %s" % (
                      where, outcome.sqlstate, TRIGGER, TABLE, outcome.message), harness.render(run.log))
        return False
    return True


def ledger_rows(session, s):
    """Every row with its group (by the columns' own equality), seq, amount,
    balance, its row number and the previous balance in its group."""
    groups = ", ".join(group_col(i) for i in range(len(s["groups"])))
    part = "PARTITION BY %s " % groups if groups else ""
    sql = ("SELECT id, min(id) OVER (%s) AS grp, sq, amt::text, bal::text, "
           "row_number() OVER (%sORDER BY sq, id) AS rn, lag(bal::text) OVER (%sORDER BY sq, id) AS prev "
           "FROM %s ORDER BY grp, rn" % (part, part, part, TABLE))
    return session.must(sql, log=False)


def to_number(s, text):
    if text is None:
        return None
    return int(text) if fam(s["balance_type"]) == "integer" else Decimal(text)


def chain_problems(session, s, initial):
    """Problems of the chains as stored: [(id, text)]."""
    problems = []
    rows = ledger_rows(session, s)
    for row_id, grp, seq, amount, balance, rn, prev in rows:
        if seq is None or seq != rn:
            problems.append((row_id, "seq %s where %d expected" % (seq, rn)))
        if amount is None or balance is None:
            problems.append((row_id, "NULL amount or balance"))
            continue
        a, b = to_number(s, amount), to_number(s, balance)
        p = to_number(s, prev) if prev is not None else initial
        if isinstance(b, Decimal) and b.is_nan():
            problems.append((row_id, "balance NaN"))
            continue
        try:
            with localcontext(WIDE) as ctx:
                ctx.traps[InvalidOperation] = True
                expected = p + a
        except InvalidOperation:
            problems.append((row_id, "balance %s after %s + %s, which has no value" % (b, p, a)))
            continue
        if expected != b:
            problems.append((row_id, "balance %s, expected %s + %s = %s" % (balance, p, amount, expected)))
    return problems, len(rows)


def verify_agrees(run, problems):
    outcome = run.session.run("SELECT count(*) FROM raceguard.verify_running_balance('%s')" % TABLE, log=False)
    if not outcome.ok:
        TEST.fail(run.s["index"], "verify_running_balance error", "verify_running_balance() failed: %s" % outcome,
                  harness.render(run.log))
        return
    reported = outcome.rows[0][0]
    if (reported > 0) != bool(problems):
        TEST.fail(run.s["index"], "verify_running_balance disagrees",
                  "verify_running_balance() reports %d problems, the model finds %d: %s" % (
                      reported, len(problems), problems[:3]), harness.render(run.log))


def execute_script(s, rng_seed, script, initial, min_balance, quiet=False):
    """Runs a single-session script against a fresh shape; returns
    (failures [(kind, detail)], log, rows checked, statements)."""
    import random
    run = ShapeRun(s, random.Random(rng_seed))
    failures = []
    statements = 0
    try:
        outcome = run.build()
        if not outcome.ok:
            return [("shape no longer accepted", str(outcome))], run.log, 0, 0
        session = run.session
        model = Model(s, initial, min_balance)
        for transaction, ending in script:
            session.run("BEGIN")
            committed_state = model.snapshot()
            savepoint_state = None
            aborted = False
            for op in transaction:
                if op == "SAVEPOINT":
                    if not aborted:
                        session.run("SAVEPOINT sp")
                        savepoint_state = model.snapshot()
                    continue
                if op == "ROLLBACK TO":
                    if savepoint_state is not None:
                        session.run("ROLLBACK TO SAVEPOINT sp")
                        model.restore(savepoint_state)
                        aborted = False
                    continue
                if aborted:
                    continue
                sql, copy_data = op_sql(session, s, op)
                prediction, after = predict_op(model, op)
                actual = session.run(sql, copy_data=copy_data)
                statements += 1
                if not session.alive():
                    raise Crash("backend %d gone after: %s" % (session.pid, sql))
                ok = True
                if prediction[0] == "ok":
                    ok = actual.ok and (prediction[1] is None or actual.rowcount == prediction[1])
                elif prediction[0] == "error":
                    ok = not actual.ok and actual.sqlstate == prediction[1]
                elif prediction[0] == "reject":
                    ok = not actual.ok and actual.sqlstate[:2] in ("22", "23")
                else:  # either
                    ok = actual.ok or actual.sqlstate[:2] in ("22", "23")
                if not ok:
                    kind = "statement outcome"
                    if prediction[0] == "reject" and actual.ok:
                        kind = "accepted an append it cannot serve exactly"
                    failures.append((kind, "statement: %s\n  expected %s, got %s" % (
                        sql.splitlines()[0][:300], prediction, actual)))
                    return failures, run.log, 0, statements
                if actual.ok and after is not None:
                    model.groups, model.rows, model.idems = after.groups, after.rows, after.idems
                if not actual.ok:
                    if savepoint_state is not None and rng_choice(run.rng):
                        session.run("ROLLBACK TO SAVEPOINT sp")
                        model.restore(savepoint_state)
                    else:
                        aborted = True
            if aborted or ending == "ROLLBACK":
                session.run("ROLLBACK")
                model.restore(committed_state)
            else:
                c = session.run("COMMIT")
                if not c.ok:
                    failures.append(("commit failed", str(c)))
                    return failures, run.log, 0, statements
        # Every stored row as the model has it, and nothing else.
        stored = {row[0]: row for row in ledger_rows(session, s)}
        for row_id, (key, seq, balance, idem) in model.rows.items():
            if row_id not in stored:
                failures.append(("committed append missing", "row %d is not in the ledger" % row_id))
                break
            _, _, st_seq, st_amount, st_balance, _, _ = stored[row_id]
            if st_seq != seq or to_number(s, st_balance) != balance:
                failures.append(("wrong balance or seq",
                                 "row %d (group %s): stored seq %s balance %s, expected seq %d balance %s" % (
                                     row_id, key, st_seq, st_balance, seq, balance)))
                break
        extra = sorted(set(stored) - set(model.rows))
        if extra:
            failures.append(("rejected append present", "rows %s are in the ledger but were never committed" % extra[:5]))
        problems, count = chain_problems(session, s, initial)
        if problems and not failures:
            failures.append(("chain broken", "chain problems: %s" % problems[:3]))
        if not quiet:
            verify_agrees(run, problems)
        return failures, run.log, count, statements
    finally:
        run.close()


def rng_choice(rng):
    return rng.random() < 0.5


def make_script(rng, s, gen):
    """Transactions of random ops: [(ops, 'COMMIT'|'ROLLBACK')]."""
    script = []
    known = []
    for _ in range(rng.randint(3, 10)):
        ops = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.12:
                ops.append("SAVEPOINT")
            op = gen.op(known)
            if op[0] in ("insert", "multi", "select", "copy", "upsert_nothing", "upsert_update"):
                known.extend(a.id for a in op[1])
            ops.append(op)
            if rng.random() < 0.1:
                ops.append("ROLLBACK TO")
        script.append((ops, "ROLLBACK" if rng.random() < 0.12 else "COMMIT"))
    return script


def reduce_script(s, seed, script, initial, min_balance, kind):
    """Greedy reduction: drop transactions, then ops, while the same kind of
    failure remains. Bounded."""
    attempts = 0

    def still_fails(candidate):
        nonlocal attempts
        attempts += 1
        failures, _, _, _ = execute_script(s, seed, candidate, initial, min_balance, quiet=True)
        return any(k == kind for k, _ in failures)

    i = 0
    while i < len(script) and attempts < 40:
        candidate = script[:i] + script[i + 1:]
        if candidate and still_fails(candidate):
            script = candidate
        else:
            i += 1
    t = 0
    while t < len(script) and attempts < 70:
        ops, ending = script[t]
        j = 0
        while j < len(ops) and attempts < 70:
            candidate_ops = ops[:j] + ops[j + 1:]
            candidate = script[:t] + [(candidate_ops, ending)] + script[t + 1:]
            if candidate_ops and still_fails(candidate):
                ops = candidate_ops
                script = candidate
            else:
                j += 1
        t += 1
    return script


# ---- deterministic REPEATABLE READ probes ------------------------------

def rr_probes(run, gen, initial, min_balance):
    """An append at REPEATABLE READ after another transaction (a) updated a
    memo of the group's last entry: must succeed; (b) appended to the group:
    must fail with 40001."""
    s = run.s
    which = gen.rng.choice(gen.group_pool)
    other = Session(run.log, name="s2", schema=s["schema"])
    first = Session(run.log, name="s1", schema=s["schema"])
    try:
        seed_row = gen.append(False, which)
        seed_row.amount, seed_row.idem = "5", None
        seed_row.groups = [GROUP_KINDS[k][2](gen.rng, key) for k, key in zip(s["groups"], which)]
        sql, _ = op_sql(other, s, ("insert", [seed_row]))
        if not other.run(sql).ok:
            return 0
        # (a) memo of the last entry updated after the snapshot.
        first.must("BEGIN ISOLATION LEVEL REPEATABLE READ")
        first.must("SELECT count(*) FROM %s" % TABLE)
        other.must("UPDATE %s SET memo = 'touched' WHERE id = %d" % (TABLE, seed_row.id))
        row = gen.append(False, which)
        row.amount, row.idem = "3", None
        row.groups = [GROUP_KINDS[k][2](gen.rng, key) for k, key in zip(s["groups"], which)]
        sql, _ = op_sql(first, s, ("insert", [row]))
        outcome = first.run(sql)
        first.run("ROLLBACK")
        if not outcome.ok:
            TEST.fail(s["index"], "spurious 40001 after a memo update" if outcome.sqlstate == "40001"
                      else "REPEATABLE READ append failed",
                      "an append at REPEATABLE READ failed with %s after another transaction only updated a memo "
                      "column of the group's last entry: %s" % (outcome.sqlstate, outcome.message),
                      harness.render(run.log, sessions=True)[-6:])
        # (b) another append committed after the snapshot.
        first.must("BEGIN ISOLATION LEVEL REPEATABLE READ")
        first.must("SELECT count(*) FROM %s" % TABLE)
        row2 = gen.append(False, which)
        row2.amount, row2.idem = "2", None
        row2.groups = [GROUP_KINDS[k][2](gen.rng, key) for k, key in zip(s["groups"], which)]
        sql2, _ = op_sql(other, s, ("insert", [row2]))
        if other.run(sql2).ok:
            row3 = gen.append(False, which)
            row3.amount, row3.idem = "1", None
            row3.groups = [GROUP_KINDS[k][2](gen.rng, key) for k, key in zip(s["groups"], which)]
            sql3, _ = op_sql(first, s, ("insert", [row3]))
            outcome = first.run(sql3)
            if outcome.ok or outcome.sqlstate != "40001":
                TEST.fail(s["index"], "REPEATABLE READ append on an unseen entry",
                          "an append at REPEATABLE READ after another transaction appended to the group "
                          "must fail with 40001, got %s" % outcome, harness.render(run.log, sessions=True)[-6:])
        first.run("ROLLBACK")
        return 2
    finally:
        first.close()
        other.close()


# ---- several sessions --------------------------------------------------

def concurrent_workload(run, gen, initial, min_balance):
    """Threads append (and update memos) at READ COMMITTED and REPEATABLE
    READ, retrying on 40001/40P01; then the ledger holds exactly the
    committed appends, in exact chains."""
    import random
    s = run.s
    committed = set()
    lock = threading.Lock()
    errors = []
    threads_n = run.rng.randint(2, 4)
    groups_used = gen.group_pool[: max(1, min(len(gen.group_pool), run.rng.randint(1, 3)))]
    # Appends made up front so that ids and amounts are the seed's.
    plans = []
    for t in range(threads_n):
        plan = []
        for _ in range(run.rng.randint(3, 8)):
            level = run.rng.choice(["READ COMMITTED", "REPEATABLE READ"])
            rows = []
            for _ in range(run.rng.randint(1, 3)):
                which = run.rng.choice(groups_used)
                a = gen.append(False, which)
                a.groups = [GROUP_KINDS[k][2](gen.rng, key) for k, key in zip(s["groups"], which)]
                a.amount = str(run.rng.randint(-30, 60))
                a.idem = None
                if s["partitioned"]:
                    a.pk = partition_key(s, None, gen.rng, gen.clock)
                rows.append(a)
            plan.append((level, rows, run.rng.random() < 0.15, run.rng.random() < 0.2))
        plans.append(plan)
    # A business rejection (min_balance) or an overflow (odd initial=): the
    # transaction is rolled back, and the chain check below still holds.
    allowed = {"23514", "22003"} if min_balance is not None else {"22003"}

    def worker(t):
        session = Session([], name="t%d" % t, schema=s["schema"])
        rng = random.Random(t)
        try:
            for level, rows, abandon, memo in plan_of[t]:
                for attempt in range(50):
                    session.run("BEGIN ISOLATION LEVEL " + level)
                    failed = None
                    for a in rows:
                        sql, _ = op_sql(session, s, ("insert", [a]))
                        out = session.run(sql)
                        if not out.ok:
                            failed = out
                            break
                    if failed is None and memo:
                        out = session.run("UPDATE %s SET memo = 'w%d' WHERE id = (SELECT max(id) FROM %s)" % (
                            TABLE, t, TABLE))
                        if not out.ok:
                            failed = out
                    if failed is None and not abandon:
                        out = session.run("COMMIT")
                        if out.ok:
                            with lock:
                                committed.update(a.id for a in rows)
                            break
                        failed = out
                    session.run("ROLLBACK")
                    if failed is None:
                        break
                    if failed.sqlstate in RETRYABLE:
                        TEST.count("rb retries")
                        continue
                    if failed.sqlstate not in allowed:
                        with lock:
                            errors.append("thread %d at %s: %s" % (t, level, failed))
                    break
                if not session.alive():
                    with lock:
                        errors.append("thread %d: backend gone" % t)
                    return
        except Crash as crash:
            with lock:
                errors.append("thread %d: %s" % (t, crash))
        finally:
            session.close()
        _ = rng

    plan_of = plans
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    before = {r[0] for r in ledger_rows(run.session, s)}
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    plan_text = []
    for t, plan in enumerate(plans):
        for level, rows, abandon, memo in plan:
            plan_text.append("-- t%d %s%s%s: %s" % (t, level, " (rolled back)" if abandon else "",
                                                   " +memo" if memo else "",
                                                   "; ".join(op_sql(run.session, s, ("insert", [a]))[0] for a in rows)))
    if errors:
        TEST.fail(s["index"], "unexpected error in concurrent workload", "\n".join(errors[:5]),
                  harness.render(run.log) + plan_text)
        return 0
    rows = ledger_rows(run.session, s)
    ids = [r[0] for r in rows]
    now = set(ids) - before
    if len(ids) != len(set(ids)) or now != committed:
        TEST.fail(s["index"], "concurrent appends lost or duplicated",
                  "committed %d appends, the ledger gained %d (missing %s, extra %s)" % (
                      len(committed), len(now), sorted(committed - now)[:5], sorted(now - committed)[:5]),
                  harness.render(run.log) + plan_text)
    problems, count = chain_problems(run.session, s, initial)
    if problems:
        TEST.fail(s["index"], "chain broken under concurrency", "chain problems: %s" % problems[:3],
                  harness.render(run.log) + plan_text)
    verify_agrees(run, problems)
    if min_balance is not None:
        below = [r for r in rows if to_number(s, r[3]) < 0 and to_number(s, r[4]) < min_balance]
        if below:
            TEST.fail(s["index"], "min_balance crossed under concurrency",
                      "rows below min_balance %s: %s" % (min_balance, below[:3]), harness.render(run.log) + plan_text)
    return count


# ---- events between appends, from several backends ------------------------
#
# The rule every append must follow, whatever happened since the last one:
# the group's previous entry is its committed (or own) row with the highest
# non-NULL seq among the partitions attached now (a NULL balance there counts
# as initial); the append gets that seq + 1 and that balance + amount, or
# seq 1 and initial + amount when there is none. The model below keeps every
# row with the table that holds it and predicts each append by that rule.
# What PostgreSQL itself decides (whether a DDL event succeeds, which leaf a
# row is routed to, whether a row fits a partition) is observed from the
# server, never predicted: only what the guard computes is.

class Stored:
    """A row as the model has it: canonical group, seq and balance (None
    for NULL), amount, its spelled group values and partition key, the table
    holding it, whether the guard wrote it and, while its transaction is
    open, the session that wrote it."""

    def __init__(self, key, seq, balance, amount, groups, pk, leaf, writer=None, bypassed=False):
        self.key, self.seq, self.balance, self.amount = key, seq, balance, amount
        self.groups, self.pk, self.leaf, self.writer = groups, pk, leaf, writer
        self.bypassed = bypassed

    def __repr__(self):
        return "seq %s balance %s in %s%s" % (self.seq, self.balance, self.leaf, " (bypassed)" if self.bypassed else "")


def fires(tgenabled, replica):
    """Whether a row trigger in this enabled state fires for a session in
    this session_replication_role."""
    return tgenabled == "A" or (tgenabled == "O" and not replica) or (tgenabled == "R" and replica)


class EventModel:
    def __init__(self, s, initial, min_balance):
        self.s = s
        self.initial = initial
        self.min_balance = min_balance
        self.rows = {}        # id -> Stored
        self.leaves = set()   # the leaves attached now (the ledger itself when not partitioned)
        self.tree = []        # (node, parent) of every partition below the root now
        self.enabled = {}     # table -> its guard's tgenabled
        self.tables = set()   # every table of the schema
        self.bypassed = 0     # rows written around the guard

    def refresh(self, session):
        """What the catalog says now: the partition tree, the guard's state
        on each table, the schema's tables (rows of a dropped one are gone)."""
        self.tables = {r[0] for r in session.must(
            "SELECT relname::text FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relkind IN ('r', 'p')", log=False)}
        if self.s["partitioned"]:
            tree = session.must("SELECT relid::regclass::text, parentrelid::regclass::text, isleaf, level "
                                "FROM pg_partition_tree('%s')" % TABLE, log=False)
            self.leaves = {r[0] for r in tree if r[2] and r[3] > 0}
            self.tree = [(r[0], r[1]) for r in tree if r[3] > 0]
        else:
            self.leaves = {TABLE}
        self.enabled = {r[0]: r[1] for r in session.must(
            "SELECT c.relname::text, t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = '%s' AND c.relnamespace = current_schema()::regnamespace" % TRIGGER, log=False)}
        for row_id in [i for i, r in self.rows.items() if r.leaf not in self.tables]:
            del self.rows[row_id]

    def under(self, node):
        """The tables at or below node in the partition tree now."""
        found = {node}
        changed = True
        while changed:
            changed = False
            for child, parent in self.tree:
                if parent in found and child not in found:
                    found.add(child)
                    changed = True
        return found

    def last(self, key, session):
        """The candidates for the group's previous entry as `session` sees
        it: [(seq, balance)], several only when rows tie on the highest seq;
        [(0, initial)] when the group has no entry."""
        best, balances = None, []
        for r in self.rows.values():
            if r.key != key or r.seq is None or r.leaf not in self.leaves:
                continue
            if r.writer is not None and r.writer != session:
                continue
            balance = r.balance if r.balance is not None else self.initial
            if best is None or r.seq > best:
                best, balances = r.seq, [balance]
            elif r.seq == best and balance not in balances:
                balances.append(balance)
        return [(0, self.initial)] if best is None else [(best, b) for b in balances]

    def group_seqs(self, key):
        return [r.seq for r in self.rows.values() if r.key == key and r.seq is not None]

    def last_leaf(self, key):
        """The leaf holding the group's last entry (one of them on a tie)."""
        top = None
        for r in self.rows.values():
            if r.key == key and r.seq is not None and r.leaf in self.leaves and (top is None or r.seq > top.seq):
                top = r
        return top.leaf if top else None


class EvSession(Session):
    """A session of the events workload: replica is its
    session_replication_role, open its transaction."""

    def __init__(self, log, name, schema):
        Session.__init__(self, log, name=name, schema=schema)
        self.replica = False
        self.open = False
        self.aborted = False  # its open transaction failed


class EventRun:
    """One events workload: the shape built fresh, its sessions and model."""

    def __init__(self, s, seed, initial, min_balance):
        import random
        self.s = s
        self.rng = random.Random(seed)
        self.log = []
        self.model = EventModel(s, initial, min_balance)
        self.gen = Gen(self.rng, s)
        self.gen.clock = Clock(unrouted=True)
        self.sessions = []
        self.failures = []
        self.detached = {}    # table -> (parent, bound, samples): detached, or created and never attached
        self.free_slots = []  # (parent, bound, samples) nobody holds
        self.fresh = 0        # partitions created so far
        self.pk_extra = []    # pk bound numbers of partitions created past the shape's own
        self.prepared_ok = False  # max_prepared_transactions > 0
        self.prepared = []    # prepared transactions not ended yet (after a failure)

    def session(self, name):
        session = EvSession(self.log, name, self.s["schema"])
        self.sessions.append(session)
        return session

    def fail(self, kind, detail):
        self.failures.append((kind, detail))

    def close(self):
        for session in self.sessions:
            session.close()
        if self.prepared:  # a prepared transaction would keep its locks, and the schema
            cleanup = Session([])
            for gid in self.prepared:
                cleanup.run("ROLLBACK PREPARED '%s'" % gid, log=False)
            cleanup.close()


def ev_groups(run, key_values=None):
    """Spelled values of one pool group (never NULL here: the single-session
    workload covers NULL groups)."""
    which = key_values if key_values is not None else run.rng.choice(run.gen.group_pool)
    return [GROUP_KINDS[k][2](run.rng, key) for k, key in zip(run.s["groups"], which)]


def ev_pk(run):
    """A partition key: the shape's own partitions', sometimes one of a
    partition created since."""
    s = run.s
    if not s["partitioned"]:
        return None
    if run.pk_extra and run.rng.random() < 0.25:
        return key_in_pk_bound(s, run.rng.choice(run.pk_extra), run.rng)
    return partition_key(s, None, run.rng, run.gen.clock)


def key_in_pk_bound(s, p, rng):
    if s["partition_kind"] == "time":
        first, after = time_bound(s, p), time_bound(s, p + 1)
        return str(first + timedelta(days=rng.randrange((after - first).days)))
    return p * 10 + rng.randrange(10)


def ev_append(run):
    """An append as an application writes it (no seq, no balance)."""
    a = run.gen.append(False)
    a.idem = None
    if a.amount is None:
        a.amount = "1"
    a.groups = ev_groups(run)
    a.pk = ev_pk(run)
    return a


def max_balance_value(s):
    t = s["balance_type"]
    if fam(t) == "integer":
        return INT_RANGE[t][1]
    mod = typmod(t)
    return 10 ** (mod[0] - mod[1]) - 1 if mod else 10 ** 30


def bypass_row(run, groups=None, pk=None):
    """A row written around the guard: its own seq (higher than the
    group's, lower, NULL, the type's last, or the next one) and balance
    (NULL sometimes, near the type's limit sometimes)."""
    rng, s, model = run.rng, run.s, run.model
    a = ev_append(run)
    a.amount = str(rng.randint(-20, 80))
    if groups is not None:
        a.groups, a.pk = groups, pk
    key = canonical(s, a.groups)
    used = set(model.group_seqs(key))
    top = max(used) if used else 0
    lo, hi = INT_RANGE[s["seq_type"]]
    roll = rng.random()
    if roll < 0.2:
        seq = None
    elif roll < 0.55:
        seq = top + rng.choice([1, 2, 3, 7, 40, 1000])
    elif roll < 0.7:
        lower = [v for v in range(top - 12, top) if v not in used] or [top - 13]
        seq = rng.choice(lower)
    elif roll < 0.74:
        seq = hi  # the type's last: the next append must fail with 22003
    else:
        seq = top + 1
    if seq is not None:
        seq = max(lo, min(hi, seq))
        if seq in used:
            seq = None  # a unique chain index would refuse it, or wait for its writer
    roll = rng.random()
    if roll < 0.15:
        balance = None
    elif roll < 0.2:
        balance = max_balance_value(s) - rng.randint(0, 30)  # exact: a Python int
    else:
        balance = rng.randint(-40, 3000)
    if balance is not None and fam(s["balance_type"]) == "numeric":
        balance = Decimal(balance)
    return a, seq, balance


def write_sql(session, s, target, rows, explicit, copy=False):
    """INSERT (or COPY) of rows into target; with explicit, bal and sq are
    given. Returns (sql, copy_data)."""
    cols = insert_cols(s) + (["bal", "sq"] if explicit else [])
    types = row_types(s) + (["numeric", "bigint"] if explicit else [])

    def values(entry):
        a, seq, balance = entry
        return row_values(s, a) + ([None if balance is None else str(balance), None if seq is None else str(seq)]
                                   if explicit else [])

    if copy:
        lines = ["\t".join("\\N" if v is None else v for v in values(e)) for e in rows]
        return "COPY %s (%s) FROM STDIN" % (target, ", ".join(cols)), "\n".join(lines) + "\n"
    tuples = []
    for entry in rows:
        tuples.append("(" + ", ".join(session.text("%s::" + t, (v,)) for v, t in zip(values(entry), types)) + ")")
    return "INSERT INTO %s (%s) VALUES %s" % (target, ", ".join(cols), ", ".join(tuples)), None


def predict_branch(run, session, rows, fired):
    """What one statement does if the guard fires (fired) or not on its
    rows: ('ok', [[(seq, balance) candidates] per row]) or ('error', sqlstate)
    or ('reject',). Rows of one statement follow each other."""
    model, s = run.model, run.s
    provisional = []
    try:
        per_row = []
        for a, seq, balance in rows:
            status, amount = stored_value(a.amount, s["amount_type"])
            if status == "error":
                return ("error", amount)
            key = canonical(s, a.groups)
            if not fired:
                per_row.append([(seq, balance)])
                stored = Stored(key, seq, balance, amount, a.groups, a.pk, "?", session.name)
            else:
                candidates = []
                for last in model.last(key, session.name):
                    p = predict_append(model, a, last)
                    if p[0] == "error":
                        return ("error", p[1])
                    if p[0] == "reject":
                        return ("reject",)
                    candidates.append((p[2], p[1]))
                per_row.append(candidates)
                # The next row of the statement sees this one (a statement
                # with a tie has one row: see write).
                stored = Stored(key, candidates[0][0], candidates[0][1], amount, a.groups, a.pk, "?", session.name)
            model.rows[("provisional", a.id)] = stored
            provisional.append(("provisional", a.id))
            model.leaves.add("?")
        return ("ok", per_row)
    finally:
        for p in provisional:
            del model.rows[p]
        model.leaves.discard("?")


ROUTING_FAILED = "no partition of relation"
PARTITION_CONSTRAINT = "violates partition constraint"
MOVED_BY_TRIGGER = "moving row to another partition during a BEFORE FOR EACH ROW trigger"


def write(run, session, target, rows, explicit, copy=False, fits=None):
    """Runs one write and checks it against the model: every row the guard
    fires on must get the seq and balance the rule gives; every other row
    keeps what it was given. Splits a statement into single rows when its
    outcome would depend on which leaf PostgreSQL routes a row to or on a
    tie. A row written into a leaf it does not fit (fits False) must be
    refused: by PostgreSQL, or by the guard, which reads only the leaves
    its partition keys route to from that leaf. Returns the number of rows
    written."""
    s, model = run.s, run.model
    firing = {leaf: fires(model.enabled.get(leaf), session.replica) for leaf in model.leaves}
    options = {firing.get(target, False)} if target != TABLE or not s["partitioned"] else set(firing.values())
    options = options or {False}
    if len(rows) > 1:
        tie = any(len(model.last(canonical(s, a.groups), session.name)) > 1 for a, _, _ in rows)
        if len(options) > 1 or tie:
            written = 0
            for row in rows:
                if session.aborted:
                    break  # its transaction failed: the rest would be refused with 25P02
                written += write(run, session, target, [row], explicit)
            return written
    branches = {fired: predict_branch(run, session, rows, fired) for fired in options}
    sql, copy_data = write_sql(session, s, target, rows, explicit, copy)
    actual = session.run(sql, copy_data=copy_data)
    if not session.alive():
        raise Crash("backend %d gone after: %s" % (session.pid, sql.splitlines()[0]))
    TEST.count("ev statements")
    where = "%s: %s" % (session.name, sql.splitlines()[0][:400])
    if fits is False:
        TEST.count("ev rows that fit no leaf written")
        if actual.ok:
            run.fail("event workload: a row stored outside its partition",
                     "%s\n  stored, although the partition constraint of %s does not hold for it" % (where, target))
        session.aborted = session.open
        return 0
    if not actual.ok:
        session.aborted = session.open
        if actual.sqlstate == "23514" and ROUTING_FAILED in actual.message:
            TEST.count("ev unrouted")  # PostgreSQL's: before any trigger
            return 0
        if (actual.sqlstate == "23514" and PARTITION_CONSTRAINT in actual.message or
                actual.sqlstate == "0A000" and MOVED_BY_TRIGGER in actual.message) and \
                any(b[0] == "ok" for b in branches.values()):
            # PostgreSQL's, after the BEFORE triggers: a backend that read a
            # partition below a DEFAULT before a sibling of that DEFAULT was
            # detached keeps checking the old partition constraint there, so
            # a row routed there now (or written there, fitting) is refused
            # (seen on 15.20; a fresh session stores it).
            TEST.count("ev stale partition constraints")
            return 0
        if actual.sqlstate == "23505" and explicit and False in branches and any(
                r.key == canonical(s, a.groups) and r.seq == seq and r.leaf in model.leaves
                for a, seq, _ in rows for r in model.rows.values()):
            return 0  # a unique chain index refuses a bypassed seq the group has
        if not any(b[0] == "error" and b[1] == actual.sqlstate or
                   b[0] == "reject" and actual.sqlstate[:2] in ("22", "23") for b in branches.values()):
            run.fail("event workload: statement outcome",
                     "%s\n  expected %s, got %s%s" % (where, describe_branches(branches), actual,
                                                     group_state(run, session, rows)))
        return 0
    ids = [a.id for a, _, _ in rows]
    stored = {r[0]: r for r in session.must(
        "SELECT id, tableoid::regclass::text, sq, bal::text FROM %s WHERE id = ANY(%%s)" % TABLE, (ids,), log=False)}
    if not any(b[0] == "ok" for b in branches.values()):
        run.fail("event workload: statement outcome", "%s\n  expected %s, got ok%s" % (
            where, describe_branches(branches), group_state(run, session, rows)))
        return 0
    for n, (a, seq, balance) in enumerate(rows):
        if a.id not in stored:
            run.fail("event workload: written row missing", "%s\n  row %d is not in the ledger" % (where, a.id))
            return 0
        _, leaf, st_seq, st_balance = stored[a.id]
        fired = firing.get(leaf, False) if s["partitioned"] else firing[TABLE]
        branch = branches.get(fired)
        got = (st_seq, to_number(s, st_balance))
        if branch is None or branch[0] != "ok" or got not in branch[1][n]:
            run.fail("event workload: wrong balance or seq" if fired else "event workload: bypassed row changed",
                     "%s\n  row %d (group %s, in %s, the guard %s there): stored seq %s balance %s, expected %s" % (
                         where, a.id, canonical(s, a.groups), leaf, "fires" if fired else "does not fire",
                         st_seq, st_balance, describe_branches({fired: branch}) if branch else "another leaf"))
            return 0
        if not fired:
            model.bypassed += 1
            TEST.count("ev bypassed rows")
        else:
            if len(branch[1][n]) > 1:
                TEST.count("ev ties")
            before = model.last_leaf(canonical(s, a.groups))
            if before is not None and before != leaf:
                TEST.count("ev appends after the last entry's leaf")  # moved to another leaf
        status, amount = stored_value(a.amount, s["amount_type"])
        model.rows[a.id] = Stored(canonical(s, a.groups), got[0], got[1], amount, a.groups, a.pk, leaf,
                                  session.name if session.open else None, bypassed=not fired)
    TEST.count("ev rows checked", len(rows))
    return len(rows)


def group_state(run, session, rows):
    """The model's rows of the written groups, and the ledger's (as the
    writing session sees them, or when its transaction failed, as another
    session does: then without its own rows)."""
    s, model = run.s, run.model
    keys = {canonical(s, a.groups) for a, _, _ in rows}
    ids = sorted(i for i, r in model.rows.items() if r.key in keys and r.leaf in model.leaves)
    reader = session if not session.open else [x for x in run.sessions if x.name == "ev"][0]
    stored = {r[0]: r[1:] for r in reader.must(
        "SELECT id, sq, bal::text, tableoid::regclass::text FROM %s" % TABLE, log=False)}
    lines = ["\n  the groups' rows in the attached leaves (id: the model's; the ledger's%s):" % (
        " as another session sees them" if reader is not session else "")]
    for i in ids:
        lines.append("    %d: %s; %s" % (i, model.rows[i], stored.get(i, "missing")))
    return "\n".join(lines[:40])


def describe_branches(branches):
    parts = []
    for fired, branch in sorted(branches.items()):
        text = "%s (the guard %s)" % (
            branch if branch[0] != "ok" else "ok " + "; ".join(" or ".join("seq %s balance %s" % c for c in row)
                                                               for row in branch[1]),
            "fires" if fired else "does not fire")
        parts.append(text)
    return " | ".join(parts)


def ev_appends(run, session):
    """Appends as an application writes them: one row, several in one
    statement, or COPY, through the parent."""
    rng = run.rng
    rows = [(ev_append(run), None, None) for _ in range(rng.choice([1, 1, 1, 2, 3, 4]))]
    TEST.count("ev appends", len(rows))
    return write(run, session, TABLE, rows, False, copy=rng.random() < 0.2)


def fits_leaf(run, session, leaf, a):
    """Whether PostgreSQL's partition constraint of leaf holds for the row
    (NULL counts as holding, as in PostgreSQL's own check)."""
    constraint = session.must("SELECT pg_get_partition_constraintdef(%s::regclass)", (leaf,), log=False)[0][0]
    if constraint is None:
        return True
    columns = ", ".join(session.text("%s::" + t, (v,)) + " AS " + c
                        for v, t, c in zip(row_values(run.s, a), row_types(run.s), insert_cols(run.s)))
    return session.must("SELECT (%s) FROM (SELECT %s) AS x" % (constraint, columns), log=False)[0][0] is not False


def ev_bypass_rows(run, session):
    """Rows with their own seq and balance: into the leaf holding their
    group's last entry, another leaf (its partition key drawn until it fits,
    a few times), or the parent."""
    rng, model, s = run.rng, run.model, run.s
    for _ in range(rng.randint(1, 4)):
        a, seq, balance = bypass_row(run)
        target, fits = TABLE, None
        if s["partitioned"] and model.leaves and rng.random() < 0.7:
            key = canonical(s, a.groups)
            own = model.last_leaf(key)
            if own and rng.random() < 0.4:
                target = own
                a.pk = [r.pk for r in model.rows.values() if r.leaf == own and r.key == key][0]
            else:
                target = rng.choice(sorted(model.leaves))
            fits = fits_leaf(run, session, target, a)
            for _ in range(3):
                if fits:
                    break
                a.pk = ev_pk(run)
                fits = fits_leaf(run, session, target, a)
        if rng.random() < 0.25:
            a.amount, seq, balance = ev_append(run).amount, None, None  # no seq, no balance: both NULL
            write(run, session, target, [(a, None, None)], False, fits=fits)
        else:
            write(run, session, target, [(a, seq, balance)], True, fits=fits)


def trigger_window(run, sessions):
    """Writes while the guard does not fire for some of them: DISABLE
    TRIGGER, the superuser's session_replication_role = replica, ENABLE
    REPLICA TRIGGER (the guard then fires only for replica sessions) and
    ENABLE ALWAYS TRIGGER (it fires for every session)."""
    rng, model = run.rng, run.model
    a1, a2, ev, rep = sessions
    mode = rng.choice(["disable", "replica_role", "enable_replica", "enable_always"])
    TEST.count("ev window " + mode)
    alter = "ALTER TABLE %s %%s TRIGGER %s" % (TABLE, TRIGGER)
    if mode == "replica_role":
        rep.must("SET session_replication_role = replica")
        rep.replica = True
        ev_bypass_rows(run, rep)
        if rng.random() < 0.5:
            ev_appends(run, rep)
        rep.must("RESET session_replication_role")
        rep.replica = False
        return
    ev.must(alter % {"disable": "DISABLE", "enable_replica": "ENABLE REPLICA",
                     "enable_always": "ENABLE ALWAYS"}[mode])
    model.refresh(ev)
    for _ in range(rng.randint(1, 3)):
        writer = rng.choice([ev, a1, a2] if mode == "disable" else [a1, a2, rep])
        if writer is rep and rng.random() < 0.7:
            rep.must("SET session_replication_role = replica")
            rep.replica = True
        if rng.random() < 0.5:
            ev_bypass_rows(run, writer)
        else:
            ev_appends(run, writer)
        if rep.replica:
            rep.must("RESET session_replication_role")
            rep.replica = False
    ev.must(alter % "ENABLE")
    model.refresh(ev)


def open_transaction(run, sessions):
    """Appends of one transaction that stays open while other backends
    write: a DDL event before it touches the ledger (it holds no lock on it
    yet), then appends (a savepoint rolled back sometimes), the
    superuser's replica-role writes of any group and another session's
    appends to groups this one has not touched, then more appends; COMMIT
    or ROLLBACK, or PREPARE TRANSACTION and then COMMIT PREPARED or
    ROLLBACK PREPARED from another backend (when the server allows
    prepared transactions). At READ COMMITTED the rule holds for every
    statement."""
    rng, model, s = run.rng, run.model, run.s
    a1, a2, ev, rep = sessions
    TEST.count("ev open transactions")
    a1.must("BEGIN")
    a1.open = True
    a1.must("SELECT 1")
    if rng.random() < 0.5:
        ddl_event(run, ev)
    touched = set()

    def own_appends():
        for _ in range(rng.randint(1, 2)):
            if a1.aborted:
                return
            rows = [(ev_append(run), None, None) for _ in range(rng.randint(1, 3))]
            touched.update(canonical(s, a.groups) for a, _, _ in rows)
            TEST.count("ev appends", len(rows))
            write(run, a1, TABLE, rows, False)

    own_appends()
    savepoint = None
    if rng.random() < 0.3 and not a1.aborted:
        a1.must("SAVEPOINT sp")
        savepoint = {i for i, r in model.rows.items() if r.writer == a1.name}
        own_appends()
    rep.must("SET session_replication_role = replica")
    rep.replica = True
    ev_bypass_rows(run, rep)
    rep.must("RESET session_replication_role")
    rep.replica = False
    others = [g for g in run.gen.group_pool if canonical(s, ev_groups(run, g)) not in touched]
    if others:
        rows = []
        for _ in range(rng.randint(1, 3)):
            a = ev_append(run)
            a.groups = ev_groups(run, rng.choice(others))
            rows.append((a, None, None))
        TEST.count("ev appends", len(rows))
        write(run, a2, TABLE, rows, False)
    if savepoint is not None and (a1.aborted or rng.random() < 0.6):
        a1.must("ROLLBACK TO SAVEPOINT sp")
        a1.aborted = False
        for i in [i for i, r in model.rows.items() if r.writer == a1.name and i not in savepoint]:
            del model.rows[i]
    own_appends()
    roll = rng.random()
    ending = "ROLLBACK" if a1.aborted or roll < 0.2 else \
        "PREPARE" if run.prepared_ok and roll < 0.45 else "COMMIT"
    if ending == "PREPARE":
        # Two-phase: a1 prepares, and another backend ends it; a1's own
        # transaction callbacks see only the PREPARE.
        gid = "%s_%d" % (s["schema"], rng.randrange(10**6))
        a1.must("PREPARE TRANSACTION '%s'" % gid)
        run.prepared.append(gid)
        ending = rng.choice(["COMMIT PREPARED", "ROLLBACK PREPARED"])
        TEST.count("ev prepared transactions")
        outcome = ev.run("%s '%s'" % (ending, gid))
        run.prepared.remove(gid)
    else:
        outcome = a1.run(ending)
    a1.open = a1.aborted = False
    if ending.startswith("ROLLBACK"):
        for i in [i for i, r in model.rows.items() if r.writer == a1.name]:
            del model.rows[i]
    if not outcome.ok:
        run.fail("event workload: commit failed", "%s: %s" % (ending, outcome))
    for r in model.rows.values():
        if r.writer == a1.name:
            r.writer = None


def partition_nodes(run, session):
    """(node, parent, bound) of every partition now."""
    return [(r[0], r[1], r[2]) for r in session.must(
        "SELECT t.relid::regclass::text, t.parentrelid::regclass::text, pg_get_expr(c.relpartbound, c.oid) "
        "FROM pg_partition_tree('%s') t JOIN pg_class c ON c.oid = t.relid WHERE t.level > 0" % TABLE, log=False)]


def samples_of(run, node):
    """(groups, pk) of the rows under node: values a table standing in for
    it can hold."""
    tables = run.model.under(node)
    return [(r.groups, r.pk) for r in run.model.rows.values() if r.leaf in tables]


def new_slot(run, session):
    """A bound nobody holds: a freed one, else past the shape's own pk or
    time partitions, else a DEFAULT."""
    s, rng = run.s, run.rng
    if run.free_slots and rng.random() < 0.7:
        return run.free_slots.pop(rng.randrange(len(run.free_slots))), None
    if s["layout"][0] == "pk" and s["partition_kind"] != "hash":
        if rng.random() < 0.2 and not any(b == "DEFAULT" for _, _, b in partition_nodes(run, session)):
            return (TABLE, "DEFAULT", []), None
        p = s["partitions"] + len(run.pk_extra)
        return (TABLE, "FOR VALUES " + pk_bound(s, p), []), p
    if run.free_slots:
        return run.free_slots.pop(rng.randrange(len(run.free_slots))), None
    return None, None


def ddl_event(run, ev):
    """One DDL event from the events session; the model follows what the
    catalog says after it."""
    rng, s, model = run.rng, run.s, run.model
    kinds = ["truncate", "vacuum_full", "cluster"]
    if s["partitioned"]:
        kinds += ["detach", "detach", "reattach", "reattach", "drop", "create", "create_filled", "create_filled"]
    kind = rng.choice(kinds)
    nodes = partition_nodes(run, ev) if s["partitioned"] else []
    outcome = None
    if kind == "detach" and nodes:
        node, parent, bound = rng.choice(nodes)
        samples = samples_of(run, node)
        outcome = ev.run("ALTER TABLE %s DETACH PARTITION %s" % (parent, node))
        if outcome.ok:
            run.detached[node] = (parent, bound, samples)
    elif kind == "reattach" and run.detached:
        node = rng.choice(sorted(run.detached))
        parent, bound, samples = run.detached[node]
        outcome = ev.run("ALTER TABLE %s ATTACH PARTITION %s %s" % (parent, node, bound))
        if outcome.ok:
            del run.detached[node]
    elif kind == "drop" and (nodes or run.detached):
        if run.detached and (rng.random() < 0.5 or not nodes):
            node = rng.choice(sorted(run.detached))
            slot = run.detached[node]
        else:
            node, parent, bound = rng.choice(nodes)
            slot = (parent, bound, samples_of(run, node))
        outcome = ev.run("DROP TABLE %s" % node)
        if outcome.ok:
            run.detached.pop(node, None)
            run.free_slots.append(slot)
    elif kind in ("create", "create_filled"):
        slot, fresh_p = new_slot(run, ev)
        if slot is not None:
            parent, bound, samples = slot
            if parent in model.tables:  # else the slot went with its parent
                name = "ledger_n%d" % run.fresh
                run.fresh += 1
                if fresh_p is not None:
                    run.pk_extra.append(fresh_p)
                if kind == "create":
                    outcome = ev.run("CREATE TABLE %s PARTITION OF %s %s" % (name, parent, bound))
                else:
                    outcome = create_filled(run, ev, name, parent, bound, samples, fresh_p)
    elif kind == "truncate":
        target = rng.choice(sorted(model.leaves)) if s["partitioned"] and model.leaves and rng.random() < 0.7 \
            else TABLE
        outcome = ev.run("TRUNCATE %s" % target)
        if outcome.ok:
            gone = model.leaves if target == TABLE else {target}
            for i in [i for i, r in model.rows.items() if r.leaf in gone]:
                del model.rows[i]
    elif kind == "vacuum_full":
        target = rng.choice(sorted(model.leaves)) if s["partitioned"] and model.leaves and rng.random() < 0.6 \
            else TABLE
        outcome = ev.run("VACUUM FULL %s" % target)
    elif kind == "cluster":
        target = rng.choice(sorted(model.leaves)) if s["partitioned"] and model.leaves else TABLE
        if target in model.tables:
            # A btree index that CLUSTER can use: the chain's (group..., seq) first.
            indexes = ev.must(
                "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = '%s'::regclass AND am.amname = 'btree' "
                "AND i.indpred IS NULL ORDER BY pg_get_indexdef(i.indexrelid) LIKE '%%sq)' DESC, 1" % target,
                log=False)
            if indexes:
                outcome = ev.run("CLUSTER %s USING %s" % (target, indexes[0][0]))
    if outcome is None:
        return
    TEST.count("ev event %s%s" % (kind, "" if outcome.ok else " refused"))
    if not ev.alive():
        raise Crash("backend %d gone after the %s event" % (ev.pid, kind))
    model.refresh(ev)


def create_filled(run, ev, name, parent, bound, samples, fresh_p):
    """CREATE TABLE + rows written before ATTACH (no guard on a table of
    its own), some with seq values past the chain's; then ATTACH."""
    s, rng = run.s, run.rng
    ev.must("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING GENERATED)" % (name, TABLE))
    rows = []
    for _ in range(rng.randint(0, 4)):
        if samples:
            groups, pk = rng.choice(samples)
        else:
            groups = ev_groups(run)
            pk = key_in_pk_bound(s, fresh_p, rng) if fresh_p is not None else ev_pk(run)
        a, seq, balance = bypass_row(run, groups, pk)
        if seq is not None and rng.random() < 0.5:
            seq = min(INT_RANGE[s["seq_type"]][1], (max(run.model.group_seqs(canonical(s, groups)) or [0])) +
                      rng.randint(1, 30))
        rows.append((a, seq, balance))
    if rows:
        sql, _ = write_sql(ev, s, name, rows, True)
        if ev.run(sql).ok:
            for a, seq, balance in rows:
                _, amount = stored_value(a.amount, s["amount_type"])
                run.model.rows[a.id] = Stored(canonical(s, a.groups), seq, balance, amount, a.groups, a.pk, name,
                                              bypassed=True)
                TEST.count("ev bypassed rows")
                run.model.bypassed += 1
    outcome = ev.run("ALTER TABLE %s ATTACH PARTITION %s %s" % (parent, name, bound))
    if not outcome.ok:
        run.detached[name] = (parent, bound, samples)
    return outcome


def expected_verify(model):
    """verify_running_balance()'s rows as the model has the ledger:
    (seq, problem, expected, stored) each; ambiguous when the order of a
    group's rows is not fixed (equal seqs, several NULL seqs)."""
    groups = {}
    for r in model.rows.values():
        if r.leaf in model.leaves:
            groups.setdefault(r.key, []).append(r)
    rows, ambiguous = [], False
    for entries in groups.values():
        seqs = [r.seq for r in entries if r.seq is not None]
        if len(seqs) != len(set(seqs)) or len(entries) - len(seqs) > 1:
            ambiguous = True
        entries.sort(key=lambda r: (r.seq is None, r.seq or 0))
        previous = None
        for r in entries:
            base = previous.balance if previous is not None and previous.balance is not None else model.initial
            with localcontext(WIDE):
                expected = Decimal(base) + Decimal(r.amount)
            if r.balance is None or Decimal(r.balance) != expected:
                rows.append((r.seq, "balance", expected, None if r.balance is None else Decimal(r.balance)))
            expected_seq = (previous.seq if previous is not None and previous.seq is not None else 0) + 1
            if r.seq != expected_seq:
                rows.append((r.seq, "seq", Decimal(expected_seq), None if r.seq is None else Decimal(r.seq)))
            previous = r
    return sorted(rows, key=repr), ambiguous


def final_checks(run, session):
    """Every stored row as the model has it, and nothing else; then
    verify_running_balance() reports exactly the problems the model's rows
    have (none unless a bypass or an event left some), and a ledger the
    model holds clean passes the chain check too."""
    s, model = run.s, run.model
    model.refresh(session)
    stored = {r[0]: r for r in session.must(
        "SELECT id, tableoid::regclass::text, sq, bal::text FROM %s" % TABLE, log=False)}
    expected = {i: r for i, r in model.rows.items() if r.leaf in model.leaves}
    if set(stored) != set(expected):
        run.fail("event workload: ledger rows",
                 "rows in the ledger but not in the model: %s; in the model but not in the ledger: %s" % (
                     sorted(set(stored) - set(expected))[:5], sorted(set(expected) - set(stored))[:5]))
        return
    for i, r in sorted(expected.items()):
        _, leaf, seq, balance = stored[i]
        if (leaf, seq, to_number(s, balance)) != (r.leaf, r.seq, r.balance):
            run.fail("event workload: ledger rows", "row %d: stored seq %s balance %s in %s, the model has %s" % (
                i, seq, balance, leaf, r))
            return
    TEST.count("rows checked", len(stored))
    predicted, ambiguous = expected_verify(model)
    outcome = session.run("SELECT seq, problem, expected, stored FROM raceguard.verify_running_balance('%s')" % TABLE,
                          log=False)
    if not outcome.ok:
        run.fail("verify_running_balance error", "verify_running_balance() failed: %s" % outcome)
        return
    actual = [tuple(r) for r in outcome.rows]

    def norm(rows):
        return sorted(((seq, problem, None if expected is None else Decimal(expected).normalize(),
                        None if stored is None else Decimal(stored).normalize())
                       for seq, problem, expected, stored in rows), key=repr)
    if ambiguous:
        TEST.count("ev ambiguous verify")
        if bool(actual) != bool(predicted):
            run.fail("event workload: verify_running_balance",
                     "verify_running_balance() reports %d problems, the model's rows have %d" % (
                         len(actual), len(predicted)))
    else:
        reported = [tuple(map(str, r)) for r in norm(actual)]
        modelled = [tuple(map(str, r)) for r in norm(predicted)]
        if reported != modelled:
            run.fail("event workload: verify_running_balance",
                     "verify_running_balance() reports %d problems (seq, problem, expected, stored), the model's rows "
                     "have %d; only reported: %s; only the model's: %s" % (
                         len(reported), len(modelled), [r for r in reported if r not in modelled][:5],
                         [r for r in modelled if r not in reported][:5]))
    if not predicted:
        problems, _ = chain_problems(session, s, model.initial)
        if problems:
            run.fail("event workload: chain broken", "the model's rows make clean chains, the ledger has: %s" %
                     problems[:3])


def events_workload(s, seed, initial, min_balance):
    """Appends from two backends in turn, with events between them from a
    third (DDL) and bypassed writes (the owner's and a superuser's), each
    append predicted by the rule above. Returns (failures, log)."""
    run = EventRun(s, seed, initial, min_balance)
    rng = run.rng
    try:
        a1, a2, ev, rep = (run.session(n) for n in ("a1", "a2", "ev", "rep"))
        for sql in shape_ddl(s):
            ev.must(sql)
        run.model.refresh(ev)
        run.prepared_ok = int(ev.must("SHOW max_prepared_transactions", log=False)[0][0]) > 0
        sessions = (a1, a2, ev, rep)
        steps = rng.randint(20, 45)
        turn = 0
        for _ in range(steps):
            roll = rng.random()
            if roll < 0.45:
                turn += rng.random() < 0.7  # mostly the other session's turn
                ev_appends(run, (a1, a2)[turn % 2])
            elif roll < 0.78:
                ddl_event(run, ev)
            elif roll < 0.92:
                trigger_window(run, sessions)
            else:
                open_transaction(run, sessions)
            if run.failures:
                break
        if not run.failures:
            final_checks(run, ev)
        TEST.count("ev workloads")
        return run.failures, run.log
    except Crash as crash:
        return [("backend crash", str(crash))], run.log
    except RuntimeError as error:
        return [("test setup error", str(error))], run.log
    finally:
        run.close()


# ---- one shape ------------------------------------------------------------

def run_shape(index, rng):
    s = make_shape(rng, index)
    run = ShapeRun(s, rng)
    TEST.count("shapes")
    if TEST.verbose:
        print("shape %d: %s" % (index, "; ".join(shape_ddl(s)[3:])), flush=True)
    try:
        outcome = run.build()
        if not outcome.ok:
            TEST.count("refused " + str(outcome.sqlstate))
            if check_definition_error(run, outcome, "CREATE TRIGGER") and s["must_accept"]:
                TEST.fail(index, "a valid shape refused", "the documented shape was refused: %s" % outcome,
                          harness.render(run.log))
            return
        bad = [name for name in ("initial", "min_balance") if s[name] is not None and
               (fam(s["balance_type"]) == "other" or option_value(s[name], s["balance_type"]) is None)]
        if s["generated"] in ("balance", "seq"):
            TEST.fail(index, "generated %s accepted" % s["generated"],
                      "CREATE TRIGGER accepted a generated %s column, which the guard cannot write" % s["generated"],
                      harness.render(run.log))
            return
        # A probe append, rolled back: a shape may be refused at its first row.
        gen = Gen(rng, s)
        probe = gen.append(False)
        probe.amount, probe.idem = "0", None
        probe.groups = [GROUP_KINDS[k][2](rng, key) for k, key in zip(s["groups"], gen.group_pool[0])]
        sql, _ = op_sql(run.session, s, ("insert", [probe]))
        run.session.must("BEGIN")
        outcome = run.session.run(sql)
        run.session.run("ROLLBACK")
        if not run.session.alive():
            raise Crash("backend gone after the probe append")
        if not outcome.ok:
            if s["generated"] in ("amount", "group") and outcome.sqlstate in ("23502",):
                TEST.count("refused at first row " + outcome.sqlstate)
                return
            TEST.count("refused at first row " + outcome.sqlstate)
            if check_definition_error(run, outcome, "the first append") and s["must_accept"]:
                TEST.fail(index, "a valid shape refused", "the documented shape failed its first append: %s" % outcome,
                          harness.render(run.log))
            return
        if bad:
            TEST.fail(index, "invalid option accepted",
                      "%s=%s is not a value of %s, yet an append succeeded" % (bad[0], s[bad[0]], s["balance_type"]),
                      harness.render(run.log))
            return
        if s["generated"] in ("amount", "group"):
            TEST.fail(index, "generated %s accepted" % s["generated"],
                      "an append succeeded although the BEFORE trigger sees no value in the generated %s" %
                      s["generated"], harness.render(run.log))
            return
        TEST.count("accepted")
        if s["partitioned"]:
            TEST.count("partitioned by a group column" if partition_group_columns(s) else "partitioned otherwise")
            if "pk" in s["layout"]:
                TEST.count("partitioned by " + s["partition_kind"])
        initial = option_value(s["initial"], s["balance_type"]) if s["initial"] is not None else 0
        if fam(s["balance_type"]) == "numeric":
            initial = Decimal(initial)
        min_balance = option_value(s["min_balance"], s["balance_type"]) if s["min_balance"] is not None else None
        run.close()

        # 1. One session, every outcome predicted.
        script_seed = rng.randrange(2**31)
        script = make_script(rng, s, gen)
        failures, log, count, statements = execute_script(s, script_seed, script, initial, min_balance)
        TEST.count("workloads")
        TEST.count("rows checked", count)
        TEST.count("statements", statements)
        if failures:
            kind, detail = failures[0]
            reduced = reduce_script(s, script_seed, script, initial, min_balance, kind)
            failures2, log2, _, _ = execute_script(s, script_seed, reduced, initial, min_balance, quiet=True)
            same = [f for f in failures2 if f[0] == kind]
            if same:
                detail, log = same[0][1], log2
            TEST.fail(index, kind, detail, harness.render(log))
            return

        # 2. REPEATABLE READ probes and 3. several sessions, on a fresh shape.
        run = ShapeRun(s, rng)
        if not run.build().ok:
            return
        TEST.count("rows checked", rr_probes(run, gen, initial, min_balance))
        TEST.count("workloads")
        count = concurrent_workload(run, gen, initial, min_balance)
        TEST.count("rows checked", count)
        TEST.count("workloads")
        run.close()

        # 4. Events between appends from several backends.
        events_seed = rng.randrange(2**31)
        failures, log = events_workload(s, events_seed, initial, min_balance)
        TEST.count("workloads")
        if failures:
            kind, detail = failures[0]
            TEST.fail(index, kind, detail, harness.render(log, sessions=True))
    except Crash as crash:
        TEST.fail(index, "backend crash", str(crash), harness.render(run.log))
    except RuntimeError as error:
        TEST.fail(index, "test setup error", str(error), harness.render(run.log))
    finally:
        run.close()
        cleanup = Session([])
        cleanup.run("DROP SCHEMA IF EXISTS %s CASCADE" % s["schema"], log=False)
        cleanup.close()


def main():
    global TEST, HAVE_CI, SERVER_VERSION_NUM
    TEST = harness.Test("running_balance")
    setup = Session([])
    HAVE_CI = harness.have_ci_collation(setup)
    SERVER_VERSION_NUM = harness.server_version_num(setup)
    wrong = check_input_model(setup)
    setup.close()
    if wrong:
        print("FAIL [input model] the model's input rules do not match this server:\n" + "\n".join(wrong), flush=True)
        sys.exit(1)
    for index, rng in TEST.shapes():
        run_shape(index, rng)
    c = TEST.counters
    refused = ", ".join("%s %d" % (k[len("refused "):], v) for k, v in sorted(c.items()) if k.startswith("refused "))
    events = ", ".join("%s %d" % (k[len("ev event "):], v) for k, v in sorted(c.items()) if k.startswith("ev event "))
    windows = ", ".join("%s %d" % (k[len("ev window "):], v) for k, v in sorted(c.items())
                        if k.startswith("ev window "))
    kinds = ", ".join("%s %d" % (k[len("partitioned by "):], v) for k, v in sorted(c.items())
                      if k.startswith("partitioned by ") and k != "partitioned by a group column")
    TEST.finish("%d shapes, %d accepted (partitioned by a group column %d, otherwise %d; by {%s}), refused: {%s}, "
                "%d workloads, %d statements, %d rows checked, %d retries; events workloads %d: events {%s}, "
                "bypass windows {%s}, %d open transactions (%d prepared), %d appends (%d into another leaf than the "
                "group's last entry's), %d bypassed rows, %d ties, %d unrouted" % (
                    c.get("shapes", 0), c.get("accepted", 0), c.get("partitioned by a group column", 0),
                    c.get("partitioned otherwise", 0), kinds, refused, c.get("workloads", 0),
                    c.get("statements", 0) + c.get("ev statements", 0),
                    c.get("rows checked", 0) + c.get("ev rows checked", 0), c.get("rb retries", 0),
                    c.get("ev workloads", 0), events, windows, c.get("ev open transactions", 0),
                    c.get("ev prepared transactions", 0),
                    c.get("ev appends", 0), c.get("ev appends after the last entry's leaf", 0),
                    c.get("ev bypassed rows", 0), c.get("ev ties", 0),
                    c.get("ev unrouted", 0)))


if __name__ == "__main__":
    main()
