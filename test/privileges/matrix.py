"""The privilege and settings matrix: each guard's result does not depend on
who writes, through what, or with which settings.

Each cell runs a fixed workload per guard, through one path, with one value
of each setting an unprivileged role can change that a guard reads.

Workloads (tables in schema rgm, owned by an ordinary role; reset before
every cell):
- lock_version: an accepted write (the current version sent back), a stale
  write, and, in a transaction whose snapshot is taken before another
  session commits a change of the row, a write of the version read before.
- immutable_once_set: a set-once, an overwrite, and, in such a transaction,
  setting a column another session set after the snapshot.
- running_balance (min_balance=0): an append, an overdraft, an append that
  carries its seq and balance, one that carries zeros (a column's DEFAULT),
  and, in such a transaction, an append after another session's append to
  the group.
- claim_lease / release_lease: a lease of two jobs, its release, a second
  release of the same token (fenced: 0), and, in such a transaction, a
  lease after another session leased the first job.

Paths: the superuser; the table owner; a role with only the table
privileges its writes need; a role with no privilege on the tables, through
SECURITY DEFINER functions owned by the table owner and by a superuser;
the privileged role through SECURITY INVOKER functions; the role without
privileges through auto-updatable views and through views whose INSTEAD OF
trigger (a SECURITY DEFINER function of the owner) writes the table. The
role without privileges also tries the table itself, a write and a lease:
both refused with 42501, nothing written.

Settings: check_function_bodies on/off; search_path default, or a hostile
schema first (owned by an ordinary role: operators =, <>, <, <=, >, >=, +,
- and functions named like built-ins (now, clock_timestamp, nextval,
count, max, pg_advisory_xact_lock, ...) that say when they run, and tables
named like catalogs and like raceguard's internals); session_replication_role
origin/replica; default_transaction_isolation read committed, repeatable
read, serializable; lock_timeout off or small, statement_timeout the
harness's or small (neither expires here: no statement waits);
raceguard.restoring untouched, SET, PGOPTIONS at connection start, ALTER
ROLE ... IN DATABASE ... SET by a superuser, and (from PostgreSQL 15) GRANT
SET ON PARAMETER to the role.

Every statement's outcome (its SQLSTATE, the rows a claim returns, the
count a release returns), the restore path's WARNINGs and every table's
rows at the end are predicted exactly; they are the same in every cell but
for these variations, each PostgreSQL's or the specification's rule:
- repeatable read / serializable: a write in a transaction whose snapshot
  predates another session's commit is refused with 40001 by PostgreSQL
  (lock_version, immutable_once_set: a concurrent update; a claim locking a
  row changed after the snapshot) or by running_balance (an append that
  cannot see the group's latest committed entry, SPEC section 3). At read
  committed the same writes meet the newer row: lock_version refuses the
  stale version (40001), immutable_once_set the overwrite (23514), the
  append and the lease go through on top of the other session's.
- session_replication_role = replica: only a superuser may set it (an
  ordinary role gets 42501, and its cell runs as origin); then no trigger
  fires, raceguard's included (PostgreSQL's documented bypass), so every
  write is stored as sent (the other session, a superuser too, is then a
  replica as well).
- claims through a view: the claim functions take a table's row type; a
  view's is refused with 42809 and nothing is leased.
- raceguard.restoring: a row that carries its seq and balance is kept only
  when the session's user may set the setting (a superuser, or granted SET
  on it) and the write runs in no SECURITY DEFINER function (the definer
  paths and the INSTEAD OF view): one WARNING says it is kept, or one says
  the setting is on but not honoured. A role's SET is refused with 42501;
  its PGOPTIONS placeholder is refused with a WARNING when the library
  loads; a superuser's ALTER ROLE ... SET for it turns the setting on but
  not honoured; GRANT SET ON PARAMETER needs PostgreSQL 15 (before, the
  run says so and leaves that value out).
No hostile object may run, ever.

Every pair of values of any two dimensions is covered each run (which
covers every value), then random cells until the budget is spent.
RACEGUARD_SEED replays a run, with RACEGUARD_SHAPE=i only cell i;
RACEGUARD_RANDOM_SECONDS (45) bounds the run, but the covering cells always
run. Needs PG* set to a superuser; works in PGDATABASE, with roles and
schemas of its own that it drops at the end.
"""
import os
import random
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "random"))

import harness  # noqa: E402
from harness import Crash  # noqa: E402

