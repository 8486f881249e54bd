"""Fuzzes the trigger arguments of the four trigger guards.

Random argument lists (column names right and wrong, in odd case, quoted,
padded, system columns; options with random keys and values; '=' in odd
places; repeated options; numbers out of range; huge and odd unicode
strings; many arguments; for transition, edges with odd states, quotes,
'>' and NULL in odd places) with random timing, events and level. Every
CREATE TRIGGER (the migration-time check validates there) must either
succeed with a guard that works on its first rows, or fail with a clear
error: a proper SQLSTATE (never XX000; for a transition state its type's
input rejects, the input function's own data exception), and for
raceguard's own errors a message naming the trigger and the table. After every statement the same
backend still answers.
"""
import os

import harness
from harness import Session, Crash, DEFINITION_SQLSTATES

TEST = None
SCHEMA = "fuzz_%d" % os.getpid()  # runs may share a database
TABLE = "fz"
TRIGGER = "fz_guard"

COLUMNS = ["lock_version", "v", "Mixed Case", "a=b", "ü", " sp", "amount", "bal", "seq", "acct", "txt", "ts", "f",
           "small"]
GUARDS = ["lock_version", "immutable_once_set", "running_balance", "transition"]
OPTION_KEYS = ["strict", "sqlstate", "allow_unset", "seq", "min_balance", "initial"]
# PostgreSQL's own errors a fuzzed definition may meet besides raceguard's:
# a trigger protocol CREATE TRIGGER itself refuses (42809, 0A000), names.
PG_SQLSTATES = {"42809", "0A000", "42P17", "54000", "22021"}
RUNTIME_SQLSTATES = {"40001", "23514", "23502", "22003", "23505"}


def odd_string(rng):
    choice = rng.randrange(12)
    if choice == 0:
        return ""
    if choice == 1:
        return rng.choice(["=", "==", "=x", "x=", "a=b=c", "=seq", "seq==x", "strict==true", " = "])
    if choice == 2:
        return "a" * rng.choice([63, 64, 1000, 100000])
    if choice == 3:
        return rng.choice(["\u00e9", "e\u0301", "\U0001F600", "\u202e", "\u0000x".replace("\u0000", ""),
                           "\u6f22\u5b57", "\ufeffseq", "\u00a0acct", "\u0130"])
    if choice == 4:
        return rng.choice(["'", "''", "\"", "\"lock_version\"", "\\", "\\x00", "%s", "%n", "$1", "--", "/*"])
    if choice == 5:
        return rng.choice(["xmin", "ctid", "tableoid", "cmax", "oid", "xmax"])
    if choice == 6:
        return rng.choice(["LOCK_VERSION", "Lock_Version", "mixed case", "MIXED CASE", "A=B", "Ü", "sp", "acct "])
    if choice == 7:
        return rng.choice(["1e999", "-0", "99999999999999999999999999999999", "-9223372036854775809", "NaN",
                           "Infinity", "0x10", "1_000", "+", "-", ".", "1.2.3", " 1", "１"])
    return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0xa0, 0x2fff)])) for _ in range(rng.randint(1, 12)))


def odd_edge(rng):
    """A transition edge, sensible or not."""
    if rng.random() < 0.5:
        return rng.choice(["a>", ">", ">>", "a>b>c", '"a>b">c', '"a', 'a>"b"x', 'a"b>c', "NULL>NULL", "null>a",
                           " a>b", "a> b", '>"NULL"', '""">a', '"">a', ">a", "a>b", "b>a", "a>a", "1>2", ">1",
                           "2>1", "0>1.5", ">now", "now>infinity", ">0", "x=y>z", "a>x=y", ">" + "a" * 70000])
    return odd_string(rng) + (rng.choice([">", ">>", "=", '">"']) if rng.random() < 0.8 else "") + odd_string(rng)


def option(rng):
    key = rng.choice(OPTION_KEYS) if rng.random() < 0.8 else odd_string(rng)
    if rng.random() < 0.5:
        value = rng.choice(["true", "false", "yes", "no", "on", "off", "1", "0", "t", "23514", "40001", "23514 ",
                            "seq", "acct", "0", "-5", "10", "100.25", "32768", "9223372036854775807"])
    else:
        value = odd_string(rng)
    return "%s=%s" % (key, value)


