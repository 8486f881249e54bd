"""Fuzzes how the trigger guards are fired.

Each case attaches one guard (lock_version, immutable_once_set or
running_balance, with valid arguments for the table) with a timing (BEFORE,
AFTER, INSTEAD OF), a level (ROW, STATEMENT) and events (INSERT, UPDATE,
DELETE, TRUNCATE) to a table of a kind (temporary, plain, partitioned with
the trigger on the parent and rows in the partitions, a view, unlogged),
with check_function_bodies on or off at CREATE TRIGGER, in an enabled state
(ENABLE, DISABLE, ENABLE ALWAYS, ENABLE REPLICA) under a
session_replication_role (origin, replica), with raceguard.restoring off or
on, as one of three actors: a superuser, a login role that is no superuser
(it owns what it makes, as any role may make a TEMP table), and a
superuser's session after SET ROLE to that role (the superuser's settings
stay). Then a fixed workload (inserts that carry a seq and a balance,
updates of each guarded column, a delete, a TRUNCATE, an insert straight
into a partition) runs statement by statement, with check_function_bodies
alternating on and off between statements.

Every outcome is predicted by a model written here, from the specification:
- CREATE TRIGGER is refused by PostgreSQL itself where it refuses that
  firing mode on that kind of relation (42809, 0A000); else a guard fired
  in a way it cannot serve is refused with 39P01 naming the trigger and the
  table when check_function_bodies is on, and created with one WARNING when
  it is off; a guard fired as it should be is created. ALTER TABLE ...
  ENABLE [ALWAYS | REPLICA] TRIGGER of a guard that cannot serve is refused
  the same way with check_function_bodies on; a view's enabled state cannot
  be altered (42809).
- A statement that fires a guard created in a mode it cannot serve fails
  with 39P01 and writes nothing. One that fires a guard in a mode it serves
  gets the guard's result: lock_version sets a NULL version to 1 on INSERT
  and bumps it on UPDATE (40001 or its sqlstate= on a stale or, strict, a
  blind write); immutable_once_set refuses a change of a set column
  (23514); running_balance computes balance and seq (the supplied ones
  replaced), refuses an overdraft past min_balance, an UPDATE of a ledger
  column and a DELETE (23514), and keeps a supplied seq and balance only
  with raceguard.restoring on for a superuser, saying so in one WARNING per
  statement (one other WARNING when the setting is on and not honoured).
  A statement that fires no guard (disabled, or not enabled for the
  session's replication role) writes what it says; an INSTEAD OF trigger
  that does not fire makes the view's write a no-op, and a view's
  statement-level triggers fire only when an INSTEAD OF row trigger handles
  the statement, so a view with a statement-level guard mostly gets one
  that writes the base table (PostgreSQL's rules).
- After every step the table holds exactly the predicted rows, and the
  server is alive: the case's backend still answers, a connection held open
  since the start still answers (a crashed backend makes PostgreSQL end
  every backend: pg_postmaster_start_time() does not change then), and a
  fresh connection sees the same pg_postmaster_start_time().

Every value of every dimension is covered each run: every firing mode
(guard x timing x level x event) is tried with check_function_bodies on and
off, the latter in an enabled state that fires, and every pair of values of
any two dimensions occurs at least once; random cases follow until the time
budget is spent. Seeded and replayable: RACEGUARD_SEED replays a run,
RACEGUARD_SHAPE=i with it only case i; RACEGUARD_RANDOM_SECONDS (30) bounds
the run, but the covering cases always run (about 20 s). A crash ends the
run (the server needs time to recover, and every later case would fail).
Needs PG* set to a superuser; works in PGDATABASE, with a schema and a
login role of its own that it drops at the end.
"""
import os
import random
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "random"))

import harness  # noqa: E402
from harness import Crash, DEFINITION_SQLSTATES  # noqa: E402

SCHEMA = "raceguard_firing"
LOGIN_ROLE = "raceguard_firing_login"
TRIGGER = "fm_guard"

GUARDS = ["lock_version", "immutable_once_set", "running_balance"]
EVENTS = ["INSERT", "UPDATE", "DELETE", "TRUNCATE"]
DIMENSIONS = [
    ("guard", GUARDS),
    ("timing", ["BEFORE", "AFTER", "INSTEAD OF"]),
    ("level", ["ROW", "STATEMENT"]),
    ("event", EVENTS),
    ("table", ["temp", "plain", "partitioned", "view", "unlogged"]),
    ("check_function_bodies", ["on", "off"]),
    ("enabled", ["ENABLE", "DISABLE", "ENABLE ALWAYS", "ENABLE REPLICA"]),
    ("session_replication_role", ["origin", "replica"]),
    ("restoring", ["off", "on"]),
    ("actor", ["superuser", "login role", "SET ROLE"]),
]
# Enabled states and replication roles under which a trigger fires.
FIRING_STATES = [("ENABLE", "origin"), ("ENABLE ALWAYS", "origin"), ("ENABLE ALWAYS", "replica"),
                 ("ENABLE REPLICA", "replica")]
