"""`predict_points` and `credsup predict` on awkward input: empty codes or dates are refused
naming the rows, unreadable files are a clear error (exit 2), time-zoned time stamps are dated in
China Standard Time, and a company that is not active on a point's date is not tiered (as
`credsup tier` leaves it out), while it is still scored on a date it was active."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.builder import build_features
from models.batch import BadPoints, predict_points, read_points, tier_companies
from models.bundle import TierModel
from records.ingest import ingest_table
from records.simulate import Simulation, SimulationConfig, simulate
from records.store import Store
from training.registry import Registry
from training.train import TrainConfig, train

END = date(2026, 6, 30)
CLOSED = date(2026, 3, 1)
"""The day the platform learned that the test company was deregistered."""


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(SimulationConfig(companies=800, years=3, seed=11, end=END))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory as `credsup` uses it: the store and the MLflow registry."""
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def province(data_dir: Path, simulation: Simulation) -> Store:
    store = Store(data_dir / "store", memory_limit="2GB", threads=2)
    ingest_table(store, simulation.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, simulation.records, "records", "sim", today=END, history=True)
    return store


@pytest.fixture(scope="module")
def model(province: Store, data_dir: Path) -> TierModel:
    """Trained, registered in the data directory's MLflow registry and promoted to champion,
    so that `credsup predict` loads it as it would in use."""
    config = TrainConfig(n_estimators=30, min_child_samples=10)
    outcome = train(province, config)
    with pytest.MonkeyPatch.context() as mp:  # MLflow leaves the last store used in the env
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry = Registry(data_dir)
        registered = registry.log_training(outcome, config, plots=False)
        decision = registry.promote(registered.version)
    assert decision["promoted"], decision
    return outcome.model


@pytest.fixture(scope="module")
def closed(province: Store) -> str:
    """A company active the day before CLOSED and on END, whose deregistration is then recorded
    on CLOSED."""
    codes = _codes(province, 50)[1:]
    before = build_features(province, CLOSED - timedelta(days=1), codes).to_pandas()
    after = build_features(province, END, codes).to_pandas()
    active = set(before.loc[before["active"] > 0, "uscc"])
    code = str(sorted(active & set(after.loc[after["active"] > 0, "uscc"]))[0])
    entities = province.read("entities").to_pylist()
    latest = max((e for e in entities if e["uscc"] == code), key=lambda e: e["recorded_date"])
    row = {k: latest[k] for k in ("uscc", "name", "industry", "region", "entity_type",
                                  "registered_capital", "established_date")}  # fmt: skip
    row.update(status="deregistered", recorded_date=CLOSED)
    result = ingest_table(
        province, pa.Table.from_pylist([row]), "entities", "samr", today=END, history=True
    )
    assert result.quarantined == 0, result.to_dict()
    return code


def _predict(province: Store, model: TierModel, points: pa.Table) -> list[dict[str, Any]]:
    return list(predict_points(province, model, points, "m", "1", reasons=0).to_pylist())


def _codes(province: Store, n: int) -> list[str]:
    rows = province.read("entities").column("uscc").to_pylist()
    return sorted(set(rows))[:n]


# ---- a province in parts ---------------------------------------------------------------------


