"""Stress of running_balance's hand-over at commit (raceguard preloaded).

Several sessions append to two or three hot accounts, one to three
appends per transaction, at READ COMMITTED or REPEATABLE READ, each
transaction also writing to its session's temporary table ON COMMIT DELETE
ROWS, which a gatekeeper session locks now and then for a few
milliseconds: a commit then waits there, after its hand-over, and the next
appends pile up on its entries. Each transaction ends at random: COMMIT;
COMMIT with statement_timeout or lock_timeout at 1 ms (the wait at COMMIT
for a transaction still committing then often fails, after this one has
handed its groups over, so the transactions built on its entries must
fail with 40001); COMMIT after a savepoint rolled back; ROLLBACK.

Each run draws several ledger shapes from the seed (RACEGUARD_SEED):
flat, or partitioned by month with each append booked into a random month
(a group's entries move between leaves); with or without another BEFORE
INSERT trigger that sorts before the guard (it stamps a memo; the guard
still trusts confirmed entries) or after it (the guard then confirms and
hands over nothing); and with or without a second, numeric ledger that
some transactions also append to (a guard that never confirms: that
transaction hands nothing over). Bounded.

Afterwards: every transaction whose COMMIT returned is in the ledger
exactly once and no other, every account's chain is exact (seq 1..n,
balance = previous balance + amount), and verify_running_balance() agrees.
The outcomes at COMMIT are printed (how often the hand-over's failures
were met), not asserted: they depend on timing.
    PGDATABASE=... python3 test/stress/handover.py
"""
import collections
import os
import random
import sys
import threading

import psycopg2
import psycopg2.extensions

SESSIONS = int(os.environ.get("STRESS_SESSIONS", "6"))
TRANSACTIONS = int(os.environ.get("STRESS_TRANSACTIONS", "100"))
SHAPES = int(os.environ.get("STRESS_SHAPES", "3"))
SEED = int(os.environ.get("RACEGUARD_SEED", str(random.randrange(1 << 31))))


def connect():
    # Appends to accounts in random order deadlock often: detected after
    # 20 ms rather than a second, the run stays short (superuser only).
    conn = psycopg2.connect("", options="-c deadlock_timeout=20ms")
    conn.set_session(autocommit=True)
    return conn


def draw_shape(rng):
    return {
        "layout": rng.choice(["flat", "monthly"]),
        "accounts": rng.choice([2, 3]),
        "neighbour": rng.choice(["none", "before", "after"]),
        "side_ledger": rng.random() < 0.5,
    }


def setup(shape):
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("SET client_min_messages = warning")
        cur.execute("DROP TABLE IF EXISTS handover_ledger, handover_side")
        columns = ("account_id integer NOT NULL, amount bigint NOT NULL, running_balance bigint, entry_no bigint,"
                   " tag text NOT NULL, memo text, booked date NOT NULL DEFAULT '2026-06-15'")
        if shape["layout"] == "monthly":
            cur.execute(f"CREATE TABLE handover_ledger ({columns}) PARTITION BY RANGE (booked)")
            for month in range(1, 7):
                cur.execute(f"CREATE TABLE handover_ledger_{month} PARTITION OF handover_ledger"
                            f" FOR VALUES FROM ('2026-{month:02d}-01') TO ('2026-{month + 1:02d}-01')")
            cur.execute("CREATE INDEX ON handover_ledger (account_id, entry_no)")
        else:
            cur.execute(f"CREATE TABLE handover_ledger ({columns})")
            cur.execute("CREATE UNIQUE INDEX ON handover_ledger (account_id, entry_no)")
        cur.execute("CREATE TRIGGER handover_ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON handover_ledger"
                    " FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance',"
                    " 'account_id', 'seq=entry_no')")
        if shape["neighbour"] != "none":
            cur.execute("CREATE OR REPLACE FUNCTION handover_stamp() RETURNS trigger LANGUAGE plpgsql AS"
                        " $$ BEGIN NEW.memo := 'stamped'; RETURN NEW; END $$")
            name = "a_stamp" if shape["neighbour"] == "before" else "z_stamp"
            cur.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON handover_ledger"
                        " FOR EACH ROW EXECUTE FUNCTION handover_stamp()")
        cur.execute("CREATE TABLE handover_side (account_id integer NOT NULL, amount numeric NOT NULL,"
                    " running_balance numeric, entry_no bigint)")
        cur.execute("CREATE UNIQUE INDEX ON handover_side (account_id, entry_no)")
        cur.execute("CREATE TRIGGER handover_side_balance BEFORE INSERT OR UPDATE OR DELETE ON handover_side"
                    " FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'running_balance',"
                    " 'account_id', 'seq=entry_no')")
        cur.execute("SHOW shared_preload_libraries")
        preload = cur.fetchone()[0]
    conn.close()
    if preload != "raceguard":
        sys.exit(f"shared_preload_libraries is {preload!r}, not raceguard: the hand-over needs it")


