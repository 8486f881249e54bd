"""raceguard benchmarks: each figure a ratio against peers measured in the
same run, with the sides interleaved (round after round, in rotating order)
so that drift on a noisy machine hits every side alike.

Run through bench/run.sh (a throwaway cluster tuned for benchmarking), or
against any database with raceguard installed (PG* environment variables,
as a superuser: the durability settings are switched with ALTER SYSTEM):

    python3 bench/bench.py            # the full run (about 40 minutes on 2 cores)
    python3 bench/bench.py --quick    # smaller sizes, for development
    python3 bench/bench.py --only bulk_update,claims
    python3 bench/bench.py --only transition
    python3 bench/bench.py --only citus   # needs Citus for the server; skipped otherwise
    python3 bench/bench.py --durability safe

Every ledger case (running_balance, transfers, ledger_size, partitioned) is
measured under each durability setting asked for: safe (fsync,
full_page_writes and synchronous_commit on: what users run) and fast (all
three off). The other cases run under fast. Every figure printed names the
setting it was measured under; every figure and every side's TPS is also
written to a JSON file (bench/results/latest.json), from which
bench/plot.py draws the plots of docs/benchmarks.md.

The run fails (exit 1) when a correctness check fails: after the running
balance cases verify_running_balance() must return nothing, the head-row
and pgledger-style books must add up after the transfers, and after the
claim cases no job may have been claimed twice (the citus case checks its
ledgers and jobs the same way). Targets missed are reported
as MISS; they do not fail the run (speed is measured, not asserted).
"""

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2

# ---------------------------------------------------------------------------
# Plumbing
# ---------------------------------------------------------------------------


def connect():
    conn = psycopg2.connect("", application_name="raceguard bench")
    conn.autocommit = True
    return conn


