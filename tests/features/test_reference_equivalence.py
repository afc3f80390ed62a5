"""The SQL builder computes exactly what the plain-Python reference computes, on random small
markets and on a simulated province."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

from features.specs import SPECS, EntitySpec, FeatureSpec
from records.schema import EVENT_TYPES
from records.simulate import SimulationConfig, simulate
from records.store import Store
from tests.features.scenarios import CODES, Scenario, scenarios
from tests.features.stores import (
    add_entities,
    add_events,
    add_records,
    builder_rows,
    differences,
    reference_for,
)


def _check(store: Store, points: list[tuple[str, date]]) -> list[dict[str, object]]:
    got = builder_rows(store, points)
    want = reference_for(store).rows(points)
    problems = differences(got, want)
    assert not problems, "builder and reference differ:\n" + "\n".join(problems)
    return got


def _signal(record_id: str, day: date, amount: float | None) -> dict[str, object]:
    return {"record_id": record_id, "uscc": CODES[0], "category": "third_party_signal",
            "severity": None, "event_date": day, "recorded_date": day, "source_dept": "samr",
            "amount": amount, "attributes": '{"name": "ecommerce_rating"}'}  # fmt: skip


LATEST_WITHOUT_VALUE = Scenario(
    [CODES[0]],
    records=[_signal("R000", date(2025, 1, 1), 4.5), _signal("R001", date(2025, 2, 1), None)],
    as_of=[date(2025, 1, 31), date(2025, 3, 1)],
)
"""The latest signal carries no value: the feature is NULL, not the one before (a bug once)."""


@example(scenario=LATEST_WITHOUT_VALUE)
@settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_builder_equals_reference_on_random_markets(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store", memory_limit="1GB", threads=1)
        scenario.write(store)
        _check(store, scenario.points())


SIM = SimulationConfig(companies=300, years=3, seed=5, end=date(2026, 6, 30))


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A simulated province with repairs, withdrawals and objections on some of its records."""
    sim = simulate(SIM)
    store = Store(tmp_path_factory.mktemp("province") / "store", memory_limit="1GB", threads=2)
    add_entities(store, sim.entities.to_pylist(), today=SIM.end)
    add_records(store, sim.records.to_pylist(), today=SIM.end)
    rng = np.random.default_rng(1)
    records = sim.records.to_pylist()
    events = []
    for j, i in enumerate(rng.choice(len(records), size=400, replace=False)):
        r = records[int(i)]
        effective = r["event_date"] + timedelta(days=int(rng.integers(0, 500)))
        recorded = effective + timedelta(days=int(rng.integers(-5, 30)))
        events.append({
            "event_id": f"P{j:04d}", "record_id": r["record_id"],
            "event_type": EVENT_TYPES[j % len(EVENT_TYPES)],
            "effective_date": min(effective, SIM.end), "recorded_date": min(recorded, SIM.end),
        })  # fmt: skip
    add_events(store, events, today=SIM.end)
    return store


def test_builder_equals_reference_on_a_simulated_province(province: Store) -> None:
    codes = sorted({r["uscc"] for r in province.read("entities").to_pylist()})
    dates = [date(2023, 12, 31), date(2024, 9, 30), date(2025, 6, 30), date(2026, 6, 30)]
    got = _check(province, [(u, d) for u in codes for d in dates])
    # the comparison means something only if the features are not all at their defaults
    trivial = []
    for spec in SPECS:
        values = {row[spec.name] for row in got}
        if isinstance(spec, FeatureSpec | EntitySpec) and len(values - {None}) < 2:
            trivial.append(spec.name)
    assert len(trivial) <= 6, f"features constant on the simulated province: {trivial}"
