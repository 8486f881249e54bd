"""Migration operations that attach raceguard guards without django-pgtrigger.

Each operation resolves the table and column names from the migration's
model state (db_table, each field's column), so a renamed table or a field
with db_column is named right. Trigger names are explicit and stable,
because a guard's 23514 error carries the trigger's name as its CONSTRAINT.
"""
from decimal import Decimal, InvalidOperation

from django.core.exceptions import FieldDoesNotExist
from django.db import router
from django.db.migrations.operations.base import Operation

from ._sql import quote_ident, quote_literal
from .exceptions import GuardDeclarationError

MAX_NAME_BYTES = 63


class CreateRaceguardExtension(Operation):
    """CREATE EXTENSION IF NOT EXISTS raceguard.

    A no-op where raceguard is already installed, as in a database created
    from a template that holds it: then an application role without the
    right to create the (untrusted) extension can run the migration.
    Reversing it does nothing: dropping the extension would drop every
    guard of the database with it."""

    reversible = True
    reduces_to_sql = False

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            raise GuardDeclarationError("raceguard runs on PostgreSQL only")
        if not router.allow_migrate(schema_editor.connection.alias, app_label):
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'raceguard'")
            if cursor.fetchone():
                return
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS raceguard")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return "Creates extension raceguard (if not installed)"

    @property
    def migration_name_fragment(self):
        return "create_extension_raceguard"

    def deconstruct(self):
        return (self.__class__.__name__, [], {})


def _boolean(operation, option, value):
    if not isinstance(value, bool):
        raise GuardDeclarationError("%s: %s must be True or False, not %r" % (operation, option, value))
    return "true" if value else "false"


def _number(operation, option, value):
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise GuardDeclarationError(
            "%s: %s must be an int, a Decimal or a numeric string, not %r" % (operation, option, value)
        )
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise GuardDeclarationError("%s: %s is not a number: %r" % (operation, option, value)) from None
    if not number.is_finite():
        raise GuardDeclarationError("%s: %s must be a finite number, not %r" % (operation, option, value))
    return str(number)


def _field_names(operation, option, value):
    if isinstance(value, str) or not all(isinstance(name, str) and name for name in value):
        raise GuardDeclarationError("%s: %s must be a list of field names, not %r" % (operation, option, value))
    return list(value)


class GuardOperation(Operation):
    """The shared part: a CREATE TRIGGER on the model's table forwards, a
    DROP TRIGGER of exactly that trigger backwards."""

    reversible = True
    reduces_to_sql = True
    guard = None  # the raceguard function's name
    default_suffix = None
    timing = "BEFORE"
    events = ()

    def __init__(self, model_name, name=None):
        self.model_name = model_name
        self.name = name
        if name is not None:
            if not isinstance(name, str) or not name:
                raise GuardDeclarationError("%s: name must be a non-empty string" % self.__class__.__name__)
            self._check_length(name)

    @property
    def model_name_lower(self):
        return self.model_name.lower()

    def _check_length(self, name):
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise GuardDeclarationError(
                "%s: trigger name %r is longer than %d bytes; PostgreSQL would truncate it, and the "
                "truncated name is what errors report: pass a shorter name=" % (self.__class__.__name__, name, MAX_NAME_BYTES)
            )

    def state_forwards(self, app_label, state):
        # A trigger is not part of Django's model state.
        pass

    def _model(self, app_label, state):
        try:
            return state.apps.get_model(app_label, self.model_name)
        except LookupError:
            raise GuardDeclarationError(
                "%s: no model %r in app %r at this migration" % (self.__class__.__name__, self.model_name, app_label)
            ) from None

    def _column(self, model, field_name, option):
        try:
            field = model._meta.get_field(field_name)
        except FieldDoesNotExist:
            raise GuardDeclarationError(
                "%s: model %s has no field %r (given as %s)"
                % (self.__class__.__name__, model._meta.label, field_name, option)
            ) from None
        if field.column is None:
            raise GuardDeclarationError(
                "%s: field %r of %s has no column" % (self.__class__.__name__, field_name, model._meta.label)
            )
        return field.column

    def trigger_name(self, model):
        name = self.name or "%s_%s" % (model._meta.db_table, self.default_suffix)
        self._check_length(name)
        return name

    def arguments(self, model):
        """The trigger's arguments as strings, in the guard's order."""
        raise NotImplementedError

    def create_sql(self, model):
        arguments = ", ".join(quote_literal(argument) for argument in self.arguments(model))
        return "CREATE TRIGGER %s %s %s ON %s FOR EACH ROW EXECUTE FUNCTION raceguard.%s(%s)" % (
            quote_ident(self.trigger_name(model)),
            self.timing,
            " OR ".join(self.events),
            quote_ident(model._meta.db_table),
            self.guard,
            arguments,
        )

    def drop_sql(self, model):
        return "DROP TRIGGER %s ON %s" % (quote_ident(self.trigger_name(model)), quote_ident(model._meta.db_table))

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = self._model(app_label, to_state)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.execute(self.create_sql(model))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = self._model(app_label, from_state)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.execute(self.drop_sql(model))

    def describe(self):
        return "Adds raceguard.%s guard to %s" % (self.guard, self.model_name)

    @property
    def migration_name_fragment(self):
        return "%s_%s" % (self.model_name_lower, self.guard)

    def _kwargs(self):
        return {"name": self.name} if self.name is not None else {}

    def deconstruct(self):
        return (self.__class__.__name__, [self.model_name], self._kwargs())


