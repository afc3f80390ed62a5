"""When a record is public and how long it counts: the one rule (DOMAIN §9), in Python and SQL.

The public window of a record starts on its event date (the decision date) and lasts the
catalogue's `max` for its category and severity, a calendar period (`records.spans`: "3 months"
ends on the same day of the month), with three refinements for penalty decisions:
- **warnings are never published**: a decision whose only penalty types are `unpublished_types`
  (警告) is not public; it still counts for supervision while its severity's period runs, as the
  categories that are never published do;
- **the longest penalty type applies**: a decision that includes a heavy type (closure, a revoked
  licence, …: `type_severity`) runs the period of that type's severity when it is longer;
- **special domains run at least a year**: special equipment, work safety and fire decisions are
  public (and wait before repair) at least `special_domain_period`.
A record stops counting when its period ends and is public until then, unless earlier
- a `repair` or a `withdrawal` in force (both its effective and its recorded day reached) ends
  both;
- an `unpublish` (an objection decided "stop publishing") ends its publicity only.
A `correction` in force replaces the record's severity, amount and attributes (overlaid key by
key) from its day: the latest correction wins (ties on one day go by commit order), and each
states the corrected form relative to the original record. The record then counts and is public
in that form, with the period that form has. An individual business's records of categories
with `publicity_natural_person` are published at most that long (the natural person behind
it); they count for the full period.

`period` is the rule for one record; `counting_end_sql` renders the same rule as SQL over the
columns `category`, `severity`, `attributes` and `event_date` for the feature builder, and the
reference tests check the two against each other. `public_on` and `counts_on` apply the rule
to a record and its events on a day: the records page, the public company page and published
spot-check results use them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from records.catalogue import Catalogue, Category, default_catalogue
from records.schema import VERSION_ORDER
from records.spans import Span, longer, shorter
from records.store import Store

STOPS_COUNTING = ("repair", "withdrawal")
STOPS_PUBLICITY = ("repair", "withdrawal", "unpublish")
CORRECTABLE = ("severity", "amount", "attributes")
"""What a `correction` event may restate (its attributes hold the corrected values)."""


@dataclass(frozen=True)
class Period:
    """A record's periods from its event date, calendar spans (None: open-ended)."""

    published: bool
    """Shown to the public at all (not a warning, a category shared with the public, max > 0)."""
    minimum: Span | None
    """The minimum publicity period: repair may be applied for from then."""
    maximum: Span | None
    """It counts (and, when published, is public) until event date + maximum; zero: the
    category is never published and counts by each feature's window alone."""
    public: Span | None
    """Public until event date + public (maximum, shortened for a natural person)."""

    def repairable_from(self, event_date: date) -> date | None:
        """The first day repair may be applied for (None: no minimum period)."""
        return _end_of(self.minimum, event_date)

    def counts_until(self, event_date: date) -> date | None:
        """The first day the record no longer counts by its period (None: no end)."""
        return _end_of(self.maximum, event_date)

    def public_until(self, event_date: date) -> date | None:
        """The first day the record is no longer public by its period (None: no end)."""
        return _end_of(self.public, event_date)


def _open(span: Span | None) -> bool:
    """No end: an open-ended period, or a zero one (never published: windows alone decide)."""
    return span is None or span.zero


def _end_of(span: Span | None, start: date) -> date | None:
    return None if span is None or span.zero else span.after(start)


def _attributes(value: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value) if value else {}
    return dict(value) if isinstance(value, Mapping) else {}


def _penalty_types(attributes: Mapping[str, Any]) -> list[Any]:
    types = attributes.get("penalty_types")
    return list(types) if isinstance(types, list) else []


def _rank(category: Category, severity: str | None) -> int:
    return category.severities.index(severity) if severity in category.severities else -1


def period(
    category: str,
    severity: str | None,
    attributes: Mapping[str, Any] | str | None,
    entity_type: str | None = None,
    catalogue: Catalogue | None = None,
) -> Period:
    """The periods of one record (in its corrected form, when corrected)."""
    c = (catalogue or default_catalogue())[category]
    attrs = _attributes(attributes)
    types = _penalty_types(attrs)
    published = c.shared_with_public
    effective = severity
    if c.unpublished_types or c.type_severity:
        shown = [t for t in types if t not in c.unpublished_types]
        if types and not shown:
            published = False  # warnings only
        ranks = [_rank(c, c.type_severity[t]) for t in shown if isinstance(t, str)
                 and t in c.type_severity]  # fmt: skip
        if ranks and max(ranks) > _rank(c, severity):
            effective = c.severities[max(ranks)]
    base = c.publicity_for(effective)  # open-ended when the severity has no period
    lo, hi = base.min, base.max
    floor = c.special_domain_period
    if c.special_domains and attrs.get("domain") in c.special_domains and not _open(hi):
        assert floor is not None  # the catalogue requires it with special domains
        lo, hi = floor if lo is None else longer(lo, floor), longer(hi, floor)
    if hi is not None and hi.zero:
        published = False
    public = hi
    person = c.publicity_natural_person
    if entity_type == "individual_business" and person is not None:
        public = person if hi is None or hi.zero else shorter(hi, person)
    return Period(published, lo, hi, public)


