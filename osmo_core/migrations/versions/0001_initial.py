"""Initial schema: workflows, groups, task attempts, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("file", sa.Text),
        sa.Column("spec_original", sa.Text, nullable=False),
        sa.Column("spec_rendered", sa.Text, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("set_values", sa.Text, nullable=False),
        sa.Column("submit_time", sa.Float, nullable=False),
        sa.Column("start_time", sa.Float),
        sa.Column("end_time", sa.Float),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_workflows_name_seq", "workflows", ["name", "seq"], unique=True)
    op.create_index("ix_workflows_status", "workflows", ["status"])
    op.create_index("ix_workflows_user", "workflows", ["user"])
    op.create_table(
        "groups",
        sa.Column("workflow_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("scheduling_time", sa.Float),
        sa.Column("start_time", sa.Float),
        sa.Column("end_time", sa.Float),
        sa.Column("message", sa.Text),
    )
    op.create_table(
        "tasks",
        sa.Column("workflow_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("retry_id", sa.Integer, primary_key=True),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("backend", sa.String(64)),
        sa.Column("node", sa.String(255)),
        sa.Column("alloc", sa.Text),
        sa.Column("workdir", sa.Text),
        sa.Column("output_path", sa.Text),
        sa.Column("log_path", sa.Text),
        sa.Column("cancel_reason", sa.String(32)),
        sa.Column("create_time", sa.Float, nullable=False),
        sa.Column("start_time", sa.Float),
        sa.Column("end_time", sa.Float),
        sa.Column("message", sa.Text),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("workflow_id", sa.String(128), nullable=False),
        sa.Column("group_name", sa.String(64)),
        sa.Column("task", sa.String(64)),
        sa.Column("retry_id", sa.Integer),
        sa.Column("status", sa.String(32)),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_events_workflow", "events", ["workflow_id", "id"])


def downgrade() -> None:
    for table in ("events", "tasks", "groups", "workflows"):
        op.drop_table(table)
