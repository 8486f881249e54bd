"""raceguard-sqlalchemy's tests, run by run.sh with the package installed
from its wheel. Each part prints its checks; the summary counts them and
the exit status is non-zero when one failed."""
import datetime
import glob
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import traceback
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, declarative_base
from sqlalchemy.orm import exc as orm_exc

import raceguard_sqlalchemy as rg

PREFIX = os.environ["RACEGUARD_TEST_PREFIX"]
APP_ROLE = os.environ["RACEGUARD_TEST_APP_ROLE"]
APP_PASSWORD = os.environ["RACEGUARD_TEST_APP_PASSWORD"]
TEMPLATE = os.environ["RACEGUARD_TEST_TEMPLATE"]
PROJECT = os.environ["RACEGUARD_TEST_PROJECT"]
DOCS = os.environ["RACEGUARD_TEST_DOCS"]
SEED = int(os.environ.get("RACEGUARD_SEED") or random.SystemRandom().randrange(1, 2 ** 31))
random.seed(SEED)
print("seed: RACEGUARD_SEED=%d" % SEED)

checks = {"passed": 0, "failed": []}
part = {"name": ""}


def check(condition, what):
    if condition:
        checks["passed"] += 1
        print("  ok   %s" % what)
    else:
        checks["failed"].append("%s: %s" % (part["name"], what))
        print("  FAIL %s" % what)
    return condition


def expect_error(function, kind, what, match=None):
    """The call raises `kind` (with `match` in its message)."""
    try:
        function()
    except kind as error:
        return check(match is None or match in str(error), "%s (%s: %s)" % (
            what, type(error).__name__, str(error).splitlines()[0][:120]))
    except Exception as error:  # noqa: BLE001 - reported as a failure
        return check(False, "%s: raised %s: %s" % (what, type(error).__name__, error))
    return check(False, "%s: raised nothing" % what)


def url(database, user=None, password=None):
    # libpq's own host and port, passed as query arguments: a socket
    # directory does not fit in a URL's host part.
    query = {key: os.environ[name] for key, name in (("host", "PGHOST"), ("port", "PGPORT")) if os.environ.get(name)}
    return URL.create("postgresql+psycopg2", username=user or os.environ.get("PGUSER"), password=password,
                      database=database, query=query)


def url_text(database):
    return url(database, APP_ROLE, APP_PASSWORD).render_as_string(hide_password=False)


admin = sa.create_engine(url("postgres"), isolation_level="AUTOCOMMIT")
app_server = sa.create_engine(url("postgres", APP_ROLE, APP_PASSWORD), isolation_level="AUTOCOMMIT")
engines = []


def app_database(name, template=TEMPLATE):
    """A database the application role creates itself, from the template."""
    database = "%s_%s" % (PREFIX, name)
    with app_server.connect() as connection:
        connection.execute(text('CREATE DATABASE "%s" TEMPLATE "%s"' % (database, template)))
    return database


def engine_for(database, **kwargs):
    engine = sa.create_engine(url(database, APP_ROLE, APP_PASSWORD), **kwargs)
    engines.append(engine)
    return engine


def alembic(database, *arguments, stage=1, expect_failure=False, extra=None):
    environment = dict(os.environ, DATABASE_URL=url_text(database), RACEGUARD_TEST_STAGE=str(stage), **(extra or {}))
    run = subprocess.run([sys.executable, "-m", "alembic", "-c", "alembic.ini"] + list(arguments), cwd=PROJECT,
                         env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if (run.returncode != 0) != expect_failure:
        print(run.stdout)
        raise AssertionError("alembic %s exited with %d" % (" ".join(arguments), run.returncode))
    return run.stdout


def autogenerate(database, message, stage, extra=None):
    before = set(glob.glob(os.path.join(PROJECT, "versions", "*.py")))
    alembic(database, "revision", "--autogenerate", "-m", message, stage=stage, extra=extra)
    (path,) = set(glob.glob(os.path.join(PROJECT, "versions", "*.py"))) - before
    with open(path) as f:
        source = f.read()
    upgrade = source[source.index("def upgrade"):source.index("def downgrade")]
    downgrade = source[source.index("def downgrade"):]
    return path, _operations(upgrade), _operations(downgrade)


def _operations(body):
    return [line.strip() for line in body.splitlines() if line.strip().startswith("op.")]


def guards(engine):
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(text(
            "SELECT table_name::text, trigger_name::text, guard, columns::text[], options::text, timing"
            "  FROM raceguard.guards ORDER BY 1, 2")))


def models_states():
    """The hostile states test/project/models.py declares."""
    namespace = {}
    with open(os.path.join(PROJECT, "models.py")) as f:
        source = f.read()
    exec(compile(source[source.index("HOSTILE_STATES = "):source.index("hostile = Table")], "models.py", "exec"),
         namespace)
    return namespace["HOSTILE_STATES"]


def position(operations, needle):
    for n, operation in enumerate(operations):
        if needle in operation:
            return n
    return None


# ---------------------------------------------------------------------------

def test_template_and_roles():
    part["name"] = "application role"
    with app_server.connect() as connection:
        check(connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
              is False, "the application role is not a superuser")
    # Where the extension is missing, the role cannot install it (untrusted):
    plain = "%s_plain" % PREFIX
    with app_server.connect() as connection:
        connection.execute(text('CREATE DATABASE "%s" TEMPLATE template0' % plain))
    output = alembic(plain, "upgrade", "0001_raceguard", expect_failure=True)
    check("permission denied to create extension" in output,
          "in a database without raceguard, the role's CREATE EXTENSION is refused (why the template)")
    # In a database made from the template it is a no-op, and a downgrade
    # leaves the extension the role did not install.
    database = app_database("template_check")
    alembic(database, "upgrade", "0001_raceguard")
    alembic(database, "downgrade", "base")
    with engine_for(database).connect() as connection:
        check(connection.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'raceguard'")).scalar()
              == 1, "upgrade and downgrade of create_raceguard_extension as the role keep the template's raceguard")


