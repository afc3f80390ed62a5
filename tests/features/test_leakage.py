"""The leakage guard: nothing recorded after `as_of` changes any feature as of `as_of`.

Two stores share every row recorded by `as_of`; in the second, the records, entity versions and
events recorded after `as_of` are changed, deleted or added (including removals of old listings,
breaches of old commitments, repairs and objections that took effect before `as_of`). Features as
of `as_of` must be identical; features as of a later date must not be (so the changes bite).
"""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.builder import build_features
from records import uscc
from records.catalogue import default_catalogue
from records.schema import EVENT_TYPES
from records.simulate import SimulationConfig, simulate
from records.store import Store
from tests.features.reference import list_categories
from tests.features.scenarios import Scenario, scenarios
from tests.features.stores import (
    add_entities,
    add_events,
    add_records,
    builder_rows,
    differences,
)

Row = dict[str, Any]
CATALOGUE = default_catalogue()
LISTS = list_categories(CATALOGUE)
SIM = SimulationConfig(companies=300, years=3, seed=9, end=date(2026, 6, 30))
END = SIM.end
AS_OF = (date(2024, 12, 31), date(2025, 9, 30))
SIGNALS = ("supplier_payment_delay_days", "utility_arrears_months", "ecommerce_rating",
           "public_opinion_index")  # fmt: skip


@pytest.fixture(scope="module")
def province() -> tuple[list[Row], list[Row], list[Row]]:
    """Entities, records and events of a simulated province; each event is recorded on or after
    the day its record was, some before and some after the as-of dates."""
    sim = simulate(SIM)
    records = sim.records.to_pylist()
    rng = np.random.default_rng(4)
    events = []
    for j, i in enumerate(rng.choice(len(records), size=600, replace=False)):
        r = records[int(i)]
        effective = r["event_date"] + timedelta(days=int(rng.integers(0, 700)))
        recorded = max(effective + timedelta(days=int(rng.integers(-20, 20))), r["recorded_date"])
        if recorded > END or effective > END:
            continue
        events.append({"event_id": f"H{j:04d}", "record_id": r["record_id"],
                       "event_type": EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))],
                       "effective_date": effective, "recorded_date": recorded})  # fmt: skip
    return sim.entities.to_pylist(), records, events


def _day_between(rng: np.random.Generator, first: date, last: date) -> date:
    return first + timedelta(days=int(rng.integers(0, (last - first).days + 1)))


def _changed(rng: np.random.Generator, r: Row, as_of: date, known: dict[str, list[Row]]) -> Row:
    """Another version of a record recorded after as_of: other dates (the event possibly before
    as_of), severity, amount and attributes; still recorded after as_of."""
    c = CATALOGUE[r["category"]]
    recorded = _day_between(rng, as_of + timedelta(days=1), END)
    new = dict(r, recorded_date=recorded,
               event_date=recorded - timedelta(days=int(rng.integers(0, 1500))))  # fmt: skip
    if c.severities:
        new["severity"] = c.severities[int(rng.integers(len(c.severities)))]
    if c.amount != "none":
        new["amount"] = float(rng.integers(0, 10**6)) / 4
    attributes = json.loads(r["attributes"])
    if new["category"] in LISTS and new["severity"] == "removed":
        old = [x["record_id"] for x in known.get(r["uscc"], []) if x["severity"] == "listed"]
        attributes["ref"] = old[int(rng.integers(len(old)))] if old else None
    elif new["category"] == "commitment_breach":
        old = [
            x["record_id"] for x in known.get(r["uscc"], []) if x["category"] == "credit_commitment"
        ]
        attributes["ref"] = old[int(rng.integers(len(old)))] if old else None
    elif new["category"] == "third_party_signal":
        attributes["name"] = SIGNALS[int(rng.integers(len(SIGNALS)))]
    else:
        attributes["findings_serious"] = int(rng.integers(0, 5))
    new["attributes"] = json.dumps(attributes)
    return new


def _added(rng: np.random.Generator, as_of: date, known: dict[str, list[Row]]) -> list[Row]:
    """New records recorded after as_of about things that happened by as_of, aimed at every
    feature: removals of open listings, breaches of commitments, penalties, latest signals."""
    rows: list[Row] = []

    def add(code: str, category: str, severity: str | None, amount: float | None,
            **attributes: Any) -> None:  # fmt: skip
        event = as_of - timedelta(days=int(rng.integers(0, 400)))
        rows.append({
            "record_id": f"LATE-{len(rows):05d}", "uscc": code, "category": category,
            "severity": severity, "event_date": event,
            "recorded_date": _day_between(rng, as_of + timedelta(days=1), END),
            "source_dept": "samr", "amount": amount, "attributes": json.dumps(attributes),
        })  # fmt: skip

    for code, old in known.items():
        for x in old:
            if x["severity"] == "listed":
                add(code, x["category"], "removed", None, ref=x["record_id"])
            if x["category"] == "credit_commitment":
                add(code, "commitment_breach", None, None, ref=x["record_id"])
        if rng.random() < 0.3:
            for category in LISTS:
                add(code, category, "removed", None)  # without reference
        if rng.random() < 0.5:
            add(code, "admin_penalty", str(rng.choice(["minor", "general", "serious"])), 5000.0)
            add(code, "spot_check", "serious", None, findings_serious=2)
            add(code, "tax_credit_grade", "D", 30.0)
            add(code, "abnormal_operation_list", "listed", None, reason="unreachable")
            add(code, "serious_dishonest_list", "listed", None)
            add(code, "credit_commitment", None, None, due_date=as_of.isoformat())
            add(code, "tax_declaration", None, -100.0)
            for name in SIGNALS:
                add(code, "third_party_signal", None, float(rng.integers(0, 100)), name=name)
    return rows


