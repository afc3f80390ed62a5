"""The publicity rule (DOMAIN §9): a record is public on a day exactly when the rules say so.

`oracle_public` restates the rules of DOMAIN §9 for the categories it covers, plainly and apart
from `records.publicity`; hypothesis draws record histories (penalty types, domains, entity types,
repairs, withdrawals, "stop publishing" decisions, corrections, late recording) and days on the
boundaries, and the rule must agree with it. Periods are calendar months and years ("3 months"
from 30 November ends on 28 February or 29 February), restated apart from `records.spans`
(`tests.features.reference.months_on`). The SQL rendering the feature builder uses must give
the same end days as the Python rule for every drawn record.
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
from records.spans import Span
from tests.features.reference import months_on

D0 = date(2024, 3, 1)
HEAVY = {"closure", "business_restriction", "employment_ban", "qualification_downgrade",
         "licence_revoked"}  # fmt: skip
SPECIAL = {"special_equipment", "work_safety", "fire"}
LEVEL_MONTHS = {"minor": 3, "general": 12, "serious": 36}
TYPES = ("warning", "fine", "confiscation", *sorted(HEAVY))
DOMAINS = ("fire", "work_safety", "special_equipment", "food_safety", "pricing")
ENTITY_TYPES = ("company", "individual_business", None)


def _in_force(record: dict[str, Any], events: list[dict[str, Any]], day: date
              ) -> tuple[str | None, dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """The record's severity and attributes on `day` (the latest correction in force gives
    them) and the events in force then."""
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
    return severity, attributes, in_force


def oracle_public(record: dict[str, Any], events: list[dict[str, Any]], day: date,
                  entity_type: str | None) -> bool:  # fmt: skip
    """DOMAIN §9, restated. Corrections: the latest in force gives severity and attributes."""
    if day < record["event_date"] or day < record["recorded_date"]:
        return False
    severity, attributes, in_force = _in_force(record, events, day)
    stops = [max(e["effective_date"], e["recorded_date"]) for e in in_force
             if e["event_type"] in ("repair", "withdrawal", "unpublish")]  # fmt: skip
    if stops:  # repaired, withdrawn or no longer published from that day
        return False
    category = record["category"]
    if category == "admin_penalty":
        types = attributes.get("penalty_types") or []
        if types and all(t == "warning" for t in types):
            return False  # warnings are not published
        months = LEVEL_MONTHS[severity]
        if any(t in HEAVY for t in types):
            months = LEVEL_MONTHS["serious"]  # several types: the longest applies
        if attributes.get("domain") in SPECIAL:
            months = max(months, 12)  # special equipment, work safety, fire: at least a year
    elif category == "spot_check":
        months = 24 if entity_type == "individual_business" else 60
    elif category == "serious_dishonest_list":
        months = 36 if severity == "listed" else None  # a removal stays on record
    elif category in ("complaint", "tax_declaration"):
        return False  # not shared with the public / never published
    elif category == "registration":
        months = None
    else:
        raise AssertionError(category)
    return months is None or day < months_on(record["event_date"], months)


def oracle_counts(record: dict[str, Any], events: list[dict[str, Any]], day: date) -> bool:
    """DOMAIN §9, restated for counting in scores and tiers: from the day the record is known,
    in its corrected form, for its maximum period (whoever the company is: the shorter public
    period of a natural person's business does not shorten it), until it is repaired or
    withdrawn; a "stop publishing" decision does not stop it counting."""
    if day < record["event_date"] or day < record["recorded_date"]:
        return False
    severity, attributes, in_force = _in_force(record, events, day)
    if any(e["event_type"] in ("repair", "withdrawal") for e in in_force):
        return False  # repaired or withdrawn from that day
    category = record["category"]
    months: int | None
    if category == "admin_penalty":
        months = LEVEL_MONTHS[severity]  # a warning counts its level's period, unpublished
        if any(t in HEAVY for t in attributes.get("penalty_types") or []):
            months = LEVEL_MONTHS["serious"]
        if attributes.get("domain") in SPECIAL:
            months = max(months, 12)
    elif category == "spot_check":
        months = 60  # five years for everyone: only the public period is shorter for a person
    elif category == "serious_dishonest_list":
        months = 36 if severity == "listed" else None
    elif category == "complaint":
        months = 12
    elif category in ("tax_declaration", "registration"):
        months = None  # no period of its own: each feature's window decides
    else:
        raise AssertionError(category)
    return months is None or day < months_on(record["event_date"], months)


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    category = draw(st.sampled_from(["admin_penalty"] * 6 + ["spot_check", "serious_dishonest_list",
                                     "complaint", "tax_declaration", "registration"]))  # fmt: skip
    severities = {"admin_penalty": list(LEVEL_MONTHS), "spot_check": ["pass", "problem", "serious"],
                  "serious_dishonest_list": ["listed", "removed"],
                  "complaint": ["verified"]}.get(category, [None])  # fmt: skip
    attributes: dict[str, Any] = {}
    if category == "admin_penalty":
        if draw(st.booleans()):
            attributes["penalty_types"] = draw(st.lists(st.sampled_from(TYPES), max_size=3))
        if draw(st.booleans()):
            attributes["domain"] = draw(st.sampled_from(DOMAINS))
    # month ends and 29 February: where months and days part
    event = draw(st.sampled_from([D0, date(2024, 2, 29), date(2023, 11, 30), date(2024, 1, 31),
                                  date(2023, 8, 31), date(2023, 12, 31)]))  # fmt: skip
    event += timedelta(days=draw(st.integers(0, 3)))
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
                fix["severity"] = draw(st.sampled_from(list(LEVEL_MONTHS)))
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
    for months in (3, 12, 24, 36, 60):
        marks.add(months_on(record["event_date"], months))
    for days in (90, 365, 730, 1095, 1825):  # the ends of the same periods counted in days
        marks.add(record["event_date"] + timedelta(days=days))
    for e in events:
        marks.add(max(e["effective_date"], e["recorded_date"]))
    return sorted({m + timedelta(days=k) for m in marks for k in (-1, 0)})


@settings(max_examples=400, deadline=None)
@given(histories())
def test_a_record_counts_exactly_when_the_rules_say_so(
    history: tuple[dict[str, Any], list[dict[str, Any]], str | None],
) -> None:
    """What scores and tiers use (`counts_on`): corrections, repairs and withdrawals included,
    on every boundary day."""
    record, events, _ = history
    stored = {**record, "attributes": json.dumps(record["attributes"])}
    decoded = [{**e, "attributes": json.loads(e["attributes"])} for e in events]
    for day in _boundary_days(record, events):
        expected = oracle_counts(record, decoded, day)
        assert publicity.counts_on(stored, events, day) == expected, (day, record, events)


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
    rows = [{"category": r["category"], "severity": r["severity"], "event_date": r["event_date"],
             "attributes": json.dumps(r["attributes"])} for r, _, _ in drawn]  # fmt: skip
    con = duckdb.connect()
    con.register("t", pa.Table.from_pylist(rows))
    got = [d for (d,) in con.execute(f"SELECT {publicity.counting_end_sql()} FROM t").fetchall()]
    want = [publicity.period(r["category"], r["severity"], r["attributes"]).counts_until(
        r["event_date"]) for r in rows]  # fmt: skip
    assert got == want


def test_the_rules_on_known_decisions() -> None:
    def period(severity: str, types: list[str], domain: str | None = None) -> publicity.Period:
        attrs: dict[str, Any] = {"penalty_types": types}
        if domain:
            attrs["domain"] = domain
        return publicity.period("admin_penalty", severity, attrs)

    months = {n: Span(n) for n in (3, 12, 24, 36, 60)}
    warning = period("minor", ["warning"])
    assert not warning.published and warning.maximum == months[3]  # counts 3 months, never shown
    assert period("minor", ["warning", "fine"]) == publicity.Period(
        True, Span(), months[3], months[3])  # fmt: skip
    assert period("general", ["fine", "licence_revoked"]).maximum == months[36]
    assert period("minor", ["fine"], "fire") == publicity.Period(
        True, months[12], months[12], months[12])  # fmt: skip
    assert period("serious", ["fine"], "work_safety").maximum == months[36]
    check = publicity.period("spot_check", "problem", {}, "individual_business")
    assert (check.maximum, check.public) == (months[60], months[24])  # counts 5 years, shown 2
    assert not publicity.period("complaint", "verified", {}).published


def test_periods_end_on_the_same_day_of_the_month() -> None:
    """DOMAIN §9 in months and years, not days: a general penalty of 1 March 2026 may be
    repaired from 1 June (3 months), not from 30 May (90 days); a serious one of 1 March 2023
    from 1 March 2024 (a year), not from 29 February (365 days); a spot-check result of 30 June
    2021 is public until 30 June 2026 (5 years), not 29 June (1,825 days)."""
    general = publicity.period("admin_penalty", "general", {"penalty_types": ["fine"]})
    assert general.repairable_from(date(2026, 3, 1)) == date(2026, 6, 1)
    assert general.counts_until(date(2026, 3, 1)) == date(2027, 3, 1)
    assert general.repairable_from(date(2025, 11, 30)) == date(2026, 2, 28)  # month end
    serious = publicity.period("admin_penalty", "serious", {"penalty_types": ["fine"]})
    assert serious.repairable_from(date(2023, 3, 1)) == date(2024, 3, 1)  # not 29 February
    assert serious.counts_until(date(2024, 2, 29)) == date(2027, 2, 28)
    check = publicity.period("spot_check", "problem", {}, "company")
    assert check.public_until(date(2024, 2, 29)) == date(2029, 2, 28)
    assert check.public_until(date(2021, 6, 30)) == date(2026, 6, 30)  # 1,825 days: 29 June
    result = {"record_id": "R9", "category": "spot_check", "severity": "problem",
              "event_date": date(2021, 6, 30), "recorded_date": date(2021, 6, 30),
              "attributes": "{}"}  # fmt: skip
    assert publicity.public_on(result, [], date(2026, 6, 29), "company")  # still 5 years
    assert not publicity.public_on(result, [], date(2026, 6, 30), "company")


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