def test_a_province_tiered_in_parts_gives_the_bits_of_one_piece(
    province: Store, model: TierModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`credsup tier` scores, explains and backs reasons with records `PART` companies at a time
    and the evidence query takes `COMPANIES_AT_ONCE` (1 M companies at once ran out of DuckDB's
    6 GB): every row, reason and record id is what one piece gives, for backtests too."""
    import features.evidence
    import models.batch

    whole = tier_companies(province, model, END, "m", "1")
    codes = whole.column("uscc").to_pylist()
    points = pa.table({"uscc": codes[:90] * 2,
                       "as_of": [END] * 90 + [END - timedelta(days=200)] * 90})  # fmt: skip
    backtest = predict_points(province, model, points, "m", "1")
    monkeypatch.setattr(models.batch, "PART", 37)
    monkeypatch.setattr(features.evidence, "COMPANIES_AT_ONCE", 11)
    assert whole.num_rows > 37 * 5
    assert tier_companies(province, model, END, "m", "1").equals(whole)
    assert predict_points(province, model, points, "m", "1").equals(backtest)
    backed = [r for rs in whole.column("reasons").to_pylist() for r in json.loads(rs)
              if r.get("evidence")]  # fmt: skip
    assert len(backed) > 100  # the evidence was filled in, in parts too


# ---- empty values are refused, naming the rows ------------------------------------------------


def test_a_null_or_empty_date_or_code_is_refused_naming_the_row(province: Store) -> None:
    code = _codes(province, 1)[0]
    null_date = pa.table({"uscc": [code, code], "as_of": pa.array([END, None], pa.date32())})
    with pytest.raises(BadPoints, match=r"row 2: as_of is empty"):
        read_points(null_date)
    null_code = pa.table({"uscc": [None, code], "as_of": pa.array([END, END], pa.date32())})
    with pytest.raises(BadPoints, match=r"row 1: uscc is empty"):
        read_points(null_code)
    # as a CSV gives them: empty text
    text = pa.table({"uscc": [code, " ", code], "as_of": ["2026-06-30", "2026-06-30", ""]})
    with pytest.raises(BadPoints) as caught:
        read_points(text)
    assert "row 2: uscc is empty" in str(caught.value)
    assert "row 3: as_of is empty" in str(caught.value)
    not_a_date = pa.table({"uscc": [code, code], "as_of": ["2026-06-30", "2026-13-01"]})
    with pytest.raises(BadPoints, match=r"row 2: '2026-13-01'"):
        read_points(not_a_date)


def test_a_date_after_today_is_refused_naming_the_rows(province: Store) -> None:
    code = _codes(province, 1)[0]
    today = date(2026, 7, 1)
    points = pa.table({"uscc": [code] * 3, "as_of": ["2026-06-30", "2026-07-01", "2026-07-02"]})
    with pytest.raises(BadPoints, match=r"as_of after today \(2026-07-01\).*: row 3: 2026-07-02$"):
        read_points(points, today=today)
    assert read_points(points.slice(0, 2), today=today).num_rows == 2  # today itself is known


def test_predict_refuses_a_null_date_instead_of_failing_later(
    province: Store, model: TierModel
) -> None:
    code = _codes(province, 1)[0]
    points = pa.table({"uscc": [code, code], "as_of": pa.array([END, None], pa.date32())})
    with pytest.raises(BadPoints, match=r"row 2: as_of is empty"):
        predict_points(province, model, points, "m", "1", reasons=0)


# ---- time-zoned time stamps are dated in China Standard Time ----------------------------------


def test_a_time_zoned_time_stamp_is_dated_in_china_standard_time() -> None:
    code = "91110000600037341L"
    evening_utc = datetime(2026, 6, 29, 20, 0, tzinfo=UTC)  # 04:00 on 30 June in Beijing
    morning_beijing = datetime(2026, 6, 30, 1, 0, tzinfo=timezone(timedelta(hours=8)))
    zoned = pa.table(
        {
            "uscc": [code, code],
            "as_of": pa.array([evening_utc, morning_beijing], pa.timestamp("ms", "UTC")),
        }
    )
    assert read_points(zoned).column("as_of").to_pylist() == [END, END]
    shanghai = pa.table(
        {"uscc": [code], "as_of": pa.array([evening_utc], pa.timestamp("us", "Asia/Shanghai"))}
    )
    assert read_points(shanghai).column("as_of").to_pylist() == [END]
    # a naive time stamp is a wall-clock time already: its own date
    naive = pa.table({"uscc": [code], "as_of": pa.array([datetime(2026, 6, 29, 20, 0)])})
    assert read_points(naive).column("as_of").to_pylist() == [date(2026, 6, 29)]


def test_predict_scores_a_time_zoned_point_as_of_its_china_date(
    province: Store, model: TierModel
) -> None:
    code = _codes(province, 1)[0]
    zoned = pa.table(
        {
            "uscc": [code],
            "as_of": pa.array(
                [datetime(2026, 6, 29, 20, 0, tzinfo=UTC)], pa.timestamp("ms", "UTC")
            ),
        }
    )
    dated = pa.table({"uscc": [code], "as_of": pa.array([END], pa.date32())})
    (got,) = _predict(province, model, zoned)
    (want,) = _predict(province, model, dated)
    assert got["as_of"] == END
    assert got == want


# ---- companies not active on the date are not tiered -----------------------------------------


def test_predict_does_not_tier_a_company_that_is_not_active_on_the_date(
    province: Store, model: TierModel, closed: str
) -> None:
    days = [CLOSED - timedelta(days=1), CLOSED, END]
    points = pa.table({"uscc": [closed] * 3, "as_of": pa.array(days, pa.date32())})
    rows = {r["as_of"]: r for r in _predict(province, model, points)}
    before = rows[CLOSED - timedelta(days=1)]  # point in time: still active the day before
    assert before["status"] == "scored" and before["tier"] in ("A", "B", "C", "D")
    for day in (CLOSED, END):
        assert rows[day]["status"] == "inactive"
        assert rows[day]["tier"] is None and rows[day]["probability"] is None
        assert rows[day]["model_tier"] is None


def test_predict_scores_exactly_the_companies_the_batch_tiers(
    province: Store, model: TierModel, closed: str
) -> None:
    codes = sorted(set(province.read("entities").column("uscc").to_pylist()))
    points = pa.table({"uscc": codes, "as_of": pa.array([END] * len(codes), pa.date32())})
    rows = _predict(province, model, points)
    batch = tier_companies(province, model, END, "m", "1", reasons=0).to_pylist()
    tiers = {r["uscc"]: r["tier"] for r in batch}
    scored = {r["uscc"]: r["tier"] for r in rows if r["status"] == "scored"}
    assert scored == tiers
    inactive = {r["uscc"] for r in rows if r["status"] == "inactive"}
    assert closed in inactive and not inactive & set(tiers)
    assert len(scored) + len(inactive) + sum(r["status"] == "unknown" for r in rows) == len(rows)


# ---- the command: unreadable files and inactive companies, exit codes --------------------------

runner = CliRunner()


@pytest.fixture
def cli_model(
    province: Store, model: TierModel, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """`credsup predict` over the data directory (its store and registered champion); files of
    a test go to a folder of their own."""
    monkeypatch.setenv("CREDSUP_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    files = data_dir / f"files-{next(_FOLDERS)}"
    files.mkdir()
    yield files


_FOLDERS = itertools.count()


def _run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr with rich's line wrapping undone."""
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.stdout.split()), " ".join(result.stderr.split())


