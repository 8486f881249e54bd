"""Shared harness of the randomized tests.

Seeded (RACEGUARD_SEED, printed at start, so any failure replays), bounded
in time (RACEGUARD_RANDOM_SECONDS per test), one shape replayable alone
(RACEGUARD_SHAPE). Connects with the PG* environment variables.
"""
import contextlib
import itertools
import os
import random
import sys
import threading
import time

import psycopg2
import psycopg2.extensions

# Error classes a trigger definition may be refused with: feature not
# supported, undefined column, datatype mismatch, invalid parameter value,
# object not in prerequisite state, numeric value out of range, trigger
# protocol violated.
DEFINITION_SQLSTATES = {"0A000", "42703", "42804", "22023", "55000", "22003", "39P01"}
RETRYABLE = {"40001", "40P01"}


class Crash(Exception):
    """The backend died or stopped answering."""


class Outcome:
    """What one statement did: ok, or an error with its fields."""

    def __init__(self, ok=True, sqlstate=None, message="", constraint=None, table=None, column=None,
                 rows=None, rowcount=None):
        self.ok = ok
        self.sqlstate = sqlstate
        self.message = message
        self.constraint = constraint
        self.table = table
        self.column = column
        self.rows = rows
        self.rowcount = rowcount

    def __repr__(self):
        if self.ok:
            return "ok"
        return "%s %s" % (self.sqlstate, self.message)


class Session:
    """One connection, with its statements logged as SQL text."""

    def __init__(self, log=None, autocommit=True, name="s1", schema=None):
        # A statement that hangs fails (57014) instead of stalling the run.
        options = "-c statement_timeout=120s" + (" -c search_path=%s,public" % schema if schema else "")
        self.conn = psycopg2.connect("", options=options)
        self.conn.autocommit = autocommit
        self.pid = self.conn.get_backend_pid()
        self.log = log if log is not None else []
        self.name = name

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass

    def text(self, sql, params=None):
        if params is None:
            return sql
        with self.conn.cursor() as cur:
            return cur.mogrify(sql, params).decode()

    def run(self, sql, params=None, copy_data=None, log=True):
        """Runs one statement; an error is returned, not raised (the
        transaction is then aborted, as for any client). Crash if the
        backend is gone."""
        if log:
            entry = self.text(sql, params)
            if copy_data is not None:
                entry += "\n" + copy_data + "\\."
            self.log.append((self.name, entry))
        try:
            with self.conn.cursor() as cur:
                if copy_data is not None:
                    import io
                    cur.copy_expert(sql, io.StringIO(copy_data))
                else:
                    cur.execute(sql, params)
                rows = cur.fetchall() if cur.description is not None else None
                return Outcome(rows=rows, rowcount=cur.rowcount)
        except psycopg2.Error as error:
            if error.pgcode is None:
                raise Crash("%s: %s" % (type(error).__name__, error))
            diag = error.diag
            return Outcome(False, error.pgcode, diag.message_primary or str(error), diag.constraint_name,
                           diag.table_name, diag.column_name)

    def must(self, sql, params=None, log=True):
        outcome = self.run(sql, params, log=log)
        if not outcome.ok:
            raise RuntimeError("setup statement failed: %s\n%s" % (outcome, self.text(sql, params)))
        return outcome.rows

    def alive(self):
        """The backend that ran the last statement still answers."""
        if self.conn.closed:
            return False
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                return cur.fetchone()[0] == self.pid
        except psycopg2.Error as error:
            # In an aborted transaction the server answers 25P02.
            return error.pgcode == "25P02" and self.conn.get_backend_pid() == self.pid


class RoleSession(Session):
    """A connection as `role` (the PG* user when None), with more startup
    options; each step's outcome carries the notices it raised, and
    all_notices keeps the session's."""

    def __init__(self, log, role=None, password=None, options="", name="s1"):
        options = "-c statement_timeout=120s " + options
        if role is None:
            self.conn = psycopg2.connect("", options=options)
        else:
            self.conn = psycopg2.connect("", user=role, password=password, options=options)
        self.conn.autocommit = True
        self.pid = self.conn.get_backend_pid()
        self.log = log
        self.name = name
        self.all_notices = []

    def step(self, sql, params=None, copy_data=None):
        """Runs one statement (as run does); outcome.notices holds what it raised."""
        del self.conn.notices[:]
        outcome = self.run(sql, params, copy_data=copy_data)
        if copy_data is not None:
            # psycopg2 collects the notices of a COPY with the next statement.
            self.run("SELECT 1", log=False)
        outcome.notices = list(self.conn.notices)
        self.all_notices.extend(outcome.notices)
        return outcome


