"""Model-based randomized test of raceguard.lock_version().

Each shape is a random table: version type, version column named by
argument or by default, strict=true / sqlstate=23514 at random, INSERT in
the events or not, BEFORE triggers of the application's own that sort
before or after the guard (one touches a column, one returns OLD when the
row's note says 'revert'), columns added with a DEFAULT after rows exist
(the version column itself sometimes, so old rows lack it) and dropped
columns, before or after the guard is created.

One session runs random writes as ORMs and hand-written SQL send them (echo
SET v = v_read, pre-bump SET v = v_read + 1 WHERE v = v_read, relative
v = v + 1, blind writes, absurd versions, NULL), and every outcome and every
row afterwards is predicted by a model of SPEC section 1. Then several
sessions do read-modify-write increments at READ COMMITTED and REPEATABLE
READ, retrying stale writes: every accepted UPDATE raised the version by
exactly one and no increment was lost.
"""
import os
import random
import threading

import harness
from harness import Session, Crash, DEFINITION_SQLSTATES

TEST = None
INT_RANGE = {"smallint": (-2**15, 2**15 - 1), "integer": (-2**31, 2**31 - 1), "bigint": (-2**63, 2**63 - 1)}
TABLE = "docs"
GUARD = "lv_guard"


def make_shape(rng, index):
    s = {"index": index, "schema": "lv_%d_%d" % (os.getpid(), index)}
    s["vtype"] = rng.choice(list(INT_RANGE))
    s["vcol"] = rng.choice(["lock_version", "v", "Version"])
    s["pass_name"] = s["vcol"] != "lock_version" or rng.random() < 0.5
    s["strict"] = rng.choice([None, "true", "false"])
    s["sqlstate"] = rng.random() < 0.3
    s["on_insert"] = rng.random() < 0.8
    s["version_added_later"] = rng.random() < 0.35
    s["version_default"] = rng.choice([None, "0", "5", str(INT_RANGE[s["vtype"]][1] - 1)])
    s["add_extra"] = rng.random() < 0.4
    s["drop_column"] = rng.random() < 0.4
    s["ddl_after_trigger"] = rng.random() < 0.3
    s["earlier"] = rng.choice([None, None, "touch", "old"])
    s["later"] = rng.choice([None, None, "touch", "old"])
    s["rows"] = rng.randint(1, 5)
    # Rows without NULLs: the guard may write the version into a copy of
    # the row at a fixed offset, which an old row lacking the column has not.
    s["early_note"] = "'early'" if rng.random() < 0.6 else "NULL"
    # Early rows of fixed-width columns only, the version and the text
    # columns added after them: the version then has a fixed offset in the
    # table's descriptor that such a short row does not reach.
    s["short_early_rows"] = s["version_added_later"] and rng.random() < 0.5
    if s["short_early_rows"]:
        s["early_note"] = "NULL"
    return s


def qv(s):
    return harness.quote_ident(s["vcol"])


