"""`credsup events`: a department's withdrawals and corrections, through the real command line
against a real store (records ingested first, read back through `records.publicity`)."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from records.ingest import ingest_file
from records.publicity import records_on
from records.store import Store
from records.workdays import china_today
from tests.records.factory import penalty, write_csv

CODE = "91110000600037341L"  # the company of `penalty`
TODAY = china_today()
DECIDED = TODAY - timedelta(days=90)
"""The penalties' decision day: a general one counts and is public for a year from it."""
DAY1, DAY2, DAY3 = (TODAY - timedelta(days=d) for d in (30, 29, 10))
"""Days the events take effect (after the decision)."""
D1, D2, D3 = DAY1.isoformat(), DAY2.isoformat(), DAY3.isoformat()
COLUMNS = ("event_id", "record_id", "event_type", "effective_date", "recorded_date",
           "severity", "amount", "attributes")  # fmt: skip


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A store holding samr's penalties P1, P2 (general), P3 (serious) and tax's penalty T1, of
    one company, all counting and public today."""
    recent = {"event_date": DECIDED.isoformat(), "recorded_date": DECIDED.isoformat()}
    rows = [penalty("P1", **recent), penalty("P2", **recent),
            penalty("P3", severity="serious", amount="200", **recent),
            penalty("T1", source_dept="tax", **recent)]  # fmt: skip
    result = ingest_file(
        Store(tmp_path / "data" / "store"), write_csv(tmp_path / "records.csv", rows),
        "records", "samr", today=TODAY, history=True,
    )  # fmt: skip
    assert result.stored == 4
    return tmp_path / "data"


def send(data_dir: Path, path: Path, *options: str, source: str = "samr") -> Result:
    return CliRunner().invoke(
        app, ["events", str(path), "--source", source, *options],
        env={"CREDSUP_DATA_DIR": str(data_dir)},
    )  # fmt: skip


def summary(result: Result) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def write_events(
    path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS
) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in columns} for r in rows)
    return path


def today_view(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The company's records as they count and show today."""
    store = Store(data_dir / "store")
    return {r["record_id"]: r for r in records_on(store, CODE, TODAY, now=TODAY)}


def table(data_dir: Path, name: str, order: str) -> list[dict[str, Any]]:
    with Store(data_dir / "store").connect() as con:
        rows: list[dict[str, Any]] = (
            con.sql(f"SELECT * FROM {name} ORDER BY {order}").to_arrow_table().to_pylist()
        )
    return rows


def test_a_correction_and_a_withdrawal_are_stored_and_take_effect(
    data_dir: Path, tmp_path: Path
) -> None:
    before = today_view(data_dir)
    assert all(r["counts"] and r["public"] for r in before.values()) and len(before) == 4
    path = write_events(tmp_path / "samr-events.csv", [
        {"event_id": "fix-1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "amount": "3,000",
         "attributes": '{"penalty_types": ["fine"]}'},
        {"event_id": "wd-1", "record_id": "P2", "event_type": "withdrawal",
         "effective_date": f"{DAY2.year}/{DAY2.month}/{DAY2.day}"},
    ])  # fmt: skip
    res = send(data_dir, path, "--json")
    assert res.exit_code == 0, res.output
    got = summary(res)
    assert (got["stored"], got["already_stored"], got["quarantined"]) == (2, 0, 0)
    assert got["by_reason"] == {} and got["batch_id"]
    after = today_view(data_dir)
    # the correction restated the amount and an attribute; the severity is the record's own
    assert after["P1"]["corrected"] and after["P1"]["amount"] == 3000.0
    assert after["P1"]["severity"] == "general"
    assert after["P1"]["attributes"]["penalty_types"] == ["fine"]
    # the withdrawal ends counting and publicity; the other records are as they were
    assert not after["P2"]["counts"] and not after["P2"]["public"]
    assert after["P3"] == before["P3"] and after["T1"] == before["T1"]
    events = {e["event_id"]: e for e in table(data_dir, "events", "event_id")}
    assert set(events) == {"samr:fix-1", "samr:wd-1"}
    assert events["samr:wd-1"]["effective_date"] == DAY2
    assert events["samr:wd-1"]["recorded_date"] == TODAY
    # the batch's log entry names the file, the department and the figures
    entry = Store(data_dir / "store").log()[-1]
    assert (entry["kind"], entry["source_dept"], entry["stored"]) == ("events", "samr", 2)
    # the human summary says the same
    again = send(data_dir, path)
    assert again.exit_code == 0, again.output
    assert "2 rows read, 0 stored, 2 already stored" in again.stdout


