import os

from alembic import context
from sqlalchemy import create_engine

import raceguard_sqlalchemy
from models import metadata

if os.environ.get("RACEGUARD_TEST_ENTITY_COMPARATOR"):
    import entity_comparator
    entity_comparator.register()


def run_migrations_online():
    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=metadata,
            compare_type=True,  # Alembic < 1.12: so that a retyped guarded column is seen
            process_revision_directives=None if os.environ.get("RACEGUARD_TEST_NO_DIRECTIVES")
            else raceguard_sqlalchemy.process_revision_directives)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def run_migrations_offline():
    context.configure(url=os.environ["DATABASE_URL"], target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
