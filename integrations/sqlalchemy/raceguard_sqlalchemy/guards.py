"""The guards as values: what each trigger is called, which arguments it
takes, and the exact SQL that creates and drops it.

One class per raceguard guard. The same objects serve the Alembic
operations, the declarations on a Table and the autogenerate comparison, so
a guard is rendered in one place only.
"""
import json
import re
import weakref
from decimal import Decimal, InvalidOperation

# PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes); a trigger
# name is the CONSTRAINT name of the guard's errors, so it must stay exact.
MAX_IDENTIFIER_BYTES = 63

# The guards declared on each Table. Not in Table.info: Alembic 1.13
# renders a table's info into create_table(), and a revision must not
# depend on this package's classes for that.
_DECLARED = weakref.WeakKeyDictionary()


def quote_ident(name):
    """A quoted identifier: always quoted, so that it is matched exactly as
    written (the guards match their column arguments exactly too)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    """A string literal that reads the same whatever
    standard_conforming_strings is set to."""
    quoted = "'" + value.replace("'", "''") + "'"
    if "\\" in value:
        return "E" + quoted.replace("\\", "\\\\")
    return quoted


def qualified_table(table_name, schema):
    if schema:
        return quote_ident(schema) + "." + quote_ident(table_name)
    return quote_ident(table_name)


def _name(value, what):
    if not isinstance(value, str) or value == "":
        raise ValueError("%s must be a non-empty string, not %r" % (what, value))
    if "\x00" in value:
        raise ValueError("%s must not contain a NUL character: %r" % (what, value))
    if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            "%s %r is longer than PostgreSQL's %d bytes and would be truncated"
            % (what, value, MAX_IDENTIFIER_BYTES))
    return value


def _bool(value, what):
    if not isinstance(value, bool):
        raise ValueError("%s must be True or False, not %r" % (what, value))
    return value


def _number(value, what):
    """A finite number for a running_balance option, kept as its exact text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ValueError("%s must be an int, a Decimal or a numeric string, not %r" % (what, value))
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("%s must be a number, not %r" % (what, value)) from None
    if not number.is_finite():
        raise ValueError("%s must be a finite number, not %r" % (what, value))
    return str(value).strip()


def _columns(value, what):
    if isinstance(value, str):
        value = [value]
    try:
        columns = list(value)
    except TypeError:
        raise ValueError("%s must be a column name or a list of them, not %r" % (what, value)) from None
    if not columns:
        raise ValueError("%s must name at least one column" % what)
    for column in columns:
        _name(column, "a column name in " + what)
        if "=" in column:
            # The guard would read it as an option.
            raise ValueError("column name %r: raceguard reads an argument with '=' as an option" % column)
    if len(set(columns)) != len(columns):
        raise ValueError("%s names a column twice: %r" % (what, columns))
    return columns


class Guard:
    """A raceguard trigger on one table. Subclasses set `guard`, `timing`
    and `events`, and give the trigger's arguments."""

    guard = None
    events = ()

    def __init__(self, table_name, name, schema=None):
        self.table_name = _name(table_name, "table_name")
        self.schema = None if schema is None else _name(schema, "schema")
        self.name = _name(name if name is not None else self.default_name(), "the trigger name")

    # What a subclass provides.
    def default_name(self):
        raise NotImplementedError

    def arguments(self):
        """The trigger's arguments, as the guard reads them."""
        raise NotImplementedError

    def columns(self):
        """The guarded columns, as raceguard.guards lists them."""
        raise NotImplementedError

    def options(self):
        """Every option with its effective value, as text, as
        raceguard.guards shows them."""
        raise NotImplementedError

    def referenced_columns(self):
        """Every column the guard reads or writes."""
        return self.columns()

    def keywords(self):
        """The keyword arguments that rebuild this guard (for rendering)."""
        raise NotImplementedError

    # Shared.
    @property
    def timing(self):
        return "BEFORE"

    def create_sql(self):
        return "CREATE TRIGGER %s %s %s ON %s FOR EACH ROW EXECUTE FUNCTION raceguard.%s(%s)" % (
            quote_ident(self.name), self.timing, " OR ".join(self.events),
            qualified_table(self.table_name, self.schema), self.guard,
            ", ".join(quote_literal(a) for a in self.arguments()))

    def drop_sql(self):
        return "DROP TRIGGER %s ON %s" % (quote_ident(self.name), qualified_table(self.table_name, self.schema))

    def definition(self):
        """What autogenerate compares with the database."""
        return (self.guard, tuple(self.columns()), _normalized(self.options()), self.timing, tuple(self.events))

    def __eq__(self, other):
        return (type(self) is type(other) and self.table_name == other.table_name
                and self.schema == other.schema and self.name == other.name
                and self.definition() == other.definition())

    def __hash__(self):
        return hash((self.table_name, self.schema, self.name))

    def __repr__(self):
        return "%s(%r, %s)" % (type(self).__name__, self.table_name, ", ".join(
            "%s=%r" % item for item in sorted(dict(self.keywords(), name=self.name, schema=self.schema).items())))