ENABLED_CHAR = {"ENABLE": "O", "DISABLE": "D", "ENABLE ALWAYS": "A", "ENABLE REPLICA": "R"}
COLUMNS = ("id", "acct", "amount", "bal", "seq", "lock_version", "owner_id", "note")
COLUMN_DEFINITIONS = ("id integer PRIMARY KEY, acct integer NOT NULL, amount bigint NOT NULL, bal bigint, "
                      "seq bigint, lock_version integer, owner_id integer, note text")
COLUMN_TYPES = ("integer", "integer", "bigint", "bigint", "bigint", "integer", "integer", "text")
ID, ACCT, AMOUNT, BAL, SEQ, VERSION, OWNER, NOTE = range(len(COLUMNS))
RESTORING_KEPT = "raceguard.restoring is on: ledger"
RESTORING_IGNORED = "raceguard.restoring is on but not honoured"
PLACEHOLDER_REFUSED = 'permission denied to set parameter "raceguard.restoring"'

# The INSTEAD OF trigger a view's statement-level guard needs to fire: it
# writes the view's row into the base table named by its argument.
VIEW_WRITE = """CREATE FUNCTION %s.view_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO %%s SELECT ($1).*', TG_ARGV[0]) USING NEW;
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' THEN
        EXECUTE format('UPDATE %%s SET (%s) = (SELECT ($1).*) WHERE id = ($2).id', TG_ARGV[0]) USING NEW, OLD;
        RETURN NEW;
    END IF;
    EXECUTE format('DELETE FROM %%s WHERE id = ($1).id', TG_ARGV[0]) USING OLD;
    RETURN OLD;
END
$$""" % (SCHEMA, ", ".join(COLUMNS))

TEST = None
PASSWORD = secrets.token_hex(16)
SERVER_VERSION = 0
WATCH = None


# ---- what PostgreSQL and the specification say ------------------------------------------------

def postgres_refusals(kind, timing, level, events):
    """The SQLSTATEs PostgreSQL's own CREATE TRIGGER refuses this firing
    mode with on this kind of relation (empty: it accepts it)."""
    codes = set()
    if kind == "view":
        if timing in ("BEFORE", "AFTER") and level == "ROW":
            codes.add("42809")  # views cannot have row-level BEFORE or AFTER triggers
        if "TRUNCATE" in events:
            codes.add("42809")  # views cannot have TRUNCATE triggers
        if timing == "INSTEAD OF" and level == "STATEMENT":
            codes.add("0A000")  # INSTEAD OF triggers must be FOR EACH ROW
    elif timing == "INSTEAD OF":
        codes.add("42809")  # tables cannot have INSTEAD OF triggers
    if level == "ROW" and "TRUNCATE" in events:
        codes.add("0A000")  # TRUNCATE FOR EACH ROW triggers are not supported
    return codes


def guard_serves(guard, timing, level, events):
    """Whether the guard can be fired this way (SPEC sections 1-3): ROW
    level; lock_version BEFORE on INSERT and/or UPDATE; immutable_once_set
    BEFORE or AFTER on UPDATE (INSERT and DELETE events are no-ops);
    running_balance BEFORE on INSERT (and UPDATE and DELETE, refused)."""
    if level != "ROW":
        return False
    if guard == "lock_version":
        return timing == "BEFORE" and events <= {"INSERT", "UPDATE"}
    if guard == "immutable_once_set":
        return timing in ("BEFORE", "AFTER") and events <= {"INSERT", "UPDATE", "DELETE"}
    return timing == "BEFORE" and "INSERT" in events and events <= {"INSERT", "UPDATE", "DELETE"}


def trigger_fires(enabled_char, replication_role):
    """PostgreSQL's rule: ENABLE fires unless the session is a replica,
    ENABLE REPLICA only there, ENABLE ALWAYS always, DISABLE never."""
    return {"O": replication_role != "replica", "D": False, "A": True, "R": replication_role == "replica"}[enabled_char]


class Trigger:
    """The guard of a case, as created, with what the model needs."""

    def __init__(self, guard, timing, level, events, options):
        self.guard = guard
        self.timing = timing
        self.level = level
        self.events = events
        self.options = options
        self.serves = guard_serves(guard, timing, level, events)
        self.enabled = {}  # relation key -> pg_trigger.tgenabled, read back after ALTER TABLE

    def stale_sqlstate(self):
        return "23514" if self.options.get("sqlstate") == "23514" else "40001"


class Step:
    """One statement of the workload and what it writes when nothing stops it."""

    def __init__(self, name, event, sql, target="parent", rows=(), row_id=None, assign=None, copy_data=None):
        self.name = name
        self.event = event
        self.sql = sql
        self.target = target
        self.rows = list(rows)
        self.row_id = row_id
        self.assign = assign or {}
        self.copy_data = copy_data


class Expected:
    def __init__(self, sqlstate=None, state=None, kept_warnings=0, ignored_warnings=0, why=""):
        self.sqlstate = sqlstate
        self.state = state
        self.kept_warnings = kept_warnings
        self.ignored_warnings = ignored_warnings
        self.why = why


def carries_entry(row):
    """What the restore path keeps: a row with a balance and a seq >= 1."""
    return row[BAL] is not None and row[SEQ] is not None and row[SEQ] >= 1