def count_notices(notices, text):
    """How many of the notices contain text."""
    return sum(1 for notice in notices if text in notice)


class Test:
    """Seed, time budget, counters and failures of one randomized test."""

    def __init__(self, name, default_seconds=40):
        self.name = name
        seed_text = os.environ.get("RACEGUARD_SEED")
        self.seed = int(seed_text) if seed_text else random.SystemRandom().randrange(1, 2**31)
        self.budget = float(os.environ.get("RACEGUARD_RANDOM_SECONDS", str(default_seconds)))
        only = os.environ.get("RACEGUARD_SHAPE")
        self.only_shape = int(only) if only else None
        self.verbose = bool(os.environ.get("RACEGUARD_VERBOSE"))
        self.started = time.monotonic()
        self.counters = {}
        self.failures = []
        self.failure_kinds = set()
        self.lock = threading.RLock()
        print("%s: RACEGUARD_SEED=%d RACEGUARD_RANDOM_SECONDS=%g%s" % (
            name, self.seed, self.budget,
            "" if self.only_shape is None else " RACEGUARD_SHAPE=%d" % self.only_shape), flush=True)

    def shapes(self):
        """Yields (index, rng) until the budget is spent; each shape's rng
        depends only on the seed and the index."""
        if self.only_shape is not None:
            yield self.only_shape, random.Random("%d/%d" % (self.seed, self.only_shape))
            return
        index = 0
        while time.monotonic() - self.started < self.budget:
            yield index, random.Random("%d/%d" % (self.seed, index))
            index += 1

    def count(self, key, n=1):
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def fail(self, shape, kind, detail, sql_lines):
        """Records a mismatch; the first of each kind is printed in full."""
        with self.lock:
            self.count("failures")
            first = kind not in self.failure_kinds
            self.failure_kinds.add(kind)
            self.failures.append((shape, kind))
        if not first:
            print("FAIL [%s] shape %d (same kind as above): %s" % (kind, shape, detail.splitlines()[0]), flush=True)
            return
        print("=" * 72, flush=True)
        print("FAIL [%s] %s shape %d" % (kind, self.name, shape))
        print("replay: RACEGUARD_SEED=%d RACEGUARD_SHAPE=%d" % (self.seed, shape))
        print(detail)
        print("-- SQL to reproduce:")
        for line in sql_lines:
            print(line if line.endswith(";") or line.endswith("\\.") else line + ";")
        print("=" * 72, flush=True)

    def finish(self, summary):
        kinds = sorted(self.failure_kinds)
        print("%s: seed %d, %s%s" % (self.name, self.seed, summary,
                                      "; FAILED: %s" % ", ".join(kinds) if kinds else "; ok"), flush=True)
        sys.exit(1 if self.failures else 0)


@contextlib.contextmanager
def shape_run(test, index, schema, log, session):
    """Runs one shape's body: a backend crash or a setup error fails the
    shape with the SQL so far; the session is closed and the shape's schema
    dropped however the body ends."""
    try:
        yield
    except Crash as crash:
        test.fail(index, "backend crash", str(crash), render(log))
    except RuntimeError as error:
        test.fail(index, "test setup error", str(error), render(log))
    finally:
        session.close()
        cleanup = Session([])
        cleanup.run("DROP SCHEMA IF EXISTS %s CASCADE" % schema, log=False)
        cleanup.close()


def server_version_num(session):
    """The server's major and minor as one number (150004 for 15.4), for
    models whose predictions depend on the major."""
    return int(session.must("SHOW server_version_num", log=False)[0][0])


def render(log, sessions=False):
    """The logged statements as SQL lines (prefixed by session when several)."""
    lines = []
    for name, text in log:
        lines.append(("-- %s\n" % name if sessions else "") + text)
    return lines


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