def test_migrations():
    part["name"] = "migrations"
    database = app_database("app")
    alembic(database, "upgrade", "head")  # the hand-written first revision: the extension
    # A guard nobody declared, on a table of the model, must never be dropped.
    path1, up1, down1 = autogenerate(database, "first", stage=1)
    print("    upgrade: " + "\n             ".join(up1))
    check(not any("drop" in o for o in up1), "the first revision proposes no drop")
    check(not any("create_raceguard_extension" in o for o in up1),
          "no create_raceguard_extension where the database already holds raceguard")
    for table, needle in (("orders", "op.add_lock_version_guard('orders', column='version', strict=True, "
                                     "name='orders_lock_version')"),
                          ("conversations", "op.add_immutable_once_set_guard('conversations', columns=['texter_id'],"
                                            " name='conversation_assignment_constraint')"),
                          ("payments", "op.add_running_balance_guard('payments', amount='amount', "
                                       "balance='balance', seq='entry_no', group=['account_id'], min_balance='0',"
                                       " initial='0.00', name='payments_running_balance')"),
                          ("tickets", "op.add_transition_guard('tickets', column='status', start=['open'], "
                                      "edges={'open': ['assigned'], 'assigned': ['closed', 'open']}, "
                                      "name='tickets_status_transition')"),
                          ("hostile", "op.add_transition_guard('hostile', column='state', start=[None], "
                                      "edges={None: [\"it's\"], \"it's\": ['say \"hi\"'], 'say \"hi\"': ['a>b'], ")):
        created, added = position(up1, "op.create_table('%s'" % table), position(up1, needle)
        check(created is not None and added is not None and created < added,
              "%s: the guard is added after its create_table (%s, %s)" % (table, created, added))
    index, guard = position(up1, "payments_chain"), position(up1, "add_running_balance_guard")
    check(index is not None and guard is not None and index < guard, "the ledger's index comes before its guard")
    check("op.drop_running_balance_guard('payments', amount='amount', balance='balance', seq='entry_no', "
          "group=['account_id'], min_balance='0', initial='0.00', name='payments_running_balance')" in down1 and
          all(position(down1, "drop_%s_guard('%s'" % (kind, table)) < position(down1, "drop_table('%s')" % table)
              for kind, table in (("lock_version", "orders"), ("running_balance", "payments"),
                                  ("transition", "tickets"), ("transition", "hostile"))),
          "the downgrade drops the guards before their tables")

    alembic(database, "upgrade", "head")
    engine = engine_for(database)
    after1 = guards(engine)
    check([g[1] for g in after1] == ["conversation_assignment_constraint", "hostile_state_transition",
                                     "orders_lock_version", "payments_running_balance", "tickets_status_transition"],
          "upgrade as the role made the five guards")
    check(("tickets", "tickets_status_transition", "transition", ["status"],
           '{"edges": [">open", "open>assigned", "assigned>closed", "assigned>open"]}', "BEFORE") in after1,
          "tickets' transition guard as declared")
    hostile_edges = json.loads([g for g in after1 if g[1] == "hostile_state_transition"][0][4])["edges"]
    check(hostile_edges[:2] == [">NULL", "NULL>it's"] and
          [rg.guards.parse_transition_edge(e) for e in hostile_edges[1:]] ==
          list(zip([None] + models_states(), models_states() + [None])),
          "every hostile state reads back from raceguard.guards as the state declared")
    check(("orders", "orders_lock_version", "lock_version", ["version"], '{"strict": true, "sqlstate": "40001"}',
           "BEFORE") in after1, "orders' guard as declared: version, strict")
    with engine.connect() as connection:
        problems = connection.execute(text("SELECT count(*) FROM raceguard.check_guards()")).scalar()
    check(problems == 0, "check_guards() finds no problem")

    # A hand-written guard nobody declared.
    with engine.begin() as connection:
        connection.execute(text('CREATE TRIGGER "hand_written: topic" BEFORE UPDATE ON conversations FOR EACH ROW'
                                ' EXECUTE FUNCTION raceguard.immutable_once_set(\'Topic\')'))
    after1 = guards(engine)
    path, up, down = autogenerate(database, "nothing", stage=1)
    check(up == [] and down == [], "a second autogenerate proposes nothing (hand-written guard left alone): %r" % up)
    os.remove(path)

    # An entity comparator shaped as alembic_utils' proposes dropping every
    # trigger it was not given; process_revision_directives keeps the guards.
    with engine.begin() as connection:
        connection.execute(text("CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS "
                                "'BEGIN RETURN NEW; END'"))
        connection.execute(text("CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW "
                                "EXECUTE FUNCTION audit()"))
    path, up, down = autogenerate(database, "entities", stage=1, extra={"RACEGUARD_TEST_ENTITY_COMPARATOR": "1",
                                                                       "RACEGUARD_TEST_NO_DIRECTIVES": "1"})
    check(len([o for o in up if o.startswith("op.drop_entity")]) == 7,
          "without the hook, the entity comparator proposes dropping the 6 guards and the audit trigger: %r" % up)
    os.remove(path)
    path, up, down = autogenerate(database, "entities", stage=1, extra={"RACEGUARD_TEST_ENTITY_COMPARATOR": "1"})
    check(up == ["op.drop_entity('PGTrigger: public.orders_audit orders')"] and
          down == ["op.create_entity('PGTrigger: public.orders_audit orders')"],
          "with process_revision_directives only the audit trigger's drop is left: %r %r" % (up, down))
    os.remove(path)
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER orders_audit ON orders"))
        connection.execute(text("DROP FUNCTION audit()"))

    # Stage 2: a renamed guarded column, a widened version, a new guard.
    path2, up2, down2 = autogenerate(database, "second", stage=2)
    print("    upgrade: " + "\n             ".join(up2))
    drop = position(up2, "op.drop_immutable_once_set_guard('conversations', columns=['texter_id']")
    drop_column = position(up2, "op.drop_column('conversations', 'texter_id')")
    add_column = position(up2, "op.add_column('conversations'")
    add = position(up2, "op.add_immutable_once_set_guard('conversations', columns=['agent_id']")
    check(None not in (drop, drop_column, add_column, add) and drop < drop_column and add_column < add,
          "rename: drop guard -> change the columns -> add guard (%s %s %s %s)" % (drop, drop_column, add_column, add))
    lv_drop = position(up2, "op.drop_lock_version_guard('orders'")
    alter = position(up2, "op.alter_column('orders', 'version'")
    lv_add = position(up2, "op.add_lock_version_guard('orders'")
    check(None not in (lv_drop, alter, lv_add) and lv_drop < alter < lv_add,
          "retype: drop guard -> alter column -> add guard (%s %s %s)" % (lv_drop, alter, lv_add))
    check(position(up2, "op.add_lock_version_guard('invoices', name='invoices_lock_version')") is not None,
          "a guard declared on an existing table is added")
    check(position(up2, "hand_written") is None, "the hand-written guard is not touched")
    rb_drop = position(up2, "op.drop_running_balance_guard('payments'")
    rb_alter = position(up2, "op.alter_column('payments', 'entry_no'")
    rb_add = position(up2, "op.add_running_balance_guard('payments'")
    check(None not in (rb_drop, rb_alter, rb_add) and rb_drop < rb_alter < rb_add,
          "the ledger's seq retyped: drop guard -> alter column -> add guard (%s %s %s)" % (rb_drop, rb_alter, rb_add))
    tr_drop = position(up2, "op.drop_transition_guard('tickets'")
    tr_alter = position(up2, "op.alter_column('tickets', 'status'")
    tr_add = position(up2, "op.add_transition_guard('tickets'")
    check(None not in (tr_drop, tr_alter, tr_add) and tr_drop < tr_alter < tr_add,
          "the tickets' status retyped: drop transition guard -> alter column -> add it (%s %s %s)" % (
              tr_drop, tr_alter, tr_add))
    check(len([o for o in up2 if "drop_" in o and "guard" in o]) == 4 and
          len([o for o in up2 if "add_" in o and "guard" in o]) == 5, "exactly four guard drops, all re-added")

    alembic(database, "upgrade", "head", stage=2)
    after2 = guards(engine)
    check(("conversations", "conversation_assignment_constraint", "immutable_once_set", ["agent_id"],
           '{"allow_unset": false}', "BEFORE") in after2, "the write-once guard now guards agent_id")
    check(("invoices", "invoices_lock_version", "lock_version", ["lock_version"],
           '{"strict": false, "sqlstate": "40001"}', "BEFORE") in after2, "invoices got its guard")
    path, up, down = autogenerate(database, "nothing", stage=2)
    check(up == [] and down == [], "autogenerate after the upgrade proposes nothing: %r" % up)
    os.remove(path)

    path, up, down = autogenerate(database, "drop invoices", stage=3)
    check(up == ["op.drop_lock_version_guard('invoices', name='invoices_lock_version')",
                 "op.drop_table('invoices')"] and down[-1] ==
          "op.add_lock_version_guard('invoices', name='invoices_lock_version')",
          "a dropped table: its guard is dropped first, and re-added last by the downgrade: %r %r" % (up, down))
    os.remove(path)

    alembic(database, "downgrade", "-1", stage=2)
    check(guards(engine) == after1, "downgrade -1 gives back exactly the guards of the first revision")
    alembic(database, "upgrade", "head", stage=2)
    check(guards(engine) == after2, "upgrade again gives the same guards")
    alembic(database, "downgrade", "0001_raceguard", stage=2)
    with engine.connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")).scalar()
        tables = connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar()
    check(left == 0 and tables == 1, "downgrade to the first revision leaves no trigger and only alembic_version")
    alembic(database, "upgrade", "head", stage=2)

    # Offline (--sql): the same statements, as a DBA would review them.
    script = alembic(database, "upgrade", "0001_raceguard:head", "--sql", stage=2)
    check("CREATE EXTENSION IF NOT EXISTS raceguard" not in script and
          'CREATE TRIGGER "orders_lock_version" BEFORE INSERT OR UPDATE ON "orders" FOR EACH ROW EXECUTE FUNCTION '
          "raceguard.lock_version('version', 'strict=true')" in script and
          'DROP TRIGGER "conversation_assignment_constraint" ON "conversations"' in script,
          "upgrade --sql renders the guards' statements")

    # Where the database has no raceguard, autogenerate puts the extension first.
    sys.path.insert(0, PROJECT)
    os.environ["RACEGUARD_TEST_STAGE"] = "1"
    import models
    from alembic.autogenerate import produce_migrations
    from alembic.migration import MigrationContext
    plain = "%s_plain_admin" % PREFIX
    with admin.connect() as connection:
        connection.execute(text('CREATE DATABASE "%s" TEMPLATE template0' % plain))
    plain_engine = sa.create_engine(url(plain))
    engines.append(plain_engine)
    with plain_engine.connect() as connection:
        operations = produce_migrations(MigrationContext.configure(connection), models.metadata).upgrade_ops.ops
    names = [type(o).__name__ for o in operations]
    check(names[0] == "CreateRaceguardExtensionOp" and names[-5:] == [
        "AddImmutableOnceSetGuardOp", "AddTransitionGuardOp", "AddLockVersionGuardOp", "AddRunningBalanceGuardOp",
        "AddTransitionGuardOp"],
        "without raceguard in the database: create_raceguard_extension first, the guards last: %r" % names)
    from alembic import op
    from alembic.operations import Operations
    count = text("SELECT count(*) FROM pg_extension WHERE extname = 'raceguard'")
    with plain_engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        op.create_raceguard_extension()
        installed = connection.execute(count).scalar()
        op.drop_raceguard_extension()
        check((installed, connection.execute(count).scalar()) == (1, 0),
              "the role that installed raceguard (a superuser) drops it with drop_raceguard_extension")
    return database


