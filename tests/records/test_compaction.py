"""Compaction: a table rewritten sorted by company reads the same, row for row, on every date;
it is one atomic batch; replaced files stay for readers that listed them; and the store's shared
in-process database gives each connection its own registered data."""

from __future__ import annotations

import json
import re
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.builder import build_features
from records.events import append_events
from records.ingest import ingest_table
from records.publicity import records_on
from records.simulate import SimulationConfig, simulate
from records.store import CLUSTER_BY, MAX_RUNS, SORT_KEYS, Batch, Store, _same_rows
from records.summary import store_summary
from serving.lookup import registered_entity

TODAY = date(2026, 6, 30)
ORDER = {
    "records": "record_id, batch_id",
    "entities": "uscc, batch_id, recorded_date",
    "events": "event_id",
}


@pytest.fixture(scope="module")
def province() -> Any:
    return simulate(SimulationConfig(companies=600, years=3, seed=5))


def _fill(store: Store, sim: Any, parts: int = 3) -> None:
    """Entities, then the records in `parts` batches, then events on some of them."""
    ingest_table(store, sim.entities, "entities", "samr", today=TODAY, history=True)
    n = sim.records.num_rows
    for i in range(parts):
        part = sim.records.slice(i * n // parts, (i + 1) * n // parts - i * n // parts)
        result = ingest_table(store, part, "records", "samr", today=TODAY, history=True)
        assert result.quarantined == 0
    ids = sim.records.column("record_id").to_pylist()
    events = [
        {"record_id": ids[k], "event_type": "withdrawal", "effective_date": date(2025, 3, 1),
         "recorded_date": date(2025, 3, 2), "attributes": {"reason": "wrongly recorded"}}
        for k in range(0, len(ids), 97)
    ]  # fmt: skip
    assert not append_events(store, events, today=TODAY).rejected


def _contents(store: Store) -> dict[str, pa.Table]:
    with store.connect() as con:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY {o}").to_arrow_table()
                for t, o in ORDER.items()}  # fmt: skip


def _views(store: Store, codes: list[str]) -> dict[str, Any]:
    """What readers compute from the store: features on two dates, and records pages."""
    out: dict[str, Any] = {}
    for day in (date(2024, 12, 31), TODAY):
        out[f"features {day}"] = build_features(store, day).sort_by("uscc")
    for code in codes:
        out[code] = records_on(store, code, TODAY)
        out[f"{code} entity"] = registered_entity(store, code, TODAY)
    return out


def _some_codes(sim: Any) -> list[str]:
    counts = pc.value_counts(sim.records.column("uscc")).to_pylist()
    busiest = sorted(counts, key=lambda c: (-c["counts"], c["values"]))
    return [c["values"] for c in busiest[:3]] + [busiest[-1]["values"]]


