"""A batch is atomic: a writer killed at any point leaves the store readable and unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from records.ingest import IngestError, ingest_file
from records.store import Store
from tests.records.bulk import write_bulk_csv
from tests.records.factory import TODAY, valid_rows, write_csv


def _snapshot(store: Store) -> dict[str, Any]:
    with store.connect() as con:
        records = con.sql(
            "SELECT * EXCLUDE (batch_id) FROM records ORDER BY record_id"
        ).to_arrow_table()
        quarantine = con.sql("SELECT count(*) AS n FROM quarantine").to_arrow_table()
    return {"log": store.log(), "records": records, "quarantine": quarantine.to_pylist()}


def _ingest(store: Store, path: Path, n: int, prefix: str) -> None:
    ingest_file(
        store, write_csv(path, valid_rows(n, prefix=prefix)), "records", "samr", today=TODAY
    )


def _start_ingest(data_dir: Path, file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CREDSUP_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "cli.main", "ingest", str(file), "--source", "samr",
           "--today", "2026-11-22", "--history", "--json"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_mid_ingest_leaves_store_unchanged_and_rerun_matches(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = Store(data_dir / "store")
    first = write_csv(tmp_path / "first.csv", valid_rows(500, seed=5, prefix="F"))
    assert ingest_file(store, first, "records", "samr", today=TODAY).stored == 500
    big = write_bulk_csv(tmp_path / "big.csv", 1_200_000, seed=6)
    before = _snapshot(store)

    staging = data_dir / "store" / "_staging"
    proc = _start_ingest(data_dir, big)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if staging.exists() and any(staging.iterdir()):  # a batch is being staged
            time.sleep(0.2)  # into validation or writing (about 1 s of work remains)
            break
        time.sleep(0.005)
    assert proc.poll() is None, "ingest finished before it could be killed; make the file larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # readable and unchanged
    assert _snapshot(store) == before

    # re-running the ingest gives the same result as an uninterrupted run
    rerun = ingest_file(store, big, "records", "samr", today=TODAY)
    assert rerun.stored == 1_200_000
    assert not staging.exists() or not any(staging.iterdir())
    clean = Store(tmp_path / "clean" / "store")
    ingest_file(clean, first, "records", "samr", today=TODAY)
    ingest_file(clean, big, "records", "samr", today=TODAY)
    assert _snapshot(store)["records"] == _snapshot(clean)["records"]


def test_files_of_an_uncommitted_batch_are_invisible_and_collected(
    store: Store, tmp_path: Path
) -> None:
    _ingest(store, tmp_path / "a.csv", 50, "A")
    before = _snapshot(store)
    # what a writer killed after moving its files but before writing its log entry leaves
    orphan = (
        store.root / "records" / "recorded_month=202401" / "99990101T000000-dead0000-00001.parquet"
    )
    orphan.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(store.read("records").slice(0, 5), orphan)
    (store.root / "_staging" / "99990101T000000-dead0000").mkdir(parents=True)
    assert _snapshot(store) == before
    _ingest(store, tmp_path / "b.csv", 10, "B")
    assert not orphan.exists()
    assert not (store.root / "_staging" / "99990101T000000-dead0000").exists()
    assert store.read("records").num_rows == 60


def test_an_error_mid_batch_writes_nothing(store: Store, tmp_path: Path) -> None:
    _ingest(store, tmp_path / "a.csv", 50, "A")
    before = _snapshot(store)
    with pytest.raises(RuntimeError, match="disk on fire"), store.begin("records") as batch:
        batch.write_arrow("records", store.read("records").slice(0, 5))
        assert any(batch.staging.rglob("*.parquet"))
        raise RuntimeError("disk on fire")
    assert _snapshot(store) == before


def test_file_level_errors_write_nothing(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,whatever\n1,2\n", encoding="utf-8")
    with pytest.raises(IngestError, match="no column or mapping for required field"):
        ingest_file(store, bad, "records", "samr", today=TODAY)
    other = tmp_path / "x.json"
    other.write_text("{}", encoding="utf-8")
    with pytest.raises(IngestError, match="unsupported file type"):
        ingest_file(store, other, "records", "samr")
    assert store.log() == []
