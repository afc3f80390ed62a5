"""Random small markets for property tests: a few companies with entity versions, records of
every category, and record events, with dates clustered on the boundaries that matter
(publicity periods, windows, decay steps, the as-of dates themselves)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from hypothesis import strategies as st

from records import uscc
from records.catalogue import default_catalogue
from records.events import LISTING_SEVERITIES
from records.schema import ENTITY_STATUSES, EVENT_TYPES
from records.store import Store
from tests.features.reference import list_categories
from tests.features.stores import TODAY, add_entities, add_events, add_records

Row = dict[str, Any]

CATALOGUE = default_catalogue()
LISTS = tuple(list_categories(CATALOGUE))
CODES = tuple(uscc.generate_many(np.random.default_rng(2026), ["91"] * 4 + ["92"] * 3,
                                 ["410102"] * 4 + ["410105"] * 3))  # fmt: skip
NON_FILERS = tuple(uscc.generate_many(np.random.default_rng(2027), ["51", "12", "11"],
                                      ["410102"] * 3))  # fmt: skip
"""A social group, a public institution and an organ: no annual reports with market regulation
(`features.specs.ANNUAL_REPORT_FILERS`), so those features are null for them."""
OUTSIDER = uscc.generate_many(np.random.default_rng(7), ["91"], ["410103"])[0]
"""A company that appears in no table: every feature at its default."""

ANCHORS = (date(2023, 3, 31), date(2024, 6, 30), date(2025, 12, 31), TODAY)
OFFSETS = (0, 1, 2, 89, 90, 91, 179, 180, 181, 364, 365, 366, 729, 730, 731, 1094, 1095, 1096,
           1824, 1825, 1826)  # fmt: skip
EARLIEST = date(2019, 1, 1)
SIGNALS = ("supplier_payment_delay_days", "ecommerce_rating", "ecommerce_rating",
           "public_opinion_index", "some_other_signal")  # fmt: skip
# categories the features treat specially come up more often
WEIGHTED_CATEGORIES = (
    *(c.code for c in CATALOGUE.categories),
    "admin_penalty", "admin_penalty", "abnormal_operation_list", "abnormal_operation_list",
    "serious_dishonest_list", "red_list", "credit_commitment", "credit_commitment",
    "commitment_breach", "spot_check", "third_party_signal", "third_party_signal",
    "tax_credit_grade", "tax_declaration", "tax_declaration",
)  # fmt: skip


def _clip(d: date) -> date:
    return min(max(d, EARLIEST), TODAY)


def dates(anchors: tuple[date, ...] = ANCHORS) -> st.SearchStrategy[date]:
    """Dates on the boundaries before the anchors, shortly before or after them, or anywhere."""
    near = st.builds(lambda a, o: _clip(a - timedelta(days=o)),
                     st.sampled_from(anchors), st.sampled_from(OFFSETS))  # fmt: skip
    close = st.builds(lambda a, o: _clip(a + timedelta(days=o)),
                      st.sampled_from(anchors), st.integers(-400, 3))  # fmt: skip
    anywhere = st.integers(0, (TODAY - EARLIEST).days).map(lambda n: EARLIEST + timedelta(n))
    return st.one_of(near, close, close, anywhere)


def amounts(negative: bool) -> st.SearchStrategy[float]:
    """Multiples of 0.25, so that sums are exact in floating point."""
    low = -4_000_000 if negative else 0
    return st.integers(low, 4_000_000).map(lambda n: n / 4)


@dataclass
class Scenario:
    companies: list[str]
    entities: list[Row] = field(default_factory=list)  # with "batch": 0 or 1
    records: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    as_of: list[date] = field(default_factory=list)

    def write(self, store: Store) -> None:
        for batch in (0, 1):
            add_entities(store, [e for e in self.entities if e["batch"] == batch])
        add_records(store, self.records)
        add_events(store, self.events)

    def points(self) -> list[tuple[str, date]]:
        return [(u, d) for u in [*self.companies, OUTSIDER] for d in self.as_of]


def _attributes(draw: st.DrawFn, category: str, severity: str | None, event: date) -> Row:
    attrs: Row = {}
    if draw(st.booleans()):
        attrs["note"] = draw(st.sampled_from(["x", "说明"]))
    if category == "credit_commitment":
        kind = draw(st.sampled_from(["none", "date", "date", "junk", "null"]))
        if kind == "date":
            attrs["due_date"] = (event + timedelta(days=draw(st.integers(0, 600)))).isoformat()
        elif kind == "junk":
            attrs["due_date"] = "unknown"
        elif kind == "null":
            attrs["due_date"] = None
    elif category == "spot_check":
        kind = draw(st.sampled_from(["none", "int", "int", "text", "null", "bad"]))
        if kind == "int":
            attrs["findings_serious"] = draw(st.integers(0, 4))
        elif kind == "text":
            attrs["findings_serious"] = "2"
        elif kind == "bad":  # not a count: never counted
            attrs["findings_serious"] = draw(st.sampled_from([-3, "NaN", "-inf", "Infinity"]))
        elif kind == "null":
            attrs["findings_serious"] = None
    elif category == "third_party_signal":
        attrs["name"] = draw(st.sampled_from(SIGNALS))
    elif category == "tax_declaration":  # filed on, just after or long after the due day
        kind = draw(st.sampled_from(["date", "date", "date", "none", "junk", "null"]))
        if kind == "date":
            lag = draw(st.one_of(st.sampled_from([24, 25, 26, 27]), st.integers(-10, 120)))
            end = event - timedelta(days=lag)
            attrs["period_end"] = end.isoformat()
            length = draw(st.sampled_from([None, 89, 92, 93, 364, -1, "junk"]))
            if length == "junk":
                attrs["period_start"] = (end - timedelta(days=364)).strftime("%Y%m%d")
            elif length is not None:
                attrs["period_start"] = (end - timedelta(days=length)).isoformat()
        elif kind == "junk":
            end = event - timedelta(days=draw(st.integers(0, 60)))
            attrs["period_end"] = draw(st.sampled_from(
                ["2024-13-40", end.strftime("%Y%m%d"), end.strftime("%Y/%m/%d"),
                 end.isoformat() + " 00:00:00"]
            ))  # fmt: skip
        elif kind == "null":
            attrs["period_end"] = None
    elif category == "admin_penalty":  # the publicity rule reads the types and the domain
        if draw(st.booleans()):
            attrs["penalty_types"] = draw(st.lists(st.sampled_from(PENALTY_TYPES), max_size=3))
        if draw(st.booleans()):
            attrs["domain"] = draw(st.sampled_from(["fire", "work_safety", "food_safety"]))
    return attrs


PENALTY_TYPES = ("warning", "fine", "confiscation", "licence_revoked", "closure")


def correction(draw: st.DrawFn, record: Row) -> Row:
    """A correction's attributes: a new severity, amount or attributes (or several)."""
    c = CATALOGUE[record["category"]]
    fix: Row = {}
    # a listing's severity is not corrected (records.events.check_correction): it is ended by
    # a removal record, or withdrawn
    if c.severities and set(c.severities) != LISTING_SEVERITIES and draw(st.booleans()):
        fix["severity"] = draw(st.sampled_from(c.severities))
    if c.amount != "none" and draw(st.booleans()):
        fix["amount"] = draw(st.one_of(st.none(), amounts(c.negative_amount_allowed)))
    if draw(st.booleans()):
        overlay: Row = {"note": draw(st.one_of(st.none(), st.just("更正")))}
        if record["category"] == "admin_penalty":
            overlay["penalty_types"] = draw(st.lists(st.sampled_from(PENALTY_TYPES), max_size=2))
            overlay["domain"] = draw(st.one_of(st.none(), st.just("fire")))
        fix["attributes"] = overlay
    return fix


