"""`credsup train / promote / models / tier / predict` against a real MLflow SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from features.builder import build_features
from models.batch import tier_companies
from models.published import CHAMPION, MODEL_NAME
from records.settings import Settings
from records.store import Store
from records.workdays import china_today
from serving.db import audit_log, make_engine
from training.registry import Registry

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CREDSUP_DATA_DIR", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = runner.invoke(
            app,
            ["simulate", "--companies", "6000", "--years", "4", "--seed", "5",
             "--out", str(root / "sim"), "--ingest", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        yield root


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> dict[str, object]:
    code, out, err = _run("train", "--truth", str(data_dir / "sim" / "truth"), "--json")
    assert code == 0, err
    payload: dict[str, object] = json.loads(out)
    code, out, err = _run("promote", "1", "--json")  # the first model: no champion yet
    assert code == 0 and json.loads(out)["why"] == "no champion yet", err
    return payload


def test_train_logs_a_run_and_registers_a_version(data_dir: Path, trained: dict) -> None:
    assert trained["version"] == "1"
    assert str(trained["tracking_uri"]).startswith("sqlite:///")
    assert (data_dir / "mlflow" / "mlflow.db").exists()
    report = trained["report"]
    for key in ("auc", "pr_auc", "brier", "calibration_error", "tiers", "plan", "population"):
        assert key in report
    assert 0.5 < report["auc"] <= 1
    assert [r["tier"] for r in report["tiers"]] == ["A", "B", "C", "D"]
    truth = report["truth"]  # simulated data: the same figures against the hidden truth
    assert truth["plan"]["lift"] > 1 and truth["population"]["plan"]["lift"] > 1
    assert truth["tiers"][3]["problem_rate"] > truth["tiers"][0]["problem_rate"]
    # the information ceiling: a model of the same records fitted on the truth itself
    population = truth["population"]
    assert 1 < population["information_plan"]["lift"] <= population["oracle_plan"]["lift"]

    client = MlflowClient(
        tracking_uri=trained["tracking_uri"], registry_uri=trained["tracking_uri"]
    )
    run = client.get_run(str(trained["run_id"]))
    assert run.data.params["spec_version"] == trained["spec_version"]
    for metric in (
        "auc", "pr_auc", "brier", "calibration_error", "plan_lift", "truth_plan_lift",
        "truth_population_oracle_plan_lift", "truth_population_information_plan_lift",
    ):  # fmt: skip
        assert metric in run.data.metrics
    logged = {
        a.path
        for folder in ("plots", "evaluation")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    wanted = {
        "plots/roc.png", "plots/calibration.png", "plots/shap_beeswarm.png", "plots/tiers.png",
        "evaluation/report.json", "evaluation/validation.parquet",
    }  # fmt: skip
    assert wanted <= logged
    version = client.get_model_version(MODEL_NAME, "1")
    assert version.tags["spec_version"] == trained["spec_version"]

    # one artifact bundles model, calibrator, cut-offs and vetoes, readable as a pyfunc
    manifest = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{MODEL_NAME}/1/artifacts/manifest.json",
                dst_path=str(data_dir / "dl"),
                tracking_uri=str(trained["tracking_uri"]),
            )
        ).read_text()
    )
    assert manifest["calibrated"] and len(manifest["cutoffs"]) == 3
    assert manifest["vetoes"][0]["feature"] == "on_serious_dishonest_list"
    mlflow.set_tracking_uri(str(trained["tracking_uri"]))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1")
    feats = build_features(Store(data_dir / "store"), date(2026, 6, 30)).to_pandas().head(50)
    served = pyfunc.predict(feats)
    _, model = Registry(data_dir).load("1")
    direct = model.score(feats, reasons=3)
    pd.testing.assert_series_equal(served["probability"], direct["probability"])
    assert served["tier"].tolist() == direct["tier"].tolist()


def test_promotion_needs_a_better_model_or_a_forced_reason(data_dir: Path, trained: dict) -> None:
    code, out, _ = _run("promote", "1", "--json")
    assert code == 1 and json.loads(out)["why"] == "version 1 is already champion"
    # the same data and settings give the same model: not better, not promoted
    code, out, err = _run("train", "--no-plots", "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["version"] == "2" and second["previous_champion"] == "1"
    assert not second["report"]["training_short"] and not second["report"]["validation_short"]
    assert second["report"]["stability"]["psi"] == pytest.approx(0, abs=1e-9)
    assert second["report"]["stability"]["changed_share"] == 0
    code, out, _ = _run("promote", "2", "--json")
    decision = json.loads(out)
    assert code == 1 and not decision["promoted"]
    assert decision["why"].startswith("does not beat the champion")
    assert decision["comparison"]["candidate"]["auc"] == decision["comparison"]["champion"]["auc"]
    gain = decision["comparison"]["auc_gain"]  # the same model: no gain in any resample
    assert gain["estimate"] == gain["p05"] == gain["p95"] == 0 and gain["resamples"] > 150
    code, _, err = _run("promote", "2", "--force")
    assert code == 2 and "--reason" in err
    # a reason without --force promotes nothing, and is said to be kept with the decision
    code, out, _ = _run("promote", "2", "--reason", "second look after the audit")
    assert code == 1 and "not promoted" in out
    assert "reason noted with the decision: second look after the audit" in out
    code, out, _ = _run("promote", "2", "--force", "--reason", "rollback drill", "--json")
    decision = json.loads(out)
    assert code == 0 and decision["promoted"] and decision["forced"]
    registry = Registry(data_dir)
    assert str(registry.client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "2"
    tag = json.loads(registry.client.get_model_version(MODEL_NAME, "2").tags["promotion"])
    assert tag["reason"] == "rollback drill" and tag["previous_champion"] == "1"
    code, out, _ = _run("models", "--json")
    rows = json.loads(out)["versions"]
    assert [r["version"] for r in rows] == ["1", "2"] and rows[1]["aliases"] == ["champion"]
    # every decision on a version is kept, in order (the tag alone kept the last)
    history = [(d["promoted"], d["why"].split(":")[0], d.get("forced", False))
               for d in rows[1]["promotions"]]  # fmt: skip
    assert history == [(False, "does not beat the champion", False),
                       (False, "does not beat the champion", False),
                       (True, "does not beat the champion", True)]  # fmt: skip
    assert rows[1]["promotions"][1]["reason"] == "second look after the audit"
    assert [d["why"] for d in rows[0]["promotions"]] == [
        "no champion yet",
        "version 1 is already champion",
    ]


def test_an_empty_registry_is_no_error(tmp_path: Path) -> None:
    """`credsup models` and `promote latest` on a new data directory (or tracking server) ended
    in MLflow's "Registered Model … not found" traceback."""
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "new"), "MLFLOW_TRACKING_URI": None}
    listed = CliRunner().invoke(app, ["models", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["versions"] == []
    latest = CliRunner().invoke(app, ["promote", "latest"], env=env)
    assert latest.exit_code == 2 and "no versions of credit-tier registered yet" in latest.output


def test_tier_stores_every_company_with_its_model_version(data_dir: Path, trained: dict) -> None:
    code, out, err = _run("tier", "--as-of", "2026-06-30", "--json")
    assert code == 0, err
    payload = json.loads(out)
    table = pq.read_table(payload["path"]).to_pandas()
    assert len(table) == payload["companies"] > 5000
    assert set(table["tier"]) == {"A", "B", "C", "D"}
    assert (table["as_of"] == date(2026, 6, 30)).all()
    assert set(table["model_version"]) == {payload["version"]}
    assert set(table["spec_version"]) == {trained["spec_version"]}
    reasons = [json.loads(r) for r in table["reasons"]]
    assert all(isinstance(r, list) for r in reasons)
    evidence = [x for rs in reasons for x in rs if "evidence" in x]
    assert len(evidence) > 1000
    sample = evidence[0]
    assert sample["evidence"]["matched"] >= 1 and sample["evidence"]["latest"] <= "2026-06-30"
    assert "条记录" in sample["zh"] and ", latest 20" in sample["en"]
    # the model learnt from checks up to half a year before the day: no hindsight, no warning
    assert payload["trained_until"] < "2026-06-30" and payload["hindsight"] is False
    assert "hindsight" not in err


def test_tiering_a_day_before_the_models_training_data_ends_warns_of_hindsight(
    data_dir: Path, trained: dict
) -> None:
    code, out, err = _run("tier", "--as-of", "2025-03-31", "--reasons", "0", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["hindsight"] is True and payload["trained_until"] > "2025-03-31"
    assert f"trained on checks until {payload['trained_until']}, after 2025-03-31" in err
    assert "credsup predict" in err


def test_predict_is_point_in_time_and_matches_the_batch(data_dir: Path, trained: dict) -> None:
    store = Store(data_dir / "store")
    registry = Registry(data_dir)
    version, model = registry.load("champion")
    day = date(2025, 6, 30)
    batch = tier_companies(store, model, day, MODEL_NAME, version).to_pandas().head(30)
    points = data_dir / "points.csv"
    pd.DataFrame({"uscc": batch["uscc"], "as_of": day.isoformat()}).to_csv(points, index=False)
    with points.open("a") as f:
        f.write("91110000600037341L,2025-06-30\n")  # a valid code the store has never seen
    target = data_dir / "predicted.parquet"
    code, out, err = _run(
        "predict", "--purpose", "backtest", "--points", str(points), "--out", str(target), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["unknown"] == 1
    got = pq.read_table(target).to_pandas()
    scored = got[got["status"] == "scored"].set_index("uscc").loc[batch["uscc"]]
    assert scored["probability"].tolist() == pytest.approx(batch["probability"].tolist())
    assert scored["tier"].tolist() == batch["tier"].tolist()
    assert got.loc[got["status"] == "unknown", "uscc"].tolist() == ["91110000600037341L"]
    # the companies scored are in the audit log, with the file and the model
    with make_engine(Settings().serving_url).connect() as con:
        logged = con.execute(
            sa.select(audit_log.c.uscc, audit_log.c.role, audit_log.c.purpose, audit_log.c.status)
            .where(audit_log.c.endpoint == "credsup predict")
        ).all()  # fmt: skip
    assert {u for u, *_ in logged} == {*batch["uscc"], "91110000600037341L"}
    assert len(logged) == 31 and {r for _, r, _, _ in logged} == {"operator"}
    assert all(p.startswith(f"backtest: points.csv, model v{version} (by ") for *_, p, _ in logged)
    # the unknown company is logged as the API's batch logs it, 404; the others 200
    assert {(u, s) for u, _, _, s in logged if s != 200} == {("91110000600037341L", 404)}

    # a repeated point is scored once and said; points all unknown still give the columns
    with points.open("a") as f:
        f.write(f"{batch['uscc'].iloc[0]},2025-06-30\n")
    code, out, err = _run(
        "predict", "--purpose", "test", "--points", str(points), "--out", str(target), "--json"
    )
    assert code == 0 and json.loads(out)["duplicates"] == 1, err
    assert len(pq.read_table(target)) == 31
    unknown = data_dir / "unknown.csv"
    unknown.write_text("uscc,as_of\n91110000600037341L,2025-06-30\n")
    code, out, err = _run(
        "predict", "--purpose", "test", "--points", str(unknown), "--out", str(target), "--json"
    )
    assert code == 0 and json.loads(out)["unknown"] == 1, err
    got = pq.read_table(target).to_pandas()
    assert {"probability", "tier", "reasons"} <= set(got.columns) and got["tier"].isna().all()


def test_train_as_of_an_earlier_day(data_dir: Path, trained: dict) -> None:
    code, out, err = _run("train", "--until", "2025-06-30", "--no-plots", "--json")
    assert code == 0, err
    report = json.loads(out)["report"]
    assert report["validation_until"] <= "2025-06-30"
    assert report["population"]["as_of"] <= "2025-06-30"
    assert report["examples"] + report["training_examples"] < (
        trained["report"]["examples"] + trained["report"]["training_examples"]
    )


def test_bad_input_is_named(data_dir: Path, trained: dict) -> None:
    bad = data_dir / "bad.csv"
    bad.write_text("uscc,as_of\n91110000600037341X,2025-06-30\n")
    code, _, err = _run("predict", "--purpose", "test", "--points", str(bad))
    assert code == 2 and "row 1" in err and "check character" in err
    empty = data_dir / "empty.csv"
    empty.write_text("uscc,as_of\n")
    code, _, err = _run("predict", "--purpose", "test", "--points", str(empty))
    assert code == 2 and "no points" in err
    code, _, err = _run("tier", "--as-of", "1900-01-01")  # before any company
    assert code == 1 and "no company registered and active as of 1900-01-01" in err
    code, _, err = _run("tier", "--as-of", "2026-06-30", "--model", "99")
    assert code == 2 and "no version '99'" in err
    code, _, err = _run("train", "--label", "everything")
    assert code == 2 and "problem or serious" in err


def test_dates_after_today_are_refused(data_dir: Path, trained: dict) -> None:
    """Results as of a day whose records are not known yet are not built, nor stored as if
    they described it; the error names the date and today."""
    # two days on: still after today if China's midnight passes while the commands run
    tomorrow = (china_today() + timedelta(days=2)).isoformat()
    stored = sorted(p.name for p in data_dir.rglob("*.parquet"))
    penalty = data_dir / "penalty.csv"
    penalty.write_text("record_id,uscc,category,severity,event_date,recorded_date,source_dept,"
                       "amount,attributes\nFUT1,91110000600037341L,admin_penalty,general,"
                       f"{tomorrow},{tomorrow},samr,100,{{}}\n")  # fmt: skip
    for command in (
        ["tier", "--as-of", tomorrow],
        ["score", "--as-of", tomorrow],
        ["features", "--as-of", tomorrow],
        ["load", "--as-of", tomorrow],  # results stored for a day to come are not served
        ["lists", "derive", "--as-of", tomorrow],
        ["lists", "derive", "--as-of", "2026-06-30", "--today", tomorrow],
        ["plan", "create", "--name", "x", "--departments", "samr", "--snapshot", tomorrow],
        ["ingest", str(penalty), "--source", "samr", "--today", tomorrow],
    ):
        code, _, err = _run(*command)
        text = " ".join(err.split())  # rich wraps long lines
        assert code == 2 and tomorrow in text and "after today" in text, (command, err)
    assert sorted(p.name for p in data_dir.rglob("*.parquet")) == stored
    points = data_dir / "future.csv"
    tiered = _run("tier", "--as-of", "2026-06-30", "--json")[1]
    first = pq.read_table(json.loads(tiered)["path"]).column("uscc")[0].as_py()
    points.write_text(f"uscc,as_of\n{first},2026-06-30\n{first},{tomorrow}\n")
    code, _, err = _run("predict", "--purpose", "test", "--points", str(points))
    text = " ".join(err.split())
    assert code == 2 and f"row 2: {tomorrow}" in text and "after today" in text, err
    assert not list(data_dir.glob("future.predicted-*"))


def test_tier_shares_or_thresholds_from_the_command_line(data_dir: Path, trained: dict) -> None:
    code, out, err = _run("train", "--no-plots", "--thresholds", "0.1,0.2,0.4", "--json")
    assert code == 0, err
    assert json.loads(out)["report"]["population"]["cutoffs"] == [0.1, 0.2, 0.4]
    code, out, err = _run("train", "--no-plots", "--shares", "0,80,15,5", "--json")
    assert code == 0, err
    assert json.loads(out)["report"]["population"]["shares"]["A"] == 0  # vetoes only raise
    for option, value, message in (
        ("--shares", "50,50,10", "4 comma-separated numbers"),
        ("--shares", "20,60,15,10", "add up to 100"),
        ("--thresholds", "0.3,0.2,0.4", "3 increasing probabilities"),
    ):
        code, _, err = _run("train", option, value)
        assert code == 2 and message in err, err
