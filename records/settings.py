"""Process settings, read from CREDSUP_* environment variables and an optional .env file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import duckdb
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One instance per process, passed to what needs it (never a module-level global)."""

    model_config = SettingsConfigDict(env_prefix="CREDSUP_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var/data")
    """Root of the embedded store (Parquet datasets, quarantine, ingestion log)."""
    catalogue_path: Path | None = None
    """A catalogue YAML to use instead of the packaged default."""
    holiday_schedule: Path | None = None
    """The State Council's holiday schedules not yet in the `holidays` package (YAML, see
    `records.workdays.load_schedule`); every deadline counts with them. After setting or
    changing it, `credsup deadlines redate` moves the running deadlines counted without."""
    late_grace_days: int = Field(default=0, ge=0, le=366)
    """Ingestion: a row whose file says it was recorded more than this many days before the day
    of ingestion arrived late and counts as known from the day of ingestion (`credsup ingest
    --history` keeps a file's dates)."""
    duckdb_memory_limit: str = "6GB"
    duckdb_threads: int = Field(default=2, ge=1)
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CREDSUP_DATABASE_URL")
    )
    """Serving database (SQLAlchemy URL); default: a SQLite file in the data directory."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    model_reload_seconds: float | None = Field(default=None, gt=0)
    """Also look for a new champion on this period (None: only on POST /v1/admin/reload)."""
    public_requests_per_second: float = Field(default=20.0, gt=0)
    """Requests a second one public or company key may make (bursts of five times as many);
    429 with Retry-After beyond it. Authorities are not limited."""
    rate_table: Path | None = None
    """The file that holds the keys' request buckets, shared by the workers of one server
    (`credsup serve --workers N` makes it; `serving.limits.create_table`). None: each process
    keeps its own."""
    max_request_bytes: int = Field(default=2 * 2**20, ge=1024)
    """Largest request body the API reads (413 beyond it, before authentication): a batch of
    10,000 codes is about 220 kB."""

    auto_compact_files: int = Field(default=64, ge=0)
    """The service sorts its own small writes (results, objection steps, repairs, listings) into
    a run once a table has this many files not sorted yet (`serving.compactor`); 0: never (then
    only `credsup compact`)."""
    caller_seeds: Literal["refuse", "allow"] = "refuse"
    """Whether whoever draws a spot-check plan may choose its seed (`seed`, `--seed`). refuse:
    the service draws every seed, so nobody who can read the tiers can try seeds offline for a
    list they like before drawing; allow: a province that draws its seed in public (a lottery
    number, before a notary), or a rehearsal. The notice says whose seed it was either way."""

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_limit_duckdb_understands(cls, limit: str) -> str:
        try:
            duckdb.connect(config={"memory_limit": limit}).close()
        except duckdb.Error as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return limit

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def audit_quarantine_dir(self) -> Path:
        """Audit rows the serving database refused (serving.audit.AuditQuarantine)."""
        return self.data_dir / "audit"

    @property
    def serving_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'serving.db').resolve()}"