def last_entry(state, acct):
    entries = [r for r in state.values() if r[ACCT] == acct and r[SEQ] is not None]
    return max(entries, key=lambda r: r[SEQ]) if entries else None


def predict(step, state, trigger, env):
    """What the step does to the table (state: id -> row tuple)."""
    if step.event == "INSERT":
        touched = step.rows
    elif step.event in ("UPDATE", "DELETE"):
        touched = [state[step.row_id]] if step.row_id in state else []
    else:
        touched = []
    on_event = trigger is not None and step.event in trigger.events
    row_fires = [on_event and trigger.level == "ROW" and
                 trigger_fires(trigger.enabled[env.relation_key(row[ID], trigger)], env.replication_role)
                 for row in touched]
    statement_fires = (on_event and trigger.level == "STATEMENT" and step.target == "parent" and
                       trigger_fires(trigger.enabled["parent"], env.replication_role))
    if on_event and trigger.timing == "INSTEAD OF":
        if any(row_fires):
            return Expected("39P01", why="an INSTEAD OF guard fired")
        return Expected(None, dict(state), why="a view's INSTEAD OF trigger that does not fire: nothing is written")
    if env.kind == "view":
        # A view's statement triggers fire only when an INSTEAD OF row
        # trigger handles the statement (else the view is auto-updated);
        # the case's helper writes the rows when it fires.
        if not env.view_helper:
            statement_fires = False
        elif statement_fires:
            return Expected("39P01", why="a guard fired in a mode it cannot serve")
        elif not trigger_fires("O", env.replication_role):
            return Expected(None, dict(state), why="the view's INSTEAD OF helper does not fire: nothing is written")
    if (any(row_fires) or statement_fires) and not trigger.serves:
        return Expected("39P01", why="a guard fired in a mode it cannot serve")
    guard = trigger.guard if trigger is not None and trigger.serves else None
    new = dict(state)
    expected = Expected(None, new)
    if step.event == "TRUNCATE":
        new.clear()
        return expected
    if step.event == "DELETE":
        if touched and row_fires[0] and guard == "running_balance":
            return Expected("23514", why="running_balance refuses a DELETE")
        new.pop(step.row_id, None)
        return expected
    if step.event == "UPDATE":
        if not touched:
            return expected
        old = touched[0]
        row = list(old)
        for column, value in step.assign.items():
            row[COLUMNS.index(column)] = value(old)
        if row_fires[0] and guard == "lock_version":
            assigned = "lock_version" in step.assign
            stored, sent = old[VERSION] or 0, row[VERSION] or 0
            if trigger.options.get("strict") == "true" and not assigned:
                return Expected(trigger.stale_sqlstate(), why="lock_version strict=true refuses a blind write")
            if sent not in (stored, stored + 1):
                return Expected(trigger.stale_sqlstate(), why="lock_version refuses a stale write")
            row[VERSION] = stored + 1
        if row_fires[0] and guard == "immutable_once_set":
            if old[OWNER] is not None and row[OWNER] != old[OWNER] and not (
                    row[OWNER] is None and trigger.options.get("allow_unset") == "true"):
                return Expected("23514", why="immutable_once_set refuses a change of a set column")
        if row_fires[0] and guard == "running_balance":
            if any(row[i] != old[i] for i in (ACCT, AMOUNT, BAL, SEQ)):
                return Expected("23514", why="running_balance refuses an UPDATE of a ledger column")
        new[old[ID]] = tuple(row)
        return expected
    # INSERT, row by row in order: a later row sees the earlier ones.
    for row, fires in zip(touched, row_fires):
        row = list(row)
        if fires and guard == "lock_version" and row[VERSION] is None:
            row[VERSION] = 1
        if fires and guard == "running_balance":
            kept = False
            if env.restoring_on and carries_entry(row):
                if env.may_set_restoring:
                    kept = True
                    expected.kept_warnings = 1
                else:
                    expected.ignored_warnings = 1
            if not kept:
                previous = last_entry(new, row[ACCT])
                initial = int(trigger.options.get("initial", "0"))
                row[BAL] = (previous[BAL] if previous else initial) + row[AMOUNT]
                row[SEQ] = (previous[SEQ] if previous else 0) + 1
                minimum = trigger.options.get("min_balance")
                if minimum is not None and row[AMOUNT] < 0 and row[BAL] < int(minimum):
                    return Expected("23514", why="running_balance refuses an overdraft past min_balance",
                                    kept_warnings=expected.kept_warnings, ignored_warnings=expected.ignored_warnings)
        new[row[ID]] = tuple(row)
    return expected


def chain_consistent(state, initial):
    """Whether every group's entries are seq 1..n with balance = previous
    balance (or initial) + amount: what verify_running_balance() checks."""
    groups = {}
    for row in state.values():
        if row[SEQ] is None or row[BAL] is None:
            return None  # the guard did not fire for this row: not comparable
        groups.setdefault(row[ACCT], []).append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: r[SEQ])
        balance = initial
        for position, row in enumerate(rows, start=1):
            balance += row[AMOUNT]
            if row[SEQ] != position or row[BAL] != balance:
                return False
    return True


# ---- one case ---------------------------------------------------------------------------------

