"""A guard's errors as exceptions SQLAlchemy users already catch.

    raceguard_sqlalchemy.map_errors(engine)

- a lock_version guard's 40001 (stale write) becomes StaleDataError, a
  subclass of both sqlalchemy.orm.exc.StaleDataError (what SQLAlchemy's own
  version_id_col raises when its WHERE finds no row: one except clause
  catches both ways a stale write is refused) and
  sqlalchemy.exc.OperationalError (what it was: code that retries
  serialization failures keeps working);
- a guard's 23514 becomes GuardViolation, a subclass of
  sqlalchemy.exc.IntegrityError carrying the table, column, trigger and
  guard; for a transition guard also what it refused (refusal) and the
  states (from_state, to_state), read from the error's DETAIL.

A guard is recognized by the error's fields (table, column, CONSTRAINT =
the trigger's name) matched against raceguard.guards, read once per
database connection (and again after an error names a trigger it did not
know yet). Every other error passes through unchanged.
"""
import re

from sqlalchemy import event, exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

CACHE_KEY = "raceguard_guards"
STALE_KEY = "raceguard_guards_stale"

GUARDS_SQL = """
SELECT n.nspname, c.relname, g.trigger_name, g.guard, g.columns::text[]
  FROM raceguard.guards g
  JOIN pg_catalog.pg_class c ON c.oid = g.table_name
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
"""


# The transition guard's DETAIL shows each state as a SQL literal ('it''s')
# or NULL, so any text reads back exactly; without DETAIL (a role that may
# not read the column) the message still says which refusal it was.
_LITERAL = r"('(?:[^']|'')*'|NULL)"
TRANSITION_REFUSALS = (
    ("undeclared_transition", "undeclared transition ",
     re.compile(r"The update changes it from %s to %s, which trigger " % (_LITERAL, _LITERAL))),
    ("duplicate_transition", "duplicate transition ",
     re.compile(r"Another transaction changed it from %s to %s after this statement began" % (_LITERAL, _LITERAL))),
    ("undeclared_start", "undeclared start state ",
     re.compile(r"The new row's state is %s; trigger " % _LITERAL)),
)

def _state(literal):
    """The state a literal of the DETAIL shows: None for NULL."""
    return None if literal == "NULL" else literal[1:-1].replace("''", "'")


def transition_refusal(orig):
    """(refusal, from_state, to_state) of a transition guard's error; a
    state that the error does not show is UNKNOWN_STATE, and so is
    from_state of an undeclared start (an INSERT has none)."""
    diag = getattr(orig, "diag", None)
    detail = (getattr(diag, "message_detail", None) or "") if diag is not None else ""
    message = (getattr(diag, "message_primary", None) or "") if diag is not None else ""
    for refusal, prefix, pattern in TRANSITION_REFUSALS:
        found = pattern.match(detail)
        if found is None and not message.startswith(prefix):
            continue
        states = [_state(s) for s in found.groups()] if found else []
        if refusal == "undeclared_start":
            return refusal, UNKNOWN_STATE, states[0] if states else UNKNOWN_STATE
        return (refusal,) + (tuple(states) if states else (UNKNOWN_STATE, UNKNOWN_STATE))
    return None, UNKNOWN_STATE, UNKNOWN_STATE


class _UnknownState:
    def __repr__(self):
        return "UNKNOWN_STATE"

    def __bool__(self):
        return False


UNKNOWN_STATE = _UnknownState()


class _GuardError:
    def _describe(self, guard, schema, table, column, trigger):
        self.guard = guard
        self.schema = schema
        self.table = table
        self.column = column
        self.trigger = trigger
        self.refusal = None
        self.from_state = self.to_state = UNKNOWN_STATE


class StaleDataError(orm_exc.StaleDataError, sa_exc.OperationalError, _GuardError):
    """A lock_version guard refused a stale (or, with strict=true, blind)
    write. Attributes: table, schema, column (the version column), trigger,
    guard ('lock_version'), orig (the driver's error). Re-read the row and
    retry."""

    def __init__(self, wrapped, schema, table, column, trigger):
        sa_exc.OperationalError.__init__(self, wrapped.statement, wrapped.params, wrapped.orig,
                                         hide_parameters=wrapped.hide_parameters,
                                         connection_invalidated=wrapped.connection_invalidated)
        self._describe("lock_version", schema, table, column, trigger)