def _normalized(options):
    """Options compared by meaning: numbers as numbers, the rest as text."""
    result = []
    for key, value in sorted(options.items()):
        if value is None:
            result.append((key, None))
            continue
        try:
            number = Decimal(value)
            result.append((key, ("number", number.normalize()) if number.is_finite() else value))
        except (InvalidOperation, TypeError, ValueError):
            result.append((key, value))
    return tuple(result)


class LockVersionGuard(Guard):
    """raceguard.lock_version(column [, 'strict=true'] [, 'sqlstate=23514'])."""

    guard = "lock_version"
    events = ("INSERT", "UPDATE")

    def __init__(self, table_name, column="lock_version", strict=False, sqlstate="40001", name=None, schema=None):
        self.column = _name(column, "column")
        self.strict = _bool(strict, "strict")
        if sqlstate not in ("40001", "23514"):
            raise ValueError("sqlstate must be '40001' (the default) or '23514', not %r" % (sqlstate,))
        self.sqlstate = sqlstate
        super().__init__(table_name, name, schema)

    def default_name(self):
        return self.table_name + "_lock_version"

    def arguments(self):
        args = [self.column]
        if self.strict:
            args.append("strict=true")
        if self.sqlstate != "40001":
            args.append("sqlstate=" + self.sqlstate)
        return args

    def columns(self):
        return [self.column]

    def options(self):
        return {"strict": "true" if self.strict else "false", "sqlstate": self.sqlstate}

    def keywords(self):
        return {"column": self.column, "strict": self.strict, "sqlstate": self.sqlstate}


class ImmutableOnceSetGuard(Guard):
    """raceguard.immutable_once_set(column [, column ...] [, 'allow_unset=true'])."""

    guard = "immutable_once_set"
    events = ("UPDATE",)

    def __init__(self, table_name, columns, allow_unset=False, timing="BEFORE", name=None, schema=None):
        self.guarded = _columns(columns, "columns")
        self.allow_unset = _bool(allow_unset, "allow_unset")
        if timing not in ("BEFORE", "AFTER"):
            raise ValueError("timing must be 'BEFORE' or 'AFTER', not %r" % (timing,))
        self._timing = timing
        super().__init__(table_name, name, schema)

    @property
    def timing(self):
        return self._timing

    def default_name(self):
        return "%s_%s_once_set" % (self.table_name, "_".join(self.guarded))

    def arguments(self):
        return self.guarded + (["allow_unset=true"] if self.allow_unset else [])

    def columns(self):
        return list(self.guarded)

    def options(self):
        return {"allow_unset": "true" if self.allow_unset else "false"}

    def keywords(self):
        return {"columns": list(self.guarded), "allow_unset": self.allow_unset, "timing": self._timing}


