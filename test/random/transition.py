"""Model-based randomized test of raceguard.transition().

Each shape is a random state machine: a column of a random type (an enum,
text, integer, boolean, or a domain over text with a CHECK), two to five
states (text and enum states holding >, = or ", the text 'NULL', NULL
itself), a random set of edges and start states, self-edges sometimes,
each state spelt in a random way its type accepts ('05' for 5, 'yes' for
true, quoted or not), and rows already in a state no edge names.

1. One session runs random INSERTs, UPDATEs of one or several rows (a
   statement is refused as a whole), full-row saves and UPDATEs of other
   columns; every outcome and the table after each statement are predicted
   by a model of SPEC section 8.
2. Races of two sessions on one row at READ COMMITTED and REPEATABLE READ:
   the first writes a state (or keeps it) and commits or rolls back while
   the second waits with its own write (a state, the same one, or another
   column). The model predicts the second's outcome: at READ COMMITTED an
   undeclared edge from the winner's state, or the winner's transition
   repeated (unless the self-edge is declared), is 23514; at REPEATABLE
   READ a committed first write is 40001. The second writes with an
   UPDATE, an INSERT ... ON CONFLICT DO UPDATE (its proposed row in a start
   state) or, on PostgreSQL 15 and later, a MERGE: the same outcome each.
3. Several threads move random rows along edges from the state they read,
   with an audit trigger recording every accepted change: every change is
   a declared edge, and no write repeats a transition another made (an
   audited change from a state to itself exists only with the self-edge).
"""
import os
import random
import threading
import time

import harness
from harness import Session, Crash

TEST = None
TABLE = "items"
GUARD = "tr_guard"
TEXT_POOL = ["new", "open", "a>b", "x=y", 'say "hi"', "NULL", " padded ", "done", "Open"]
STRAY = {"enum": "stray", "text": "stray", "domain": "stray", "integer": 99, "boolean": None}


def make_shape(rng, index):
    s = {"index": index, "schema": "tr_%d_%d" % (os.getpid(), index)}
    s["type"] = rng.choice(["enum", "text", "integer", "boolean", "domain"])
    if s["type"] == "boolean":
        states = [True, False]
    elif s["type"] == "integer":
        states = rng.sample(range(-3, 40), rng.randint(2, 5))
    else:
        states = rng.sample(TEXT_POOL, rng.randint(2, 5))
    if rng.random() < 0.3:
        states.append(None)  # the NULL state
    s["states"] = states
    edges = set()
    for a in states:
        for b in states:
            if a != b and rng.random() < 0.4:
                edges.add((a, b))
            elif a == b and rng.random() < 0.2:
                edges.add((a, a))
    starts = {v for v in states if rng.random() < 0.5} or {states[0]}
    s["edges"] = edges
    s["starts"] = starts
    return s


def spelled(rng, s, value):
    """A state as an edge argument may write it."""
    if value is None:
        return rng.choice(["NULL", "null", "Null"])
    if s["type"] == "integer":
        return rng.choice([str(value), "+%d" % value if value >= 0 else str(value),
                           ("0%d" % value) if value >= 0 else str(value)])
    if s["type"] == "boolean":
        return rng.choice(["true", "t", "yes", "on", "1"] if value else ["false", "f", "no", "off", "0"])
    needs_quotes = any(c in value for c in '>="') or value != value.strip() or value.lower() == "null"
    if needs_quotes or rng.random() < 0.2:
        return '"' + value.replace('"', '""') + '"'
    return value


def literal(s, value):
    if value is None:
        return "NULL"
    if s["type"] == "integer":
        return str(value)
    if s["type"] == "boolean":
        return "true" if value else "false"
    return harness.quote_literal(value) + ("::state" if s["type"] == "enum" else "")


