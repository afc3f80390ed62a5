"""Training examples from past spot checks: labels, weights, features from before the check."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pyarrow.compute as pc
import pytest

from records.ingest import ingest_table
from records.simulate import SimulationConfig, simulate
from records.store import Store
from training.dataset import spot_check_examples, time_split, training_frame

END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("training") / "store")
    sim = simulate(SimulationConfig(companies=800, years=3, seed=11, end=END))
    ingest_table(store, sim.entities, "entities", "sim", today=END)
    ingest_table(store, sim.records, "records", "sim", today=END)
    return store


def test_every_check_is_an_example_with_its_label_and_inverse_inclusion_weight(
    province: Store,
) -> None:
    checks = province.read("records").filter(
        pc.equal(province.read("records").column("category"), "spot_check")
    )
    examples = spot_check_examples(province).to_pylist()
    assert len(examples) == checks.num_rows > 50
    by_id = {r["record_id"]: r for r in checks.to_pylist()}
    for e in examples[:200]:
        check = by_id[e["record_id"]]
        assert e["as_of"] == check["event_date"] - timedelta(days=1)
        assert e["label"] == int(check["severity"] in ("problem", "serious"))
        prob = json.loads(check["attributes"]).get("inclusion_prob")
        assert e["weight"] == pytest.approx(1 / prob if prob else 1.0)
    serious = spot_check_examples(province, label="serious").to_pylist()
    assert sum(e["label"] for e in serious) < sum(e["label"] for e in examples)


def test_features_are_as_of_the_day_before_the_check(province: Store) -> None:
    frame = training_frame(province).to_pylist()
    assert frame and all(r["as_of"] < r["check_date"] for r in frame)
    # a check's own finding never counts in its features: a company's first problem check
    # sees no earlier problem found
    seen: set[str] = set()
    for r in frame:
        if r["uscc"] not in seen and r["label"] == 1:
            earlier = [
                x for x in frame if x["uscc"] == r["uscc"] and x["check_date"] < r["check_date"]
            ]
            if not any(x["label"] for x in earlier):
                assert r["spot_check_problems_3y"] == 0
        seen.add(r["uscc"])


def test_time_split_puts_the_latest_checks_in_validation(province: Store) -> None:
    frame = training_frame(province, since=date(2024, 1, 1))
    train, valid = time_split(frame, validation_days=180)
    assert train.num_rows + valid.num_rows == frame.num_rows
    assert train.num_rows and valid.num_rows
    assert pc.max(train.column("check_date")).as_py() < pc.min(valid.column("check_date")).as_py()
