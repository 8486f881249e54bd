import os

from alembic import context
from sqlalchemy import create_engine

import raceguard_sqlalchemy
from models import metadata


def run_migrations_online():
    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          include_object=raceguard_sqlalchemy.include_object, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
