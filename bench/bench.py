"""raceguard benchmarks: each figure a ratio against peers measured in the
same run, with the sides interleaved (round after round, in rotating order)
so that drift on a noisy machine hits every side alike.

Run through bench/run.sh (a throwaway cluster tuned for benchmarking), or
against any database with raceguard installed (PG* environment variables):

    python3 bench/bench.py            # the full run (under 10 minutes on 2 cores)
    python3 bench/bench.py --quick    # smaller sizes, for development
    python3 bench/bench.py --only bulk_update,claims

The run fails (exit 1) when a correctness check fails: after the running
balance cases verify_running_balance() must return nothing, and after the
claim cases no job may have been claimed twice. Targets missed are reported
as MISS; they do not fail the run (speed is measured, not asserted).
"""

import argparse
import os
import re
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
    def __init__(self):
        self.lines = []
        self.misses = []
        self.failures = []

    def heading(self, text):
        print(f"\n== {text}", flush=True)

    def info(self, text):
        print(f"   {text}", flush=True)

    def ratio(self, label, value, op=None, target=None):
        """One figure: label, ratio, and the target when there is one."""
        if op is None:
            verdict = ""
        else:
            met = value <= target if op == "<=" else value >= target
            verdict = f"  (target {op} {target:.2f}: {'ok' if met else 'MISS'})"
            if not met:
                self.misses.append(label)
        line = f"{label:<72} {value:6.2f}x{verdict}"
        self.lines.append(line)
        print("   " + line, flush=True)

    def check(self, label, ok, detail=""):
        print(f"   check: {label}: {'ok' if ok else 'FAILED'} {detail}".rstrip(), flush=True)
        if not ok:
            self.failures.append(label)


def rotated(items, round_number):
    """The variants in a different order each round."""
    shift = round_number % len(items)
    return items[shift:] + items[:shift]


def pgbench(script_text, clients, *, seconds=None, transactions=None):
    """Runs pgbench with a custom script; returns (tps, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(script_text)
        path = script.name
    try:
        command = ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)),
                   "-f", path]
        command += ["-T", str(seconds)] if seconds else ["-t", str(transactions)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        os.unlink(path)
    output = result.stdout + result.stderr
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed:\n{output}")
    return float(match.group(1)), output


# ---------------------------------------------------------------------------
# lock_version and immutable_once_set: a bulk UPDATE of N rows
# ---------------------------------------------------------------------------

PLPGSQL_PEERS = r"""
-- lock_version written by hand for one table.
CREATE FUNCTION bench_lock_version_table() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE FUNCTION bench_lock_version_generic() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE FUNCTION bench_once_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.owner_id IS NOT NULL AND NEW.owner_id IS DISTINCT FROM OLD.owner_id THEN
        RAISE EXCEPTION 'owner_id is already set' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

-- immutable_once_set written generically: the columns in TG_ARGV.
CREATE FUNCTION bench_once_generic() RETURNS trigger LANGUAGE plpgsql AS $$
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
            # Every side starts from a compact table: the state a fresh one has.
            execute(conn, f"VACUUM FULL bulk_{name}")
            execute(conn, f"VACUUM ANALYZE bulk_{name}")
            execute(conn, "CHECKPOINT")
            times[name].append(timed(conn, f"UPDATE bulk_{name} SET payload = payload + 1"))
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
CREATE FUNCTION bench_balance_advisory() RETURNS trigger LANGUAGE plpgsql AS $$
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

LEDGERS = ["plain", "raceguard", "table_lock", "advisory"]


def create_ledger(conn, name, accounts, rows_per_account):
    table = f"ledger_{name}"
    execute(conn, f"DROP TABLE IF EXISTS {table}")
    execute(conn, f"CREATE TABLE {table} (account_id integer NOT NULL, amount bigint NOT NULL,"
                  f" running_balance bigint, entry_no bigint)")
    # The same table on every side: the unique (account, entry) index the
    # guard needs (plain INSERTs leave entry_no NULL, which it allows).
    execute(conn, f"CREATE UNIQUE INDEX ON {table} (account_id, entry_no)")
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
    return pick + f"INSERT INTO ledger_{name} (account_id, amount) VALUES (:account, 1);\n"