def shape_ddl(s, rng):
    """(statements, versions of the rows inserted before the guard existed)"""
    ddl = ["DROP SCHEMA IF EXISTS %s CASCADE" % s["schema"], "CREATE SCHEMA %s" % s["schema"],
           "SET search_path = %s, public" % s["schema"]]
    text_cols = ["dropme text DEFAULT 'd'", "note text"]
    cols = ["id integer PRIMARY KEY", "payload integer NOT NULL DEFAULT 0"]
    if not s["short_early_rows"]:
        cols += text_cols
    if not s["version_added_later"]:
        cols.append("%s %s" % (qv(s), s["vtype"]))
    ddl.append("CREATE TABLE %s (%s)" % (TABLE, ", ".join(cols)))
    early_rows = []
    for i in range(1, s["rows"] + 1):
        if s["short_early_rows"]:
            ddl.append("INSERT INTO %s (id, payload) VALUES (%d, 0)" % (TABLE, i))
            early_rows.append(i)
        elif s["version_added_later"]:
            ddl.append("INSERT INTO %s (id, payload, note) VALUES (%d, 0, %s)" % (TABLE, i, s["early_note"]))
            early_rows.append(i)
        else:
            v = rng.choice(["NULL", "1", "7"])
            ddl.append("INSERT INTO %s (id, payload, note, %s) VALUES (%d, 0, %s, %s)" % (
                TABLE, qv(s), i, s["early_note"], v))
            early_rows.append((i, None if v == "NULL" else int(v)))
    alter = []
    if s["version_added_later"]:
        alter.append("ALTER TABLE %s ADD COLUMN %s %s%s" % (
            TABLE, qv(s), s["vtype"], "" if s["version_default"] is None else " DEFAULT " + s["version_default"]))
    if s["short_early_rows"]:
        alter += ["ALTER TABLE %s ADD COLUMN %s" % (TABLE, column) for column in text_cols]
    extra = []
    if s["add_extra"]:
        extra.append("ALTER TABLE %s ADD COLUMN extra integer DEFAULT 7" % TABLE)
    if s["drop_column"]:
        extra.append("ALTER TABLE %s DROP COLUMN dropme" % TABLE)
    ddl += alter
    if not s["ddl_after_trigger"]:
        ddl += extra
    for name, kind in (("a_early", s["earlier"]), ("z_late", s["later"])):
        if kind is None:
            continue
        body = ("IF TG_OP = 'UPDATE' AND NEW.note = 'revert' THEN RETURN OLD; END IF; RETURN NEW;" if kind == "old"
                else "NEW.note := coalesce(NEW.note, '') || '%s'; RETURN NEW;" % name[0])
        ddl.append("CREATE FUNCTION %s_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN %s END$$" % (name, body))
        ddl.append("CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s_fn()" % (
            name, TABLE, name))
    args = []
    if s["pass_name"]:
        args.append(s["vcol"])
    if s["strict"] is not None:
        args.append("strict=" + s["strict"])
    if s["sqlstate"]:
        args.append("sqlstate=23514")
    rng.shuffle(args)
    ddl.append("CREATE TRIGGER %s BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version(%s)" % (
        GUARD, "INSERT OR UPDATE" if s["on_insert"] else "UPDATE", TABLE,
        ", ".join(harness.quote_literal(a) for a in args)))
    trailing = extra if s["ddl_after_trigger"] else []
    initial = {}
    for entry in early_rows:
        if s["version_added_later"]:
            initial[entry] = None if s["version_default"] is None else int(s["version_default"])
        else:
            initial[entry[0]] = entry[1]
    return ddl, trailing, initial


class Row:
    def __init__(self, v, payload, note):
        self.v = v
        self.payload = payload
        self.note = note


def stale_code(s):
    return "23514" if s["sqlstate"] else "40001"


def predict_update(s, row, assigned, new_v, payload_delta, note):
    """The outcome of one UPDATE of `row`: ('ok', Row) or ('error', sqlstate).
    assigned: whether the SET list names the version; new_v: the version in
    the new row (None = NULL) as the statement computes it."""
    lo, hi = INT_RANGE[s["vtype"]]
    new_payload = row.payload + payload_delta
    if not -2**31 <= new_payload < 2**31:
        return "error", "22003"
    # Triggers that sort before the guard.
    new_note = note if note is not None else row.note
    if s["earlier"] == "touch":
        new_note = (new_note or "") + "a"
    if s["earlier"] == "old" and new_note == "revert":
        # The guard sees OLD as NEW: n = o.
        new_v, new_payload, new_note = row.v, row.payload, row.note
    o = row.v if row.v is not None else 0
    n = new_v if new_v is not None else 0
    if s["strict"] == "true" and not assigned:
        return "error", stale_code(s)
    if n == o:
        if o + 1 > hi:
            return "error", "22003"
        stored_v = o + 1
    elif n == o + 1:
        stored_v = new_v
    else:
        return "error", stale_code(s)
    result = Row(stored_v, new_payload, new_note)
    if s["later"] == "touch":
        result.note = (result.note or "") + "z"
    if s["later"] == "old" and result.note == "revert":
        return "ok", Row(row.v, row.payload, row.note)
    return "ok", result


