"""Workflow labels (OSMO's `labels`, `--label`), one row each, for `list --label` filters.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_labels",
        sa.Column("workflow_id", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_workflow_labels_key_value", "workflow_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_workflow_labels_key_value", "workflow_labels")
    op.drop_table("workflow_labels")