@st.composite
def scenarios(draw: st.DrawFn, max_records: int = 40, entity_ties: bool = True) -> Scenario:
    """A random market. With `entity_ties`, the two entity batches may hold versions of one
    company recorded on the same day (the later batch_id wins, which is not always the later
    commit: only use them where both sides read the same store)."""
    companies = draw(st.lists(st.sampled_from(CODES + NON_FILERS), min_size=1, max_size=4,
                              unique=True))  # fmt: skip
    s = Scenario(companies)
    extra = st.sampled_from([date(2022, 1, 1), date(2027, 6, 30)])
    s.as_of = sorted(
        draw(st.lists(st.one_of(st.sampled_from(ANCHORS), dates(), extra),
                      min_size=2, max_size=4, unique=True))
    )  # fmt: skip
    # most dates fall near the as-of dates, where the boundaries are
    when = dates(tuple(d for d in s.as_of if d <= TODAY) or ANCHORS)

    for code in companies:
        seen: set[tuple[int, date]] = set()
        for k in range(draw(st.integers(0, 3))):
            batch = draw(st.integers(0, 1))
            recorded = draw(when)
            key = (batch if entity_ties else 0, recorded)
            if key in seen:  # one version per day within a batch (or at all)
                continue
            seen.add(key)
            s.entities.append({
                "uscc": code, "name": f"某某商贸有限公司{k}", "batch": batch,
                "industry": draw(st.sampled_from([None, "F52", "H62", "C13"])),
                "region": draw(st.sampled_from([None, "410105"])),
                "registered_capital": draw(st.one_of(st.none(), amounts(False))),
                "established_date": draw(st.one_of(st.none(), when)),
                "status": draw(st.sampled_from(ENTITY_STATUSES)),
                "recorded_date": recorded,
            })  # fmt: skip

    # a few categories of the market come up again and again, so that records meet each other
    focus = st.sampled_from(draw(st.lists(st.sampled_from(WEIGHTED_CATEGORIES), min_size=1,
                                          max_size=5)))  # fmt: skip
    for i in range(draw(st.integers(0, max_records))):
        if s.records and draw(st.integers(0, 2)) == 0:  # another record of the same kind
            like = draw(st.sampled_from(s.records))
            company, category, severity = like["uscc"], like["category"], like["severity"]
            attributes = dict(like["attributes"])
            shift = draw(st.one_of(st.just(0), st.integers(-40, 40)))  # ties are common
            event = _clip(like["event_date"] + timedelta(days=shift))
            c = CATALOGUE[category]
        else:
            company = draw(st.sampled_from(companies))
            category = draw(st.one_of(focus, st.sampled_from(WEIGHTED_CATEGORIES)))
            event = draw(when)
            severity = None
            c = CATALOGUE[category]
            if c.severities:
                choice = st.sampled_from(c.severities)
                severity = draw(choice if c.severity_required else st.one_of(st.none(), choice))
            attributes = _attributes(draw, category, severity, event)
        later = event + timedelta(days=draw(st.integers(0, 400)))
        recorded = draw(st.one_of(st.just(event), when, st.just(later)))
        amount = None
        if c.amount != "none":
            zero = st.just(0.0) if category == "tax_declaration" else st.nothing()
            amount = draw(st.one_of(st.none(), zero, amounts(c.negative_amount_allowed)))
        s.records.append({
            "record_id": f"R{i:03d}", "uscc": company, "category": category,
            "severity": severity, "event_date": event,
            "recorded_date": _clip(max(recorded, event)), "source_dept": "samr",
            "amount": amount, "attributes": attributes,
        })  # fmt: skip

    # references: removals to listings, breaches to commitments (mostly of the same company)
    for r in s.records:
        wanted = None
        if r["category"] in LISTS and r["severity"] == "removed":
            wanted = lambda x: x["category"] in LISTS and x["severity"] == "listed"  # noqa: E731
        elif r["category"] == "commitment_breach":
            wanted = lambda x: x["category"] == "credit_commitment"  # noqa: E731
        if wanted is None:
            continue
        kind = draw(st.sampled_from(["target", "target", "target", "none", "null", "dangling",
                                     "any"]))  # fmt: skip
        same = [x["record_id"] for x in s.records if x["uscc"] == r["uscc"] and wanted(x)]
        if kind == "target" and same:
            r["attributes"]["ref"] = draw(st.sampled_from(same))
        elif kind == "null":
            r["attributes"]["ref"] = None
        elif kind == "dangling":
            r["attributes"]["ref"] = "R999"
        elif kind == "any":
            r["attributes"]["ref"] = draw(st.sampled_from([x["record_id"] for x in s.records]))
    for r in s.records:
        r["attributes"] = json.dumps(r["attributes"], ensure_ascii=False)

    if s.records:
        for j in range(draw(st.integers(0, 12))):
            record = draw(st.sampled_from(s.records))
            effective = draw(st.one_of(when, st.just(record["event_date"])))
            recorded = draw(st.one_of(st.just(effective), when))
            kind = draw(st.sampled_from(EVENT_TYPES))
            s.events.append({
                "event_id": f"E{j:03d}", "record_id": record["record_id"],
                "event_type": kind, "effective_date": effective, "recorded_date": recorded,
                "attributes": correction(draw, record) if kind == "correction" else {},
            })  # fmt: skip
    return s
