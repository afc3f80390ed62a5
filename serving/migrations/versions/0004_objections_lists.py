"""Objections to records and list entries (DOMAIN §8 and §10); steps go to `lifecycle_log`.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "objections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uscc", sa.String(18), nullable=False, index=True),
        sa.Column("record_id", sa.String(128), nullable=False, index=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("filed_on", sa.Date, nullable=False),
        sa.Column("filed_by", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("extended", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("outcome", sa.String(24)),
        sa.Column("correction", sa.Text),
        sa.Column("decided_on", sa.Date),
        sa.Column("decided_by", sa.Integer),
        sa.Column("decision_reason", sa.Text),
    )
    op.create_table(
        "list_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uscc", sa.String(18), nullable=False, index=True),
        sa.Column("list", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("source_records", sa.Text),
        sa.Column("proposed_on", sa.Date, nullable=False),
        sa.Column("proposed_by", sa.Integer),
        sa.Column("objection_due", sa.Date),
        sa.Column("objection_reason", sa.Text),
        sa.Column("objection_outcome", sa.String(16)),
        sa.Column("listed_on", sa.Date),
        sa.Column("record_id", sa.String(128), index=True),
        sa.Column("term_end", sa.Date),
        sa.Column("earliest_removal", sa.Date),
        sa.Column("removed_on", sa.Date),
        sa.Column("removal_reason", sa.Text),
        sa.Column("removal_record_id", sa.String(128)),
    )


def downgrade() -> None:
    op.drop_table("list_entries")
    op.drop_table("objections")
