"""Model-based randomized test of raceguard.immutable_once_set().

Each shape is a random table with one to three guarded columns of types
where "unchanged" is subtle (numeric 1.0 vs 1.00, float8 -0 vs 0 and NaN,
arrays with another lower bound, json vs jsonb spacing, uuid spelling, large
toasted text rewritten with the same content), allow_unset on or off, and
the guard fired BEFORE, AFTER, or as a constraint trigger (deferred or not).

One session runs random UPDATEs (single and several columns, NULLs, same
values spelt differently, unrelated columns), INSERTs and DELETEs in
transactions, and every outcome and every row afterwards is predicted by a
model of SPEC section 2 (a deferred trigger fails at COMMIT). Then several
sessions race to set a NULL column of one row: exactly one wins.
"""
import os
import threading

import harness
from harness import Session, Crash, DEFINITION_SQLSTATES

TEST = None
TABLE = "convs"
GUARD = "ios_guard"


def big(k, n):
    """A large, poorly compressible text (stored out of line), by expression."""
    return ("(SELECT string_agg(md5((i + %d)::text), '') FROM generate_series(1, %d) AS i)" % (k, n),
            ("big", k, n))


# type -> list of (SQL expression, image key); equal keys = same stored image.
POOLS = {
    "integer": [("'1'::integer", 1), ("'01'::integer", 1), ("'2'::integer", 2), ("'-7'::integer", -7)],
    "numeric": [("'1.0'::numeric", "1.0"), ("'01.0'::numeric", "1.0"), ("'1.00'::numeric", "1.00"),
                ("'1'::numeric", "1"), ("'NaN'::numeric", "NaN"), ("'2.5'::numeric", "2.5")],
    "float8": [("'0'::float8", "0"), ("'-0'::float8", "-0"), ("'0.0'::float8", "0"), ("'1'::float8", "1"),
               ("'1.0'::float8", "1"), ("'NaN'::float8", "NaN"), ("'-Infinity'::float8", "-inf")],
    "text": [("'a'", "a"), ("'b'", "b"), ("'A'", "A"), big(0, 3000), big(0, 3000), big(1, 3000), big(0, 3001),
             ("repeat('x', 100000)", "x100000")],
    "integer[]": [("'{1,2}'::integer[]", "{1,2}@1"), ("'[0:1]={1,2}'::integer[]", "{1,2}@0"),
                  ("'[1:2]={1,2}'::integer[]", "{1,2}@1"), ("'{1,2,3}'::integer[]", "{1,2,3}@1"),
                  ("'{}'::integer[]", "{}")],
    "json": [("'{\"a\":1}'::json", 'j{"a":1}'), ("'{\"a\": 1}'::json", 'j{"a": 1}'), ("'[1]'::json", "j[1]")],
    "jsonb": [("'{\"a\":1}'::jsonb", "a1"), ("'{\"a\": 1}'::jsonb", "a1"), ("'{\"a\":2}'::jsonb", "a2"),
              ("'{\"a\":1.0}'::jsonb", "a1.0")],
    "uuid": [("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "u1"), ("'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid", "u1"),
             ("'{a0eebc999c0b4ef8bb6d6bb9bd380a11}'::uuid", "u1"), ("'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "u2")],
}


def make_shape(rng, index):
    s = {"index": index, "schema": "ios_%d_%d" % (os.getpid(), index)}
    s["types"] = [rng.choice(list(POOLS)) for _ in range(rng.randint(1, 3))]
    s["guarded"] = [i for i in range(len(s["types"])) if rng.random() < 0.8] or [0]
    s["allow_unset"] = rng.choice([None, "true", "false", "on", "off"])
    s["timing"] = rng.choice(["BEFORE", "AFTER", "DEFERRED", "IMMEDIATE"])
    s["events"] = rng.choice(["UPDATE", "INSERT OR UPDATE", "UPDATE OR DELETE", "INSERT OR UPDATE OR DELETE"])
    return s


def col(i):
    return "c%d" % (i + 1)


def shape_ddl(s, rng):
    ddl = ["DROP SCHEMA IF EXISTS %s CASCADE" % s["schema"], "CREATE SCHEMA %s" % s["schema"],
           "SET search_path = %s, public" % s["schema"]]
    cols = ["id integer PRIMARY KEY"] + ["%s %s" % (col(i), t) for i, t in enumerate(s["types"])] + ["note text"]
    ddl.append("CREATE TABLE %s (%s)" % (TABLE, ", ".join(cols)))
    args = [col(i) for i in s["guarded"]]
    if s["allow_unset"] is not None:
        args.insert(rng.randint(0, len(args)), "allow_unset=" + s["allow_unset"])
    call = "raceguard.immutable_once_set(%s)" % ", ".join(harness.quote_literal(a) for a in args)
    if s["timing"] in ("BEFORE", "AFTER"):
        ddl.append("CREATE TRIGGER %s %s %s ON %s FOR EACH ROW EXECUTE FUNCTION %s" % (
            GUARD, s["timing"], s["events"], TABLE, call))
    else:
        ddl.append("CREATE CONSTRAINT TRIGGER %s AFTER %s ON %s DEFERRABLE INITIALLY %s FOR EACH ROW "
                   "EXECUTE FUNCTION %s" % (GUARD, s["events"], TABLE, s["timing"], call))
    return ddl


def allow_unset(s):
    return s["allow_unset"] in ("true", "on")


def violation(s, old, new):
    """The first guarded column an UPDATE from old to new may not make, or None."""
    for i in s["guarded"]:
        if old[i] is None:
            continue
        if new[i] == old[i]:
            continue
        if new[i] is None and allow_unset(s):
            continue
        return col(i)
    return None


def value(rng, s, i):
    if rng.random() < 0.25:
        return ("NULL", None)
    return rng.choice(POOLS[s["types"][i]])


def image_query(s):
    """Each column's stored image as comparable text: exact bytes, plus the
    array lower bound, so that equal keys mean equal images."""
    parts = []
    for i, t in enumerate(s["types"]):
        c = col(i)
        if t == "text":
            parts.append("md5(%s) || ':' || length(%s)" % (c, c))
        elif t == "integer[]":
            parts.append("%s::text || '@' || coalesce(array_lower(%s, 1), 0)" % (c, c))
        else:
            parts.append("%s::text" % c)
    return "SELECT id, %s FROM %s ORDER BY id" % (", ".join(parts) or "1", TABLE)


def single_session(s, rng, session, log):
    """Returns (kind, detail, statements) on a mismatch, else (None, None, n)."""
    n_cols = len(s["types"])
    model = {}          # id -> list of image keys
    spelled = {}        # image key -> a stored text read back, to compare rows
    statements = 0
    next_id = 1
    deferred = s["timing"] == "DEFERRED"
    for _ in range(rng.randint(3, 10)):
        session.run("BEGIN")
        saved = {k: list(v) for k, v in model.items()}
        pending_violation = None
        aborted = False
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.25 or not model:
                vals = [value(rng, s, i) for i in range(n_cols)]
                sql = "INSERT INTO %s (id, %s) VALUES (%d, %s)" % (
                    TABLE, ", ".join(col(i) for i in range(n_cols)), next_id, ", ".join(v[0] for v in vals))
                out = session.run(sql)
                statements += 1
                if not out.ok:
                    return "insert failed", "%s: %s" % (sql[:300], out), statements
                model[next_id] = [v[1] for v in vals]
                next_id += 1
                continue
            row_id = rng.choice(sorted(model))
            if roll < 0.32:
                sql = "DELETE FROM %s WHERE id = %d" % (TABLE, row_id)
                out = session.run(sql)
                statements += 1
                if not out.ok:
                    return "delete failed", "%s: %s" % (sql, out), statements
                del model[row_id]
                continue
            old = model[row_id]
            new = list(old)
            sets = []
            for i in range(n_cols):
                if rng.random() < 0.5:
                    v = value(rng, s, i) if rng.random() < 0.7 else ("%s" % col(i), old[i])
                    sets.append("%s = %s" % (col(i), v[0]))
                    new[i] = v[1]
            sets.append("note = 'n%d'" % statements)
            sql = "UPDATE %s SET %s WHERE id = %d" % (TABLE, ", ".join(sets), row_id)
            expected = violation(s, old, new)
            out = session.run(sql)
            statements += 1
            if not session.alive():
                raise Crash("backend gone after %s" % sql)
            if expected is not None and not deferred:
                if out.ok or out.sqlstate != "23514":
                    return "statement outcome", "%s\n  expected 23514 on column %s, got %s" % (
                        sql[:400], expected, out), statements
                if out.constraint != GUARD or out.column is None or out.table != TABLE:
                    return "error fields", "23514 must name constraint %s, the column and the table: %s " \
                        "(constraint %s, column %s, table %s)" % (GUARD, out, out.constraint, out.column,
                                                                  out.table), statements
                aborted = True
                break
            if not out.ok:
                return "statement outcome", "%s\n  expected success, got %s" % (sql[:400], out), statements
            if expected is not None:
                pending_violation = pending_violation or expected
            model[row_id] = new
        if aborted or rng.random() < 0.1:
            session.run("ROLLBACK")
            model = saved
        else:
            out = session.run("COMMIT")
            if pending_violation is not None:
                if out.ok or out.sqlstate != "23514":
                    return "deferred check", "COMMIT after an UPDATE changing %s: expected 23514, got %s" % (
                        pending_violation, out), statements
                model = saved
            elif not out.ok:
                return "commit failed", "COMMIT: %s" % out, statements
        # The stored images match the model: rows with equal keys compare equal.
        stored = {r[0]: list(r[1:]) for r in session.must(image_query(s), log=False)}
        if set(stored) != set(model):
            return "rows differ from the model", "ids %s stored, %s expected" % (sorted(stored), sorted(model)), \
                statements
        for row_id, keys in model.items():
            for i, key in enumerate(keys):
                text = stored[row_id][i]
                if (key is None) != (text is None):
                    return "rows differ from the model", "row %d %s is %s, expected %s" % (
                        row_id, col(i), text, key), statements
                if key is None:
                    continue
                known = spelled.setdefault((i, key), text)
                if known != text:
                    return "rows differ from the model", "row %d %s stored as %s, expected the image of %s" % (
                        row_id, col(i), text[:60], known[:60]), statements
    return None, None, statements


def race(s, rng, log):
    """Several sessions read a NULL guarded column, then all set it."""
    i = s["guarded"][0]
    pool = POOLS[s["types"][i]]
    keys = {}
    for expr, key in pool:
        keys.setdefault(key, expr)
    candidates = list(keys.items())
    if len(candidates) < 2:
        return 0
    setup = Session(log, schema=s["schema"])
    setup.must("INSERT INTO %s (id) VALUES (1000000)" % TABLE)
    n = min(len(candidates), rng.randint(2, 4))
    chosen = rng.sample(candidates, n)
    levels = [rng.choice(["READ COMMITTED", "REPEATABLE READ"]) for _ in range(n)]
    barrier = threading.Barrier(n)
    results = [None] * n
    sessions = [Session(log, schema=s["schema"], name="r%d" % t) for t in range(n)]

    def racer(t):
        session = sessions[t]
        try:
            session.run("BEGIN ISOLATION LEVEL " + levels[t])
            seen = session.run("SELECT %s FROM %s WHERE id = 1000000" % (col(i), TABLE))
            barrier.wait(timeout=60)
            if seen.ok and seen.rows[0][0] is None:
                out = session.run("UPDATE %s SET %s = %s WHERE id = 1000000" % (TABLE, col(i), chosen[t][1]))
                if out.ok:
                    out = session.run("COMMIT")
                else:
                    session.run("ROLLBACK")
                results[t] = out
            else:
                session.run("ROLLBACK")
                results[t] = seen
        except Crash as crash:
            results[t] = crash
        except threading.BrokenBarrierError as error:
            results[t] = error

    threads = [threading.Thread(target=racer, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for session in sessions:
        session.close()
    final = setup.must("SELECT %s IS NULL FROM %s WHERE id = 1000000" % (col(i), TABLE), log=False)[0][0]
    setup.close()
    winners = [t for t in range(n) if isinstance(results[t], harness.Outcome) and results[t].ok]
    losers = [t for t in range(n) if t not in winners]
    bad = [(t, levels[t], results[t]) for t in losers
           if not isinstance(results[t], harness.Outcome) or results[t].sqlstate not in ("23514", "40001") or
           (results[t].sqlstate == "40001" and levels[t] == "READ COMMITTED")]
    if len(winners) != 1 or bad or final:
        TEST.fail(s["index"], "race to set a NULL column",
                  "%d sessions (%s) set %s of one NULL row: %d succeeded, unexpected outcomes %s, column NULL at the "
                  "end: %s" % (n, ", ".join(levels), col(i), len(winners), bad, final),
                  harness.render(log, sessions=True))
    return 1


def run_shape(index, rng):
    s = make_shape(rng, index)
    TEST.count("shapes")
    log = []
    session = Session(log, schema=s["schema"])
    with harness.shape_run(TEST, index, s["schema"], log, session):
        ddl = shape_ddl(s, rng)
        if TEST.verbose:
            print("shape %d: %s" % (index, "; ".join(ddl[3:])), flush=True)
        for sql in ddl[:-1]:
            session.must(sql)
        out = session.run(ddl[-1])
        if not out.ok:
            TEST.count("refused " + out.sqlstate)
            kind = ("unclear refusal" if out.sqlstate not in DEFINITION_SQLSTATES or
                    not harness.names_trigger_and_table(out, GUARD, TABLE) else "a valid immutable_once_set refused")
            TEST.fail(index, kind, "CREATE TRIGGER refused: %s" % out, harness.render(log))
            return
        TEST.count("accepted")
        kind, detail, statements = single_session(s, rng, session, log)
        TEST.count("statements", statements)
        TEST.count("workloads")
        if kind:
            TEST.fail(index, kind, detail, harness.render(log))
            return
        TEST.count("races", race(s, rng, log))
        TEST.count("rows checked", session.must("SELECT count(*) FROM %s" % TABLE, log=False)[0][0])


def main():
    global TEST
    TEST = harness.Test("immutable_once_set")
    for index, rng in TEST.shapes():
        run_shape(index, rng)
    c = TEST.counters
    TEST.finish("%d shapes, %d accepted, %d refused, %d workloads, %d statements, %d races, %d rows checked" % (
        c.get("shapes", 0), c.get("accepted", 0), c.get("shapes", 0) - c.get("accepted", 0), c.get("workloads", 0),
        c.get("statements", 0), c.get("races", 0), c.get("rows checked", 0)))


if __name__ == "__main__":
    main()