PASSWORD = secrets.token_hex(16)
OWNER, WRITER, CALLER = "raceguard_matrix_owner", "raceguard_matrix_writer", "raceguard_matrix_caller"
ROLES = [OWNER, WRITER, CALLER]
# Each path: the role whose session writes, and how its statements reach the tables.
PATHS = {
    "superuser": (None, "direct"),
    "table owner": (OWNER, "direct"),
    "role with only the privileges it needs": (WRITER, "direct"),
    "SECURITY DEFINER function of the owner": (CALLER, "rgm_definer"),
    "SECURITY DEFINER function of a superuser": (CALLER, "rgm_superdefiner"),
    "SECURITY INVOKER function": (WRITER, "rgm_invoker"),
    "auto-updatable view": (CALLER, "view"),
    "view with an INSTEAD OF trigger": (CALLER, "instead"),
}
DEFINER_STYLES = {"rgm_definer", "rgm_superdefiner", "instead"}
VIEW_STYLES = {"view", "instead"}
RESTORING = ["none", "SET", "PGOPTIONS", "ALTER ROLE", "GRANT"]
HOSTILE_PATH = "rgm_hostile, pg_catalog, public"
KEPT = "raceguard.restoring is on: ledger"
IGNORED = "raceguard.restoring is on but not honoured"
PLACEHOLDER_REFUSED = 'permission denied to set parameter "raceguard.restoring"'
PENDING = "status OPERATOR(pg_catalog.=) 'pending'"

TEST = None
SERVER_VERSION = 0
WATCH = None

SCHEMA = """
CREATE SCHEMA rgm AUTHORIZATION {owner};
SET ROLE {owner};
CREATE TABLE rgm.orders (id integer PRIMARY KEY, note text, lock_version integer);
CREATE TRIGGER orders_lock_version BEFORE INSERT OR UPDATE ON rgm.orders
    FOR EACH ROW EXECUTE FUNCTION raceguard.lock_version();
CREATE TABLE rgm.convos (id integer PRIMARY KEY, texter_id integer);
CREATE TRIGGER convos_texter BEFORE UPDATE ON rgm.convos
    FOR EACH ROW EXECUTE FUNCTION raceguard.immutable_once_set('texter_id');
CREATE TABLE rgm.ledger (id integer PRIMARY KEY, acct integer NOT NULL, amount bigint NOT NULL,
                         balance bigint, entry_no bigint);
CREATE INDEX ON rgm.ledger (acct, entry_no);
CREATE TRIGGER ledger_balance BEFORE INSERT OR UPDATE OR DELETE ON rgm.ledger
    FOR EACH ROW EXECUTE FUNCTION raceguard.running_balance('amount', 'balance', 'acct', 'seq=entry_no',
                                                            'min_balance=0');
CREATE TABLE rgm.jobs (id integer PRIMARY KEY, status text NOT NULL, claim_token bigint, claimed_until timestamptz);
CREATE VIEW rgm.v_orders AS SELECT * FROM rgm.orders;
CREATE VIEW rgm.v_convos AS SELECT * FROM rgm.convos;
CREATE VIEW rgm.v_ledger AS SELECT * FROM rgm.ledger;
CREATE VIEW rgm.v_jobs AS SELECT * FROM rgm.jobs;
CREATE VIEW rgm.instead_orders AS SELECT * FROM rgm.orders;
CREATE VIEW rgm.instead_convos AS SELECT * FROM rgm.convos;
CREATE VIEW rgm.instead_ledger AS SELECT * FROM rgm.ledger;
CREATE VIEW rgm.instead_jobs AS SELECT * FROM rgm.jobs;
-- The INSTEAD OF triggers' function writes the table as its owner would.
CREATE FUNCTION rgm.write_through() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME = 'instead_ledger' THEN
        INSERT INTO rgm.ledger VALUES (NEW.*);
    ELSIF TG_TABLE_NAME = 'instead_orders' THEN
        UPDATE rgm.orders SET note = NEW.note, lock_version = NEW.lock_version WHERE id = OLD.id;
    ELSIF TG_TABLE_NAME = 'instead_convos' THEN
        UPDATE rgm.convos SET texter_id = NEW.texter_id WHERE id = OLD.id;
    ELSE
        UPDATE rgm.jobs SET status = NEW.status, claim_token = NEW.claim_token, claimed_until = NEW.claimed_until
         WHERE id = OLD.id;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION rgm.write_through() FROM PUBLIC;
CREATE TRIGGER instead_orders INSTEAD OF UPDATE ON rgm.instead_orders FOR EACH ROW EXECUTE FUNCTION rgm.write_through();
CREATE TRIGGER instead_convos INSTEAD OF UPDATE ON rgm.instead_convos FOR EACH ROW EXECUTE FUNCTION rgm.write_through();
CREATE TRIGGER instead_ledger INSTEAD OF INSERT ON rgm.instead_ledger FOR EACH ROW EXECUTE FUNCTION rgm.write_through();
CREATE TRIGGER instead_jobs INSTEAD OF UPDATE ON rgm.instead_jobs FOR EACH ROW EXECUTE FUNCTION rgm.write_through();
GRANT USAGE ON SCHEMA rgm TO {writer}, {caller};
GRANT SELECT, UPDATE ON rgm.orders, rgm.convos, rgm.jobs TO {writer};
GRANT SELECT, INSERT ON rgm.ledger TO {writer};
GRANT SELECT, UPDATE ON rgm.v_orders, rgm.v_convos, rgm.v_jobs, rgm.instead_orders, rgm.instead_convos,
                        rgm.instead_jobs TO {caller};
GRANT SELECT, INSERT ON rgm.v_ledger, rgm.instead_ledger TO {caller};
RESET ROLE;
"""

