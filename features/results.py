"""Stored feature and score results, kept per as-of date with their spec and method versions.

Layout under ``<data_dir>/results``::

    features/as_of=YYYY-MM-DD/<spec_version>.parquet
    scores/as_of=YYYY-MM-DD/<method_version>.parquet

A result for another date never replaces an earlier one, so "what was this company's grade on
2026-03-31" is answered by the latest score as of that day. Files are written to a temporary name
and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq


class Results:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "results"

    def _path(self, kind: str, as_of: date, version: str) -> Path:
        return self.root / kind / f"as_of={as_of.isoformat()}" / f"{version}.parquet"

    def write(self, kind: str, table: pa.Table, as_of: date, version: str) -> Path:
        path = self._path(kind, as_of, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        return path

    def read(self, kind: str, as_of: date, version: str) -> pa.Table | None:
        path = self._path(kind, as_of, version)
        return pq.read_table(path) if path.exists() else None

    def _files(self, kind: str, version: str | None) -> list[str]:
        base = self.root / kind
        if not base.exists():
            return []
        pattern = f"{version}.parquet" if version else "*.parquet"
        return sorted(str(p) for p in base.glob(f"as_of=*/{pattern}"))

    def history(self, uscc: str, version: str | None = None) -> list[dict[str, Any]]:
        """Every stored score of a company, oldest first (one per as-of date and method)."""
        files = self._files("scores", version)
        if not files:
            return []
        with duckdb.connect() as con:
            cursor = con.execute(
                "SELECT * FROM read_parquet(?, union_by_name = true) WHERE uscc = ? "
                "ORDER BY as_of, method_version",
                [files, uscc],
            )
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def score_on(self, uscc: str, on: date, version: str | None = None) -> dict[str, Any] | None:
        """The company's score as published on day `on`: the latest as-of date not after it."""
        earlier = [r for r in self.history(uscc, version) if r["as_of"] <= on]
        return earlier[-1] if earlier else None
