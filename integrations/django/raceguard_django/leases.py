"""Claims and leases over QuerySets (raceguard.claim, claim_lease,
release_lease, extend_lease; SPEC §4).

The QuerySet's filter is compiled by Django. raceguard's functions take the
filter as SQL text (they run it inside their own statement, under the
caller's search_path), so it cannot carry bound parameters: each parameter
is rendered as a literal by the database driver itself (psycopg's mogrify,
which quotes for the connection's settings and refuses what PostgreSQL
cannot hold, such as a NUL character). No value is pasted by this package.

lease(), release() and extend() run on a connection of their own in
autocommit, so a lease is taken (and given back) whatever the caller's
transaction does. complete() runs on the caller's connection, so the
completion commits or rolls back with the work it records.
"""
import datetime

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import F
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist

try:  # Django 4.2 and later: a WHERE that matches everything
    from django.core.exceptions import FullResultSet
except ImportError:  # Django 3.2 compiles it to an empty string instead
    class FullResultSet(Exception):
        pass

from ._sql import quote_ident
from .errors import map_errors, side_connection
from .exceptions import GuardDeclarationError, NotInTransactionError
from .fields import version_field


class LeaseColumns:
    __slots__ = ("token", "until")

    def __init__(self, token, until):
        self.token, self.until = token, until


def _field(model, name, option):
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        raise GuardDeclarationError("%s has no field %r (given as %s)" % (model._meta.label, name, option)) from None


def _render(raw_connection, sql, params):
    """sql with its parameters rendered as literals by the driver."""
    if not params:
        return sql.replace("%%", "%")
    for param in params:
        # Refused the same way whichever driver renders it (psycopg2 raises
        # ValueError, psycopg 3 DataError).
        if isinstance(param, str) and "\x00" in param:
            raise ValueError("a PostgreSQL string cannot hold a NUL character: %r" % (param,))
    try:
        import psycopg  # psycopg 3 (Django 4.2 and later)
    except ImportError:
        psycopg = None
    if psycopg is not None and isinstance(raw_connection, psycopg.Connection):
        text = psycopg.ClientCursor(raw_connection).mogrify(sql, params)
    else:
        text = raw_connection.cursor().mogrify(sql, params)
    # Django sets the client encoding to UTF8.
    return text.decode("utf-8") if isinstance(text, bytes) else text


def _filter_and_order(queryset, wrapper):
    """(filter text, order_by text or None) for the QuerySet, or None when it
    can match nothing."""
    query = queryset.query
    if query.is_sliced:
        raise ValueError("lease() and claim() take the batch size, not a sliced QuerySet")
    if getattr(query, "combinator", None):
        raise ValueError("lease() and claim() cannot use a union, intersection or difference")
    model = queryset.model
    compiler = query.get_compiler(connection=wrapper)
    try:
        if len(query.alias_map) <= 1:
            # The WHERE alone: it names the table as "<db_table>"."<column>",
            # which is how raceguard's statement exposes it.
            try:
                sql, params = compiler.compile(query.where)
            except FullResultSet:
                sql, params = "", []
        else:
            # A filter across relations: the primary keys it selects.
            inner = queryset.order_by().values("pk")
            inner_sql, params = inner.query.get_compiler(connection=wrapper).as_sql()
            sql = "%s IN (%s)" % (quote_ident(model._meta.pk.column), inner_sql)
    except EmptyResultSet:
        return None
    wrapper.ensure_connection()
    filter_text = _render(wrapper.connection, sql, list(params)) if sql else "true"
    order = []
    for item in query.order_by:
        if not isinstance(item, str) or item == "?":
            raise ValueError("lease() and claim() order by field names only ('due_at', '-due_at'), not %r" % (item,))
        descending = item.startswith("-")
        name = item.lstrip("-")
        column = model._meta.pk.column if name == "pk" else _field(model, name, "order_by").column
        order.append("%s%s" % (quote_ident(column), " DESC" if descending else ""))
    return filter_text, (", ".join(order) or None)


def _columns(model):
    return list(model._meta.concrete_fields)


def _instances(model, using, wrapper, cursor_rows):
    fields = _columns(model)
    converters = [
        (index, field.get_db_converters(wrapper), field)
        for index, field in enumerate(fields)
        if field.get_db_converters(wrapper)
    ]
    instances = []
    for row in cursor_rows:
        row = list(row)
        for index, functions, field in converters:
            for convert in functions:
                row[index] = convert(row[index], field.get_col(model._meta.db_table), wrapper)
        instances.append(model.from_db(using, [field.attname for field in fields], row))
    return instances


def _call_returning_rows(wrapper, model, using, function, arguments_sql, params):
    """The model instances raceguard.<function>(NULL::<table>, <arguments>)
    returns, its columns selected in the model's field order."""
    select_list = ", ".join(quote_ident(field.column) for field in _columns(model))
    with wrapper.cursor() as cursor:
        cursor.execute(
            "SELECT %s FROM raceguard.%s(NULL::%s, %s)"
            % (select_list, function, quote_ident(model._meta.db_table), arguments_sql),
            params,
        )
        rows = cursor.fetchall()
    return _instances(model, using, wrapper, rows)


def _write_database(queryset):
    # Leasing and claiming write: the database the QuerySet was pinned to
    # with using(), else the router's database for writes (QuerySet.db is
    # the one for reads).
    return queryset._db or router.db_for_write(queryset.model)


def _interval(value, option):
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, str) and value:
        return value
    raise ValueError("%s must be a datetime.timedelta or an interval string such as '5 minutes', not %r" % (option, value))


