"""Held tasks: interactive tasks waiting for their user, failed tasks kept for debugging.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("hold", sa.String(16)))
    op.add_column("tasks", sa.Column("hold_until", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("hold_until")
        batch.drop_column("hold")
