"""`training.train.train` and `credsup train` say what they could not use: spot checks whose
inclusion probability is no probability (weighted 1 and counted, not a traceback), a truth folder
that is not there (exit 2, not silence), and stability figures left out after a feature-spec
change (the reason, in one line)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.modelling import print_report
from records.ingest import ingest_table
from records.simulate import Simulation, SimulationConfig, simulate, write_simulation
from records.store import Store
from tests.features.stores import add_records
from training.train import MissingTruth, TrainConfig, TrainOutcome, train

END = date(2026, 6, 30)
CONFIG = TrainConfig(n_estimators=30, min_child_samples=10)
runner = CliRunner()


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(SimulationConfig(companies=800, years=3, seed=11, end=END))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, simulation: Simulation) -> Path:
    """A data directory whose store holds the simulated province."""
    root = tmp_path_factory.mktemp("train")
    store = Store(root / "store", memory_limit="2GB", threads=2)
    ingest_table(store, simulation.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, simulation.records, "records", "sim", today=END, history=True)
    return root


@pytest.fixture(scope="module")
def province(data_dir: Path) -> Store:
    return Store(data_dir / "store", memory_limit="2GB", threads=2)


@pytest.fixture(scope="module")
def trained(province: Store) -> TrainOutcome:
    return train(province, CONFIG)


@pytest.fixture(scope="module")
def mistyped(
    data_dir: Path, simulation: Simulation, tmp_path_factory: pytest.TempPathFactory
) -> Store:
    """The province and two spot checks of the training period whose inclusion probability is
    no probability, and one triggered check (not drawn at random)."""
    store = Store(tmp_path_factory.mktemp("mistyped") / "store", memory_limit="2GB", threads=2)
    shutil.copytree(data_dir / "store", store.root, dirs_exist_ok=True)
    code = simulation.entities.column("uscc")[0].as_py()
    add_records(store, [
        {"record_id": f"BAD-{i}", "uscc": code, "category": "spot_check", "severity": "problem",
         "event_date": date(2024, 3, 1), "recorded_date": date(2024, 3, 8), "source_dept": "samr",
         "amount": None, "attributes": json.dumps({"check_item": "x", "inclusion_prob": p})}
        for i, p in ((1, -0.2), (2, 15))
    ] + [
        {"record_id": "TRIGGERED-1", "uscc": code, "category": "spot_check",
         "severity": "serious", "event_date": date(2024, 3, 1), "recorded_date": date(2024, 3, 8),
         "source_dept": "samr", "amount": None,
         "attributes": json.dumps({"check_item": "x", "inclusion_prob": 1.0,
                                   "basis": "triggered", "tier": "A"})},
    ], today=END)  # fmt: skip
    return store


def _text(value: str) -> str:
    """Rich's line wrapping undone."""
    return " ".join(value.split())


# ---- 1. an inclusion probability that is no probability --------------------------------------


def test_an_invalid_inclusion_probability_is_weighted_1_and_counted(
    mistyped: Store, trained: TrainOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trained.report["invalid_inclusion_prob"] == 0  # the simulator's are all fine
    report = train(mistyped, CONFIG).report
    assert report["invalid_inclusion_prob"] == 2
    assert report["invalid_inclusion_prob_records"] == ["BAD-1", "BAD-2"]
    print_report(report)
    printed = _text(capsys.readouterr().out)
    assert "2 spot checks have an inclusion probability that is not a number in (0, 1]" in printed
    assert "BAD-1, BAD-2" in printed
    # a check triggered by a complaint is not drawn at random: left out, and said so
    assert trained.report["triggered_left_out"] == 0 and report["triggered_left_out"] == 1
    assert "1 spot check not drawn at random (triggered) was left out" in printed


def test_a_model_of_few_checks_is_said_to_be_one(
    trained: TrainOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model trained on a handful of checks (`--until` early, a new province) was registered
    without a word; 800 companies give 85 training and 52 validation checks."""
    report = trained.report
    assert (report["training_examples"], report["examples"]) == (85, 52)
    assert report["training_short"] and report["validation_short"]
    assert not report["validation_extended"]  # all 137 checks together fall short: kept as is
    print_report(report)
    said = _text(capsys.readouterr().err)
    assert "warning: trained on 85 checks, fewer than 200 with 20 of each label" in said
    assert "warning: 52 validation checks are fewer than 200 with 20 of each label" in said


# ---- 5. the truth folder must be there --------------------------------------------------------


def test_a_missing_truth_folder_is_an_error(province: Store, tmp_path: Path) -> None:
    with pytest.raises(MissingTruth, match="no/such/dir"):
        train(province, CONFIG, truth_dir=tmp_path / "no" / "such" / "dir")
    with pytest.raises(MissingTruth, match=r"spot_checks\.parquet"):
        train(province, CONFIG, truth_dir=tmp_path)  # a folder, but not a truth folder


def test_train_with_a_missing_truth_folder_exits_2(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDSUP_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    missing = tmp_path / "no" / "such" / "dir"
    result = runner.invoke(app, ["train", "--no-plots", "--truth", str(missing)])
    assert result.exit_code == 2, result.output
    # rich may wrap a long path anywhere (also after a slash): compare without any whitespace
    assert str(missing) in "".join(result.stderr.split()), result.stderr
    assert "does not exist" in _text(result.stderr)
    result = runner.invoke(app, ["train", "--no-plots", "--truth", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "spot_checks.parquet" in _text(result.stderr)


def test_a_truth_folder_is_used_when_it_is_there(
    province: Store, simulation: Simulation, tmp_path: Path
) -> None:
    truth_dir = write_simulation(simulation, tmp_path)["truth"].parent
    assert "truth" in train(province, CONFIG, truth_dir=truth_dir).report


# ---- 6. stability figures left out after a feature-spec change: say why -----------------------


def test_stability_left_out_after_a_spec_change_says_why(
    province: Store, trained: TrainOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    same = train(province, CONFIG, previous=trained.model, previous_version="3").report
    assert "stability" in same and "stability_skipped" not in same
    older = replace(trained.model, spec_version="fs-000000000000")
    report = train(province, CONFIG, previous=older, previous_version="3").report
    assert "stability" not in report
    why = report["stability_skipped"]
    spec = trained.model.spec_version
    assert why == (
        f"stability against the champion not computed: champion v3 uses feature spec "
        f"fs-000000000000, this model {spec}"
    )
    print_report(report)
    assert why in _text(capsys.readouterr().out)
    # the first model: no champion to compare with, said so (nothing was said)
    assert trained.report["stability_skipped"] == (
        "stability not computed: there is no champion yet to compare the tiers with"
    )
