"""Migration operations that attach raceguard guards without django-pgtrigger.

Each operation resolves the table and column names from the migration's
model state (db_table, each field's column), so a renamed table or a field
with db_column is named right. Trigger names are explicit and stable,
because a guard's 23514 error carries the trigger's name as its CONSTRAINT.
"""
from django.db import router
from django.db.migrations.operations.base import Operation

from . import guards
from ._sql import quote_ident, quote_literal
from .exceptions import GuardDeclarationError

MAX_NAME_BYTES = 63


class CreateRaceguardExtension(Operation):
    """CREATE EXTENSION IF NOT EXISTS raceguard.

    A no-op where raceguard is already installed, as in a database created
    from a template that holds it: PostgreSQL finds the extension before it
    checks who may create it, so an application role without the right to
    create the (untrusted) extension can run the migration. Reversing it
    does nothing: dropping the extension would drop every guard of the
    database with it."""

    reversible = True
    reduces_to_sql = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            raise GuardDeclarationError("raceguard runs on PostgreSQL only")
        if router.allow_migrate(schema_editor.connection.alias, app_label):
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

    def column_of(self, model):
        return guards.column_resolver(self.__class__.__name__, model)

    def arguments(self, model):
        """The trigger's arguments as strings, in the guard's order."""
        return self.spec.arguments(self.column_of(model))

    def trigger_name(self, model):
        name = self.name or "%s_%s" % (model._meta.db_table, self.default_suffix)
        self._check_length(name)
        return name

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

    # The statements are run with params=None: with parameters (even none)
    # the driver would read a "%" in a name or an argument as a placeholder.
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = self._model(app_label, to_state)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.execute(self.create_sql(model), params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = self._model(app_label, from_state)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.execute(self.drop_sql(model), params=None)

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
        self.spec = guards.LockVersionArguments("AddLockVersionGuard", field, strict, sqlstate)
        self.field, self.strict, self.sqlstate = field, strict, sqlstate

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
        self.spec = guards.ImmutableOnceSetArguments("AddImmutableOnceSetGuard", fields, allow_unset)
        self.fields, self.allow_unset = self.spec.fields, allow_unset
        if timing not in ("BEFORE", "AFTER"):
            raise GuardDeclarationError("AddImmutableOnceSetGuard: timing must be 'BEFORE' or 'AFTER', not %r" % (timing,))
        self.timing = timing

    def trigger_name(self, model):
        if self.name:
            return self.name
        column_of = self.column_of(model)
        columns = [column_of(field, "fields") for field in self.fields]
        name = "%s_%s_once_set" % (model._meta.db_table, "_".join(columns))
        self._check_length(name)
        return name

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
        self.spec = guards.RunningBalanceArguments(
            "AddRunningBalanceGuard", amount, balance, seq, group, min_balance, initial
        )
        self.amount, self.balance, self.seq, self.group = amount, balance, seq, self.spec.group
        self.min_balance, self.initial = min_balance, initial

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


class AddTransitionGuard(GuardOperation):
    """raceguard.transition() on a status field (SPEC §8): a row starts in
    one of `start`, and a change of the field must follow one of `edges`,
    a list of (from, to) pairs or a mapping {from: [to, ...]}. A state is a
    str (written exactly as the column's text form), an int, a bool, an
    Enum member such as a TextChoices value, or None for NULL; each is
    quoted as the guard parses it. On a field with choices every state must
    be one of them. Default name: <db_table>_<column>_transition."""

    guard = "transition"
    events = ("INSERT", "UPDATE")

    def __init__(self, model_name, field, edges=(), start=(), name=None):
        super().__init__(model_name, name)
        self.spec = guards.TransitionArguments("AddTransitionGuard", field, edges, start)
        self.field, self.edges, self.start = field, edges, start

    def arguments(self, model):
        return self.spec.arguments(self.column_of(model), model)

    def trigger_name(self, model):
        if self.name:
            return self.name
        name = "%s_%s_transition" % (model._meta.db_table, self.column_of(model)(self.field, "field"))
        self._check_length(name)
        return name

    def _kwargs(self):
        kwargs = super()._kwargs()
        kwargs["field"] = self.field
        if self.edges:
            kwargs["edges"] = self.edges
        if self.start:
            kwargs["start"] = list(self.start)
        return kwargs


class RemoveGuard(Operation):
    """Drops the guard an Add...Guard operation attached, forwards; attaches
    it again, backwards. raceguard refuses to rename, drop or retype a
    guarded column while its guard is attached, so a migration that renames
    one drops the guard first and attaches it again after:

        RemoveGuard(AddLockVersionGuard("order", field="version")),
        migrations.RenameField("order", "version", "lock_version"),
        AddLockVersionGuard("order", field="lock_version", name="shop_order_lock_version"),
    """

    reversible = True
    reduces_to_sql = True

    def __init__(self, guard):
        if not isinstance(guard, GuardOperation):
            raise GuardDeclarationError("RemoveGuard takes the Add...Guard operation that attached the guard, not %r" % (guard,))
        self.guard = guard

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self.guard.database_backwards(app_label, schema_editor, to_state, from_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self.guard.database_forwards(app_label, schema_editor, to_state, from_state)

    def describe(self):
        return "Removes raceguard.%s guard from %s" % (self.guard.guard, self.guard.model_name)

    @property
    def migration_name_fragment(self):
        return "remove_%s" % self.guard.migration_name_fragment

    def deconstruct(self):
        return (self.__class__.__name__, [self.guard], {})
