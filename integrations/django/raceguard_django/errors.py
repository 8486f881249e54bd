"""Mapping of raceguard's errors to Django's own: a guard's 40001 (a stale
write) becomes StaleObjectError, a guard's 23514 (a write-once column
overwritten, a ledger row changed, an overdraft, a status moved along an
undeclared edge or a duplicate transition) a ValidationError on the
guarded field. Errors that are not a guard's pass through unchanged."""
import contextlib
import re

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

from .exceptions import StaleObjectError

GUARDS_QUERY = """
SELECT n.nspname, c.relname, g.trigger_name, g.guard, g.columns::text[]
  FROM raceguard.guards g
  JOIN pg_catalog.pg_class c ON c.oid = g.table_name
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
"""


def side_connection(using=DEFAULT_DB_ALIAS):
    """A new connection with the same settings as `using`, in autocommit:
    for reads that must not depend on (or be blocked by) the caller's
    transaction, which after an error is aborted. Close it after use."""
    wrapper = connections[using]
    return wrapper.__class__(wrapper.settings_dict, using)


class Guard:
    __slots__ = ("schema", "table", "trigger", "guard", "columns")

    def __init__(self, schema, table, trigger, guard, columns):
        self.schema, self.table, self.trigger, self.guard, self.columns = schema, table, trigger, guard, list(columns)


def _read_guards(using):
    side = side_connection(using)
    try:
        with side.cursor() as cursor:
            cursor.execute(GUARDS_QUERY)
            return {(row[0], row[1], row[2]): Guard(*row) for row in cursor.fetchall()}
    finally:
        side.close()


def guards(using=DEFAULT_DB_ALIAS, refresh=False):
    """raceguard.guards as {(schema, table, trigger): Guard}, read once per
    connection (per thread, as Django's connections are) and cached on it."""
    wrapper = connections[using]
    cached = getattr(wrapper, "_raceguard_guards", None)
    if cached is None or refresh:
        cached = _read_guards(using)
        wrapper._raceguard_guards = cached
    return cached


def _driver_error(error):
    """The psycopg error under a Django DatabaseError (or the error itself)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return cause


def _sqlstate(cause):
    return getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)


def _find_guard(using, schema, table, trigger):
    key = (schema, table, trigger)
    found = guards(using).get(key)
    if found is None:
        # A guard created after the cache was filled (a migration run in
        # this process): read once more.
        found = guards(using, refresh=True).get(key)
    return found


def _table_guards(using, schema, table, kind):
    for attempt in (False, True):
        matches = [g for (s, t, _), g in guards(using, refresh=attempt).items() if (s, t) == (schema, table) and g.guard == kind]
        if matches:
            return matches
    return []


def _model_for_table(table, model=None):
    if model is not None and model._meta.db_table == table:
        return model
    for candidate in apps.get_models():
        if candidate._meta.db_table == table:
            return candidate
    return None


def _field_name(model, column):
    if model is not None:
        for field in model._meta.concrete_fields:
            if field.column == column:
                return field.name
    return column


def translate(error, using=DEFAULT_DB_ALIAS, model=None):
    """The Django error a raceguard guard's database error stands for, or
    None when `error` is not a guard's."""
    if not isinstance(error, DatabaseError) or isinstance(error, StaleObjectError):
        return None  # not a database error, or already mapped (nested map_errors)
    cause = _driver_error(error)
    code = _sqlstate(cause)
    diag = getattr(cause, "diag", None)
    if code not in ("40001", "23514") or diag is None:
        return None
    schema, table = diag.schema_name, diag.table_name
    if not table:
        # PostgreSQL's own serialization failures name no table.
        return None
    message = getattr(diag, "message_primary", None) or str(cause)
    table_model = _model_for_table(table, model)
    if code == "40001":
        if not _table_guards(using, schema, table, "lock_version"):
            return None
        return StaleObjectError(message, model=table_model)
    guard = _find_guard(using, schema, table, diag.constraint_name)
    if guard is None:
        return None
    if guard.guard == "lock_version":  # sqlstate=23514
        return StaleObjectError(message, model=table_model)
    column = diag.column_name or (guard.columns[1] if guard.guard == "running_balance" else guard.columns[0])
    field = _field_name(table_model, column)
    if guard.guard == "transition":
        return _transition_error(field, message, getattr(diag, "message_detail", None), guard.trigger)
    # ValidationError formats its message with its params: a "%" from a
    # table or column name must stay a "%".
    return ValidationError(
        {field: [ValidationError(message.replace("%", "%%"), code=guard.guard, params={"constraint": guard.trigger})]}
    )


# A transition error's DETAIL shows each state as a quoted literal ('' for
# a ' inside) or NULL: "... from 'open' to 'assigned' ..." for an edge or a
# duplicate, "The new row's state is 'closed'; ..." for a start.
STATE = r"('(?:[^']|'')*'|NULL)"
EDGE_DETAIL = re.compile(r"from %s to %s" % (STATE, STATE), re.S)
START_DETAIL = re.compile(r"^The new row's state is %s; " % STATE, re.S)
TRANSITION_CODES = (
    ("undeclared transition", "transition"),
    ("duplicate transition", "duplicate_transition"),
    ("undeclared start state", "start_state"),
)


def _state(shown):
    return None if shown == "NULL" else shown[1:-1].replace("''", "'")


def _transition_error(field, message, detail, trigger):
    """A ValidationError on the status field: code "transition" (an edge not
    declared), "duplicate_transition" (another transaction made this very
    transition after the statement began) or "start_state"; params "from"
    and "to" (None for NULL) where the DETAIL shows them (it does not to a
    role that may not read the column)."""
    code = next((code for prefix, code in TRANSITION_CODES if message.startswith(prefix)), "transition")
    params = {"constraint": trigger}
    match = EDGE_DETAIL.search(detail or "") if code != "start_state" else START_DETAIL.search(detail or "")
    if match and code == "start_state":
        params["from"], params["to"] = None, _state(match.group(1))
    elif match:
        params["from"], params["to"] = _state(match.group(1)), _state(match.group(2))
    text = message + (": " + detail if detail else "")
    return ValidationError({field: [ValidationError(text.replace("%", "%%"), code=code, params=params)]})


class map_errors(contextlib.ContextDecorator):
    """Context manager and decorator: inside it, a guard's 40001 raises
    StaleObjectError and a guard's 23514 a ValidationError on the guarded
    field (the database error is its __cause__). Other errors pass through
    unchanged.

        with map_errors():
            conversation.save()
    """

    def __init__(self, using=DEFAULT_DB_ALIAS, model=None):
        self.using = using
        self.model = model

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        mapped = translate(exc, self.using, self.model)
        if mapped is None:
            return False
        raise mapped from exc

