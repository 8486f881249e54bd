"""Bad-input fuzzing of the claim functions' parameters.

Calls raceguard.claim(), claim_lease(), release_lease() and extend_lease()
with random arguments: targets of every kind of type, filters and order_by
texts that are valid, broken, huge, nested or trying to leave their clause,
odd and quoted column names, out-of-range batches, leases and tokens, NULLs,
attempts columns and max_attempts (claim_lease) and retry_after
(release_lease) of every kind.
Every call must end in a clear error (a SQLSTATE that is not an internal
error, and nothing written) or a correct result (at most batch rows; leased
rows were free, all get one new token that no other call got, and an expiry
in the future; rows a known filter selects match it; on the jobs table a
counted attempt is the old count + 1, and never past max_attempts, nor
past the column type's maximum, which bounds max_attempts too; rows
ordered by id come back in that order). After every call the
backend must be the same process, still answering.

Seeded and bounded: CLAIM_FUZZ_SEED replays a run (the same calls, in the
same order; with CLAIM_FUZZ_CALLS set below the time bound, the same number
of them), CLAIM_FUZZ_SECONDS (20) and CLAIM_FUZZ_CALLS (20000) bound it. Needs PG* set; works in PGDATABASE,
in a schema of its own that it drops at the end.
"""
import os
import random
import sys
import time

import psycopg2
import psycopg2.errors

# RACEGUARD_SEED and RACEGUARD_RANDOM_SECONDS, which the other randomized tests read, work here too.
seed = int(os.environ.get("CLAIM_FUZZ_SEED") or os.environ.get("RACEGUARD_SEED")
           or random.SystemRandom().randrange(1 << 32))
seconds = float(os.environ.get("CLAIM_FUZZ_SECONDS") or os.environ.get("RACEGUARD_RANDOM_SECONDS") or "20")
max_calls = int(os.environ.get("CLAIM_FUZZ_CALLS", "20000"))
print(f"claim fuzz: seed {seed} (replay with CLAIM_FUZZ_SEED={seed}), at most {seconds:g} s and {max_calls} calls")
rng = random.Random(seed)

SETUP = '''
DROP SCHEMA IF EXISTS claim_fuzz CASCADE;
CREATE SCHEMA claim_fuzz;
CREATE TYPE claim_fuzz.pair AS (a integer, b text);
CREATE TYPE claim_fuzz.mood AS ENUM ('ok', 'bad');
CREATE TABLE claim_fuzz.jobs (id integer PRIMARY KEY, status text NOT NULL, "Odd Col" integer,
                              claim_token bigint, claimed_until timestamptz, note text, attempts integer,
                              small_attempts smallint);
INSERT INTO claim_fuzz.jobs (id, status, "Odd Col")
    SELECT g, CASE WHEN g % 3 = 0 THEN 'done' ELSE 'pending' END, 100 - g FROM generate_series(1, 120) g;
UPDATE claim_fuzz.jobs SET attempts = CASE WHEN g % 13 = 0 THEN 2147483647 ELSE g % 4 END,
                           small_attempts = CASE WHEN g % 11 = 0 THEN 32767 WHEN g % 7 = 0 THEN 32766 END
  FROM generate_series(1, 120) g WHERE id = g AND g % 5 <> 0;
CREATE TABLE claim_fuzz."Quoted ""Table""" ("Id" integer, "Token Col" bigint, "until;col" timestamptz, token bigint);
INSERT INTO claim_fuzz."Quoted ""Table""" ("Id") SELECT generate_series(1, 40);
CREATE TABLE claim_fuzz.parted (id integer, region text, claim_token bigint, claimed_until timestamptz)
    PARTITION BY LIST (region);
CREATE TABLE claim_fuzz.parted_eu PARTITION OF claim_fuzz.parted FOR VALUES IN ('eu');
CREATE TABLE claim_fuzz.parted_us PARTITION OF claim_fuzz.parted FOR VALUES IN ('us');
INSERT INTO claim_fuzz.parted SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 40) g;
CREATE TABLE claim_fuzz.token (value bigint);
INSERT INTO claim_fuzz.token VALUES (2), (3);
CREATE TABLE claim_fuzz.claimed (id integer, claim_token bigint, claimed_until timestamptz);
INSERT INTO claim_fuzz.claimed SELECT generate_series(1, 10);
CREATE VIEW claim_fuzz.jobs_view AS SELECT * FROM claim_fuzz.jobs;
CREATE MATERIALIZED VIEW claim_fuzz.jobs_mv AS SELECT * FROM claim_fuzz.jobs;
CREATE SEQUENCE claim_fuzz.seq;
CREATE DOMAIN claim_fuzz.jobs_domain AS claim_fuzz.jobs;
'''