class RunningBalanceGuard(Guard):
    """raceguard.running_balance(amount, balance [, group ...], 'seq=<column>'
    [, 'min_balance=<n>'] [, 'initial=<n>'])."""

    guard = "running_balance"
    events = ("INSERT", "UPDATE", "DELETE")

    def __init__(self, table_name, amount, balance, seq, group=(), min_balance=None, initial=None,
                 name=None, schema=None):
        self.amount = _name(amount, "amount")
        self.balance = _name(balance, "balance")
        self.seq = _name(seq, "seq")
        self.group = _columns(group, "group") if (isinstance(group, str) or list(group)) else []
        named = [self.amount, self.balance] + self.group
        if len(set(named)) != len(named) or self.seq in named:
            raise ValueError("amount, balance, group and seq must be different columns: %r" % (named + [self.seq],))
        for column in named:
            if "=" in column:
                raise ValueError("column name %r: raceguard reads an argument with '=' as an option" % column)
        self.min_balance = _number(min_balance, "min_balance")
        self.initial = _number(initial, "initial")
        super().__init__(table_name, name, schema)

    def default_name(self):
        return self.table_name + "_running_balance"

    def arguments(self):
        args = [self.amount, self.balance] + self.group + ["seq=" + self.seq]
        if self.min_balance is not None:
            args.append("min_balance=" + self.min_balance)
        if self.initial is not None:
            args.append("initial=" + self.initial)
        return args

    def columns(self):
        return [self.amount, self.balance] + self.group

    def referenced_columns(self):
        return self.columns() + [self.seq]

    def options(self):
        return {"seq": self.seq, "min_balance": self.min_balance,
                "initial": self.initial if self.initial is not None else "0"}

    def keywords(self):
        return {"amount": self.amount, "balance": self.balance, "seq": self.seq, "group": list(self.group),
                "min_balance": self.min_balance, "initial": self.initial}


# A state the transition guard would misread unquoted: holding >, = or ",
# empty, beginning or ending with one of its blanks, or spelling NULL.
_NEEDS_QUOTES = re.compile(r'[>="]|\A[ \t\n\r\f\v]|[ \t\n\r\f\v]\Z|\A\Z')


def transition_state(state):
    """A state as raceguard.transition() parses it: None is the NULL state
    (an unquoted NULL); text the guard would misread is double-quoted, with
    "" for ". Text, int and bool states are written in the column's text
    form."""
    if state is None:
        return "NULL"
    if isinstance(state, bool):
        text = "true" if state else "false"
    elif isinstance(state, (str, int)):
        text = str(state)
    else:
        raise ValueError("a state must be a str, int, bool or None, not %r" % (state,))
    if "\x00" in text:
        raise ValueError("state %r contains a NUL character" % text)
    if _NEEDS_QUOTES.search(text) or text.lower() == "null" and text.isascii():
        return '"' + text.replace('"', '""') + '"'
    return text


def parse_transition_edge(argument):
    """(from, to) of an edge argument as the guard reads it, from being
    START for a start state ('>to'); ValueError where the guard would
    refuse it."""
    separators, quoted = [], False
    for i, char in enumerate(argument):
        if char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            separators.append(i)
    if len(separators) != 1 or quoted:
        raise ValueError("not one edge: %r" % argument)
    source, target = argument[:separators[0]], argument[separators[0] + 1:]
    return (START if source == "" else _parse_state(source)), _parse_state(target)


START = object()


def _parse_state(text):
    if text.startswith('"'):
        inner = text[1:-1]
        if len(text) < 2 or not text.endswith('"') or '"' in inner.replace('""', ""):
            raise ValueError("malformed state %r" % text)
        return inner.replace('""', '"')
    if text == "" or '"' in text:
        raise ValueError("malformed state %r" % text)
    return None if text.isascii() and text.lower() == "null" else text


class TransitionGuard(Guard):
    """raceguard.transition(column, '>start', ..., 'from>to', ...): start is
    the states a row may start in, edges maps each state to the state (or
    list of states) it may change to; None is the NULL state."""

    guard = "transition"
    events = ("INSERT", "UPDATE")

    def __init__(self, table_name, column, edges=None, start=(), name=None, schema=None):
        self.column = _name(column, "column")
        if edges is None:
            edges = {}
        if not isinstance(edges, dict):
            raise ValueError("edges must be a dict of from-state: to-state(s), not %r" % (edges,))
        starts = list(start) if isinstance(start, (list, tuple)) else [start]
        self.start = starts
        self.edges = {}
        for source, targets in edges.items():
            targets = list(targets) if isinstance(targets, (list, tuple)) else [targets]
            if not targets:
                raise ValueError("edges: %r lists no state to change to" % (source,))
            self.edges[source] = targets
        if not self.start and not self.edges:
            raise ValueError("a transition guard needs at least one start state or edge")
        self._arguments = [self.column] + [">" + transition_state(state) for state in self.start] + [
            transition_state(source) + ">" + transition_state(target)
            for source, targets in self.edges.items() for target in targets]
        super().__init__(table_name, name, schema)

    @classmethod
    def from_trigger_arguments(cls, table_name, arguments, name=None, schema=None):
        """The guard whose trigger has these arguments (ValueError where
        they are not an edge list this class writes)."""
        start, edges = [], {}
        for argument in arguments[1:]:
            source, target = parse_transition_edge(argument)
            if source is START:
                start.append(target)
            else:
                edges.setdefault(source, []).append(target)
        return cls(table_name, arguments[0], edges=edges, start=start, name=name, schema=schema)

    def default_name(self):
        return "%s_%s_transition" % (self.table_name, self.column)

    def arguments(self):
        return list(self._arguments)

    def columns(self):
        return [self.column]

    def options(self):
        # raceguard.guards shows the edges as written, in order.
        return {"edges": json.dumps(self._arguments[1:])}

    def keywords(self):
        # An empty start renders as its default, ().
        return {"column": self.column, "start": list(self.start) or (), "edges": dict(self.edges)}