def have_ci_collation(session):
    """Creates public.ci, a case-insensitive ICU collation, when the server
    has ICU; True if it exists."""
    if session.must("SELECT count(*) FROM pg_collation WHERE collname = 'ci' AND collnamespace = 'public'::regnamespace",
                    log=False)[0][0]:
        return True
    outcome = session.run("CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
                          log=False)
    return outcome.ok or outcome.sqlstate == "42710"


def names_trigger_and_table(outcome, trigger, table):
    """A definition error names the trigger and the table."""
    return trigger in outcome.message and (table in outcome.message or outcome.table == table)


class ServerWatch:
    """Sees a backend crash that took the server down. PostgreSQL answers a
    crashed backend by ending every other backend and reinitializing: that
    crash restart keeps the postmaster, so pg_postmaster_start_time() does
    not change, but a connection held open since the start of the run dies
    with it. A full restart changes pg_postmaster_start_time(). Each check
    also opens a fresh connection, which fails while the server recovers."""

    def __init__(self):
        self.session = Session([], name="watch")
        self.start_time = self.session.must("SELECT pg_postmaster_start_time()", log=False)[0][0]

    def problems(self):
        """What went wrong with the server since the run began; empty when
        all is well."""
        found = []
        if not self.session.alive():
            found.append("the connection held open since the start of the run was ended: the server restarted "
                         "(a backend crashed, and PostgreSQL ended every backend to recover)")
        try:
            fresh = psycopg2.connect("", connect_timeout=10)
            try:
                with fresh.cursor() as cur:
                    cur.execute("SELECT pg_postmaster_start_time()")
                    start_time = cur.fetchone()[0]
            finally:
                fresh.close()
            if start_time != self.start_time:
                found.append("pg_postmaster_start_time() changed from %s to %s: the server restarted" % (
                    self.start_time, start_time))
        except psycopg2.Error as error:
            found.append("a fresh connection fails: %s" % str(error).strip())
        return found

    def check(self, what):
        """Raises Crash when the server did not survive `what`."""
        found = self.problems()
        if found:
            raise Crash("after %s: %s" % (what, "; ".join(found)))

    def wait_until_back(self, seconds=120):
        """After a crash: waits for the server to take connections again."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                psycopg2.connect("", connect_timeout=5).close()
                return True
            except psycopg2.Error:
                time.sleep(0.5)
        return False

    def close(self):
        self.session.close()


def covering_cases(dimensions, rng, required=()):
    """Test cases that cover every pair of values of any two dimensions at
    least once (so every value of every dimension). `dimensions` is a list
    of (name, values); each case is a dict name -> value. The cases begin
    with `required` (partial cases, dicts name -> value, each completed to
    cover as many new pairs as it can); more follow until every pair is
    covered. Greedy, and deterministic for a given rng state: a seed
    replays the same design."""
    names = [name for name, _ in dimensions]
    values = dict(dimensions)
    sizes = {name: len(values[name]) for name in names}
    uncovered = set()
    for first, second in itertools.combinations(names, 2):
        for a in range(sizes[first]):
            for b in range(sizes[second]):
                uncovered.add((first, a, second, b))

    def pair(name, value, other, other_value):
        if names.index(name) < names.index(other):
            return (name, value, other, other_value)
        return (other, other_value, name, value)

    def complete(case):
        rest = [name for name in names if name not in case]
        rng.shuffle(rest)
        for name in rest:
            gains = [sum(pair(name, value, other, chosen) in uncovered for other, chosen in case.items())
                     for value in range(sizes[name])]
            best = max(gains)
            case[name] = rng.choice([value for value in range(sizes[name]) if gains[value] == best])
        for first, second in itertools.combinations(names, 2):
            uncovered.discard(pair(first, case[first], second, case[second]))
        return case

    cases = [complete({name: values[name].index(value) for name, value in partial.items()}) for partial in required]
    while uncovered:
        first, a, second, b = rng.choice(sorted(uncovered))
        cases.append(complete({first: a, second: b}))
    return [{name: values[name][case[name]] for name in names} for case in cases]


def random_case(dimensions, rng):
    """One case with every dimension's value drawn at random."""
    return {name: rng.choice(values) for name, values in dimensions}
