"""Late delivery: a row that reaches the store after its recorded date counts as known from the
day of ingestion, so a feature as of an earlier day never sees it; a history load keeps dates."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.builder import build_features
from records.ingest import IngestError, ingest_file, ingest_table
from records.publicity import records_on
from records.store import Store
from records.workdays import china_today
from tests.records.factory import TODAY, penalty, write_csv, write_entities_csv

CODE = "91110000600037341L"


def _entity(name: str, recorded: str, **kw: str) -> dict[str, str]:
    return {"uscc": CODE, "name": name, "industry": "F52", "established_date": "2015-04-01",
            "recorded_date": recorded, **kw}  # fmt: skip


def _active(store: Store, day: date) -> int:
    """The company's `active` feature on `day`: whether the version in force says active."""
    return int(build_features(store, day, companies=[CODE]).to_pylist()[0]["active"])


def _industry(store: Store, day: date) -> str:
    """The company's industry on `day`, as the features read the version in force."""
    return str(build_features(store, day, companies=[CODE]).to_pylist()[0]["industry"])


def _stored(store: Store, table: str = "records") -> dict[str, dict[str, object]]:
    key = "record_id" if table == "records" else "name"
    return {r[key]: r for r in store.read(table).to_pylist()}


def test_a_late_record_counts_from_the_day_of_ingestion(store: Store, tmp_path: Path) -> None:
    on_time = TODAY.isoformat()
    path = write_csv(
        tmp_path / "daily.csv",
        [
            penalty("P-LATE", event_date="2026-06-01", recorded_date="2026-06-05"),
            penalty("P-NOW", event_date=on_time, recorded_date=on_time),
        ],
    )
    result = ingest_file(store, path, "records", "samr", today=TODAY)
    assert (result.stored, result.quarantined, result.restamped) == (2, 0, 1)
    assert result.earliest_source_recorded == "2026-06-05" and not result.history
    got = _stored(store)
    assert got["P-LATE"]["recorded_date"] == TODAY
    assert got["P-LATE"]["source_recorded_date"] == date(2026, 6, 5)
    assert got["P-LATE"]["event_date"] == date(2026, 6, 1)  # what happened is not changed
    assert got["P-NOW"]["recorded_date"] == TODAY and got["P-NOW"]["source_recorded_date"] is None
    entry = store.log()[-1]
    assert entry["history"] is False and entry["restamped"] == 1
    assert entry["ingestion_day"] == TODAY.isoformat()

    # as of a day before the delivery the penalty was not known here; from the delivery on it is
    before = build_features(store, TODAY - timedelta(days=1), companies=[CODE]).to_pylist()[0]
    after = build_features(store, TODAY, companies=[CODE]).to_pylist()[0]
    assert before["penalties_12m"] == 0
    assert after["penalties_12m"] == 2
    # the company's records of an earlier day leave it out; shown from the delivery on, with the
    # department's own date beside the day it became known
    earlier = records_on(store, CODE, TODAY - timedelta(days=1), now=TODAY)
    assert "P-LATE" not in {r["record_id"] for r in earlier}
    shown = {r["record_id"]: r for r in records_on(store, CODE, TODAY, now=TODAY)}
    assert shown["P-LATE"]["source_recorded_date"] == date(2026, 6, 5)
    assert shown["P-NOW"]["source_recorded_date"] is None


def test_a_history_load_keeps_recorded_dates(store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "past.csv",
        [penalty("P-OLD", event_date="2026-06-01", recorded_date="2026-06-05")],
    )
    result = ingest_file(store, path, "records", "samr", today=TODAY, history=True)
    assert (result.stored, result.restamped, result.history) == (1, 0, True)
    got = _stored(store)["P-OLD"]
    assert got["recorded_date"] == date(2026, 6, 5) and got["source_recorded_date"] is None
    assert store.log()[-1]["history"] is True
    features = build_features(store, date(2026, 6, 5), companies=[CODE]).to_pylist()[0]
    assert features["penalties_12m"] == 1