def running_balance(conn, report, clients, seconds, rounds, bulk_rows, accounts=1000):
    report.heading(f"running_balance: {clients} clients appending single rows over {accounts:,} accounts,"
                   f" {seconds}s per side, median of {rounds} rounds")
    execute(conn, LEDGER_PEERS)
    for name in LEDGERS:
        create_ledger(conn, name, accounts, 10)
    tps = {name: [] for name in LEDGERS}
    for round_number in range(rounds):
        for name in rotated(LEDGERS, round_number):
            rate, _ = pgbench(append_script(name, accounts), clients, seconds=seconds)
            tps[name].append(rate)
    median = {name: statistics.median(values) for name, values in tps.items()}
    report.info("median TPS: " + ", ".join(f"{name} {median[name]:.0f}" for name in LEDGERS))
    report.ratio("running_balance TPS / plain INSERT TPS", median["raceguard"] / median["plain"], ">=", 0.70)
    report.ratio("running_balance TPS / whole-table-lock TPS", median["raceguard"] / median["table_lock"], ">=", 3.0)
    report.ratio("whole-table-lock TPS / plain INSERT TPS", median["table_lock"] / median["plain"])
    report.ratio("PL/pgSQL advisory-lock trigger TPS / plain INSERT TPS", median["advisory"] / median["plain"])
    problems = execute(conn, "SELECT count(*) FROM raceguard.verify_running_balance('ledger_raceguard')")[0][0]
    report.check("verify_running_balance after the concurrent appends", problems == 0, f"({problems} problems)")

    report.heading(f"running_balance: bulk INSERT ... SELECT of {bulk_rows:,} rows over {accounts:,} accounts,"
                   f" median of {rounds} rounds")
    insert = ("INSERT INTO ledger_{name} (account_id, amount) SELECT 1 + g % {accounts}, 1"
              " FROM generate_series(1, {rows}) g")
    times = {"plain": [], "raceguard": []}
    for round_number in range(rounds):
        for name in rotated(["plain", "raceguard"], round_number):
            execute(conn, f"TRUNCATE ledger_{name}")
            execute(conn, "CHECKPOINT")
            times[name].append(timed(conn, insert.format(name=name, accounts=accounts, rows=bulk_rows)))
    median = {name: statistics.median(values) for name, values in times.items()}
    report.info(f"medians: plain {median['plain']:.2f}s, running_balance {median['raceguard']:.2f}s")
    report.ratio("running_balance bulk INSERT / plain INSERT", median["raceguard"] / median["plain"], "<=", 2.5)
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


CASES = ["bulk_update", "running_balance", "claims"]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases: " + ", ".join(CASES))
    options = parser.parse_args(argv)
    only = [case.strip() for case in options.only.split(",") if case.strip()]
    unknown = [case for case in only if case not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")

    quick = options.quick
    conn = connect()
    execute(conn, "CREATE EXTENSION IF NOT EXISTS raceguard")
    version = execute(conn, "SELECT extversion FROM pg_extension WHERE extname = 'raceguard'")[0][0]
    server = execute(conn, "SHOW server_version")[0][0]
    settings = execute(conn, "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)"
                             " FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync',"
                             " 'full_page_writes', 'max_wal_size', 'wal_init_zero', 'autovacuum', 'jit',"
                             " 'max_locks_per_transaction')")[0][0]
    report = Report()
    started = time.perf_counter()
    print(f"raceguard {version} on PostgreSQL {server}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
          f"{' (quick mode)' if quick else ''}")
    print(f"settings: {settings}")

    if "bulk_update" in only:
        bulk_update(conn, report, rows=100_000 if quick else 1_000_000, rounds=3 if quick else 5)
    if "running_balance" in only:
        running_balance(conn, report, clients=8, seconds=3 if quick else 12, rounds=2,
                        bulk_rows=100_000 if quick else 1_000_000)
    if "claims" in only:
        claims(conn, report, clients=8, rows=10_000 if quick else 100_000, rounds=3)
    conn.close()

    print(f"\n{len(report.lines)} figures in {time.perf_counter() - started:.0f}s;"
          f" targets missed: {', '.join(report.misses) if report.misses else 'none'};"
          f" correctness checks failed: {', '.join(report.failures) if report.failures else 'none'}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
