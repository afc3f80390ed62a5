"""Promotion against a real MLflow SQLite store: a champion must score with this code, a candidate
is compared with the champion only on checks neither trained on, artifacts go where the tracking
store says."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import training.registry
from cli.main import app
from features.specs import spec_version
from models.published import CHAMPION, MODEL_NAME
from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from training.registry import MIN_COMPARISON_CHECKS, Registry
from training.train import TrainConfig, TrainOutcome, train

END = date(2026, 6, 30)
STALE = "fs-stale0000"

Trained = dict[str, tuple[TrainOutcome, TrainConfig]]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Three models of one simulated province, trained as of different days: `latest` on every
    check, `autumn` as of 2025-10-01 (validated on checks `latest` trained on) and `winter` as of
    2026-02-28 (validated partly on such checks)."""
    store = Store(tmp_path_factory.mktemp("promotion") / "store", memory_limit="2GB", threads=2)
    sim = simulate(SimulationConfig(companies=6000, years=4, seed=5, end=END))
    ingest_table(store, sim.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, sim.records, "records", "sim", today=END, history=True)
    days = {"latest": None, "autumn": date(2025, 10, 1), "winter": date(2026, 2, 28)}
    trained = {}
    for name, until in days.items():
        config = TrainConfig(until=until, n_estimators=100)
        trained[name] = (train(store, config), config)
    return trained


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """An empty registry in the default local store of a fresh data directory."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CREDSUP_DATA_DIR", str(tmp_path / "data"))
    return Registry(tmp_path / "data")


def register(registry: Registry, outcomes: Trained, name: str, spec: str | None = None) -> str:
    outcome, config = outcomes[name]
    if spec is not None:  # as if trained by code that computed other features
        outcome = replace(outcome, model=replace(outcome.model, spec_version=spec))
    return registry.log_training(outcome, config, plots=False).version


def champion(registry: Registry) -> str:
    return str(registry.client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)


def test_a_candidate_of_another_feature_spec_is_never_promoted(
    registry: Registry, outcomes: Trained
) -> None:
    first = register(registry, outcomes, "latest", spec=STALE)
    with pytest.raises(ValueError, match=STALE) as refused:  # not even without a champion
        registry.promote(first)
    assert spec_version() in str(refused.value)
    # a stale champion left by older code does not let a stale candidate through
    registry.client.set_registered_model_alias(MODEL_NAME, CHAMPION, first)
    stale = register(registry, outcomes, "latest", spec=STALE)
    for force in ({}, {"force": True, "reason": "the champion is stale anyway"}):
        with pytest.raises(ValueError, match=STALE) as refused:
            registry.promote(stale, **force)  # type: ignore[arg-type]
        assert spec_version() in str(refused.value)
        assert champion(registry) == first
    result = CliRunner().invoke(app, ["promote", stale, "--force", "--reason", "drill"])
    assert result.exit_code == 2 and STALE in result.stderr
    assert "promotion" not in registry.client.get_model_version(MODEL_NAME, stale).tags
    # a candidate of this code replaces the stale champion without a comparison
    fresh = register(registry, outcomes, "latest")
    decision = registry.promote(fresh)
    assert decision["promoted"] and STALE in decision["why"] and "comparison" not in decision
    assert champion(registry) == fresh


def test_the_comparison_uses_only_checks_after_both_models_training(
    registry: Registry, outcomes: Trained
) -> None:
    current = register(registry, outcomes, "latest")
    assert registry.promote(current)["why"] == "no champion yet"
    candidate = register(registry, outcomes, "winter")
    champion_until = outcomes["latest"][0].model.trained_until
    candidate_until = outcomes["winter"][0].model.trained_until
    assert champion_until is not None and candidate_until is not None
    assert candidate_until < champion_until

    validation = registry.validation_frame(candidate)
    unseen = (pd.to_datetime(validation["check_date"]) > pd.Timestamp(champion_until)).to_numpy()
    assert 0 < unseen.sum() < len(validation)  # the champion trained on the others
    window = validation[unseen]

    comparison = registry.compare(candidate, current)
    assert comparison["examples"] == unseen.sum() >= MIN_COMPARISON_CHECKS
    assert comparison["validation_checks"] == len(validation)
    assert comparison["window"] == {
        "after": str(champion_until),
        "from": str(min(window["check_date"])),
        "until": str(max(window["check_date"])),
    }
    assert comparison["fair"]
    assert comparison["champion"]["trained_until"] == str(champion_until)
    assert comparison["candidate"]["trained_until"] == str(candidate_until)
    _, model = registry.load(current)
    auc = roc_auc_score(
        window["label"], model.predict_proba(window), sample_weight=window["weight"]
    )
    assert comparison["champion"]["auc"] == round(float(auc), 5)

    decision = registry.promote(candidate)
    assert decision["comparison"]["examples"] == unseen.sum()
    assert f"on {unseen.sum()} validation checks" in decision["why"]
    assert decision["promoted"] == (champion(registry) == candidate)


def test_models_that_cannot_be_compared_fairly_are_not_promoted(
    registry: Registry, outcomes: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = register(registry, outcomes, "latest")
    registry.promote(current)
    # validated on checks of 2025 the champion trained on (the confirmed v3 of `--until`)
    autumn = register(registry, outcomes, "autumn")
    validated = len(registry.validation_frame(autumn))
    decision = registry.promote(autumn)
    assert not decision["promoted"] and champion(registry) == current
    assert decision["why"].startswith(
        f"the models cannot be compared fairly: 0 of the candidate's {validated} validation checks"
    )
    assert decision["comparison"]["examples"] == 0 and not decision["comparison"]["fair"]

    # too few checks after both models' training, though some
    winter = register(registry, outcomes, "winter")
    unseen = registry.compare(winter, current)["examples"]
    assert unseen > 0
    monkeypatch.setattr(training.registry, "MIN_COMPARISON_CHECKS", unseen + 1)
    decision = registry.promote(winter)
    assert not decision["promoted"] and champion(registry) == current
    assert f"cannot be compared fairly: {unseen} of the candidate's" in decision["why"]
    assert f"at least {unseen + 1}" in decision["why"]

    # forcing still needs a reason, and then promotes
    with pytest.raises(ValueError, match="reason"):
        registry.promote(autumn, force=True)
    decision = registry.promote(autumn, force=True, reason="backtest of the autumn model")
    assert decision["promoted"] and decision["forced"] and champion(registry) == autumn


def _path(artifact_location: str) -> Path:
    return Path(url2pathname(urlparse(artifact_location).path)).resolve()


def test_artifacts_go_where_the_tracking_store_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcomes: Trained
) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    data = (tmp_path / "data").resolve()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    elsewhere = Registry(data)
    found = elsewhere.client.get_experiment(elsewhere.experiment_id())
    assert not _path(found.artifact_location).is_relative_to(data)
    outcome, config = outcomes["latest"]
    run_id = elsewhere.log_training(outcome, config, plots=False).run_id
    logged = _path(elsewhere.client.get_run(run_id).info.artifact_uri)
    assert logged.is_relative_to(_path(found.artifact_location))
    assert (logged / "evaluation" / "validation.parquet").is_file()
    assert not (data / "mlflow" / "artifacts").exists()
    assert not elsewhere.local_store()

    # the default store, whether named or not, keeps its artifacts beside it
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    local = Registry(data)
    found = local.client.get_experiment(local.experiment_id())
    assert _path(found.artifact_location) == data / "mlflow" / "artifacts"
    assert local.local_store()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local.uri)
    assert Registry(data).local_store()