class Environment:
    """Where a case runs and what its session's settings turned out to be."""

    def __init__(self, kind, index):
        self.kind = kind
        self.name = "fm_%d" % index
        self.qualified = ("pg_temp." if kind == "temp" else SCHEMA + ".") + self.name
        # Where rows are stored and read back: a view's base table.
        self.storage = self.qualified + ("_base" if kind == "view" else "")
        self.replication_role = "origin"
        self.view_helper = False  # a view's INSTEAD OF trigger that writes the base table
        self.restoring_on = False
        self.may_set_restoring = False

    def relation_key(self, row_id, trigger):
        """Whose trigger fires for a row: a partition's clone, or the one trigger."""
        if self.kind == "partitioned":
            return "p1" if row_id < 100 else "p2"
        return "parent"

    def creation(self, initial):
        q, name = self.qualified, self.name
        rows = "(1, 1, 10, %d, 1, 1, NULL, 'a'), (101, 2, 5, %d, 1, 1, 7, 'b')" % (initial + 10, initial + 5)
        if self.kind == "temp":
            return ["CREATE TEMP TABLE %s (%s)" % (name, COLUMN_DEFINITIONS),
                    "CREATE INDEX ON %s (acct, seq)" % q, "INSERT INTO %s VALUES %s" % (q, rows)]
        if self.kind in ("plain", "unlogged"):
            return ["CREATE %sTABLE %s (%s)" % ("UNLOGGED " if self.kind == "unlogged" else "", q, COLUMN_DEFINITIONS),
                    "CREATE INDEX ON %s (acct, seq)" % q, "INSERT INTO %s VALUES %s" % (q, rows)]
        if self.kind == "partitioned":
            return ["CREATE TABLE %s (%s) PARTITION BY RANGE (id)" % (q, COLUMN_DEFINITIONS),
                    "CREATE TABLE %s_p1 PARTITION OF %s FOR VALUES FROM (MINVALUE) TO (100)" % (q, q),
                    "CREATE TABLE %s_p2 PARTITION OF %s FOR VALUES FROM (100) TO (MAXVALUE)" % (q, q),
                    "CREATE INDEX ON %s (acct, seq)" % q, "INSERT INTO %s VALUES %s" % (q, rows)]
        return ["CREATE TABLE %s (%s)" % (self.storage, COLUMN_DEFINITIONS),
                "CREATE INDEX ON %s (acct, seq)" % self.storage,
                "INSERT INTO %s VALUES %s" % (self.storage, rows),
                "CREATE VIEW %s AS SELECT * FROM %s" % (q, self.storage)] + (
                    ["CREATE TRIGGER fm_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW "
                     "EXECUTE FUNCTION %s.view_write(%s)" % (q, SCHEMA, harness.quote_literal(self.storage))]
                    if self.view_helper else [])

    def drop(self):
        if self.kind == "view":
            return ["DROP VIEW IF EXISTS %s" % self.qualified, "DROP TABLE IF EXISTS %s" % self.storage]
        return ["DROP TABLE IF EXISTS %s" % self.qualified]


def literal(value):
    return "NULL" if value is None else (str(value) if isinstance(value, int) else harness.quote_literal(value))


def copy_field(value):
    return "\\N" if value is None else str(value)


def workload(env, rng):
    """The case's statements, in order."""
    q = env.qualified
    names = ", ".join(COLUMNS)
    supplied = [rng.choice([(999, 77), (999, 77), (None, 77), (999, None), (999, 0), (999, -1)]),
                rng.choice([(998, 78), (998, 78), (None, 78), (998, 0)])]
    first = [(2, 1, 5, supplied[0][0], supplied[0][1], None, None, "w1"),
             (102, 1, -3, supplied[1][0], supplied[1][1], 4, 5, "w1")]
    values = ", ".join("(%s)" % ", ".join(literal(v) for v in row) for row in first)
    typed = ", ".join("(%s)" % ", ".join("%s::%s" % (literal(v), t) for v, t in zip(row, COLUMN_TYPES))
                      for row in first)
    form = rng.choice(["values", "select", "copy"] if env.kind != "view" else ["values", "select"])
    if form == "values":
        insert = Step("insert rows that carry a seq and a balance", "INSERT",
                      "INSERT INTO %s (%s) VALUES %s" % (q, names, values), rows=first)
    elif form == "select":
        insert = Step("insert rows that carry a seq and a balance (INSERT ... SELECT)", "INSERT",
                      "INSERT INTO %s (%s) SELECT * FROM (VALUES %s) AS v ORDER BY 1" % (q, names, typed), rows=first)
    else:
        insert = Step("copy rows that carry a seq and a balance", "INSERT", "COPY %s (%s) FROM STDIN" % (q, names),
                      rows=first, copy_data="".join("\t".join(copy_field(v) for v in row) + "\n" for row in first))
    steps = [
        insert,
        Step("insert a row without seq and balance, in a new group", "INSERT",
             "INSERT INTO %s (id, acct, amount, note) VALUES (3, 3, 4, 'w2')" % q,
             rows=[(3, 3, 4, None, None, None, None, "w2")]),
        Step("insert an overdraft", "INSERT", "INSERT INTO %s (id, acct, amount, note) VALUES (4, 2, -100, 'w3')" % q,
             rows=[(4, 2, -100, None, None, None, None, "w3")]),
        Step("update another column", "UPDATE", "UPDATE %s SET note = 'u1' WHERE id = 1" % q, row_id=1,
             assign={"note": lambda r: "u1"}),
        Step("overwrite a set owner", "UPDATE", "UPDATE %s SET owner_id = 9 WHERE id = 101" % q, row_id=101,
             assign={"owner_id": lambda r: 9}),
        Step("unset a set owner", "UPDATE", "UPDATE %s SET owner_id = NULL WHERE id = 101" % q, row_id=101,
             assign={"owner_id": lambda r: None}),
        Step("set an unset owner", "UPDATE", "UPDATE %s SET owner_id = 9 WHERE id = 1" % q, row_id=1,
             assign={"owner_id": lambda r: 9}),
        Step("update a ledger column", "UPDATE", "UPDATE %s SET amount = amount + 1 WHERE id = 1" % q, row_id=1,
             assign={"amount": lambda r: r[AMOUNT] + 1}),
    ]
    increment = rng.choice([0, 1, 5])
    steps.append(Step("set the version to itself + %d" % increment, "UPDATE",
                      "UPDATE %s SET lock_version = lock_version + %d WHERE id = 101" % (q, increment), row_id=101,
                      assign={"lock_version": lambda r: None if r[VERSION] is None else r[VERSION] + increment}))
    if env.kind == "partitioned":
        carried = rng.choice([(500, 90), (None, None)])
        row = (105, 1, 2, carried[0], carried[1], None, None, "w4")
        steps.append(Step("insert straight into a partition", "INSERT",
                          "INSERT INTO %s_p2 (%s) VALUES (%s)" % (q, names, ", ".join(literal(v) for v in row)),
                          target="p2", rows=[row]))
    steps.append(Step("verify the ledger", "VERIFY", None))
    steps.append(Step("delete a row", "DELETE", "DELETE FROM %s WHERE id = 101" % q, row_id=101))
    if env.kind != "view":
        steps.append(Step("truncate", "TRUNCATE", "TRUNCATE %s" % q))
    return steps


