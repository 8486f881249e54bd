"""Each guard's arguments, checked once for both ways of declaring it (the
migration operations and the django-pgtrigger classes): the options when the
declaration is made, the field names against the model when it is applied.
`column_of(field_name, option)` resolves a field name to its column."""
from decimal import Decimal, InvalidOperation

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