def _in_force(event: Mapping[str, Any]) -> date:
    """The first day an event is both effective and known."""
    day: date = max(event["effective_date"], event["recorded_date"])
    return day


def _order(event: Mapping[str, Any]) -> tuple[date, str, str]:
    """Events of one day are ordered as they were stored (batch ids begin with the commit
    sequence), then by id."""
    return (_in_force(event), str(event.get("batch_id") or ""), str(event.get("event_id") or ""))


def stopped_on(events: Iterable[Mapping[str, Any]], kinds: Iterable[str]) -> date | None:
    """The first day an event of these kinds is in force (None: none is)."""
    wanted = set(kinds)
    days = [_in_force(e) for e in events if e["event_type"] in wanted]
    return min(days) if days else None


def corrected(
    record: Mapping[str, Any], events: Iterable[Mapping[str, Any]], day: date
) -> dict[str, Any]:
    """The record as it counts on `day`: its latest correction in force applied (attributes as
    a dict)."""
    out = dict(record)
    out["attributes"] = _attributes(record.get("attributes"))
    fixes = [e for e in events if e["event_type"] == "correction" and _in_force(e) <= day]
    if not fixes:
        return out
    latest = max(fixes, key=_order)
    fix = _attributes(latest.get("attributes"))
    if fix.get("severity") is not None:
        out["severity"] = fix["severity"]
    if "amount" in fix:
        amount = fix["amount"]
        try:
            out["amount"] = None if amount is None else float(amount)
        except (TypeError, ValueError):
            out["amount"] = None
    overlay = fix.get("attributes")
    if isinstance(overlay, Mapping):
        out["attributes"] = merge_patch(out["attributes"], overlay)
    return out


SUPPLEMENTED = "supplemented"
"""The outcome of an objection that added information to a record (DOMAIN §10): its correction
event restates attributes only, and the record is shown `supplemented`, not `corrected`."""