class GuardViolation(sa_exc.IntegrityError, _GuardError):
    """A guard refused a row with 23514: a write-once column changed, a
    running balance would cross its minimum or a ledger row was changed,
    (with sqlstate=23514) a stale write, or a status moved along an edge
    its transition guard does not declare. Attributes: table, schema,
    column (None where the error names none), trigger (= the CONSTRAINT
    name), guard, orig; for a transition guard refusal
    ('undeclared_transition', 'duplicate_transition' or 'undeclared_start'),
    from_state and to_state (None is the NULL state; UNKNOWN_STATE where the
    error does not show it: the start of a row, or a role that may not
    read the column)."""

    def __init__(self, wrapped, guard, schema, table, column, trigger):
        sa_exc.IntegrityError.__init__(self, wrapped.statement, wrapped.params, wrapped.orig,
                                       hide_parameters=wrapped.hide_parameters,
                                       connection_invalidated=wrapped.connection_invalidated)
        self._describe(guard, schema, table, column, trigger)
        if guard == "transition":
            self.refusal, self.from_state, self.to_state = transition_refusal(wrapped.orig)


def map_errors(engine):
    """Maps the guards' errors of every connection of `engine` (an Engine,
    or the Engine class for all of them)."""
    if not event.contains(engine, "connect", _remember_guards):
        event.listen(engine, "connect", _remember_guards)
        event.listen(engine, "checkout", _refresh_stale_guards)
        event.listen(engine, "handle_error", _map_error)
    return engine


def read_guards(dbapi_connection):
    """{(schema, table, trigger): (guard, columns)} for the guards this
    connection's role may see; empty where raceguard is not installed."""
    autocommit = getattr(dbapi_connection, "autocommit", False)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT pg_catalog.to_regclass('raceguard.guards') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return {}
        cursor.execute(GUARDS_SQL)
        return {(schema, table, trigger): (guard, list(columns))
                for schema, table, trigger, guard, columns in cursor.fetchall()}
    finally:
        cursor.close()
        if not autocommit:
            dbapi_connection.rollback()  # leave no transaction open


def _remember_guards(dbapi_connection, connection_record):
    connection_record.info[CACHE_KEY] = read_guards(dbapi_connection)
    connection_record.info.pop(STALE_KEY, None)


def _refresh_stale_guards(dbapi_connection, connection_record, connection_proxy):
    if connection_record.info.get(STALE_KEY):
        _remember_guards(dbapi_connection, connection_record)


def _error_fields(orig):
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    if diag is None:
        return code, None, None, None, None
    return code, diag.schema_name, diag.table_name, diag.column_name, diag.constraint_name


def _map_error(context):
    wrapped = context.sqlalchemy_exception
    if wrapped is None or context.connection is None:
        return None
    code, schema, table, column, constraint = _error_fields(context.original_exception)
    if code not in ("40001", "23514") or table is None:
        return None
    info = context.connection.connection.info
    guards = info.get(CACHE_KEY, {})
    if code == "23514":
        if constraint is None:
            return None
        found = guards.get((schema, table, constraint))
        if found is None:
            info[STALE_KEY] = True  # maybe a guard added since: read them again at the next checkout
            return None
        raise GuardViolation(wrapped, found[0], schema, table, column, constraint) from context.original_exception
    # 40001: a lock_version guard's carries the table and its version column
    # (and no CONSTRAINT); PostgreSQL's own serialization failures carry
    # neither, a ledger's at REPEATABLE READ names no version column.
    for (guard_schema, guard_table, trigger), (guard, columns) in guards.items():
        if (guard == "lock_version" and guard_schema == schema and guard_table == table
                and column is not None and columns == [column]):
            raise StaleDataError(wrapped, schema, table, column, trigger) from context.original_exception
    if constraint is None and column is not None:
        info[STALE_KEY] = True
    return None
