"""A negative record moves every feature with a risk direction only towards more risk.

This is what makes "adding a negative record never lowers a company's risk" hold for every
company and not only for the ones a test happens to try: the risk model is monotone in each
feature in its direction (LightGBM's monotone constraints, then an increasing calibrator), so it
can only rise when no feature it reads moves the other way. Checked here on the SQL builder over
random small markets (with repairs, withdrawals, corrections and objections), for every negative
kind of the catalogue, with what the model reads for a missing value.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.specs import SPECS, FeatureSpec, validate_specs
from records import uscc
from records.store import Store
from tests.features.scenarios import (
    ANCHORS,
    CATALOGUE,
    CODES,
    Scenario,
    _attributes,
    amounts,
    dates,
    scenarios,
)
from tests.features.stores import TODAY, add_records, builder_rows

Row = dict[str, Any]

NEGATIVE_KINDS = tuple(
    (c.code, sev)
    for c in CATALOGUE.categories
    for sev in (c.severities or [None])
    if c.polarity_of(sev) == "negative"
)
DIRECTED = tuple(s for s in SPECS if isinstance(s, FeatureSpec) and s.direction != 0)


@st.composite
def negative_records(draw: st.DrawFn, scenario: Scenario) -> Row:
    """One negative record of any kind for one of the market's companies, dated near its as-of
    dates, with the attributes and amounts a department sends."""
    # half the time a record that meets one of the market's records: a kind of a category the
    # company already has, dated shortly after (or before) that record
    met = [r for r in scenario.records if any(c == r["category"] for c, _ in NEGATIVE_KINDS)]
    if met and draw(st.booleans()):
        like = draw(st.sampled_from(met))
        company = like["uscc"]
        category, severity = draw(
            st.sampled_from([k for k in NEGATIVE_KINDS if k[0] == like["category"]])
        )
        event = min(like["event_date"] + timedelta(days=draw(st.integers(-30, 400))), TODAY)
    else:
        category, severity = draw(st.sampled_from(NEGATIVE_KINDS))
        event = draw(dates(tuple(d for d in scenario.as_of if d <= TODAY) or ANCHORS))
        company = draw(st.sampled_from(scenario.companies))
    c = CATALOGUE[category]
    recorded = min(event + timedelta(days=draw(st.sampled_from([0, 0, 1, 30, 200]))), TODAY)
    attributes = _attributes(draw, category, severity, event)
    if category == "commitment_breach":
        commitments = [
            r["record_id"] for r in scenario.records
            if r["uscc"] == company and r["category"] == "credit_commitment"
        ]  # fmt: skip
        if commitments:
            attributes["ref"] = draw(st.sampled_from(commitments))
    amount = None
    if c.amount != "none":
        amount = draw(st.one_of(st.none(), amounts(c.negative_amount_allowed)))
    return {
        "record_id": "NEG", "uscc": company, "category": category, "severity": severity,
        "event_date": event, "recorded_date": recorded, "source_dept": "samr",
        "amount": amount, "attributes": json.dumps(attributes, ensure_ascii=False),
    }  # fmt: skip


def _as_read(spec: FeatureSpec, value: Any) -> Any:
    """The value the risk model reads (a NULL is `model_missing` where the spec sets one)."""
    return spec.model_missing if value is None else value


def against_direction(before: list[Row], after: list[Row]) -> list[str]:
    """Features that moved against their risk direction, as readable lines."""
    wrong = []
    for b, a in zip(before, after, strict=True):
        for spec in DIRECTED:
            v0, v1 = _as_read(spec, b[spec.name]), _as_read(spec, a[spec.name])
            if v0 is None and v1 is None:
                continue
            # missing on one side (the model's side for it is learned), or moved the wrong way
            if v0 is None or v1 is None or v1 != v1 or (v1 - v0) * spec.direction < 0:  # NaN too
                wrong.append(f"{b['uscc']} {b['as_of']} {spec.name}: {v0!r} -> {v1!r}")
    return wrong


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_negative_record_moves_no_feature_against_its_direction(data: st.DataObject) -> None:
    scenario = data.draw(scenarios(max_records=30))
    record = data.draw(negative_records(scenario))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store", memory_limit="1GB", threads=1)
        scenario.write(store)
        points = scenario.points()
        before = builder_rows(store, points)
        add_records(store, [record])
        after = builder_rows(store, points)
    wrong = against_direction(before, after)
    assert not wrong, f"{record['category']}/{record['severity']}:\n" + "\n".join(wrong)


def _pair_rows(
    company: str,
    n: int,
    held: tuple[str, str | None],
    new: tuple[str, str | None],
    shift: int,
    at: date,
) -> tuple[Row, Row]:
    """A record the company has (`held`, 100 days before `at`) and a negative one of the same
    category `shift` days from it; amounts and findings make the later record the smaller."""

    def row(rid: str, kind: tuple[str, str | None], day: date, amount: float, findings: int) -> Row:
        category, severity = kind
        c = CATALOGUE[category]
        attributes: Row = {}
        if category == "spot_check":
            attributes["findings_serious"] = findings
        if category == "commitment_breach":
            attributes["ref"] = f"C{n:04d}"
        if category == "credit_commitment":
            attributes["due_date"] = (day + timedelta(days=30)).isoformat()
        if category == "third_party_signal":
            attributes["name"] = "public_opinion_index"
        return {
            "record_id": rid, "uscc": company, "category": category, "severity": severity,
            "event_date": day, "recorded_date": day, "source_dept": "samr",
            "amount": amount if c.amount != "none" else None,
            "attributes": json.dumps(attributes),
        }  # fmt: skip

    first = at - timedelta(days=100)
    later = shift > 0
    return (
        row(f"E{n:04d}", held, first, 100.0 if later else 5000.0, 0 if later else 3),
        row(
            f"N{n:04d}",
            new,
            first + timedelta(days=shift),
            5000.0 if not later else 100.0,
            3 if not later else 0,
        ),
    )


def test_every_negative_kind_meeting_every_kind_of_its_category() -> None:
    """Pairwise and exhaustive where the random markets are thin: for each category, a company
    holding a record of any of its severities gets a negative record of that category dated
    before it, on the same day or after it (a better grade after a worse one, a smaller fine
    after a larger one, fewer findings after more)."""
    at = date(2025, 6, 30)
    pairs = []
    for category, severity in NEGATIVE_KINDS:
        held_kinds = [(category, h) for h in (CATALOGUE[category].severities or [None])]
        if category == "commitment_breach":
            held_kinds.append(("credit_commitment", None))
        for held in held_kinds:
            for shift in (-50, 0, 50):
                pairs.append((held, (category, severity), shift))
    companies = uscc.generate_many(np.random.default_rng(3), ["91"] * len(pairs),
                                   ["410102"] * len(pairs))  # fmt: skip
    held_rows, new_rows = [], []
    for n, ((held, new, shift), company) in enumerate(zip(pairs, companies, strict=True)):
        first, second = _pair_rows(company, n, held, new, shift, at)
        held_rows.append(first)
        new_rows.append(second)
    points = [(c, at) for c in companies]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store", memory_limit="1GB", threads=1)
        add_records(store, held_rows)
        before = builder_rows(store, points)
        add_records(store, new_rows)
        after = builder_rows(store, points)
    assert len(pairs) > 100
    wrong = against_direction(before, after)
    assert not wrong, "\n".join(wrong[:20])


def test_a_newer_better_grade_that_is_still_negative_does_not_lower_the_grade_feature() -> None:
    """A tax grade C recorded after a D: the company improved, but C is a negative record too,
    and adding it must not lower the risk the grade feature carries."""
    company = CODES[0]
    d = date(2025, 4, 15)
    grade = {"uscc": company, "category": "tax_credit_grade", "source_dept": "tax",
             "amount": None, "attributes": "{}"}  # fmt: skip
    first = {**grade, "record_id": "G1", "severity": "D", "event_date": d, "recorded_date": d}
    later = d + timedelta(days=365)
    second = {**grade, "record_id": "G2", "severity": "C", "event_date": later,
              "recorded_date": later}  # fmt: skip
    at = [(company, later + timedelta(days=10))]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store", memory_limit="1GB", threads=1)
        add_records(store, [first])
        before = builder_rows(store, at)
        add_records(store, [second])
        after = builder_rows(store, at)
    assert not against_direction(before, after)


def test_the_specs_refuse_a_feature_that_a_negative_record_can_lower() -> None:
    validate_specs()
    latest = FeatureSpec("tax_grade_now", "operations", ("tax_credit_grade",), "latest_value", 1,
                         "纳税信用等级{value}", "tax grade {value}",
                         values=(("A", 1.0), ("B", 2.0), ("C", 3.0), ("D", 4.0)))  # fmt: skip
    with pytest.raises(ValueError, match=r"tax_grade_now: .*negative records"):
        validate_specs((*SPECS, latest))
    low_missing = FeatureSpec("tax_grade_worst", "operations", ("tax_credit_grade",),
                              "worst_value", 1, "纳税信用等级{value}", "tax grade {value}",
                              values=(("A", 1.0), ("C", 3.0), ("D", 4.0)),
                              model_missing=3.5)  # fmt: skip
    below = r"tax_grade_worst: .*C \(3\.0\).*below model_missing 3\.5"
    with pytest.raises(ValueError, match=below):
        validate_specs((*SPECS, low_missing))
    signed = CATALOGUE.model_copy(
        update={
            "categories": tuple(
                c.model_copy(update={"negative_amount_allowed": True})
                if c.code == "admin_penalty" else c
                for c in CATALOGUE.categories
            )
        }
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"fines_3y: sum_amount of negative records of admin_penalty"
    ):
        validate_specs(catalogue=signed)
    index = {s.name: s for s in SPECS if isinstance(s, FeatureSpec)}
    for bad, why in (
        (
            dataclasses.replace(index["days_since_penalty"], model_missing=10.0),
            "at least its window",
        ),
        (dataclasses.replace(index["honoured_commitments_3y"], direction=1), "direction -1"),
    ):
        others = tuple(x for x in SPECS if x.name != bad.name)
        with pytest.raises(ValueError, match=rf"{bad.name}: .*{why}"):
            validate_specs((*others, bad))


def test_a_values_table_names_each_severity_once() -> None:
    """The SQL takes a repeated severity's first value and a lookup its last: refused, as is a
    severity the category does not have (its records would be silently left out)."""
    index = {s.name: s for s in SPECS if isinstance(s, FeatureSpec)}
    grade = index["tax_grade_worst_2y"]
    others = tuple(x for x in SPECS if x.name != grade.name)
    for values in ((*grade.values, ("C", 1.5)), (("A", 1.0), ("d", 4.0))):
        bad = dataclasses.replace(grade, values=values)
        with pytest.raises(ValueError, match=r"tax_grade_worst_2y: `values` must name each"):
            validate_specs((*others, bad))