def arguments(rng, guard):
    args = []
    # A sensible start most of the time, so that the later arguments matter.
    if rng.random() < 0.6:
        if guard == "lock_version":
            args = rng.choice([[], ["lock_version"], ["v"], ["small"]])
        elif guard == "immutable_once_set":
            args = [rng.choice(["txt", "acct", "f", "ts", "Mixed Case"])]
        elif guard == "transition":
            args = rng.choice([["txt", ">a", "a>b"], ["acct", ">1", "1>2", "2>1"], ["f", ">0", "0>1.5"],
                               ["ts", ">now", "now>infinity"], ["Mixed Case", ">NULL", "NULL>1"]])
        else:
            args = ["amount", "bal"] + rng.choice([[], ["acct"], ["Mixed Case"]]) + ["seq=seq"]
    for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 40])):
        roll = rng.random()
        if guard == "transition" and roll < 0.4:
            args.insert(rng.randint(min(1, len(args)), len(args)), odd_edge(rng))
        elif roll < 0.3:
            args.insert(rng.randint(0, len(args)), rng.choice(COLUMNS))
        elif roll < 0.65:
            args.insert(rng.randint(0, len(args)), option(rng))
        elif roll < 0.75 and args:
            args.append(rng.choice(args))  # repeated
        else:
            args.insert(rng.randint(0, len(args)), odd_string(rng))
    return args


def definition(rng, guard, args):
    if rng.random() < 0.8:
        timing = {"lock_version": "BEFORE", "immutable_once_set": rng.choice(["BEFORE", "AFTER"]),
                  "running_balance": "BEFORE", "transition": "BEFORE"}[guard]
        events = {"lock_version": rng.choice(["INSERT OR UPDATE", "UPDATE"]),
                  "immutable_once_set": "UPDATE", "running_balance": "INSERT OR UPDATE OR DELETE",
                  "transition": "INSERT OR UPDATE"}[guard]
        level = "ROW"
    else:
        timing = rng.choice(["BEFORE", "AFTER"])
        events = rng.choice(["INSERT", "UPDATE", "DELETE", "INSERT OR DELETE", "UPDATE OF txt", "TRUNCATE",
                             "INSERT OR UPDATE OR DELETE"])
        level = rng.choice(["ROW", "STATEMENT"]) if events != "TRUNCATE" else "STATEMENT"
    if rng.random() < 0.1 and "UPDATE OF" not in events:
        events = events.replace("UPDATE", "UPDATE OF " + rng.choice(["txt", "amount", "lock_version", "id"]), 1)
    # A condition every guard must refuse, whatever it tests.
    condition = " WHEN (%s)" % rng.choice(["true", "false", "1 = 1"]) if rng.random() < 0.1 else ""
    literal = ", ".join(harness.quote_literal(a) for a in args)
    return "CREATE TRIGGER %s %s %s ON %s FOR EACH %s%s EXECUTE FUNCTION raceguard.%s(%s)" % (
        TRIGGER, timing, events, TABLE, level, condition, guard, literal)


def lets_rows_past(sql):
    """A definition that would fire for some rows only: WHEN or UPDATE OF."""
    return " WHEN (" in sql or "UPDATE OF " in sql


SETUP = [
    "DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA,
    "CREATE SCHEMA %s" % SCHEMA,
    "CREATE TABLE %s.%s (id integer PRIMARY KEY, lock_version integer, v bigint, \"Mixed Case\" integer, "
    "\"a=b\" integer, \"ü\" integer, \" sp\" integer, amount numeric, bal numeric, seq bigint, acct integer, "
    "txt text, ts timestamptz, f float8, small smallint)" % (SCHEMA, TABLE),
    "CREATE INDEX ON %s.%s (acct, seq)" % (SCHEMA, TABLE),
    "CREATE INDEX ON %s.%s (seq)" % (SCHEMA, TABLE),
    "CREATE INDEX ON %s.%s (\"Mixed Case\", seq)" % (SCHEMA, TABLE),
]

WORKLOAD = [
    "INSERT INTO %s (id, amount, acct, \"Mixed Case\", txt, f, ts) VALUES (1, 10, 1, 1, 'a', 0, now())" % TABLE,
    "INSERT INTO %s (id, amount, acct, \"Mixed Case\", txt, f, ts) VALUES (2, -3, 1, 1, NULL, NULL, NULL)" % TABLE,
    "UPDATE %s SET txt = 'b', f = 1, acct = acct, \"Mixed Case\" = 2 WHERE id = 1" % TABLE,
    "UPDATE %s SET txt = 'c' WHERE id = 2" % TABLE,
    "UPDATE %s SET lock_version = 5 WHERE id = 2" % TABLE,
    "DELETE FROM %s WHERE id = 2" % TABLE,
]