def test_bad_operations(database):
    part["name"] = "bad inputs (operations)"
    for call, what in (
            (lambda: rg.LockVersionGuard("orders", sqlstate="23505"), "lock_version sqlstate other than 40001/23514"),
            (lambda: rg.LockVersionGuard("orders", strict="yes"), "strict must be a boolean"),
            (lambda: rg.LockVersionGuard("orders", column=""), "an empty column name"),
            (lambda: rg.LockVersionGuard("o" * 60), "a default trigger name PostgreSQL would truncate"),
            (lambda: rg.ImmutableOnceSetGuard("t", []), "immutable_once_set without columns"),
            (lambda: rg.ImmutableOnceSetGuard("t", ["a", "a"]), "a column named twice"),
            (lambda: rg.ImmutableOnceSetGuard("t", ["a=b"]), "a column name raceguard would read as an option"),
            (lambda: rg.ImmutableOnceSetGuard("t", ["a"], timing="INSTEAD OF"), "a timing the guard refuses"),
            (lambda: rg.RunningBalanceGuard("p", "amount", "balance", seq="seq", min_balance="NaN"),
             "a NaN min_balance"),
            (lambda: rg.RunningBalanceGuard("p", "amount", "amount", seq="seq"), "amount and balance the same"),
            (lambda: rg.RunningBalanceGuard("p", "amount", "balance", seq="seq", initial=1.5),
             "a float initial (inexact)"),
            (lambda: rg.lock_version_guard(sa.Table("x", sa.MetaData(), sa.Column("id", sa.Integer)), "version"),
             "a declared guard on a column the table lacks"),
            (lambda: rg.TransitionGuard("t", "status"), "a transition guard without start states or edges"),
            (lambda: rg.TransitionGuard("t", "status", edges={}, start=[]), "empty edges and start"),
            (lambda: rg.TransitionGuard("t", "status", edges=[("open", "closed")]), "edges that are not a dict"),
            (lambda: rg.TransitionGuard("t", "status", edges={"open": []}), "an edge to no state"),
            (lambda: rg.TransitionGuard("t", "status", start=[1.5]), "a float state"),
            (lambda: rg.TransitionGuard("t", "status", start=["a\x00b"]), "a state with a NUL"),
            (lambda: rg.TransitionGuard("t", "", start=["open"]), "a transition guard without a column"),
            (lambda: rg.transition_guard(sa.Table("y", sa.MetaData(), sa.Column("id", sa.Integer)), "status",
                                         start=["open"]), "a declared transition guard on a column the table lacks")):
        expect_error(call, ValueError, what)
    # A migration whose guard names a missing column: PostgreSQL refuses it
    # (42703 from raceguard's DDL check) and nothing of the revision stays.
    bad = os.path.join(PROJECT, "versions", "0099_bad.py")
    with open(bad, "w") as f:
        f.write('''"""bad"""
from alembic import op
import sqlalchemy as sa
import raceguard_sqlalchemy

revision = "0099_bad"
down_revision = "%s"


def upgrade():
    op.create_table("bad_table", sa.Column("id", sa.Integer, primary_key=True))
    op.add_lock_version_guard("orders", column="no_such_column", name="bad_guard")


def downgrade():
    pass
''' % _head(database))
    engine = engine_for(database)
    before = guards(engine)
    output = alembic(database, "upgrade", "head", stage=2, expect_failure=True)
    print("    " + "\n    ".join(output.splitlines()[-4:]))
    check("no_such_column" in output and ("42703" in output or "UndefinedColumn" in output),
          "the bad guard's migration fails with raceguard's 42703")
    with engine.connect() as connection:
        check(connection.execute(text("SELECT to_regclass('bad_table')")).scalar() is None and
              guards(engine) == before, "nothing of the failed revision was created")
    os.remove(bad)

    # What only the database knows: a misspelt column, a state the column's
    # type rejects, an edge twice. Each fails at CREATE TRIGGER with
    # raceguard's SQLSTATE and nothing is made.
    from alembic import op
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    for kwargs, sqlstate, what in (
            (dict(table_name="tickets", column="stauts", start=["open"]), "42703", "a misspelt column"),
            (dict(table_name="orders", column="total", start=[0], edges={0: "one"}), "22P02",
             "a word as a state of an integer column"),
            (dict(table_name="tickets", column="status", edges={"open": ["closed", "closed"]}), "22023",
             "the same edge twice")):
        try:
            with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
                op.add_transition_guard(name="t_bad", **kwargs)
            check(False, "%s: add_transition_guard raised nothing" % what)
        except sa.exc.DBAPIError as error:
            check(error.orig.pgcode == sqlstate and guards(engine) == before,
                  "%s: %s, nothing made (%s)" % (what, error.orig.pgcode, str(error.orig).splitlines()[0][:100]))

    # Quoting: odd names go through as written.
    odd = 'we"ird: tab\'le'
    with engine.begin() as connection:
        connection.execute(text('CREATE TABLE "we""ird\\: tab\'le" ("Vers""ion\\:" integer)'))
    guard = rg.LockVersionGuard(odd, column='Vers"ion:', name='odd "guard": \\ \'x\'')
    with engine.begin() as connection:
        connection.execute(sa.text(guard.create_sql().replace(":", "\\:")))
    found = [g for g in guards(engine) if g[1] == 'odd "guard": \\ \'x\'']
    check(len(found) == 1 and found[0][3] == ['Vers"ion:'], "odd table, column and trigger names are quoted exactly")
    with engine.begin() as connection:
        connection.execute(sa.text(guard.drop_sql().replace(":", "\\:")))
        connection.execute(text('DROP TABLE "we""ird\\: tab\'le"'))


