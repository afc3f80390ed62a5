"""A check that could not be made (result `not_inspected`): why (`result_reason`: unreachable,
deregistered, ceased_trading, other) and the inspector's note (`result_note`).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("spot_check_tasks", sa.Column("result_reason", sa.String(32)))
    op.add_column("spot_check_tasks", sa.Column("result_note", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("spot_check_tasks") as batch:
        batch.drop_column("result_note")
        batch.drop_column("result_reason")