def execute(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def timed(conn, sql):
    start = time.perf_counter()
    execute(conn, sql)
    return time.perf_counter() - start


class Report:
    """Prints the figures and keeps them for the JSON file. durability: the
    setting the figures being printed were measured under (named in every
    heading and figure)."""

    def __init__(self):
        self.lines = []
        self.misses = []
        self.failures = []
        self.figures = []
        self.measurements = []
        self.durability = None

    def tag(self):
        return f"[{self.durability}] " if self.durability else ""

    def heading(self, text):
        print(f"\n== {self.tag()}{text}", flush=True)

    def info(self, text):
        print(f"   {text}", flush=True)

    def ratio(self, label, value, op=None, target=None, spread=None, case=None):
        """One figure: label, ratio, and the target when there is one;
        spread, the figure of each round (shown as its range)."""
        label = self.tag() + label
        met = None
        if op is None:
            verdict = ""
        else:
            met = value <= target if op == "<=" else value >= target
            verdict = f"  (target {op} {target:.2f}: {'ok' if met else 'MISS'})"
            if not met:
                self.misses.append(label)
        rounds = f"  [rounds {min(spread):.2f}-{max(spread):.2f}]" if spread else ""
        line = f"{label:<80} {value:6.2f}x{verdict}{rounds}"
        self.lines.append(line)
        self.figures.append({"case": case, "durability": self.durability, "label": label, "value": value,
                             "target": None if op is None else f"{op} {target}", "met": met,
                             "rounds": list(spread) if spread else None})
        print("   " + line, flush=True)

    def measured(self, case, tps, **key):
        """Every side's TPS, each round and the median, for the plots."""
        for side, rounds in tps.items():
            self.measurements.append(dict(case=case, durability=self.durability, side=side,
                                          median=statistics.median(rounds), rounds=rounds, **key))

    def check(self, label, ok, detail=""):
        label = self.tag() + label
        print(f"   check: {label}: {'ok' if ok else 'FAILED'} {detail}".rstrip(), flush=True)
        if not ok:
            self.failures.append(label)


# What each durability setting sets. safe: what users run (PostgreSQL's
# defaults); fast: nothing waits for the disk, the usual benchmark setting.
DURABILITY = {
    "safe": {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"},
    "fast": {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"},
}


class Durability:
    """Switches the cluster between the durability settings with ALTER
    SYSTEM and a reload (all three settings are reloadable), checks from a
    new connection and from the case's own that they are in effect, and puts
    back what was there at the end."""

    def __init__(self, conn, report):
        self.conn = conn
        self.report = report
        self.current = None
        # (value, whether ALTER SYSTEM had set it) before the run.
        self.original = {name: (setting, (sourcefile or "").endswith("postgresql.auto.conf"))
                         for name, setting, sourcefile in execute(
                             conn, "SELECT name, setting, sourcefile FROM pg_settings"
                                   " WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit')")}

    def switch(self, name):
        if self.current != name:
            for setting, value in DURABILITY[name].items():
                execute(self.conn, f"ALTER SYSTEM SET {setting} = {value}")
            execute(self.conn, "SELECT pg_reload_conf()")
            self.wait_until_in_effect(DURABILITY[name], name)
            self.current = name
        self.report.durability = name

    def wait_until_in_effect(self, wanted, name):
        deadline = time.monotonic() + 30
        while True:
            fresh = connect()
            try:
                seen = {setting: execute(fresh, f"SHOW {setting}")[0][0] for setting in wanted}
            finally:
                fresh.close()
            # The case's connection reloads at its next command: ask it too.
            own = {setting: execute(self.conn, f"SHOW {setting}")[0][0] for setting in wanted}
            if seen == wanted and own == wanted:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"durability {name}: {wanted} asked, a new connection shows {seen},"
                                   f" the bench's own {own} (is a setting fixed on the server's command line?)")
            time.sleep(0.1)

    def restore(self):
        if self.current is None:
            return
        for setting, (value, altered) in self.original.items():
            if altered:
                execute(self.conn, f"ALTER SYSTEM SET {setting} = {value}")
            else:
                execute(self.conn, f"ALTER SYSTEM RESET {setting}")
        execute(self.conn, "SELECT pg_reload_conf()")
        self.report.durability = None


def rotated(items, round_number):
    """The variants in a different order each round."""
    shift = round_number % len(items)
    return items[shift:] + items[:shift]


def pgbench(script_text, clients, *, seconds=None, transactions=None, options=None, server=None):
    """Runs pgbench with a custom script; returns (tps, output). options:
    server settings for its sessions (PGOPTIONS); server: the PG* variables
    of another server than the bench's own."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(script_text)
        path = script.name
    try:
        command = ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)),
                   "-f", path]
        command += ["-T", str(seconds)] if seconds else ["-t", str(transactions)]
        environment = dict(os.environ, **(server or {}))
        if options:
            environment["PGOPTIONS"] = options
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    finally:
        os.unlink(path)
    output = result.stdout + result.stderr
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed:\n{output}")
    return float(match.group(1)), output


def interleaved_tps(scripts, clients, seconds, rounds, wal=None):
    """Runs each side's pgbench script for `seconds`, round after round in
    rotating order; returns (TPS of each round, median TPS) by side. With
    wal (a WalFlushes), also counts each side's commits and WAL flushes."""
    tps = {name: [] for name in scripts}
    for round_number in range(rounds):
        for name in rotated(list(scripts), round_number):
            before = wal and wal.read()
            rate, output = pgbench(scripts[name], clients, seconds=seconds)
            tps[name].append(rate)
            if wal:
                wal.add(name, before, output, seconds)
    return tps, {name: statistics.median(values) for name, values in tps.items()}


class WalFlushes:
    """Each side's commits per WAL flush, and the share of its run the WAL
    spent in fsync (pg_stat_wal; the time needs track_wal_io_timing). With
    durable commits, a commit that must follow another's cannot share its
    flush: this shows how far a side's throughput is the disk's."""

    def __init__(self, conn):
        self.conn = conn
        self.by_side = {}

    def read(self):
        return execute(self.conn, "SELECT wal_sync, wal_sync_time FROM pg_stat_wal")[0]

    def add(self, side, before, output, seconds):
        syncs, sync_ms = self.read()
        match = re.search(r"number of transactions actually processed: ([0-9]+)", output)
        total = self.by_side.setdefault(side, [0, 0, 0.0, 0.0])
        total[0] += int(match.group(1)) if match else 0
        total[1] += syncs - before[0]
        total[2] += sync_ms - before[1]
        total[3] += seconds * 1000.0

    def summary(self):
        """None when no flush was counted (fsync off)."""
        if not any(total[1] for total in self.by_side.values()):
            return None
        return ", ".join(f"{side} {total[0] / max(total[1], 1):.2f} commits per flush"
                         f" (fsync {100 * total[2] / total[3]:.0f}% of the time)"
                         for side, total in self.by_side.items())


# ---------------------------------------------------------------------------
# lock_version and immutable_once_set: a bulk UPDATE of N rows
# ---------------------------------------------------------------------------

PLPGSQL_PEERS = r"""
-- lock_version written by hand for one table.
CREATE OR REPLACE FUNCTION bench_lock_version_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.lock_version := coalesce(NEW.lock_version, 1);
    ELSIF coalesce(NEW.lock_version, 0) = coalesce(OLD.lock_version, 0) THEN
        NEW.lock_version := coalesce(OLD.lock_version, 0) + 1;
    ELSIF coalesce(NEW.lock_version, 0) <> coalesce(OLD.lock_version, 0) + 1 THEN
        RAISE EXCEPTION 'stale write' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END $$;

-- lock_version written generically: the column name in TG_ARGV[0].
CREATE OR REPLACE FUNCTION bench_lock_version_generic() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stored bigint := coalesce((to_jsonb(OLD) ->> TG_ARGV[0])::bigint, 0);
    sent bigint := coalesce((to_jsonb(NEW) ->> TG_ARGV[0])::bigint, 0);
BEGIN
    IF sent = stored THEN
        NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], stored + 1));
    ELSIF sent <> stored + 1 THEN
        RAISE EXCEPTION 'stale write' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END $$;

-- immutable_once_set written by hand for one table.
CREATE OR REPLACE FUNCTION bench_once_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.owner_id IS NOT NULL AND NEW.owner_id IS DISTINCT FROM OLD.owner_id THEN
        RAISE EXCEPTION 'owner_id is already set' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

-- immutable_once_set written generically: the columns in TG_ARGV.
CREATE OR REPLACE FUNCTION bench_once_generic() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    new_row jsonb := to_jsonb(NEW);
    col text;
BEGIN
    FOREACH col IN ARRAY TG_ARGV LOOP
        IF old_row -> col <> 'null'::jsonb AND old_row -> col IS DISTINCT FROM new_row -> col THEN
            RAISE EXCEPTION '% is already set', col USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    RETURN NEW;
END $$;
"""

BULK_VARIANTS = [
    ("none", None),
    ("floor", "suppress_redundant_updates_trigger()"),
    ("lock_version", "raceguard.lock_version()"),
    ("lock_version_plpgsql_table", "bench_lock_version_table()"),
    ("lock_version_plpgsql_generic", "bench_lock_version_generic('lock_version')"),
    ("once", "raceguard.immutable_once_set('owner_id')"),
    ("once_plpgsql_table", "bench_once_table()"),
    ("once_plpgsql_generic", "bench_once_generic('owner_id')"),
]


def timed_on_compact_table(conn, table, sql):
    """Times SQL on TABLE freshly compacted after a CHECKPOINT: every side of
    a bulk case starts from the state a fresh table has."""
    execute(conn, f"VACUUM FULL {table}")
    execute(conn, f"VACUUM ANALYZE {table}")
    execute(conn, "CHECKPOINT")
    return timed(conn, sql)


def bulk_update(conn, report, rows, rounds):
    # The fastest of the rounds: a bulk UPDATE is mostly WAL and buffer work,
    # and what the machine adds (another process, a WAL segment created) only
    # ever adds; the minimum is the cost of the work itself.
    report.heading(f"bulk UPDATE of {rows:,} rows (SET payload = payload + 1), fastest of {rounds} rounds")
    execute(conn, PLPGSQL_PEERS)
    for name, trigger in BULK_VARIANTS:
        table = f"bulk_{name}"
        execute(conn, f"DROP TABLE IF EXISTS {table}")
        execute(conn, f"CREATE TABLE {table} (id integer PRIMARY KEY, payload integer, lock_version integer,"
                      f" owner_id integer)")
        execute(conn, f"INSERT INTO {table} SELECT g, g, 1, g FROM generate_series(1, {rows}) g")
        if trigger:
            execute(conn, f"CREATE TRIGGER guard BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {trigger}")
    times = {name: [] for name, _ in BULK_VARIANTS}
    names = [name for name, _ in BULK_VARIANTS]
    for round_number in range(rounds):
        for name in rotated(names, round_number):
            times[name].append(timed_on_compact_table(conn, f"bulk_{name}", f"UPDATE bulk_{name} SET payload = payload + 1"))
    median = {name: min(values) for name, values in times.items()}
    report.info("fastest: " + ", ".join(f"{name} {median[name]:.2f}s" for name in names))
    report.ratio("floor trigger (suppress_redundant_updates_trigger) / no trigger", median["floor"] / median["none"])
    report.ratio("lock_version / floor trigger", median["lock_version"] / median["floor"], "<=", 1.10)
    report.ratio("lock_version / PL/pgSQL written for the table",
                 median["lock_version"] / median["lock_version_plpgsql_table"], "<=", 0.90)
    report.ratio("PL/pgSQL lock_version, generic (TG_ARGV) / no trigger",
                 median["lock_version_plpgsql_generic"] / median["none"])
    report.ratio("immutable_once_set / floor trigger", median["once"] / median["floor"], "<=", 1.10)
    report.ratio("immutable_once_set / PL/pgSQL written for the table",
                 median["once"] / median["once_plpgsql_table"], "<=", 0.90)
    report.ratio("PL/pgSQL immutable_once_set, generic (TG_ARGV) / no trigger",
                 median["once_plpgsql_generic"] / median["none"])
    for name in names:
        execute(conn, f"DROP TABLE bulk_{name}")
    return median


# ---------------------------------------------------------------------------
# running_balance: concurrent single-row appends, and a bulk INSERT ... SELECT
# ---------------------------------------------------------------------------

LEDGER_PEERS = r"""
-- The PL/pgSQL way: an advisory lock on the account, then read its last row.
CREATE OR REPLACE FUNCTION bench_balance_advisory() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    PERFORM pg_advisory_xact_lock(NEW.account_id);
    SELECT running_balance, entry_no INTO last FROM ledger_advisory
     WHERE account_id = NEW.account_id ORDER BY entry_no DESC LIMIT 1;
    NEW.running_balance := coalesce(last.running_balance, 0) + NEW.amount;
    NEW.entry_no := coalesce(last.entry_no, 0) + 1;
    RETURN NEW;
END $$;
"""

# plain: the same rows with no trigger (the balance and entry number come
# from the client and a sequence), so the table and its index hold what the
# guarded ledger holds: the limit. plain_null: INSERTs leaving the balance and
# the entry number NULL, the peer of earlier runs; its index holds one
# deduplicated key per account, so its inserts skip most of the index work
# every real ledger pays.
LEDGERS = ["plain", "plain_null", "raceguard", "table_lock", "advisory"]


def create_ledger(conn, name, accounts, rows_per_account):
    table = f"ledger_{name}"
    execute(conn, f"DROP TABLE IF EXISTS {table}")
    execute(conn, f"CREATE TABLE {table} (account_id integer NOT NULL, amount bigint NOT NULL,"
                  f" running_balance bigint, entry_no bigint)")
    # The same table on every side: the unique (account, entry) index the
    # guard needs (plain_null leaves entry_no NULL, which it allows).
    execute(conn, f"CREATE UNIQUE INDEX ON {table} (account_id, entry_no)")
    execute(conn, f"DROP SEQUENCE IF EXISTS {table}_entry_no")
    execute(conn, f"CREATE SEQUENCE {table}_entry_no START {rows_per_account + 1}")
    # A realistic start: some history per account.
    execute(conn, f"INSERT INTO {table} SELECT a, 1, n, n FROM generate_series(1, {accounts}) a,"
                  f" generate_series(1, {rows_per_account}) n")
    if name == "raceguard":
        execute(conn, f"CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW"
                      f" EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id',"
                      f" 'seq=entry_no')")
    if name == "advisory":
        execute(conn, f"CREATE TRIGGER guard BEFORE INSERT ON {table} FOR EACH ROW"
                      f" EXECUTE FUNCTION bench_balance_advisory()")
    execute(conn, f"VACUUM ANALYZE {table}")


def append_script(name, accounts):
    pick = f"\\set account random(1, {accounts})\n"
    if name == "table_lock":
        return pick + (
            "BEGIN;\n"
            "LOCK TABLE ledger_table_lock IN EXCLUSIVE MODE;\n"
            "SELECT coalesce(max(running_balance), 0) AS balance, coalesce(max(entry_no), 0) AS entry_no FROM"
            " (SELECT running_balance, entry_no FROM ledger_table_lock WHERE account_id = :account"
            " ORDER BY entry_no DESC LIMIT 1) last \\gset\n"
            "INSERT INTO ledger_table_lock VALUES (:account, 1, :balance + 1, :entry_no + 1);\n"
            "COMMIT;\n"
        )
    if name == "plain":
        return pick + ("\\set balance random(1, 1000000)\n"
                       "INSERT INTO ledger_plain VALUES (:account, 1, :balance, nextval('ledger_plain_entry_no'));\n")
    if name == "plain_null":
        return pick + "INSERT INTO ledger_plain_null (account_id, amount) VALUES (:account, 1);\n"
    return pick + f"INSERT INTO ledger_{name} (account_id, amount) VALUES (:account, 1);\n"


def running_balance(conn, report, durability, settings, clients, seconds, rounds, bulk_rows, accounts=1000):
    execute(conn, LEDGER_PEERS)
    for setting in settings:
        durability.switch(setting)
        running_balance_under(conn, report, clients, seconds, rounds, bulk_rows, accounts)
    execute(conn, "DROP FUNCTION bench_balance_advisory()")


def running_balance_under(conn, report, clients, seconds, rounds, bulk_rows, accounts):
    report.heading(f"running_balance: {clients} clients appending single rows over {accounts:,} accounts,"
                   f" {seconds}s per side, median of {rounds} rounds")
    for name in LEDGERS:
        create_ledger(conn, name, accounts, 10)
    tps, median = interleaved_tps({name: append_script(name, accounts) for name in LEDGERS}, clients, seconds, rounds)
    report.measured("running_balance", tps, accounts=accounts)
    report.info("median TPS: " + ", ".join(f"{name} {median[name]:.0f}" for name in LEDGERS))
    report.ratio("running_balance TPS / plain INSERT TPS", median["raceguard"] / median["plain"], ">=", 0.95,
                 spread=[r / p for r, p in zip(tps["raceguard"], tps["plain"])], case="running_balance")
    report.ratio("running_balance TPS / whole-table-lock TPS", median["raceguard"] / median["table_lock"], ">=", 3.0)
    report.ratio("running_balance TPS / plain INSERT TPS leaving balance and entry_no NULL",
                 median["raceguard"] / median["plain_null"], spread=[r / p for r, p in zip(tps["raceguard"], tps["plain_null"])])
    report.ratio("whole-table-lock TPS / plain INSERT TPS", median["table_lock"] / median["plain"])
    report.ratio("PL/pgSQL advisory-lock trigger TPS / plain INSERT TPS", median["advisory"] / median["plain"])
    problems = execute(conn, "SELECT count(*) FROM raceguard.verify_running_balance('ledger_raceguard')")[0][0]
    report.check("verify_running_balance after the concurrent appends", problems == 0, f"({problems} problems)")

    report.heading(f"running_balance: bulk INSERT ... SELECT of {bulk_rows:,} rows over {accounts:,} accounts,"
                   f" median of {rounds} rounds")
    insert = ("INSERT INTO ledger_{name} (account_id, amount) SELECT 1 + g % {accounts}, 1"
              " FROM generate_series(1, {rows}) g")
    # The same rows computed in the SELECT: entry g / accounts + 1 of its
    # account, whose balance (amounts of 1 from 0) is the same number.
    insert_rows = ("INSERT INTO ledger_plain SELECT 1 + g % {accounts}, 1, g / {accounts} + 1, g / {accounts} + 1"
                   " FROM generate_series(1, {rows}) g")
    bulk_sides = ["plain", "plain_null", "raceguard"]
    times = {name: [] for name in bulk_sides}
    for round_number in range(rounds):
        for name in rotated(bulk_sides, round_number):
            execute(conn, f"TRUNCATE ledger_{name}")
            execute(conn, "CHECKPOINT")
            statement = insert_rows if name == "plain" else insert
            times[name].append(timed(conn, statement.format(name=name, accounts=accounts, rows=bulk_rows)))
    median = {name: statistics.median(values) for name, values in times.items()}
    report.info(f"medians: plain {median['plain']:.2f}s, plain leaving balance and entry_no NULL"
                f" {median['plain_null']:.2f}s, running_balance {median['raceguard']:.2f}s")
    report.ratio("running_balance bulk INSERT / plain INSERT", median["raceguard"] / median["plain"], "<=", 1.20,
                 spread=[r / p for r, p in zip(times["raceguard"], times["plain"])])
    report.ratio("running_balance bulk INSERT / plain INSERT leaving balance and entry_no NULL",
                 median["raceguard"] / median["plain_null"],
                 spread=[r / p for r, p in zip(times["raceguard"], times["plain_null"])])
    problems = execute(conn, "SELECT count(*) FROM raceguard.verify_running_balance('ledger_raceguard')")[0][0]
    report.check("verify_running_balance after the bulk INSERT", problems == 0, f"({problems} problems)")
    # The PL/pgSQL peer at a tenth of the size, against plain at the same size.
    small = max(bulk_rows // 10, 1000)
    peer = {"plain": [], "advisory": []}
    for round_number in range(rounds):
        for name in rotated(["plain", "advisory"], round_number):
            execute(conn, f"TRUNCATE ledger_{name}")
            peer[name].append(timed(conn, insert.format(name=name, accounts=accounts, rows=small)))
    report.ratio(f"PL/pgSQL advisory-lock trigger bulk INSERT / plain INSERT ({small:,} rows)",
                 statistics.median(peer["advisory"]) / statistics.median(peer["plain"]))
    for name in LEDGERS:
        execute(conn, f"DROP TABLE ledger_{name}")
        execute(conn, f"DROP SEQUENCE ledger_{name}_entry_no")


# ---------------------------------------------------------------------------
# running_balance: double-entry transfers, against the head-row design
# ---------------------------------------------------------------------------

# Every side but the statement forms writes its rows through a PL/pgSQL
# function called once per transaction: a transfers row, then the debit and
# the credit entry, the lower account's first (so locks are always taken in
# account order and nothing deadlocks).
#   plain      the three rows, no balance at all (the entry numbers from a
#              sequence, so the entries' index holds what it holds on the
#              other sides): the limit
#   raceguard  the same inserts; the guard on the entries computes balances
#   head_row   an accounts table holding each balance and a version: the two
#              account rows are taken FOR UPDATE in id order, both balances
#              updated, and the entries inserted with what was read (the
#              design of the best-known PostgreSQL ledger libraries)
#   pgledger   the same design in the shape of pgledger, a published
#              PL/pgSQL ledger library: accounts with a currency, a balance,
#              a version and what balance they may reach; entries with an id
#              of their own carrying the account's previous and current
#              balance and its version; one function call per transfer that
#              locks both accounts in id order, checks the currencies and the
#              balances allowed, updates both accounts and inserts the rows
# Over 2 hot accounts two more sides write the raceguard and head-row
# transfers as separate statements in a pgbench transaction (BEGIN, the
# statements, COMMIT: one round trip each, as an application does), into
# books of their own:
#   raceguard_statements  INSERT transfer; INSERT the lower account's entry;
#                         INSERT the other; COMMIT
#   head_row_statements   SELECT ... FOR UPDATE the two accounts in id order;
#                         UPDATE each; INSERT transfer; INSERT the entries;
#                         COMMIT
TRANSFER_SIDES = ["plain", "raceguard", "head_row", "pgledger"]
STATEMENT_SIDES = ["raceguard_statements", "head_row_statements"]

# plain and raceguard insert the same rows; only plain numbers its entries
# itself (raceguard's guard computes entry_no and the balance).
INSERTS_ONLY = r"""
CREATE OR REPLACE FUNCTION bench_transfer_{side}(debit integer, credit integer, amount bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    transfer bigint;
BEGIN
    INSERT INTO transfers_{side} (debit_account, credit_account, amount) VALUES (debit, credit, amount)
        RETURNING id INTO transfer;
    INSERT INTO entries_{side} (transfer_id, account_id, amount{entry_no_column})
        SELECT transfer, side.account_id, side.amount{entry_no_value}
          FROM (VALUES (debit, -amount), (credit, amount)) side (account_id, amount) ORDER BY side.account_id;
END $$;
"""

TRANSFER_FUNCTIONS = INSERTS_ONLY.format(side="plain", entry_no_column=", entry_no",
                                         entry_no_value=", nextval('entries_plain_entry_no')") + \
    INSERTS_ONLY.format(side="raceguard", entry_no_column="", entry_no_value="") + r"""
CREATE OR REPLACE FUNCTION bench_transfer_head_row(debit integer, credit integer, amount bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    transfer bigint;
    debit_balance bigint;
    debit_version bigint;
    credit_balance bigint;
    credit_version bigint;
BEGIN
    PERFORM 1 FROM accounts_head_row WHERE id IN (debit, credit) ORDER BY id FOR UPDATE;
    UPDATE accounts_head_row SET balance = balance - amount, version = version + 1 WHERE id = debit
        RETURNING balance, version INTO debit_balance, debit_version;
    UPDATE accounts_head_row SET balance = balance + amount, version = version + 1 WHERE id = credit
        RETURNING balance, version INTO credit_balance, credit_version;
    INSERT INTO transfers_head_row (debit_account, credit_account, amount) VALUES (debit, credit, amount)
        RETURNING id INTO transfer;
    INSERT INTO entries_head_row (transfer_id, account_id, amount, running_balance, entry_no)
        VALUES (transfer, debit, -amount, debit_balance, debit_version),
               (transfer, credit, amount, credit_balance, credit_version);
END $$;

CREATE OR REPLACE FUNCTION bench_transfer_pgledger(from_id integer, to_id integer, amount bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    account accounts_pgledger;
    from_account accounts_pgledger;
    to_account accounts_pgledger;
    transfer bigint;
BEGIN
    IF amount <= 0 THEN
        RAISE EXCEPTION 'amount (%) must be positive', amount;
    END IF;
    FOR account IN SELECT * FROM accounts_pgledger WHERE id IN (from_id, to_id) ORDER BY id FOR UPDATE LOOP
        IF account.id = from_id THEN
            from_account := account;
        ELSE
            to_account := account;
        END IF;
    END LOOP;
    IF from_account.currency <> to_account.currency THEN
        RAISE EXCEPTION 'currencies differ: % and %', from_account.currency, to_account.currency;
    END IF;
    IF NOT from_account.allow_negative_balance AND from_account.balance - amount < 0 THEN
        RAISE EXCEPTION 'account % cannot have a negative balance', from_id;
    END IF;
    IF NOT to_account.allow_positive_balance AND to_account.balance + amount > 0 THEN
        RAISE EXCEPTION 'account % cannot have a positive balance', to_id;
    END IF;
    UPDATE accounts_pgledger SET balance = balance - amount, version = version + 1, updated_at = now()
     WHERE id = from_id;
    UPDATE accounts_pgledger SET balance = balance + amount, version = version + 1, updated_at = now()
     WHERE id = to_id;
    INSERT INTO transfers_pgledger (from_account_id, to_account_id, amount) VALUES (from_id, to_id, amount)
        RETURNING id INTO transfer;
    INSERT INTO entries_pgledger (account_id, transfer_id, amount, account_previous_balance,
                                  account_current_balance, account_version)
        VALUES (from_id, transfer, -amount, from_account.balance, from_account.balance - amount,
                from_account.version + 1),
               (to_id, transfer, amount, to_account.balance, to_account.balance + amount, to_account.version + 1);
END $$;
"""


def transfer_design(side):
    """The books a side's tables are made like: a statement form's are its
    function form's."""
    return side.removesuffix("_statements")


def drop_transfer_books(conn, side):
    for table in (f"entries_{side}", f"transfers_{side}", f"accounts_{side}"):
        execute(conn, f"DROP TABLE IF EXISTS {table}")


def create_transfer_books(conn, side, accounts):
    design = transfer_design(side)
    drop_transfer_books(conn, side)
    if design == "pgledger":
        execute(conn, f"CREATE TABLE accounts_{side} (id integer PRIMARY KEY, name text NOT NULL,"
                      f" currency text NOT NULL, balance bigint NOT NULL, version bigint NOT NULL,"
                      f" allow_negative_balance boolean NOT NULL, allow_positive_balance boolean NOT NULL,"
                      f" created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())")
        execute(conn, f"INSERT INTO accounts_{side} (id, name, currency, balance, version, allow_negative_balance,"
                      f" allow_positive_balance) SELECT a, 'account ' || a, 'USD', 0, 0, true, true"
                      f" FROM generate_series(1, {accounts}) a")
        execute(conn, f"CREATE TABLE transfers_{side} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                      f" from_account_id integer NOT NULL, to_account_id integer NOT NULL, amount bigint NOT NULL,"
                      f" created_at timestamptz NOT NULL DEFAULT now(), event_at timestamptz NOT NULL DEFAULT now())")
        execute(conn, f"CREATE TABLE entries_{side} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                      f" account_id integer NOT NULL, transfer_id bigint NOT NULL, amount bigint NOT NULL,"
                      f" account_previous_balance bigint NOT NULL, account_current_balance bigint NOT NULL,"
                      f" account_version bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        execute(conn, f"CREATE UNIQUE INDEX ON entries_{side} (account_id, account_version)")
    else:
        execute(conn, f"CREATE TABLE transfers_{side} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                      f" debit_account integer NOT NULL, credit_account integer NOT NULL, amount bigint NOT NULL,"
                      f" created_at timestamptz NOT NULL DEFAULT now())")
        execute(conn, f"CREATE TABLE entries_{side} (transfer_id bigint NOT NULL, account_id integer NOT NULL,"
                      f" amount bigint NOT NULL, running_balance bigint, entry_no bigint)")
        execute(conn, f"CREATE UNIQUE INDEX ON entries_{side} (account_id, entry_no)")
    if design == "plain":
        execute(conn, "DROP SEQUENCE IF EXISTS entries_plain_entry_no")
        execute(conn, "CREATE SEQUENCE entries_plain_entry_no")
    if design == "head_row":
        execute(conn, f"CREATE TABLE accounts_{side} (id integer PRIMARY KEY, balance bigint NOT NULL,"
                      f" version bigint NOT NULL)")
        execute(conn, f"INSERT INTO accounts_{side} SELECT a, 0, 0 FROM generate_series(1, {accounts}) a")
    if design == "raceguard":
        execute(conn, f"CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON entries_{side} FOR EACH ROW"
                      f" EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id',"
                      f" 'seq=entry_no')")
    for table in (f"entries_{side}", f"transfers_{side}") + ((f"accounts_{side}",) if design != "raceguard"
                                                             and design != "plain" else ()):
        execute(conn, f"VACUUM ANALYZE {table}")


def transfer_script(side, accounts):
    # Two different accounts: the credit account is the debit's successor
    # by a random offset, wrapping around.
    pick = (f"\\set debit random(1, {accounts})\n"
            f"\\set offset random(1, {accounts - 1})\n"
            f"\\set credit 1 + (:debit - 1 + :offset) % {accounts}\n"
            f"\\set amount random(1, 100)\n")
    if side == "raceguard_statements":
        return pick + (
            "\\set low least(:debit, :credit)\n"
            "\\set high greatest(:debit, :credit)\n"
            "\\set low_amount CASE WHEN :low = :debit THEN 0 - :amount ELSE :amount END\n"
            "\\set high_amount 0 - :low_amount\n"
            "BEGIN;\n"
            f"INSERT INTO transfers_{side} (debit_account, credit_account, amount)"
            " VALUES (:debit, :credit, :amount) RETURNING id AS transfer \\gset\n"
            f"INSERT INTO entries_{side} (transfer_id, account_id, amount) VALUES (:transfer, :low, :low_amount);\n"
            f"INSERT INTO entries_{side} (transfer_id, account_id, amount) VALUES (:transfer, :high, :high_amount);\n"
            "COMMIT;\n")
    if side == "head_row_statements":
        return pick + (
            "BEGIN;\n"
            f"SELECT id FROM accounts_{side} WHERE id IN (:debit, :credit) ORDER BY id FOR UPDATE;\n"
            f"UPDATE accounts_{side} SET balance = balance - :amount, version = version + 1 WHERE id = :debit"
            " RETURNING balance AS debit_balance, version AS debit_version \\gset\n"
            f"UPDATE accounts_{side} SET balance = balance + :amount, version = version + 1 WHERE id = :credit"
            " RETURNING balance AS credit_balance, version AS credit_version \\gset\n"
            f"INSERT INTO transfers_{side} (debit_account, credit_account, amount)"
            " VALUES (:debit, :credit, :amount) RETURNING id AS transfer \\gset\n"
            f"INSERT INTO entries_{side} (transfer_id, account_id, amount, running_balance, entry_no)"
            " VALUES (:transfer, :debit, 0 - :amount, :debit_balance, :debit_version),"
            " (:transfer, :credit, :amount, :credit_balance, :credit_version);\n"
            "COMMIT;\n")
    return pick + f"SELECT bench_transfer_{side}(:debit, :credit, :amount);\n"


def verify_transfer_books(conn, report, side, label):
    design = transfer_design(side)
    transfers, entries = execute(conn, f"SELECT (SELECT count(*) FROM transfers_{side}),"
                                       f" (SELECT count(*) FROM entries_{side})")[0]
    report.check(f"{label}: two entries per transfer", entries == 2 * transfers,
                 f"({transfers:,} transfers, {entries:,} entries)")
    if design == "raceguard":
        problems = execute(conn, f"SELECT count(*) FROM raceguard.verify_running_balance('entries_{side}')")[0][0]
        report.check(f"{label}: verify_running_balance", problems == 0, f"({problems} problems)")
    if design == "head_row":
        wrong = execute(conn, f"SELECT count(*) FROM accounts_{side} a LEFT JOIN (SELECT account_id,"
                              f" sum(amount) AS total, count(*) AS entries FROM entries_{side} GROUP BY account_id) e"
                              f" ON e.account_id = a.id WHERE a.balance <> coalesce(e.total, 0)"
                              f" OR a.version <> coalesce(e.entries, 0)")[0][0]
        report.check(f"{label}: every account's balance is the sum of its entries", wrong == 0,
                     f"({wrong} accounts wrong)")
    if design == "pgledger":
        wrong = execute(conn, f"SELECT count(*) FROM accounts_{side} a LEFT JOIN (SELECT account_id,"
                              f" sum(amount) AS total, count(*) AS entries FROM entries_{side} GROUP BY account_id) e"
                              f" ON e.account_id = a.id WHERE a.balance <> coalesce(e.total, 0)"
                              f" OR a.version <> coalesce(e.entries, 0)")[0][0]
        report.check(f"{label}: every account's balance and version are the sum and count of its entries",
                     wrong == 0, f"({wrong} accounts wrong)")
        # Each entry takes its account from the previous entry's balance and
        # version to its own.
        broken = execute(conn, f"SELECT count(*) FROM (SELECT account_previous_balance, account_current_balance,"
                               f" amount, account_version, lag(account_current_balance, 1, 0::bigint) OVER w AS before,"
                               f" row_number() OVER w AS position FROM entries_{side}"
                               f" WINDOW w AS (PARTITION BY account_id ORDER BY account_version)) e"
                               f" WHERE account_previous_balance <> before"
                               f" OR account_current_balance <> account_previous_balance + amount"
                               f" OR account_version <> position")[0][0]
        report.check(f"{label}: every entry continues its account's previous entry", broken == 0,
                     f"({broken} entries wrong)")


def transfers(conn, report, durability, settings, clients, seconds, rounds):
    for side in TRANSFER_SIDES + STATEMENT_SIDES:
        drop_transfer_books(conn, side)
    # The functions are created once their tables' types exist (pgledger's
    # reads whole account rows).
    create_transfer_books(conn, "pgledger", 2)
    execute(conn, TRANSFER_FUNCTIONS)
    for setting in settings:
        durability.switch(setting)
        for accounts in (1000, 10, 2):
            transfers_under(conn, report, clients, seconds, rounds, accounts)
    for side in TRANSFER_SIDES:
        execute(conn, f"DROP FUNCTION bench_transfer_{side}(integer, integer, bigint)")
    for side in TRANSFER_SIDES + STATEMENT_SIDES:
        drop_transfer_books(conn, side)
    execute(conn, "DROP SEQUENCE entries_plain_entry_no")


def transfers_under(conn, report, clients, seconds, rounds, accounts):
    title = {1000: "transfers over 1,000 accounts", 10: "transfers over 10 accounts",
             2: "hot account: transfers between 2 accounts"}[accounts]
    short = {1000: "1,000 accounts", 10: "10 accounts", 2: "2 hot accounts"}[accounts]
    # The statement forms only where the harness matters most: the hot account.
    sides = TRANSFER_SIDES + (STATEMENT_SIDES if accounts == 2 else [])
    report.heading(f"running_balance: {title}, {clients} clients, one transfer (a transfers row, a debit and"
                   f" a credit entry) per transaction, {seconds}s per side, median of {rounds} rounds")
    for side in sides:
        create_transfer_books(conn, side, accounts)
    wal = WalFlushes(conn)
    tps, median = interleaved_tps({side: transfer_script(side, accounts) for side in sides},
                                  clients, seconds, rounds, wal)
    report.measured("transfers", tps, accounts=accounts)
    report.info("median TPS: " + ", ".join(f"{side} {median[side]:.0f}" for side in sides))
    flushes = wal.summary()
    if flushes:
        report.info("WAL flushes: " + flushes)

    def ratio(label, top, bottom, op=None, target=None):
        report.ratio(f"transfers, {short}: {label}", median[top] / median[bottom], op, target,
                     spread=[t / b for t, b in zip(tps[top], tps[bottom])], case="transfers")

    ratio("running_balance TPS / head-row TPS", "raceguard", "head_row", ">=", 1.3)
    ratio("running_balance TPS / pgledger-style TPS", "raceguard", "pgledger")
    if accounts != 2:
        ratio("running_balance TPS / plain inserts TPS", "raceguard", "plain", ">=", 0.85)
    ratio("head-row TPS / plain inserts TPS", "head_row", "plain")
    ratio("pgledger-style TPS / head-row TPS", "pgledger", "head_row")
    if accounts == 2:
        ratio("statements in a pgbench transaction: running_balance TPS / head-row TPS",
              "raceguard_statements", "head_row_statements")
        ratio("running_balance: statements TPS / one function call TPS", "raceguard_statements", "raceguard")
        ratio("head-row: statements TPS / one function call TPS", "head_row_statements", "head_row")
    for side in sides:
        if side != "plain":
            verify_transfer_books(conn, report, side, f"transfers, {short}, {side}")


# ---------------------------------------------------------------------------
# running_balance: an append's cost does not grow with the ledger
# ---------------------------------------------------------------------------


def ledger_size(conn, report, durability, settings, clients, seconds, rounds, entries, accounts=1000):
    # Loaded once (under the first setting), then measured under each.
    durability.switch(settings[0])
    report.heading(f"running_balance: loading a ledger of {entries:,} entries over {accounts:,} accounts")
    # The same two ledgers without the guard (the same rows, entry numbers
    # from a sequence) show what a bigger table and index cost PostgreSQL
    # itself.
    sides = {"big": entries, "empty": 0, "plain_big": entries, "plain_empty": 0}
    per_account = entries // accounts
    for name, size in sides.items():
        table = f"ledger_{name}"
        execute(conn, f"DROP TABLE IF EXISTS {table}")
        execute(conn, f"CREATE TABLE {table} (account_id integer NOT NULL, amount bigint NOT NULL,"
                      f" running_balance bigint, entry_no bigint)")
        # Loaded by entry number, accounts interleaved, as a ledger fills over
        # time; then indexed: the chain index of a ledger that has grown.
        if size:
            execute(conn, f"INSERT INTO {table} SELECT a, 1, n, n FROM generate_series(1, {per_account}) n,"
                          f" generate_series(1, {accounts}) a")
        execute(conn, f"CREATE UNIQUE INDEX ON {table} (account_id, entry_no)")
        execute(conn, f"DROP SEQUENCE IF EXISTS {table}_entry_no")
        execute(conn, f"CREATE SEQUENCE {table}_entry_no START {size // accounts + 1}")
        if not name.startswith("plain"):
            execute(conn, f"CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW"
                          f" EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id',"
                          f" 'seq=entry_no')")
        execute(conn, f"VACUUM ANALYZE {table}")
    report.info("loaded: " + ", ".join(
        f"{name} {execute(conn, 'SELECT pg_size_pretty(pg_total_relation_size(%s))', (f'ledger_{name}',))[0][0]}"
        for name in sides))
    for setting in settings:
        durability.switch(setting)
        ledger_size_under(conn, report, clients, seconds, rounds, entries, accounts, sides)
    for name in sides:
        execute(conn, f"DROP TABLE ledger_{name}")
        execute(conn, f"DROP SEQUENCE ledger_{name}_entry_no")


def ledger_size_under(conn, report, clients, seconds, rounds, entries, accounts, sides):
    report.heading(f"running_balance: {clients} clients appending single rows over {accounts:,} accounts into a"
                   f" ledger of {entries:,} entries and into an empty one, {seconds}s per side,"
                   f" median of {rounds} rounds")

    def script(name):
        if name.startswith("plain"):
            return (f"\\set account random(1, {accounts})\n\\set balance random(1, 1000000)\n"
                    f"INSERT INTO ledger_{name} VALUES (:account, 1, :balance, nextval('ledger_{name}_entry_no'));\n")
        return append_script(name, accounts)

    tps, median = interleaved_tps({name: script(name) for name in sides}, clients, seconds, rounds)
    report.measured("ledger_size", tps, entries=entries)
    report.info("median TPS: " + ", ".join(f"{name} {median[name]:.0f}" for name in sides))
    report.ratio(f"append TPS into a {entries:,}-entry ledger / into an empty ledger",
                 median["big"] / median["empty"], ">=", 0.95, spread=[b / e for b, e in zip(tps["big"], tps["empty"])],
                 case="ledger_size")
    report.ratio(f"plain INSERT TPS into the {entries:,}-entry table / into the empty one (no guard)",
                 median["plain_big"] / median["plain_empty"],
                 spread=[b / e for b, e in zip(tps["plain_big"], tps["plain_empty"])])
    report.ratio(f"append TPS / plain INSERT TPS, both into {entries:,}-entry tables",
                 median["big"] / median["plain_big"], spread=[b / p for b, p in zip(tps["big"], tps["plain_big"])])
    for name in sides:
        if not name.startswith("plain"):
            problems = execute(conn, f"SELECT count(*) FROM raceguard.verify_running_balance('ledger_{name}')")[0][0]
            report.check(f"verify_running_balance on the {name} ledger after the appends", problems == 0,
                         f"({problems} problems)")


# ---------------------------------------------------------------------------
# running_balance: partitioned ledgers
# ---------------------------------------------------------------------------

# (name, partitioning, number of partitions). monthly: RANGE on created_at,
# one partition a month, the newest holding now(), history spread over all
# of them; the group (account_id) is not the partition key, so an append's
# search for the account's last entry may have to look in every partition.
# hash: HASH on account_id, where each account's rows all lie in one
# partition. flat: the same columns, not partitioned (plain side only: what
# partitioning itself costs).
PARTITION_LAYOUTS = [("monthly_1", "monthly", 1), ("monthly_12", "monthly", 12), ("monthly_48", "monthly", 48),
                     ("hash_64", "hash", 64)]


def create_partitioned_ledger(conn, table, partitioning, partitions, accounts, history, guarded):
    execute(conn, f"DROP TABLE IF EXISTS {table}")
    columns = ("(account_id integer NOT NULL, amount bigint NOT NULL, running_balance bigint, entry_no bigint,"
               " created_at timestamptz NOT NULL)")
    if partitioning == "flat":
        execute(conn, f"CREATE TABLE {table} {columns}")
        execute(conn, f"CREATE UNIQUE INDEX ON {table} (account_id, entry_no)")
        created_at = f"now() - interval '1 hour' * ({history} - n)"
    elif partitioning == "hash":
        execute(conn, f"CREATE TABLE {table} {columns} PARTITION BY HASH (account_id)")
        for remainder in range(partitions):
            execute(conn, f"CREATE TABLE {table}_{remainder} PARTITION OF {table}"
                          f" FOR VALUES WITH (MODULUS {partitions}, REMAINDER {remainder})")
        # The partition key is in the chain index: it can be unique.
        execute(conn, f"CREATE UNIQUE INDEX ON {table} (account_id, entry_no)")
        created_at = f"now() - interval '1 hour' * ({history} - n)"
    else:
        execute(conn, f"CREATE TABLE {table} {columns} PARTITION BY RANGE (created_at)")
        # Month `age` months before the current one; the newest (age 0)
        # holds now(), where the appends land.
        for age in range(partitions - 1, -1, -1):
            start = f"date_trunc('month', now()) - interval '{age} months'"
            execute(conn, f"CREATE TABLE {table}_{age} PARTITION OF {table}"
                          f" FOR VALUES FROM ({start}) TO ({start} + interval '1 month')")
        # Not unique: a unique index on a partitioned table must hold the
        # partition key (created_at); the guard takes a plain btree on
        # (group, seq).
        execute(conn, f"CREATE INDEX ON {table} (account_id, entry_no)")
        # Entry n of every account in month (n - 1) * partitions / history,
        # counted from the oldest: each month holds history, in entry order.
        created_at = (f"date_trunc('month', now()) - interval '1 month' * ({partitions - 1}"
                      f" - (n - 1) * {partitions} / {history}) + interval '1 minute' * a")
    # Loaded by entry number, accounts interleaved, as a ledger fills over
    # time: entry n of each account has balance n (amounts of 1).
    execute(conn, f"INSERT INTO {table} SELECT a, 1, n, n, {created_at} FROM generate_series(1, {history}) n,"
                  f" generate_series(1, {accounts}) a")
    execute(conn, f"DROP SEQUENCE IF EXISTS {table}_entry_no")
    execute(conn, f"CREATE SEQUENCE {table}_entry_no START {history + 1}")
    if guarded:
        execute(conn, f"CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW"
                      f" EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id',"
                      f" 'seq=entry_no')")
    execute(conn, f"VACUUM ANALYZE {table}")


def partitioned_script(table, guarded, accounts):
    pick = f"\\set account random(1, {accounts})\n"
    if guarded:
        return pick + f"INSERT INTO {table} (account_id, amount, created_at) VALUES (:account, 1, now());\n"
    return pick + ("\\set balance random(1, 1000000)\n"
                   f"INSERT INTO {table} VALUES (:account, 1, :balance, nextval('{table}_entry_no'), now());\n")


def partitioned(conn, report, durability, settings, clients, seconds, rounds, history, accounts=1000):
    for setting in settings:
        durability.switch(setting)
        partitioned_under(conn, report, clients, seconds, rounds, history, accounts)


def partitioned_under(conn, report, clients, seconds, rounds, history, accounts):
    report.heading(f"running_balance on partitioned ledgers: {clients} clients appending single rows over"
                   f" {accounts:,} accounts, {history} entries of history per account, {seconds}s per side,"
                   f" median of {rounds} rounds")
    # side -> (table, partitioning, partitions, guarded)
    sides = {}
    for layout, partitioning, partitions in PARTITION_LAYOUTS:
        sides[f"{layout}_raceguard"] = (f"pledger_{layout}_raceguard", partitioning, partitions, True)
        sides[f"{layout}_plain"] = (f"pledger_{layout}_plain", partitioning, partitions, False)
    sides["flat_plain"] = ("pledger_flat_plain", "flat", 0, False)
    for table, partitioning, partitions, guarded in sides.values():
        create_partitioned_ledger(conn, table, partitioning, partitions, accounts, history, guarded)
    tps, median = interleaved_tps({side: partitioned_script(table, guarded, accounts)
                                   for side, (table, _, _, guarded) in sides.items()}, clients, seconds, rounds)
    for side, (table, partitioning, partitions, guarded) in sides.items():
        report.measured("partitioned", {side: tps[side]}, layout=partitioning, partitions=partitions,
                        guard="raceguard" if guarded else "plain", accounts=accounts, history=history)
    report.info("median TPS: " + ", ".join(f"{side} {median[side]:.0f}" for side in sides))

    def ratio(label, top, bottom, op=None, target=None):
        report.ratio(f"partitioned: {label}", median[top] / median[bottom], op, target,
                     spread=[t / b for t, b in zip(tps[top], tps[bottom])], case="partitioned")

    ratio("64 HASH (account_id) partitions: running_balance TPS / plain INSERT TPS",
          "hash_64_raceguard", "hash_64_plain", ">=", 0.85)
    ratio("48 monthly RANGE (created_at) partitions: running_balance TPS / plain INSERT TPS",
          "monthly_48_raceguard", "monthly_48_plain", ">=", 0.80)
    ratio("12 monthly partitions: running_balance TPS / plain INSERT TPS", "monthly_12_raceguard", "monthly_12_plain")
    ratio("1 monthly partition: running_balance TPS / plain INSERT TPS", "monthly_1_raceguard", "monthly_1_plain")
    ratio("running_balance TPS, 48 monthly partitions / 12 monthly partitions",
          "monthly_48_raceguard", "monthly_12_raceguard", ">=", 0.90)
    for layout, partitioning, partitions in PARTITION_LAYOUTS:
        description = f"{partitions} {'monthly' if partitioning == 'monthly' else 'HASH'} partition" + \
            ("s" if partitions > 1 else "")
        ratio(f"plain INSERT TPS, {description} / not partitioned", f"{layout}_plain", "flat_plain")
    for side, (table, _, _, guarded) in sides.items():
        if guarded:
            problems = execute(conn, f"SELECT count(*) FROM raceguard.verify_running_balance('{table}')")[0][0]
            report.check(f"verify_running_balance on {table} after the appends", problems == 0,
                         f"({problems} problems)")
    for table, _, _, _ in sides.values():
        execute(conn, f"DROP TABLE {table}")
        execute(conn, f"DROP SEQUENCE {table}_entry_no")


# ---------------------------------------------------------------------------
# Statistics (raceguard.stats): what collecting them costs
# ---------------------------------------------------------------------------


def statistics_collected(conn):
    """Whether raceguard.stats counts in this cluster (17+, or preloaded)."""
    return execute(conn, "SELECT current_setting('shared_preload_libraries') ~ 'raceguard'"
                         " OR current_setting('server_version_num')::int >= 170000")[0][0]


def stats_cost(conn, report, rows, rounds, clients, seconds):
    report.heading(f"statistics on against off: bulk UPDATE of {rows:,} rows (fastest of {rounds} rounds), and"
                   f" {clients} clients appending single rows over 1,000 accounts ({seconds}s per side,"
                   f" median of {rounds} rounds)")
    if not statistics_collected(conn):
        report.info("skipped: statistics are not collected in this cluster (before 17 they need"
                    " shared_preload_libraries = 'raceguard')")
        return
    guards = {"lock_version": "raceguard.lock_version()", "once": "raceguard.immutable_once_set('owner_id')"}
    for name, trigger in guards.items():
        table = f"stats_bulk_{name}"
        execute(conn, f"DROP TABLE IF EXISTS {table}")
        execute(conn, f"CREATE TABLE {table} (id integer PRIMARY KEY, payload integer, lock_version integer,"
                      f" owner_id integer)")
        execute(conn, f"INSERT INTO {table} SELECT g, g, 1, g FROM generate_series(1, {rows}) g")
        execute(conn, f"CREATE TRIGGER guard BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {trigger}")
    sides = [(name, setting) for name in guards for setting in ("on", "off")]
    times = {side: [] for side in sides}
    for round_number in range(rounds):
        for name, setting in rotated(sides, round_number):
            execute(conn, f"VACUUM FULL stats_bulk_{name}")
            execute(conn, f"VACUUM ANALYZE stats_bulk_{name}")
            execute(conn, "CHECKPOINT")
            execute(conn, f"SET raceguard.track_stats = {setting}")
            times[(name, setting)].append(timed(conn, f"UPDATE stats_bulk_{name} SET payload = payload + 1"))
    execute(conn, "RESET raceguard.track_stats")
    fastest = {side: min(values) for side, values in times.items()}
    for name, label in (("lock_version", "lock_version"), ("once", "immutable_once_set")):
        report.ratio(f"{label} bulk UPDATE, statistics on / off", fastest[(name, "on")] / fastest[(name, "off")])
    counted = execute(conn, "SELECT coalesce(sum(rows_checked), 0) FROM raceguard.stats"
                            " WHERE table_name::text = 'stats_bulk_lock_version'")[0][0]
    report.check("raceguard.stats counted the bulk UPDATEs made with statistics on",
                 counted == rows * rounds, f"({counted:,} rows checked, {rows * rounds:,} expected)")

    execute(conn, "DROP TABLE IF EXISTS stats_ledger")
    execute(conn, "CREATE TABLE stats_ledger (account_id integer NOT NULL, amount bigint NOT NULL,"
                  " running_balance bigint, entry_no bigint)")
    execute(conn, "CREATE UNIQUE INDEX ON stats_ledger (account_id, entry_no)")
    execute(conn, "CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON stats_ledger FOR EACH ROW"
                  " EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id',"
                  " 'seq=entry_no')")
    script = "\\set account random(1, 1000)\nINSERT INTO stats_ledger (account_id, amount) VALUES (:account, 1);\n"
    tps = {"on": [], "off": []}
    for round_number in range(rounds):
        for setting in rotated(["on", "off"], round_number):
            rate, _ = pgbench(script, clients, seconds=seconds,
                              options=f"-c raceguard.track_stats={setting}")
            tps[setting].append(rate)
    on, off = statistics.median(tps["on"]), statistics.median(tps["off"])
    report.info(f"median TPS: statistics on {on:.0f}, off {off:.0f}")
    report.ratio("running_balance appends, statistics on / off (TPS)", on / off,
                 spread=[a / b for a, b in zip(tps["on"], tps["off"])])
    appends = execute(conn, "SELECT coalesce(sum(appends), 0) FROM raceguard.stats"
                            " WHERE table_name::text = 'stats_ledger'")[0][0]
    entries = execute(conn, "SELECT count(*) FROM stats_ledger")[0][0]
    report.check("raceguard.stats counted the appends made with statistics on, and only those",
                 0 < appends < entries, f"({appends:,} of {entries:,} entries)")
    for table in ("stats_bulk_lock_version", "stats_bulk_once", "stats_ledger"):
        execute(conn, f"DROP TABLE {table}")

# ---------------------------------------------------------------------------
# claim and claim_lease: workers draining a queue
# ---------------------------------------------------------------------------

ID_LIST = "coalesce('ARRAY[' || string_agg(id::text, ',') || ']', 'ARRAY[]::integer[]') AS ids"

CLAIM_SCRIPTS = {
    # claim(): in a transaction, claim 10, then mark them done.
    "claim_hand": (
        "BEGIN;\n"
        f"SELECT {ID_LIST} FROM (SELECT id FROM queue_claim_hand WHERE done_at IS NULL"
        " LIMIT 10 FOR UPDATE SKIP LOCKED) claimed \\gset\n"
        "UPDATE queue_claim_hand SET done_at = now() WHERE id = ANY (:ids);\n"
        "INSERT INTO claimed_log SELECT 'claim_hand', unnest(:ids::integer[]);\n"
        "COMMIT;\n"
    ),
    "claim_raceguard": (
        "BEGIN;\n"
        f"SELECT {ID_LIST} FROM raceguard.claim(NULL::queue_claim_raceguard, 'done_at IS NULL', 10) \\gset\n"
        "UPDATE queue_claim_raceguard SET done_at = now() WHERE id = ANY (:ids);\n"
        "INSERT INTO claimed_log SELECT 'claim_raceguard', unnest(:ids::integer[]);\n"
        "COMMIT;\n"
    ),
    # claim_lease(): lease 10 in one statement, then complete them by token.
    "lease_hand": (
        "WITH token AS (SELECT nextval('bench_token_seq') AS value),"
        " leased AS (UPDATE queue_lease_hand SET claim_token = (SELECT value FROM token),"
        " claimed_until = clock_timestamp() + interval '5 minutes'"
        " WHERE id IN (SELECT id FROM queue_lease_hand WHERE done_at IS NULL"
        " AND (claimed_until IS NULL OR claimed_until <= clock_timestamp()) LIMIT 10 FOR UPDATE SKIP LOCKED)"
        " RETURNING claim_token)"
        " SELECT coalesce(min(claim_token), 0) AS token FROM leased \\gset\n"
        "WITH done AS (UPDATE queue_lease_hand SET done_at = now(), claim_token = NULL, claimed_until = NULL"
        " WHERE claim_token = :token RETURNING id)"
        " INSERT INTO claimed_log SELECT 'lease_hand', id FROM done;\n"
    ),
    "lease_raceguard": (
        "SELECT coalesce(min(claim_token), 0) AS token FROM"
        " raceguard.claim_lease(NULL::queue_lease_raceguard, 'done_at IS NULL', 10, '5 minutes') \\gset\n"
        "WITH done AS (UPDATE queue_lease_raceguard SET done_at = now(), claim_token = NULL, claimed_until = NULL"
        " WHERE claim_token = :token RETURNING id)"
        " INSERT INTO claimed_log SELECT 'lease_raceguard', id FROM done;\n"
    ),
    # claim_lease() counting attempts, max_attempts 3: the hand-written
    # statement that does the same.
    "attempts_hand": (
        "WITH token AS (SELECT nextval('bench_token_seq') AS value),"
        " leased AS (UPDATE queue_attempts_hand SET claim_token = (SELECT value FROM token),"
        " claimed_until = clock_timestamp() + interval '5 minutes', attempts = coalesce(attempts, 0) + 1"
        " WHERE id IN (SELECT id FROM queue_attempts_hand WHERE done_at IS NULL"
        " AND (claimed_until IS NULL OR claimed_until <= clock_timestamp()) AND (attempts IS NULL OR attempts < 3)"
        " LIMIT 10 FOR UPDATE SKIP LOCKED)"
        " RETURNING claim_token)"
        " SELECT coalesce(min(claim_token), 0) AS token FROM leased \\gset\n"
        "WITH done AS (UPDATE queue_attempts_hand SET done_at = now(), claim_token = NULL, claimed_until = NULL"
        " WHERE claim_token = :token RETURNING id)"
        " INSERT INTO claimed_log SELECT 'attempts_hand', id FROM done;\n"
    ),
    "attempts_raceguard": (
        "SELECT coalesce(min(claim_token), 0) AS token FROM"
        " raceguard.claim_lease(NULL::queue_attempts_raceguard, 'done_at IS NULL', 10, '5 minutes',"
        " attempts_column => 'attempts', max_attempts => 3) \\gset\n"
        "WITH done AS (UPDATE queue_attempts_raceguard SET done_at = now(), claim_token = NULL, claimed_until = NULL"
        " WHERE claim_token = :token RETURNING id)"
        " INSERT INTO claimed_log SELECT 'attempts_raceguard', id FROM done;\n"
    ),
}


def fill_queue(conn, name, rows):
    table = f"queue_{name}"
    execute(conn, f"DROP TABLE IF EXISTS {table}")
    execute(conn, f"CREATE TABLE {table} (id integer PRIMARY KEY, payload integer, done_at timestamptz,"
                  f" claim_token bigint, claimed_until timestamptz, attempts integer)")
    execute(conn, f"INSERT INTO {table} (id, payload) SELECT g, g FROM generate_series(1, {rows}) g")
    execute(conn, f"CREATE INDEX ON {table} (id) WHERE done_at IS NULL")
    execute(conn, f"CREATE INDEX ON {table} (claim_token)")
    execute(conn, f"VACUUM ANALYZE {table}")


def claims(conn, report, clients, rows, rounds):
    report.heading(f"claims: {clients} workers claiming batches of 10 from {rows:,} rows and marking them done,"
                   f" median of {rounds} rounds")
    execute(conn, "DROP SEQUENCE IF EXISTS bench_token_seq")
    execute(conn, "CREATE SEQUENCE bench_token_seq")
    execute(conn, "DROP TABLE IF EXISTS claimed_log")
    execute(conn, "CREATE TABLE claimed_log (variant text, id integer)")
    names = list(CLAIM_SCRIPTS)
    tps = {name: [] for name in names}
    per_client = rows // 10 // clients
    duplicates = 0
    for round_number in range(rounds):
        for name in rotated(names, round_number):
            fill_queue(conn, name, rows)
            execute(conn, "TRUNCATE claimed_log")
            rate, _ = pgbench(CLAIM_SCRIPTS[name], clients, transactions=per_client)
            tps[name].append(rate)
            twice, processed = execute(conn, "SELECT count(*) - count(DISTINCT id), count(DISTINCT id)"
                                             " FROM claimed_log")[0]
            duplicates += twice
            if processed < rows * 0.95:
                report.info(f"note: {name} processed only {processed:,} of {rows:,} rows in round {round_number + 1}")
    median = {name: statistics.median(values) for name, values in tps.items()}
    report.info("median TPS: " + ", ".join(f"{name} {median[name]:.0f}" for name in names))
    report.ratio("claim TPS / hand-written SELECT ... FOR UPDATE SKIP LOCKED LIMIT 10",
                 median["claim_raceguard"] / median["claim_hand"], ">=", 0.90)
    report.ratio("claim_lease TPS / hand-written UPDATE ... WHERE id IN (SELECT ... SKIP LOCKED) RETURNING",
                 median["lease_raceguard"] / median["lease_hand"], ">=", 0.90)
    report.ratio("claim_lease with attempts_column, max_attempts TPS / hand-written UPDATE ... SET attempts ="
                 " attempts + 1 ... WHERE id IN (SELECT ... attempts < max ... SKIP LOCKED) RETURNING",
                 median["attempts_raceguard"] / median["attempts_hand"], ">=", 0.90)
    report.check("no job claimed twice", duplicates == 0, f"({duplicates} claimed twice)")
    for name in names:
        execute(conn, f"DROP TABLE queue_{name}")
    execute(conn, "DROP TABLE claimed_log")
    execute(conn, "DROP SEQUENCE bench_token_seq")


# ---------------------------------------------------------------------------
# citus: ledger appends and claim_lease through a Citus coordinator
# ---------------------------------------------------------------------------

# Every server of this case: one plain node, and a Citus coordinator with two
# workers, all on this machine, each with these settings (fast durability,
# as the other cases that are not ledger cases; max_prepared_transactions
# for Citus's two-phase commits).
CITUS_CASE_SETTINGS = {
    "shared_buffers": "256MB", "max_connections": "100", "max_prepared_transactions": "100",
    "max_locks_per_transaction": "256", "autovacuum": "off", "jit": "off",
    "fsync": "off", "full_page_writes": "off", "synchronous_commit": "off",
}
CITUS_NODE_SETTINGS = {
    "shared_preload_libraries": "citus,raceguard", "citus.node_conninfo": "sslmode=prefer",
    "citus.enable_unsafe_triggers": "on",
}


class ThrowawayServers:
    """Servers of the server under test's own binaries, each in a temporary
    directory with its own Unix socket and no TCP listener; stopped and
    removed by stop(). Run as root, they run as postgres."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="raceguard-bench-citus.")
        os.chmod(self.root, 0o755)
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.started = []

    def run(self, *command):
        result = subprocess.run(self.as_postgres + list(command), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def start(self, name, port, settings):
        data = os.path.join(self.root, name)
        self.run(os.path.join(self.bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
        with open(os.path.join(data, "postgresql.conf"), "a") as conf:
            conf.write(f"listen_addresses = ''\nunix_socket_directories = '{self.root}'\nport = {port}\n")
            conf.writelines(f"{setting} = '{value}'\n" for setting, value in settings.items())
        self.run(os.path.join(self.bindir, "pg_ctl"), "-D", data, "-l", f"{data}.log", "-w", "start")
        self.started.append(data)
        return port

    def stop(self):
        for data in self.started:
            subprocess.run(self.as_postgres + [os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w",
                                               "stop"], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def server(self, port):
        """The PG* variables of one of them, for pgbench."""
        return {"PGHOST": self.root, "PGPORT": str(port), "PGUSER": "postgres", "PGDATABASE": "postgres"}

    def connect(self, port):
        conn = psycopg2.connect(host=self.root, port=port, user="postgres", dbname="postgres",
                                application_name="raceguard bench")
        conn.autocommit = True
        return conn


def create_citus_case_tables(conn, distributed, accounts, history):
    """The ledgers and the job table, distributed (by account, by queue)
    before the guard's trigger is created, as docs/citus.md says."""
    for table in ("ledger_guarded", "ledger_plain"):
        execute(conn, f"CREATE TABLE {table} (account_id integer NOT NULL, amount bigint NOT NULL,"
                      f" running_balance bigint, entry_no bigint)")
        execute(conn, f"CREATE UNIQUE INDEX ON {table} (account_id, entry_no)")
    execute(conn, "CREATE TABLE jobs (id integer NOT NULL, queue integer NOT NULL, done_at timestamptz,"
                  " claim_token bigint, claimed_until timestamptz, completions integer NOT NULL DEFAULT 0,"
                  " PRIMARY KEY (queue, id))")
    execute(conn, "CREATE INDEX ON jobs (queue, id) WHERE done_at IS NULL")
    execute(conn, "CREATE INDEX ON jobs (claim_token)")
    if distributed:
        execute(conn, "SELECT create_distributed_table('ledger_guarded', 'account_id')")
        execute(conn, "SELECT create_distributed_table('ledger_plain', 'account_id')")
        execute(conn, "SELECT create_distributed_table('jobs', 'queue')")
    execute(conn, "CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON ledger_guarded FOR EACH ROW"
                  " EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance', 'account_id',"
                  " 'seq=entry_no')")
    execute(conn, f"INSERT INTO ledger_guarded (account_id, amount) SELECT a, 1 FROM generate_series(1, {accounts}) a,"
                  f" generate_series(1, {history})")
    execute(conn, f"INSERT INTO ledger_plain SELECT a, 1, n, n FROM generate_series(1, {accounts}) a,"
                  f" generate_series(1, {history}) n")
    execute(conn, f"CREATE SEQUENCE ledger_plain_entry_no START {history + 1}")
    execute(conn, "VACUUM ANALYZE ledger_guarded, ledger_plain")


def refill_jobs(conn, queues, jobs_per_queue):
    execute(conn, "TRUNCATE jobs")
    execute(conn, f"INSERT INTO jobs (id, queue) SELECT g, 1 + g % {queues}"
                  f" FROM generate_series(1, {queues * jobs_per_queue}) g")
    execute(conn, "VACUUM ANALYZE jobs")


def citus_scripts(accounts, queues):
    return {
        "guarded": (f"\\set account random(1, {accounts})\n"
                    "INSERT INTO ledger_guarded (account_id, amount) VALUES (:account, 1);\n"),
        "plain": (f"\\set account random(1, {accounts})\n"
                  "\\set balance random(1, 1000000)\n"
                  "INSERT INTO ledger_plain VALUES (:account, 1, :balance, nextval('ledger_plain_entry_no'));\n"),
        # A worker leases 10 jobs of one queue (the filter pins the
        # distribution column, as claim_lease() needs on Citus), then
        # completes them by token; completions counts how often each job was.
        "lease": (f"\\set queue random(1, {queues})\n"
                  "SELECT coalesce(min(claim_token), 0) AS token FROM raceguard.claim_lease(NULL::jobs,"
                  " 'queue = :queue AND done_at IS NULL', 10, '5 minutes') \\gset\n"
                  "UPDATE jobs SET done_at = now(), claim_token = NULL, claimed_until = NULL,"
                  " completions = completions + 1 WHERE queue = :queue AND claim_token = :token;\n"),
    }


def citus(conn, report, clients, seconds, rounds, accounts=1000, history=10, queues=8, jobs_per_queue=2500):
    report.heading(f"citus: {clients} clients through a Citus coordinator (two workers, all on this machine)"
                   f" against one node: appends over {accounts:,} accounts ({seconds}s per side) and claim_lease"
                   f" of 10 from {queues} queues, median of {rounds} rounds")
    directories = dict(execute(conn, "SELECT name, setting FROM pg_config WHERE name IN ('BINDIR', 'PKGLIBDIR')"))
    bindir, libdir = directories["BINDIR"], directories["PKGLIBDIR"]
    if not os.path.exists(os.path.join(libdir, "citus.so")):
        report.info(f"skipped: Citus is not installed for the server under test (no citus.so in {libdir})")
        return
    # Ports: RACEGUARD_CITUS_PORT (default 9700) for the coordinator, the
    # next two for the workers, the one after for the single node.
    base = int(os.environ.get("RACEGUARD_CITUS_PORT", "9700"))
    servers = ThrowawayServers(bindir)
    try:
        single = servers.start("one_node", base + 3, dict(CITUS_CASE_SETTINGS, shared_preload_libraries="raceguard"))
        nodes = [servers.start(name, base + offset, dict(CITUS_CASE_SETTINGS, **CITUS_NODE_SETTINGS))
                 for offset, name in enumerate(("coordinator", "worker1", "worker2"))]
        # raceguard on every node before the workers join (docs/citus.md).
        for port in nodes:
            node = servers.connect(port)
            execute(node, "CREATE EXTENSION citus")
            execute(node, "CREATE EXTENSION raceguard")
            node.close()
        coordinator = servers.connect(nodes[0])
        execute(coordinator, "SELECT citus_set_coordinator_host(%s, %s)", (servers.root, nodes[0]))
        for port in nodes[1:]:
            execute(coordinator, "SELECT citus_add_node(%s, %s)", (servers.root, port))
        one_node = servers.connect(single)
        execute(one_node, "CREATE EXTENSION raceguard")
        sides = {"one node": (one_node, single), "Citus": (coordinator, nodes[0])}
        for name, (side, _) in sides.items():
            create_citus_case_tables(side, name == "Citus", accounts, history)
        shards = execute(coordinator, "SELECT count(*) FROM pg_dist_shard"
                                      " WHERE logicalrelid = 'ledger_guarded'::regclass")[0][0]
        report.info(f"Citus: coordinator (no shards) and 2 workers, {shards} shards per table; every server: "
                    + ", ".join(f"{setting}={value}" for setting, value in CITUS_CASE_SETTINGS.items()))

        scripts = citus_scripts(accounts, queues)
        runs = [(work, name) for work in ("guarded", "plain") for name in sides]
        tps = {run: [] for run in runs + [("lease", name) for name in sides]}
        per_client = queues * jobs_per_queue // 10 // clients // 2  # leases drain half the jobs
        twice = {name: 0 for name in sides}
        for round_number in range(rounds):
            for work, name in rotated(runs, round_number):
                rate, _ = pgbench(scripts[work], clients, seconds=seconds, server=servers.server(sides[name][1]))
                tps[(work, name)].append(rate)
            for name in rotated(list(sides), round_number):
                refill_jobs(sides[name][0], queues, jobs_per_queue)
                rate, _ = pgbench(scripts["lease"], clients, transactions=per_client,
                                  server=servers.server(sides[name][1]))
                tps[("lease", name)].append(rate)
                twice[name] += execute(sides[name][0], "SELECT count(*) FROM jobs WHERE completions > 1")[0][0]
        median = {run: statistics.median(values) for run, values in tps.items()}
        report.measured("citus", {f"{work}, {name}": values for (work, name), values in tps.items()})
        report.info("median TPS: " + ", ".join(f"{work} on {name} {median[(work, name)]:.0f}"
                                               for work, name in tps))
        for name, (side, _) in sides.items():
            problems = execute(side, "SELECT count(*) FROM raceguard.verify_running_balance('ledger_guarded')")[0][0]
            report.check(f"citus: verify_running_balance() on {name}", problems == 0, f"({problems} rows)")
            report.check(f"citus: no job leased and completed twice on {name}", twice[name] == 0,
                         f"({twice[name]} twice)")
        spread = {work: [citus_rate / single_rate for citus_rate, single_rate
                         in zip(tps[(work, "Citus")], tps[(work, "one node")])] for work in scripts}
        report.ratio("Citus coordinator / one node: appends through running_balance",
                     median[("guarded", "Citus")] / median[("guarded", "one node")], spread=spread["guarded"],
                     case="citus")
        report.ratio("Citus coordinator / one node: plain INSERTs (seq and balance given, no trigger)",
                     median[("plain", "Citus")] / median[("plain", "one node")], spread=spread["plain"],
                     case="citus")
        report.ratio("Citus coordinator / one node: claim_lease of 10 pinned to a queue, then completion",
                     median[("lease", "Citus")] / median[("lease", "one node")], spread=spread["lease"],
                     case="citus")
        for name in sides:
            report.ratio(f"running_balance appends / plain INSERTs, on {name}",
                         median[("guarded", name)] / median[("plain", name)], case="citus")
        one_node.close()
        coordinator.close()
    finally:
        servers.stop()


# ---------------------------------------------------------------------------
# transition: a bulk UPDATE of N rows along a declared edge
# ---------------------------------------------------------------------------

TRANSITION_PEERS = r"""
DO $$ BEGIN
    CREATE TYPE bench_status AS ENUM ('pending', 'sent', 'paid');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- transition written by hand for one table: the edges in the code.
CREATE OR REPLACE FUNCTION bench_transition_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status IS DISTINCT FROM 'pending' THEN
            RAISE EXCEPTION 'undeclared start state' USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status
          AND NOT ((OLD.status = 'pending' AND NEW.status = 'sent') OR (OLD.status = 'sent' AND NEW.status = 'pending')
                   OR (OLD.status = 'sent' AND NEW.status = 'paid')) THEN
        RAISE EXCEPTION 'undeclared transition' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
"""

# Each round moves every row along one edge: pending -> sent, then back.
TRANSITION_EDGES = "'status', '>pending', 'pending>sent', 'sent>pending', 'sent>paid'"
TRANSITION_VARIANTS = [
    ("none", "bench_status", None),
    ("floor", "bench_status", "suppress_redundant_updates_trigger()"),
    ("transition", "bench_status", f"raceguard.transition({TRANSITION_EDGES})"),
    ("transition_text", "text", f"raceguard.transition({TRANSITION_EDGES})"),
    ("plpgsql_table", "bench_status", "bench_transition_table()"),
]


def transition_bulk(conn, report, rows, rounds):
    report.heading(f"transition: bulk UPDATE of {rows:,} rows along a declared edge"
                   f" (SET status = 'sent', then back), fastest of {rounds} rounds")
    execute(conn, TRANSITION_PEERS)
    names = [name for name, _, _ in TRANSITION_VARIANTS]
    for name, status_type, trigger in TRANSITION_VARIANTS:
        table = f"bulk_transition_{name}"
        execute(conn, f"DROP TABLE IF EXISTS {table}")
        execute(conn, f"CREATE TABLE {table} (id integer PRIMARY KEY, status {status_type} NOT NULL, payload integer)")
        execute(conn, f"INSERT INTO {table} SELECT g, 'pending', g FROM generate_series(1, {rows}) g")
        if trigger:
            execute(conn, f"CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {trigger}")
    times = {name: [] for name in names}
    for round_number in range(rounds):
        target = "sent" if round_number % 2 == 0 else "pending"
        for name in rotated(names, round_number):
            table = f"bulk_transition_{name}"
            times[name].append(timed_on_compact_table(conn, table, f"UPDATE {table} SET status = '{target}'"))
    fastest = {name: min(values) for name, values in times.items()}
    report.info("fastest: " + ", ".join(f"{name} {fastest[name]:.2f}s" for name in names))
    for name in names:
        moved = execute(conn, f"SELECT count(*) FROM bulk_transition_{name} WHERE status::text ="
                              f" '{'sent' if rounds % 2 == 1 else 'pending'}'")[0][0]
        report.check(f"transition bulk: every row of {name} moved along the edge", moved == rows, f"({moved:,})")
    report.ratio("transition (enum) / floor trigger", fastest["transition"] / fastest["floor"], "<=", 1.10)
    report.ratio("transition (enum) / PL/pgSQL written for the table",
                 fastest["transition"] / fastest["plpgsql_table"], "<=", 0.90)
    report.ratio("transition (text) / floor trigger (enum table)", fastest["transition_text"] / fastest["floor"])
    for name in names:
        execute(conn, f"DROP TABLE bulk_transition_{name}")
    execute(conn, "DROP FUNCTION bench_transition_table()")
    execute(conn, "DROP TYPE bench_status")
    return fastest


# ---------------------------------------------------------------------------


CASES = ["bulk_update", "transition", "running_balance", "transfers", "ledger_size", "partitioned", "stats_cost", "claims",
         "citus"]
# Measured under each durability setting asked for; the others under fast.
LEDGER_CASES = ["running_balance", "transfers", "ledger_size", "partitioned"]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latest.json")


def machine():
    """The machine bench.py runs on (the server's, when it is local)."""
    cpu = platform.processor() or platform.machine()
    memory = None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    return {"cores": os.cpu_count(), "cpu": cpu,
            "memory_gib": round(memory / 2**30, 1) if memory else None}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases: " + ", ".join(CASES))
    parser.add_argument("--durability", default="safe,fast",
                        help="comma-separated durability settings the ledger cases run under: safe (fsync,"
                             " full_page_writes, synchronous_commit on), fast (all three off); default both")
    parser.add_argument("--results", default=RESULTS, help=f"the JSON file written (default {RESULTS})")
    options = parser.parse_args(argv)
    only = [case.strip() for case in options.only.split(",") if case.strip()]
    unknown = [case for case in only if case not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    durabilities = [name.strip() for name in options.durability.split(",") if name.strip()]
    if not durabilities or any(name not in DURABILITY for name in durabilities):
        parser.error(f"--durability takes safe, fast or both, not {options.durability!r}")

    quick = options.quick
    conn = connect()
    execute(conn, "CREATE EXTENSION IF NOT EXISTS raceguard")
    version = execute(conn, "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")[0][0]
    server = execute(conn, "SHOW server_version")[0][0]
    settings = execute(conn, "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)"
                             " FROM pg_settings WHERE name IN ('shared_buffers', 'max_wal_size', 'wal_init_zero',"
                             " 'checkpoint_timeout', 'autovacuum', 'jit', 'max_locks_per_transaction',"
                             " 'shared_preload_libraries')")[0][0]
    report = Report()
    durability = Durability(conn, report)
    started = time.perf_counter()
    host = machine()
    print(f"raceguard {version} on PostgreSQL {server}, {host['cores']} cores ({host['cpu']}),"
          f" {host['memory_gib']} GiB, {time.strftime('%Y-%m-%d')}{' (quick mode)' if quick else ''}")
    print(f"settings: {settings}")
    print("durability: " + "; ".join(f"{name} = " + ", ".join(f"{k}={v}" for k, v in DURABILITY[name].items())
                                      for name in DURABILITY)
          + f"; ledger cases under {', '.join(durabilities)}, the others under fast")

    try:
        if "bulk_update" in only:
            durability.switch("fast")
            bulk_update(conn, report, rows=100_000 if quick else 1_000_000, rounds=3 if quick else 5)
        if "transition" in only:
            durability.switch("fast")
            transition_bulk(conn, report, rows=100_000 if quick else 1_000_000, rounds=3 if quick else 5)
        if "running_balance" in only:
            # Many short rounds rather than a few long ones: on a shared machine
            # the median of many interleaved rounds moves least between runs.
            running_balance(conn, report, durability, durabilities, clients=8, seconds=3 if quick else 6,
                            rounds=2 if quick else 5, bulk_rows=100_000 if quick else 1_000_000)
        if "transfers" in only:
            transfers(conn, report, durability, durabilities, clients=8, seconds=3 if quick else 5,
                      rounds=2 if quick else 4)
        if "ledger_size" in only:
            ledger_size(conn, report, durability, durabilities, clients=8, seconds=3 if quick else 6,
                        rounds=2 if quick else 5, entries=1_000_000 if quick else 10_000_000)
        if "partitioned" in only:
            partitioned(conn, report, durability, durabilities, clients=8, seconds=3 if quick else 5,
                        rounds=2 if quick else 4, history=48 if quick else 96)
        if "stats_cost" in only:
            durability.switch("fast")
            stats_cost(conn, report, rows=100_000 if quick else 1_000_000, rounds=3 if quick else 5, clients=8,
                       seconds=3 if quick else 5)
        if "claims" in only:
            durability.switch("fast")
            claims(conn, report, clients=8, rows=10_000 if quick else 100_000, rounds=3)
        if "citus" in only:
            # Servers of their own (fast durability); skipped without Citus.
            citus(conn, report, clients=8, seconds=3 if quick else 5, rounds=2 if quick else 3)
    finally:
        durability.restore()
        conn.close()

    elapsed = time.perf_counter() - started
    os.makedirs(os.path.dirname(os.path.abspath(options.results)), exist_ok=True)
    with open(options.results, "w") as results:
        json.dump({"raceguard": version, "postgresql": server, "machine": host, "date": time.strftime("%Y-%m-%d"),
                   "quick": quick, "cases": only, "durability": {name: DURABILITY[name] for name in durabilities},
                   "settings": settings, "seconds": round(elapsed), "figures": report.figures,
                   "measurements": report.measurements, "misses": report.misses, "failures": report.failures},
                  results, indent=1)
        results.write("\n")
    print(f"\n{len(report.lines)} figures in {elapsed:.0f}s, written to {options.results};"
          f" targets missed: {', '.join(report.misses) if report.misses else 'none'};"
          f" correctness checks failed: {', '.join(report.failures) if report.failures else 'none'}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