def _head(database):
    with engine_for(database).connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


# ---------------------------------------------------------------------------
# The ORM: models mapped onto the migrated tables.

Base = declarative_base()


class Order(Base):
    __tablename__ = "orders"
    id = sa.Column(sa.Integer, primary_key=True)
    total = sa.Column(sa.Integer, nullable=False)
    version = sa.Column(sa.BigInteger, nullable=False)
    __mapper_args__ = {"version_id_col": version}  # SQLAlchemy sends v + 1 with WHERE version = v


class Conversation(Base):
    __tablename__ = "conversations"
    id = sa.Column(sa.Integer, primary_key=True)
    agent_id = sa.Column(sa.Integer)


class Payment(Base):
    __tablename__ = "payments"
    id = sa.Column(sa.Integer, primary_key=True)
    account_id = sa.Column(sa.Integer, nullable=False)
    amount = sa.Column(sa.Numeric(12, 2), nullable=False)
    balance = sa.Column(sa.Numeric(12, 2), server_default=sa.FetchedValue())
    entry_no = sa.Column(sa.Integer, server_default=sa.FetchedValue())
    __mapper_args__ = {"eager_defaults": True}


class Invoice(Base):
    __tablename__ = "invoices"
    id = sa.Column(sa.Integer, primary_key=True)
    customer = sa.Column(sa.Text, nullable=False)
    status = sa.Column(sa.String(20), nullable=False, server_default="pending")
    due_at = sa.Column(sa.Date, nullable=False)
    claim_token = sa.Column(sa.BigInteger)
    claimed_until = sa.Column(sa.DateTime(timezone=True))
    attempts = sa.Column(sa.Integer, nullable=False, server_default="0")
    lock_version = sa.Column(sa.Integer, server_default=sa.FetchedValue(), server_onupdate=sa.FetchedValue())
    __mapper_args__ = {"version_id_col": lock_version, "version_id_generator": False}