def test_compaction_keeps_every_row_and_every_view(
    tmp_path: Path, province: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("records.store.ROW_GROUP_ROWS", 2048)  # DuckDB's smallest: 3 groups
    monkeypatch.setattr("records.store.ROW_GROUPS_PER_FILE", 1)  # and 3 files
    store = Store(tmp_path / "store")
    _fill(store, province)
    codes = _some_codes(province)
    before, views_before = _contents(store), _views(store, codes)
    summary_before = store_summary(store)
    assert summary_before["files"]["records"]["unsorted_files"] >= 3

    result = store.compact()

    assert result["batch"] is not None
    assert {t: d["rewritten"] for t, d in result["tables"].items()} == dict.fromkeys(
        SORT_KEYS, True
    )
    assert result["tables"]["records"]["rows"] == province.records.num_rows
    assert _contents(store) == before  # batch ids too: nothing a reader orders by changes
    assert _views(store, codes) == views_before
    summary = store_summary(store)
    assert summary["batches"] == summary_before["batches"]
    assert summary["compactions"] == 1
    assert {k: v for k, v in summary.items() if k not in ("files", "compactions")} == {
        k: v for k, v in summary_before.items() if k not in ("files", "compactions")
    }
    for table in SORT_KEYS:
        assert summary["files"][table]["unsorted_files"] == 0
        assert summary["files"][table]["sorted_runs"] == 1

    # each file holds about a share of the codes (a company's rows are in one share), in order
    # by category, then code, date and id
    keys = list(SORT_KEYS["records"])
    parts = [pq.read_table(p) for p in store.files("records")]
    assert len(parts) >= 3
    assert sum(part.num_rows for part in parts) == province.records.num_rows
    for part in parts:
        categories = part.column(CLUSTER_BY["records"]).to_pylist()
        runs = [c for i, c in enumerate(categories) if i == 0 or categories[i - 1] != c]
        assert len(runs) <= 2 * len(set(runs))  # one run per category and share in the file
        for category in set(runs):
            rows = part.filter(pc.equal(part.column("category"), category)).select(keys)
            # ascending: a second share in the file holds higher codes than the first
            assert rows == rows.sort_by([(k, "ascending") for k in keys]), category
    groups: dict[str, int] = {}
    for path in store.files("records"):
        meta = pq.ParquetFile(path).metadata
        column = meta.schema.names.index("uscc")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            for code in codes:
                if stats.min <= code <= stats.max:
                    groups[code] = groups.get(code, 0) + 1
    assert (
        sum(
            meta.num_row_groups
            for meta in (pq.ParquetFile(p).metadata for p in store.files("records"))
        )
        >= 3
    )
    assert all(1 <= n <= 2 for n in groups.values()), groups
    # and DuckDB reads only those: a company's rows come from its row groups, not every file
    with store.connect() as con:
        plan = con.execute(
            "EXPLAIN ANALYZE SELECT count(*) FROM records WHERE uscc = ?", [codes[0]]
        ).fetchall()[0][1]
    scanned = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert scanned is not None, plan
    assert int(scanned.group(1)) <= 2 and int(scanned.group(2)) >= 3, scanned.group(0)


def test_new_files_make_a_new_run_and_too_many_runs_are_merged(
    tmp_path: Path, province: Any
) -> None:
    store = Store(tmp_path / "store")
    ingest_table(store, province.entities, "entities", "samr", today=TODAY, history=True)
    n = province.records.num_rows
    step = n // (MAX_RUNS + 2)
    expected_runs = []
    for i in range(MAX_RUNS + 1):
        part = province.records.slice(i * step, step)
        ingest_table(store, part, "records", "samr", today=TODAY, history=True)
        result = store.compact(["records"])["tables"]["records"]
        expected_runs.append((result["merged"], result["runs"], result["files_read"]))
    # each compaction sorts the one new file; the fifth would make five runs: all merged
    assert expected_runs[:MAX_RUNS] == [("new", k + 1, 1) for k in range(MAX_RUNS)]
    assert expected_runs[MAX_RUNS][:2] == ("all", 1)
    assert store_summary(store)["files"]["records"] == {
        "files": len(store.files("records")), "sorted_runs": 1, "unsorted_files": 0,
    }  # fmt: skip
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM records").fetchone() == ((MAX_RUNS + 1) * step,)

    # nothing new: nothing committed; --full with one run: nothing either
    log = store.log()
    assert store.compact(["records"])["batch"] is None
    assert store.compact(["records"], full=True)["batch"] is None
    assert store.log() == log
    # a second run, then --full merges both
    ingest_table(
        store,
        province.records.slice((MAX_RUNS + 1) * step),
        "records",
        "samr",
        today=TODAY,
        history=True,
    )
    assert store.compact(["records"])["tables"]["records"]["runs"] == 2
    full = store.compact(["records"], full=True)["tables"]["records"]
    assert (full["merged"], full["runs"], full["rows"]) == ("all", 1, n)


def test_ingestion_after_compaction_still_knows_what_is_stored(
    tmp_path: Path, province: Any
) -> None:
    store = Store(tmp_path / "store")
    _fill(store, province, parts=1)
    store.compact()
    again = ingest_table(store, province.records, "records", "samr", today=TODAY, history=True)
    assert (again.stored, again.already_stored) == (0, province.records.num_rows)
    again = ingest_table(store, province.entities, "entities", "samr", today=TODAY, history=True)
    assert again.stored == 0


def test_a_failed_compaction_leaves_the_store_as_it_was(
    tmp_path: Path, province: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "store")
    _fill(store, province)
    log, files, contents = (
        store.log(),
        sorted((tmp_path / "store").rglob("*.parquet")),
        _contents(store),
    )
    real = Batch.rewrite_sorted

    def fail_on_entities(self: Batch, table: str, *args: Any) -> int:
        if table == "entities":  # records already staged by then
            raise OSError("disk full")
        return real(self, table, *args)

    monkeypatch.setattr(Batch, "rewrite_sorted", fail_on_entities)
    with pytest.raises(OSError, match="disk full"):
        store.compact()
    assert store.log() == log
    assert sorted((tmp_path / "store").rglob("*.parquet")) == files
    assert not any((tmp_path / "store" / "_staging").glob("*"))
    assert _contents(store) == contents


def test_a_changed_row_is_caught_before_the_commit(tmp_path: Path) -> None:
    table = pa.table({"uscc": ["A", "B", "C"], "n": [1, 2, 3]})
    pq.write_table(table, tmp_path / "in.parquet")
    source = f"SELECT uscc, n FROM read_parquet('{tmp_path / 'in.parquet'}')"
    con = duckdb.connect()
    for name, written in {
        "same": table,
        "reordered": table.take([2, 0, 1]),
        "lost": table.slice(0, 2),
        "doubled": table.take([0, 0, 2]),  # B lost, A twice: the count alone would pass
        "swapped": pa.table({"uscc": ["A", "B", "C"], "n": [2, 1, 3]}),
    }.items():
        pq.write_table(written, tmp_path / f"{name}.parquet")
        ok = _same_rows(con, source, [tmp_path / f"{name}.parquet"], ["uscc", "n"])
        assert ok == (3 if name in ("same", "reordered") else None), name


def test_replaced_files_stay_for_readers_that_listed_them(tmp_path: Path, province: Any) -> None:
    store = Store(tmp_path / "store")
    _fill(store, province)
    old_files = store.files("records")
    reader = store.connect()  # lists the files before the compaction
    count = reader.execute("SELECT count(*), count(DISTINCT uscc) FROM records").fetchone()
    store.compact()
    assert all(p.exists() for p in old_files)
    assert not set(old_files) & set(store.files("records"))
    assert reader.execute("SELECT count(*), count(DISTINCT uscc) FROM records").fetchone() == count
    with store.connect() as fresh:
        assert (
            fresh.execute("SELECT count(*), count(DISTINCT uscc) FROM records").fetchone() == count
        )
    reader.close()

    # a writer's clean-up keeps them while they are young; once old enough they go
    ingest_table(store, province.records.slice(0, 10), "records", "samr", today=TODAY, history=True)
    assert all(p.exists() for p in old_files)
    assert store.purge_retired(timedelta(hours=1)) == []
    gone = store.purge_retired(timedelta(0))
    assert sorted(g for g in gone if g.startswith("records/")) == sorted(
        str(p.relative_to(store.root)) for p in old_files
    )
    assert store.purge_retired(timedelta(0)) == []
    assert not any(p.exists() for p in old_files)
    with store.connect() as con:
        assert con.execute("SELECT count(*), count(DISTINCT uscc) FROM records").fetchone() == count
    assert all(p.exists() for t in SORT_KEYS for p in store.files(t))


def test_connections_share_views_but_not_registered_data(tmp_path: Path, province: Any) -> None:
    store = Store(tmp_path / "store")
    _fill(store, province, parts=1)
    codes = province.records.column("uscc").unique().to_pylist()
    errors: list[BaseException] = []
    results: dict[int, int] = {}

    def look(k: int) -> None:
        try:
            wanted = codes[k * 10 : k * 10 + k + 1]
            with store.connect() as con:
                con.register("wanted", pa.table({"uscc": wanted}))
                for _ in range(20):
                    n = con.execute(
                        "SELECT count(DISTINCT uscc) FROM records "
                        "WHERE uscc IN (SELECT uscc FROM wanted)"
                    ).fetchone()
                    assert n == (k + 1,)
                results[k] = n[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=look, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == {k: k + 1 for k in range(6)}

    # a connection opened before a commit keeps its view; one opened after sees the commit
    before = store.connect()
    n = before.execute("SELECT count(*) FROM records").fetchone()[0]
    extra = province.records.slice(0, 5).set_column(
        0, "record_id", pa.array([f"EXTRA-{i}" for i in range(5)])
    )
    assert ingest_table(store, extra, "records", "samr", today=TODAY, history=True).stored == 5
    with store.connect() as after:
        assert after.execute("SELECT count(*) FROM records").fetchone()[0] == n + 5
    assert before.execute("SELECT count(*) FROM records").fetchone()[0] == n
    before.close()


def test_compact_command(tmp_path: Path, province: Any) -> None:
    store = Store(tmp_path / "data" / "store")
    _fill(store, province)
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    shown = runner.invoke(app, ["records"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "credsup compact" in shown.output
    done = runner.invoke(app, ["compact", "--json"], env=env)
    assert done.exit_code == 0, done.output
    payload = json.loads(done.output)
    assert payload["tables"]["records"]["rows"] == province.records.num_rows
    assert payload["batch"] == store.log()[-1]["batch_id"]
    assert store.log()[-1]["kind"] == "compaction"
    again = runner.invoke(app, ["compact"], env=env)
    assert again.exit_code == 0 and "nothing committed" in again.output
    summary = json.loads(runner.invoke(app, ["records", "--json"], env=env).output)
    assert summary["files"]["records"]["unsorted_files"] == 0
    wrong = runner.invoke(app, ["compact", "--table", "quarantine"], env=env)
    assert wrong.exit_code == 2 and "cannot compact quarantine" in wrong.output


def test_a_company_is_read_from_its_own_files(
    tmp_path: Path, province: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small files, so that the run has several and each company lies in one or two of them
    monkeypatch.setattr("records.store.ROW_GROUP_ROWS", 2048)
    monkeypatch.setattr("records.store.ROW_GROUPS_PER_FILE", 1)
    store = Store(tmp_path / "store")
    _fill(store, province)
    store.compact()
    extra = province.records.slice(0, 40).set_column(
        0, "record_id", pa.array([f"LATE-{i}" for i in range(40)])
    )
    ingest_table(store, extra, "records", "samr", today=TODAY, history=True)  # a loose file
    compacted = store.log()[-2]
    ranges = compacted["ranges"]["records"]
    assert len(ranges) >= 3 and set(ranges) == set(compacted["files"]["records"])
    loose = list(store.log()[-1]["files"]["records"])
    codes = sorted(set(province.records.column("uscc").to_pylist()))
    with store.connect() as con:
        for code in [*codes[:: max(1, len(codes) // 25)], "00000000000000000X", "ZZZ"]:
            source = store.scan("records", code)
            listed = {f for f in [*ranges, *loose] if str(store.root / f) in source}
            assert set(loose) <= listed  # not sorted yet: always read
            assert listed - set(loose) == {f for f, (lo, hi) in ranges.items() if lo <= code <= hi}
            assert len(listed - set(loose)) <= 2
            query = "SELECT * FROM {} WHERE uscc = ? ORDER BY record_id, batch_id"
            got = con.sql(query.format(source), params=[code]).to_arrow_table()
            assert got == con.sql(query.format("records"), params=[code]).to_arrow_table()
        entity = store.scan("entities", codes[0])
        found = con.execute(f"SELECT count(*) FROM {entity} WHERE uscc = ?", [codes[0]]).fetchone()
        assert found is not None and found[0] >= 1
        # a key outside every compacted range, no loose file: no file is read, no row found
        assert con.execute(f"SELECT count(*) FROM {store.scan('events', 'X')}").fetchone() == (0,)
        assert registered_entity(store, codes[0], TODAY) is not None
        assert registered_entity(store, "ZZZ", TODAY) is None


def test_the_services_compaction_keeps_the_largest_run_and_waits_for_enough_files(
    tmp_path: Path, province: Any
) -> None:
    """`keep_largest` (the service's own compaction, `serving.compactor`): past `MAX_RUNS` runs
    it merges the new files and the smaller runs and leaves the largest run's files as they are;
    `min_loose` leaves a table with fewer new files alone. Every row stays."""
    store = Store(tmp_path / "store", memory_limit="1GB", threads=2)
    n = province.records.num_rows
    big, small = n // 2, max(n // 40, 1)
    ingest_table(store, province.records.slice(0, big), "records", "samr", today=TODAY,
                 history=True)  # fmt: skip
    store.compact(["records"])
    largest = set(store.files("records"))
    at = big
    for _ in range(MAX_RUNS - 1):  # MAX_RUNS runs in all: the next compaction would merge all
        ingest_table(store, province.records.slice(at, small), "records", "samr", today=TODAY,
                     history=True)  # fmt: skip
        at += small
        store.compact(["records"])
    before = _contents(store)["records"]
    for _ in range(2):
        ingest_table(store, province.records.slice(at, small), "records", "samr", today=TODAY,
                     history=True)  # fmt: skip
        at += small
    assert not store.compact(["records"], keep_largest=True, min_loose=3)["tables"]["records"][
        "rewritten"
    ]  # two new files, three wanted
    done = store.compact(["records"], keep_largest=True, min_loose=2)["tables"]["records"]
    assert done["merged"] == "all but the largest run" and done["runs"] == 2
    assert done["files_read"] == (MAX_RUNS - 1) + 2  # one file per small run, two new ones
    assert largest <= set(store.files("records"))  # the largest run untouched
    layout_now = store_summary(store)["files"]["records"]
    assert layout_now["sorted_runs"] == 2 and layout_now["unsorted_files"] == 0
    after = _contents(store)["records"]
    assert after.num_rows == before.num_rows + 2 * small
    with store.connect() as con:
        assert con.sql("SELECT count(DISTINCT record_id) FROM records").fetchall() == [(at,)]


def test_the_version_is_read_from_the_head_and_a_head_left_behind_is_repaired(
    tmp_path: Path, province: Any
) -> None:
    """`Store.version` reads `_log/HEAD`, which each commit writes after its entry; without one
    it lists the log; a HEAD a killed writer left behind is repaired by the next writer or by
    `repair_head`."""
    store = Store(tmp_path / "store", memory_limit="1GB", threads=2)
    assert store.version() == "" and not store.repair_head()
    log_dir = store.root / "_log"

    def last_entry() -> str:
        return max(p.name for p in log_dir.glob("*.json"))

    _fill(store, province, parts=2)
    head = log_dir / "HEAD"
    assert head.read_text() == last_entry() == store.version()
    assert not store.repair_head()
    head.unlink()  # a store written before the HEAD: the log is listed
    assert store.version() == last_entry()
    behind = sorted(p.name for p in log_dir.glob("*.json"))[-2]
    head.write_text(behind)  # a writer killed between its entry and the HEAD
    assert store.version() == behind
    assert store.repair_head() and store.version() == last_entry()
    head.write_text(behind)
    store.compact(["records"])  # the next writer repairs it, then commits its own
    assert store.version() == last_entry() == head.read_text()
    assert not list(log_dir.glob(".*.tmp"))
