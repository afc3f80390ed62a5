"""Credit repair applications, the append-only lifecycle log, and where each history row came
from (a batch load or a one-company re-score).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("company_history", sa.Column("source", sa.String(8)))
    op.execute("UPDATE company_history SET source = 'batch'")
    op.create_table(
        "credit_repairs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uscc", sa.String(18), nullable=False, index=True),
        sa.Column("record_id", sa.String(128), nullable=False, index=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("applied_on", sa.Date, nullable=False),
        sa.Column("applicant", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date),
        sa.Column("decided_on", sa.Date),
        sa.Column("decided_by", sa.Integer),
        sa.Column("refusal_code", sa.String(32)),
        sa.Column("decision_reason", sa.Text),
    )
    op.create_table(
        "lifecycle_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("case_type", sa.String(16), nullable=False),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("uscc", sa.String(18), nullable=False, index=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False),
    )  # fmt: skip
    # append-only, as the audit log: the database refuses to change or delete a step
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION lifecycle_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'lifecycle_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER lifecycle_log_no_change BEFORE UPDATE OR DELETE ON lifecycle_log "
            "FOR EACH ROW EXECUTE FUNCTION lifecycle_log_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER lifecycle_log_no_{action.lower()} BEFORE {action} ON "
                "lifecycle_log BEGIN SELECT RAISE(ABORT, 'lifecycle_log is append-only'); END"
            )


def downgrade() -> None:
    op.drop_column("company_history", "source")
    op.drop_table("lifecycle_log")
    op.drop_table("credit_repairs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS lifecycle_log_append_only()")