def race(workers):
    """Runs each function in its own thread, started together; returns
    what each returned or raised."""
    barrier = threading.Barrier(len(workers))
    results = [None] * len(workers)

    def run(n, work):
        try:
            results[n] = ("ok", work(barrier))
        except Exception as error:  # noqa: BLE001 - the caller inspects it
            results[n] = ("error", error)
    threads = [threading.Thread(target=run, args=(n, w)) for n, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_errors_and_races(database):
    part["name"] = "errors and races"
    engine = rg.map_errors(engine_for(database, pool_size=6))
    with Session(engine) as session:
        session.add_all([Order(id=1, total=0), Conversation(id=1)])
        session.commit()

    # SQLAlchemy's version_id_col and the strict guard on the same column.
    with Session(engine) as session:
        order = session.get(Order, 1)
        check(order.version == 1, "INSERT: the trigger made the version 1")
        order.total = 5
        session.commit()
        check(order.version == 2 and session.execute(text("SELECT version FROM orders")).scalar() == 2,
              "version_id_col sends v + 1, the trigger keeps it: object and row agree (2)")
        # A blind write is refused by strict=true, as raceguard's StaleDataError.
        try:
            session.execute(sa.update(Order).where(Order.id == 1).values(total=6))
            check(False, "a blind write through the session is refused")
        except rg.StaleDataError as error:
            check(isinstance(error, orm_exc.StaleDataError) and isinstance(error, sa.exc.OperationalError)
                  and (error.table, error.column, error.trigger) == ("orders", "version", "orders_lock_version"),
                  "a blind write is rg.StaleDataError (also orm StaleDataError and OperationalError), with "
                  "table, column and trigger")
        session.rollback()

    # version_id_generator=False on a guard without strict: SQLAlchemy puts
    # the version in WHERE only and reads the trigger's bump back.
    with Session(engine) as session:
        session.add(Invoice(id=99, customer="v", due_at=datetime.date(2026, 12, 1)))
        session.commit()
        invoice = session.get(Invoice, 99)
        first = invoice.lock_version
        invoice.status = "seen"
        session.commit()
        check((first, invoice.lock_version) == (1, 2), "version_id_generator=False: the trigger's bump is read back")
        with engine.begin() as connection:
            connection.execute(text("UPDATE invoices SET status = 'other' WHERE id = 99"))
        invoice.status = "stale"
        try:
            session.commit()
            check(False, "a stale object's save is refused")
        except orm_exc.StaleDataError as error:
            check(not isinstance(error, rg.StaleDataError), "a stale object's save: SQLAlchemy's own StaleDataError")
            session.rollback()
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM invoices"))

    rounds = random.randint(4, 8)
    increments = []
    orm_losers = core_losers = 0
    for round_ in range(rounds):
        amounts = [random.randint(1, 100), random.randint(1, 100)]
        core = round_ % 2 == 1  # odd rounds write through update() with the version read (the echo)

        def worker(amount):
            def work(barrier):
                with Session(engine) as session:
                    order = session.get(Order, 1)
                    seen = order.version
                    barrier.wait()
                    try:
                        if core:
                            session.execute(sa.update(Order).where(Order.id == 1).values(
                                total=Order.total + amount, version=seen).execution_options(
                                synchronize_session=False))
                        else:
                            order.total += amount
                        session.commit()
                        return "won"
                    except orm_exc.StaleDataError as error:
                        session.rollback()
                        kind = "raceguard" if isinstance(error, rg.StaleDataError) else "sqlalchemy"
                    # The loser re-reads and retries: nothing is lost.
                    order = session.get(Order, 1)
                    order.total += amount
                    session.commit()
                    return kind
            return work
        results = race([worker(a) for a in amounts])
        increments += amounts
        outcomes = sorted(r[1] if r[0] == "ok" else repr(r[1]) for r in results)
        if core:
            core_losers += outcomes == ["raceguard", "won"]
        else:
            orm_losers += outcomes == ["sqlalchemy", "won"]
        if outcomes not in (["raceguard", "won"], ["sqlalchemy", "won"]):
            print("    round %d: %r" % (round_, results))
    check(orm_losers == (rounds + 1) // 2,
          "ORM saves: in each of %d rounds one worker won and the other got SQLAlchemy's StaleDataError "
          "(its WHERE version = v found no row)" % ((rounds + 1) // 2))
    check(core_losers == rounds // 2,
          "echo writes: in each of %d rounds the loser got raceguard's StaleDataError (40001)" % (rounds // 2))
    with Session(engine) as session:
        order = session.get(Order, 1)
        check(order.total == 5 + sum(increments) and order.version == 2 + 2 * rounds,
              "nothing lost: total %d = 5 + every increment, version %d bumped once per write" % (
                  order.total, order.version))

    # Write-once: two agents take the same conversation; exactly one wins.
    rounds = random.randint(3, 6)
    violations = 0
    for round_ in range(rounds):
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM conversations"))
            connection.execute(text("INSERT INTO conversations (id) VALUES (1)"))

        def agent(agent_id):
            def work(barrier):
                with Session(engine) as session:
                    conversation = session.get(Conversation, 1)
                    barrier.wait()
                    conversation.agent_id = agent_id
                    session.commit()
                    return agent_id
            return work
        results = race([agent(10 + round_), agent(20 + round_)])
        errors = [r[1] for r in results if r[0] == "error"]
        winners = [r[1] for r in results if r[0] == "ok"]
        if (len(errors) == 1 and isinstance(errors[0], rg.GuardViolation)
                and isinstance(errors[0], sa.exc.IntegrityError)
                and (errors[0].table, errors[0].column, errors[0].trigger, errors[0].guard)
                == ("conversations", "agent_id", "conversation_assignment_constraint", "immutable_once_set")):
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT agent_id FROM conversations")).scalar()
            violations += stored == winners[0]
        else:
            print("    round %d: %r" % (round_, results))
    check(violations == rounds, "write-once: in each of %d rounds one agent won, the other got GuardViolation "
                                "(table, column, trigger, guard) and the winner's value stayed" % rounds)

    # The ledger: concurrent appends, overdrafts refused as GuardViolation.
    accounts = [1, 2]
    plans = [[(random.choice(accounts), Decimal(random.randint(-60, 100))) for _ in range(15)] for _ in range(3)]

    def appender(plan):
        def work(barrier):
            accepted, refused = [], 0
            barrier.wait()
            with Session(engine) as session:
                for account, amount in plan:
                    session.add(Payment(account_id=account, amount=amount))
                    try:
                        session.commit()
                        accepted.append((account, amount))
                    except rg.GuardViolation as error:
                        session.rollback()
                        assert (error.trigger, error.guard) == ("payments_running_balance", "running_balance"), error
                        refused += 1
            return accepted, refused
        return work
    results = race([appender(plan) for plan in plans])
    check(all(r[0] == "ok" for r in results), "appends raise nothing but GuardViolation for an overdraft: %r" % [
        r for r in results if r[0] != "ok"])
    accepted = [a for r in results if r[0] == "ok" for a in r[1][0]]
    refused = sum(r[1][1] for r in results if r[0] == "ok")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM payments")).scalar()
        problems = connection.execute(text("SELECT count(*) FROM raceguard.verify_running_balance('payments')")).scalar()
        lowest = connection.execute(text("SELECT min(balance) FROM payments")).scalar()
        finals = {account: balance for account, balance in connection.execute(text(
            "SELECT DISTINCT ON (account_id) account_id, balance FROM payments ORDER BY account_id, entry_no DESC"))}
    check(rows == len(accepted) and rows + refused == 45 and problems == 0 and (lowest is None or lowest >= 0),
          "ledger: %d appends kept, %d overdrafts refused, the chain verifies, no balance below 0" % (rows, refused))
    check(all(finals.get(a, Decimal(0)) == sum((m for acc, m in accepted if acc == a), Decimal(0)) for a in accounts),
          "each account's last balance is the sum of its kept appends")

    # Errors that are not a guard's pass through unchanged.
    with Session(engine) as session:
        try:
            session.execute(text("SELECT 1/0"))
            check(False, "a division by zero raises")
        except sa.exc.DataError as error:
            check(not isinstance(error, (rg.GuardViolation, rg.StaleDataError)), "other errors pass through")
        session.rollback()
        try:
            session.execute(text("ALTER TABLE orders ADD CONSTRAINT positive CHECK (total >= 0)"))
            session.execute(text("UPDATE orders SET total = -1, version = version"))
            check(False, "a CHECK constraint violation raises")
        except sa.exc.IntegrityError as error:
            check(not isinstance(error, rg.GuardViolation), "a plain CHECK constraint's 23514 is no GuardViolation")
        session.rollback()
        try:
            session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
            session.execute(text("DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '40001', "
                                 "TABLE = 'orders', MESSAGE = 'not a guard'; END$$"))
            check(False, "a 40001 raises")
        except sa.exc.OperationalError as error:
            check(not isinstance(error, rg.StaleDataError), "a 40001 naming no version column is no StaleDataError")
        session.rollback()

    # The operations on a table in another schema, odd names quoted; a
    # lock_version guard with sqlstate=23514 is a GuardViolation.
    from alembic import op
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        connection.execute(text('CREATE SCHEMA "Sales Q\\:1"'))
        op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text),
                        sa.Column("rev", sa.Integer), schema="Sales Q:1")
        op.add_lock_version_guard("notes", column="rev", sqlstate="23514", name="notes rev", schema="Sales Q:1")
        connection.execute(text('INSERT INTO "Sales Q\\:1".notes (id, body) VALUES (1, \'a\')'))
    engine.dispose()  # new connections read the guards, the new one included
    with Session(engine) as session:
        try:
            session.execute(text('UPDATE "Sales Q\\:1".notes SET body = \'b\', rev = 7'))
            check(False, "a stale write with sqlstate=23514 raises")
        except rg.GuardViolation as error:
            check((error.schema, error.table, error.column, error.trigger, error.guard) ==
                  ("Sales Q:1", "notes", "rev", "notes rev", "lock_version"),
                  "lock_version with sqlstate=23514 in another schema: GuardViolation naming schema, table, "
                  "column, trigger")
            session.rollback()
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        op.drop_lock_version_guard("notes", column="rev", sqlstate="23514", name="notes rev", schema="Sales Q:1")
        left = connection.execute(text("SELECT count(*) FROM pg_trigger WHERE tgname = 'notes rev'")).scalar()
        connection.execute(text('DROP SCHEMA "Sales Q\\:1" CASCADE'))
    check(left == 0, "drop_lock_version_guard removed it")

    # A guard added after the connection read the guards is recognized after
    # its first error (read again at the next checkout).
    with engine.begin() as connection:
        connection.execute(text("CREATE TRIGGER invoices_customer_once_set BEFORE UPDATE ON invoices FOR EACH ROW"
                                " EXECUTE FUNCTION raceguard.immutable_once_set('customer')"))
        connection.execute(text("INSERT INTO invoices (id, customer, due_at) VALUES (1, 'a', '2026-12-01')"))
    seen = []
    while "GuardViolation" not in seen and len(seen) < 10:
        with engine.connect() as connection:
            try:
                with connection.begin():
                    connection.execute(text("UPDATE invoices SET customer = 'b'"))
            except sa.exc.IntegrityError as error:
                seen.append(type(error).__name__)
    check(seen[-1] == "GuardViolation" and len(seen) <= 7,
          "a guard added later is mapped once a connection reads the guards again: %r" % seen)
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER invoices_customer_once_set ON invoices"))
        connection.execute(text("DELETE FROM invoices"))


def lock_waiters(table):
    """How many of the application role's statements UPDATE table while
    waiting for a lock, seen from the superuser's connection."""
    with admin.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = :role AND wait_event_type = 'Lock'"
            " AND query LIKE :update"), {"role": APP_ROLE, "update": "UPDATE %s %%" % table}).scalar()


def held_race(first, others, table):
    """Runs first(saved, commit) and then each of others in its own thread:
    first writes and sets `saved`, then holds its transaction open until
    `commit` is set; each other one starts once `saved` is set, and
    `commit` is set once all their UPDATEs wait for first's row lock. So
    the others' UPDATEs began before first's commit: the race the guards
    see, every round. Returns what each returned or raised."""
    saved, commit = threading.Event(), threading.Event()
    results = [None] * (1 + len(others))

    def run(n, work):
        try:
            results[n] = ("ok", work())
        except Exception as error:  # noqa: BLE001 - the caller inspects it
            results[n] = ("error", error)

    def later(work):
        def started():
            saved.wait(60)
            return work()
        return started
    threads = [threading.Thread(target=run, args=(0, lambda: first(saved, commit)))] + [
        threading.Thread(target=run, args=(n + 1, later(work))) for n, work in enumerate(others)]
    for thread in threads:
        thread.start()
    saved.wait(60)
    deadline = time.monotonic() + 60
    while lock_waiters(table) < len(others) and time.monotonic() < deadline:
        time.sleep(0.01)
    commit.set()
    for thread in threads:
        thread.join()
    return results


class Ticket(Base):
    __tablename__ = "tickets"
    id = sa.Column(sa.Integer, primary_key=True)
    status = sa.Column(sa.Text, nullable=False)
    agent = sa.Column(sa.Text)


def walk_chain(engine, model, states, what):
    """Moves one row from NULL through each state and back to NULL along
    the chain's edges, trying each skipped edge first: each refused with
    exactly its two states in the GuardViolation."""
    chain = [None] + states + [None]
    walked = refused = 0
    with Session(engine) as session:
        row = model(state=None)
        session.add(row)
        session.commit()
        for n in range(len(chain) - 1):
            if n + 2 < len(chain) and chain[n + 2] != chain[n + 1]:
                row.state = chain[n + 2]
                try:
                    session.commit()
                except rg.GuardViolation as error:
                    session.rollback()
                    refused += (error.refusal, error.from_state, error.to_state) == (
                        "undeclared_transition", chain[n], chain[n + 2])
            row.state = chain[n + 1]
            session.commit()
            walked += session.execute(sa.select(model.state).where(model.id == row.id)).scalar() == chain[n + 1]
    check(walked == len(chain) - 1 and refused == len(chain) - 2,
          "%s: %d states reached along their edges, %d skipped edges refused naming exactly their states" % (
              what, walked, refused))


def test_transitions(database):
    part["name"] = "transitions"
    engine = rg.map_errors(engine_for(database, pool_size=8))

    # An undeclared edge and an undeclared start: GuardViolation with the states.
    with Session(engine) as session:
        session.add(Ticket(id=1, status="open"))
        session.commit()
        ticket = session.get(Ticket, 1)
        ticket.status = "closed"
        try:
            session.commit()
            check(False, "open -> closed is refused")
        except rg.GuardViolation as error:
            session.rollback()
            check((error.table, error.column, error.trigger, error.guard, error.refusal, error.from_state,
                   error.to_state) == ("tickets", "status", "tickets_status_transition", "transition",
                                       "undeclared_transition", "open", "closed"),
                  "open -> closed: GuardViolation naming the column, trigger and both states")
        session.add(Ticket(id=2, status="closed"))
        try:
            session.commit()
            check(False, "a ticket starting closed is refused")
        except rg.GuardViolation as error:
            session.rollback()
            check((error.refusal, error.from_state, error.to_state) == ("undeclared_start", rg.UNKNOWN_STATE,
                                                                        "closed"),
                  "a start in closed: refusal 'undeclared_start', to_state 'closed', no from_state")
        check(session.get(Ticket, 1).status == "open" and session.get(Ticket, 2) is None, "nothing was written")

    # A role that may update the status but not read it: PostgreSQL leaves
    # the DETAIL out, and the GuardViolation still says which refusal, with
    # UNKNOWN_STATE (false, and not None, which is the NULL state).
    blind = PREFIX + "_blind"
    with admin.connect() as connection:
        connection.execute(text("CREATE ROLE \"%s\" LOGIN PASSWORD '%s'" % (blind, APP_PASSWORD)))
    admin_app = sa.create_engine(url(database), isolation_level="AUTOCOMMIT")
    engines.append(admin_app)
    with admin_app.connect() as connection:
        connection.execute(text('GRANT SELECT (id), UPDATE (status) ON tickets TO "%s"' % blind))
    blind_engine = rg.map_errors(sa.create_engine(url(database, blind, APP_PASSWORD)))
    engines.append(blind_engine)
    try:
        with blind_engine.begin() as connection:
            connection.execute(sa.update(Ticket.__table__).where(Ticket.__table__.c.id == 1).values(status="closed"))
        check(False, "open -> closed by a role that cannot read the status is refused")
    except rg.GuardViolation as error:
        check(error.orig.diag.message_detail is None and
              (error.refusal, error.from_state, error.to_state, error.column) ==
              ("undeclared_transition", rg.UNKNOWN_STATE, rg.UNKNOWN_STATE, "status") and not error.from_state,
              "without DETAIL: refusal 'undeclared_transition', both states UNKNOWN_STATE")
    blind_engine.dispose()
    with admin_app.connect() as connection:
        connection.execute(text('REVOKE ALL ON tickets FROM "%s"' % blind))
    with admin.connect() as connection:
        connection.execute(text('DROP ROLE "%s"' % blind))

    # The race: several agents take the same open ticket. The first one's
    # UPDATE holds the row until the others' UPDATEs wait for it; each of
    # them is re-aimed at the assigned row and refused as a duplicate.
    rounds = random.randint(3, 6)
    good = 0
    for round_ in range(rounds):
        workers = random.randint(2, 4)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM tickets"))
            connection.execute(text("INSERT INTO tickets (id, status) VALUES (1, 'open')"))

        def first(saved, commit):
            with Session(engine) as session:
                ticket = session.get(Ticket, 1)
                ticket.status, ticket.agent = "assigned", "agent 0"
                session.flush()
                saved.set()
                commit.wait(60)
                session.commit()
                return "agent 0"

        def other(n):
            def work():
                with Session(engine) as session:
                    ticket = session.get(Ticket, 1)
                    ticket.status, ticket.agent = "assigned", "agent %d" % n
                    try:
                        session.commit()
                        return "agent %d" % n
                    except rg.GuardViolation:
                        session.rollback()
                        raise
            return work
        # The others read the ticket after the first one's UPDATE, before its
        # commit: they see it open.
        results = held_race(first, [other(n) for n in range(1, workers)], "tickets")
        errors = [r[1] for r in results if r[0] == "error"]
        with engine.connect() as connection:
            stored = tuple(connection.execute(text("SELECT status, agent FROM tickets WHERE id = 1")).one())
        if (results[0] == ("ok", "agent 0") and len(errors) == workers - 1 and stored == ("assigned", "agent 0")
                and all(isinstance(e, rg.GuardViolation) and (e.refusal, e.from_state, e.to_state, e.column) ==
                        ("duplicate_transition", "open", "assigned", "status") for e in errors)):
            good += 1
        else:
            print("    round %d: %r, stored %r" % (round_, results, stored))
    check(good == rounds, "in each of %d rounds of 2-4 agents the first kept the ticket and every other got "
                          "GuardViolation 'duplicate_transition' from 'open' to 'assigned'" % rounds)

    # With version_id_col on the same table, a free race: every loser is
    # SQLAlchemy's StaleDataError (its WHERE version = v found no row).
    from alembic import op
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        op.create_table("bills", sa.Column("id", sa.Integer, primary_key=True), sa.Column("status", sa.Text),
                        sa.Column("version", sa.Integer, nullable=False))
        op.add_transition_guard("bills", "status", start=["pending"], edges={"pending": "sent", "sent": "paid"})

    class Bill(Base):
        __tablename__ = "bills"
        id = sa.Column(sa.Integer, primary_key=True)
        status = sa.Column(sa.Text)
        version = sa.Column(sa.Integer, nullable=False)
        __mapper_args__ = {"version_id_col": version}
    rounds = random.randint(3, 6)
    good = 0
    for round_ in range(rounds):
        workers = random.randint(2, 4)
        with Session(engine) as session:
            session.add(Bill(id=round_ + 1, status="pending"))
            session.commit()

        def sender(n, bill_id=round_ + 1):
            def work(barrier):
                with Session(engine) as session:
                    bill = session.get(Bill, bill_id)
                    barrier.wait()
                    bill.status = "sent"
                    try:
                        session.commit()
                        return n
                    except orm_exc.StaleDataError:
                        session.rollback()
                        raise
            return work
        results = race([sender(n) for n in range(workers)])
        errors = [r[1] for r in results if r[0] == "error"]
        if (len(errors) == workers - 1 and all(isinstance(e, orm_exc.StaleDataError)
                                               and not isinstance(e, rg.StaleDataError) for e in errors)):
            good += 1
        else:
            print("    round %d: %r" % (round_, results))
    check(good == rounds, "version_id_col: in each of %d free races one save won, every other got SQLAlchemy's "
                          "StaleDataError" % rounds)

    # Where the version read cannot be found (no primary key), the guard's
    # 40001 passes through: an OperationalError to retry, no StaleDataError.
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        op.create_table("loose", sa.Column("id", sa.Integer), sa.Column("status", sa.Text))
        op.add_transition_guard("loose", "status", start=["open"], edges={"open": "assigned"})
        connection.execute(text("INSERT INTO loose VALUES (1, 'open')"))

    def loose_first(saved, commit):
        with engine.connect() as connection:
            with connection.begin():
                connection.execute(text("UPDATE loose SET status = 'assigned' WHERE id = 1"))
                saved.set()
                commit.wait(60)
            return "first"

    def loose_second():
        with engine.connect() as connection:
            with connection.begin():
                connection.execute(text("UPDATE loose SET status = 'assigned' WHERE id = 1"))
            return "second"
    results = held_race(loose_first, [loose_second], "loose")
    error = results[1][1]
    check(results[0] == ("ok", "first") and isinstance(error, sa.exc.OperationalError)
          and not isinstance(error, rg.StaleDataError) and error.orig.pgcode == "40001",
          "no primary key: the re-aimed write is the guard's 40001, an OperationalError (%r)" % (results,))

    # Hostile states: the chain models.py declares (made by the autogenerated
    # revision), and a random one made with op.add_transition_guard.
    class Hostile(Base):
        __tablename__ = "hostile"
        id = sa.Column(sa.Integer, primary_key=True)
        state = sa.Column(sa.Text)
    walk_chain(engine, Hostile, models_states(), "the declared hostile chain")
    alphabet = [chr(c) for c in range(32, 0x250)] + ['"', ">", "=", "'", " ", "\t", "\n"] * 20
    states = list(dict.fromkeys("".join(random.choice(alphabet) for _ in range(random.randint(0, 8)))
                                for _ in range(random.randint(8, 16))))
    print("    random states: %r" % states)
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        op.create_table("hostile_random", sa.Column("id", sa.Integer, primary_key=True), sa.Column("state", sa.Text))
        op.add_transition_guard("hostile_random", "state", start=[None],
                                edges=dict(zip([None] + states, states + [None])))
    engine.dispose()  # connections made from now on read the new guard

    class HostileRandom(Base):
        __tablename__ = "hostile_random"
        id = sa.Column(sa.Integer, primary_key=True)
        state = sa.Column(sa.Text)
    walk_chain(engine, HostileRandom, states, "a random chain of %d states" % len(states))
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        op.drop_transition_guard("hostile_random", "state", start=[None],
                                 edges=dict(zip([None] + states, states + [None])))
        left = connection.execute(text("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'hostile_random'::regclass"
                                       " AND NOT tgisinternal")).scalar()
        for table in ("hostile_random", "loose", "bills"):
            op.drop_table(table)
    check(left == 0, "drop_transition_guard removed it")


def test_leases(database):
    part["name"] = "leases"
    engine = engine_for(database)
    hostile = ["O'Brien", "back\\slash", "'; DROP TABLE invoices; --", "quote\"d", "Zoë 🚀 ∑", "%(x)s %s",
               ":name $1 ?", "E'\\x41'", "'' ''", "\\'"]
    count = 120
    with Session(engine) as session:
        for n in range(1, count + 1):
            session.add(Invoice(id=n, customer=hostile[n % len(hostile)] if n <= 20 else "customer %d" % n,
                                due_at=datetime.date(2026, 12, 1) + datetime.timedelta(days=n % 40)))
        session.commit()

    # Hostile values select exactly what the same select selects.
    for value in hostile:
        selection = sa.select(Invoice).where(Invoice.customer == value, Invoice.status == "pending")
        with Session(engine) as session:
            expected = sorted(session.scalars(sa.select(Invoice.id).where(Invoice.customer == value)))
        leased = rg.lease(engine, selection, batch=50, lease="1 hour")
        released = rg.release(engine, leased)
        check(sorted(i.id for i in leased) == expected and released == len(expected) and len(expected) >= 2,
              "customer == %r leases exactly its %d rows" % (value, len(expected)))
    selection = sa.select(Invoice).where(Invoice.customer.in_(hostile[:4]) | Invoice.customer.like("%\\%%"))
    with Session(engine) as session:
        expected = sorted(session.scalars(selection.with_only_columns(Invoice.id)))
    leased = rg.lease(engine, selection.order_by(Invoice.due_at.desc(), Invoice.id), batch=100)
    check(sorted(i.id for i in leased) == expected and len(expected) > 4, "IN (...) and LIKE with hostile values")
    with Session(engine) as session:
        order = list(session.scalars(selection.with_only_columns(Invoice.id).order_by(Invoice.due_at.desc(),
                                                                                      Invoice.id)))
    check([i.id for i in leased] == order, "the select's ORDER BY is the lease order")
    rg.release(engine, leased)

    whole = rg.lease(engine, Invoice, batch=3)
    rows = rg.lease(engine, Invoice.__table__, batch=2)
    check(len(whole) == 3 and isinstance(whole.rows[0], Invoice) and len(rows) == 2 and rows.token != whole.token
          and not set(r.id for r in rows) & set(i.id for i in whole),
          "a mapped class or a Table leases any rows (objects, or rows), each call its own token")
    check(rg.release(engine, whole) == 3 and rg.release(engine, rows) == 2, "release() frees them")

    # The caller's transaction does not hold the lease.
    with Session(engine) as session:
        session.execute(text("SELECT 1"))
        taken = rg.lease(session, sa.select(Invoice).where(Invoice.id == 1), batch=1)
        session.rollback()
    with engine.connect() as connection:
        token = connection.execute(text("SELECT claim_token FROM invoices WHERE id = 1")).scalar()
    check(taken.token is not None and token == taken.token, "the lease stays after the caller's rollback")
    check(rg.extend(engine, taken, lease=datetime.timedelta(minutes=10)) == 1, "extend() moves the expiry")
    # Fencing: a lease lost to another worker completes nothing.
    with engine.begin() as connection:
        connection.execute(text("UPDATE invoices SET claimed_until = now() - interval '1 second' WHERE id = 1"))
    second = rg.lease(engine, sa.select(Invoice).where(Invoice.id == 1))
    check(rg.complete(engine, taken, status="sent") == 0 and rg.complete(engine, second, status="sent") == 1,
          "an expired and re-leased row: the first lease completes nothing, the second completes it")
    with Session(engine) as session:
        row = session.get(Invoice, 1)
        check((row.status, row.claim_token, row.claimed_until) == ("sent", None, None),
              "completion set the changes and cleared the lease")

    # Attempts: a row leased max_attempts times is a dead letter.
    pick = sa.select(Invoice).where(Invoice.id == 2)
    tries = []
    for _ in range(3):
        leased = rg.lease(engine, pick, attempts="attempts", max_attempts=2)
        tries.append(len(leased))
        rg.release(engine, leased, retry_after="0 seconds")
    check(tries == [1, 1, 0], "max_attempts=2: leased twice, then never again (%r)" % tries)

    # Several workers, each invoice completed exactly once.
    completed = []
    lock = threading.Lock()

    def worker(barrier):
        barrier.wait()
        mine = 0
        while True:
            leased = rg.lease(engine, sa.select(Invoice).where(Invoice.status == "pending", Invoice.id > 2),
                              batch=random.randint(1, 5), lease=datetime.timedelta(minutes=5))
            if not leased:
                return mine
            for invoice in leased:
                if rg.complete(engine, leased, invoice, status="sent") == 1:
                    with lock:
                        completed.append(invoice.id)
                    mine += 1
    results = race([worker] * 4)
    check(all(r[0] == "ok" for r in results), "the workers raised nothing: %r" % [r for r in results if r[0] != "ok"])
    check(sorted(completed) == list(range(3, count + 1)), "4 workers completed each of %d invoices exactly once "
                                                          "(%r)" % (count - 2, [r[1] for r in results]))
    with engine.connect() as connection:
        check(connection.execute(text("SELECT count(*) FROM invoices WHERE id > 2 AND (status <> 'sent'"
                                      " OR claim_token IS NOT NULL)")).scalar() == 0, "every invoice is sent and its lease cleared")

    # Bad inputs: clear errors, nothing leased.
    with engine.begin() as connection:
        connection.execute(text("UPDATE invoices SET status = 'pending', claim_token = NULL, claimed_until = NULL"))
    pending = sa.select(Invoice).where(Invoice.status == "pending")
    for call, kind, what in (
            (lambda: rg.lease(engine, pending, batch=0), ValueError, "batch=0"),
            (lambda: rg.lease(engine, pending, batch=True), ValueError, "batch=True"),
            (lambda: rg.lease(engine, pending, lease=datetime.timedelta(0)), ValueError, "a zero lease"),
            (lambda: rg.lease(engine, pending, max_attempts=3), ValueError, "max_attempts without attempts"),
            (lambda: rg.lease(engine, pending, attempts="tries"), ValueError, "an attempts column the table lacks"),
            (lambda: rg.lease(engine, pending.limit(3)), ValueError, "a select with LIMIT"),
            (lambda: rg.lease(engine, sa.select(Invoice, Order).where(Invoice.id == Order.id)), ValueError,
             "a select of two tables"),
            (lambda: rg.lease(engine, "invoices"), TypeError, "a string instead of a select"),
            (lambda: rg.lease(engine, pending, lease="-5 minutes"), sa.exc.DBAPIError,
             "a lease that ends in the past (PostgreSQL's error)"),
            (lambda: rg.complete(engine, None), TypeError, "complete() without a lease"),
            (lambda: rg.complete(engine, rg.lease(engine, pending), nope=1), ValueError,
             "complete() with a column the table lacks")):
        expect_error(call, kind, what)
    with engine.begin() as connection:
        leased_rows = connection.execute(text("SELECT count(*) FROM invoices WHERE claim_token IS NOT NULL")).scalar()
    check(leased_rows == 1, "only the one lease made for the last check exists (%d)" % leased_rows)


def test_docs():
    part["name"] = "docs/sqlalchemy.md"
    database = app_database("docs")
    with open(DOCS) as f:
        page = f.read()
    blocks = re.findall(r"^```python\n(.*?)^```", page, re.S | re.M)
    check(len(blocks) >= 5, "the page has its Python examples (%d)" % len(blocks))
    namespace = {"__name__": "docs_example"}
    os.environ["DATABASE_URL"] = url_text(database)
    for n, block in enumerate(blocks, 1):
        try:
            exec(compile(block, "docs/sqlalchemy.md example %d" % n, "exec"), namespace)
            check(True, "example %d runs" % n)
        except Exception:  # noqa: BLE001 - reported as a failure
            traceback.print_exc()
            check(False, "example %d runs" % n)
    for engine in namespace.values():
        if isinstance(engine, sa.engine.Engine):
            engine.dispose()


def main():
    try:
        test_template_and_roles()
        database = test_migrations()
        test_bad_operations(database)
        test_errors_and_races(database)
        test_transitions(database)
        test_leases(database)
        part["name"] = "docs/sqlalchemy.md"
        if check(os.path.exists(DOCS), "docs/sqlalchemy.md exists"):
            test_docs()
    except Exception:  # noqa: BLE001 - reported as a failure
        traceback.print_exc()
        check(False, "the part ran to its end")
    finally:
        for engine in engines + [admin, app_server]:
            engine.dispose()
    total = checks["passed"] + len(checks["failed"])
    print("\nraceguard-sqlalchemy: %d checks, %d passed, %d failed (SQLAlchemy %s, Alembic %s, seed %d)" % (
        total, checks["passed"], len(checks["failed"]), sa.__version__, __import__("alembic").__version__, SEED))
    for failure in checks["failed"]:
        print("  failed: " + failure)
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
