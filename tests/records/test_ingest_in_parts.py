"""A file read in parts (`rows_at_once`) stores and quarantines exactly what one piece does.

A large file is prepared part by part and spooled to Parquet in the batch's staging directory, so
that memory does not grow with the file; these tests use parts of a few rows so that every path
(spooled input, spooled mapped rows, a CSV read again line by line after parts were spooled) runs
on small files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from records import uscc
from records.ingest import IngestError, IngestResult, ingest_file, read_input
from records.store import Store
from tests.records.factory import DEFECTS, TODAY, defective, valid_rows, write_csv

PARTS = (1, 7, 1_000_000)
"""Rows at once: every row its own part, parts of 7, and the whole file in one piece."""


def _records_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows stored before, rows of the file): valid rows, every defect, repeats (identical and
    conflicting) far apart, rows already stored, one changed since, a value over two lines."""
    rows = valid_rows(40, seed=5)
    before = [*rows[:6], dict(rows[12], amount="1.5")]  # row 12 will conflict with the store
    file_rows = list(rows)
    defects = [d for d in DEFECTS if d != "record_id_conflict"]
    for i, defect in enumerate(defects):
        row = valid_rows(1, seed=100 + i, prefix=f"D{i}")[0]
        file_rows.insert(3 + 4 * i, defective(row, defect, i))
    file_rows.append(dict(rows[3]))  # an identical repeat, many parts later
    file_rows.append(dict(rows[20], amount="7.5"))  # a conflicting repeat
    file_rows.append(dict(rows[21], severity="general\nminor"))  # a value over two lines
    return before, file_rows


def _entity_rows() -> list[dict[str, str]]:
    rng = np.random.default_rng(3)
    codes = uscc.generate_many(rng, ["91"] * 12 + ["92"] * 6, ["410102"] * 18)
    rows = []
    for i, code in enumerate(codes):
        rows.append(
            {"uscc": code, "name": f"某某商贸{i}有限公司", "industry": "F52", "region": "",
             "entity_type": "", "registered_capital": str(1000 * (i + 1)),
             "established_date": "2015-04-01", "status": "",
             "recorded_date": f"2015-04-{1 + i % 20:02d}"}
        )  # fmt: skip
    rows.append(dict(rows[2], recorded_date="2016-01-01", status="revoked"))  # a later version
    rows.append(dict(rows[4], name="另一个名字"))  # the same key, other content: a conflict
    rows.append(dict(rows[5]))  # an identical repeat
    rows.append(dict(rows[6], uscc=rows[6]["uscc"][:-1] + "?"))  # an invalid code
    rows.append(dict(rows[7], industry="Z99"))
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _bdci_other(folder: Path) -> Path:
    """BDCI's other_info: one row per company, unpivoted to up to three records; a row of no
    counts is quarantined as empty, a count that is not a number as an invalid amount."""
    lines = ["id,legal_judgment_num,brand_num,patent_num"]
    for i in range(23):
        counts = ["", "", ""] if i % 5 == 0 else [str(i), "" if i % 2 else str(i * 2), "3"]
        if i == 8:
            counts[2] = "many"
        lines.append(f"{'ab' * 10}{i:04d}," + ",".join(counts))
    lines.append(lines[4])  # an identical repeat
    path = folder / "other_info.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored and quarantined row, without the batch it came in."""
    out = {}
    for table in ("records", "entities", "quarantine"):
        rows = [
            tuple(sorted((k, json.dumps(v, default=str)) for k, v in r.items() if k != "batch_id"))
            for r in store.read(table).to_pylist()
        ]
        out[table] = sorted(rows)
    return out


def _counts(result: IngestResult) -> tuple[Any, ...]:
    return (
        result.rows_read, result.rows_mapped, result.stored, result.quarantined,
        result.already_stored, result.duplicates_in_file, result.by_reason, result.restamped,
    )  # fmt: skip


def _ingest_in_parts(
    tmp_path: Path, make: Any, kind: str, before: list[dict[str, Any]] | None = None, **kw: Any
) -> None:
    """Ingest the file made by `make(folder)` into a fresh store per part size; all agree."""
    seen = []
    for parts in PARTS:
        folder = tmp_path / f"parts-{parts}"
        folder.mkdir()
        store = Store(folder / "store", memory_limit="1GB")
        if before:
            stored = write_csv(tmp_path / "before.csv", before)
            ingest_file(store, stored, kind, "samr", today=TODAY)
        path = make(tmp_path)  # the same file (name and place) for every store
        result = ingest_file(store, path, kind, "samr", today=TODAY, rows_at_once=parts, **kw)
        seen.append((parts, _counts(result), _snapshot(store)))
        staging = store.root / "_staging"
        assert not staging.exists() or not any(staging.iterdir())  # the spool went with it
    (_, counts, snapshot) = seen[-1]
    assert counts[2] > 0 and counts[3] > 0  # rows stored and rows quarantined
    for parts, other_counts, other_snapshot in seen[:-1]:
        assert other_counts == counts, parts
        assert other_snapshot == snapshot, parts