def test_an_unreadable_points_file_is_a_clear_error(cli_model: Path, province: Store) -> None:
    code = _codes(province, 1)[0]
    ragged = cli_model / "ragged.csv"
    ragged.write_text(f"uscc,as_of\n{code},2026-06-30\n{code},2026-06-30,extra\n")
    status, _, err = _run("predict", "--purpose", "test", "--points", str(ragged))
    assert status == 2, err
    assert "ragged.csv" in err and "row 2" in err and "3 fields" in err
    broken = cli_model / "broken.parquet"
    broken.write_bytes(b"uscc,as_of\nnot parquet at all\n")
    status, _, err = _run("predict", "--purpose", "test", "--points", str(broken))
    assert status == 2 and "broken.parquet" in err and "cannot read" in err, err
    empty_date = cli_model / "empty.csv"
    empty_date.write_text(f"uscc,as_of\n{code},2026-06-30\n{code},\n")
    status, _, err = _run("predict", "--purpose", "test", "--points", str(empty_date))
    assert status == 2 and "row 2: as_of is empty" in err, err
    null_date = cli_model / "null.parquet"
    pq.write_table(
        pa.table({"uscc": [code, code], "as_of": pa.array([END, None], pa.date32())}), null_date
    )
    status, _, err = _run("predict", "--purpose", "test", "--points", str(null_date))
    assert status == 2 and "row 2: as_of is empty" in err, err


def test_the_command_counts_inactive_points(cli_model: Path, closed: str) -> None:
    points = cli_model / "points.csv"
    points.write_text(f"uscc,as_of\n{closed},2026-02-28\n{closed},2026-06-30\n")
    target = cli_model / "out.parquet"
    status, out, err = _run(
        "predict", "--purpose", "test", "--points", str(points), "--out", str(target), "--json"
    )
    assert status == 0, err
    payload = json.loads(out)
    assert (payload["scored"], payload["inactive"], payload["unknown"]) == (1, 1, 0)
    status, out, err = _run(
        "predict", "--purpose", "test", "--points", str(points), "--out", str(target)
    )
    assert status == 0 and "1 inactive" in out and "inactive:" in err, (out, err)