TABLES = {  # target -> (table for checks, token column, until column) for the real tables
    "NULL::claim_fuzz.jobs": ("claim_fuzz.jobs", "claim_token", "claimed_until"),
    'NULL::claim_fuzz."Quoted ""Table"""': ('claim_fuzz."Quoted ""Table"""', '"Token Col"', '"until;col"'),
    "NULL::claim_fuzz.parted": ("claim_fuzz.parted", "claim_token", "claimed_until"),
    "NULL::claim_fuzz.claimed": ("claim_fuzz.claimed", "claim_token", "claimed_until"),
}
OTHER_TARGETS = [
    "NULL::integer", "NULL::text", "NULL::claim_fuzz.pair", "NULL::claim_fuzz.mood", "NULL::claim_fuzz.jobs_view",
    "NULL::claim_fuzz.jobs_mv", "NULL::claim_fuzz.seq", "NULL::claim_fuzz.jobs_domain", "NULL", "ROW(1, 'x')",
    "NULL::integer[]", "NULL::claim_fuzz.jobs[]", "'(1,x)'::claim_fuzz.pair", "NULL::record", "NULL::anyelement",
    "(SELECT j FROM claim_fuzz.jobs j LIMIT 1)", "NULL::pg_catalog.pg_type", "NULL::claim_fuzz.token",
]

# Filters on claim_fuzz.jobs whose meaning the fuzzer knows: row -> bool.
KNOWN_FILTERS = {
    "status = 'pending'": lambda row: row["status"] == "pending",
    "id % 7 = 0": lambda row: row["id"] % 7 == 0,
    "id IN (SELECT value FROM claim_fuzz.token)": lambda row: row["id"] in (2, 3),
    "\"Odd Col\" > 50 -- a trailing comment": lambda row: row["Odd Col"] > 50,
    "id = 2) OR (id = 5": lambda row: row["id"] in (2, 5),
    "true": lambda row: True,
}
FILTER_PIECES = [
    "(", ")", "((", "))", "--", "\n", "/*", "*/", ";", "'", "''", '"', "$1", "$2", "$3", "$$", "E'\\", "id", "status",
    "claim_token", "claimed_until", "ctid", "tableoid", "token", "claimable", "claimed", "value", "SELECT", "FROM",
    "WHERE", "LIMIT", "OFFSET", "FOR UPDATE", "FOR SHARE", "SKIP LOCKED", "UNION", "ORDER BY", "GROUP BY", "HAVING",
    "WINDOW w AS (", "AND", "OR", "NOT", "IS NULL", "=", "<", "1", "0", "-1", "NULL", "true", "::int", "::text",
    "pg_catalog.nextval('raceguard.lease_token_seq')", "raceguard.claim(NULL::claim_fuzz.jobs)", "DESC", "ASC",
    "NULLS FIRST", "COLLATE \"C\"", "USING <", "\\", "%s", "{}", "ð", "\u2028", "\x01",
]
ORDERS = [None, "", "id", "id DESC", "1", "2 DESC", "99", "0", "-1", "random()", "\"Odd Col\"", "ctid", "tableoid",
          "status, id", "id LIMIT 1", "id FOR UPDATE", "id; SELECT 1", "$1", "claimed_row", "id -- comment",
          "(SELECT 1)", "id USING <", "id NULLS LAST", "id, id, id"]
LEASES = [None, "1 minute", "5 minutes", "1 hour", "0", "-1 second", "1 microsecond", "1 month -29 days",
          "1 month -31 days", "-1 year 361 days", "170000000 years", "178000000 years", "infinity", "-infinity",
          "100 years", "P1D", "1 day -24 hours", "not an interval", "@ 1 mon ago", "1 day -23 hours -59 minutes"]
COLUMN_NAMES = [None, "claim_token", "claimed_until", "Token Col", "until;col", "id", "status", "note", "ctid", "xmin",
                "tableoid", "", " ", "\"claim_token\"", "Claim_Token", "CLAIMED_UNTIL", "token", "Id", "x" * 100,
                "claim_token\n", "ð", "claim_token; DROP TABLE claim_fuzz.jobs", "Odd Col"]
