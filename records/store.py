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

Compaction (`Store.compact`) rewrites a table's files sorted by company (records, entities) or
by record (events), so that a look-up of one company reads the few files and row groups that
hold it instead of every file (records: by category first within each file's share of codes,
see `CLUSTER_BY`). It is a batch like any other: its entry lists the new files and, under
`replaces`, the files they take the place of, with the same rows to the bit (checked before the
commit). Rows are copied as they are, `batch_id` included, so nothing a reader computes changes.
A replaced file is no longer read by a new connection; it is deleted by a later writer once its
replacement is `RETIRED_KEPT` old, so that a reader that listed it before (a long feature build)
can finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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

SORT_KEYS: dict[str, tuple[str, ...]] = {
    "records": ("uscc", "event_date", "record_id"),
    "entities": ("uscc", "recorded_date", "batch_id"),
    "events": ("record_id", "recorded_date", "event_id"),
}
"""The tables `Store.compact` rewrites, and the order of their compacted files: a company's
records and versions, a record's events, lie together (the quarantine is read whole, never per
company, and is left as written)."""

CLUSTER_BY: dict[str, str] = {"records": "category"}
"""Within each share of codes (about a file's rows, bounds from quantiles of the code:
`_share_sql`), rows are ordered by this column first, then by `SORT_KEYS`. The feature build
filters records by category and skips the row groups of the others: records sorted by code alone
made it 12.3-15.1 s at 1 M companies against 8.6-10.0 s in ingestion order (this layout
8.1-8.7 s), while a company's read still opens only the 2-3 files whose range of codes holds
it."""

ROW_GROUP_ROWS = 16_384
"""Rows per row group of a compacted file: a look-up of one company reads the groups that hold
it (one per category it has records of; DuckDB skips the others by their min/max statistics).
4,096 and 8,192 measured no better at 1 M companies."""

ROW_GROUPS_PER_FILE = 32
"""Row groups per compacted file (about 0.5 M rows): a read of one company opens only the files
whose range holds it (`Store.scan`) and looks at their groups' statistics."""

RETIRED_KEPT = timedelta(hours=24)
"""How long a replaced file stays on disk after its compaction (see the module docstring)."""

