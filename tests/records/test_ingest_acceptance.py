"""Acceptance: 10,000 valid rows mixed with 1,000 rows carrying 10 kinds of defects."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli.main import app
from records import ingest, uscc
from records.catalogue import default_catalogue
from records.ingest import ingest_file
from records.schema import RECORDS
from records.store import Store
from tests.records.factory import DEFECTS, TODAY, defective, penalty, valid_rows, write_csv


def _table(store: Store, table: str, order: str) -> list[dict[str, Any]]:
    with store.connect() as con:
        rows: list[dict[str, Any]] = (
            con.sql(f"SELECT * FROM {table} ORDER BY {order}").to_arrow_table().to_pylist()
        )
    return rows


@pytest.fixture
def mixed_file(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]], dict[int, str]]:
    """(earlier file, mixed file, the valid rows of the mixed file, data row → expected reason)."""
    earlier = valid_rows(100, seed=1, prefix="E")
    good = valid_rows(10_000, seed=2, prefix="G")
    rng = np.random.default_rng(3)
    bad: list[tuple[dict[str, Any], str]] = []
    for k, defect in enumerate(DEFECTS):
        for j in range(100):
            base = good[int(rng.integers(len(good)))]
            row = defective(base, defect, j)
            row["record_id"] = f"B{k:02d}{j:03d}" if defect != "missing_field" else ""
            if defect == "record_id_conflict":
                # same record_id as a stored record, other content
                attrs = {**json.loads(earlier[j]["attributes"]), "corrected": j}
                row = dict(earlier[j], attributes=json.dumps(attrs))
            bad.append((row, defect))
    items: list[tuple[dict[str, Any], str | None]] = [(r, None) for r in good] + bad  # type: ignore[misc]
    order = rng.permutation(len(items))
    shuffled = [items[i] for i in order]
    expected = {n: reason for n, (_row, reason) in enumerate(shuffled, start=1) if reason}
    mixed = write_csv(tmp_path / "mixed.csv", [r for r, _ in shuffled])
    return write_csv(tmp_path / "earlier.csv", earlier), mixed, good, expected


def test_exactly_the_valid_rows_land_and_each_bad_row_is_quarantined_with_its_reason(
    store: Store, mixed_file: tuple[Path, Path, list[dict[str, Any]], dict[int, str]]
) -> None:
    earlier, mixed, good, expected = mixed_file
    first = ingest_file(store, earlier, "records", "samr", today=TODAY)
    assert (first.stored, first.quarantined) == (100, 0)

    result = ingest_file(store, mixed, "records", "samr", today=TODAY)
    assert result.rows_read == 11_000
    assert result.stored == 10_000
    assert result.quarantined == 1_000
    assert result.by_reason == {d: 100 for d in DEFECTS}

    stored = {r["record_id"]: r for r in _table(store, "records", "record_id")}
    assert set(stored) == {r["record_id"] for r in good} | {f"E{i:07d}" for i in range(100)}
    for row in good[::97]:
        got = stored[row["record_id"]]
        assert got["uscc"] == row["uscc"] and got["category"] == row["category"]
        assert got["event_date"].isoformat() == row["event_date"]
        # a daily feed's rows recorded before the day of ingestion count from that day on,
        # the department's date kept beside it
        assert got["recorded_date"] == TODAY
        assert got["source_recorded_date"].isoformat() == row["recorded_date"]
        assert (got["severity"] or "") == row["severity"]
        assert got["amount"] == (float(row["amount"]) if row["amount"] else None)
        assert json.loads(got["attributes"]) == json.loads(row["attributes"])

    quarantine = _table(store, "quarantine", "row")
    assert {q["row"]: q["reason"] for q in quarantine} == expected
    for q in quarantine:  # every message, exactly as the row's defect explains it
        raw = json.loads(q["raw"])
        assert set(raw) >= {"record_id", "uscc", "category"}  # the original row, for correction
        assert q["message"] == _message(q["reason"], raw, first.batch_id), q
        assert q["source_file"] == str(mixed)
    assert sum("check character should be" in q["message"] for q in quarantine) >= 1

    # ingesting it again changes nothing
    before_records, before_quarantine = _table(store, "records", "record_id"), quarantine
    again = ingest_file(store, mixed, "records", "samr", today=TODAY)
    assert (again.stored, again.already_stored, again.quarantined) == (0, 10_000, 1_000)
    assert again.already_quarantined == 1_000
    assert _table(store, "records", "record_id") == before_records
    assert _table(store, "quarantine", "row") == before_quarantine


def _message(reason: str, raw: dict[str, str], first_batch: str) -> str:
    """The quarantine message a row with this defect gets."""
    catalogue = default_catalogue()
    if reason == "invalid_uscc":
        code = uscc.compact(raw["uscc"])
        with pytest.raises(uscc.InvalidUSCC) as problem:
            uscc.validate(code)
        return f"uscc {code!r}: {problem.value.message}"
    if reason == "unknown_category":
        return f'category "{raw["category"]}" is not in catalogue {catalogue.version}'
    if reason == "invalid_date":
        return f'event_date "{raw["event_date"]}" is not a valid date on or after 1900-01-01'
    if reason == "future_date":
        return f"event_date {raw['event_date']} is after today ({TODAY})"
    if reason == "severity_not_allowed":
        allowed = ", ".join(catalogue["admin_penalty"].severities)
        return f'severity "{raw["severity"]}" is not allowed for admin_penalty (allowed: {allowed})'
    if reason == "negative_amount":
        return f"amount {float(raw['amount'])} is negative"
    if reason == "invalid_attributes":
        return f'attributes "{raw["attributes"]}" are not a JSON object'
    if reason == "missing_field":
        return "missing record_id"
    if reason == "recorded_before_event":
        return f"recorded_date {raw['recorded_date']} is before event_date {raw['event_date']}"
    assert reason == "record_id_conflict"
    return (
        f'record_id "{raw["record_id"]}" is already stored with different content '
        f"(batch {first_batch}; changed: attributes); send a correction instead (credsup events)"
    )


def test_cli_exit_code_and_json_summary_say_so(
    tmp_path: Path, mixed_file: tuple[Path, Path, list[dict[str, Any]], dict[int, str]]
) -> None:
    earlier, mixed, _good, _expected = mixed_file
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "ingest",
            str(earlier),
            "--source",
            "samr",
            "--today",
            "2026-11-22",
            "--history",
            "--json",
        ],
        env=env,
    )
    assert ok.exit_code == 0, ok.output
    res = runner.invoke(
        app,
        ["ingest", str(mixed), "--source", "samr", "--today", "2026-11-22", "--history", "--json"],
        env=env,
    )
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert summary["stored"] == 10_000 and summary["quarantined"] == 1_000
    assert summary["by_reason"]["invalid_uscc"] == 100
    text = runner.invoke(
        app,
        ["ingest", str(mixed), "--source", "samr", "--today", "2026-11-22", "--history"],
        env=env,
    )
    assert text.exit_code == 1
    assert "1,000 quarantined" in text.stdout and "invalid_uscc" in text.stdout
    said = " ".join(text.stdout.split())  # the same file again: its rows were quarantined before
    assert "(1,000 of them already, by an earlier ingestion)" in said
    future = runner.invoke(app, ["ingest", str(mixed), "--source", "samr", "--today",
                                 "2999-01-01"], env=env)  # fmt: skip
    assert future.exit_code == 2
    assert "rows cannot count as known on a day that has not come" in " ".join(
        future.output.replace("│", " ").split()
    )
    counts = json.loads(runner.invoke(app, ["records", "--json"], env=env).stdout)
    assert counts["records"] == 10_100
    assert counts["quarantined"] == 1_000
    assert counts["quarantine_by_reason"]["future_date"] == 100


def test_identical_repeats_of_a_conflicting_record_id_are_quarantined_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    stored = penalty("B-01")
    changed = penalty("B-01", amount="9999")
    other = penalty("D-01", category="news", severity="negative", amount="")
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    first = write_csv(tmp_path / "a.csv", [stored])
    ok = runner.invoke(app, ["ingest", str(first), "--source", "samr", "--json"], env=env)
    assert ok.exit_code == 0, ok.output
    second = write_csv(tmp_path / "b.csv", [changed, changed, other])
    res = runner.invoke(app, ["ingest", str(second), "--source", "samr", "--json"], env=env)
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout)
    assert (summary["stored"], summary["duplicates_in_file"], summary["quarantined"]) == (1, 0, 2)
    assert summary["by_reason"] == {"record_id_conflict": 2}
    store = Store(tmp_path / "data" / "store")
    records = {r["record_id"]: r["amount"] for r in _table(store, "records", "record_id")}
    assert records == {"B-01": 5000.0, "D-01": None}
    assert [q["row"] for q in _table(store, "quarantine", "row")] == [1, 2]


def test_a_record_id_another_department_already_used_is_explained(
    store: Store, tmp_path: Path
) -> None:
    samr = penalty("2024-001")
    tax = penalty(
        "2024-001", source_dept="tax", category="tax_credit_grade", severity="B", amount=""
    )
    ingest_file(store, write_csv(tmp_path / "samr.csv", [samr]), "records", "samr", today=TODAY)
    result = ingest_file(
        store, write_csv(tmp_path / "tax.csv", [tax]), "records", "tax", today=TODAY
    )
    assert result.by_reason == {"record_id_conflict": 1}
    message = _table(store, "quarantine", "row")[0]["message"]
    assert "already used by samr's record" in message
    assert "unique across departments" in message and "correction" not in message
    # the same department re-sending changed content is still told to send a correction
    again = penalty("2024-001", amount="7000")
    ingest_file(store, write_csv(tmp_path / "again.csv", [again]), "records", "samr", today=TODAY)
    messages = [q["message"] for q in _table(store, "quarantine", "batch_id")]
    assert "send a correction instead" in messages[-1]


def test_attributes_in_another_key_order_are_the_same_record(store: Store, tmp_path: Path) -> None:
    """Attributes are compared as JSON, not as text: a department whose export writes the keys
    in another order re-sends the same record (stored earlier with its own key order)."""
    stored = penalty("K-1", attributes='{"a": 1, "b": {"x": "甲", "y": [1, 2]}}')
    first = ingest_file(
        store, write_csv(tmp_path / "a.csv", [stored]), "records", "samr", today=TODAY
    )
    assert first.stored == 1
    reordered = penalty("K-1", attributes='{"b": {"y": [1, 2], "x": "甲"}, "a": 1}')
    twice = [
        penalty("K-2", attributes='{"p": 1, "q": 2}'),
        penalty("K-2", attributes='{"q":2,"p":1}'),
    ]
    again = ingest_file(
        store, write_csv(tmp_path / "b.csv", [reordered, *twice]), "records", "samr", today=TODAY
    )
    assert (again.stored, again.already_stored, again.duplicates_in_file) == (1, 1, 1)
    assert again.by_reason == {}
    got = {r["record_id"]: r["attributes"] for r in _table(store, "records", "record_id")}
    assert got["K-1"] == '{"a":1,"b":{"x":"甲","y":[1,2]}}'  # as it was stored
    # a real change of an attribute is still a conflict
    changed = penalty("K-1", attributes='{"b": {"y": [1, 2], "x": "乙"}, "a": 1}')
    third = ingest_file(
        store, write_csv(tmp_path / "c.csv", [changed]), "records", "samr", today=TODAY
    )
    assert third.by_reason == {"record_id_conflict": 1}


def test_a_changed_code_is_not_sent_as_a_correction(store: Store, tmp_path: Path) -> None:
    """A correction restates severity, amount or attributes; a record of another company (or
    category, or day) under a stored id is withdrawn and sent under a new id."""
    ingest_file(
        store, write_csv(tmp_path / "a.csv", [penalty("U-1")]), "records", "samr", today=TODAY
    )
    other = penalty("U-1", uscc="91350100M000100Y43", amount="7000")
    first = store.log()[0]["batch_id"]
    ingest_file(store, write_csv(tmp_path / "b.csv", [other]), "records", "samr", today=TODAY)
    message = _table(store, "quarantine", "row")[0]["message"]
    assert message == (
        f'record_id "U-1" is already stored with different content (batch {first}; changed: '
        "uscc, amount): a correction can only restate severity, amount or attributes, so withdraw "
        "the stored record and send this one under a new record_id"
    )


def test_attributes_are_parsed_as_json_only_where_their_text_differs(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """canonical_json is Python called row by row: re-sending a stored file ran it four times on
    every row (5.0 s instead of 1.5 s for 274,000 rows). It runs only on pairs whose attribute
    texts differ, stored or repeated in the file."""
    calls: list[str | None] = []
    canonical_json = ingest.canonical_json

    def counted(text: str | None) -> str | None:
        calls.append(text)
        return canonical_json(text)

    rows = [penalty(f"J-{i}", attributes=json.dumps({"a": i, "b": [i]})) for i in range(500)]
    ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "samr", today=TODAY)
    monkeypatch.setattr(ingest, "canonical_json", counted)
    again = ingest_file(store, write_csv(tmp_path / "b.csv", rows), "records", "samr", today=TODAY)
    assert (again.stored, again.already_stored, again.quarantined) == (0, 500, 0)
    assert calls == []
    reordered = penalty("J-7", attributes='{"b": [7], "a": 7}')
    changed = penalty("J-8", attributes='{"b": [8], "a": 9}')
    twice = [penalty("J-9", attributes='{"p": 1, "q": 2}'), penalty("J-9", amount="1")]
    third = ingest_file(
        store,
        write_csv(tmp_path / "c.csv", [*rows[:5], reordered, changed, *twice]),
        "records", "samr", today=TODAY,
    )  # fmt: skip
    assert (third.already_stored, third.duplicates_in_file) == (6, 0)
    assert third.by_reason == {"duplicate_conflict": 2, "record_id_conflict": 1}
    message = _table(store, "quarantine", "row")[0]["message"]
    assert message.startswith('record_id "J-8"') and "changed: attributes)" in message
    # J-9's repeats differ as text, J-7 and J-8 from the store: nothing else is parsed
    parsed = [json.loads(t or "null") for t in calls]
    assert 0 < len(parsed) <= 12
    expected = ({"a": 7, "b": [7]}, {"a": 8, "b": [8]}, {"a": 9, "b": [8]}, {"p": 1, "q": 2}, {})
    assert all(p in expected for p in parsed)


def test_a_record_stored_twice_under_ids_that_trim_alike_is_compared_with_both(
    store: Store, tmp_path: Path
) -> None:
    """Stored before ids were trimmed: `PEN-9<no-break space>` and `PEN-9` are one record. A
    row is already stored if either has its content; a conflict names the earlier batch."""
    stored = [
        {**penalty("PEN-9\u00a0"), "amount": 5000.0, "batch_id": "a-old"},
        {**penalty("PEN-9"), "amount": 7000.0, "batch_id": "b-new"},
    ]
    for row in stored:
        row.update(event_date=date(2024, 1, 5), recorded_date=date(2024, 1, 10))
    with store.begin("records") as batch:
        batch.write_arrow("records", pa.Table.from_pylist(stored, schema=RECORDS))
    rows = [penalty("PEN-9", amount="7000"), penalty("NEW-1")]
    result = ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "x", today=TODAY)
    assert (result.stored, result.already_stored, result.by_reason) == (1, 1, {})
    changed = [penalty("PEN-9", amount="6000")]
    result = ingest_file(store, write_csv(tmp_path / "b.csv", changed), "records", "x", today=TODAY)
    assert result.by_reason == {"record_id_conflict": 1}
    message = _table(store, "quarantine", "row")[0]["message"]
    assert "(batch a-old; changed: amount)" in message
