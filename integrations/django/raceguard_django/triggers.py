"""raceguard guards for django-pgtrigger's Meta.triggers.

    class Order(models.Model):
        lock_version = raceguard_django.VersionField()

        class Meta:
            triggers = [LockVersion(name="order_lock_version", strict=True)]

makemigrations then generates pgtrigger's AddTrigger operations, which
depend on raceguard_django's migration that creates the extension, so the
extension comes first. Unlike pgtrigger's own triggers, a guard:

- is named exactly as declared (no "pgtrigger_" prefix, no hash), because
  the trigger's name is the CONSTRAINT of its 23514 errors;
- runs raceguard's C function directly: no PL/pgSQL function is created and
  pgtrigger.ignore() cannot turn it off, so ignore() refuses a guard with
  GuardIgnoreError instead of seeming to work (SPEC: no ordinary role has a
  way around a guard).
"""
import re

import pgtrigger
from pgtrigger import compiler, migrations as pgtrigger_migrations, runtime

from . import guards
from ._sql import quote_literal
from .exceptions import GuardDeclarationError

EXTENSION_MIGRATION_APP = "raceguard_django"

try:  # Django 5.1 and later: dependencies are named tuples
    from django.db.migrations.autodetector import OperationDependency

    EXTENSION_DEPENDENCY = OperationDependency(EXTENSION_MIGRATION_APP, None, None, OperationDependency.Type.CREATE)
except ImportError:
    EXTENSION_DEPENDENCY = (EXTENSION_MIGRATION_APP, None, None, True)
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class GuardIgnoreError(RuntimeError):
    """pgtrigger.ignore() named (or, with no URIs, included) a raceguard
    guard, which nothing but a superuser's replica mode turns off."""


class GuardTriggerSql(compiler.UpsertTriggerSql):
    """A CREATE TRIGGER that executes raceguard's function itself. Migrations
    refer to this class by its path, so the template must stay compatible."""

    def get_template(self):
        return """
            DROP TRIGGER IF EXISTS {pgid} ON {table};
            CREATE TRIGGER {pgid}
                {when} {operation} ON {table}
                FOR EACH ROW EXECUTE FUNCTION {execute};
            COMMENT ON TRIGGER {pgid} ON {table} IS '{hash}';
        """


class Guard(pgtrigger.Trigger):
    guard = None
    when = pgtrigger.Before
    func = "RETURN NULL;"  # never run: the trigger executes raceguard's function

    def validate_name(self):
        super().validate_name()
        if not NAME.match(self.name):
            raise GuardDeclarationError(
                "%s: name %r must be lower case letters, digits and underscores (it is the trigger's name, "
                "and the CONSTRAINT name of the guard's errors)" % (self.__class__.__name__, self.name)
            )

    def get_pgid(self, model):
        return self.name

    def arguments(self, model):
        owner = "%s %r" % (self.__class__.__name__, self.name)
        return self.spec.arguments(guards.column_resolver(owner, model))

    def render_execute(self, model):
        return "raceguard.%s(%s)" % (self.guard, ", ".join(quote_literal(a) for a in self.arguments(model)))

    def compile(self, model):
        return compiler.Trigger(
            name=self.name,
            sql=GuardTriggerSql(
                pgid=self.get_pgid(model),
                func="",
                table=model._meta.db_table,
                when=self.when,
                operation=self.operation,
                execute=self.render_execute(model),
            ),
        )


class LockVersion(Guard):
    """raceguard.lock_version() on `field` (default "lock_version")."""

    guard = "lock_version"
    operation = pgtrigger.Insert | pgtrigger.Update

    def __init__(self, *, name, field="lock_version", strict=False, sqlstate=None):
        self.spec = guards.LockVersionArguments("LockVersion", field, strict, sqlstate)
        super().__init__(name=name)


class ImmutableOnceSet(Guard):
    """raceguard.immutable_once_set() on write-once `fields`."""

    guard = "immutable_once_set"
    operation = pgtrigger.Update

    def __init__(self, *, name, fields, allow_unset=False, when=pgtrigger.Before):
        self.spec = guards.ImmutableOnceSetArguments("ImmutableOnceSet", fields, allow_unset)
        if when not in (pgtrigger.Before, pgtrigger.After):
            raise GuardDeclarationError("ImmutableOnceSet: when must be pgtrigger.Before or pgtrigger.After")
        super().__init__(name=name, when=when)


class RunningBalance(Guard):
    """raceguard.running_balance(); the (group..., seq) index must come
    first (e.g. a UniqueConstraint in the same model's Meta)."""

    guard = "running_balance"
    operation = pgtrigger.Insert | pgtrigger.Update | pgtrigger.Delete

    def __init__(self, *, name, amount, balance, seq, group=(), min_balance=None, initial=None):
        self.spec = guards.RunningBalanceArguments("RunningBalance", amount, balance, seq, group, min_balance, initial)
        super().__init__(name=name)


class Transition(Guard):
    """raceguard.transition() on `field`, declared as pgtrigger.FSM is: a
    list of (from, to) `transitions`, plus the `start` states a row may be
    inserted in (None: NULL). States are quoted as the guard parses them."""

    guard = "transition"
    operation = pgtrigger.Insert | pgtrigger.Update

    def __init__(self, *, name, field, transitions=(), start=()):
        self.spec = guards.TransitionArguments("Transition", field, transitions, start)
        super().__init__(name=name)

    def arguments(self, model):
        owner = "%s %r" % (self.__class__.__name__, self.name)
        return self.spec.arguments(guards.column_resolver(owner, model), model)


def _is_guard(operation):
    trigger = getattr(operation, "trigger", None)
    return isinstance(operation, pgtrigger_migrations.AddTrigger) and isinstance(getattr(trigger, "sql", None), GuardTriggerSql)


def _add_operation(self, app_label, operation, dependencies=None, beginning=False):
    # A guard's AddTrigger depends on raceguard_django's migration that
    # creates the extension (an operation dependency on another app becomes
    # a migration dependency).
    if _is_guard(operation):
        dependencies = list(dependencies or []) + [EXTENSION_DEPENDENCY]
    return super(pgtrigger_migrations.MigrationAutodetectorMixin, self).add_operation(
        app_label, operation, dependencies=dependencies, beginning=beginning
    )


_original_set_ignore_state = runtime._set_ignore_state


def _set_ignore_state(model, trigger):
    if isinstance(trigger, Guard):
        raise GuardIgnoreError(
            "pgtrigger.ignore() cannot turn off raceguard guard %r on %s: guards have no way around them "
            "(name the URIs of your own triggers instead)" % (trigger.name, model._meta.label)
        )
    return _original_set_ignore_state(model, trigger)


def install_hooks():
    """Called from the app's ready(): orders guards after the extension in
    generated migrations, and makes pgtrigger.ignore() refuse guards."""
    pgtrigger_migrations.MigrationAutodetectorMixin.add_operation = _add_operation
    runtime._set_ignore_state = _set_ignore_state