def guard_arguments(guard, rng):
    """Valid arguments for the case's table, with random valid options."""
    options = {}
    if guard == "lock_version":
        args = rng.choice([[], ["lock_version"]])
        for key, values in (("strict", ["true", "false"]), ("sqlstate", ["23514", "40001"])):
            if rng.random() < 0.3:
                options[key] = rng.choice(values)
    elif guard == "immutable_once_set":
        args = ["owner_id"]
        if rng.random() < 0.4:
            options["allow_unset"] = rng.choice(["true", "false"])
    else:
        args = ["amount", "bal", "acct", "seq=seq"]
        if rng.random() < 0.5:
            options["min_balance"] = "0"
        if rng.random() < 0.3:
            options["initial"] = "100"
    return args + ["%s=%s" % item for item in options.items()], options


class CaseFailed(Exception):
    pass


def run_case(index, case, rng):
    env = Environment(case["table"], index)
    log = []
    events = {case["event"]}
    if rng.random() < 0.35:  # sometimes more events than the covered one
        others = [e for e in EVENTS if e not in events and (case["level"] == "STATEMENT" or e != "TRUNCATE")]
        events |= set(rng.sample(others, rng.randint(1, len(others))))
    args, options = guard_arguments(case["guard"], rng)
    trigger = Trigger(case["guard"], case["timing"], case["level"], events, options)
    # A statement-level guard on a view fires only when an INSTEAD OF
    # row trigger handles the statement: mostly give it one.
    env.view_helper = env.kind == "view" and case["timing"] != "INSTEAD OF" and rng.random() < 0.8
    cfb_create = case["check_function_bodies"]
    cfb_first = rng.choice(["on", "off"])  # the workload alternates from this value
    actor_kind = case["actor"]
    description = ", ".join("%s=%s" % (k, case[k]) for k, _ in DIMENSIONS) + ", events=%s, arguments=%s%s" % (
        "/".join(sorted(events)), args, ", with an INSTEAD OF helper" if env.view_helper else "")
    if TEST.verbose:
        print("case %d: %s" % (index, description), flush=True)

    def report(kind, detail):
        """A failure after which the case goes on (with what the server did)."""
        TEST.fail(index, kind, "case: %s\n%s" % (description, detail), harness.render(log))

    def fail(kind, detail):
        report(kind, detail)
        raise CaseFailed()

    def alive(session, what):
        if not session.alive():
            raise Crash("the case's backend %d is gone after %s" % (session.pid, what))
        WATCH.check(what)

    def expect_ok(session, sql):
        outcome = session.step(sql)
        alive(session, sql)
        if not outcome.ok:
            fail("setup statement refused", "%s: %s" % (sql, outcome))
        return outcome

    if actor_kind == "login role":  # to replay in psql as a superuser
        log.append(("s1", "SET SESSION AUTHORIZATION %s" % LOGIN_ROLE))
    session = harness.RoleSession(log, LOGIN_ROLE if actor_kind == "login role" else None, PASSWORD)
    TEST.count("cases")
    created = False
    try:
        # The session's settings, as each actor can make them.
        may_set_replication_role = actor_kind != "login role" or SERVER_VERSION >= 150000
        placeholder_set = False
        expect_ok(session, "SET check_function_bodies = %s" % cfb_create)
        outcome = session.step("SET session_replication_role = %s" % case["session_replication_role"])
        alive(session, "SET session_replication_role")
        if outcome.ok != may_set_replication_role or (not outcome.ok and outcome.sqlstate != "42501"):
            report("session_replication_role", "SET session_replication_role: %s (expected %s)" % (
                outcome, "ok" if may_set_replication_role else "42501"))
        if case["restoring"] == "on":
            outcome = session.step("SET raceguard.restoring = on")
            alive(session, "SET raceguard.restoring")
            if actor_kind == "login role":
                # Before the library is loaded this sets a placeholder, which
                # the library refuses when it loads; after, a plain 42501.
                placeholder_set = outcome.ok
                if not outcome.ok and outcome.sqlstate != "42501":
                    report("raceguard.restoring", "SET raceguard.restoring by a login role: %s" % outcome)
            elif not outcome.ok:
                report("raceguard.restoring", "SET raceguard.restoring by a superuser: %s" % outcome)
        if actor_kind == "SET ROLE":
            expect_ok(session, "SET ROLE %s" % LOGIN_ROLE)
        initial = int(options.get("initial", "0")) if case["guard"] == "running_balance" else 0
        for sql in env.creation(initial):
            expect_ok(session, sql)
        created = True

        # CREATE TRIGGER.
        sql = "CREATE TRIGGER %s %s %s ON %s FOR EACH %s EXECUTE FUNCTION raceguard.%s(%s)" % (
            TRIGGER, case["timing"], " OR ".join(e for e in EVENTS if e in events), env.qualified, case["level"],
            case["guard"], ", ".join(harness.quote_literal(a) for a in args))
        outcome = session.step(sql)
        alive(session, "CREATE TRIGGER")
        refusals = postgres_refusals(env.kind, case["timing"], case["level"], events)
        guard_warnings = harness.count_notices(outcome.notices, 'WARNING:  trigger "%s"' % TRIGGER)
        if refusals:
            if outcome.ok or outcome.sqlstate not in refusals:
                fail("CREATE TRIGGER", "PostgreSQL refuses this firing mode (%s), got: %s" % (
                    "/".join(sorted(refusals)), outcome))
            TEST.count("refused by PostgreSQL")
            return
        if not trigger.serves and cfb_create == "on":
            if outcome.ok:
                fail("guard accepted in a mode it cannot serve",
                     "CREATE TRIGGER with check_function_bodies on was accepted")
            if outcome.sqlstate != "39P01" or not harness.names_trigger_and_table(outcome, TRIGGER, env.name):
                fail("CREATE TRIGGER", "expected 39P01 naming the trigger and the table, got: %s" % outcome)
            TEST.count("refused by the guard (39P01)")
            return
        if not outcome.ok:
            if outcome.sqlstate in DEFINITION_SQLSTATES:
                fail("valid guard refused", "a guard fired as it serves was refused: %s" % outcome)
            fail("CREATE TRIGGER", "unexpected refusal: %s" % outcome)
        if guard_warnings != (0 if trigger.serves else 1):
            fail("CREATE TRIGGER warnings", "expected %d WARNING about the trigger, got: %r" % (
                0 if trigger.serves else 1, outcome.notices))
        TEST.count("created, serves" if trigger.serves else "created with a WARNING, cannot serve")

        # The enabled state: ALTER TABLE refuses it on a view (42809); the
        # event trigger refuses to enable a guard that cannot serve, with
        # check_function_bodies on, as it refuses any ALTER TABLE of a table
        # whose enabled guard is broken (39P01); disabling it always passes.
        cfb = cfb_first
        expect_ok(session, "SET check_function_bodies = %s" % cfb)
        outcome = session.step("ALTER TABLE %s %s TRIGGER %s" % (env.qualified, case["enabled"], TRIGGER))
        alive(session, "ALTER TABLE")
        if env.kind == "view":
            if outcome.ok or outcome.sqlstate != "42809":
                fail("ALTER TABLE", "a view's trigger cannot be altered (42809), got: %s" % outcome)
        elif not trigger.serves and cfb == "on" and case["enabled"] != "DISABLE":
            if outcome.ok or outcome.sqlstate != "39P01" or not harness.names_trigger_and_table(
                    outcome, TRIGGER, env.name):
                fail("ALTER TABLE", "enabling a guard that cannot serve, with check_function_bodies on: expected "
                     "39P01 naming the trigger and the table, got: %s" % outcome)
        elif not outcome.ok:
            fail("ALTER TABLE", "ALTER TABLE ... %s TRIGGER: %s" % (case["enabled"], outcome))
        rows = session.must("SELECT c.oid = %s::regclass, c.relname, t.tgenabled FROM pg_trigger t "
                            "JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = %s AND (t.tgrelid = %s::regclass "
                            "OR t.tgrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass))",
                            (env.qualified, TRIGGER, env.qualified, env.qualified), log=False)
        for is_parent, relname, enabled in rows:
            trigger.enabled["parent" if is_parent else relname[-2:]] = enabled
        if env.kind != "view" and outcome.ok and trigger.enabled.get("parent") != ENABLED_CHAR[case["enabled"]]:
            fail("ALTER TABLE", "tgenabled is %r after %s" % (trigger.enabled, case["enabled"]))
        if env.kind == "partitioned" and set(trigger.enabled) != ({"parent", "p1", "p2"} if trigger.level == "ROW"
                                                                  else {"parent"}):
            fail("partition clones", "triggers found: %r" % trigger.enabled)

        # What the settings turned out to be (loading the library first).
        expect_ok(session, "SELECT count(*) FROM raceguard.stats")
        if actor_kind == "login role" and case["restoring"] == "on":
            outcome = session.step("SET raceguard.restoring = on")
            alive(session, "SET raceguard.restoring")
            if outcome.ok or outcome.sqlstate != "42501":
                report("raceguard.restoring", "a login role's SET raceguard.restoring once loaded: %s" % outcome)
            if harness.count_notices(session.all_notices, PLACEHOLDER_REFUSED) != (1 if placeholder_set else 0):
                report("raceguard.restoring", "the placeholder a login role set must be refused with one WARNING "
                       "when the library loads; notices: %r" % session.all_notices)
        settings = session.must("SELECT current_setting('session_replication_role'), "
                                "coalesce(current_setting('raceguard.restoring', true), 'off'), "
                                "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)", log=False)[0]
        env.replication_role = settings[0]
        env.restoring_on = settings[1] == "on"
        env.may_set_restoring = settings[2]
        wanted_role = case["session_replication_role"] if may_set_replication_role else "origin"
        wanted_restoring = case["restoring"] == "on" and actor_kind != "login role"
        if env.replication_role != wanted_role or env.restoring_on != wanted_restoring or (
                env.may_set_restoring != (actor_kind == "superuser")):
            report("settings", "session_replication_role %s, raceguard.restoring %s, superuser %s" % tuple(settings))

        # The workload, checked against the model after every statement.
        state = {row[ID]: row for row in session.must(
            "SELECT %s FROM %s ORDER BY id" % (", ".join(COLUMNS), env.storage), log=False)}
        for step in workload(env, rng):
            if step.event == "VERIFY":
                if trigger.guard == "running_balance" and trigger.serves:
                    outcome = session.step("SELECT count(*) FROM raceguard.verify_running_balance('%s')" %
                                           env.qualified)
                    alive(session, "verify_running_balance()")
                    consistent = chain_consistent(state, initial)
                    if not outcome.ok:
                        fail("verify_running_balance()", "failed: %s" % outcome)
                    if consistent is not None and (outcome.rows[0][0] == 0) != consistent:
                        fail("verify_running_balance()", "%d problems on a ledger the model finds %s" % (
                            outcome.rows[0][0], "consistent" if consistent else "inconsistent"))
                continue
            cfb = "off" if cfb == "on" else "on"
            expect_ok(session, "SET check_function_bodies = %s" % cfb)
            expected = predict(step, state, trigger, env)
            outcome = session.step(step.sql, copy_data=step.copy_data)
            alive(session, step.name)
            TEST.count("%s: %s" % (step.event, "ok" if outcome.ok else outcome.sqlstate))
            actual = {row[ID]: row for row in session.must(
                "SELECT %s FROM %s ORDER BY id" % (", ".join(COLUMNS), env.storage), log=False)}
            wanted = expected.state if expected.sqlstate is None else state
            detail = "step: %s (check_function_bodies %s)\nexpected: %s%s\ngot: %s" % (
                step.name, cfb, expected.sqlstate or "ok", " (%s)" % expected.why if expected.why else "",
                outcome)
            if (outcome.sqlstate if not outcome.ok else None) != expected.sqlstate:
                fail("wrong outcome", detail)
            if actual != wanted:
                fail("wrong rows", "%s\nexpected rows: %s\nstored rows:   %s" % (
                    detail, sorted(wanted.values()), sorted(actual.values())))
            kept = harness.count_notices(outcome.notices, RESTORING_KEPT)
            ignored = harness.count_notices(outcome.notices, RESTORING_IGNORED)
            if (kept, ignored) != (expected.kept_warnings, expected.ignored_warnings):
                fail("restoring WARNING", "%s\nexpected %d kept and %d not-honoured WARNINGs; notices: %r" % (
                    detail, expected.kept_warnings, expected.ignored_warnings, outcome.notices))
            if kept:
                TEST.count("rows kept by a superuser restoring")
            state = actual
        TEST.count("workloads run")
    except RuntimeError as error:  # a statement of the test's own failed
        report("test setup error", str(error))
    except Crash as crash:
        TEST.fail(index, "backend crash", "case: %s\n%s\nserver: %s" % (
            description, crash, "; ".join(WATCH.problems()) or "up"), harness.render(log))
        raise
    finally:
        if created and session.alive():
            session.run("RESET ROLE", log=False)
            for sql in env.drop():
                session.run(sql, log=False)
        session.close()


