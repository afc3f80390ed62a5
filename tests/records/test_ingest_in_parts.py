"""A file read in parts (`rows_at_once`) stores and quarantines exactly what one piece does.

A large file is prepared part by part and spooled to Parquet in the batch's staging directory, so
that memory does not grow with the file; these tests use parts of a few rows so that every path
(spooled input, spooled mapped rows, a CSV read again line by line after parts were spooled) runs
on small files.
"""

from __future__ import annotations

import csv
import fcntl
import json
import threading
from decimal import Decimal
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


def test_a_store_under_a_key_value_folder_is_not_read_as_a_partition(tmp_path: Path) -> None:
    """The spool is not read with Hive partitions: a store under `source_dept=other/` stores
    the file's departments and severities, as one piece does."""
    _, rows = _records_rows()
    path = write_csv(tmp_path / "penalties.csv", rows)
    seen = []
    for folder in ("source_dept=other", "severity=general", "plain"):
        for parts in (7, 1_000_000):
            store = Store(tmp_path / folder / str(parts) / "store")
            ingest_file(store, path, "records", "tax", today=TODAY, rows_at_once=parts)
            seen.append(_snapshot(store))
    assert all(s == seen[0] for s in seen)
    depts = {json.loads(dict(r)["source_dept"]) for r in seen[0]["records"]}
    assert depts == {"samr"}  # the file's own column


def test_a_csv_of_a_header_and_blank_lines_stores_nothing_and_succeeds(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "empty-day.csv"
    path.write_text("record_id,uscc,category,event_date\r\n\r\n\r\n", encoding="utf-8")
    result = ingest_file(store, path, "records", "samr", today=TODAY, rows_at_once=1)
    assert (result.rows_read, result.stored, result.quarantined) == (0, 0, 0)
    assert read_input(path)[0].num_rows == 0


def test_a_mapping_whose_sql_fails_on_a_value_is_a_file_error_in_parts_too(
    store: Store, tmp_path: Path
) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "kind: records\nfields:\n"
        "  record_id: {sql: \"'X' || CAST(CAST(n AS INTEGER) AS VARCHAR)\"}\n"
        '  uscc: {column: code, map: {ZZZ: "91110000600037341L"}}\n'
        "  category: {value: admin_penalty}\n  event_date: {column: day}\n"
        "  recorded_date: {column: day}\n  severity: {value: general}\n  amount: {value: '1'}\n",
        encoding="utf-8",
    )
    lines = ["n,code,day"] + [f"{i},ZZZ,2024-01-05" for i in range(10)] + ["oops,ZZZ,2024-01-05"]
    path = tmp_path / "mapped.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for parts in (3, 1_000_000):
        with pytest.raises(IngestError, match=r"the SQL of .* fails: Conversion Error"):
            ingest_file(store, path, "records", "samr", mapping=mapping, today=TODAY,
                        rows_at_once=parts)  # fmt: skip
    assert store.log() == []
    ok = tmp_path / "ok.csv"
    ok.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    result = ingest_file(store, ok, "records", "samr", mapping=mapping, today=TODAY, rows_at_once=3)
    assert (result.stored, result.duplicates_in_file) == (10, 0)


def test_duration_columns_read_as_in_one_piece(tmp_path: Path) -> None:
    """A spool keeps a Parquet duration as text, as DuckDB writes the interval (`00:00:01`)."""
    rows = valid_rows(6, seed=4)
    table = pa.Table.from_pylist(rows).append_column(
        "took", pa.array([i * 1_000_000 for i in range(6)], pa.duration("us"))
    )
    table = table.set_column(
        table.column_names.index("amount"), "amount", pa.array(["x"] * 6)
    )  # every row quarantined, with its raw values
    path = tmp_path / "durations.parquet"
    pq.write_table(table, path)
    seen = []
    for parts in (2, 1_000_000):
        store = Store(tmp_path / str(parts))
        ingest_file(store, path, "records", "samr", today=TODAY, rows_at_once=parts)
        quarantined = store.read("quarantine").to_pylist()
        seen.append(sorted((q["row"], q["quarantine_id"], q["raw"]) for q in quarantined))
    assert seen[0] == seen[1] and len(seen[0]) == 6
    assert '"took":"00:00:05"' in seen[0][5][2]


@pytest.mark.parametrize("kind", ["float16", "decimal256"])
def test_columns_duckdb_cannot_read_from_arrow_are_read_as_text(tmp_path: Path, kind: str) -> None:
    """16-bit floats and 256-bit decimals (Parquet) ingest in one piece as in parts, with the
    amount the file shows (0.1, not the 0.0999755859375 a 16-bit float holds); in one piece they
    failed with DuckDB's NotImplementedException."""
    rows = valid_rows(6, seed=8)
    amounts = [0.1, None, 1234.0, 2.5, 0.0, 7.0]  # the second row's category takes none
    if kind == "float16":
        column = pa.array(np.array([np.nan if a is None else a for a in amounts], np.float16),
                          mask=np.array([a is None for a in amounts]))  # fmt: skip
    else:
        column = pa.array(
            [None if a is None else Decimal(f"{a:.2f}") for a in amounts], pa.decimal256(40, 2)
        )
    table = pa.Table.from_pylist(rows)
    table = table.set_column(table.column_names.index("amount"), "amount", column)
    path = tmp_path / f"{kind}.parquet"
    pq.write_table(table, path)
    seen = []
    for parts in (2, 1_000_000):
        store = Store(tmp_path / str(parts))
        result = ingest_file(store, path, "records", "samr", today=TODAY, rows_at_once=parts)
        assert (result.stored, result.quarantined) == (6, 0)
        stored = {r["record_id"]: r["amount"] for r in store.read("records").to_pylist()}
        seen.append([stored[r["record_id"]] for r in rows])
    assert seen[0] == seen[1] == amounts


def test_a_file_refused_for_its_type_or_columns_waits_for_no_writer(tmp_path: Path) -> None:
    """The first part is read and its columns checked before the store's lock is taken: such a
    file is refused at once, even while another ingestion writes, and leaves no store behind."""
    store = Store(tmp_path / "store")
    wrong = tmp_path / "a.csv"
    wrong.write_text("record_id,uscc\nx,y\n", encoding="utf-8")
    xls = tmp_path / "a.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0")
    for path, message in ((wrong, "missing column|no column or mapping"), (xls, "unsupported")):
        with pytest.raises(IngestError, match=message):
            ingest_file(store, path, "records", "samr", today=TODAY)
    assert not store.root.exists()
    store.root.mkdir(parents=True)
    refusals: list[str] = []

    def ingest() -> None:
        try:
            ingest_file(store, wrong, "records", "samr", today=TODAY)
        except IngestError as exc:
            refusals.append(str(exc))

    with open(store.root / "_lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a writer holds the store
        attempt = threading.Thread(target=ingest)
        attempt.start()
        attempt.join(timeout=30)
        waited = attempt.is_alive()
    attempt.join()  # the lock is released: a waiting attempt ends too
    assert not waited, "the refusal waited for the store's lock"
    assert len(refusals) == 1 and "no column or mapping" in refusals[0]
