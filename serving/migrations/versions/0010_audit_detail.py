"""The audit log keeps what else chose what was read: `audit_log.detail`, the request's query
parameters as written (`on=2026-03-31` of a records read, `as_of=` of a re-score, a list's
filters), or a command's options; for a malformed code, the code as given (the `uscc` column
stays empty). Rows written before have none.

Adding a nullable column keeps the table, so its append-only triggers stay as they are. On
SQLite the downgrade drops the column in place (`ALTER TABLE … DROP COLUMN`, SQLite 3.35): a
batch copy of the table would drop the triggers with the old table.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("detail", sa.String(512)))


def downgrade() -> None:
    op.execute("ALTER TABLE audit_log DROP COLUMN detail")