def random_case(rng):
    """A random case; half of them fire the guard in a mode it serves (most
    modes are refused at CREATE TRIGGER, and those that serve have the most
    to check)."""
    case = harness.random_case(DIMENSIONS, rng)
    if rng.random() < 0.5:
        case["level"] = "ROW"
        case["timing"] = "AFTER" if case["guard"] == "immutable_once_set" and rng.random() < 0.5 else "BEFORE"
        case["event"] = "INSERT" if case["guard"] == "running_balance" else rng.choice(
            ["INSERT", "UPDATE"] if case["guard"] == "lock_version" else ["INSERT", "UPDATE", "DELETE"])
        if case["table"] == "view":
            case["table"] = rng.choice(["temp", "plain", "partitioned", "unlogged"])
    return case


def design(seed):
    """The covering cases of a run: every firing mode with
    check_function_bodies on, and off in a state that fires it; a ledger
    appended to while restoring; then every pair of values of any two
    dimensions."""
    rng = random.Random("%d/design" % seed)
    required = []
    for guard in GUARDS:
        for timing in ["BEFORE", "AFTER", "INSTEAD OF"]:
            for level in ["ROW", "STATEMENT"]:
                for event in EVENTS:
                    mode = {"guard": guard, "timing": timing, "level": level, "event": event}
                    required.append(dict(mode, check_function_bodies="on"))
                    enabled, role = rng.choice(FIRING_STATES)
                    required.append(dict(mode, check_function_bodies="off", enabled=enabled,
                                         session_replication_role=role))
    # The restore path: a ledger appended to with raceguard.restoring on, by
    # a superuser on each kind of table, and by the other actors.
    ledger = {"guard": "running_balance", "timing": "BEFORE", "level": "ROW", "event": "INSERT",
              "enabled": "ENABLE", "session_replication_role": "origin", "restoring": "on"}
    for kind in ["temp", "plain", "partitioned", "unlogged"]:
        required.append(dict(ledger, table=kind, actor="superuser"))
    for actor in ["login role", "SET ROLE"]:
        required.append(dict(ledger, actor=actor))
    return harness.covering_cases(DIMENSIONS, rng, required)


