"""Serving tables: companies, history, API keys, append-only audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "companies",
        sa.Column("uscc", sa.String(18), primary_key=True),
        sa.Column("region", sa.String(6)),
        sa.Column("industry", sa.String(8)),
        sa.Column("entity_type", sa.String(32)),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("tier", sa.String(1)),
        sa.Column("grade", sa.String(8)),
        sa.Column("full_doc", sa.Text, nullable=False),
        sa.Column("public_doc", sa.Text, nullable=False),
    )
    for column in ("region", "industry", "as_of", "tier"):
        op.create_index(f"ix_companies_{column}", "companies", [column])
    op.create_table(
        "company_history",
        sa.Column("uscc", sa.String(18), primary_key=True),
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("tier", sa.String(1)),
        sa.Column("probability", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("grade", sa.String(8)),
        sa.Column("model_version", sa.String(64)),
        sa.Column("method_version", sa.String(64)),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("department", sa.String(64)),
        sa.Column("name", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("department", sa.String(64)),
        sa.Column("uscc", sa.String(18)),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(256)),
        sa.Column("status", sa.Integer, nullable=False),
    )  # fmt: skip
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_uscc", "audit_log", ["uscc"])
    # append-only: the database itself refuses to change or delete an audit entry
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{action.lower()} BEFORE {action} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    for table in ("audit_log", "api_keys", "company_history", "companies"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
