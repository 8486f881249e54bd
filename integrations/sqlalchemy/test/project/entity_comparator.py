"""A stand-in for alembic_utils' trigger comparison (alembic_utils is not
packaged by Debian), shaped as its source is: a "schema" comparator that
lists every trigger of the watched schema as a PGTrigger whose definition
is pg_get_triggerdef's text, and proposes a DropOp for each one it was not
given (here: none), with CreateOp as the reverse."""
from alembic.autogenerate import comparators, renderers
from alembic.operations import MigrateOperation
from sqlalchemy import text


class PGTrigger:
    def __init__(self, schema, signature, on_entity, definition):
        self.schema, self.signature, self.on_entity, self.definition = schema, signature, on_entity, definition

    @property
    def identity(self):
        return "PGTrigger: %s.%s %s" % (self.schema, self.signature, self.on_entity)


class CreateOp(MigrateOperation):
    def __init__(self, target):
        self.target = target

    def reverse(self):
        return DropOp(self.target)


class DropOp(MigrateOperation):
    def __init__(self, target):
        self.target = target

    def reverse(self):
        return CreateOp(self.target)


@renderers.dispatch_for(DropOp)
def _render_drop(autogen_context, op):
    return "op.drop_entity(%r)" % op.target.identity


@renderers.dispatch_for(CreateOp)
def _render_create(autogen_context, op):
    return "op.create_entity(%r)" % op.target.identity


def register():
    @comparators.dispatch_for("schema")
    def compare_registered_entities(autogen_context, upgrade_ops, schemas):
        rows = autogen_context.connection.execute(text(
            "SELECT n.nspname, t.tgname, c.relname, pg_get_triggerdef(t.oid)"
            "  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT t.tgisinternal AND n.nspname = 'public'"))
        for schema, name, table, definition in rows:
            definition = definition.split(" ", 3)[3]  # without "CREATE TRIGGER name", as alembic_utils keeps it
            upgrade_ops.ops.append(DropOp(PGTrigger(schema, name, table, definition)))
