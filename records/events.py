"""Record events: later facts that change how a record counts, stored append-only.

A withdrawal, correction, repair, or an objection opened or closed never rewrites the record it
concerns: it is a row of its own, with the day it takes effect and the day the platform learned
it, pointing at the record by `record_id`. What counted on any past date can therefore be
recomputed from records + events recorded by that date; `records.publicity` says how each kind
acts. Credit repair and objections create them; this module stores and checks them.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from records.catalogue import Catalogue, default_catalogue
from records.publicity import CORRECTABLE
from records.schema import EVENT_TYPES, EVENTS
from records.store import Store
from records.workdays import china_today


class EventError(ValueError):
    """An event that cannot be stored, with the reason."""


@dataclass
class EventResult:
    batch_id: str
    stored: int = 0
    already_stored: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def append_events(
    store: Store,
    events: list[dict[str, Any]],
    today: date | None = None,
    catalogue: Catalogue | None = None,
) -> EventResult:
    """Validate and append events in one atomic batch; rejected ones are returned with reasons.

    Each event: `record_id`, `event_type` (one of EVENT_TYPES), `effective_date`, optional
    `event_id` (default: a new UUID), `recorded_date` (default: today), `attributes` (dict).
    A correction is checked against the record's category in the catalogue, as ingestion checks
    the record itself. Events whose `event_id` is already stored are skipped (idempotent).
    """
    today = today or china_today()
    catalogue = catalogue or default_catalogue()
    ids = [e.get("record_id") for e in events]
    # the records and event ids are read under the store's lock, as ingestion does: read
    # before it, two writers appending the same event id at once would both store it
    with (
        store.begin("events", source_file="<api>", source_dept="events") as batch,
        store.connect() as con,
    ):
        con.register("wanted", pa.table({"record_id": pa.array(ids, pa.string())}))
        known: dict[str, str] = dict(
            con.execute(
                "SELECT record_id, any_value(category) FROM records "
                "WHERE record_id IN (SELECT record_id FROM wanted) GROUP BY record_id"
            ).fetchall()
        )
        stored_ids = {r for (r,) in con.execute("SELECT event_id FROM events").fetchall()}
        rows, rejected, already = [], [], 0
        for i, e in enumerate(events):
            try:
                row = _validated(e, known, today, catalogue)
            except EventError as exc:
                rejected.append({"index": i, "event": e, "reason": str(exc)})
                continue
            if row["event_id"] in stored_ids:
                already += 1
                continue
            stored_ids.add(row["event_id"])
            rows.append(row)
        result = EventResult(batch.batch_id, len(rows), already, rejected)
        for row in rows:
            row["batch_id"] = batch.batch_id
        batch.write_arrow("events", pa.Table.from_pylist(rows, schema=EVENTS))
        batch.info.update(stored=len(rows), rejected=len(rejected))
    return result


def withdraw_left(
    store: Store, record_ids: Sequence[str], kind: str, reason: str, today: date
) -> list[Any]:
    """Withdraw records that a step whose database commit failed left in the store (they must
    neither count nor be published). Idempotent: one event id per record
    (`<kind>-uncommitted-<record id>`). Returns the refused events' reasons (a record that never
    reached the store is refused, harmlessly)."""
    if not record_ids:
        return []
    events = [
        {"event_id": f"{kind}-uncommitted-{r}", "record_id": r, "event_type": "withdrawal",
         "effective_date": today, "recorded_date": today, "attributes": {"reason": reason}}
        for r in record_ids
    ]  # fmt: skip
    return [e["reason"] for e in append_events(store, events, today=today).rejected]


def _validated(
    e: dict[str, Any], known: dict[str, str], today: date, catalogue: Catalogue
) -> dict[str, Any]:
    record_id = e.get("record_id")
    if not record_id:
        raise EventError("missing record_id")
    if record_id not in known:
        raise EventError(f"record_id {record_id!r} is not a stored record")
    event_type = e.get("event_type")
    if event_type not in EVENT_TYPES:
        raise EventError(f"event_type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    try:
        effective = _as_date(e.get("effective_date"), "effective_date")
        recorded = _as_date(e.get("recorded_date") or today, "recorded_date")
    except ValueError as exc:
        raise EventError(str(exc)) from None
    if effective > today or recorded > today:
        raise EventError(f"dates after today ({today}): effective {effective}, recorded {recorded}")
    attributes = e.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise EventError("attributes must be a JSON object")
    if event_type == "correction":
        check_correction(attributes, known[record_id], catalogue)
    return {
        "event_id": str(e.get("event_id") or uuid.uuid4()),
        "record_id": record_id,
        "event_type": event_type,
        "effective_date": effective,
        "recorded_date": recorded,
        "attributes": json.dumps(attributes, ensure_ascii=False, sort_keys=True),
    }


LISTING_SEVERITIES = {"listed", "removed"}
"""The severities of a list's records (abnormal operation, serious dishonest, red lists …)."""