def _tampered(
    rng: np.random.Generator, as_of: date, entities: list[Row], records: list[Row],
    events: list[Row],
) -> tuple[list[Row], list[Row], list[Row]]:  # fmt: skip
    known: dict[str, list[Row]] = {}
    for r in records:
        if r["recorded_date"] <= as_of:
            known.setdefault(r["uscc"], []).append(r)
    kept_records = [r for r in records if r["recorded_date"] <= as_of]
    for r in records:
        if r["recorded_date"] > as_of:
            fate = rng.integers(3)  # 0 deleted, 1 changed, 2 kept
            if fate == 1:
                kept_records.append(_changed(rng, r, as_of, known))
            elif fate == 2:
                kept_records.append(r)
    kept_records += _added(rng, as_of, known)

    kept_entities = [e for e in entities if e["recorded_date"] <= as_of]
    for code in list(known)[::3]:  # a later change of status, capital, industry
        version = next(e for e in entities if e["uscc"] == code)
        kept_entities.append(dict(
            version, status="deregistered", industry="C13",
            registered_capital=(version["registered_capital"] or 0.0) * 2 + 1,
            recorded_date=_day_between(rng, as_of + timedelta(days=1), END),
        ))  # fmt: skip
    newcomers = uscc.generate_many(rng, ["91"] * 20, ["110101"] * 20)
    for code in newcomers:  # registered after as_of
        kept_entities.append({"uscc": code, "name": "北京某某科技有限公司", "status": "active",
                              "established_date": as_of - timedelta(days=30),
                              "recorded_date": as_of + timedelta(days=1)})  # fmt: skip

    kept_events = [e for e in events if e["recorded_date"] <= as_of]
    old = [r for rs in known.values() for r in rs]
    for j, i in enumerate(rng.choice(len(old), size=min(len(old), 400), replace=False)):
        r = old[int(i)]
        kept_events.append({
            "event_id": f"LATE-E{j:04d}", "record_id": r["record_id"],
            "event_type": EVENT_TYPES[j % len(EVENT_TYPES)],
            "effective_date": _day_between(rng, r["event_date"], as_of),
            "recorded_date": _day_between(rng, as_of + timedelta(days=1), END),
        })  # fmt: skip
    return kept_entities, kept_records, kept_events


def _store(root: Path, entities: list[Row], records: list[Row], events: list[Row]) -> Store:
    store = Store(root, memory_limit="1GB", threads=2)
    add_entities(store, entities, today=END)
    add_records(store, records, today=END)
    add_events(store, events, today=END)
    return store


@pytest.mark.parametrize("as_of", AS_OF, ids=str)
def test_nothing_recorded_after_as_of_changes_the_features(
    province: tuple[list[Row], list[Row], list[Row]], as_of: date, tmp_path: Path
) -> None:
    entities, records, events = province
    honest = _store(tmp_path / "honest", entities, records, events)
    rng = np.random.default_rng(as_of.toordinal())
    tampered = _store(tmp_path / "tampered", *_tampered(rng, as_of, entities, records, events))

    a = build_features(honest, as_of).to_pylist()
    b = build_features(tampered, as_of).to_pylist()
    assert len(a) > 150
    problems = differences(b, a)
    assert not problems, "features changed by rows recorded after as_of:\n" + "\n".join(problems)

    # the same rows differ once the date has come: the test has teeth
    codes = sorted({r["uscc"] for r in a})
    later = differences(builder_rows(tampered, [(u, END) for u in codes]),
                        builder_rows(honest, [(u, END) for u in codes]), limit=100_000)  # fmt: skip
    changed = {line.split()[2].rstrip(":") for line in later}
    assert len(later) > 200 and len(changed) >= 25, sorted(changed)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios(entity_ties=False), pick=st.integers(0, 3))
def test_deleting_rows_recorded_after_as_of_changes_nothing(scenario: Scenario, pick: int) -> None:
    as_of = scenario.as_of[pick % len(scenario.as_of)]
    before = Scenario(
        scenario.companies,
        [e for e in scenario.entities if e["recorded_date"] <= as_of],
        [r for r in scenario.records if r["recorded_date"] <= as_of],
        as_of=[as_of],
    )
    kept = {r["record_id"] for r in before.records}
    before.events = [e for e in scenario.events
                     if e["recorded_date"] <= as_of and e["record_id"] in kept]  # fmt: skip
    points = [(u, as_of) for u in scenario.companies]
    with tempfile.TemporaryDirectory() as tmp:
        everything = Store(Path(tmp) / "all", memory_limit="1GB", threads=1)
        known = Store(Path(tmp) / "known", memory_limit="1GB", threads=1)
        scenario.write(everything)
        before.write(known)
        problems = differences(builder_rows(everything, points), builder_rows(known, points))
    assert not problems, "\n".join(problems)
