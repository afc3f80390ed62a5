"""The embedded record store: Parquet datasets under a data directory, queried with DuckDB.

Layout under ``<data_dir>/store``::

    records/ingested_month=YYYYMM/<batch>-<n>.parquet    (a month's new records add files only)
    entities/<batch>-<n>.parquet                          (registration facts, versioned)
    events/<batch>-<n>.parquet                            (withdrawals, corrections, repairs …)
    quarantine/<batch>-<n>.parquet                        (rejected input rows with their reason)
    _log/<seq>-<batch>.json                               (one commit entry per batch)

Batch ids start with the commit sequence number, so they sort in commit order (later versions of
an entity recorded on the same day win by batch id).

A batch becomes visible only when its log entry exists: data files are first written to
``_staging``, moved into place, then the log entry is written with an atomic rename. Readers take
the file list from the log, so a writer killed at any point leaves the store as it was; the next
writer removes the orphaned files. One writer at a time (an exclusive ``flock``); readers need no
lock because committed files never change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from records.schema import TABLES

STORE_FORMAT = 2
"""Written into each batch's log entry: the columns its files have (see ADDED_IN)."""

ADDED_IN: dict[tuple[str, str], tuple[int, str]] = {
    ("records", "source_recorded_date"): (2, "DATE"),
    ("entities", "source_recorded_date"): (2, "DATE"),
}
"""Columns added after the first store format: the format that added them and their SQL type (an
older store is read as it is, the column NULL)."""


@dataclass
class Batch:
    """Files staged by one writer; committed together or not at all."""

    store: Store
    batch_id: str
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    files: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0

    @property
    def staging(self) -> Path:
        return self.store.root / "_staging" / self.batch_id

    def write_arrow(self, table: str, data: pa.Table, subdir: str = "") -> None:
        """Stage an Arrow table for `table` (cast to the stored schema)."""
        if data.num_rows == 0:
            return
        data = data.select(TABLES[table].names).cast(TABLES[table])
        rel = self._next_name(table, subdir)
        target = self.staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, target, compression="zstd")
        self.files.setdefault(table, []).append(rel)

    def copy(self, con: duckdb.DuckDBPyConnection, table: str, select_sql: str) -> int:
        """Stage the result of `select_sql` into this batch's partition; returns the row count.

        Records go to `ingested_month=YYYYMM`, the month of the batch: a month's new records add
        files there and never touch earlier partitions. (Partitioning by each record's own month
        instead cost twice the CPU of the write, measured in benchmarks/ingest.py.)
        """
        out = self.staging / "_copy" / table
        out.parent.mkdir(parents=True, exist_ok=True)
        written = con.execute(
            f"COPY ({select_sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd, "
            "COMPRESSION_LEVEL 1, PER_THREAD_OUTPUT true, OVERWRITE_OR_IGNORE true)"
        ).fetchall()
        count = int(written[0][0]) if written else 0
        if not out.exists() or count == 0:
            return count
        subdir = f"ingested_month={datetime.now(UTC):%Y%m}" if table == "records" else ""
        for path in sorted(out.rglob("*.parquet")):
            rel = self._next_name(table, subdir)
            (self.staging / rel).parent.mkdir(parents=True, exist_ok=True)
            path.rename(self.staging / rel)
            self.files.setdefault(table, []).append(rel)
        return count

    def _next_name(self, table: str, subdir: str) -> str:
        self.counter += 1
        parts = [table, subdir] if subdir else [table]
        return str(Path(*parts) / f"{self.batch_id}-{self.counter:05d}.parquet")