def session(shape_number, shape, number, committed, outcomes, failures):
    rng = random.Random((SEED * 100 + shape_number) * 1000 + number)
    conn = connect()
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE handover_gate (i integer) ON COMMIT DELETE ROWS")
    accounts = list(range(1, shape["accounts"] + 1))
    insert = "INSERT INTO handover_ledger (account_id, amount, tag, booked) VALUES (%s, %s, %s, %s)"
    for t in range(TRANSACTIONS):
        tag_base = f"{number}.{t}"
        isolation = "REPEATABLE READ" if rng.random() < 0.3 else "READ COMMITTED"
        ending = rng.choices(["commit", "statement_timeout", "lock_timeout", "savepoint", "rollback"],
                             [55, 15, 10, 10, 10])[0]
        appends = [(rng.choice(accounts), rng.randint(-50, 100)) for _ in range(rng.choice([1, 2, 3]))]
        side = shape["side_ledger"] and rng.random() < 0.3
        kept = []
        stage = "append"
        try:
            cur.execute(f"BEGIN ISOLATION LEVEL {isolation}")
            cur.execute("INSERT INTO handover_gate VALUES (1)")
            for i, (account, amount) in enumerate(appends):
                tag = f"{tag_base}.{i}"
                month = rng.randint(1, 6) if shape["layout"] == "monthly" else 6
                values = (account, amount, tag, f"2026-{month:02d}-15")
                if ending == "savepoint" and i == len(appends) - 1:
                    cur.execute("SAVEPOINT s")
                    cur.execute(insert, values)
                    cur.execute("ROLLBACK TO SAVEPOINT s")
                    continue
                cur.execute(insert, values)
                kept.append((tag, account, amount))
            if side:
                cur.execute("INSERT INTO handover_side (account_id, amount) VALUES (%s, 0.5)", (appends[0][0],))
            if ending == "rollback":
                cur.execute("ROLLBACK")
                outcomes["rolled back"] += 1
                continue
            if ending in ("statement_timeout", "lock_timeout"):
                cur.execute(f"SET LOCAL {ending} = '1ms'")
            stage = "commit"
            cur.execute("COMMIT")
            outcomes["committed"] += 1
            for row in kept:
                committed[row[0]] = row
        except psycopg2.Error as error:
            outcomes[f"{error.pgcode} at {stage}"] += 1
            if error.pgcode not in ("40001", "40P01", "55P03", "57014"):
                failures.append(f"session {number} transaction {t}: unexpected {error.pgcode}: {error.pgerror}")
            if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                cur.execute("ROLLBACK")
    conn.close()


