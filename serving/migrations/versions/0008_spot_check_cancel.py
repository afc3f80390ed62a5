"""Cancelled spot-check tasks: when, by whom and why a task's check was called off (the draw is
unchanged; the step is also kept in `lifecycle_log`, case_type `spot_check`).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("spot_check_tasks", sa.Column("cancelled_at", sa.DateTime(timezone=True)))
    op.add_column("spot_check_tasks", sa.Column("cancelled_by", sa.Integer))
    op.add_column("spot_check_tasks", sa.Column("cancel_reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("spot_check_tasks") as batch:
        batch.drop_column("cancel_reason")
        batch.drop_column("cancelled_by")
        batch.drop_column("cancelled_at")