def lease(queryset, batch=1, lease=datetime.timedelta(minutes=5), attempts=None, max_attempts=None,
          token_field="claim_token", until_field="claimed_until"):
    """Leases up to `batch` rows of the QuerySet that nobody holds, on a
    connection of its own in autocommit, and returns them as model
    instances. Each holds the lease's token in its token field. `attempts`
    names an integer field counting the leases of a row; a row whose count
    reached `max_attempts` is never leased again (a dead letter)."""
    model = queryset.model
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError("batch must be a positive int, not %r" % (batch,))
    lease = _interval(lease, "lease")
    if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)):
        raise ValueError("max_attempts must be an int, not %r" % (max_attempts,))
    if max_attempts is not None and attempts is None:
        raise ValueError("max_attempts needs attempts=, the field that counts a row's leases")
    columns = LeaseColumns(_field(model, token_field, "token_field").column, _field(model, until_field, "until_field").column)
    attempts_column = None if attempts is None else _field(model, attempts, "attempts").column
    using = _write_database(queryset)
    side = side_connection(using)
    try:
        filtered = _filter_and_order(queryset, side)
        if filtered is None:
            return []
        filter_text, order_by = filtered
        instances = _call_returning_rows(
            side, model, using, "claim_lease", "%s, %s, %s::interval, %s, %s, %s, %s, %s",
            [filter_text, batch, lease, order_by, columns.token, columns.until, attempts_column, max_attempts],
        )
    finally:
        side.close()
    for instance in instances:
        instance._raceguard_lease = (token_field, until_field)
    return instances


def _lease_fields(obj, token_field, until_field):
    # The columns the object was leased with, unless named here.
    leased_token, leased_until = getattr(obj, "_raceguard_lease", ("claim_token", "claimed_until"))
    token_field = token_field or leased_token
    until_field = until_field or leased_until
    model = type(obj)
    token = _field(model, token_field, "token_field")
    until = _field(model, until_field, "until_field")
    value = getattr(obj, token.attname)
    if value is None:
        raise ValueError("%s %r holds no lease (its %s is None)" % (model._meta.label, obj.pk, token_field))
    return token, until, value


def complete(obj, token_field=None, until_field=None, **changes):
    """Completes a leased object, fenced by its token: sets `changes`, clears
    the lease, and returns True; returns False (and changes nothing) when
    the lease was lost to another worker. Runs on the caller's connection
    (inside its transaction, if any); bumps a VersionField as a relative
    increment, which raceguard.lock_version accepts."""
    token, until, value = _lease_fields(obj, token_field, until_field)
    model = type(obj)
    using = obj._state.db or DEFAULT_DB_ALIAS
    updates = dict(changes)
    updates[token.name] = None
    updates[until.name] = None
    version = version_field(model)
    if version is not None and version.name not in updates:
        updates[version.name] = F(version.name) + 1
    with map_errors(using, model):
        updated = model._base_manager.using(using).filter(pk=obj.pk, **{token.attname: value}).update(**updates)
    if not updated:
        return False
    for name, change in changes.items():
        setattr(obj, name, change)
    setattr(obj, token.attname, None)
    setattr(obj, until.attname, None)
    if version is not None and version.name not in changes:
        obj.refresh_from_db(fields=[version.attname])
    return True


def _lease_function(obj, function, token_field, until_field, extra_sql, extra_params):
    token, until, value = _lease_fields(obj, token_field, until_field)
    model = type(obj)
    side = side_connection(obj._state.db or DEFAULT_DB_ALIAS)
    try:
        with side.cursor() as cursor:
            cursor.execute(
                "SELECT raceguard.%s(NULL::%s, %%s%s, token_column => %%s, until_column => %%s)"
                % (function, quote_ident(model._meta.db_table), extra_sql),
                [value] + extra_params + [token.column, until.column],
            )
            return cursor.fetchone()[0]
    finally:
        side.close()


def release(obj, retry_after=None, token_field=None, until_field=None):
    """Gives a lease back (on a connection of its own): the row is claimable
    at once, or after `retry_after`. Returns how many rows it released (0
    when the lease was already lost). The object keeps its token."""
    if retry_after is None:
        return _lease_function(obj, "release_lease", token_field, until_field, "", [])
    return _lease_function(obj, "release_lease", token_field, until_field, ", retry_after => %s::interval",
                           [_interval(retry_after, "retry_after")])


def extend(obj, lease, token_field=None, until_field=None):
    """Moves the lease's expiry to now + `lease` (on a connection of its
    own). Returns how many rows it extended (0 when the lease was lost)."""
    return _lease_function(obj, "extend_lease", token_field, until_field, ", %s::interval", [_interval(lease, "lease")])


def claim(queryset, batch=1):
    """raceguard.claim() over the QuerySet: locks and returns up to `batch`
    rows that no other transaction holds (FOR UPDATE SKIP LOCKED). The locks
    last until the transaction ends, so it refuses to run outside
    transaction.atomic()."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError("batch must be a positive int, not %r" % (batch,))
    using = _write_database(queryset)
    wrapper = connections[using]
    if not wrapper.in_atomic_block:
        raise NotInTransactionError(
            "claim() outside transaction.atomic() would release its row locks at once: "
            "wrap the claim and the work in one transaction, or use lease()"
        )
    model = queryset.model
    filtered = _filter_and_order(queryset, wrapper)
    if filtered is None:
        return []
    filter_text, order_by = filtered
    return _call_returning_rows(wrapper, model, using, "claim", "%s, %s, %s", [filter_text, batch, order_by])
