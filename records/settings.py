"""Process settings, read from CREDSUP_* environment variables and an optional .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One instance per process, passed to what needs it (never a module-level global)."""

    model_config = SettingsConfigDict(env_prefix="CREDSUP_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var/data")
    """Root of the embedded store (Parquet datasets, quarantine, ingestion log)."""
    catalogue_path: Path | None = None
    """A catalogue YAML to use instead of the packaged default."""
    duckdb_memory_limit: str = "6GB"
    duckdb_threads: int = 2

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"
