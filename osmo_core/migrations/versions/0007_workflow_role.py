"""The submitter's role (admin, user) kept with each workflow: fair share weighs by it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflows", sa.Column("role", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("role")