GUARD_CLASSES = {cls.guard: cls for cls in (LockVersionGuard, ImmutableOnceSetGuard, RunningBalanceGuard,
                                            TransitionGuard)}


def from_database(schema, table_name, trigger_name, guard, columns, options, timing):
    """A guard as raceguard.guards describes it (options as text), or None
    for a guard kind this package does not render."""
    columns = list(columns)
    try:
        if guard == "lock_version":
            return LockVersionGuard(table_name, column=columns[0], strict=options.get("strict") == "true",
                                    sqlstate=options.get("sqlstate", "40001"), name=trigger_name, schema=schema)
        if guard == "immutable_once_set":
            return ImmutableOnceSetGuard(table_name, columns, allow_unset=options.get("allow_unset") == "true",
                                         timing=timing, name=trigger_name, schema=schema)
        if guard == "running_balance":
            initial = options.get("initial")
            return RunningBalanceGuard(table_name, columns[0], columns[1], seq=options.get("seq"), group=columns[2:],
                                       min_balance=options.get("min_balance"),
                                       initial=None if initial in (None, "0") else initial,
                                       name=trigger_name, schema=schema)
        if guard == "transition":
            edges = json.loads(options.get("edges") or "[]")
            return TransitionGuard.from_trigger_arguments(table_name, columns + edges, name=trigger_name, schema=schema)
    except (ValueError, IndexError):
        return None  # a broken guard (check_guards() reports it): left alone
    return None


# Declaring guards on a Table, for autogenerate.

def declare(table, guard_class, **keywords):
    guard = guard_class(table.name, schema=table.schema, **keywords)
    for column in guard.referenced_columns():
        if column not in table.c:
            raise ValueError("table %r has no column %r for its %s guard" % (table.name, column, guard.guard))
    declared = _DECLARED.setdefault(table, [])
    if any(other.name == guard.name for other in declared):
        raise ValueError("table %r already declares a guard named %r" % (table.name, guard.name))
    declared.append(guard)
    return guard


def lock_version_guard(table, column="lock_version", strict=False, sqlstate="40001", name=None):
    """Declares a lock_version guard on a Table (or a mapped class)."""
    table = _table(table)
    return declare(table, LockVersionGuard, column=column, strict=strict, sqlstate=sqlstate, name=name)


def immutable_once_set_guard(table, columns, allow_unset=False, timing="BEFORE", name=None):
    """Declares an immutable_once_set guard on a Table (or a mapped class)."""
    table = _table(table)
    return declare(table, ImmutableOnceSetGuard, columns=columns, allow_unset=allow_unset, timing=timing, name=name)


def running_balance_guard(table, amount, balance, seq, group=(), min_balance=None, initial=None, name=None):
    """Declares a running_balance guard on a Table (or a mapped class)."""
    table = _table(table)
    return declare(table, RunningBalanceGuard, amount=amount, balance=balance, seq=seq, group=group,
                   min_balance=min_balance, initial=initial, name=name)


def transition_guard(table, column, edges=None, start=(), name=None):
    """Declares a transition guard on a Table (or a mapped class)."""
    table = _table(table)
    return declare(table, TransitionGuard, column=column, edges=edges, start=start, name=name)


def declared_guards(table):
    return list(_DECLARED.get(table, ()))


def _table(table_or_class):
    table = getattr(table_or_class, "__table__", table_or_class)
    if not hasattr(table, "c") or not hasattr(table, "name"):
        raise TypeError("expected a Table or a mapped class, not %r" % (table_or_class,))
    return table
