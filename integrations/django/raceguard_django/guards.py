"""Each guard's arguments, checked once for both ways of declaring it (the
migration operations and the django-pgtrigger classes): the options when the
declaration is made, the field names against the model when it is applied.
`column_of(field_name, option)` resolves a field name to its column."""
from decimal import Decimal, InvalidOperation
from enum import Enum

from django.core.exceptions import FieldDoesNotExist

from .exceptions import GuardDeclarationError


def column_resolver(owner, model):
    """column_of(field_name, option) for `model`: the field's column, or a
    GuardDeclarationError naming the model, the field and the option."""

    def column_of(name, option):
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            raise GuardDeclarationError(
                "%s: model %s has no field %r (given as %s)" % (owner, model._meta.label, name, option)
            ) from None
        if field.column is None:
            raise GuardDeclarationError("%s: field %r of %s has no column" % (owner, name, model._meta.label))
        return field.column

    return column_of


def boolean(owner, option, value):
    if not isinstance(value, bool):
        raise GuardDeclarationError("%s: %s must be True or False, not %r" % (owner, option, value))
    return value


def number(owner, option, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise GuardDeclarationError(
            "%s: %s must be an int, a Decimal or a numeric string, not %r" % (owner, option, value)
        )
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        raise GuardDeclarationError("%s: %s is not a number: %r" % (owner, option, value)) from None
    if not parsed.is_finite():
        raise GuardDeclarationError("%s: %s must be a finite number, not %r" % (owner, option, value))
    return str(parsed)


def field_name(owner, option, value):
    if not isinstance(value, str) or not value:
        raise GuardDeclarationError("%s: %s must be a field name, not %r" % (owner, option, value))
    return value


def field_names(owner, option, value):
    if isinstance(value, str) or not all(isinstance(name, str) and name for name in value):
        raise GuardDeclarationError("%s: %s must be a list of field names, not %r" % (owner, option, value))
    return list(value)


class LockVersionArguments:
    def __init__(self, owner, field, strict, sqlstate):
        self.field = field_name(owner, "field", field)
        self.strict = boolean(owner, "strict", strict)
        if sqlstate not in (None, "40001", "23514"):
            raise GuardDeclarationError("%s: sqlstate must be '40001' (the default) or '23514', not %r" % (owner, sqlstate))
        self.sqlstate = sqlstate

    def arguments(self, column_of):
        arguments = [column_of(self.field, "field")]
        if self.strict:
            arguments.append("strict=true")
        if self.sqlstate:
            arguments.append("sqlstate=%s" % self.sqlstate)
        return arguments


class ImmutableOnceSetArguments:
    def __init__(self, owner, fields, allow_unset):
        self.fields = field_names(owner, "fields", fields)
        if not self.fields:
            raise GuardDeclarationError("%s: fields must name at least one field" % owner)
        self.allow_unset = boolean(owner, "allow_unset", allow_unset)

    def arguments(self, column_of):
        arguments = [column_of(field, "fields") for field in self.fields]
        if self.allow_unset:
            arguments.append("allow_unset=true")
        return arguments


class RunningBalanceArguments:
    def __init__(self, owner, amount, balance, seq, group, min_balance, initial):
        self.amount = field_name(owner, "amount", amount)
        self.balance = field_name(owner, "balance", balance)
        self.seq = field_name(owner, "seq", seq)
        self.group = field_names(owner, "group", group)
        self.min_balance = number(owner, "min_balance", min_balance)
        self.initial = number(owner, "initial", initial)

    def arguments(self, column_of):
        arguments = [column_of(self.amount, "amount"), column_of(self.balance, "balance")]
        arguments += [column_of(field, "group") for field in self.group]
        arguments.append("seq=%s" % column_of(self.seq, "seq"))
        if self.min_balance is not None:
            arguments.append("min_balance=%s" % self.min_balance)
        if self.initial is not None:
            arguments.append("initial=%s" % self.initial)
        return arguments


# raceguard.transition()'s state syntax (SPEC §8): an unquoted NULL in any
# case is the NULL state, and a state holding >, = or ", beginning or ending
# with a blank, or empty must be double-quoted ("" for a " inside). Quoting
# is always allowed, so states are quoted whenever in doubt (any blank at an
# end, Unicode's included, and any spelling Python folds to "null"): the
# guard then parses exactly the string written in Python.
STATE_NEEDS_QUOTES = ('>', '=', '"')


def transition_state(owner, option, value):
    """A state as Python declares it (a str, an int, a bool, an Enum such as
    a TextChoices member, or None for NULL), in the guard's syntax."""
    if value is None:
        return "NULL"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise GuardDeclarationError(
            "%s: a state in %s must be a str, an int, a bool or None (NULL), not %r" % (owner, option, value)
        )
    if "\x00" in text:
        raise GuardDeclarationError("%s: a state in %s holds a NUL character: %r" % (owner, option, value))
    if (
        not text
        or any(c in text for c in STATE_NEEDS_QUOTES)
        or text[0].isspace()
        or text[-1].isspace()
        or text.strip().casefold() == "null"
    ):
        return '"' + text.replace('"', '""') + '"'
    return text


def _state_value(value):
    """The Python value a state stands for, as a field's choices hold it."""
    return value.value if isinstance(value, Enum) else value


def transition_edges(owner, option, edges):
    """(from, to) pairs from a list of pairs or a mapping {from: [to, ...]}."""
    if isinstance(edges, dict):
        pairs = []
        for source, targets in edges.items():
            if isinstance(targets, (str, bytes)) or not isinstance(targets, (list, tuple, set, frozenset)):
                raise GuardDeclarationError(
                    "%s: %s maps each state to a list of the states it may move to; %r maps to %r"
                    % (owner, option, source, targets)
                )
            pairs += [(source, target) for target in targets]
        return pairs
    if isinstance(edges, (str, bytes)) or not isinstance(edges, (list, tuple)):
        raise GuardDeclarationError(
            "%s: %s must be a list of (from, to) pairs or a mapping {from: [to, ...]}, not %r" % (owner, option, edges)
        )
    for edge in edges:
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise GuardDeclarationError("%s: each of %s must be a (from, to) pair, not %r" % (owner, option, edge))
    return [tuple(edge) for edge in edges]


class TransitionArguments:
    """raceguard.transition(): the field, then '>start' for each start state
    and 'from>to' for each edge."""

    def __init__(self, owner, field, edges, start):
        self.owner = owner
        self.field = field_name(owner, "field", field)
        self.edges = transition_edges(owner, "edges", edges)
        if isinstance(start, (str, bytes)) or not isinstance(start, (list, tuple)):
            raise GuardDeclarationError(
                "%s: start must be a list of the states a row may start in (None: NULL), not %r" % (owner, start)
            )
        self.start = list(start)
        if not self.edges and not self.start:
            raise GuardDeclarationError("%s: declare at least one edge or start state" % owner)
        self.texts = [">" + transition_state(owner, "start", state) for state in self.start]
        self.texts += [
            transition_state(owner, "edges", source) + ">" + transition_state(owner, "edges", target)
            for source, target in self.edges
        ]
        seen = set()
        for text in self.texts:
            if text in seen:
                raise GuardDeclarationError("%s: %r is declared twice" % (owner, text))
            seen.add(text)

    def states(self):
        return [_state_value(s) for s in self.start] + [_state_value(s) for edge in self.edges for s in edge]

    def arguments(self, column_of, model=None):
        arguments = [column_of(self.field, "field")]
        if model is not None:
            self.check_choices(model)
        return arguments + self.texts

    def check_choices(self, model):
        """A field with choices: every state must be one of them (or None on
        a nullable field), so a typo fails here rather than in a row."""
        field = model._meta.get_field(self.field)
        if not field.choices:
            return
        allowed = {value for value, _ in field.flatchoices}
        for state in self.states():
            if state is None and field.null:
                continue
            if state not in allowed:
                raise GuardDeclarationError(
                    "%s: state %r is not one of the choices of %s.%s (%s)"
                    % (self.owner, state, model._meta.label, self.field, ", ".join(repr(v) for v in sorted(allowed, key=str)))
                )