class Store:
    """A record store rooted at a directory; see the module docstring for the layout."""

    def __init__(self, root: Path, memory_limit: str = "6GB", threads: int = 2) -> None:
        self.root = Path(root)
        self.memory_limit = memory_limit
        self.threads = threads

    # ---- reading ------------------------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        """Committed batches, oldest first."""
        log_dir = self.root / "_log"
        if not log_dir.exists():
            return []
        entries = []
        for path in sorted(log_dir.glob("*.json")):
            entries.append(json.loads(path.read_text(encoding="utf-8")))
        return entries

    def version(self) -> str:
        """The last committed batch (its log entry's name): it changes with every commit, so
        what is computed from the store can be kept until it does."""
        log_dir = self.root / "_log"
        return max((p.name for p in log_dir.glob("*.json")), default="") if log_dir.exists() else ""

    def files(self, table: str) -> list[Path]:
        return [self.root / f for entry in self.log() for f in entry["files"].get(table, [])]

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views `records`, `entities`, `events`, `quarantine`."""
        tmp = self.root / "_tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(
            config={
                "memory_limit": self.memory_limit,
                "threads": self.threads,
                "temp_directory": str(tmp),
                "preserve_insertion_order": False,
            }
        )
        # the bar writes to stdout, which --json owns; in Jupyter DuckDB refuses the setting
        # without ipywidgets (and shows no bar there anyway)
        with contextlib.suppress(duckdb.InvalidInputException):
            con.execute("SET enable_progress_bar = false")
        self.attach_views(con)
        return con

    def attach_views(self, con: duckdb.DuckDBPyConnection) -> None:
        log = self.log()
        for table, schema in TABLES.items():
            paths = [str(self.root / f) for e in log for f in e["files"].get(table, [])]
            if paths:
                listing = "[" + ", ".join(_quote(p) for p in paths) + "]"
                # a column added since: union_by_name fills it for older files, unless none has it
                newest = max(e.get("format", 1) for e in log if e["files"].get(table))
                columns = ", ".join(
                    f"CAST(NULL AS {ADDED_IN[table, c][1]}) AS {c}"
                    if ADDED_IN.get((table, c), (1, ""))[0] > newest
                    else c
                    for c in schema.names
                )
                con.execute(
                    f"CREATE OR REPLACE VIEW {table} AS SELECT {columns} FROM read_parquet("
                    f"{listing}, hive_partitioning=false, union_by_name=true)"
                )
            else:
                con.register(f"_empty_{table}", schema.empty_table())
                con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _empty_{table}")

    def read(self, table: str) -> pa.Table:
        """A whole table as Arrow (small stores, tests)."""
        with self.connect() as con:
            return con.sql(f"SELECT * FROM {table}").to_arrow_table()

    # ---- writing ------------------------------------------------------------------------------

    @contextmanager
    def begin(self, kind: str, **info: Any) -> Iterator[Batch]:
        """Stage a batch; commit it when the block ends normally, discard it on any exception."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "_lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._collect_garbage()
            # the id sorts in commit order: the sequence number comes first, and the lock is held
            # from here to the commit (a killed batch's number is simply used again)
            seq = self._next_seq()
            now = datetime.now(UTC)
            batch_id = f"{seq:08d}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            batch = Batch(self, batch_id, kind, dict(info), seq=seq)
            batch.staging.mkdir(parents=True)
            try:
                yield batch
                self._commit(batch)
            finally:
                shutil.rmtree(batch.staging, ignore_errors=True)

    def _commit(self, batch: Batch) -> None:
        for rels in batch.files.values():
            for rel in rels:
                target = self.root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(batch.staging / rel, target)
        _fsync_dirs({(self.root / rel).parent for rels in batch.files.values() for rel in rels})
        log_dir = self.root / "_log"
        log_dir.mkdir(exist_ok=True)
        seq = batch.seq
        entry = {
            "seq": seq,
            "batch_id": batch.batch_id,
            "kind": batch.kind,
            "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "format": STORE_FORMAT,
            "files": batch.files,
            **batch.info,
        }
        tmp = log_dir / f".{batch.batch_id}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh, ensure_ascii=False, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, log_dir / f"{seq:08d}-{batch.batch_id}.json")
        _fsync_dirs({log_dir})

    def _next_seq(self) -> int:
        log_dir = self.root / "_log"
        return len(list(log_dir.glob("*.json"))) + 1 if log_dir.exists() else 1

    def _collect_garbage(self) -> None:
        """Remove what a killed writer left: staging directories and uncommitted data files."""
        shutil.rmtree(self.root / "_staging", ignore_errors=True)
        for tmp in (self.root / "_log").glob(".*.tmp"):
            tmp.unlink()
        committed = {f for e in self.log() for rels in e["files"].values() for f in rels}
        for table in TABLES:
            base = self.root / table
            if not base.exists():
                continue
            for path in base.rglob("*.parquet"):
                if str(path.relative_to(self.root)) not in committed:
                    path.unlink()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fsync_dirs(dirs: set[Path]) -> None:
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
