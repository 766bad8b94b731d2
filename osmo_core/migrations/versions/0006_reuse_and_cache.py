"""Restart reuses completed groups' outputs; the task cache keys attempts by their inputs.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflows", sa.Column("parent_workflow_id", sa.String(128)))
    op.add_column("tasks", sa.Column("reused_from", sa.String(255)))
    op.add_column("tasks", sa.Column("cache_key", sa.String(64)))
    op.create_index("ix_tasks_cache_key", "tasks", ["cache_key"])


def downgrade() -> None:
    op.drop_index("ix_tasks_cache_key", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("cache_key")
        batch.drop_column("reused_from")
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("parent_workflow_id")