def check_correction(fix: dict[str, Any], category_code: str, catalogue: Catalogue) -> None:
    """A correction restates the record's severity, amount or attributes (records.publicity),
    within what the record's category allows: the rules ingestion applies to the record."""
    unknown = sorted(set(fix) - set(CORRECTABLE))
    if unknown:
        raise EventError(
            f"a correction may restate {', '.join(CORRECTABLE)}; not {', '.join(unknown)}"
        )
    if category_code not in catalogue:
        raise EventError(f"the record's category {category_code!r} is not in the catalogue")
    category = catalogue[category_code]
    listing = set(category.severities) == LISTING_SEVERITIES
    if listing and "severity" in fix:
        # a corrected `removed` would end every earlier listing of the list, a corrected
        # `listed` would list anew: a listing ends by a removal record (naming it in `ref`),
        # a wrong listing or removal is withdrawn
        raise EventError(
            f"a correction may not restate the severity of {category.code} records (listed or "
            "removed): end a listing with a removal record naming it, withdraw a wrong one"
        )
    if listing and isinstance(fix.get("attributes"), dict) and "ref" in fix["attributes"]:
        # a removal without `ref` ends every earlier listing of the list; one with another
        # `ref` ends another listing: neither is a correction
        raise EventError(
            f"a correction may not restate which listing a {category.code} removal ends (its "
            "`ref`): withdraw the removal and record the right one"
        )
    if "severity" in fix:
        severity = fix["severity"]
        if severity is None:
            if category.severity_required:
                raise EventError(
                    f"{category.code} requires a severity ({', '.join(category.severities)})"
                )
        elif not isinstance(severity, str):
            raise EventError(f"corrected severity {severity!r} is not text")
        elif not category.severities:
            raise EventError(f"{category.code} takes no severity, got {severity!r}")
        elif severity not in category.severities:
            raise EventError(
                f"severity {severity!r} is not one of {category.code}'s: "
                f"{', '.join(category.severities)}"
            )
    if "amount" in fix:
        amount = fix["amount"]
        if amount is None:
            if category.amount == "required":
                raise EventError(f"{category.code} requires an amount")
        elif isinstance(amount, bool) or not isinstance(amount, int | float):
            raise EventError(f"corrected amount {amount!r} is not a number")
        elif not math.isfinite(amount):
            raise EventError(f"corrected amount {amount!r} is not a finite number")
        elif category.amount == "none":
            raise EventError(f"{category.code} takes no amount, got {amount!r}")
        elif amount < 0 and not category.negative_amount_allowed:
            raise EventError(f"corrected amount {amount!r} is negative")
    if fix.get("attributes") is not None and not isinstance(fix["attributes"], dict):
        raise EventError("corrected attributes must be a JSON object")


def _as_date(value: Any, name: str) -> date:
    if isinstance(value, date):
        return value
    if not value:
        raise ValueError(f"missing {name}")
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None