def test_a_resent_file_stores_nothing_new_and_quarantines_nothing_twice(
    data_dir: Path, tmp_path: Path
) -> None:
    rows = [
        {"event_id": "fix-1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "severity": "minor"},
        {"event_id": "wd-1", "record_id": "P2", "event_type": "withdrawal",
         "effective_date": D2},
        {"event_id": "wd-2", "record_id": "NOPE", "event_type": "withdrawal",
         "effective_date": D2},
    ]  # fmt: skip
    path = write_events(tmp_path / "samr-events.csv", rows)
    first = send(data_dir, path, "--json")
    assert first.exit_code == 1, first.output
    assert (summary(first)["stored"], summary(first)["quarantined"]) == (2, 1)
    events, quarantine = table(data_dir, "events", "event_id"), table(data_dir, "quarantine", "row")
    # sent again, from another folder: same name, same department
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    second = send(data_dir, write_events(again_dir / "samr-events.csv", rows), "--json")
    assert second.exit_code == 1, second.output
    got = summary(second)
    assert (got["stored"], got["already_stored"], got["quarantined"]) == (0, 2, 1)
    assert got["already_quarantined"] == 1
    assert table(data_dir, "events", "event_id") == events
    assert len(table(data_dir, "quarantine", "row")) == len(quarantine) == 1
    assert today_view(data_dir)["P1"]["severity"] == "minor"


def test_refused_rows_are_quarantined_with_their_reasons_and_the_valid_rows_stored(
    data_dir: Path, tmp_path: Path
) -> None:
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    rows = [
        {"event_id": "ok-1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "amount": "4500"},
        {"event_id": "e-2", "record_id": "T1", "event_type": "withdrawal",
         "effective_date": D1},
        {"event_id": "e-3", "record_id": "NOPE", "event_type": "withdrawal",
         "effective_date": D1},
        {"event_id": "e-4", "record_id": "P3", "event_type": "repair",
         "effective_date": D1},
        {"event_id": "e-5", "record_id": "P3", "event_type": "correction",
         "effective_date": D1, "severity": "huge"},
        {"event_id": "e-6", "record_id": "P3", "event_type": "withdrawal",
         "effective_date": D1, "recorded_date": yesterday},
        {"event_id": "ok-7", "record_id": "P2", "event_type": "withdrawal",
         "effective_date": D1},
    ]  # fmt: skip
    path = write_events(tmp_path / "samr-events.csv", rows)
    res = send(data_dir, path, "--json")
    assert res.exit_code == 1, res.output
    got = summary(res)
    assert (got["stored"], got["quarantined"]) == (2, 5)
    assert got["by_reason"] == {
        "event_type_not_allowed": 1, "other_department": 1, "past_recorded_date": 1,
        "severity_not_allowed": 1, "unknown_record": 1,
    }  # fmt: skip
    assert {e["event_id"] for e in table(data_dir, "events", "event_id")} == {
        "samr:ok-1", "samr:ok-7"
    }  # fmt: skip
    view = today_view(data_dir)
    assert view["P1"]["amount"] == 4500.0 and not view["P2"]["counts"]
    assert view["P3"]["counts"] and view["T1"]["counts"]  # tax's record untouched
    quarantined = {q["row"]: q for q in table(data_dir, "quarantine", "row")}
    assert {r: q["reason"] for r, q in quarantined.items()} == {
        2: "other_department", 3: "unknown_record", 4: "event_type_not_allowed",
        5: "severity_not_allowed", 6: "past_recorded_date",
    }  # fmt: skip
    assert "reported by tax, not samr" in quarantined[2]["message"]
    assert "only withdrawal or correction" in quarantined[4]["message"]
    assert "not one of admin_penalty's: minor, general, serious" in quarantined[5]["message"]
    assert "--history" in quarantined[6]["message"]
    for row, q in quarantined.items():
        assert (q["kind"], q["source_dept"], q["source_file"]) == ("events", "samr", str(path))
        assert json.loads(q["raw"]) == {c: rows[row - 1].get(c, "") for c in COLUMNS}
    # the human summary lists the reasons
    text = send(data_dir, path)
    assert text.exit_code == 1
    assert "5 quarantined" in text.stdout and "other_department" in text.stdout
    # a back-fill keeps the past recorded date
    backfill = write_events(tmp_path / "backfill.csv", [rows[5]])
    res = send(data_dir, backfill, "--history", "--json")
    assert res.exit_code == 0, res.output
    stored = {e["event_id"]: e for e in table(data_dir, "events", "event_id")}
    assert stored["samr:e-6"]["recorded_date"] == date.fromisoformat(yesterday)
    assert Store(data_dir / "store").log()[-1]["history"] is True


def test_a_later_correction_keeps_what_an_earlier_one_restated(
    data_dir: Path, tmp_path: Path
) -> None:
    """The latest correction in force is the record's whole corrected form: one restating the
    severity alone must not undo the amount corrected before."""
    first = write_events(tmp_path / "one.csv", [
        {"event_id": "fix-1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "amount": "3000", "attributes": '{"a": {"x": 1}}'},
    ])  # fmt: skip
    assert send(data_dir, first).exit_code == 0
    second = write_events(tmp_path / "two.csv", [
        {"event_id": "fix-2", "record_id": "P1", "event_type": "correction",
         "effective_date": D3, "severity": "serious", "attributes": '{"a": {"y": 2}}'},
    ])  # fmt: skip
    res = send(data_dir, second)
    assert res.exit_code == 0, res.output
    p1 = today_view(data_dir)["P1"]
    assert (p1["severity"], p1["amount"]) == ("serious", 3000.0)
    assert p1["attributes"]["a"] == {"x": 1, "y": 2}
    # sending the second file again is still "already stored", though stored composed
    again = send(data_dir, second, "--json")
    assert again.exit_code == 0 and summary(again)["already_stored"] == 1


def test_an_event_id_is_the_departments_own_and_not_reused_for_another_event(
    data_dir: Path, tmp_path: Path
) -> None:
    sent = write_events(tmp_path / "a.csv", [
        {"event_id": "1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "amount": "3000"},
    ])  # fmt: skip
    assert send(data_dir, sent).exit_code == 0
    # tax's event "1" about its own record is another event: stored
    tax = write_events(tmp_path / "tax.csv", [
        {"event_id": "1", "record_id": "T1", "event_type": "withdrawal",
         "effective_date": D1},
    ])  # fmt: skip
    res = send(data_dir, tax, "--json", source="tax")
    assert res.exit_code == 0 and summary(res)["stored"] == 1
    # samr's "1" again with other content is refused, not silently skipped
    changed = write_events(tmp_path / "b.csv", [
        {"event_id": "1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "amount": "9000"},
    ])  # fmt: skip
    res = send(data_dir, changed, "--json")
    assert res.exit_code == 1 and summary(res)["by_reason"] == {"event_id_conflict": 1}
    assert "already stored in batch" in table(data_dir, "quarantine", "row")[0]["message"]
    view = today_view(data_dir)
    assert view["P1"]["amount"] == 3000.0 and not view["T1"]["counts"]


def test_a_file_missing_a_required_column_exits_2_and_changes_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    columns = tuple(c for c in COLUMNS if c != "effective_date")
    path = write_events(tmp_path / "bad.csv", [
        {"event_id": "wd-1", "record_id": "P2", "event_type": "withdrawal"},
    ], columns)  # fmt: skip
    log = Store(data_dir / "store").log()
    res = send(data_dir, path)
    assert res.exit_code == 2
    assert "missing column(s) effective_date" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = send(data_dir, path, "--json")
    assert res.exit_code == 2 and "effective_date" in summary(res)["error"]
    # a past day of sending is a back-fill's alone, as for `credsup ingest`
    good = write_events(tmp_path / "good.csv", [
        {"record_id": "P2", "event_type": "withdrawal", "effective_date": D1},
    ])  # fmt: skip
    res = send(data_dir, good, "--today", (TODAY - timedelta(days=3)).isoformat())
    assert res.exit_code == 2 and "only a back-fill of history" in res.output
    assert Store(data_dir / "store").log() == log
    assert table(data_dir, "events", "event_id") == []
    assert table(data_dir, "quarantine", "row") == []


def test_json_lines_are_read_as_csv_is(data_dir: Path, tmp_path: Path) -> None:
    lines = [
        {"event_id": "j-1", "record_id": "P1", "event_type": "correction",
         "effective_date": D1, "correction": {"amount": 2500, "severity": "minor"}},
        {"event_id": "j-2", "record_id": "P2", "event_type": "withdrawal",
         "effective_date": f"{DAY2.year}年{DAY2.month}月{DAY2.day}日", "severity": None},
        {"event_id": "j-3", "record_id": "P3", "event_type": "correction",
         "effective_date": D1, "attributes": {"penalty_types": ["fine"]}},
        {"event_id": "j-4", "record_id": "P3", "event_type": "correction",
         "effective_date": D1, "correction": {"amount": "lots"}},
        {"event_id": "j-5", "record_id": "T1", "event_type": "withdrawal",
         "effective_date": D1},
    ]  # fmt: skip
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    path = tmp_path / "samr-events.jsonl"
    path.write_text(text[: text.index("\n")] + "\n\n{not json\n" + text[text.index("\n") + 1 :])
    res = send(data_dir, path, "--json")
    assert res.exit_code == 1, res.output
    got = summary(res)
    assert (got["rows_read"], got["stored"], got["quarantined"]) == (6, 3, 3)
    assert got["by_reason"] == {"invalid_amount": 1, "malformed_row": 1, "other_department": 1}
    view = today_view(data_dir)
    assert (view["P1"]["severity"], view["P1"]["amount"]) == ("minor", 2500.0)
    assert not view["P2"]["counts"]
    assert view["P3"]["attributes"]["penalty_types"] == ["fine"]
    # JSON lines are numbered by their line in the file (the blank line 2 counts)
    quarantined = {q["row"]: q for q in table(data_dir, "quarantine", "row")}
    assert {r: q["reason"] for r, q in quarantined.items()} == {
        3: "malformed_row", 6: "invalid_amount", 7: "other_department",
    }  # fmt: skip
    assert json.loads(quarantined[3]["raw"]) == {"line": "{not json"}
    assert json.loads(quarantined[7]["raw"])["record_id"] == "T1"


def test_a_parquet_file_with_typed_columns_is_read(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "samr-events.parquet"
    pq.write_table(
        pa.table({
            "event_id": ["p-1", "p-2"], "record_id": ["P1", "P2"],
            "event_type": ["correction", "withdrawal"],
            "effective_date": pa.array([DAY1, DAY2], pa.date32()),
            "amount": pa.array([1234.5, None], pa.float64()),
        }),
        path,
    )  # fmt: skip
    res = send(data_dir, path, "--json")
    assert res.exit_code == 0, res.output
    assert summary(res)["stored"] == 2
    view = today_view(data_dir)
    assert view["P1"]["amount"] == 1234.5 and not view["P2"]["counts"]