def supplements(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """The ids of the correction events that only add information: those of an objection
    decided `supplemented`, told by the decision's `objection_closed` event (its `outcome`),
    stored in the same batch (a decision's events are appended in one)."""
    events = list(events)
    batches = {
        e.get("batch_id") for e in events
        if e["event_type"] == "objection_closed"
        and _attributes(e.get("attributes")).get("outcome") == SUPPLEMENTED
    }  # fmt: skip
    batches.discard(None)
    return {str(e.get("event_id")) for e in events
            if e["event_type"] == "correction" and e.get("batch_id") in batches}  # fmt: skip


def amended(
    record: Mapping[str, Any], events: Iterable[Mapping[str, Any]], day: date
) -> tuple[bool, bool]:
    """(corrected, supplemented) on `day`, for a record whose form then differs from the one
    recorded: whether a correction in force other than an objection's supplement is behind it,
    and whether one of an objection decided `supplemented` is (`supplements`). A record
    corrected and supplemented, in either order, is both. (Each correction stored restates the
    ones before it, so the forms alone cannot tell which added what.)"""
    events = list(events)
    if corrected(record, events, day) == corrected(record, [], day):
        return False, False
    added = supplements(events)
    fixes = [str(e.get("event_id")) for e in events
             if e["event_type"] == "correction" and _in_force(e) <= day]  # fmt: skip
    return any(f not in added for f in fixes), any(f in added for f in fixes)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (as SQL `json_merge_patch`): objects merge key by key,
    recursively; null removes a key; anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _within(record: Mapping[str, Any], day: date, span: Span | None) -> bool:
    if record["recorded_date"] > day or record["event_date"] > day:
        return False
    end = _end_of(span, record["event_date"])
    return end is None or day < end


def counts_on(
    record: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    day: date,
    catalogue: Catalogue | None = None,
) -> bool:
    """Whether the record counts in features, score and tier on `day`."""
    events = list(events)
    form = corrected(record, events, day)
    p = period(form["category"], form["severity"], form["attributes"], None, catalogue)
    stop = stopped_on(events, STOPS_COUNTING)
    return _within(form, day, p.maximum) and (stop is None or stop > day)


def public_on(
    record: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    day: date,
    entity_type: str | None = None,
    catalogue: Catalogue | None = None,
) -> bool:
    """Whether the record is shown to the public on `day`."""
    events = list(events)
    form = corrected(record, events, day)
    p = period(form["category"], form["severity"], form["attributes"], entity_type, catalogue)
    stop = stopped_on(events, STOPS_PUBLICITY)
    return (
        p.published
        and _within(form, day, p.public)
        and (stop is None or stop > day)
    )  # fmt: skip


def public_until(
    record: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    day: date,
    entity_type: str | None = None,
    catalogue: Catalogue | None = None,
) -> date | None:
    """The first day the record is no longer public, as known on `day` (None: open-ended)."""
    events = [e for e in events if _in_force(e) <= day]
    form = corrected(record, events, day)
    p = period(form["category"], form["severity"], form["attributes"], entity_type, catalogue)
    end = p.public_until(form["event_date"])
    stop = stopped_on(events, STOPS_PUBLICITY)
    if stop is not None and (end is None or stop < end):
        return stop
    return end


# ---- a company's records on a day -------------------------------------------------------------


def objection_open(events: Iterable[Mapping[str, Any]], day: date) -> bool:
    """Open when the latest objection step known on the day (by its day, then commit order; in
    one batch a closing of the same day comes last) is an opening, as the feature builder
    decides."""
    steps = [e for e in events if e["event_type"] in ("objection_opened", "objection_closed")
             and e["effective_date"] <= day and e["recorded_date"] <= day]  # fmt: skip
    if not steps:
        return False
    last = max(steps, key=lambda e: (e["effective_date"], str(e.get("batch_id") or ""),
                                     e["event_type"] == "objection_closed",
                                     str(e.get("event_id") or "")))  # fmt: skip
    return bool(last["event_type"] == "objection_opened")


def records_on(
    store: Store,
    uscc: str,
    day: date,
    catalogue: Catalogue | None = None,
    now: date | None = None,
    entity: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every record of a company known on `day`, newest first, in the form it has that day,
    with `public`, `counts`, `public_until`, `corrected`, `supplemented` and `objection_open`
    by the rule (`corrected`: a correction in force, other than an objection's supplement).

    `now`: the day the view is made, for a view of the past made for the public. A record that
    is no longer public on `now` (repaired, expired, withdrawn, no longer published) is then not
    public on `day` either: after repair or expiry a record stops being published (DOMAIN §9),
    also in views of the days it was.

    `entity`: the company's registration facts on `day` (`serving.lookup.registered_entity`),
    when the caller has read them already; its entity type decides what is published."""
    cat = catalogue or default_catalogue()
    known = max(day, now) if now is not None else day
    with store.connect() as con:
        records = con.sql(
            "SELECT record_id, uscc, category, event_date, recorded_date, source_recorded_date, "
            f"source_dept, severity, amount, attributes FROM {store.scan('records', uscc)} "
            "WHERE uscc = ? "
            "AND recorded_date <= ? AND event_date <= ? ORDER BY event_date DESC, record_id",
            params=[uscc, day, day],
        ).to_arrow_table().to_pylist()  # fmt: skip
        # the events of these records only (a later record's events are never looked at)
        ids = [r["record_id"] for r in records]
        events = con.sql(
            "SELECT event_id, record_id, event_type, effective_date, recorded_date, attributes, "
            "batch_id FROM events WHERE recorded_date <= ? AND record_id IN (SELECT unnest(?))",
            params=[known, ids],
        ).to_arrow_table().to_pylist() if ids else []  # fmt: skip
        if entity is None:
            kind = con.execute(
                f"SELECT arg_max(entity_type, {VERSION_ORDER}) "
                f"FROM {store.scan('entities', uscc)} WHERE uscc = ? AND recorded_date <= ?",
                [uscc, day],
            ).fetchone()  # fmt: skip
            entity_type = kind[0] if kind else None
        else:
            entity_type = entity["entity_type"]
    by_record: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_record.setdefault(e["record_id"], []).append(e)
    out = []
    for r in records:
        later = by_record.get(r["record_id"], [])
        evs = [e for e in later if e["recorded_date"] <= day]
        form = corrected(r, evs, day)
        form["original"] = r
        form["entity_type"] = entity_type
        fixes = [str(e["event_id"]) for e in evs
                 if e["event_type"] == "correction" and _in_force(e) <= day]  # fmt: skip
        added = supplements(evs)
        form["corrected"] = any(f not in added for f in fixes)  # shown in a corrected form
        form["supplemented"] = any(f in added for f in fixes)  # information added (DOMAIN §10)
        form["public"] = public_on(r, evs, day, entity_type, cat) and (
            now is None or now <= day or public_on(r, later, now, entity_type, cat)
        )
        form["counts"] = counts_on(r, evs, day, cat)
        form["public_until"] = public_until(r, evs, day, entity_type, cat)
        form["objection_open"] = objection_open(evs, day)
        out.append(form)
    return out


def stored_with_events(
    store: Store, record_ids: list[str], today: date
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Records by id as first stored, and their events, as known on `today` (records recorded
    later are left out): what the rule's functions here take, for many records at once."""
    if not record_ids:
        return {}, {}
    with store.connect() as con:
        con.register("wanted", pa.table({"record_id": pa.array(record_ids, pa.string())}))
        rows = con.sql(
            "SELECT record_id, uscc, category, event_date, recorded_date, source_dept, severity, "
            "amount, attributes FROM records WHERE recorded_date <= ? "
            "AND record_id IN (SELECT record_id FROM wanted) ORDER BY batch_id",
            params=[today],
        ).to_arrow_table().to_pylist()  # fmt: skip
        events = con.sql(
            "SELECT event_id, record_id, event_type, effective_date, recorded_date, attributes, "
            "batch_id FROM events WHERE recorded_date <= ? "
            "AND record_id IN (SELECT record_id FROM wanted)",
            params=[today],
        ).to_arrow_table().to_pylist()  # fmt: skip
    records: dict[str, dict[str, Any]] = {}
    for r in rows:
        records.setdefault(r["record_id"], r)
    by_record: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_record.setdefault(e["record_id"], []).append(e)
    return records, by_record


# ---- SQL --------------------------------------------------------------------------------------


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _end(span: Span | None) -> str:
    """SQL for the day a record stops counting by `span` (NULL: open-ended or never published)."""
    return "NULL" if span is None or span.zero else span.sql("event_date")


def _category_end_sql(c: Category) -> str:
    """SQL for `period(...).counts_until(event_date)` of a record of category `c`."""
    by_severity = " ".join(
        f"WHEN {_lit(s)} THEN {_end(p.max)}" for s, p in c.publicity.items() if s != "*"
    )
    default = _end(c.publicity["*"].max) if "*" in c.publicity else "NULL"
    plain = f"CASE severity {by_severity} ELSE {default} END" if by_severity else default
    if not (c.type_severity or c.special_domains):
        return plain
    end = plain
    if c.type_severity:
        # the decision's severity rank, raised by the heaviest shown type it names
        ranks = " ".join(f"WHEN {_lit(s)} THEN {i}" for i, s in enumerate(c.severities))
        types = "json_extract_string(attributes, '$.penalty_types')"
        raised = []
        for level in sorted({c.severities.index(s) for s in c.type_severity.values()}):
            names = [t for t, s in c.type_severity.items() if c.severities.index(s) == level]
            # a cheap text test first: the JSON is parsed only for records naming such a type
            named = " OR ".join(f"contains(attributes, {_lit(json.dumps(t))})" for t in names)
            found = " OR ".join(f"{types} LIKE {_lit('%' + json.dumps(t) + '%')}" for t in names)
            raised.append(f"CASE WHEN ({named}) AND json_type(attributes, '$.penalty_types') = "
                          f"'ARRAY' AND ({found}) THEN {level} ELSE -1 END")  # fmt: skip
        rank = f"greatest(CASE severity {ranks} ELSE -1 END, {', '.join(raised)})"
        choices = " ".join(
            f"WHEN {i} THEN {_end(c.publicity_for(s).max)}" for i, s in enumerate(c.severities)
        )
        end = f"CASE {rank} {choices} ELSE {default} END"
    if c.special_domains:
        special = ", ".join(_lit(d) for d in c.special_domains)
        floor = _end(c.special_domain_period)
        named = " OR ".join(f"contains(attributes, {_lit(json.dumps(d))})"
                            for d in c.special_domains)  # fmt: skip
        end = (
            f"CASE WHEN ({named}) AND json_extract_string(attributes, '$.domain') IN ({special}) "
            f"AND ({end}) IS NOT NULL THEN greatest({end}, {floor}) ELSE {end} END"
        )
    return end


def counting_end_sql(catalogue: Catalogue | None = None) -> str:
    """SQL giving the day each record stops counting by its period, `period(...).counts_until`
    (NULL: open-ended, or never published and so counted by the features' windows alone), over
    the columns category, severity, attributes and event_date."""
    cat = catalogue or default_catalogue()
    cases = " ".join(f"WHEN {_lit(c.code)} THEN {_category_end_sql(c)}" for c in cat.categories)
    return f"CASE category {cases} END"


__all__ = [
    "CORRECTABLE", "STOPS_COUNTING", "STOPS_PUBLICITY", "SUPPLEMENTED", "Period", "amended",
    "corrected", "counting_end_sql", "counts_on", "merge_patch", "period", "public_on",
    "public_until", "records_on", "stopped_on", "stored_with_events", "supplements",
]  # fmt: skip