def test_grace_days_keep_recent_dates(store: Store, tmp_path: Path) -> None:
    days_ago = [(TODAY - timedelta(days=n)).isoformat() for n in (2, 3, 4)]
    rows = [penalty(f"P{i}", event_date=d, recorded_date=d) for i, d in enumerate(days_ago)]
    result = ingest_file(
        store, write_csv(tmp_path / "f.csv", rows), "records", "samr", today=TODAY, grace_days=3
    )
    assert result.restamped == 1 and result.earliest_source_recorded == days_ago[2]
    got = _stored(store)
    assert [got[f"P{i}"]["recorded_date"] for i in range(3)] == [
        TODAY - timedelta(days=2), TODAY - timedelta(days=3), TODAY,
    ]  # fmt: skip
    with pytest.raises(IngestError, match="grace_days"):
        ingest_table(store, pa.table({"record_id": ["x"]}), "records", "samr", grace_days=-1)


def test_sending_a_record_again_is_idempotent_whatever_its_arrival(
    store: Store, tmp_path: Path
) -> None:
    late = write_csv(tmp_path / "late.csv", [penalty("P-1")])
    assert ingest_file(store, late, "records", "samr", today=TODAY).stored == 1
    again = ingest_file(store, late, "records", "samr", today=TODAY + timedelta(days=30))
    assert (again.stored, again.already_stored, again.quarantined) == (0, 1, 0)
    # a record loaded with history and sent again in a daily feed is the same record
    old = write_csv(tmp_path / "old.csv", [penalty("P-2", recorded_date="2024-02-01")])
    ingest_file(store, old, "records", "samr", today=TODAY, history=True)
    daily = ingest_file(store, old, "records", "samr", today=TODAY + timedelta(days=1))
    assert (daily.stored, daily.already_stored, daily.restamped) == (0, 1, 0)
    assert _stored(store)["P-2"]["recorded_date"] == date(2024, 2, 1)


def test_a_late_entity_version_never_displaces_a_newer_one(store: Store, tmp_path: Path) -> None:
    first = write_entities_csv(
        tmp_path / "e1.csv", [_entity("旧名称", "2016-01-01", industry="C13")]
    )
    ingest_file(store, first, "entities", "samr", today=TODAY, history=True)
    late = write_entities_csv(
        tmp_path / "e2.csv",
        [
            _entity("中间名称", "2019-03-01", industry="E47"),  # replaced by the next
            _entity("最新名称", "2023-03-01", industry="G54", status="suspended"),
        ],
    )
    result = ingest_file(store, late, "entities", "samr", today=TODAY)
    assert (result.stored, result.quarantined, result.restamped) == (2, 0, 2)
    # one older than what the store holds, arriving later still: kept, as history
    older = write_entities_csv(
        tmp_path / "e3.csv", [_entity("更早的名称", "2020-06-01", industry="H62")]
    )
    result = ingest_file(store, older, "entities", "samr", today=TODAY + timedelta(days=1))
    assert (result.stored, result.quarantined, result.restamped) == (1, 0, 1)
    got = _stored(store, "entities")
    assert got["最新名称"]["recorded_date"] == TODAY
    assert got["最新名称"]["source_recorded_date"] == date(2023, 3, 1)
    assert set(got) == {"旧名称", "中间名称", "最新名称", "更早的名称"}
    # nothing about the company changes before the delivery; from it, the newest version holds
    assert _industry(store, TODAY - timedelta(days=1)) == "C13"
    assert _active(store, TODAY - timedelta(days=1)) == 1
    for day in (TODAY, TODAY + timedelta(days=1), TODAY + timedelta(days=30)):
        assert (_industry(store, day), _active(store, day)) == ("G54", 0)
    # and sending the late files again changes nothing
    for path, day in ((late, 2), (older, 3)):
        again = ingest_file(store, path, "entities", "samr", today=TODAY + timedelta(days=day))
        assert again.stored == 0 and again.quarantined == 0


def test_a_history_load_keeps_every_entity_version(store: Store, tmp_path: Path) -> None:
    path = write_entities_csv(
        tmp_path / "e.csv", [_entity("中间名称", "2019-03-01"), _entity("最新名称", "2023-03-01")]
    )
    result = ingest_file(store, path, "entities", "samr", today=TODAY, history=True)
    assert (result.stored, result.quarantined) == (2, 0)