def gatekeeper(done):
    """Locks every session's gate for 5 ms, then lets them go for 5 ms."""
    conn = connect()
    cur = conn.cursor()
    while not done.is_set():
        cur.execute("BEGIN")
        cur.execute("SELECT c.oid::regclass::text FROM pg_class c WHERE c.relname = 'handover_gate'"
                    " AND c.relpersistence = 't'")
        for (gate,) in cur.fetchall():
            try:
                cur.execute("SAVEPOINT g")
                cur.execute(f"LOCK TABLE {gate} IN ACCESS SHARE MODE")
                cur.execute("RELEASE SAVEPOINT g")
            except psycopg2.Error:
                cur.execute("ROLLBACK TO SAVEPOINT g")  # its session ended
        cur.execute("SELECT pg_sleep(0.005)")
        cur.execute("COMMIT")
        done.wait(0.005)
    conn.close()


def check(shape_number, shape, committed, outcomes, failures):
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("SELECT tag, account_id, amount FROM handover_ledger")
        stored = {tag: (tag, account, amount) for tag, account, amount in cur.fetchall()}
        cur.execute("SELECT count(*) FROM handover_ledger")
        if cur.fetchone()[0] != len(stored):
            failures.append("a transaction's entry is in the ledger twice")
        for tag in committed.keys() - stored.keys():
            failures.append(f"committed entry {tag} is missing")
        for tag in stored.keys() - committed.keys():
            failures.append(f"entry {tag} is in the ledger, but its transaction did not commit")
        for table in ("handover_ledger", "handover_side"):
            cur.execute(f"""
                SELECT account_id, entry_no, running_balance,
                       row_number() OVER w AS expected_no,
                       sum(amount) OVER (w ROWS UNBOUNDED PRECEDING) AS expected_balance
                  FROM {table} WINDOW w AS (PARTITION BY account_id ORDER BY entry_no)""")
            broken = [r for r in cur.fetchall() if r[1] != r[3] or r[2] != r[4]]
            for row in broken[:5]:
                failures.append(f"{table} account {row[0]}: entry {row[1]} balance {row[2]},"
                                f" expected entry {row[3]} balance {row[4]}")
            cur.execute(f"SELECT count(*) FROM raceguard.verify_running_balance('{table}')")
            problems = cur.fetchone()[0]
            if problems != 0:
                failures.append(f"{table}: verify_running_balance reports {problems} problems")
        cur.execute("DROP TABLE handover_ledger, handover_side")
    conn.close()
    # A BEFORE trigger after the guard: the guard confirms nothing, so no
    # transaction hands over, and none can fail at COMMIT for another's.
    if shape["neighbour"] == "after" and outcomes["40001 at commit"] != 0:
        failures.append(f"shape {shape_number}: {outcomes['40001 at commit']} commits failed with 40001, but a guard"
                        " with a later BEFORE trigger must hand nothing over")
    print(f"shape {shape_number} {shape}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
          + f"; {len(stored)} entries")


def main():
    print(f"hand-over stress: seed {SEED}, {SHAPES} shapes, {SESSIONS} sessions x {TRANSACTIONS} transactions")
    shape_rng = random.Random(SEED)
    failures = []
    for shape_number in range(SHAPES):
        shape = draw_shape(shape_rng)
        setup(shape)
        committed = {}
        # One counter per session: a shared Counter's += from several
        # threads can lose counts, and the check below relies on them.
        per_session = [collections.Counter() for _ in range(SESSIONS)]
        threads = [threading.Thread(target=session, args=(shape_number, shape, n, committed, per_session[n], failures))
                   for n in range(SESSIONS)]
        done = threading.Event()
        keeper = threading.Thread(target=gatekeeper, args=(done,))
        keeper.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        keeper.join()
        outcomes = sum(per_session, collections.Counter())
        check(shape_number, shape, committed, outcomes, failures)
        if failures:
            break
    if failures:
        for failure in failures[:20]:
            print("FAIL: " + failure)
        sys.exit(1)
    print("ok: every committed entry once, no other, every chain exact")


if __name__ == "__main__":
    main()
