"""The serving database: SQLAlchemy 2 tables, engines and Alembic migrations.

SQLite (a file in the data directory) is the embedded default; `DATABASE_URL` selects
PostgreSQL. The schema is created and upgraded by Alembic only (`serving/migrations`), never by
`create_all`, so both databases go through the same migrations.

- `companies`: one row per company, the latest evaluation and tier as documents ready to serve
  (`full_doc` for the roles that see everything, `public_doc` for the public view, masked).
- `company_history`: every loaded evaluation and tier, per as-of date; `source` is `batch` for a
  load of a whole batch and `rescore` for one company re-scored on demand.
- `api_keys`: keys stored as SHA-256 hashes (keys are 256-bit random, so no slow hash is needed),
  with role and department, or the company a `company` key speaks for (migration 0005).
- spot checks (`serving.spotcheck`): `check_items`, `check_list_settings` (the list's yearly
  and general-item caps, migration 0007), `inspectors`, `inspector_conflicts`,
  `spot_check_plans` (parameters, seed, hashes, the stored list and snapshot), `spot_check_tasks`
  (one per company and item, with its result; why a check could not be made, migration 0009)
  and `spot_check_assignments` (task → inspector);
  `plan_counter` gives each plan its `seq` (the order plans were drawn in) and serialises their
  creation; plan ids number the plans of each year (`SJ-<year>-<n>`).
- credit lifecycle: `credit_repairs` (applications, never deleted) and `lifecycle_log` (every step
  of their handling; append-only like the audit log); `objections` and `list_entries` (migration
  0004), whose steps go to the same log.
- `audit_log`: every read of a company's credit information; append-only (triggers refuse
  UPDATE and DELETE on both databases); `detail` (migration 0010): the query parameters.
"""

from __future__ import annotations

import fcntl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

metadata = sa.MetaData()


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A moment, stored in UTC and read back with its zone on every database: PostgreSQL's
    `timestamptz` gave `…+00:00` and SQLite the same moment without a zone, so an answer's
    times differed by the serving database. A moment without a zone is taken as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


companies = sa.Table(
    "companies", metadata,
    sa.Column("uscc", sa.String(18), primary_key=True),
    sa.Column("region", sa.String(6), index=True),
    sa.Column("industry", sa.String(8), index=True),
    sa.Column("entity_type", sa.String(32)),
    sa.Column("as_of", sa.Date, nullable=False, index=True),
    sa.Column("tier", sa.String(1), index=True),
    sa.Column("grade", sa.String(8)),
    sa.Column("full_doc", sa.Text, nullable=False),
    sa.Column("public_doc", sa.Text, nullable=False),
    sa.Column("name", sa.String(256)),
)  # fmt: skip

company_history = sa.Table(
    "company_history", metadata,
    sa.Column("uscc", sa.String(18), primary_key=True),
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("tier", sa.String(1)),
    sa.Column("probability", sa.Float),
    sa.Column("score", sa.Float),
    sa.Column("grade", sa.String(8)),
    sa.Column("model_version", sa.String(64)),
    sa.Column("method_version", sa.String(64)),
    sa.Column("region", sa.String(6)),
    sa.Column("industry", sa.String(8)),
    sa.Column("entity_type", sa.String(32)),
    sa.Column("name", sa.String(256)),
    sa.Column("source", sa.String(8)),
    sa.Index("ix_company_history_as_of_uscc", "as_of", "uscc"),
)  # fmt: skip

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("department", sa.String(64)),
    sa.Column("uscc", sa.String(18)),
    sa.Column("name", sa.String(128)),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime()),
)  # fmt: skip

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", UtcDateTime(), nullable=False, index=True),
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("department", sa.String(64)),
    sa.Column("uscc", sa.String(18), index=True),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("purpose", sa.String(256)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("detail", sa.String(512)),  # what else chose what was read (migration 0010)
)  # fmt: skip


check_items = sa.Table(
    "check_items", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("department", sa.String(64), nullable=False, index=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

check_list_settings = sa.Table(
    "check_list_settings", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip
"""Settings of the check-item list as its file gave them (JSON values; migration 0007)."""

inspectors = sa.Table(
    "inspectors", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128)),
    sa.Column("department", sa.String(64), nullable=False, index=True),
    sa.Column("area", sa.String(12), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)  # fmt: skip

inspector_conflicts = sa.Table(
    "inspector_conflicts", metadata,
    sa.Column("inspector_id", sa.String(64), primary_key=True),
    sa.Column("uscc", sa.String(18), primary_key=True),
    sa.Column("reason", sa.String(256)),
    sa.Column("declared_at", UtcDateTime(), nullable=False),
)  # fmt: skip

plan_counter = sa.Table(
    "plan_counter", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)  # fmt: skip

spot_check_plans = sa.Table(
    "spot_check_plans", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False, unique=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
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
)  # fmt: skip

spot_check_tasks = sa.Table(
    "spot_check_tasks", metadata,
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
    sa.Column("result_at", UtcDateTime()),
    sa.Column("result_by", sa.Integer),
    sa.Column("record_id", sa.String(64)),
    sa.Column("published_late", sa.Boolean),
    # a check called off after the draw (migration 0008): not overdue, not counted in caps
    sa.Column("cancelled_at", UtcDateTime()),
    sa.Column("cancelled_by", sa.Integer),
    sa.Column("cancel_reason", sa.Text),
    # a check that could not be made (result not_inspected, migration 0009): why, and the note
    sa.Column("result_reason", sa.String(32)),
    sa.Column("result_note", sa.Text),
    sa.UniqueConstraint("plan_id", "uscc", "item_id", name="uq_task_plan_company_item"),
)  # fmt: skip

spot_check_assignments = sa.Table(
    "spot_check_assignments", metadata,
    sa.Column("task_id", sa.BigInteger, sa.ForeignKey("spot_check_tasks.id"), primary_key=True),
    sa.Column("inspector_id", sa.String(64), primary_key=True, index=True),
)  # fmt: skip


credit_repairs = sa.Table(
    "credit_repairs", metadata,
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
)  # fmt: skip

objections = sa.Table(
    "objections", metadata,
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
)  # fmt: skip
"""Objections to records (DOMAIN §10): open → decided, never deleted."""

list_entries = sa.Table(
    "list_entries", metadata,
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
)  # fmt: skip
"""List entries (DOMAIN §8): proposed/notified → listed → removed or expired, never deleted."""

lifecycle_log = sa.Table(
    "lifecycle_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("case_type", sa.String(16), nullable=False),
    sa.Column("case_id", sa.Integer, nullable=False),
    sa.Column("uscc", sa.String(18), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.Integer),
    sa.Column("detail", sa.Text, nullable=False),
)  # fmt: skip


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


MIGRATION_LOCK = 321_002_015
"""The PostgreSQL advisory lock that lets one process at a time migrate a database."""


def schema_revision(url: str) -> str | None:
    """The Alembic revision the database is at (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as con:
            return MigrationContext.configure(con).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Bring the database to the latest schema (idempotent). One process at a time: several
    workers (or commands) starting on an empty database once raced to create the same tables and
    the service stopped; now the others wait, then find it migrated."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as con:
                con.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
                con.commit()
                try:
                    command.upgrade(alembic_config(url), "head")
                finally:
                    con.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                    con.commit()
        finally:
            engine.dispose()
        return
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        lock = Path(f"{parsed.database}.migrate.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
            command.upgrade(alembic_config(url), "head")
        return
    command.upgrade(alembic_config(url), "head")
