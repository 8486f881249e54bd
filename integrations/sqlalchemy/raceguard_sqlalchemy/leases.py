"""Leases over SQLAlchemy selects: raceguard.claim_lease, release_lease and
extend_lease, each on a connection of its own in autocommit, so a lease
outlives the call and does not depend on the caller's transaction.

    batch = lease(engine, select(Invoice).where(Invoice.status == "pending")
                                         .order_by(Invoice.due_at),
                  batch=10, lease=timedelta(minutes=5))
    for invoice in batch:
        ...                                   # the slow work, no transaction open
        complete(engine, batch, invoice, status="sent")

The select's WHERE and ORDER BY become claim_lease's filter and order_by
texts. SQLAlchemy compiles them; every value of a bound parameter is sent
as a parameter and quoted by the server (quote_nullable) into the text, so
no value is ever pasted into SQL by the client.
"""
import datetime
import re

from sqlalchemy import and_, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.schema import Table
from sqlalchemy.sql import Select

from .guards import quote_ident

_MARK = re.compile("\x00(\\d+)\x00")


class Lease:
    """The rows one claim_lease call leased, with their token (None when
    it leased nothing). Iterating gives the rows: mapped objects (detached)
    when the select named an entity, else Row objects."""

    def __init__(self, table, entity, token, rows, token_column, until_column):
        self.table = table
        self.entity = entity
        self.token = token
        self.rows = rows
        self.token_column = token_column
        self.until_column = until_column

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __bool__(self):
        return bool(self.rows)

    def __repr__(self):
        return "<Lease of %d %s row(s), token %r>" % (len(self.rows), self.table.name, self.token)


def _engine(bind):
    if isinstance(bind, Engine):
        return bind
    if isinstance(bind, Connection):
        return bind.engine
    if isinstance(bind, Session):
        engine = bind.get_bind()
        return engine.engine if isinstance(engine, Connection) else engine
    raise TypeError("expected a Session, an Engine or a Connection, not %r" % (bind,))


def _target(statement):
    """(table, mapped class or None, where clause, order by clauses)."""
    entity = getattr(statement, "__mapper__", None) and statement
    if entity is not None:
        return entity.__table__, entity, None, ()
    if isinstance(statement, Table):
        return statement, None, None, ()
    if not isinstance(statement, Select):
        raise TypeError("lease() takes a select() of one table, a Table or a mapped class, not %r" % (statement,))
    for clause, what in ((statement._limit_clause, "LIMIT (use batch=)"), (statement._offset_clause, "OFFSET"),
                         (statement._group_by_clauses, "GROUP BY"), (statement._having_criteria, "HAVING"),
                         (statement._distinct, "DISTINCT"), (statement._for_update_arg, "FOR UPDATE")):
        if clause is not None and clause is not False and clause != () and clause != []:
            raise ValueError("lease() cannot honour the select's %s: claim_lease takes a filter and an order" % what)
    froms = statement.get_final_froms()
    if len(froms) != 1 or not isinstance(froms[0], Table):
        raise ValueError("lease() needs a select from exactly one table, not from %r" % (froms,))
    entity = None
    descriptions = statement.column_descriptions
    if len(descriptions) == 1 and getattr(descriptions[0].get("type"), "__mapper__", None) is not None \
            and descriptions[0].get("entity") is descriptions[0].get("type"):
        entity = descriptions[0]["type"]
    return froms[0], entity, statement.whereclause, tuple(statement._order_by_clauses)


class _Compiler(postgresql.dialect.statement_compiler):
    """Renders each bound value as a numbered mark, keeping the value aside."""

    def __init__(self, *args, **kwargs):
        self.raceguard_values = []
        super().__init__(*args, **kwargs)

    def render_literal_value(self, value, type_):
        processor = type_.bind_processor(self.dialect)
        self.raceguard_values.append(processor(value) if processor is not None else value)
        return "\x00%d\x00" % (len(self.raceguard_values) - 1)


_DIALECT = postgresql.dialect(paramstyle="named")


def _server_quoted(clause, params, prefix):
    """SQL for the server to build the text of `clause`, its values quoted
    by the server: concat('literal sql', quote_nullable(:value), ...)."""
    compiler = _Compiler(_DIALECT, clause, compile_kwargs={"literal_binds": True})
    parts = []
    position = 0
    for match in _MARK.finditer(compiler.string):
        parts.append(_param(params, prefix, compiler.string[position:match.start()]))
        value = compiler.raceguard_values[int(match.group(1))]
        parts.append("pg_catalog.quote_nullable(%s)" % _param(params, prefix, value))
        position = match.end()
    parts.append(_param(params, prefix, compiler.string[position:]))
    return "pg_catalog.concat(%s)" % ", ".join(parts)


def _param(params, prefix, value):
    name = "%s_%d" % (prefix, len(params))
    params[name] = value
    return ":" + name


def _table_sql(table):
    name = quote_ident(table.name)
    if table.schema:
        name = quote_ident(table.schema) + "." + name
    # A colon in a quoted name must not read as a bind parameter.
    return name.replace(":", "\\:")


def _interval(value, what):
    if isinstance(value, datetime.timedelta):
        if value <= datetime.timedelta(0):
            raise ValueError("%s must be a positive duration, not %r" % (what, value))
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError("%s must be a datetime.timedelta or an interval string such as '5 minutes', not %r"
                     % (what, value))


def _autocommit(bind):
    return _engine(bind).connect().execution_options(isolation_level="AUTOCOMMIT")