def shape_ddl(s, rng):
    ddl = ["DROP SCHEMA IF EXISTS %s CASCADE" % s["schema"], "CREATE SCHEMA %s" % s["schema"],
           "SET search_path = %s, public" % s["schema"]]
    named = [v for v in s["states"] if v is not None]
    if s["type"] == "enum":
        labels = named + [STRAY["enum"]]
        ddl.append("CREATE TYPE state AS ENUM (%s)" % ", ".join(harness.quote_literal(v) for v in labels))
        column_type = "state"
    elif s["type"] == "domain":
        ddl.append("CREATE DOMAIN state AS text CHECK (VALUE <> 'forbidden')")
        column_type = "state"
    else:
        column_type = s["type"]
    ddl.append("CREATE TABLE %s (id integer PRIMARY KEY, status %s, note text)" % (TABLE, column_type))
    ddl.append("CREATE TABLE audit (n bigserial PRIMARY KEY, id integer, old_status text, new_status text)")
    ddl.append("CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "INSERT INTO audit (id, old_status, new_status) VALUES (OLD.id, OLD.status::text, NEW.status::text); "
               "RETURN NULL; END $$")
    arguments = ["status"] + [spelled(rng, s, a) + ">" + spelled(rng, s, b) for a, b in s["edges"]]
    arguments += [">" + spelled(rng, s, v) for v in s["starts"]]
    rest = sorted(arguments[1:])
    rng.shuffle(rest)
    arguments = arguments[:1] + rest
    s["arguments"] = arguments
    ddl.append("CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION raceguard.transition(%s)"
               % (GUARD, TABLE, ", ".join(harness.quote_literal(a) for a in arguments)))
    ddl.append("CREATE TRIGGER zz_audit AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION audit_row()" % TABLE)
    return ddl


def may_insert(s, value):
    return value in s["starts"]


def may_change(s, old, new):
    """An UPDATE from old to new, alone (no race)."""
    if old == new:
        return True
    return (old, new) in s["edges"] or (old is None and new in s["starts"])


def values_to_try(s, rng):
    pool = list(s["states"]) + [None]
    if STRAY[s["type"]] is not None:
        pool.append(STRAY[s["type"]])
    return rng.choice(pool)


def read_rows(session):
    return {row[0]: (row[1], row[2]) for row in session.must(
        "SELECT id, status, note FROM %s ORDER BY id" % TABLE)}


def single_session(s, rng, session, model):
    next_id = max(model) + 1 if model else 1
    statements = rng.randint(15, 40)
    for _ in range(statements):
        kind = rng.choice(["insert", "update", "update", "update_many", "other_column", "full_row"])
        if kind == "insert" or not model:
            value = values_to_try(s, rng)
            sql = "INSERT INTO %s VALUES (%d, %s, NULL)" % (TABLE, next_id, literal(s, value))
            expect_ok = may_insert(s, value)
            out = session.run(sql)
            if expect_ok and out.ok:
                model[next_id] = (value, None)
                next_id += 1
        elif kind in ("update", "update_many"):
            ids = rng.sample(sorted(model), rng.randint(1, min(3, len(model))) if kind == "update_many" else 1)
            value = values_to_try(s, rng)
            sql = "UPDATE %s SET status = %s WHERE id IN (%s)" % (TABLE, literal(s, value), ", ".join(map(str, ids)))
            expect_ok = all(may_change(s, model[i][0], value) for i in ids)
            out = session.run(sql)
            if expect_ok and out.ok:
                for i in ids:
                    model[i] = (value, model[i][1])
        elif kind == "other_column":
            row_id = rng.choice(sorted(model))
            note = "n%d" % rng.randrange(1000)
            sql = "UPDATE %s SET note = %s WHERE id = %d" % (TABLE, harness.quote_literal(note), row_id)
            expect_ok = True
            out = session.run(sql)
            if out.ok:
                model[row_id] = (model[row_id][0], note)
        else:
            row_id = rng.choice(sorted(model))
            note = "f%d" % rng.randrange(1000)
            sql = "UPDATE %s SET id = id, status = %s, note = %s WHERE id = %d" % (
                TABLE, literal(s, model[row_id][0]), harness.quote_literal(note), row_id)
            expect_ok = True
            out = session.run(sql)
            if out.ok:
                model[row_id] = (model[row_id][0], note)
        if out.ok != expect_ok or (not out.ok and (out.sqlstate != "23514" or out.constraint != GUARD
                                                    or out.table != TABLE or out.column != "status")):
            return ("outcome differs from the model",
                    "%s\nexpected %s, got %s (constraint %s, table %s, column %s)" % (
                        sql, "ok" if expect_ok else "23514 named after the guard", out, out.constraint, out.table,
                        out.column), statements)
        stored = read_rows(session)
        if stored != model:
            return ("table differs from the model", "after %s\nstored %r\nmodel  %r" % (sql, stored, model), statements)
    return None, None, statements