def setup():
    global SERVER_VERSION
    admin = harness.Session([])
    if not admin.must("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
        sys.exit("firing_modes: needs a superuser connection (PGUSER)")
    SERVER_VERSION = int(admin.must("SHOW server_version_num")[0][0])
    teardown(admin)
    admin.must("CREATE ROLE %s LOGIN PASSWORD %s" % (LOGIN_ROLE, harness.quote_literal(PASSWORD)))
    admin.must("CREATE SCHEMA %s AUTHORIZATION %s" % (SCHEMA, LOGIN_ROLE))
    if SERVER_VERSION >= 150000:
        admin.must("GRANT SET ON PARAMETER session_replication_role TO %s" % LOGIN_ROLE)
    admin.must(VIEW_WRITE)
    admin.close()


def teardown(admin):
    admin.must("DROP SCHEMA IF EXISTS %s CASCADE" % SCHEMA)
    if admin.must("SELECT count(*) FROM pg_roles WHERE rolname = %s", (LOGIN_ROLE,))[0][0]:
        if SERVER_VERSION >= 150000:
            admin.must("REVOKE SET ON PARAMETER session_replication_role FROM %s" % LOGIN_ROLE)
        admin.must("DROP OWNED BY %s" % LOGIN_ROLE)
        admin.must("DROP ROLE %s" % LOGIN_ROLE)


def main():
    global TEST, WATCH
    TEST = harness.Test("firing_modes", default_seconds=30)
    setup()
    WATCH = harness.ServerWatch()
    covering = design(TEST.seed)
    print("firing_modes: %d covering cases, then random ones" % len(covering), flush=True)
    crashed = False
    for index, rng in case_indexes(len(covering)):
        case = covering[index] if index < len(covering) else random_case(rng)
        try:
            run_case(index, case, rng)
        except CaseFailed:
            pass
        except Crash:
            crashed = True
        if crashed or not WATCH.session.alive():
            crashed = True
            WATCH.wait_until_back()
            print("firing_modes: the server crashed; the run stops here", flush=True)
            break
    WATCH.close()
    admin = harness.Session([])
    teardown(admin)
    admin.close()
    c = TEST.counters
    TEST.finish("%d cases (%d covering): %d refused by PostgreSQL, %d by the guard, %d created serving, %d created "
                "with a WARNING; %d workloads (%d statements keeping restored rows); outcomes {%s}" % (
                    c.get("cases", 0), len(covering), c.get("refused by PostgreSQL", 0),
                    c.get("refused by the guard (39P01)", 0), c.get("created, serves", 0),
                    c.get("created with a WARNING, cannot serve", 0), c.get("workloads run", 0),
                    c.get("rows kept by a superuser restoring", 0),
                    ", ".join("%s %d" % (k, v) for k, v in sorted(c.items()) if ":" in k)))


def case_indexes(covering):
    """(index, rng): the covering cases, then random ones until the budget
    is spent; with RACEGUARD_SHAPE only that one."""
    if TEST.only_shape is not None:
        yield TEST.only_shape, random.Random("%d/%d" % (TEST.seed, TEST.only_shape))
        return
    index = 0
    while index < covering or time.monotonic() - TEST.started < TEST.budget:
        yield index, random.Random("%d/%d" % (TEST.seed, index))
        index += 1


if __name__ == "__main__":
    main()