BATCHES = [None, 1, 2, 10, 0, -1, 2147483647, -2147483648, 2147483648, 500]
ATTEMPTS_COLUMNS = [None, "attempts", "small_attempts", "note", "status", "claim_token", "claimed_until", "xmin",
                    "missing", "", "Attempts", "\"attempts\"", "attempts; DROP TABLE claim_fuzz.jobs", "ð"]
MAX_ATTEMPTS = [None, 1, 2, 3, 5, 0, -1, 2147483647, -2147483648, 2147483648]
RETRY_AFTERS = [None, "0", "1 minute", "10 seconds", "-1 second", "1 month -31 days", "1 month -32 days",
                "-1 year 361 days", "infinity", "-infinity", "178000000 years", "not an interval", "@ 1 mon ago"]
TOKENS = [None, 0, -1, 1, 2 ** 63 - 1, -(2 ** 63), 2 ** 48, (1 << 48) | 5]


def random_text(max_length):
    alphabet = "abcdefghijklmnopqrstuvwxyz ()'\"$;-*/\\\n\t=<>,.:0123456789ð"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(max_length + 1)))


def random_filter():
    """A filter, and what it selects on claim_fuzz.jobs when the fuzzer knows (row -> bool), else None."""
    roll = rng.random()
    if roll < 0.3:
        text = rng.choice(list(KNOWN_FILTERS))
        return text, KNOWN_FILTERS[text]
    if roll < 0.55:
        # Many distinct call shapes, so kept plans are evicted all the time.
        modulus, remainder = rng.randrange(1, 400), rng.randrange(0, 5)
        return (f"id % {modulus} = {remainder} OR id > {modulus}",
                lambda row: row["id"] % modulus == remainder or row["id"] > modulus)
    return other_filter(), None


def other_filter():
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.7:
        return " ".join(rng.choice(FILTER_PIECES) for _ in range(rng.randrange(1, 12)))
    if roll < 0.85:
        return random_text(60)
    if roll < 0.9:
        depth = rng.choice([10, 1000, 100000])
        return "(" * depth + "true" + ")" * rng.choice([depth, depth - 1, depth + 1])
    if roll < 0.95:
        return "id = 1 OR " * rng.choice([100, 5000]) + "false"
    return "status = '" + "x" * rng.choice([1000, 300000]) + "'"


def pick(good, bad, mutate=0.05, length=30):
    """Mostly a good value, so that calls get far; else a bad one, or random text."""
    roll = rng.random()
    if roll < mutate:
        return random_text(length)
    return rng.choice(good) if roll < 0.85 else rng.choice(bad)


class Failure(Exception):
    pass


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = '5s'; SET lock_timeout = '2s'")
        cur.execute("SELECT pg_backend_pid()")
        return conn, cur.fetchone()[0]


