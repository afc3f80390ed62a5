"""Spot checks: check items, inspectors and conflicts, plans, tasks, inspector assignments;
the company name in `companies`; region, industry, type and name in `company_history`.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("companies", sa.Column("name", sa.String(256)))
    # the facts a plan's pool needs, as of each load (read without the served documents)
    for column in (
        sa.Column("region", sa.String(6)),
        sa.Column("industry", sa.String(8)),
        sa.Column("entity_type", sa.String(32)),
        sa.Column("name", sa.String(256)),
    ):
        op.add_column("company_history", column)
    op.create_index("ix_company_history_as_of_uscc", "company_history", ["as_of", "uscc"])
    op.create_table(
        "check_items",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("department", sa.String(64), nullable=False, index=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inspectors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128)),
        sa.Column("department", sa.String(64), nullable=False, index=True),
        sa.Column("area", sa.String(12), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inspector_conflicts",
        sa.Column("inspector_id", sa.String(64), primary_key=True),
        sa.Column("uscc", sa.String(18), primary_key=True),
        sa.Column("reason", sa.String(256)),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "plan_counter",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO plan_counter (name, n) VALUES ('plans', 0)")
    op.create_table(
        "spot_check_plans",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("due_estimated", sa.Boolean, nullable=False),
        sa.Column("snapshot_date", sa.Date, nullable=False),
        sa.Column("seed", sa.String(40), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("pool_hash", sa.String(64), nullable=False),
        sa.Column("inspector_hash", sa.String(64), nullable=False),
        sa.Column("list_sha256", sa.String(64), nullable=False),
        sa.Column("list_blob", sa.LargeBinary, nullable=False),
        sa.Column("snapshot_blob", sa.LargeBinary, nullable=False),
        sa.Column("tasks", sa.Integer, nullable=False),
        sa.Column("visits", sa.Integer, nullable=False),
    )
    op.create_table(
        "spot_check_tasks",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("plan_id", sa.String(32), sa.ForeignKey("spot_check_plans.id"), nullable=False,
                  index=True),
        sa.Column("plan_seq", sa.Integer, nullable=False),
        sa.Column("visit_no", sa.Integer, nullable=False),
        sa.Column("uscc", sa.String(18), nullable=False, index=True),
        sa.Column("company_name", sa.String(256)),
        sa.Column("region", sa.String(6)),
        sa.Column("entity_type", sa.String(32)),
        sa.Column("tier", sa.String(1), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("department", sa.String(64), nullable=False, index=True),
        sa.Column("inspectors", sa.String(512), nullable=False),
        sa.Column("inclusion_prob", sa.Float, nullable=False),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False, index=True),
        sa.Column("result", sa.String(16)),
        sa.Column("check_date", sa.Date),
        sa.Column("findings", sa.Text),
        sa.Column("result_at", sa.DateTime(timezone=True)),
        sa.Column("result_by", sa.Integer),
        sa.Column("record_id", sa.String(64)),
        sa.Column("published_late", sa.Boolean),
        sa.UniqueConstraint("plan_id", "uscc", "item_id", name="uq_task_plan_company_item"),
    )  # fmt: skip
    op.create_table(
        "spot_check_assignments",
        sa.Column("task_id", sa.BigInteger, sa.ForeignKey("spot_check_tasks.id"),
                  primary_key=True),
        sa.Column("inspector_id", sa.String(64), primary_key=True, index=True),
    )  # fmt: skip


def downgrade() -> None:
    for table in (
        "spot_check_assignments",
        "spot_check_tasks",
        "spot_check_plans",
        "plan_counter",
        "inspector_conflicts",
        "inspectors",
        "check_items",
    ):
        op.drop_table(table)  # fmt: skip
    op.drop_index("ix_company_history_as_of_uscc", "company_history")
    for column in ("region", "industry", "entity_type", "name"):
        op.drop_column("company_history", column)
    op.drop_column("companies", "name")