def test_a_back_fill_after_a_late_version_takes_its_place_by_its_date(
    store: Store, tmp_path: Path
) -> None:
    """A history load after daily loads: its versions count from their dates, and the newest
    by the department's date is in force, also against one that arrived late."""
    ingest_file(store, write_entities_csv(tmp_path / "a.csv", [_entity("名称", "2016-01-01")]),
                "entities", "samr", today=TODAY, history=True)  # fmt: skip
    late = write_entities_csv(tmp_path / "b.csv", [_entity("名称", "2023-01-01", industry="G54")])
    assert ingest_file(store, late, "entities", "samr", today=TODAY).restamped == 1
    newer = write_entities_csv(
        tmp_path / "c.csv", [_entity("名称", "2024-01-01", status="deregistered")]
    )
    later = TODAY + timedelta(days=1)
    result = ingest_file(store, newer, "entities", "samr", today=later, history=True)
    assert (result.stored, result.restamped, result.quarantined) == (1, 0, 0)
    assert _active(store, date(2023, 12, 31)) == 1
    for day in (date(2024, 1, 1), TODAY, later):
        assert _active(store, day) == 0
    # the same, with a past --today: the older late version still does not come back
    store2 = Store(tmp_path / "store2")
    ingest_file(store2, late, "entities", "samr", today=TODAY)
    ingest_file(store2, newer, "entities", "samr", today=date(2024, 2, 1), history=True)
    assert _active(store2, TODAY) == 0 and _active(store2, TODAY + timedelta(days=9)) == 0


def test_sending_an_entity_file_again_stores_nothing_and_quarantines_nothing(
    store: Store, tmp_path: Path
) -> None:
    versions = write_entities_csv(
        tmp_path / "v.csv", [_entity("名称", "2016-01-01"), _entity("新名称", "2025-01-01")]
    )
    ingest_file(store, versions, "entities", "samr", today=TODAY, history=True)
    # the back-fill sent again as a daily file: both versions are late, and both already stored
    again = ingest_file(store, versions, "entities", "samr", today=TODAY + timedelta(days=1))
    assert (again.stored, again.already_stored, again.quarantined) == (0, 2, 0)
    # a late version, then a newer one, then the late one again
    late = write_entities_csv(
        tmp_path / "l.csv", [_entity("名称", "2025-06-01", status="suspended")]
    )
    assert ingest_file(store, late, "entities", "samr", today=TODAY + timedelta(days=2)).stored
    newest = write_entities_csv(
        tmp_path / "n.csv", [_entity("名称", "2025-09-01", status="revoked")]
    )
    assert ingest_file(store, newest, "entities", "samr", today=TODAY + timedelta(days=3)).stored
    resent = ingest_file(store, late, "entities", "samr", today=TODAY + timedelta(days=4))
    assert (resent.stored, resent.already_stored, resent.quarantined) == (0, 1, 0)
    assert store.read("quarantine").num_rows == 0
    # an unchanged registration sent again, undated, is no new version either
    undated = write_entities_csv(tmp_path / "u.csv", [{**_entity("名称", ""), "status": "revoked"}])
    assert ingest_file(store, undated, "entities", "samr", today=TODAY + timedelta(days=5)) \
        .already_stored == 1  # fmt: skip


def test_a_version_changed_and_changed_back_on_one_date_is_the_last_word(
    store: Store, tmp_path: Path
) -> None:
    """A, then B, then A again, all dated the same day: the last one sent is in force."""
    for n, status in enumerate(("active", "revoked", "active")):
        path = write_entities_csv(
            tmp_path / f"{n}.csv", [_entity("名称", "2026-01-05", status=status)]
        )
        result = ingest_file(store, path, "entities", "samr", today=TODAY + timedelta(days=n))
        assert result.stored == 1, (n, result.to_dict())
    assert _active(store, TODAY + timedelta(days=1)) == 0
    assert _active(store, TODAY + timedelta(days=2)) == 1


def test_a_file_s_own_versions_are_history_not_re_sends(store: Store, tmp_path: Path) -> None:
    """A(2019) stored; a file of A(2019), C(2020), A(2023): A is in force again from 2023."""
    ingest_file(store, write_entities_csv(tmp_path / "a.csv", [_entity("名称", "2019-01-01")]),
                "entities", "samr", today=TODAY, history=True)  # fmt: skip
    rows = [_entity("名称", "2019-01-01"), _entity("名称", "2020-01-01", industry="G54"),
            _entity("名称", "2023-01-01")]  # fmt: skip
    result = ingest_file(store, write_entities_csv(tmp_path / "f.csv", rows), "entities", "samr",
                         today=TODAY, history=True)  # fmt: skip
    assert (result.stored, result.already_stored) == (2, 1)
    assert _industry(store, date(2022, 1, 1)) == "G54"
    assert _industry(store, TODAY) == "F52"


