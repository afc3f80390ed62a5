"""Company keys: a key of role `company` speaks for one company (its unified social credit code).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("uscc", sa.String(18)))


def downgrade() -> None:
    op.drop_column("api_keys", "uscc")