def lease(bind, statement, batch=1, lease="5 minutes", attempts=None, max_attempts=None,
          order_by=None, token_column="claim_token", until_column="claimed_until"):
    """Leases up to `batch` rows matching the select's WHERE (in its ORDER
    BY, or `order_by`), skipping leased and locked rows: one
    raceguard.claim_lease call in autocommit on a connection of its own.
    `attempts` names a column that counts the leases of each row and
    `max_attempts` stops leasing a row once it reached that count."""
    table, entity, where, orders = _target(statement)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError("batch must be an integer of at least 1, not %r" % (batch,))
    lease = _interval(lease, "lease")
    if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
                                     or max_attempts < 1):
        raise ValueError("max_attempts must be an integer of at least 1, not %r" % (max_attempts,))
    if max_attempts is not None and attempts is None:
        raise ValueError("max_attempts needs attempts=, the column that counts each row's leases")
    for column, what in ((token_column, "token_column"), (until_column, "until_column"), (attempts, "attempts")):
        if column is not None and column not in table.c:
            raise ValueError("table %r has no column %r (%s)" % (table.name, column, what))
    if order_by is not None:
        orders = tuple(order_by) if isinstance(order_by, (list, tuple)) else (order_by,)

    params = {}
    filter_sql = _server_quoted(where, params, "f") if where is not None else "'true'"
    order_sql = "NULL"
    if orders:
        pieces = [_server_quoted(clause, params, "o_%d" % n) for n, clause in enumerate(orders)]
        order_sql = "pg_catalog.concat_ws(', ', %s)" % ", ".join(pieces)
    params.update(batch=batch, lease=lease, token_column=token_column, until_column=until_column,
                  attempts_column=attempts, max_attempts=max_attempts)
    sql = text(
        "SELECT * FROM raceguard.claim_lease(CAST(NULL AS %s), %s, :batch, CAST(:lease AS interval), %s,"
        " CAST(:token_column AS name), CAST(:until_column AS name), CAST(:attempts_column AS name),"
        " CAST(:max_attempts AS integer))" % (_table_sql(table), filter_sql, order_sql)).bindparams(**params)

    with _autocommit(bind) as connection:
        if entity is not None:
            from sqlalchemy import select
            with Session(bind=connection, expire_on_commit=False) as session:
                rows = list(session.execute(select(entity).from_statement(sql)).scalars())
                session.expunge_all()
            token = getattr(rows[0], _attribute(entity, table.c[token_column])) if rows else None
        else:
            rows = list(connection.execute(sql))
            token = rows[0]._mapping[table.c[token_column].name] if rows else None
    return Lease(table, entity, token, rows, token_column, until_column)


def _check_lease(lease_, caller):
    if not isinstance(lease_, Lease):
        raise TypeError("%s() takes the Lease that lease() returned, not %r" % (caller, lease_))


def _attribute(entity, column):
    return sa_inspect(entity).get_property_by_column(column).key


def _primary_key(lease_, row):
    table = lease_.table
    if lease_.entity is not None and not hasattr(row, "_mapping"):
        return dict(zip(table.primary_key.columns, sa_inspect(lease_.entity).primary_key_from_instance(row)))
    return {column: row._mapping[column.name] for column in table.primary_key.columns}


def _run(bind, statement):
    """In the caller's Session (its transaction), else in autocommit."""
    if isinstance(bind, Session):
        return bind.execute(statement)
    with _autocommit(bind) as connection:
        return connection.execute(statement)


def complete(bind, lease_, *rows, **changes):
    """Marks leased rows done: sets `changes` and clears the lease, only on
    rows that still hold the lease's token (fencing). Returns how many rows
    it completed: fewer than given when a lease was lost to another worker.
    With a Session it runs in the Session's transaction (commit it);
    otherwise in autocommit. No rows given: every row of the lease."""
    _check_lease(lease_, "complete")
    table = lease_.table
    for key in changes:
        if key not in table.c:
            raise ValueError("table %r has no column %r" % (table.name, key))
    if lease_.token is None:
        return 0
    done = 0
    values = dict(changes)
    values[lease_.token_column] = None
    values[lease_.until_column] = None
    for row in rows or lease_.rows:
        key = _primary_key(lease_, row)
        statement = update(table).where(and_(*[column == value for column, value in key.items()]),
                                        table.c[lease_.token_column] == lease_.token).values(values)
        done += _run(bind, statement).rowcount
    return done


def release(bind, lease_, retry_after=None):
    """Gives the lease up (raceguard.release_lease): its rows become
    claimable at once, or after `retry_after`. Returns how many rows still
    held the token."""
    _check_lease(lease_, "release")
    if lease_.token is None:
        return 0
    retry_after = None if retry_after is None else _interval(retry_after, "retry_after")
    statement = text("SELECT raceguard.release_lease(CAST(NULL AS %s), :token, CAST(:token_column AS name),"
                     " CAST(:until_column AS name), CAST(:retry_after AS interval))" % _table_sql(lease_.table))
    with _autocommit(bind) as connection:
        return connection.execute(statement, {"token": lease_.token, "token_column": lease_.token_column,
                                              "until_column": lease_.until_column,
                                              "retry_after": retry_after}).scalar()


def extend(bind, lease_, lease="5 minutes"):
    """Moves the lease's expiry to now + `lease` (raceguard.extend_lease).
    Returns how many rows still held the token."""
    _check_lease(lease_, "extend")
    if lease_.token is None:
        return 0
    statement = text("SELECT raceguard.extend_lease(CAST(NULL AS %s), :token, CAST(:lease AS interval),"
                     " CAST(:token_column AS name), CAST(:until_column AS name))" % _table_sql(lease_.table))
    with _autocommit(bind) as connection:
        return connection.execute(statement, {"token": lease_.token, "lease": _interval(lease, "lease"),
                                              "token_column": lease_.token_column,
                                              "until_column": lease_.until_column}).scalar()