def test_a_version_refused_for_a_fault_still_counts_as_one_the_file_states(
    store: Store, tmp_path: Path
) -> None:
    """A file of a refused 2020 version and a 2023 version equal to the stored 2019 one: the 2023
    version is history the file states, not a lone re-send, so it is stored and stays newest."""
    ingest_file(store, write_entities_csv(tmp_path / "a.csv", [_entity("名称", "2019-01-01")]),
                "entities", "samr", today=TODAY, history=True)  # fmt: skip
    rows = [_entity("名称", "2020-01-01", industry="ZZ9"), _entity("名称", "2023-01-01")]
    result = ingest_file(store, write_entities_csv(tmp_path / "f.csv", rows), "entities", "samr",
                         today=TODAY + timedelta(days=1))  # fmt: skip
    assert (result.stored, result.quarantined) == (1, 1)
    fixed = write_entities_csv(tmp_path / "g.csv", [_entity("名称", "2020-01-01", industry="G54")])
    ingest_file(store, fixed, "entities", "samr", today=TODAY + timedelta(days=2))
    assert _industry(store, TODAY + timedelta(days=2)) == "F52"


def test_a_back_fill_of_versions_that_first_arrived_late_takes_their_dates(
    store: Store, tmp_path: Path
) -> None:
    old, new = (
        _entity("名称", "2016-01-01", industry="C13"),
        _entity("名称", "2023-01-01", industry="G54"),
    )
    first = write_entities_csv(tmp_path / "a.csv", [old])
    ingest_file(store, first, "entities", "samr", today=TODAY, history=True)
    late = write_entities_csv(tmp_path / "l.csv", [new])
    assert ingest_file(store, late, "entities", "samr", today=TODAY).restamped == 1
    assert _industry(store, date(2024, 6, 1)) == "C13"  # not known then
    back = write_entities_csv(tmp_path / "b.csv", [old, new])
    later = TODAY + timedelta(days=1)
    result = ingest_file(store, back, "entities", "samr", today=later, history=True)
    assert (result.stored, result.already_stored) == (1, 1)
    assert _industry(store, date(2024, 6, 1)) == "G54"  # the back-fill says it was so
    again = ingest_file(store, back, "entities", "samr", today=later, history=True)
    assert (again.stored, again.already_stored) == (0, 2)


def test_within_the_grace_days_an_older_late_version_does_not_win(
    store: Store, tmp_path: Path
) -> None:
    """A version within the grace keeps its date; one restamped the day before it is older by
    the department's date, so the recent one is in force."""
    ingest_file(store, write_entities_csv(tmp_path / "a.csv", [_entity("名称", "2016-01-01")]),
                "entities", "samr", today=TODAY, history=True)  # fmt: skip
    late = write_entities_csv(tmp_path / "l.csv", [_entity("名称", "2023-01-01", industry="G54")])
    before = TODAY - timedelta(days=1)
    assert ingest_file(store, late, "entities", "samr", today=before, grace_days=3).restamped == 1
    recent = (TODAY - timedelta(days=2)).isoformat()
    newest = write_entities_csv(
        tmp_path / "n.csv", [_entity("名称", recent, status="deregistered")]
    )
    result = ingest_file(store, newest, "entities", "samr", today=TODAY, grace_days=3)
    assert (result.stored, result.restamped) == (1, 0)
    assert _active(store, TODAY - timedelta(days=3)) == 1
    for day in (TODAY - timedelta(days=1), TODAY):
        assert (_industry(store, day), _active(store, day)) == ("F52", 0)


