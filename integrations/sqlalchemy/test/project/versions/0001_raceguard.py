"""raceguard: a no-op in a database made from a template that holds it

Revision ID: 0001_raceguard
Revises:
"""
from alembic import op

import raceguard_sqlalchemy  # noqa: F401  (registers op.*_guard)

revision = "0001_raceguard"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_raceguard_extension()


def downgrade():
    op.drop_raceguard_extension()