def random_update(rng, s, row_id, row):
    """(sql, assigned, new_v, payload_delta, note, where_ok) for a random write."""
    lo, hi = INT_RANGE[s["vtype"]]
    current = row.v
    note = "revert" if rng.random() < 0.15 else None
    note_sql = ", note = 'revert'" if note else ""
    kind = rng.choice(["echo", "echo_stale", "prebump", "prebump_stale", "relative", "blind", "absurd", "null",
                       "same"])
    vq = qv(s)
    if kind in ("echo", "echo_stale"):
        r = current if kind == "echo" else (current or 0) - rng.randint(1, 2)
        if r is not None and not lo <= r <= hi:
            r = current
        lit = "NULL" if r is None else str(r)
        return ("UPDATE %s SET %s = %s, payload = payload + 1%s WHERE id = %d" % (TABLE, vq, lit, note_sql, row_id),
                True, r, 1, note, True)
    if kind in ("prebump", "prebump_stale"):
        r = current if kind == "prebump" else (current or 0) - rng.randint(1, 2)
        if r is None:
            r = 0
        if not lo <= r + 1 <= hi:
            r = lo
        where_ok = current is not None and current == r
        return ("UPDATE %s SET %s = %d, payload = payload + 1%s WHERE id = %d AND %s = %d" % (
            TABLE, vq, r + 1, note_sql, row_id, vq, r), True, r + 1, 1, note, where_ok)
    if kind == "relative":
        if current is not None and current + 1 > hi:
            return ("UPDATE %s SET %s = %s + 1 WHERE id = %d" % (TABLE, vq, vq, row_id), True, "overflow", 0, None, True)
        return ("UPDATE %s SET %s = %s + 1, payload = payload + 1%s WHERE id = %d" % (TABLE, vq, vq, note_sql, row_id),
                True, None if current is None else current + 1, 1, note, True)
    if kind == "blind":
        return ("UPDATE %s SET payload = payload + 1%s WHERE id = %d" % (TABLE, note_sql, row_id),
                False, current, 1, note, True)
    if kind == "same":
        return ("UPDATE %s SET %s = %s%s WHERE id = %d" % (TABLE, vq, vq, note_sql, row_id), True, current, 0, note,
                True)
    if kind == "null":
        return ("UPDATE %s SET %s = NULL, payload = payload + 1%s WHERE id = %d" % (TABLE, vq, note_sql, row_id),
                True, None, 1, note, True)
    value = rng.choice([lo, hi, 0, -1, (current or 0) + 2, (current or 0) + 1, hi + 1, lo - 1, 10**20])
    if not lo <= value <= hi:
        return ("UPDATE %s SET %s = %d WHERE id = %d" % (TABLE, vq, value, row_id), True, "overflow", 0, None, True)
    return ("UPDATE %s SET %s = %d, payload = payload + 1%s WHERE id = %d" % (TABLE, vq, value, note_sql, row_id),
            True, value, 1, note, True)


def read_rows(session, s):
    return {r[0]: Row(r[1], r[2], r[3]) for r in session.must(
        "SELECT id, %s, payload, note FROM %s ORDER BY id" % (qv(s), TABLE), log=False)}


def same_row(a, b):
    return a.v == b.v and a.payload == b.payload and a.note == b.note


def show(row):
    return "(v=%s, payload=%s, note=%s)" % (row.v, row.payload, row.note)