def check_alive(session, log, what):
    if not session.alive():
        raise Crash("backend %d gone after %s" % (session.pid, what))


def run_case(index, rng, session):
    guard = rng.choice(GUARDS)
    args = arguments(rng, guard)
    sql = definition(rng, guard, args)
    log = [("s1", "SET search_path = %s, public" % SCHEMA)]
    session.log = log
    short = sql if len(sql) < 600 else sql[:600] + "...(%d characters)" % len(sql)
    TEST.count("cases")
    session.must("BEGIN")
    try:
        out = session.run(sql)
        check_alive(session, log, short)
        if not out.ok:
            TEST.count("refused " + out.sqlstate)
            # A transition state its column's type rejects: the input function's own SQLSTATE.
            state_refused = guard == "transition" and out.sqlstate.startswith("22") and "in edge" in out.message
            if state_refused and not harness.names_trigger_and_table(out, TRIGGER, TABLE):
                TEST.fail(index, "refusal without trigger/table name", "%s: %s\n  args: %r" % (guard, out, args[:20]),
                          [short])
            elif state_refused:
                pass
            elif out.sqlstate == "XX000" or (out.sqlstate not in DEFINITION_SQLSTATES and out.sqlstate not in PG_SQLSTATES):
                TEST.fail(index, "unclear refusal SQLSTATE", "%s: %s\n  args: %r" % (guard, out, args[:20]),
                          [short])
            elif out.sqlstate in DEFINITION_SQLSTATES and not harness.names_trigger_and_table(out, TRIGGER, TABLE) \
                    and not (out.sqlstate == "0A000" and "raceguard" not in out.message):  # PostgreSQL's own
                TEST.fail(index, "refusal without trigger/table name", "%s: %s\n  args: %r" % (guard, out, args[:20]),
                          [short])
            return
        TEST.count("accepted")
        if lets_rows_past(sql):
            TEST.fail(index, "guard accepted with WHEN or UPDATE OF", "%s\n  args: %r" % (guard, args[:20]), [short])
            return
        for statement in WORKLOAD:
            w = session.run("SAVEPOINT w")
            w = session.run(statement)
            check_alive(session, log, statement)
            if not w.ok:
                session.run("ROLLBACK TO SAVEPOINT w")
                TEST.count("rows refused " + w.sqlstate)
                if w.sqlstate in DEFINITION_SQLSTATES or w.sqlstate == "XX000" or (
                        w.sqlstate not in RUNTIME_SQLSTATES):
                    TEST.fail(index, "accepted definition fails at its first row",
                              "CREATE TRIGGER succeeded, then %s failed with %s\n  args: %r" % (
                                  statement, w, args[:20]), [short, statement])
                    return
        for check in ("SELECT count(*) FROM raceguard.guards", "SELECT count(*) FROM raceguard.check_guards()"):
            c = session.run(check)
            check_alive(session, log, check)
            if not c.ok:
                TEST.fail(index, "catalog view fails", "%s failed with %s after %s" % (check, c, short), [short, check])
    finally:
        session.run("ROLLBACK")


def main():
    global TEST
    TEST = harness.Test("argument_fuzz", default_seconds=20)
    setup = Session([])
    for sql in SETUP:
        setup.must(sql)
    setup.close()
    session = Session([], schema=SCHEMA)
    for index, rng in TEST.shapes():
        try:
            run_case(index, rng, session)
        except Crash as crash:
            TEST.fail(index, "backend crash", str(crash), harness.render(session.log))
            session.close()
            session = Session([], schema=SCHEMA)
    session.close()
    cleanup = Session([])
    cleanup.run("DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA)
    cleanup.close()
    c = TEST.counters
    refused = ", ".join("%s %d" % (k[len("refused "):], v) for k, v in sorted(c.items()) if k.startswith("refused "))
    rows = ", ".join("%s %d" % (k[len("rows refused "):], v) for k, v in sorted(c.items())
                     if k.startswith("rows refused "))
    TEST.finish("%d CREATE TRIGGERs, %d accepted, refused: {%s}; rows refused by accepted guards: {%s}" % (
        c.get("cases", 0), c.get("accepted", 0), refused, rows))


if __name__ == "__main__":
    main()