def checksum(cur, table):
    cur.execute(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t")
    return cur.fetchone()[0]


def main():
    conn, backend = connect()
    with conn.cursor() as cur:
        cur.execute(SETUP)
    tokens_seen = set()
    counts = {"calls": 0, "errors": 0, "rows": 0}
    sqlstates = {}
    started = time.monotonic()
    try:
        while counts["calls"] < max_calls and time.monotonic() - started < seconds:
            counts["calls"] += 1
            function = rng.choice(["claim", "claim", "claim_lease", "claim_lease", "release_lease", "extend_lease"])
            target = rng.choice(list(TABLES)) if rng.random() < 0.75 else rng.choice(OTHER_TARGETS)
            call = fuzz_call(conn, function, target, tokens_seen, counts, sqlstates)
            # The backend is the same process and still answers.
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_backend_pid()")
                    pid = cur.fetchone()[0]
            except psycopg2.Error as error:
                raise Failure(f"the connection died after {call!r}: {error}")
            if pid != backend:
                raise Failure(f"the backend changed ({backend} -> {pid}) after {call!r}")
    except Failure as failure:
        print(f"FAIL (seed {seed}, call {counts['calls']}): {failure}")
        try:
            psycopg2.connect("").close()
            print("the server still answers new connections")
        except psycopg2.Error as error:
            print(f"the server does not answer: {error}")
        return 1
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA claim_fuzz CASCADE")
    codes = ", ".join(f"{code} x{n}" for code, n in sorted(sqlstates.items(), key=lambda item: -item[1]))
    print(f"{counts['calls']} calls in {time.monotonic() - started:.1f} s: {counts['errors']} clear errors, "
          f"{counts['calls'] - counts['errors']} results ({counts['rows']} rows), {len(tokens_seen)} tokens, none twice")
    print(f"errors by SQLSTATE: {codes}")
    print("ok: every call ended in a clear error or a correct result, and the backend lived on")
    return 0


def fuzz_call(conn, function, target, tokens_seen, counts, sqlstates):
    table, token_column, until_column = TABLES.get(target, (None, None, None))
    jobs = target == "NULL::claim_fuzz.jobs"
    filter_text, selects = random_filter()
    batch = pick([1, 2, 10, 50], BATCHES, mutate=0)
    if rng.random() < 0.1:
        batch = rng.randrange(-10, 5000)
    order_by = pick([None, "id", "id DESC", "1", "status, id DESC"], ORDERS)
    lease = pick(["1 minute", "1 hour", "10 seconds"], LEASES)
    attempts_name = pick([None, "attempts", "small_attempts"], ATTEMPTS_COLUMNS, 0.05, 40)
    max_attempts = pick([None, 2, 3, 4], MAX_ATTEMPTS, 0)
    retry_after = pick([None, "0", "1 minute"], RETRY_AFTERS, 0.05, 30)
    token_name = pick([token_column.strip('"') if token_column else "claim_token"], COLUMN_NAMES, 0.1, 70)
    until_name = pick([until_column.strip('"') if until_column else "claimed_until"], COLUMN_NAMES, 0.1, 70)
    # Draw the same number of values whatever earlier calls returned, so a seed replays the same calls.
    reuse_token, token_draw, other_token = rng.random() < 0.5, rng.random(), rng.choice(TOKENS)
    token = sorted(tokens_seen)[int(token_draw * len(tokens_seen))] if tokens_seen and reuse_token else other_token
    in_transaction = function == "claim" or rng.random() < 0.3
    ending = rng.choice(["COMMIT", "ROLLBACK"])
    if function == "claim":
        statement = f"SELECT to_jsonb(c) FROM raceguard.claim({target}, %s, %s::integer, %s) c"
        params = (filter_text, batch, order_by)
    elif function == "claim_lease":
        statement = (f"SELECT to_jsonb(c) FROM raceguard.claim_lease({target}, %s, %s::integer, %s::interval, %s,"
                     f" %s::name, %s::name, %s::name, %s::integer) c")
        params = (filter_text, batch, lease, order_by, token_name, until_name, attempts_name, max_attempts)
    elif function == "release_lease":
        statement = f"SELECT raceguard.release_lease({target}, %s::bigint, %s::name, %s::name, %s::interval)"
        params = (token, token_name, until_name, retry_after)
    else:
        statement = f"SELECT raceguard.extend_lease({target}, %s::bigint, %s::interval, %s::name, %s::name)"
        params = (token, lease, token_name, until_name)
    call = (statement, params)

    with conn.cursor() as cur:
        before = checksum(cur, table) if table else None
        if jobs:
            cur.execute("SELECT clock_timestamp(), jsonb_object_agg(id, to_jsonb(j)) FROM claim_fuzz.jobs j")
            called_at, jobs_before = cur.fetchone()
        if in_transaction:
            cur.execute("BEGIN")
        try:
            cur.execute(statement, params)
            result = cur.fetchall()
        except psycopg2.Error as error:
            if in_transaction:
                cur.execute("ROLLBACK")
            code = error.pgcode
            if code is None:
                raise Failure(f"{call!r} failed without a SQLSTATE: {error}")
            if code.startswith("XX") or code.startswith("58"):
                raise Failure(f"{call!r} raised an internal error {code}: {error}")
            counts["errors"] += 1
            sqlstates[code] = sqlstates.get(code, 0) + 1
            if table and checksum(cur, table) != before:
                raise Failure(f"{call!r} failed ({code}) but changed {table}")
            return call
        except ValueError as error:  # a string psycopg2 cannot send (NUL): not a server call
            if in_transaction:
                cur.execute("ROLLBACK")
            counts["calls"] -= 1
            return call
        check_result(cur, function, call, result, jobs, batch, selects, token_name,
                     jobs_before if jobs else None, called_at if jobs else None, tokens_seen, counts)
        if function == "claim_lease" and jobs:
            check_attempts(call, [row[0] for row in result], jobs_before, attempts_name, max_attempts, order_by)
        if in_transaction:
            cur.execute(ending)
    return call


def check_result(cur, function, call, result, jobs, batch, selects, token_name, jobs_before, called_at,
                 tokens_seen, counts):
    if function in ("release_lease", "extend_lease"):
        if len(result) != 1 or result[0][0] is None or result[0][0] < 0:
            raise Failure(f"{call!r} returned {result!r}, not a count")
        return
    rows = [row[0] for row in result]
    counts["rows"] += len(rows)
    if not isinstance(batch, int) or not 1 <= batch <= 2147483647:
        raise Failure(f"{call!r} accepted batch {batch!r}")
    if len(rows) > batch:
        raise Failure(f"{call!r} returned {len(rows)} rows, batch {batch}")
    if jobs and selects is not None:
        for row in rows:
            if not selects(jobs_before[str(row["id"])]):
                raise Failure(f"{call!r} returned row {row['id']}, which its filter does not select")
    if function != "claim_lease" or not rows:
        return
    # The call succeeded, so token_name is a bigint column of the table: the one it wrote.
    leased_tokens = {row.get(token_name) for row in rows}
    if len(leased_tokens) != 1 or None in leased_tokens:
        raise Failure(f"{call!r} leased rows with tokens {leased_tokens!r}, not one new token")
    (token,) = leased_tokens
    if token in tokens_seen:
        raise Failure(f"{call!r} handed out token {token} a second time")
    tokens_seen.add(token)
    if jobs:
        cur.execute("SELECT %s::timestamptz < ALL (SELECT (r->>'claimed_until')::timestamptz FROM jsonb_array_elements(%s::jsonb) r)",
                    (called_at, psycopg2.extras.Json(rows)))
        if not cur.fetchone()[0]:
            raise Failure(f"{call!r} wrote an expiry that is not in the future")
        for row in rows:
            earlier = jobs_before[str(row["id"])]["claimed_until"]
            if earlier is not None:
                cur.execute("SELECT %s::timestamptz > %s::timestamptz", (earlier, called_at))
                if cur.fetchone()[0]:
                    raise Failure(f"{call!r} leased row {row['id']}, whose lease ran until {earlier}")


# The attempts columns of claim_fuzz.jobs: a row at its column's maximum is
# never leased again (it cannot count another attempt), so no count passes it.
TYPE_MAXIMUM = {"attempts": 2147483647, "small_attempts": 32767}


def check_attempts(call, rows, jobs_before, attempts_name, max_attempts, order_by):
    """A lease of claim_fuzz.jobs that succeeded: its attempts and its order."""
    if attempts_name is None and max_attempts is not None:
        raise Failure(f"{call!r} accepted max_attempts without attempts_column")
    if max_attempts is not None and max_attempts < 1:
        raise Failure(f"{call!r} accepted max_attempts {max_attempts}")
    for row in rows:
        before = jobs_before[str(row["id"])]
        for column in ("attempts", "small_attempts"):
            old, new = before[column], row[column]
            if column == attempts_name:
                if new != (old or 0) + 1:
                    raise Failure(f"{call!r} counted row {row['id']}'s {column} {old!r} -> {new!r}")
                if max_attempts is not None and (old or 0) >= max_attempts:
                    raise Failure(f"{call!r} leased row {row['id']} at {old} attempts, max_attempts {max_attempts}")
                if max_attempts is not None and max_attempts > TYPE_MAXIMUM[column]:
                    raise Failure(f"{call!r} accepted max_attempts {max_attempts}, out of reach of {column}")
            elif new != old:
                raise Failure(f"{call!r} changed row {row['id']}'s {column} {old!r} -> {new!r}, not the attempts column")
    ids = [row["id"] for row in rows]
    if order_by in ("id", "1", "id -- comment", "id NULLS LAST") and ids != sorted(ids):
        raise Failure(f"{call!r} returned rows {ids}, not in order_by order")
    if order_by == "id DESC" and ids != sorted(ids, reverse=True):
        raise Failure(f"{call!r} returned rows {ids}, not in order_by order")


if __name__ == "__main__":
    import psycopg2.extras  # noqa: E402  (Json, used by the checks)
    sys.exit(main())