def single_session(s, rng, session, log, model):
    statements = 0
    for step in range(rng.randint(5, 25)):
        if rng.random() < 0.15:
            row_id = max(model) + 1
            given = rng.choice([None, None, 1, 3, INT_RANGE[s["vtype"]][1]])
            sql = "INSERT INTO %s (id, payload, %s) VALUES (%d, 0, %s)" % (
                TABLE, qv(s), row_id, "NULL" if given is None else given)
            out = session.run(sql)
            statements += 1
            if not out.ok:
                return "insert failed", "%s: %s" % (sql, out), statements
            v = given if given is not None else (1 if s["on_insert"] else None)
            note = ("" + ("a" if s["earlier"] == "touch" else "") + ("z" if s["later"] == "touch" else "")) or None
            model[row_id] = Row(v, 0, note)
        else:
            row_id = rng.choice(sorted(model))
            row = model[row_id]
            sql, assigned, new_v, delta, note, where_ok = random_update(rng, s, row_id, row)
            if new_v == "overflow":
                prediction = ("error", "22003")
            elif not where_ok:
                prediction = ("ok", None)
            else:
                prediction = predict_update(s, row, assigned, new_v, delta, note)
            out = session.run(sql)
            statements += 1
            if not session.alive():
                raise Crash("backend gone after %s" % sql)
            if prediction[0] == "error":
                if out.ok or out.sqlstate != prediction[1]:
                    return "statement outcome", "%s\n  expected error %s, got %s (row was %s)" % (
                        sql, prediction[1], out, show(row)), statements
                if out.sqlstate == "23514" and out.constraint != GUARD:
                    return "stale error fields", "23514 without CONSTRAINT = %s: %s" % (GUARD, out), statements
            elif not out.ok:
                return "statement outcome", "%s\n  expected success, got %s (row was %s)" % (
                    sql, out, show(row)), statements
            elif prediction[1] is not None:
                model[row_id] = prediction[1]
        stored = read_rows(session, s)
        for rid, expected in model.items():
            got = stored.get(rid)
            if got is None or not same_row(got, expected):
                return ("version not raised by exactly one" if got is not None and got.v != expected.v
                        else "row differs from the model"), "after %s\n  row %d is %s, expected %s" % (
                    log[-1][1], rid, show(got) if got else None, show(expected)), statements
    return None, None, statements


def concurrent(s, rng, log):
    """Read-modify-write increments by several sessions; returns rows checked."""
    setup = Session(log, schema=s["schema"])
    setup.must("DROP TRIGGER IF EXISTS a_early ON %s" % TABLE)
    setup.must("DROP TRIGGER IF EXISTS z_late ON %s" % TABLE)
    before = read_rows(setup, s)
    ids = sorted(before)[:2]
    accepted = {i: 0 for i in ids}
    lock = threading.Lock()
    errors = []
    hi = INT_RANGE[s["vtype"]][1]
    if any((before[i].v or 0) > hi - 200 for i in ids):
        setup.close()
        return 0
    threads_n = rng.randint(2, 4)
    seeds = [rng.randrange(2**31) for _ in range(threads_n)]

    def worker(t):
        r = random.Random(seeds[t])
        session = Session([], schema=s["schema"], name="t%d" % t)
        try:
            for _ in range(r.randint(5, 15)):
                row_id = r.choice(ids)
                level = r.choice(["READ COMMITTED", "REPEATABLE READ"])
                style = r.choice(["echo", "prebump", "relative", "blind"])
                if style == "blind" and s["strict"] == "true":
                    style = "relative"
                for attempt in range(200):
                    session.run("BEGIN ISOLATION LEVEL " + level)
                    got = session.run("SELECT %s, payload FROM %s WHERE id = %d" % (qv(s), TABLE, row_id))
                    if not got.ok:
                        session.run("ROLLBACK")
                        continue
                    v, payload = got.rows[0]
                    if style == "echo":
                        sql = "UPDATE %s SET %s = %s, payload = %d WHERE id = %d" % (
                            TABLE, qv(s), "NULL" if v is None else v, payload + 1, row_id)
                    elif style == "prebump":
                        if v is None:
                            sql = "UPDATE %s SET %s = 1, payload = %d WHERE id = %d AND %s IS NULL" % (
                                TABLE, qv(s), payload + 1, row_id, qv(s))
                        else:
                            sql = "UPDATE %s SET %s = %d, payload = %d WHERE id = %d AND %s = %d" % (
                                TABLE, qv(s), v + 1, payload + 1, row_id, qv(s), v)
                    elif style == "relative":
                        sql = "UPDATE %s SET %s = %s + 1, payload = payload + 1 WHERE id = %d" % (
                            TABLE, qv(s), qv(s), row_id)
                    else:
                        sql = "UPDATE %s SET payload = payload + 1 WHERE id = %d" % (TABLE, row_id)
                    out = session.run(sql)
                    if out.ok and out.rowcount == 1:
                        c = session.run("COMMIT")
                        if c.ok:
                            with lock:
                                accepted[row_id] += 1
                            break
                        continue
                    session.run("ROLLBACK")
                    if out.ok:  # WHERE v = v_read found nothing: re-read
                        continue
                    if out.sqlstate in ("40001", "23514"):
                        TEST.count("lv stale writes retried")
                        continue
                    with lock:
                        errors.append("thread %d %s %s: %s -> %s" % (t, level, style, sql, out))
                    return
            if not session.alive():
                with lock:
                    errors.append("thread %d: backend gone" % t)
        except Crash as crash:
            with lock:
                errors.append("thread %d: %s" % (t, crash))
        finally:
            session.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    after = read_rows(setup, s)
    setup.close()
    if errors:
        TEST.fail(s["index"], "unexpected error in concurrent writes", "\n".join(errors[:5]), harness.render(log))
        return 0
    for i in ids:
        want_v = (before[i].v or 0) + accepted[i]
        want_payload = before[i].payload + accepted[i]
        if after[i].v != want_v or after[i].payload != want_payload:
            TEST.fail(s["index"], "lost update under concurrency",
                      "row %d: %d accepted updates from %s, now %s (expected v=%d payload=%d)" % (
                          i, accepted[i], show(before[i]), show(after[i]), want_v, want_payload), harness.render(log))
    return len(ids)