MAX_RUNS = 4
"""A table's sorted runs (one per compaction) before the next compaction merges them all."""


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
    replaces: dict[str, list[str]] = field(default_factory=dict)
    discard: bool = False

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

    def rewrite_sorted(self, table: str, inputs: dict[str, int]) -> int:
        """Stage `inputs` (files of `table`, by path under the store, with their store format)
        rewritten in `SORT_KEYS[table]` order (by `CLUSTER_BY` first within each share of
        codes); returns the row count. Raises if the staged files do not hold exactly the same
        rows. Each file's range of the first key is kept in the batch's entry (`ranges`), so
        that a read of one company lists only its files."""
        schema = TABLES[table]
        source = _source(self.store.root, table, inputs)
        out = self.staging / "_sorted" / table
        out.mkdir(parents=True)
        # the order of the output is the point: insertion order kept
        con = self.store._open(views=False, preserve_insertion_order=True)
        try:
            order = list(SORT_KEYS[table])
            if table in CLUSTER_BY:
                share = _share_sql(con, table, source)
                order = [*([share] if share else []), CLUSTER_BY[table], *order]
            con.execute(
                f"COPY ({source} ORDER BY {', '.join(order)}) TO '{out}' "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
                f"ROW_GROUPS_PER_FILE {ROW_GROUPS_PER_FILE}, FILENAME_PATTERN 'part{{i}}')"
            )
            written = sorted(out.glob("*.parquet"), key=lambda p: int(p.stem[4:]))
            rows = _same_rows(con, source, written, schema.names)
            first = SORT_KEYS[table][0]
            listing = "[" + ", ".join(_quote(str(p)) for p in written) + "]"
            bounds = {
                Path(name): (low, high)
                for name, low, high in con.execute(
                    f"SELECT filename, CAST(min({first}) AS VARCHAR), "
                    f"CAST(max({first}) AS VARCHAR) FROM read_parquet({listing}, filename=true) "
                    "GROUP BY filename"
                ).fetchall()
            }
        finally:
            con.close()
        if rows is None:
            raise RuntimeError(f"compaction of {table} would change its rows; nothing committed")
        ranges = self.info.setdefault("ranges", {}).setdefault(table, {})
        for path in written:
            low, high = bounds[path]
            rel = self._next_name(table, "compacted" if table == "records" else "")
            (self.staging / rel).parent.mkdir(parents=True, exist_ok=True)
            path.rename(self.staging / rel)
            self.files.setdefault(table, []).append(rel)
            ranges[rel] = [low, high]
        return rows

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
        self._shared: tuple[str, duckdb.DuckDBPyConnection] | None = None
        self._shared_lock = threading.Lock()
        self._read_plan: tuple[str, dict[str, tuple[dict[str, int], dict[str, Any]]]] | None = None
        self._log_entries: dict[tuple[str, int], dict[str, Any]] = {}
        self.on_commit: Callable[[Batch], None] | None = None
        """Called after each commit of this `Store` (under the store's lock; it must be quick:
        `serving.compactor.AutoCompactor.notify`); its failure never undoes the commit."""
        self._log_lock = threading.Lock()

    # ---- reading ------------------------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        """Committed batches, oldest first (shared: read them, never change them).

        An entry file never changes once committed (it is renamed into place whole), so each is
        parsed once per `Store`: a later call lists the directory and parses only entries it has
        not seen (by name and inode, so a store restored from a backup is read afresh; an entry
        rewritten in place, same file, is not read again: replace a file whole). The log
        grows by one entry per batch, the service's small writes included; parsing all of it on
        every commit cost 20 ms at 600 entries, twice a write, and grew with it."""
        log_dir = self.root / "_log"
        try:
            with os.scandir(log_dir) as found:
                names = sorted(
                    (e.name, e.inode()) for e in found
                    if e.name.endswith(".json") and not e.name.startswith(".")
                )  # fmt: skip
        except FileNotFoundError:
            return []
        with self._log_lock:
            seen = self._log_entries
            fresh = {key: seen.get(key) or json.loads((log_dir / key[0]).read_text("utf-8"))
                     for key in names}  # fmt: skip
            self._log_entries = fresh
        return list(fresh.values())

    def _files_and_ranges(self, table: str) -> tuple[dict[str, int], dict[str, Any]]:
        """The table's live files (`_live`) and the compacted ones' ranges of codes, worked out
        from the log again only when a batch was committed since (a read of one company asks
        for them on every request)."""
        version = self.version()
        cached = self._read_plan
        if cached is None or cached[0] != version:
            log = self.log()
            plan = {
                t: (
                    _live(log, t),
                    {f: r for e in log for f, r in e.get("ranges", {}).get(t, {}).items()},
                )
                for t in TABLES
            }
            cached = self._read_plan = (version, plan)
        return cached[1][table]

    def scan(self, table: str, key: str) -> str:
        """SQL for the table's rows, as its view gives them, from only the files that may hold
        rows whose first sort key (`SORT_KEYS`: the company's code, a record's id) is `key`:
        a compacted file whose range leaves it out is not opened. Use it in a FROM clause and
        filter on the key as well. Reading one company's records through the view looks at
        every row group of every file: 17.9 ms at 11 M compacted records, 8.5 ms through this."""
        live, ranges = self._files_and_ranges(table)
        wanted = {f: v for f, v in live.items()
                  if f not in ranges or ranges[f][0] <= key <= ranges[f][1]}  # fmt: skip
        if not wanted:
            return f"(SELECT * FROM {table} WHERE false)"
        return f"({_source(self.root, table, wanted)})"

    def version(self) -> str:
        """The last committed batch (its log entry's name): it changes with every commit, so
        what is computed from the store can be kept until it does.

        Read from `_log/HEAD`, which each commit writes after its entry: listing the log instead
        took 3.8 ms at 3,827 entries (a page asks several times) and grows by one entry per
        batch. Without a HEAD (a store written before it) the log is listed. A writer killed
        between its entry and the HEAD leaves the HEAD one batch behind until `repair_head`
        (the next writer, and the service's compactor once a minute)."""
        try:
            return (self.root / "_log" / HEAD).read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._listed_version()

    def _listed_version(self) -> str:
        try:
            with os.scandir(self.root / "_log") as entries:
                return max((e.name for e in entries if e.name.endswith(".json")), default="")
        except FileNotFoundError:
            return ""

    def repair_head(self) -> bool:
        """Make `_log/HEAD` name the last entry (after a writer was killed between the two);
        whether it had to. Takes the store's lock, so no commit writes a HEAD in between."""
        if not (self.root / "_log").exists():
            return False
        with open(self.root / "_lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._repair_head()

    def _repair_head(self) -> bool:
        """`repair_head` under the lock the caller holds."""
        return self._repaired_head()[1]

    def _repaired_head(self) -> tuple[str, bool]:
        """The last entry's name, after making `_log/HEAD` name it; whether it had to."""
        listed = self._listed_version()
        if not listed:
            return "", False
        try:
            if (self.root / "_log" / HEAD).read_text(encoding="utf-8") >= listed:
                return listed, False
        except FileNotFoundError:
            pass
        _write_head(self.root / "_log", listed)
        return listed, True

    def files(self, table: str) -> list[Path]:
        """The table's files a new connection reads (replaced ones left out)."""
        return [self.root / f for f in _live(self.log(), table)]

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views `records`, `entities`, `events`, `quarantine`.

        A cursor of one in-process database per store version: views, Parquet footers and
        cached file blocks are shared by every connection until the next commit, so a look-up
        pays neither for a new database (15 ms) nor for reading footers again. A connection's
        temporary tables and registered data are its own."""
        version = self.version()
        with self._shared_lock:
            if self._shared is None or self._shared[0] != version:
                self._shared = (version, self._open())
            con = self._shared[1].cursor()
        # the bar writes to stdout, which --json owns; in Jupyter DuckDB refuses the setting
        # without ipywidgets (and shows no bar there anyway)
        with contextlib.suppress(duckdb.InvalidInputException):
            con.execute("SET enable_progress_bar = false")
        return con

    def _open(self, views: bool = True, **config: Any) -> duckdb.DuckDBPyConnection:
        tmp = self.root / "_tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(
            config={
                "memory_limit": self.memory_limit,
                "threads": self.threads,
                "temp_directory": str(tmp),
                "preserve_insertion_order": False,
                **config,
            }
        )
        with contextlib.suppress(duckdb.InvalidInputException):
            con.execute("SET enable_progress_bar = false")
        con.execute("SET GLOBAL parquet_metadata_cache = true")  # committed files never change
        if views:
            self.attach_views(con)
        return con

    def attach_views(self, con: duckdb.DuckDBPyConnection) -> None:
        log = self.log()
        for table, schema in TABLES.items():
            live = _live(log, table)
            if live:
                con.execute(f"CREATE OR REPLACE VIEW {table} AS {_source(self.root, table, live)}")
            else:
                # a table, not registered data: a connection's registered data is its own, and
                # the view is read by cursors of this database
                con.register("_empty_input", schema.empty_table())
                con.execute(f"CREATE OR REPLACE TABLE _empty_{table} AS FROM _empty_input")
                con.unregister("_empty_input")
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
            last, _ = self._repaired_head()
            # the id sorts in commit order: the sequence number comes first, and the lock is held
            # from here to the commit (a killed batch's number is simply used again)
            seq = int(last[:8]) + 1 if last else 1  # entries are named "<seq:08d>-…"
            now = datetime.now(UTC)
            batch_id = f"{seq:08d}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            batch = Batch(self, batch_id, kind, dict(info), seq=seq)
            batch.staging.mkdir(parents=True)
            try:
                yield batch
                if not batch.discard:
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
            **({"replaces": batch.replaces} if batch.replaces else {}),
            **batch.info,
        }
        tmp = log_dir / f".{batch.batch_id}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh, ensure_ascii=False, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        name = f"{seq:08d}-{batch.batch_id}.json"
        os.replace(tmp, log_dir / name)
        _fsync_dirs({log_dir})
        _write_head(log_dir, name)
        if self.on_commit is not None:
            with contextlib.suppress(Exception):
                self.on_commit(batch)

    # ---- compaction -------------------------------------------------------------------------

    def compact(
        self,
        tables: Sequence[str] = tuple(SORT_KEYS),
        *,
        full: bool = False,
        keep_largest: bool = False,
        min_loose: int = 1,
    ) -> dict[str, Any]:
        """Rewrite tables sorted by `SORT_KEYS` in one batch; returns what was done per table,
        the batch (None when nothing was committed) and the time taken.

        The files written since the last compaction become one sorted run; when the table would
        then have more than `MAX_RUNS` runs (or `full`), all its files become one. With
        `keep_largest` (the service compacting its own small writes, `AutoCompactor`), the
        largest run is left as it is and only the others are merged with the new files: a
        compaction during the day never rewrites the whole store. A table with fewer than
        `min_loose` new files (or none) is left alone, and with no table to rewrite nothing is
        committed. The new files hold exactly the rows of those they replace (count and a hash
        of every row, checked before the commit)."""
        unknown = [t for t in tables if t not in SORT_KEYS]
        if unknown:
            raise ValueError(f"cannot compact {', '.join(unknown)}: one of {', '.join(SORT_KEYS)}")
        done: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        with self.begin("compaction") as batch:
            log = self.log()
            for table in tables:
                live = _live(log, table)
                runs = _runs(log, table, live)
                in_runs = {f for files in runs for f in files}
                loose = [f for f in live if f not in in_runs]
                kept: list[str] = []
                if full:
                    merge_all, go = True, bool(loose) or len(runs) > 1
                else:
                    merge_all = len(runs) + 1 > MAX_RUNS
                    go = len(loose) >= max(min_loose, 1)
                    if merge_all and keep_largest:
                        kept = max(runs, key=lambda r: sum(self._size(f) for f in r))
                if not go:
                    done[table] = {"rewritten": False, "runs": len(runs), "files": len(live)}
                    continue
                inputs = [f for f in live if f not in kept] if merge_all else loose
                t0 = time.perf_counter()
                rows = batch.rewrite_sorted(table, {f: live[f] for f in inputs})
                batch.replaces.setdefault(table, []).extend(inputs)
                done[table] = {
                    "rewritten": True,
                    "merged": ("all but the largest run" if kept else "all")
                    if merge_all
                    else "new",
                    "rows": rows,
                    "files_read": len(inputs),
                    "files_written": len(batch.files.get(table, [])),
                    "runs": (2 if kept else 1) if merge_all else len(runs) + 1,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            batch.info["compacted"] = sorted(t for t, d in done.items() if d["rewritten"])
            batch.discard = not batch.replaces
        return {
            "tables": done,
            "batch": None if batch.discard else batch.batch_id,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _size(self, rel: str) -> int:
        try:
            return (self.root / rel).stat().st_size
        except OSError:
            return 0

    def purge_retired(self, kept: timedelta = RETIRED_KEPT) -> list[str]:
        """Delete replaced files whose compaction is older than `kept` (a writer does this as it
        begins); returns them."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "_lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._purge_retired(self.log(), kept)

    def _purge_retired(self, log: list[dict[str, Any]], kept: timedelta) -> list[str]:
        now = datetime.now(UTC)
        gone = []
        for entry in log:
            if not entry.get("replaces"):
                continue
            if now - datetime.fromisoformat(entry["committed_at"]) < kept:
                continue
            for rels in entry["replaces"].values():
                for rel in rels:
                    path = self.root / rel
                    if path.exists():
                        path.unlink()
                        gone.append(rel)
        return gone

    def _collect_garbage(self) -> None:
        """Remove what a killed writer left: staging directories and uncommitted data files."""
        shutil.rmtree(self.root / "_staging", ignore_errors=True)
        for tmp in (self.root / "_log").glob(".*.tmp"):
            tmp.unlink()
        log = self.log()
        self._purge_retired(log, RETIRED_KEPT)
        committed = {f for e in log for rels in e["files"].values() for f in rels}
        for table in TABLES:
            base = self.root / table
            if not base.exists():
                continue
            for path in base.rglob("*.parquet"):
                if str(path.relative_to(self.root)) not in committed:
                    path.unlink()


HEAD = "HEAD"
"""`_log/HEAD`: the name of the last entry (`Store.version`)."""


def _write_head(log_dir: Path, name: str) -> None:
    """Replace `_log/HEAD` whole (a reader sees the old name or the new one). Not synced: after
    a crash a HEAD behind the log is repaired by the next writer, and a new process builds what
    it caches from the log itself."""
    tmp = log_dir / f".{HEAD}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(name, encoding="utf-8")
    os.replace(tmp, log_dir / HEAD)


def _live(log: list[dict[str, Any]], table: str) -> dict[str, int]:
    """The table's files a reader reads, in commit order, with the store format each was
    written in: every committed file no compaction has replaced."""
    retired = {f for e in log for f in e.get("replaces", {}).get(table, [])}
    return {
        f: int(e.get("format", 1))
        for e in log
        for f in e["files"].get(table, [])
        if f not in retired
    }


def _runs(log: list[dict[str, Any]], table: str, live: dict[str, int]) -> list[list[str]]:
    """The table's sorted runs still read: per compaction, its files (each run is in order)."""
    runs = []
    for e in log:
        if e.get("kind") == "compaction" and e["files"].get(table):
            files = [f for f in e["files"][table] if f in live]
            if files:
                runs.append(files)
    return runs


def layout(log: list[dict[str, Any]], table: str) -> dict[str, int]:
    """How a table's files lie: how many are read, in how many sorted runs, how many are not
    sorted yet (written since the last compaction)."""
    live = _live(log, table)
    runs = _runs(log, table, live)
    in_runs = sum(len(r) for r in runs)
    return {"files": len(live), "sorted_runs": len(runs), "unsorted_files": len(live) - in_runs}


def _share_sql(con: duckdb.DuckDBPyConnection, table: str, source: str) -> str | None:
    """SQL: the share of codes a row of `source` falls in, numbered in code order, each share
    about a file's rows (`ROW_GROUP_ROWS * ROW_GROUPS_PER_FILE`): bounds taken from the
    quantiles of the first sort key (a sort of that one column, where numbering the rows in
    order took a window over all of them: 5.9 GB against 3.4 at 11 M records). None: one share.
    A company's rows are all in one share."""
    first = SORT_KEYS[table][0]
    (rows,) = con.execute(f"SELECT count(*) FROM ({source})").fetchone() or (0,)
    shares = -(-int(rows) // (ROW_GROUP_ROWS * ROW_GROUPS_PER_FILE))
    if shares <= 1:
        return None
    points = ", ".join(str(i / shares) for i in range(1, shares))
    (bounds,) = con.execute(
        f"SELECT quantile_disc({first}, [{points}]) FROM ({source})"
    ).fetchone() or ([],)
    listing = "[" + ", ".join(_quote(str(b)) for b in dict.fromkeys(bounds)) + "]"
    return f"len(list_filter({listing}, lambda b: b <= {first}))"


def _source(root: Path, table: str, files: dict[str, int]) -> str:
    """SQL: the table's columns from these files (by path under `root`, with the store format
    each was written in). A column added since: union_by_name fills it for older files, unless
    none has it (then it is NULL)."""
    newest = max(files.values())
    columns = ", ".join(
        f"CAST(NULL AS {ADDED_IN[table, c][1]}) AS {c}"
        if ADDED_IN.get((table, c), (1, ""))[0] > newest
        else c
        for c in TABLES[table].names
    )
    listing = "[" + ", ".join(_quote(str(root / f)) for f in files) + "]"
    return (
        f"SELECT {columns} FROM read_parquet({listing}, hive_partitioning=false, "
        "union_by_name=true)"
    )


def _same_rows(
    con: duckdb.DuckDBPyConnection, source: str, written: Sequence[Path], names: Sequence[str]
) -> int | None:
    """The row count if the `written` files hold exactly the rows of `source` (a SELECT of
    `names`), in any order; None if not. Compared by count and the sum of every row's hash: a
    lost, doubled or altered row, or values moved between rows, changes one of them."""
    check = "SELECT count(*), sum(hash(t)::HUGEINT) FROM ({}) t"
    listing = "[" + ", ".join(_quote(str(p)) for p in written) + "]"
    before = con.execute(check.format(source)).fetchone()
    after = con.execute(
        check.format(f"SELECT {', '.join(names)} FROM read_parquet({listing})")
    ).fetchone()
    return int(before[0]) if before is not None and before == after else None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fsync_dirs(dirs: set[Path]) -> None:
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
