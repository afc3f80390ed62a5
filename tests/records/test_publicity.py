"""The publicity rule (DOMAIN §9): a record is public on a day exactly when the rules say so.

`oracle_public` restates the rules of DOMAIN §9 for the categories it covers, plainly and apart
from `records.publicity`; hypothesis draws record histories (penalty types, domains, entity types,
repairs, withdrawals, "stop publishing" decisions, corrections, late recording) and days on the
boundaries, and the rule must agree with it. The SQL rendering the feature builder uses must
give the same periods as the Python rule for every drawn record.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from records import publicity

D0 = date(2024, 3, 1)
HEAVY = {"closure", "business_restriction", "employment_ban", "qualification_downgrade",
         "licence_revoked"}  # fmt: skip
SPECIAL = {"special_equipment", "work_safety", "fire"}
LEVEL_DAYS = {"minor": 90, "general": 365, "serious": 1095}
TYPES = ("warning", "fine", "confiscation", *sorted(HEAVY))
DOMAINS = ("fire", "work_safety", "special_equipment", "food_safety", "pricing")
ENTITY_TYPES = ("company", "individual_business", None)


def oracle_public(record: dict[str, Any], events: list[dict[str, Any]], day: date,
                  entity_type: str | None) -> bool:  # fmt: skip
    """DOMAIN §9, restated. Corrections: the latest in force gives severity and attributes."""
    if day < record["event_date"] or day < record["recorded_date"]:
        return False
    severity, attributes = record["severity"], dict(record["attributes"])
    in_force = [e for e in events if max(e["effective_date"], e["recorded_date"]) <= day]
    fixes = sorted(
        (e for e in in_force if e["event_type"] == "correction"),
        key=lambda e: (max(e["effective_date"], e["recorded_date"]), e["event_id"]),
    )
    if fixes:
        fix = fixes[-1]["attributes"]
        severity = fix.get("severity") or severity
        attributes.update(fix.get("attributes") or {})
    stops = [max(e["effective_date"], e["recorded_date"]) for e in in_force
             if e["event_type"] in ("repair", "withdrawal", "unpublish")]  # fmt: skip
    if stops:  # repaired, withdrawn or no longer published from that day
        return False
    category = record["category"]
    if category == "admin_penalty":
        types = attributes.get("penalty_types") or []
        if types and all(t == "warning" for t in types):
            return False  # warnings are not published
        days = LEVEL_DAYS[severity]
        if any(t in HEAVY for t in types):
            days = LEVEL_DAYS["serious"]  # several types: the longest applies
        if attributes.get("domain") in SPECIAL:
            days = max(days, 365)  # special equipment, work safety, fire: at least a year
    elif category == "spot_check":
        days = 730 if entity_type == "individual_business" else 1825
    elif category == "serious_dishonest_list":
        days = 1095 if severity == "listed" else None  # a removal stays on record
    elif category in ("complaint", "tax_declaration"):
        return False  # not shared with the public / never published
    elif category == "registration":
        days = None
    else:
        raise AssertionError(category)
    return days is None or day < record["event_date"] + timedelta(days=days)


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    category = draw(st.sampled_from(["admin_penalty"] * 6 + ["spot_check", "serious_dishonest_list",
                                     "complaint", "tax_declaration", "registration"]))  # fmt: skip
    severities = {"admin_penalty": list(LEVEL_DAYS), "spot_check": ["pass", "problem", "serious"],
                  "serious_dishonest_list": ["listed", "removed"],
                  "complaint": ["verified"]}.get(category, [None])  # fmt: skip
    attributes: dict[str, Any] = {}
    if category == "admin_penalty":
        if draw(st.booleans()):
            attributes["penalty_types"] = draw(st.lists(st.sampled_from(TYPES), max_size=3))
        if draw(st.booleans()):
            attributes["domain"] = draw(st.sampled_from(DOMAINS))
    event = D0 + timedelta(days=draw(st.integers(0, 60)))
    record = {
        "record_id": "R1", "category": category, "severity": draw(st.sampled_from(severities)),
        "event_date": event, "recorded_date": event + timedelta(days=draw(st.integers(0, 400))),
        "attributes": attributes,
    }  # fmt: skip
    events = []
    for j in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["repair", "withdrawal", "unpublish", "correction",
                                     "correction", "objection_opened"]))  # fmt: skip
        effective = event + timedelta(days=draw(st.integers(0, 1200)))
        fix: dict[str, Any] = {}
        if kind == "correction" and category == "admin_penalty":
            if draw(st.booleans()):
                fix["severity"] = draw(st.sampled_from(list(LEVEL_DAYS)))
            if draw(st.booleans()):
                fix["attributes"] = {
                    "penalty_types": draw(st.lists(st.sampled_from(TYPES), max_size=2)),
                    "domain": draw(st.sampled_from(DOMAINS)),
                }
        events.append({
            "event_id": f"E{j}", "event_type": kind, "effective_date": effective,
            "recorded_date": effective + timedelta(days=draw(st.integers(0, 30))),
            "attributes": json.dumps(fix),
        })  # fmt: skip
    return record, events, draw(st.sampled_from(ENTITY_TYPES))


def _boundary_days(record: dict[str, Any], events: list[dict[str, Any]]) -> list[date]:
    marks = {record["event_date"], record["recorded_date"]}
    for days in (90, 365, 730, 1095, 1825):
        marks.add(record["event_date"] + timedelta(days=days))
    for e in events:
        marks.add(max(e["effective_date"], e["recorded_date"]))
    return sorted({m + timedelta(days=k) for m in marks for k in (-1, 0)})


@settings(max_examples=400, deadline=None)
@given(histories())
def test_a_record_is_public_exactly_when_the_rules_say_so(
    history: tuple[dict[str, Any], list[dict[str, Any]], str | None],
) -> None:
    record, events, entity_type = history
    stored = {**record, "attributes": json.dumps(record["attributes"])}
    for day in _boundary_days(record, events):
        expected = oracle_public(record, [{**e, "attributes": json.loads(e["attributes"])}
                                          for e in events], day, entity_type)  # fmt: skip
        assert publicity.public_on(stored, events, day, entity_type) == expected, (day, record)
        end = publicity.public_until(stored, events, day, entity_type)
        if expected:  # public until the day it says, not on it
            assert end is None or day < end


@settings(max_examples=200, deadline=None)
@given(st.lists(histories(), min_size=1, max_size=20))
def test_the_builders_sql_gives_the_rules_periods(
    drawn: list[tuple[dict[str, Any], list[dict[str, Any]], str | None]],
) -> None:
    rows = [{"category": r["category"], "severity": r["severity"],
             "attributes": json.dumps(r["attributes"])} for r, _, _ in drawn]  # fmt: skip
    con = duckdb.connect()
    con.register("t", pa.Table.from_pylist(rows))
    got = [d for (d,) in con.execute(f"SELECT {publicity.period_days_sql()} FROM t").fetchall()]
    want = [publicity.period(r["category"], r["severity"], r["attributes"]).max_days for r in rows]
    assert got == want


def test_the_rules_on_known_decisions() -> None:
    def period(severity: str, types: list[str], domain: str | None = None) -> publicity.Period:
        attrs: dict[str, Any] = {"penalty_types": types}
        if domain:
            attrs["domain"] = domain
        return publicity.period("admin_penalty", severity, attrs)

    warning = period("minor", ["warning"])
    assert not warning.published and warning.max_days == 90  # counts 3 months, never shown
    assert period("minor", ["warning", "fine"]) == publicity.Period(True, 0, 90, 90)
    assert period("general", ["fine", "licence_revoked"]).max_days == 1095
    assert period("minor", ["fine"], "fire") == publicity.Period(True, 365, 365, 365)
    assert period("serious", ["fine"], "work_safety").max_days == 1095
    check = publicity.period("spot_check", "problem", {}, "individual_business")
    assert (check.max_days, check.public_days) == (1825, 730)  # counts 5 years, shown 2
    assert not publicity.period("complaint", "verified", {}).published


def test_stop_publishing_ends_publicity_but_not_counting() -> None:
    record = {"record_id": "R1", "category": "admin_penalty", "severity": "general",
              "event_date": D0, "recorded_date": D0,
              "attributes": json.dumps({"penalty_types": ["fine"]})}  # fmt: skip
    stop = D0 + timedelta(days=100)
    events = [{"event_id": "E1", "event_type": "unpublish", "effective_date": stop,
               "recorded_date": stop, "attributes": "{}"}]  # fmt: skip
    before, on = stop - timedelta(days=1), stop
    assert publicity.public_on(record, events, before) and not publicity.public_on(
        record, events, on
    )
    assert publicity.counts_on(record, events, on)
    assert not publicity.counts_on(record, events, D0 + timedelta(days=365))


def test_a_correction_counts_from_its_day_in_its_corrected_form() -> None:
    record = {"record_id": "R1", "category": "admin_penalty", "severity": "serious",
              "event_date": D0, "recorded_date": D0, "amount": 5000.0,
              "attributes": json.dumps({"penalty_types": ["fine"], "note": "x"})}  # fmt: skip
    fixed_on = D0 + timedelta(days=200)
    events = [{"event_id": "E1", "event_type": "correction", "effective_date": fixed_on,
               "recorded_date": fixed_on,
               "attributes": json.dumps({"severity": "minor", "amount": 500,
                                         "attributes": {"note": None}})}]  # fmt: skip
    before = publicity.corrected(record, events, fixed_on - timedelta(days=1))
    after = publicity.corrected(record, events, fixed_on)
    assert (before["severity"], before["amount"], before["attributes"]) == (
        "serious", 5000.0, {"penalty_types": ["fine"], "note": "x"})  # fmt: skip
    assert (after["severity"], after["amount"], after["attributes"]) == (
        "minor", 500.0, {"penalty_types": ["fine"]})  # fmt: skip
    # a serious penalty counted on day 199; as a minor one its 90 days are long over
    assert publicity.counts_on(record, events, fixed_on - timedelta(days=1))
    assert not publicity.counts_on(record, events, fixed_on)