def test_a_store_written_before_the_column_reads_it_as_null(store: Store, tmp_path: Path) -> None:
    ingest_file(store, write_csv(tmp_path / "r.csv", [penalty("P-1")]), "records", "samr",
                today=TODAY, history=True)  # fmt: skip
    ingest_file(store, write_entities_csv(tmp_path / "e.csv", [_entity("名称", "2016-01-01")]),
                "entities", "samr", today=TODAY, history=True)  # fmt: skip
    # make it a store of the earlier format: no column in the files, no format in the log
    for path in store.root.rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["source_recorded_date"]), path)
    # (each entry replaced whole, as every entry is written: a `Store` parses an entry file
    # once, by name and inode, and never looks at one changed in place again)
    for path in (store.root / "_log").glob("*.json"):
        entry = json.loads(path.read_text(encoding="utf-8"))
        entry.pop("format")
        path.with_suffix(".tmp").write_text(json.dumps(entry), encoding="utf-8")
        path.with_suffix(".tmp").replace(path)
    assert _stored(store)["P-1"]["source_recorded_date"] is None
    assert _stored(store, "entities")["名称"]["source_recorded_date"] is None
    # and a late row added now sits beside the old files
    late = ingest_file(store, write_csv(tmp_path / "r2.csv", [penalty("P-2")]), "records", "samr",
                       today=TODAY)  # fmt: skip
    assert late.restamped == 1
    got = _stored(store)
    assert got["P-1"]["source_recorded_date"] is None
    assert got["P-2"]["source_recorded_date"] == date(2024, 1, 10)


def test_the_command_line_reports_late_rows_and_takes_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    path = write_csv(
        tmp_path / "r.csv", [penalty("P-1"), penalty("P-2", recorded_date="2024-03-01")]
    )
    # a past ingestion day would make rows count as known on a day they were not
    past = ["ingest", str(path), "--source", "samr", "--today", TODAY.isoformat()]
    refused = CliRunner().invoke(app, past, env=env)
    assert refused.exit_code == 2 and "only a back-fill of history" in refused.output
    assert not (tmp_path / "data" / "store" / "_log").exists()
    res = CliRunner().invoke(app, ["ingest", str(path), "--source", "samr"], env=env)
    assert res.exit_code == 0, res.output
    assert "2 rows arrived late" in res.output and "from 2024-01-10 on" in res.output
    entry = Store(tmp_path / "data" / "store").log()[-1]
    assert entry["restamped"] == 2 and entry["earliest_source_recorded"] == "2024-01-10"
    path2 = write_csv(tmp_path / "r2.csv", [penalty("P-3")])
    res = CliRunner().invoke(
        app,
        ["ingest", str(path2), "--source", "samr", "--history", "--json", "--today",
         TODAY.isoformat()],
        env={**env, "CREDSUP_LATE_GRACE_DAYS": "5"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["history"] is True
    assert json.loads(res.output)["restamped"] == 0
    assert _stored(Store(tmp_path / "data" / "store"))["P-3"]["recorded_date"] == date(2024, 1, 10)
    # the store's summary says which department delivers late, and by how much
    res = CliRunner().invoke(app, ["records", "--json"], env=env)
    late = json.loads(res.output)["late_by_department"]
    days = sorted((china_today() - d).days for d in (date(2024, 1, 10), date(2024, 3, 1)))
    assert late == {"samr": {"records": 3, "late": 2, "median_days_late": days[0],
                             "max_days_late": days[1]}}  # fmt: skip
    shown = CliRunner().invoke(app, ["records"], env=env).output
    assert "arrived late" in shown and f"{days[1]}" in shown
    for wrong in ("-1", "100000"):  # a grace of 100,000 days overflowed the date before
        res = CliRunner().invoke(
            app, ["ingest", str(path2), "--source", "samr"],
            env={**env, "CREDSUP_LATE_GRACE_DAYS": wrong},
        )  # fmt: skip
        assert res.exit_code != 0
        assert "late_grace_days" in res.output.lower() or "late_grace_days" in str(res.exception)


def test_a_row_number_column_that_cannot_tell_rows_apart_refuses_the_file(
    store: Store, tmp_path: Path
) -> None:
    """Two rows with the same `_row` broke the accounting assertion (the batch rolled back with
    a message about ingest accounting); now the file is refused naming the column."""
    path = tmp_path / "e.csv"
    path.write_text(
        f"uscc,name,recorded_date,_row\n{CODE},名称,2019-01-01,7\n{CODE},新名称,2024-01-01,7\n",
        encoding="utf-8",
    )
    with pytest.raises(IngestError, match="'_row' is reserved for the row number"):
        ingest_file(store, path, "entities", "samr", today=TODAY, history=True)
    assert store.log() == []
    path.write_text(path.read_text(encoding="utf-8").replace(",7\n", ",x\n"), encoding="utf-8")
    with pytest.raises(IngestError, match="'_row' is reserved"):
        ingest_file(store, path, "entities", "samr", today=TODAY, history=True)
