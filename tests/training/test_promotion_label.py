"""Promotion never compares models of different labels: a `serious` model scored against `problem`
outcomes (or the reverse) measures something else; changing the label needs `force` and a reason."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from models.published import CHAMPION, MODEL_NAME
from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from training.registry import Registry
from training.train import TrainConfig, TrainOutcome, train

END = date(2026, 6, 30)

Trained = dict[str, tuple[TrainOutcome, TrainConfig]]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One small simulated province, one model per label (the reviewer's 3,000 companies)."""
    store = Store(tmp_path_factory.mktemp("labels") / "store", memory_limit="2GB", threads=2)
    sim = simulate(SimulationConfig(companies=3000, years=4, seed=5, end=END))
    ingest_table(store, sim.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, sim.records, "records", "sim", today=END, history=True)
    trained = {}
    for label in ("problem", "serious"):
        config = TrainConfig(label=label, n_estimators=60)
        trained[label] = (train(store, config), config)
    return trained


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """An empty registry in the default local store of a fresh data directory (also the CLI's)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CREDSUP_DATA_DIR", str(tmp_path / "data"))
    return Registry(tmp_path / "data")


def register(registry: Registry, outcomes: Trained, label: str) -> str:
    outcome, config = outcomes[label]
    return registry.log_training(outcome, config, plots=False).version


def champion(registry: Registry) -> str:
    return str(registry.client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)


def refused_for_label(decision: dict[str, object], candidate: str, champion: str) -> None:
    assert not decision["promoted"]
    assert "comparison" not in decision  # not scored against outcomes it was not trained on
    why = str(decision["why"])
    assert f"label '{candidate}'" in why and f"label '{champion}'" in why
    assert "--force" in why
    assert decision["label"] == candidate and decision["champion_label"] == champion


def test_a_candidate_of_another_label_needs_force_and_a_reason(
    registry: Registry, outcomes: Trained
) -> None:
    problem = register(registry, outcomes, "problem")
    first = registry.promote(problem)  # the first promotion needs no comparison, any label
    assert first["promoted"] and first["why"] == "no champion yet"

    serious = register(registry, outcomes, "serious")
    decision = registry.promote(serious)
    refused_for_label(decision, "serious", "problem")
    assert first["label"] == "problem" and first["champion_label"] is None
    assert champion(registry) == problem
    tag = json.loads(registry.client.get_model_version(MODEL_NAME, serious).tags["promotion"])
    assert tag["label"] == "serious" and tag["champion_label"] == "problem"
    with pytest.raises(ValueError, match=r"label 'serious'.*label 'problem'"):
        registry.compare(serious, problem)

    with pytest.raises(ValueError, match="reason"):
        registry.promote(serious, force=True)
    decision = registry.promote(serious, force=True, reason="the 2027 plan targets serious cases")
    assert decision["promoted"] and decision["forced"] and champion(registry) == serious
    assert decision["label"] == "serious" and decision["champion_label"] == "problem"

    # the other way round too: a `problem` model scored on `serious` outcomes is not promoted
    again = register(registry, outcomes, "problem")
    refused_for_label(registry.promote(again), "problem", "serious")
    assert champion(registry) == serious


def test_a_first_promotion_of_any_label_is_unaffected(
    registry: Registry, outcomes: Trained
) -> None:
    serious = register(registry, outcomes, "serious")
    decision = registry.promote(serious)
    assert decision["promoted"] and decision["why"] == "no champion yet"
    assert decision["label"] == "serious" and champion(registry) == serious
    # a candidate of the champion's label is compared as before
    other = register(registry, outcomes, "serious")
    decision = registry.promote(other)
    assert decision["label"] == decision["champion_label"] == "serious"
    assert "comparison" in decision and "label" not in decision["why"]


def test_versions_registered_without_a_label_tag_fall_back_to_the_run(
    registry: Registry, outcomes: Trained
) -> None:
    problem = register(registry, outcomes, "problem")
    registry.promote(problem)
    serious = register(registry, outcomes, "serious")
    for version in (problem, serious):  # as registered by code that tagged only the run
        registry.client.delete_model_version_tag(MODEL_NAME, version, "label")
    refused_for_label(registry.promote(serious), "serious", "problem")
    assert [r["label"] for r in registry.versions()] == ["problem", "serious"]


def test_the_command_line_shows_the_labels(registry: Registry, outcomes: Trained) -> None:
    runner = CliRunner()
    register(registry, outcomes, "problem")
    result = runner.invoke(app, ["promote", "latest"])
    assert result.exit_code == 0 and "(label problem) promoted" in result.stdout
    register(registry, outcomes, "serious")
    result = runner.invoke(app, ["promote", "latest"])
    assert result.exit_code == 1, result.output
    assert "(label serious) not promoted" in result.stdout
    assert "label 'problem'" in result.stdout and "AUC" not in result.stdout
    result = runner.invoke(app, ["promote", "latest", "--json"])
    assert result.exit_code == 1
    decision = json.loads(result.stdout)
    assert decision["label"] == "serious" and decision["champion_label"] == "problem"

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["versions"]
    assert [(r["version"], r["label"]) for r in rows] == [("1", "problem"), ("2", "serious")]
    result = runner.invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "version" in line and "spec" in line)
    assert "label" in header
    assert any("problem" in line for line in lines) and any("serious" in line for line in lines)
