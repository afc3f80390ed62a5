"""Training examples from past spot checks: labels, weights, features from before the check;
a backtest sees only the checks, corrections and withdrawals known on its day; the hidden-truth
report of `training.train` only for the label the truth describes."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from records.ingest import ingest_table
from records.simulate import Simulation, SimulationConfig, simulate, write_simulation
from records.store import Store
from tests.features.scenarios import CODES
from tests.features.stores import add_events, add_records
from training.dataset import (
    Label,
    spot_check_examples,
    time_split,
    training_frame,
    triggered_left_out,
)
from training.train import TrainConfig, train, truth_report

END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(SimulationConfig(companies=800, years=3, seed=11, end=END))


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory, simulation: Simulation) -> Store:
    store = Store(tmp_path_factory.mktemp("training") / "store")
    ingest_table(store, simulation.entities, "entities", "sim", today=END, history=True)
    ingest_table(store, simulation.records, "records", "sim", today=END, history=True)
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


def _checks(days_and_labels: list[tuple[date, bool]]) -> pa.Table:
    return pa.table({
        "check_date": pa.array([d for d, _ in days_and_labels], pa.date32()),
        "label": pa.array([lab for _, lab in days_and_labels], pa.bool_()),
    })  # fmt: skip


def test_a_quiet_validation_window_reaches_back_to_enough_checks() -> None:
    """Half a year that held 4 checks (a quiet half year, then a day of new results) no longer
    makes a validation of 4: the window reaches back, by whole days, until it holds at least
    `min_checks` checks and `min_each_label` of each label."""
    start = date(2024, 10, 1)
    rows = [(start + timedelta(days=i // 3), i % 4 == 0) for i in range(600)]  # to 2025-04-18
    rows += [(date(2025, 12, 5), False)] * 3 + [(date(2025, 12, 5), True)]
    frame = _checks(rows)
    train, valid = time_split(frame, validation_days=183, min_checks=100, min_each_label=20)
    assert train.num_rows + valid.num_rows == frame.num_rows
    days_valid = valid.column("check_date").to_pylist()
    assert valid.num_rows >= 100 and valid.num_rows < 110  # whole days: at most a day's more
    assert sum(valid.column("label").to_pylist()) >= 20
    assert max(train.column("check_date").to_pylist()) < min(days_valid)
    # a window that holds enough is left as it is
    _, valid2 = time_split(frame, validation_days=183, min_checks=4, min_each_label=1)
    assert valid2.num_rows == 4
    # too few checks in all: the window stays (the report says the validation is short)
    train3, valid3 = time_split(frame, validation_days=183, min_checks=10_000, min_each_label=1)
    assert (train3.num_rows, valid3.num_rows) == (600, 4)
    # at least `min_each_label` of each: few problems make the window longer than the count
    rare = _checks([(start + timedelta(days=i), i % 50 == 0) for i in range(1000)])
    _, valid4 = time_split(rare, validation_days=10, min_checks=100, min_each_label=5)
    assert sum(valid4.column("label").to_pylist()) == 5 and valid4.num_rows > 200


# ---- the training day: what a backtest could have known ---------------------------------------

CO = CODES[0]
D0 = date(2024, 10, 1)


def days(n: int) -> date:
    return D0 + timedelta(days=n)


def check(
    record_id: str, event: date, recorded: date, severity: str, **attributes: Any
) -> dict[str, Any]:
    return {
        "record_id": record_id, "uscc": CO, "category": "spot_check", "severity": severity,
        "event_date": event, "recorded_date": recorded, "source_dept": "samr", "amount": None,
        "attributes": json.dumps(attributes),
    }  # fmt: skip


def fix(record_id: str, effective: date, recorded: date, **correction: Any) -> dict[str, Any]:
    return {"record_id": record_id, "event_type": "correction", "effective_date": effective,
            "recorded_date": recorded, "attributes": correction}  # fmt: skip


def examples_on(
    store: Store, until: date | None, label: Label = "problem"
) -> dict[str, tuple[int, float]]:
    rows = spot_check_examples(store, label=label, until=until).to_pylist()
    return {r["record_id"]: (r["label"], round(r["weight"], 9)) for r in rows}


def test_a_backtest_uses_only_check_results_recorded_by_its_day(
    store: Store, province: Store
) -> None:
    add_records(store, [
        check("C1", days(9), days(11), "problem", inclusion_prob=0.5),
        check("C2", days(14), days(24), "problem", inclusion_prob=0.5),  # result came 10 days late
    ])  # fmt: skip
    assert set(examples_on(store, days(19))) == {"C1"}
    assert set(examples_on(store, days(24))) == {"C1", "C2"}
    # the simulated province: results are recorded 1-28 days after the check
    until = date(2024, 10, 20)
    records = province.read("records").to_pylist()
    recorded = {
        r["record_id"]: r["recorded_date"] for r in records if r["category"] == "spot_check"
    }
    used = spot_check_examples(province, until=until).column("record_id").to_pylist()
    assert used and all(recorded[r] <= until for r in used)
    assert len(used) == sum(1 for d in recorded.values() if d <= until)


def test_labels_and_weights_follow_the_corrections_known_on_the_training_day(
    store: Store,
) -> None:
    add_records(store, [
        check("C1", days(0), days(3), "problem", inclusion_prob=0.1, items=["labels"]),
        check("C2", days(0), days(3), "pass", inclusion_prob=0.1),
        check("C3", days(0), days(3), "problem", inclusion_prob=0.1),
    ])  # fmt: skip
    add_events(store, [
        # an objection decided "corrected": no problem after all; the probability restated
        fix("C1", days(30), days(30), severity="pass", attributes={"inclusion_prob": 0.4}),
        # decided on day 40, recorded on day 50: a backtest of day 45 cannot know it
        fix("C2", days(40), days(50), severity="serious"),
        # the merge patch removes the probability: weight 1
        fix("C3", days(40), days(40), attributes={"inclusion_prob": None}),
    ])  # fmt: skip
    assert examples_on(store, days(29)) == {"C1": (1, 10.0), "C2": (0, 10.0), "C3": (1, 10.0)}
    assert examples_on(store, days(45)) == {"C1": (0, 2.5), "C2": (0, 10.0), "C3": (1, 1.0)}
    later = {"C1": (0, 2.5), "C2": (1, 10.0), "C3": (1, 1.0)}
    assert examples_on(store, days(50)) == examples_on(store, None) == later
    assert examples_on(store, None, "serious")["C2"][0] == 1
    # each correction states the corrected form relative to the original record; the latest in
    # force wins, and on one day the one committed last
    add_events(store, [fix("C1", days(60), days(60), severity="serious")])
    add_events(store, [fix("C1", days(60), days(60), severity="problem")])
    assert examples_on(store, days(59))["C1"] == (0, 2.5)
    assert examples_on(store, days(60))["C1"] == (1, 10.0)
    assert examples_on(store, days(60), "serious")["C1"][0] == 0


def test_a_withdrawn_check_result_is_left_out_once_the_withdrawal_is_known(
    store: Store,
) -> None:
    add_records(store, [
        check("W1", days(0), days(2), "problem"),
        check("R1", days(0), days(2), "problem"),
    ])  # fmt: skip
    add_events(store, [
        {"record_id": "W1", "event_type": "withdrawal", "effective_date": days(20),
         "recorded_date": days(25)},
        {"record_id": "R1", "event_type": "repair", "effective_date": days(20),
         "recorded_date": days(20)},
    ])  # fmt: skip
    assert set(examples_on(store, days(24))) == {"W1", "R1"}
    # a repair keeps the finding (the company put it right); a withdrawal voids the result
    assert set(examples_on(store, days(25))) == set(examples_on(store, None)) == {"R1"}
    assert examples_on(store, None)["R1"] == (1, 1.0)


# ---- the hidden truth describes problems only ------------------------------------------------


def test_the_truth_report_is_skipped_for_a_label_the_truth_does_not_describe(
    province: Store, simulation: Simulation, tmp_path: Path
) -> None:
    truth_dir = write_simulation(simulation, tmp_path)["truth"].parent
    config = TrainConfig(label="serious", n_estimators=30, min_child_samples=10)
    serious = train(province, config, truth_dir=truth_dir)
    assert "truth" not in serious.report
    why = serious.report["truth_skipped"]
    assert "only" in why and "'problem'" in why
    validation, tiers = serious.validation, ["B"] * len(serious.validation)
    skipped = {"label": "serious", "skipped": why}
    assert truth_report(truth_dir, validation, tiers, label="serious") == skipped
    # the label the truth describes: the figures as before
    problem = truth_report(truth_dir, validation, tiers, label="problem")
    assert problem is not None and problem["checks"] == len(validation) and "plan" in problem


# ---- an inclusion probability that is no probability -----------------------------------------


def test_an_inclusion_probability_outside_0_1_counts_as_unknown_and_is_flagged(
    store: Store,
) -> None:
    add_records(store, [
        check("P1", days(0), days(1), "problem", inclusion_prob=0.5),
        check("P2", days(0), days(1), "problem", inclusion_prob=1),
        check("P3", days(0), days(1), "problem", inclusion_prob="0.25"),  # a number as text
        check("N1", days(0), days(1), "problem", inclusion_prob=-0.2),
        check("N2", days(0), days(1), "problem", inclusion_prob=15),  # 15 % written as 15
        check("N3", days(0), days(1), "problem", inclusion_prob=0),
        check("N4", days(0), days(1), "problem", inclusion_prob="high"),
        check("N5", days(0), days(1), "problem", inclusion_prob="NaN"),
        check("N6", days(0), days(1), "problem", inclusion_prob="inf"),
        check("U1", days(0), days(1), "problem"),  # unknown: no probability stored
        check("U2", days(0), days(1), "problem", inclusion_prob=None),
    ])  # fmt: skip
    rows = {
        r["record_id"]: (r["weight"], r["inclusion_prob_invalid"])
        for r in spot_check_examples(store).to_pylist()
    }
    assert rows == {
        "P1": (2.0, False), "P2": (1.0, False), "P3": (4.0, False),
        "N1": (1.0, True), "N2": (1.0, True), "N3": (1.0, True), "N4": (1.0, True),
        "N5": (1.0, True), "N6": (1.0, True),
        "U1": (1.0, False), "U2": (1.0, False),
    }  # fmt: skip


# ---- checks not drawn at random ---------------------------------------------------------------


def test_triggered_checks_are_left_out_and_counted(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A complaint-triggered check (p = 1) looked like a random tier-D check (p = 1) and was
    weighted as one, although it was selected because a problem was suspected: it is left out
    (its `basis` says so); checks without a basis (the simulator's, older results) stay."""
    add_records(store, [
        check("R1", days(0), days(1), "problem", inclusion_prob=1.0, basis="random", tier="D"),
        check("R2", days(0), days(1), "pass", inclusion_prob=0.1, basis="random", tier="B"),
        check("T1", days(0), days(1), "problem", inclusion_prob=1.0, basis="triggered", tier="A"),
        check("T2", days(2), days(3), "serious", inclusion_prob=1.0, basis="triggered", tier="C"),
        check("U1", days(0), days(1), "problem", inclusion_prob=0.5),  # no basis: random
    ])  # fmt: skip
    with caplog.at_level("INFO", logger="training.dataset"):
        examples = spot_check_examples(store)
    assert examples_on(store, None) == {"R1": (1, 1.0), "R2": (0, 10.0), "U1": (1, 2.0)}
    assert triggered_left_out(examples) == 2
    assert "2 check(s) not drawn at random left out" in caplog.text
    frame = training_frame(store)
    assert set(frame.column("record_id").to_pylist()) == {"R1", "R2", "U1"}
    assert triggered_left_out(frame) == 2
    # a backtest before the second triggered check counts only the first
    assert triggered_left_out(spot_check_examples(store, until=days(1))) == 1


def test_the_simulated_checks_are_all_kept(province: Store) -> None:
    """The simulator's spot checks carry no `basis` (one random plan a year): none is left out,
    so training on simulated data is unchanged."""
    records = province.read("records")
    checks = records.filter(pc.equal(records.column("category"), "spot_check"))
    attributes = checks.column("attributes").to_pylist()
    assert not any("basis" in json.loads(a or "{}") for a in attributes)
    examples = spot_check_examples(province)
    assert examples.num_rows == checks.num_rows and triggered_left_out(examples) == 0