# The API the function paths call, created in three schemas: owned by the
# table owner as SECURITY DEFINER, by the superuser as SECURITY DEFINER
# (both with a pinned search_path, as definer functions must have), and by
# the owner as SECURITY INVOKER (the caller's search_path, so every name in
# it is qualified).
API = """
CREATE FUNCTION {schema}.order_save(order_id integer, new_note text, sent_version integer) RETURNS void
LANGUAGE sql {security} AS $$
    UPDATE rgm.orders SET note = new_note, lock_version = sent_version WHERE id OPERATOR(pg_catalog.=) order_id $$;
CREATE FUNCTION {schema}.order_count() RETURNS bigint LANGUAGE sql {security} AS
    $$ SELECT pg_catalog.count(*) FROM rgm.orders $$;
CREATE FUNCTION {schema}.convo_assign(convo_id integer, texter integer) RETURNS void LANGUAGE sql {security} AS
    $$ UPDATE rgm.convos SET texter_id = texter WHERE id OPERATOR(pg_catalog.=) convo_id $$;
CREATE FUNCTION {schema}.convo_count() RETURNS bigint LANGUAGE sql {security} AS
    $$ SELECT pg_catalog.count(*) FROM rgm.convos $$;
CREATE FUNCTION {schema}.ledger_append(entry_id integer, account integer, amount bigint, balance bigint,
                                       entry_no bigint) RETURNS void LANGUAGE sql {security} AS
    $$ INSERT INTO rgm.ledger VALUES (entry_id, account, amount, balance, entry_no) $$;
CREATE FUNCTION {schema}.ledger_count() RETURNS bigint LANGUAGE sql {security} AS
    $$ SELECT pg_catalog.count(*) FROM rgm.ledger $$;
CREATE FUNCTION {schema}.job_claim(batch integer) RETURNS TABLE (id integer, claim_token bigint)
LANGUAGE sql {security} AS $$
    SELECT j.id, j.claim_token FROM raceguard.claim_lease(NULL::rgm.jobs, $q${pending}$q$, batch, '1 hour', 'id') j $$;
CREATE FUNCTION {schema}.job_release(token bigint) RETURNS bigint LANGUAGE sql {security} AS
    $$ SELECT raceguard.release_lease(NULL::rgm.jobs, token) $$;
CREATE FUNCTION {schema}.job_count() RETURNS bigint LANGUAGE sql {security} AS
    $$ SELECT pg_catalog.count(*) FROM rgm.jobs $$;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO {grantee};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {grantee};
"""