def run_shape(index, rng):
    s = make_shape(rng, index)
    TEST.count("shapes")
    log = []
    session = Session(log, schema=s["schema"])
    with harness.shape_run(TEST, index, s["schema"], log, session):
        ddl, trailing, initial = shape_ddl(s, rng)
        if TEST.verbose:
            print("shape %d: %s" % (index, "; ".join(ddl[3:] + trailing)), flush=True)
        for sql in ddl[:-1]:
            session.must(sql)
        out = session.run(ddl[-1])
        if not out.ok:
            TEST.count("refused " + out.sqlstate)
            if out.sqlstate not in DEFINITION_SQLSTATES or not harness.names_trigger_and_table(out, GUARD, TABLE):
                TEST.fail(index, "unclear refusal", "CREATE TRIGGER refused with %s" % out, harness.render(log))
            else:
                TEST.fail(index, "a valid lock_version refused", "CREATE TRIGGER refused: %s" % out, harness.render(log))
            return
        for sql in trailing:
            session.must(sql)
        TEST.count("accepted")
        model = {}
        stored = read_rows(session, s)
        for rid, v in initial.items():
            model[rid] = Row(v, 0, None if s["early_note"] == "NULL" else "early")
            if stored[rid].v != v:
                TEST.fail(index, "row differs from the model", "row %d has version %s before any write, expected %s" % (
                    rid, stored[rid].v, v), harness.render(log))
                return
        kind, detail, statements = single_session(s, rng, session, log, model)
        TEST.count("statements", statements)
        TEST.count("workloads")
        TEST.count("rows checked", len(model))
        if kind:
            TEST.fail(index, kind, detail, harness.render(log))
            return
        TEST.count("rows checked", concurrent(s, rng, log))
        TEST.count("workloads")


def main():
    global TEST
    TEST = harness.Test("lock_version")
    for index, rng in TEST.shapes():
        run_shape(index, rng)
    c = TEST.counters
    TEST.finish("%d shapes, %d accepted, %d refused, %d workloads, %d statements, %d rows checked, "
                "%d stale writes retried" % (
                    c.get("shapes", 0), c.get("accepted", 0), c.get("shapes", 0) - c.get("accepted", 0),
                    c.get("workloads", 0), c.get("statements", 0), c.get("rows checked", 0),
                    c.get("lv stale writes retried", 0)))


if __name__ == "__main__":
    main()