class AddLockVersionGuard(GuardOperation):
    """raceguard.lock_version() on a version field (SPEC §1).

    strict=True refuses UPDATEs that do not name the version (blind writes);
    sqlstate="23514" reports stale writes as a check violation named after
    the trigger instead of 40001. Default name: <db_table>_lock_version."""

    guard = "lock_version"
    default_suffix = "lock_version"
    events = ("INSERT", "UPDATE")

    def __init__(self, model_name, field="lock_version", strict=False, sqlstate=None, name=None):
        super().__init__(model_name, name)
        if not isinstance(field, str) or not field:
            raise GuardDeclarationError("AddLockVersionGuard: field must be a field name, not %r" % (field,))
        self.field = field
        self.strict = strict
        self._strict = _boolean("AddLockVersionGuard", "strict", strict)
        if sqlstate not in (None, "40001", "23514"):
            raise GuardDeclarationError(
                "AddLockVersionGuard: sqlstate must be '40001' (the default) or '23514', not %r" % (sqlstate,)
            )
        self.sqlstate = sqlstate

    def arguments(self, model):
        arguments = [self._column(model, self.field, "field")]
        if self.strict:
            arguments.append("strict=true")
        if self.sqlstate:
            arguments.append("sqlstate=%s" % self.sqlstate)
        return arguments

    def _kwargs(self):
        kwargs = super()._kwargs()
        if self.field != "lock_version":
            kwargs["field"] = self.field
        if self.strict:
            kwargs["strict"] = True
        if self.sqlstate:
            kwargs["sqlstate"] = self.sqlstate
        return kwargs


class AddImmutableOnceSetGuard(GuardOperation):
    """raceguard.immutable_once_set() on write-once fields (SPEC §2).

    allow_unset=True lets a set value go back to NULL; timing="AFTER" sees
    the row after every BEFORE trigger. Default name:
    <db_table>_<column>[_<column>...]_once_set."""

    guard = "immutable_once_set"
    events = ("UPDATE",)

    def __init__(self, model_name, fields, allow_unset=False, timing="BEFORE", name=None):
        super().__init__(model_name, name)
        self.fields = _field_names("AddImmutableOnceSetGuard", "fields", fields)
        if not self.fields:
            raise GuardDeclarationError("AddImmutableOnceSetGuard: fields must name at least one field")
        self.allow_unset = allow_unset
        self._allow_unset = _boolean("AddImmutableOnceSetGuard", "allow_unset", allow_unset)
        if timing not in ("BEFORE", "AFTER"):
            raise GuardDeclarationError("AddImmutableOnceSetGuard: timing must be 'BEFORE' or 'AFTER', not %r" % (timing,))
        self.timing = timing

    def trigger_name(self, model):
        if self.name:
            return self.name
        columns = [self._column(model, field, "fields") for field in self.fields]
        name = "%s_%s_once_set" % (model._meta.db_table, "_".join(columns))
        self._check_length(name)
        return name

    def arguments(self, model):
        arguments = [self._column(model, field, "fields") for field in self.fields]
        if self.allow_unset:
            arguments.append("allow_unset=true")
        return arguments

    def _kwargs(self):
        kwargs = super()._kwargs()
        kwargs["fields"] = list(self.fields)
        if self.allow_unset:
            kwargs["allow_unset"] = True
        if self.timing != "BEFORE":
            kwargs["timing"] = self.timing
        return kwargs


class AddRunningBalanceGuard(GuardOperation):
    """raceguard.running_balance() on a ledger (SPEC §3).

    amount, balance and seq are field names, group a list of field names
    (empty: one balance for the table); min_balance and initial are numbers.
    The btree index on (group..., seq) must exist before the guard (e.g. a
    UniqueConstraint in the model's Meta, in an earlier migration).
    Default name: <db_table>_running_balance."""

    guard = "running_balance"
    default_suffix = "running_balance"
    events = ("INSERT", "UPDATE", "DELETE")

    def __init__(self, model_name, amount, balance, seq, group=(), min_balance=None, initial=None, name=None):
        super().__init__(model_name, name)
        for option, value in (("amount", amount), ("balance", balance), ("seq", seq)):
            if not isinstance(value, str) or not value:
                raise GuardDeclarationError("AddRunningBalanceGuard: %s must be a field name, not %r" % (option, value))
        self.amount, self.balance, self.seq = amount, balance, seq
        self.group = _field_names("AddRunningBalanceGuard", "group", group)
        self.min_balance = min_balance
        self.initial = initial
        self._min_balance = None if min_balance is None else _number("AddRunningBalanceGuard", "min_balance", min_balance)
        self._initial = None if initial is None else _number("AddRunningBalanceGuard", "initial", initial)

    def arguments(self, model):
        arguments = [self._column(model, self.amount, "amount"), self._column(model, self.balance, "balance")]
        arguments += [self._column(model, field, "group") for field in self.group]
        arguments.append("seq=%s" % self._column(model, self.seq, "seq"))
        if self._min_balance is not None:
            arguments.append("min_balance=%s" % self._min_balance)
        if self._initial is not None:
            arguments.append("initial=%s" % self._initial)
        return arguments

    def _kwargs(self):
        kwargs = super()._kwargs()
        kwargs.update(amount=self.amount, balance=self.balance, seq=self.seq)
        if self.group:
            kwargs["group"] = list(self.group)
        if self.min_balance is not None:
            kwargs["min_balance"] = self.min_balance
        if self.initial is not None:
            kwargs["initial"] = self.initial
        return kwargs
