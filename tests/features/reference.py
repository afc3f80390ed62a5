"""A plain-Python reference of every feature spec, for checking the SQL builder against.

It reads plain lists of dicts (records, entity versions, record events, as in the store) and
follows the counting rules of `features.builder`'s docstring one record at a time, with loops
and no cleverness, so that it can be checked by reading. Defaults follow the builder: counts and
sums are 0 without matching records, latest values, days since and the breach share are None,
flags are 0; a feature is None where it does not apply (`FeatureSpec.applies_to`).
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from features.specs import SPECS, EntitySpec, FeatureSpec, FlagSpec, Spec
from records import publicity
from records import uscc as uscc_codes
from records.catalogue import Catalogue, default_catalogue

Row = dict[str, Any]


def years_on(day: date, years: int) -> date:
    """The same day `years` later; 29 February becomes 28 February (as DuckDB's intervals)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def months_on(day: date, months: int) -> date:
    """The same day `months` later, the month's last day when that month is shorter."""
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def in_window(spec: FeatureSpec, record: Row, as_of: date) -> bool:
    """In the last n calendar months on `as_of`: before the record's date plus n months."""
    months = spec.window_months
    return months is None or as_of < months_on(record["event_date"], months)


def decay_weight(event_date: date, as_of: date) -> float:
    """1 / 0.6 / 0.3 / 0.15 for records at most 1 / 2 / 3 calendar years old / older."""
    for years, weight in ((1, 1.0), (2, 0.6), (3, 0.3)):
        if as_of <= years_on(event_date, years):
            return weight
    return 0.15


def list_categories(catalogue: Catalogue) -> list[str]:
    """Lists are the categories whose records are listings and removals."""
    return [c.code for c in catalogue.categories if set(c.severities) == {"listed", "removed"}]


def attribute(record: Row, key: str) -> str | None:
    """An attribute as text, as JSON extraction gives it (None when absent or null)."""
    attributes = json.loads(record["attributes"]) if record["attributes"] else {}
    if not isinstance(attributes, dict):
        return None
    value = attributes.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def attribute_number(record: Row, key: str) -> float | None:
    text = attribute(record, key)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def attribute_date(record: Row, key: str) -> date | None:
    text = attribute(record, key)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def iso_date(record: Row, key: str) -> date | None:
    """A date attribute written `YYYY-MM-DD` (other forms, as the builder reads them: None)."""
    iso = re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", attribute(record, key) or "")
    return attribute_date(record, key) if iso else None


class Reference:
    """Features of (company, as_of) points from records, entity versions and record events."""

    def __init__(
        self,
        records: Iterable[Row],
        entities: Iterable[Row],
        events: Iterable[Row],
        specs: tuple[Spec, ...] = SPECS,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.specs = specs
        self.catalogue = catalogue or default_catalogue()
        self.lists = list_categories(self.catalogue)
        self.records_of: dict[str, list[Row]] = defaultdict(list)
        for r in records:
            self.records_of[r["uscc"]].append(r)
        self.versions_of: dict[str, list[Row]] = defaultdict(list)
        for e in entities:
            self.versions_of[e["uscc"]].append(e)
        self.events_of: dict[str, list[Row]] = defaultdict(list)
        for ev in events:
            self.events_of[ev["record_id"]].append(ev)

    # ---- which records count ------------------------------------------------------------------

    def known_events(self, record_id: str, as_of: date, types: Iterable[str]) -> list[Row]:
        """Events of a record of these types that took effect and were recorded by as_of."""
        wanted = set(types)
        return [
            ev
            for ev in self.events_of[record_id]
            if ev["event_type"] in wanted
            and ev["effective_date"] <= as_of
            and ev["recorded_date"] <= as_of
        ]

    def counts(self, record: Row, as_of: date) -> bool:
        """The publicity rule (`records.publicity`): the builder renders the same rule as SQL."""
        return publicity.counts_on(record, self.events_of[record["record_id"]], as_of,
                                   self.catalogue)  # fmt: skip

    def counting(self, uscc: str, as_of: date) -> list[Row]:
        """Counting records in their corrected form (attributes as JSON text, as stored)."""
        out = []
        for r in self.records_of[uscc]:
            if self.counts(r, as_of):
                form = publicity.corrected(r, self.events_of[r["record_id"]], as_of)
                form["attributes"] = json.dumps(form["attributes"], ensure_ascii=False)
                out.append(form)
        return out

    # ---- features -----------------------------------------------------------------------------

    def features(self, uscc: str, as_of: date) -> dict[str, Any]:
        counting = self.counting(uscc, as_of)
        row: dict[str, Any] = {"uscc": uscc, "as_of": as_of}
        for spec in self.specs:
            if isinstance(spec, EntitySpec):
                row[spec.name] = self.entity_fact(spec, uscc, as_of)
            elif isinstance(spec, FlagSpec):
                row[spec.name] = self.objection_open(uscc, as_of)
            elif spec.applies_to and self.entity_type(uscc, as_of) not in spec.applies_to:
                row[spec.name] = None  # not applicable: null, whatever the records
            else:
                row[spec.name] = self.record_feature(spec, counting, as_of)
        return row

    def entity_type(self, uscc: str, as_of: date) -> str:
        """The version's type in force, else the one the code says."""
        v = self.entity_version(uscc, as_of)
        if v is not None and v["entity_type"] is not None:
            return str(v["entity_type"])
        return uscc_codes.entity_type_of_code(uscc)

    def rows(self, points: Iterable[tuple[str, date]]) -> list[dict[str, Any]]:
        """One row per distinct point, ordered by company and date (as the builder orders)."""
        return [self.features(u, d) for u, d in sorted(set(points))]

    def record_feature(self, spec: FeatureSpec, counting: list[Row], as_of: date) -> Any:
        if spec.aggregation == "open_listing":
            return self.open_listing(spec, counting)
        if spec.aggregation in ("honoured_commitments", "breach_share"):
            return self.commitments(spec, counting, as_of)
        matching = [r for r in counting if self.matches(spec, r, as_of)]
        a = spec.aggregation
        if a == "count":
            return len(matching)
        if a == "decayed_count":
            return sum((decay_weight(r["event_date"], as_of) for r in matching), 0.0)
        amounts = [r["amount"] for r in matching if r["amount"] is not None]
        if a == "sum_amount":
            return sum(amounts, 0.0)
        if a == "max_amount":
            return max(amounts, default=0.0)
        if a == "sum_attribute":
            assert spec.attribute is not None
            values = [attribute_number(r, spec.attribute) for r in matching]
            return sum((v for v in values if v is not None and math.isfinite(v) and v >= 0), 0.0)
        if a == "worst_value":
            valued = [dict(spec.values).get(r["severity"]) for r in matching]
            return max((v for v in valued if v is not None), default=None)
        if not matching:
            return None  # latest_amount, latest_value, days_since_last
        latest = max(matching, key=lambda r: (r["event_date"], r["record_id"]))
        if a == "latest_amount":
            return latest["amount"]
        if a == "latest_value":
            return dict(spec.values).get(latest["severity"])
        if a == "days_since_last":
            return (as_of - latest["event_date"]).days
        raise ValueError(f"{spec.name}: unknown aggregation {a}")

    def matches(self, spec: FeatureSpec, r: Row, as_of: date) -> bool:
        if r["category"] not in spec.categories:
            return False
        if spec.severities is not None and r["severity"] not in spec.severities:
            return False
        if not in_window(spec, r, as_of):
            return False
        if spec.attribute_equals is not None:
            key, value = spec.attribute_equals
            if attribute(r, key) != value:
                return False
        if spec.amount_equals is not None and r["amount"] != spec.amount_equals:
            return False
        if spec.later_than is not None:
            key, grace = spec.later_than
            due = iso_date(r, key)
            if due is None or (r["event_date"] - due).days <= grace:
                return False
        if spec.period_at_most is not None:
            start_key, end_key, days = spec.period_at_most
            start, end = iso_date(r, start_key), iso_date(r, end_key)
            if start is not None and end is not None and (end - start).days > days:
                return False
        return True

    def open_listing(self, spec: FeatureSpec, counting: list[Row]) -> int:
        removals = [
            r for r in counting if r["category"] in self.lists and r["severity"] == "removed"
        ]
        for listing in counting:
            if listing["category"] not in spec.categories or listing["category"] not in self.lists:
                continue
            if listing["severity"] != "listed":
                continue
            closed = False
            for removal in removals:
                ref = attribute(removal, "ref")
                if ref == listing["record_id"]:
                    closed = True
                if (
                    ref is None
                    and removal["category"] == listing["category"]
                    and removal["event_date"] >= listing["event_date"]
                ):
                    closed = True
            if not closed:
                return 1
        return 0

    def commitments(self, spec: FeatureSpec, counting: list[Row], as_of: date) -> Any:
        breaches = [r for r in counting if r["category"] == "commitment_breach"]
        breached = {attribute(b, "ref") for b in breaches}  # of any age
        commitments = [
            r
            for r in counting
            if r["category"] == "credit_commitment" and in_window(spec, r, as_of)
        ]
        if spec.aggregation == "honoured_commitments":
            honoured = 0
            for k in commitments:
                due = attribute_date(k, "due_date") or k["event_date"]
                if due <= as_of and k["record_id"] not in breached:
                    honoured += 1
            return honoured
        if not commitments:
            return None
        return sum(1 for k in commitments if k["record_id"] in breached) / len(commitments)

    def objection_open(self, uscc: str, as_of: date) -> int:
        for r in self.records_of[uscc]:
            if r["recorded_date"] > as_of:
                continue
            known = self.known_events(
                r["record_id"], as_of, ["objection_opened", "objection_closed"]
            )
            if not known:
                continue
            # the latest step decides: by day, then commit order (a decision and a new
            # objection on one day are told apart by the order they were stored in); within
            # one batch a closing of the same day comes last
            last = max(known, key=lambda ev: (ev["effective_date"], ev["batch_id"],
                                              ev["event_type"] == "objection_closed",
                                              ev["event_id"]))  # fmt: skip
            if last["event_type"] == "objection_opened":
                return 1
        return 0

    def entity_version(self, uscc: str, as_of: date) -> Row | None:
        known = [v for v in self.versions_of[uscc] if v["recorded_date"] <= as_of]
        if not known:
            return None
        # records.schema.version_order: the department's date, then the day known, then batch
        return max(
            known,
            key=lambda v: (
                v.get("source_recorded_date") or v["recorded_date"], v["recorded_date"],
                v["batch_id"],
            ),
        )  # fmt: skip

    def entity_fact(self, spec: EntitySpec, uscc: str, as_of: date) -> Any:
        v = self.entity_version(uscc, as_of)
        x = spec.expression
        if x == "individual_business":
            return 1 if v is not None and v["entity_type"] == "individual_business" else 0
        if x == "active":
            return 1 if v is not None and v["status"] == "active" else 0
        if v is None:
            return None
        if x == "age_years":
            if v["established_date"] is None:
                return None
            return round((as_of - v["established_date"]).days / 365.25, 4)
        if x == "log_capital":
            if v["registered_capital"] is None:
                return None
            return round(math.log10(1 + v["registered_capital"]), 6)
        if x in ("industry", "region", "entity_type"):
            return v[x]
        raise ValueError(f"{spec.name}: unknown entity expression {x}")