def wait_blocked(watcher, pid, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = watcher.must("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %d" % pid, log=False)
        if rows and rows[0][0] == "Lock":
            return True
        time.sleep(0.01)
    return False


def predict_second(s, level, original, first_value, first_commits, second):
    """The second writer's outcome: 'ok', '23514' or '40001'. second is
    ('status', value) or ('note', None)."""
    current = first_value if first_commits else original
    if first_commits and level == "REPEATABLE READ":
        return "40001"
    if second[0] == "note":
        return "ok"
    value = second[1]
    if value != current:
        return "ok" if may_change(s, current, value) else "23514"
    if not first_commits or current == original:
        return "ok"
    return "ok" if (current, current) in s["edges"] else "23514"


def races(s, rng, log, model):
    """Two sessions on one row; returns (kind, detail) of a mismatch, or None."""
    watcher = Session([], schema=s["schema"], name="watch")
    first = Session(log, schema=s["schema"], name="first")
    second = Session(log, schema=s["schema"], name="second")
    forms = ["update", "upsert"] + (["merge"] if harness.server_version_num(watcher) >= 150000 else [])
    try:
        for _ in range(rng.randint(3, 8)):
            row_id = rng.choice(sorted(model))
            original = model[row_id][0]
            level = rng.choice(["READ COMMITTED", "REPEATABLE READ"])
            # The first writer makes a change the model allows, or keeps the state.
            targets = [v for v in list(s["states"]) + [None, original] if may_change(s, original, v)]
            first_value = rng.choice(targets)
            first_commits = rng.random() < 0.8
            if rng.random() < 0.2:
                second_write = ("note", None)
            elif rng.random() < 0.5:
                second_write = ("status", first_value)  # the same transition again
            else:
                second_write = ("status", values_to_try(s, rng))
            first.must("BEGIN ISOLATION LEVEL " + level)
            out = first.run("UPDATE %s SET status = %s, note = 'first' WHERE id = %d" % (
                TABLE, literal(s, first_value), row_id))
            if not out.ok:
                first.run("ROLLBACK")
                return "outcome differs from the model", "the first writer's allowed change was refused: %s" % out
            second.must("BEGIN ISOLATION LEVEL " + level)
            second.must("SELECT count(*) FROM %s" % TABLE)  # the snapshot, before the first commits
            if second_write[0] == "note":
                assignments = "note = 'second'"
            else:
                assignments = "status = %s, note = 'second'" % literal(s, second_write[1])
            form = rng.choice(forms)
            TEST.count("race form " + form)
            if form == "upsert":
                proposed = rng.choice(sorted(s["starts"], key=repr))
                sql = "INSERT INTO %s (id, status, note) VALUES (%d, %s, 'second') ON CONFLICT (id) DO UPDATE SET %s" % (
                    TABLE, row_id, literal(s, proposed), assignments)
            elif form == "merge":
                sql = ("MERGE INTO %s t USING (VALUES (%d)) v(id) ON t.id = v.id WHEN MATCHED THEN UPDATE SET %s"
                       % (TABLE, row_id, assignments))
            else:
                sql = "UPDATE %s SET %s WHERE id = %d" % (TABLE, assignments, row_id)
            result = {}
            thread = threading.Thread(target=lambda: result.setdefault("out", second.run(sql)))
            thread.start()
            if not wait_blocked(watcher, second.pid):
                first.run("ROLLBACK")
                thread.join()
                second.run("ROLLBACK")
                return "second writer did not wait", sql
            first.must("COMMIT" if first_commits else "ROLLBACK")
            thread.join(60)
            got = result.get("out")
            want = predict_second(s, level, original, first_value, first_commits, second_write)
            state = "ok" if got is not None and got.ok else (got.sqlstate if got is not None else "no answer")
            second.run("COMMIT")
            if first_commits:
                model[row_id] = (first_value, "first")
            if state == "ok":
                value = model[row_id][0] if second_write[0] == "note" else second_write[1]
                model[row_id] = (value, "second")
            TEST.count("races " + level + " " + state)
            if state != want:
                return ("race outcome differs from the model",
                        "%s, row was %r, first wrote %r and %s, second: %s\nexpected %s, got %s" % (
                            level, original, first_value, "committed" if first_commits else "rolled back",
                            sql, want, got))
            if state == "23514" and got.constraint != GUARD:
                return "race error not named after the guard", repr(got)
            stored = read_rows(watcher)
            if stored != model:
                return "table differs from the model after a race", "stored %r\nmodel  %r" % (stored, model)
        return None
    finally:
        watcher.close()
        first.close()
        second.close()


def from_text(s, text):
    """A state as the audit table holds it (text), as the model holds it."""
    if text is None:
        return None
    if s["type"] == "boolean":
        return text == "true"
    if s["type"] == "integer":
        return int(text)
    return text


def workload(s, rng, log, model):
    """Threads write random states to random rows, each UPDATE recording
    (in note) the state its statement's snapshot saw; an audit trigger
    records every accepted write. Every change must be a declared edge,
    and a write that kept the state another transaction had set after the
    statement began (seen differs from OLD) must have its self-edge.
    Returns a mismatch (kind, detail) or None."""
    ids = sorted(model)[:3]
    targets = list(s["states"]) + [None]
    seeds = [rng.randrange(2**31) for _ in range(rng.randint(2, 4))]
    errors = []
    lock = threading.Lock()

    def worker(t):
        r = random.Random(seeds[t])
        session = Session([], schema=s["schema"], name="w%d" % t)
        try:
            for _ in range(r.randint(5, 20)):
                row_id = r.choice(ids)
                level = r.choice(["READ COMMITTED", "READ COMMITTED", "REPEATABLE READ"])
                session.run("BEGIN ISOLATION LEVEL " + level)
                out = session.run(
                    "UPDATE %s AS i SET status = %s, note = coalesce(seen.status::text, '<null>') "
                    "FROM (SELECT status FROM %s WHERE id = %d) AS seen WHERE i.id = %d" % (
                        TABLE, literal(s, r.choice(targets)), TABLE, row_id, row_id))
                if r.random() < 0.3:
                    time.sleep(r.random() / 100)  # hold the row lock a moment: more waiters
                if out.ok:
                    session.run("COMMIT")
                    TEST.count("workload writes")
                else:
                    session.run("ROLLBACK")
                    if out.sqlstate not in ("23514", "40001"):
                        with lock:
                            errors.append("worker %d: %s" % (t, out))
                        return
                    TEST.count("workload refusals " + out.sqlstate)
        except Crash as crash:
            with lock:
                errors.append("worker %d: %s" % (t, crash))
        finally:
            session.close()

    checker = Session(log, schema=s["schema"], name="check")
    try:
        checker.must("TRUNCATE audit")
        checker.must("ALTER TABLE audit ADD COLUMN IF NOT EXISTS seen text")
        checker.must("CREATE OR REPLACE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "INSERT INTO audit (id, old_status, new_status, seen) "
                     "VALUES (OLD.id, OLD.status::text, NEW.status::text, NEW.note); RETURN NULL; END $$")
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(len(seeds))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            return "unexpected error in the workload", "\n".join(errors[:5])
        for n, row_id, old, new, seen in checker.must(
                "SELECT n, id, old_status, new_status, seen FROM audit ORDER BY n"):
            old_v, new_v = from_text(s, old), from_text(s, new)
            seen_v = None if seen == "<null>" else from_text(s, seen)
            if old_v != new_v and not may_change(s, old_v, new_v):
                return "an undeclared edge under concurrency", "audit entry %d: row %d %r -> %r" % (
                    n, row_id, old, new)
            if old_v == new_v and seen_v != old_v and (old_v, old_v) not in s["edges"]:
                TEST.count("duplicates let through")
                return ("a transition repeated under concurrency",
                        "audit entry %d: row %d: the statement saw %r, another transaction moved it to %r, "
                        "and the write kept %r without the self-edge" % (n, row_id, seen, old, new))
            if old_v == new_v and seen_v != old_v:
                TEST.count("workload self-edges taken")
        for row_id, (status, note) in read_rows(checker).items():
            model[row_id] = (status, note)
        return None
    finally:
        checker.close()


def run_shape(index, rng):
    s = make_shape(rng, index)
    TEST.count("shapes")
    log = []
    session = Session(log, schema=s["schema"])
    with harness.shape_run(TEST, index, s["schema"], log, session):
        ddl = shape_ddl(s, rng)
        if TEST.verbose:
            print("shape %d: %s" % (index, ddl[-2]), flush=True)
        for sql in ddl:
            out = session.run(sql)
            if not out.ok:
                TEST.fail(index, "a valid definition refused", "%s\n-> %s" % (sql, out), harness.render(log))
                return
        # Rows from before the guard: every state, and one no edge names.
        model = {}
        session.must("ALTER TABLE %s DISABLE TRIGGER %s" % (TABLE, GUARD))
        pool = list(s["states"])
        if STRAY[s["type"]] is not None:
            pool.append(STRAY[s["type"]])
        for row_id, value in enumerate(pool, start=1):
            session.must("INSERT INTO %s VALUES (%d, %s, NULL)" % (TABLE, row_id, literal(s, value)))
            model[row_id] = (value, None)
        session.must("ALTER TABLE %s ENABLE TRIGGER %s" % (TABLE, GUARD))
        if read_rows(session) != model:
            TEST.fail(index, "table differs from the model", "before any write: %r" % read_rows(session),
                      harness.render(log))
            return
        kind, detail, statements = single_session(s, rng, session, model)
        TEST.count("statements", statements)
        if kind:
            TEST.fail(index, kind, detail, harness.render(log))
            return
        mismatch = races(s, rng, log, model)
        if mismatch:
            TEST.fail(index, mismatch[0], mismatch[1], harness.render(log, sessions=True))
            return
        mismatch = workload(s, rng, log, model)
        if mismatch:
            TEST.fail(index, mismatch[0], mismatch[1], harness.render(log, sessions=True))
            return
        TEST.count("workloads")


def main():
    global TEST
    TEST = harness.Test("transition", default_seconds=40)
    for index, rng in TEST.shapes():
        run_shape(index, rng)
    c = TEST.counters
    races_seen = ", ".join("%s %d" % (k[6:], v) for k, v in sorted(c.items()) if k.startswith("races "))
    forms_seen = ", ".join("%s %d" % (k[10:], v) for k, v in sorted(c.items()) if k.startswith("race form "))
    TEST.finish("%d shapes, %d statements, races: %s (second writer: %s); %d workloads, %d writes, %d refused (23514), %d (40001), "
                "%d self-edges taken" % (
                    c.get("shapes", 0), c.get("statements", 0), races_seen or "none", forms_seen or "none",
                    c.get("workloads", 0),
                    c.get("workload writes", 0), c.get("workload refusals 23514", 0),
                    c.get("workload refusals 40001", 0), c.get("workload self-edges taken", 0)))


if __name__ == "__main__":
    main()