def test_a_csv_file_in_parts_stores_and_quarantines_what_one_piece_does(tmp_path: Path) -> None:
    before, rows = _records_rows()
    _ingest_in_parts(tmp_path, lambda d: write_csv(d / "penalties.csv", rows), "records", before)


def test_a_csv_file_read_again_line_by_line_after_parts_were_spooled(tmp_path: Path) -> None:
    """A broken line near the end makes the fast reader give up after the first parts were
    written; the file is read again from its start, and nothing is counted twice."""
    before, rows = _records_rows()

    def make(folder: Path) -> Path:
        path = write_csv(folder / "penalties.csv", rows)
        with open(path, "a", newline="", encoding="utf-8") as fh:
            fh.write('only,"three,fields\n')
            csv.writer(fh).writerow(valid_rows(1, seed=77, prefix="Z")[0].values())
        return path

    _ingest_in_parts(tmp_path, make, "records", before)
    store = Store(tmp_path / "parts-7" / "store")
    reasons = [q["reason"] for q in store.read("quarantine").to_pylist()]
    assert reasons.count("malformed_row") == 1
    assert "Z0000000" in {r["record_id"] for r in store.read("records").to_pylist()}


def test_a_parquet_file_in_parts_stores_and_quarantines_what_one_piece_does(
    tmp_path: Path,
) -> None:
    before, rows = _records_rows()
    _ingest_in_parts(tmp_path, lambda d: _write(d / "penalties.parquet", rows), "records", before)


def test_an_unpivoted_file_in_parts_maps_its_codes_in_parts_too(tmp_path: Path) -> None:
    _ingest_in_parts(tmp_path, _bdci_other, "records", mapping="bdci-other", history=True)
    quarantined = Store(tmp_path / "parts-1" / "store").read("quarantine").to_pylist()
    assert {q["reason"] for q in quarantined} == {"empty_row", "invalid_amount"}


def test_an_entities_file_in_parts_stores_and_quarantines_what_one_piece_does(
    tmp_path: Path,
) -> None:
    rows = _entity_rows()
    _ingest_in_parts(tmp_path, lambda d: _write(d / "registrations.csv", rows), "entities")


def test_row_numbers_given_by_the_file_are_checked_across_parts(
    store: Store, tmp_path: Path
) -> None:
    rows = valid_rows(20, seed=9)
    table = pa.Table.from_pylist(rows)
    backwards = table.append_column("_row", pa.array(np.arange(20, 0, -1), pa.int64()))
    path = tmp_path / "backwards.parquet"
    pq.write_table(backwards, path)
    result = ingest_file(store, path, "records", "samr", today=TODAY, rows_at_once=6)
    assert result.stored == 20  # each number once, though not in order: accepted

    repeated = table.append_column("_row", pa.array([*range(1, 11), *range(1, 11)], pa.int64()))
    path = tmp_path / "repeated.parquet"
    pq.write_table(repeated, path)
    log = store.log()
    with pytest.raises(IngestError, match="different in every row"):
        ingest_file(store, path, "records", "samr", today=TODAY, rows_at_once=6)
    assert store.log() == log  # nothing written
    assert not any((store.root / "_staging").iterdir())


def test_reading_a_file_whole_gives_the_rows_of_its_parts(tmp_path: Path) -> None:
    """`read_input` (the whole file) concatenates the parts: rows numbered on across the blocks
    pyarrow reads, and the line-by-line reader's chunks."""
    rows = valid_rows(30, seed=2)
    path = write_csv(tmp_path / "a.csv", rows)
    table, unread = read_input(path)
    assert table.column("_row").to_pylist() == list(range(1, 31))
    assert table.column("record_id").to_pylist() == [r["record_id"] for r in rows]
    assert unread == []
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('x,"never closed\n')
    table, unread = read_input(path)
    assert table.num_rows == 30 and [u.row for u in unread] == [31]


def test_rows_at_once_must_be_positive(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", valid_rows(3))
    with pytest.raises(IngestError, match="rows_at_once must be at least 1"):
        ingest_file(store, path, "records", "samr", today=TODAY, rows_at_once=0)
