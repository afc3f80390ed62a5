"""The serving database: SQLAlchemy 2 tables, engines and Alembic migrations.

SQLite (a file in the data directory) is the embedded default; `DATABASE_URL` selects
PostgreSQL. The schema is created and upgraded by Alembic only (`serving/migrations`), never by
`create_all`, so both databases go through the same migrations.

- `companies`: one row per company, the latest evaluation and tier as documents ready to serve
  (`full_doc` for the roles that see everything, `public_doc` for the public view, masked).
- `company_history`: every loaded evaluation and tier, per as-of date.
- `api_keys`: keys stored as SHA-256 hashes (keys are 256-bit random, so no slow hash is needed),
  with role and department.
- `audit_log`: every read of a company's credit information; append-only (triggers refuse
  UPDATE and DELETE on both databases).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

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
)  # fmt: skip

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("department", sa.String(64)),
    sa.Column("name", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)  # fmt: skip

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("department", sa.String(64)),
    sa.Column("uscc", sa.String(18), index=True),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("purpose", sa.String(256)),
    sa.Column("status", sa.Integer, nullable=False),
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


def upgrade(url: str) -> None:
    """Bring the database to the latest schema (idempotent)."""
    command.upgrade(alembic_config(url), "head")