def hostile_schema():
    """A schema an ordinary role owns, meant to be first in a victim's
    search_path: every object in it raises a WARNING naming itself when it
    runs, and returns something wrong."""
    sql = ["CREATE SCHEMA rgm_hostile AUTHORIZATION %s" % CALLER, "SET ROLE %s" % CALLER,
           "GRANT USAGE ON SCHEMA rgm_hostile TO PUBLIC"]

    def function(name, args, returns, result):
        sql.append("CREATE FUNCTION rgm_hostile.%s(%s) RETURNS %s LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE WARNING 'hostile object used: %s(%s)'; RETURN%s; END $$" % (
                       name, args, returns, name, args, "" if returns == "void" else " " + result))

    # An operator of exactly the operands' types wins over one in pg_catalog
    # that needs a cast, wherever the schemas are: so every pair of integer
    # types, and each other type with itself.
    integers = [("smallint", "int2"), ("integer", "int4"), ("bigint", "int8")]
    pairs = [(left, right) for left in integers for right in integers] + [
        ((t, s), (t, s)) for t, s in [("numeric", "numeric"), ("text", "text"), ("name", "name"), ("oid", "oid"),
                                      ("timestamptz", "timestamptz"), ("boolean", "bool")]]
    comparisons = {"=": "eq", "<>": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
    for (left, left_short), (right, right_short) in pairs:
        suffix = left_short if left == right else left_short + right_short
        for operator, word in comparisons.items():
            function("%s_%s" % (word, suffix), "%s, %s" % (left, right), "boolean", "true")
            sql.append("CREATE OPERATOR rgm_hostile.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = rgm_hostile.%s_%s)"
                       % (operator, left, right, word, suffix))
        if left_short.startswith("int") or left == "numeric":
            wider = max(left, right, key=lambda t: ["smallint", "integer", "bigint", "numeric"].index(t))
            for operator, word in (("+", "plus"), ("-", "minus")):
                function("%s_%s" % (word, suffix), "a %s, b %s" % (left, right), wider, "a OPERATOR(pg_catalog.*) 1000")
                sql.append("CREATE OPERATOR rgm_hostile.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = rgm_hostile.%s_%s)"
                           % (operator, left, right, word, suffix))
    function("plus_timestamptz", "timestamptz, interval", "timestamptz", "'2000-01-01'")
    sql.append("CREATE OPERATOR rgm_hostile.+ (LEFTARG = timestamptz, RIGHTARG = interval, "
               "FUNCTION = rgm_hostile.plus_timestamptz)")
    for name, args, returns, result in [
            ("now", "", "timestamptz", "'2000-01-01'"), ("clock_timestamp", "", "timestamptz", "'2000-01-01'"),
            ("statement_timestamp", "", "timestamptz", "'2000-01-01'"),
            ("transaction_timestamp", "", "timestamptz", "'2000-01-01'"),
            ("nextval", "regclass", "bigint", "1"), ("nextval", "text", "bigint", "1"),
            ("currval", "regclass", "bigint", "1"), ("setval", "regclass, bigint", "bigint", "1"),
            ("lower", "text", "text", "'x'"), ("upper", "text", "text", "'x'"), ("quote_ident", "text", "text", "'x'"),
            ("quote_literal", "text", "text", "'x'"), ("hashtext", "text", "integer", "0"),
            ("hashint8", "bigint", "integer", "0"), ("pg_advisory_xact_lock", "bigint", "void", "NULL"),
            ("pg_try_advisory_xact_lock", "bigint", "boolean", "true"), ("txid_current", "", "bigint", "1"),
            ("pg_current_wal_lsn", "", "pg_lsn", "'0/0'"), ("pg_current_wal_flush_lsn", "", "pg_lsn", "'0/0'"),
            ("current_setting", "text", "text", "'x'"), ("set_config", "text, text, boolean", "text", "'x'"),
            ("row_number", "", "bigint", "0"),
            ("array_length", "anyarray, integer", "integer", "0"), ("format_type", "oid, integer", "text", "'x'"),
            ("pg_get_indexdef", "oid", "text", "'x'"), ("to_regclass", "text", "regclass", "NULL")]:
        function(name, args, returns, result)
    function("count_step", "bigint", "bigint", "0")
    sql.append("CREATE AGGREGATE rgm_hostile.count(*) (SFUNC = rgm_hostile.count_step, STYPE = bigint)")
    function("max_step", "bigint, bigint", "bigint", "0")
    sql.append("CREATE AGGREGATE rgm_hostile.max(bigint) (SFUNC = rgm_hostile.max_step, STYPE = bigint)")
    # Tables named like catalogs (the schema comes before pg_catalog) and
    # like raceguard's own objects and the CTEs of its claim statement.
    for table in ["pg_class", "pg_trigger", "pg_index", "pg_attribute", "pg_namespace", "pg_inherits", "pg_type",
                  "pg_proc", "pg_operator", "lease_token_seq", "guards", "stats", "claimed", "claimed_order", "jobs",
                  "ledger", "orders", "convos"]:
        sql.append("CREATE TABLE rgm_hostile.%s (oid oid, id integer, relname name)" % table)
        sql.append("GRANT ALL ON rgm_hostile.%s TO PUBLIC" % table)
    sql.append("RESET ROLE")
    return sql


# ---- the workload, and what it must do ---------------------------------------------------------

class Flags:
    """What decides a cell's expected results."""

    def __init__(self, guards_fire, snapshot_isolation, claims_refused, restoring_on, kept):
        self.guards_fire = guards_fire
        self.snapshot_isolation = snapshot_isolation  # repeatable read or serializable
        self.claims_refused = claims_refused
        self.restoring_on = restoring_on
        self.kept = kept


def operations(style):
    """The workload: (actor, name, sql, params, what the result is read as).
    Actor "R" is the cell's session through its path, "O" the other session
    (a superuser), "T" the cell's session's transaction control."""
    def write(kind, *args):
        if style == "direct" or style in VIEW_STYLES:
            table = {"direct": "rgm.%s", "view": "rgm.v_%s", "instead": "rgm.instead_%s"}[style]
            if kind == "order":
                return ("UPDATE %s SET note = %%s, lock_version = %%s WHERE id OPERATOR(pg_catalog.=) %%s"
                        % (table % "orders"), (args[1], args[2], args[0]))
            if kind == "convo":
                return ("UPDATE %s SET texter_id = %%s WHERE id OPERATOR(pg_catalog.=) %%s" % (table % "convos"),
                        (args[1], args[0]))
            return ("INSERT INTO %s VALUES (%%s, %%s, %%s, %%s, %%s)" % (table % "ledger"), args)
        function = {"order": "order_save(%s, %s, %s)", "convo": "convo_assign(%s, %s)",
                    "entry": "ledger_append(%s, %s, %s, %s, %s)"}[kind]
        return ("SELECT %s.%s" % (style, function), args)

    def read(table):
        if style == "direct" or style in VIEW_STYLES:
            name = {"direct": "rgm.%s", "view": "rgm.v_%s", "instead": "rgm.instead_%s"}[style] % table
            return ("SELECT pg_catalog.count(*) FROM %s" % name, None)
        return ("SELECT %s.%s_count()" % (style, {"orders": "order", "convos": "convo", "ledger": "ledger",
                                                 "jobs": "job"}[table]), None)

    def claim(batch):
        if style == "direct" or style in VIEW_STYLES:
            target = {"direct": "rgm.jobs", "view": "rgm.v_jobs", "instead": "rgm.instead_jobs"}[style]
            return ("SELECT id, claim_token FROM raceguard.claim_lease(NULL::%s, %%s, %%s, '1 hour', 'id')" % target,
                    (PENDING, batch))
        return ("SELECT id, claim_token FROM %s.job_claim(%%s)" % style, (batch,))

    def release():
        if style == "direct" or style in VIEW_STYLES:
            target = {"direct": "rgm.jobs", "view": "rgm.v_jobs", "instead": "rgm.instead_jobs"}[style]
            return ("SELECT raceguard.release_lease(NULL::%s, %%s)" % target, "token")
        return ("SELECT %s.job_release(%%s)" % style, "token")

    unprivileged = [] if style not in DEFINER_STYLES | VIEW_STYLES else [
        ("R", "privileges: a write to the table itself",
         "UPDATE rgm.orders SET note = 'no' WHERE id OPERATOR(pg_catalog.=) 1", None),
        ("R", "privileges: a lease from the table itself",
         "SELECT id FROM raceguard.claim_lease(NULL::rgm.jobs, %s, 1, '1 hour')", (PENDING,)),
    ]
    return unprivileged + [
        ("R", "lock_version: accepted write", *write("order", 1, "x", 1)),
        ("R", "lock_version: stale write", *write("order", 1, "y", 1)),
        ("T", "BEGIN", "BEGIN", None),
        ("R", "lock_version: read (the snapshot)", *read("orders")),
        ("O", "lock_version: another session's write",
         "UPDATE rgm.orders SET note = 'o', lock_version = 1 WHERE id OPERATOR(pg_catalog.=) 2", None),
        ("R", "lock_version: write of the version read before", *write("order", 2, "z", 1)),
        ("T", "ROLLBACK", "ROLLBACK", None),
        ("R", "immutable_once_set: set once", *write("convo", 1, 5)),
        ("R", "immutable_once_set: overwrite", *write("convo", 2, 5)),
        ("T", "BEGIN", "BEGIN", None),
        ("R", "immutable_once_set: read (the snapshot)", *read("convos")),
        ("O", "immutable_once_set: another session sets it",
         "UPDATE rgm.convos SET texter_id = 8 WHERE id OPERATOR(pg_catalog.=) 3", None),
        ("R", "immutable_once_set: set what another session set", *write("convo", 3, 5)),
        ("T", "ROLLBACK", "ROLLBACK", None),
        ("R", "running_balance: append", *write("entry", 2, 1, 50, None, None)),
        ("R", "running_balance: overdraft", *write("entry", 3, 1, -1000, None, None)),
        ("R", "running_balance: append carrying seq and balance", *write("entry", 4, 1, 5, 999, 77)),
        ("R", "running_balance: append carrying zeros", *write("entry", 5, 2, 7, 0, 0)),
        ("T", "BEGIN", "BEGIN", None),
        ("R", "running_balance: read (the snapshot)", *read("ledger")),
        ("O", "running_balance: another session appends",
         "INSERT INTO rgm.ledger (id, acct, amount) VALUES (6, 1, 1)", None),
        ("R", "running_balance: append after another session's", *write("entry", 7, 1, 2, None, None)),
        ("T", "COMMIT", "COMMIT", None),
        ("R", "claims: lease two jobs", *claim(2)),
        ("R", "claims: release the lease", *release()),
        ("R", "claims: release it again (fenced)", *release()),
        ("T", "BEGIN", "BEGIN", None),
        ("R", "claims: read (the snapshot)", *read("jobs")),
        ("O", "claims: another session leases a job",
         "SELECT id, claim_token FROM raceguard.claim_lease(NULL::rgm.jobs, %s, 1, '1 hour', 'id')", (PENDING,)),
        ("R", "claims: lease after another session's lease", *claim(1)),
        ("T", "COMMIT", "COMMIT", None),
    ]


def expected_outcomes(f):
    """What each R operation returns: "ok", a SQLSTATE, or a value."""
    g, rr = f.guards_fire, f.snapshot_isolation
    claim = "42809" if f.claims_refused else None
    return {
        "privileges: a write to the table itself": "42501",
        "privileges: a lease from the table itself": "42501",
        "lock_version: accepted write": "ok",
        "lock_version: stale write": "40001" if g else "ok",
        "lock_version: read (the snapshot)": "ok",
        "lock_version: write of the version read before": "40001" if g or rr else "ok",
        "immutable_once_set: set once": "ok",
        "immutable_once_set: overwrite": "23514" if g else "ok",
        "immutable_once_set: read (the snapshot)": "ok",
        "immutable_once_set: set what another session set": "40001" if rr else "23514" if g else "ok",
        "running_balance: append": "ok",
        "running_balance: overdraft": "23514" if g else "ok",
        "running_balance: append carrying seq and balance": "ok",
        "running_balance: append carrying zeros": "ok",
        "running_balance: read (the snapshot)": "ok",
        "running_balance: append after another session's": "40001" if rr and g else "ok",
        "claims: lease two jobs": claim or [1, 2],
        "claims: release the lease": claim or 2,
        "claims: release it again (fenced)": claim or 0,
        "claims: read (the snapshot)": "ok",
        "claims: lease after another session's lease": claim or ("40001" if rr else [2]),
    }


def expected_tables(f, leased_by_other, leased_by_session):
    """Every table's rows after the workload."""
    g = f.guards_fire
    orders = [(1, "x", 2) if g else (1, "y", 1), (2, "o", 2 if g else 1)]
    convos = [(1, 5), (2, 7 if g else 5), (3, 8)]
    ledger = [(1, 1, 100, 100, 1)]
    if g:
        ledger.append((2, 1, 50, 150, 2))
        ledger.append((4, 1, 5, 999, 77) if f.kept else (4, 1, 5, 155, 3))
        ledger.append((5, 2, 7, 7, 1))
        last_balance, last_seq = (999, 77) if f.kept else (155, 3)
        ledger.append((6, 1, 1, last_balance + 1, last_seq + 1))
        if not f.snapshot_isolation:
            ledger.append((7, 1, 2, last_balance + 3, last_seq + 2))
    else:
        ledger += [(2, 1, 50, None, None), (3, 1, -1000, None, None), (4, 1, 5, 999, 77), (5, 2, 7, 0, 0),
                   (6, 1, 1, None, None), (7, 1, 2, None, None)]
    jobs = [(1, "pending", leased_by_other), (2, "pending", leased_by_session), (3, "pending", None),
            (4, "pending", None)]
    return {"orders": orders, "convos": convos, "ledger": ledger, "jobs": jobs}


RESET = [
    "TRUNCATE rgm.orders, rgm.convos, rgm.ledger, rgm.jobs",
    "INSERT INTO rgm.orders (id, note) VALUES (1, 'a'), (2, 'b')",
    "INSERT INTO rgm.convos VALUES (1, NULL), (2, 7), (3, NULL)",
    "INSERT INTO rgm.ledger (id, acct, amount) VALUES (1, 1, 100)",
    "INSERT INTO rgm.jobs (id, status) SELECT g, 'pending' FROM pg_catalog.generate_series(1, 4) g",
]
TABLE_QUERIES = {
    "orders": "SELECT id, note, lock_version FROM rgm.orders ORDER BY id",
    "convos": "SELECT id, texter_id FROM rgm.convos ORDER BY id",
    "ledger": "SELECT id, acct, amount, balance, entry_no FROM rgm.ledger ORDER BY id",
    "jobs": "SELECT id, status, claim_token FROM rgm.jobs ORDER BY id",
}


# ---- one cell ----------------------------------------------------------------------------------

class CellFailed(Exception):
    pass


def run_cell(index, cell, admin):
    role, style = PATHS[cell["path"]]
    superuser = role is None
    log = []
    description = ", ".join("%s=%s" % (k, v) for k, v in cell.items())
    if TEST.verbose:
        print("cell %d: %s" % (index, description), flush=True)

    def report(kind, detail):
        TEST.fail(index, kind, "cell: %s\n%s" % (description, detail), harness.render(log, sessions=True))

    def fail(kind, detail):
        report(kind, detail)
        raise CellFailed()

    restoring = cell["restoring"]
    guards_fire = not (superuser and cell["session_replication_role"] == "replica")
    # The other session: a superuser, a replica too when the cell's is one.
    admin.log = log
    admin.name = "other session (superuser)"
    admin.must("SET session_replication_role = origin", log=False)
    for sql in RESET:
        admin.must(sql, log=False)
    admin.must("SET session_replication_role = %s" % ("origin" if guards_fire else "replica"))
    granted = restoring == "GRANT" and not superuser
    cleanup = []
    session = None
    try:
        if restoring == "ALTER ROLE":
            target = role or admin.must("SELECT current_user", log=False)[0][0]
            cleanup.append("ALTER ROLE %s IN DATABASE %s RESET raceguard.restoring" % (target, DATABASE))
            admin.must("ALTER ROLE %s IN DATABASE %s SET raceguard.restoring = on" % (target, DATABASE))
        if granted:
            cleanup.append("REVOKE SET ON PARAMETER raceguard.restoring FROM %s" % role)
            admin.must("GRANT SET ON PARAMETER raceguard.restoring TO %s" % role)
        options = "-c raceguard.restoring=on" if restoring == "PGOPTIONS" else ""
        if role is not None:
            log.append(("cell session", "-- connect as %s%s" % (role, " with PGOPTIONS='%s'" % options
                                                               if options else "")))
        session = harness.RoleSession(log, role, PASSWORD, options, name="cell session")

        def setting(sql, expected_sqlstate=None):
            """A setting's outcome; a wrong one is reported, and the cell goes
            on with what the server did (the expectations follow the
            settings as read back)."""
            outcome = session.step(sql)
            if (None if outcome.ok else outcome.sqlstate) != expected_sqlstate:
                report("setting", "%s: %s (expected %s)" % (sql, outcome, expected_sqlstate or "ok"))

        # The library loads here; a role's placeholder from PGOPTIONS is refused then.
        setting("SELECT pg_catalog.count(*) FROM raceguard.stats")
        placeholder_warnings = harness.count_notices(session.all_notices, PLACEHOLDER_REFUSED)
        if placeholder_warnings != (1 if restoring == "PGOPTIONS" and not superuser else 0):
            report("raceguard.restoring", "PGOPTIONS: %d WARNINGs refusing the placeholder; notices: %r" % (
                placeholder_warnings, session.all_notices))
        if restoring in ("SET", "GRANT"):
            setting("SET raceguard.restoring = on", None if superuser or granted else "42501")
        setting("SET check_function_bodies = %s" % cell["check_function_bodies"])
        # PostgreSQL checks the privilege whatever the value, origin included.
        setting("SET session_replication_role = %s" % cell["session_replication_role"], None if superuser else "42501")
        setting("SET default_transaction_isolation = '%s'" % cell["isolation"])
        setting("SET lock_timeout = '%s'" % cell["lock_timeout"])
        setting("SET statement_timeout = '%s'" % cell["statement_timeout"])
        setting("SET search_path = %s" % (HOSTILE_PATH if cell["search_path"] == "hostile" else '"$user", public'))
        state = session.must("SELECT pg_catalog.current_setting('raceguard.restoring', true), "
                             "pg_catalog.current_setting('session_replication_role')", log=False)[0]
        restoring_on = state[0] == "on"
        if guards_fire != (state[1] == "origin"):
            fail("setting", "session_replication_role is %s" % state[1])
        should_be_on = restoring in ("PGOPTIONS", "SET", "ALTER ROLE", "GRANT") if superuser else \
            restoring in ("ALTER ROLE", "GRANT")
        if restoring_on != should_be_on:
            report("raceguard.restoring", "the session's raceguard.restoring is %s" % state[0])
        may_set = superuser or granted
        flags = Flags(guards_fire, cell["isolation"] != "read committed", style in VIEW_STYLES, restoring_on,
                      guards_fire and restoring_on and may_set and style not in DEFINER_STYLES)
        wanted = expected_outcomes(flags)

        token = None
        failed_in_transaction = False
        other_token = None
        session_token = None
        for actor, name, sql, params in operations(style):
            if actor == "O":
                outcome = admin.step(sql, params)
                if not outcome.ok:
                    fail("the other session failed", "%s: %s" % (name, outcome))
                if outcome.rows and len(outcome.rows[0]) == 2:
                    other_token = outcome.rows[0][1]
                continue
            if actor == "T":
                sql = "ROLLBACK" if sql == "COMMIT" and failed_in_transaction else sql
                failed_in_transaction = False
                outcome = session.step(sql)
                if not outcome.ok:
                    fail("transaction control", "%s: %s" % (sql, outcome))
                continue
            if params == "token":
                params = (token if token is not None else 1,)
            outcome = session.step(sql, params)
            if not outcome.ok:
                got = outcome.sqlstate
                failed_in_transaction = True
            elif name.startswith("claims: lease"):
                got = sorted(row[0] for row in outcome.rows)
                tokens = {row[1] for row in outcome.rows}
                if len(tokens) > 1 or None in tokens:
                    fail("claims", "%s: one token for the leased rows expected, got %r" % (name, outcome.rows))
                token = tokens.pop() if tokens else None
                if "after another" in name:
                    session_token = token
            elif name.startswith("claims: release"):
                got = outcome.rows[0][0]
            else:
                got = "ok"
            TEST.count("%s: %s" % (name.split(":")[0], got if isinstance(got, str) else "ok"))
            if got != wanted[name]:
                fail("wrong outcome", "%s: expected %r, got %r (%s)" % (name, wanted[name], got, outcome))
            hostile = [n for n in outcome.notices if "hostile object used" in n]
            if hostile:
                fail("hostile object used", "%s ran: %r" % (name, hostile))
            kept = harness.count_notices(outcome.notices, KEPT)
            ignored = harness.count_notices(outcome.notices, IGNORED)
            carrying = name == "running_balance: append carrying seq and balance"
            wanted_kept = 1 if carrying and flags.kept else 0
            wanted_ignored = 1 if carrying and guards_fire and restoring_on and not flags.kept else 0
            if (kept, ignored) != (wanted_kept, wanted_ignored):
                fail("restoring WARNING", "%s: expected %d kept and %d not-honoured WARNINGs; notices: %r" % (
                    name, wanted_kept, wanted_ignored, outcome.notices))
            if kept:
                TEST.count("rows kept")
        # The tables, read by the other session.
        tables = expected_tables(flags, other_token, session_token if not flags.claims_refused else None)
        for table, query in TABLE_QUERIES.items():
            rows = [tuple(row) for row in admin.must(query, log=False)]
            if rows != tables[table]:
                fail("wrong rows", "%s: expected\n  %s\ngot\n  %s" % (table, tables[table], rows))
        if guards_fire:
            problems = admin.must("SELECT pg_catalog.count(*) FROM raceguard.verify_running_balance('rgm.ledger')",
                                  log=False)[0][0]
            if (problems == 0) == flags.kept:
                fail("verify_running_balance()", "%d problems, the ledger %s a kept row" % (
                    problems, "has" if flags.kept else "has no"))
        WATCH.check("cell %d" % index)
        TEST.count("cells")
    except RuntimeError as error:  # a statement of the test's own failed
        report("test setup error", str(error))
    except Crash as crash:
        report("backend crash", "%s\nserver: %s" % (crash, "; ".join(WATCH.problems()) or "up"))
        raise
    finally:
        if session is not None:
            session.close()
        admin.run("RESET session_replication_role", log=False)
        for sql in cleanup:
            admin.run(sql, log=False)
        admin.log = []


# ---- the run -----------------------------------------------------------------------------------

DATABASE = None


def dimensions():
    restoring = RESTORING if SERVER_VERSION >= 150000 else [v for v in RESTORING if v != "GRANT"]
    return [
        ("path", list(PATHS)),
        ("restoring", restoring),
        ("isolation", ["read committed", "repeatable read", "serializable"]),
        ("session_replication_role", ["origin", "replica"]),
        ("search_path", ["default", "hostile"]),
        ("check_function_bodies", ["on", "off"]),
        ("lock_timeout", ["0", "1s"]),
        ("statement_timeout", ["120s", "5s"]),
    ]


def setup(admin):
    for sql in ["CREATE ROLE %s LOGIN PASSWORD %s" % (r, harness.quote_literal(PASSWORD)) for r in ROLES]:
        admin.must(sql)
    admin.must(SCHEMA.format(owner=OWNER, writer=WRITER, caller=CALLER))
    for schema, owner, security, grantee in [
            ("rgm_definer", OWNER, "SECURITY DEFINER SET search_path = pg_catalog, pg_temp", CALLER),
            ("rgm_superdefiner", None, "SECURITY DEFINER SET search_path = pg_catalog, pg_temp", CALLER),
            ("rgm_invoker", OWNER, "SECURITY INVOKER", WRITER)]:
        admin.must("CREATE SCHEMA %s%s" % (schema, " AUTHORIZATION %s" % owner if owner else ""))
        if owner:
            admin.must("SET ROLE %s" % owner)
        admin.must(API.format(schema=schema, security=security, grantee=grantee, pending=PENDING))
        admin.must("RESET ROLE")
    for sql in hostile_schema():
        admin.must(sql)


def teardown(admin):
    for schema in ["rgm_hostile", "rgm_invoker", "rgm_superdefiner", "rgm_definer", "rgm"]:
        admin.must("DROP SCHEMA IF EXISTS %s CASCADE" % schema)
    for role in ROLES:
        if admin.must("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))[0][0]:
            if SERVER_VERSION >= 150000:
                admin.must("REVOKE SET ON PARAMETER raceguard.restoring FROM %s" % role)
            admin.must("ALTER ROLE %s IN DATABASE %s RESET ALL" % (role, DATABASE))
            admin.must("DROP OWNED BY %s" % role)
            admin.must("DROP ROLE %s" % role)


def cell_indexes(count):
    if TEST.only_shape is not None:
        yield TEST.only_shape, random.Random("%d/%d" % (TEST.seed, TEST.only_shape))
        return
    index = 0
    while index < count or time.monotonic() - TEST.started < TEST.budget:
        yield index, random.Random("%d/%d" % (TEST.seed, index))
        index += 1


def main():
    global TEST, SERVER_VERSION, WATCH, DATABASE
    TEST = harness.Test("privilege matrix", default_seconds=45)
    admin = harness.RoleSession([], name="other session (superuser)")
    if not admin.must("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
        sys.exit("privilege matrix: needs a superuser connection (PGUSER)")
    SERVER_VERSION = int(admin.must("SHOW server_version_num")[0][0])
    DATABASE = harness.quote_ident(admin.must("SELECT current_database()")[0][0])
    if SERVER_VERSION < 150000:
        print("privilege matrix: the GRANT SET ON PARAMETER cells are skipped: PostgreSQL %d has no such grant "
              "(it arrived in 15), so only a superuser may set raceguard.restoring" % (SERVER_VERSION // 10000),
              flush=True)
    teardown(admin)
    setup(admin)
    WATCH = harness.ServerWatch()
    dims = dimensions()
    covering = harness.covering_cases(dims, random.Random("%d/design" % TEST.seed))
    print("privilege matrix: %d covering cells, then random ones" % len(covering), flush=True)
    for index, rng in cell_indexes(len(covering)):
        cell = covering[index] if index < len(covering) else harness.random_case(dims, rng)
        try:
            run_cell(index, cell, admin)
        except CellFailed:
            pass
        except Crash:
            WATCH.wait_until_back()
            print("privilege matrix: the server crashed; the run stops here", flush=True)
            break
        if admin.conn.closed:
            break
    WATCH.close()
    admin.close()
    admin = harness.RoleSession([])
    teardown(admin)
    admin.close()
    c = TEST.counters
    TEST.finish("%d cells (%d covering), %d with rows kept while restoring; outcomes {%s}" % (
        c.get("cells", 0), len(covering), c.get("rows kept", 0),
        ", ".join("%s %d" % (k, v) for k, v in sorted(c.items()) if ":" in k)))


if __name__ == "__main__":
    main()
