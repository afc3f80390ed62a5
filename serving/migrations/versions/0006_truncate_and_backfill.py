"""The append-only logs refuse TRUNCATE too (PostgreSQL), and history rows loaded before 0002
get the region, industry, type and name the spot-check pool reads.

TRUNCATE is a statement of its own in PostgreSQL: the row triggers of 0001 and 0003 refuse
UPDATE and DELETE, but `TRUNCATE audit_log` emptied the log. SQLite has no TRUNCATE.

0002 added `region`, `industry`, `entity_type` and `name` to `company_history` without filling
them, so a date loaded under 0001 could not be drawn from (`credsup plan create` found no
company of the region) until it was loaded again. Rows loaded before 0002 (all four empty) are
filled from the company's served row: the only copy there is, so with today's region, industry
and type, not those of the row's day; rows loaded since keep theirs, empty ones too.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LOGS = ("audit_log", "lifecycle_log")
FILLED = ("region", "industry", "entity_type", "name")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LOGS:
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()"
            )
    before_0002 = " AND ".join(f"{column} IS NULL" for column in FILLED)
    op.execute(
        "UPDATE company_history SET "
        + ", ".join(
            f"{column} = (SELECT c.{column} FROM companies c WHERE c.uscc = company_history.uscc)"
            for column in FILLED
        )
        + f" WHERE {before_0002}"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LOGS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
