"""Record events: later facts that change how a record counts, stored append-only.

A withdrawal, correction, repair, or an objection opened or closed never rewrites the record it
concerns: it is a row of its own, with the day it takes effect and the day the platform learned
it, pointing at the record by `record_id`. What counted on any past date can therefore be
recomputed from records + events recorded by that date; `records.publicity` says how each kind
acts. Credit repair and objections create them; a department sends its own withdrawals and
corrections as a file (`read_event_file`, then `append_department_events`: `credsup events`).
This module stores and checks them.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from numbers import Real
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from records.catalogue import Catalogue, default_catalogue
from records.clock import CHINA
from records.ingest import (
    REASONS,
    IngestError,
    _decode_problem,
    new_quarantine_rows,
    read_input,
)
from records.publicity import CORRECTABLE
from records.schema import EVENT_TYPES, EVENTS
from records.store import Store
from records.workdays import china_today


class EventError(ValueError):
    """An event that cannot be stored, with the reason; `code` is the machine reason a
    department's rejected row is quarantined with (`EVENT_REASONS`)."""

    def __init__(self, message: str, code: str = "invalid_event") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class EventResult:
    batch_id: str
    stored: int = 0
    already_stored: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """{"index", "event", "reason" (the message), "code"} of each refused event."""


DEPARTMENT_EVENT_TYPES = ("withdrawal", "correction")
"""What a department may send about its own records; repairs, objections and unpublishing come
from the service's own workflows."""

EVENT_REASONS = {
    "malformed_row": REASONS["malformed_row"],
    "formula_without_value": REASONS["formula_without_value"],
    "missing_field": "record_id, event_type or effective_date is empty",
    "unknown_record": "record_id is not a stored record",
    "other_department": "the record was reported by another department",
    "event_type_not_allowed": "a department sends only withdrawals and corrections",
    "invalid_date": REASONS["invalid_date"],
    "future_date": "a date after today",
    "past_recorded_date": "recorded_date before today without --history",
    "empty_correction": "a correction that restates neither severity, amount nor attributes",
    "invalid_withdrawal": "a withdrawal with restated values (send a correction for those)",
    "severity_not_allowed": REASONS["severity_not_allowed"],
    "missing_severity": REASONS["missing_severity"],
    "invalid_amount": REASONS["invalid_amount"],
    "negative_amount": REASONS["negative_amount"],
    "amount_not_applicable": REASONS["amount_not_applicable"],
    "invalid_attributes": "attributes (or a JSON line's correction) are not a JSON object",
    "invalid_correction": "a correction the record's category does not allow",
    "event_id_conflict": "event_id already stored (or earlier in the file) for another event",
}
"""Quarantine reasons of a department's event file (stable machine codes) and what each means;
the codes shared with ingestion mean the same there."""


def append_events(
    store: Store,
    events: list[dict[str, Any]],
    today: date | None = None,
    catalogue: Catalogue | None = None,
    *,
    source_dept: str | None = None,
    history: bool = True,
) -> EventResult:
    """Validate and append events in one atomic batch; rejected ones are returned with reasons.

    Each event: `record_id`, `event_type` (one of EVENT_TYPES), `effective_date`, optional
    `event_id` (default: a new UUID), `recorded_date` (default: today), `attributes` (dict).
    A correction is checked against the record's category in the catalogue, as ingestion checks
    the record itself. Events whose `event_id` is already stored are skipped (idempotent).

    `source_dept`: the events are that department's own (`append_department_events`), checked as
    such under the store's lock: see `_department_rows`. `history` (with `source_dept`): a
    `recorded_date` before `today` is taken (a back-fill), else refused.
    """
    today = today or china_today()
    catalogue = catalogue or default_catalogue()
    # the records and event ids are read under the store's lock, as ingestion does: read
    # before it, two writers appending the same event id at once would both store it
    with (
        store.begin("events", source_file="<api>", source_dept=source_dept or "events") as batch,
        store.connect() as con,
    ):
        rows, rejected, already = _checked(
            con, batch.batch_id, events, today, catalogue, source_dept, history
        )
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


def _checked(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    events: list[dict[str, Any]],
    today: date,
    catalogue: Catalogue,
    source_dept: str | None,
    history: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The events to store, the refused ones and how many were stored already; `con` must be
    read under the store's lock (inside the batch)."""
    ids = [e.get("record_id") for e in events]
    con.register("wanted", pa.table({"record_id": pa.array(ids, pa.string())}))
    found = con.execute(
        "SELECT record_id, any_value(category), list(DISTINCT source_dept) FROM records "
        "WHERE record_id IN (SELECT record_id FROM wanted) GROUP BY record_id"
    ).fetchall()
    known: dict[str, str] = {r: category for r, category, _ in found}
    if source_dept is not None:
        owners = {r: sorted(d for d in depts if d is not None) for r, _, depts in found}
        return _department_rows(
            con, batch_id, events, known, owners, today, catalogue, source_dept, history
        )
    stored_ids = {r for (r,) in con.execute("SELECT event_id FROM events").fetchall()}
    rows, rejected, already = [], [], 0
    for i, e in enumerate(events):
        try:
            row = _validated(e, known, today, catalogue)
        except EventError as exc:
            rejected.append(_refused(i, e, exc))
            continue
        if row["event_id"] in stored_ids:
            already += 1
            continue
        stored_ids.add(row["event_id"])
        rows.append(row)
    return rows, rejected, already


def _department_rows(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    events: list[dict[str, Any]],
    known: dict[str, str],
    owners: dict[str, list[str]],
    today: date,
    catalogue: Catalogue,
    source_dept: str,
    history: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """A department's events, checked beyond what every event is:
    - only `DEPARTMENT_EVENT_TYPES`, and only about records that department reported;
    - a `recorded_date` before today only for a back-fill (`history`);
    - its event ids are its own: stored as `<department>:<event_id>`, so that another
      department's ids and the service's (`objection-…`, `repair-…`) never collide with them.
      An id stored before is `already_stored` when that event already says what this one does,
      else refused (`event_id_conflict`), never silently skipped;
    - a correction restates only what it names: it is stored composed over the corrections of
      the record in force by its day (severity and amount replaced, attributes composed as JSON
      merge patches, as objection decisions compose theirs), because the latest correction in
      force is the record's whole corrected form (`records.publicity.corrected`). Without this
      a department restating an amount would undo an earlier corrected severity.
    """
    rejected: list[dict[str, Any]] = []
    checked: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for i, e in enumerate(events):
        try:
            row = _validated(
                e, known, today, catalogue, event_types=DEPARTMENT_EVENT_TYPES,
                owners=owners, source_dept=source_dept, history=history,
            )  # fmt: skip
        except EventError as exc:
            rejected.append(_refused(i, e, exc))
            continue
        checked.append((i, e, row))
    con.register(
        "wanted_events",
        pa.table({"event_id": pa.array([row["event_id"] for *_, row in checked], pa.string())}),
    )
    prior: dict[str, dict[str, Any]] = {
        eid: {"record_id": r, "event_type": t, "effective_date": d, "fix": _loads(a), "batch": b}
        for eid, r, t, d, a, b in con.execute(
            "SELECT event_id, record_id, event_type, effective_date, attributes, batch_id "
            "FROM events WHERE event_id IN (SELECT event_id FROM wanted_events) ORDER BY batch_id"
        ).fetchall()
    }
    fresh: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    already = 0
    for i, e, row in checked:
        before = prior.get(row["event_id"])
        fix = _loads(row["attributes"])
        if before is None:
            prior[row["event_id"]] = {**row, "fix": fix, "batch": batch_id}
            fresh.append((i, e, row))
        elif _says_the_same(before, row, fix):
            already += 1
        else:
            what = f"{before['event_type']} of record {before['record_id']} from " + str(
                before["effective_date"]
            )
            where = "earlier in the file" if before["batch"] == batch_id else (
                f"stored in batch {before['batch']}"
            )  # fmt: skip
            rejected.append(_refused(i, e, EventError(
                f"event_id {e.get('event_id')!r} is already {where} for another event ({what}): "
                "give each event its own id; a re-sent event must say the same",
                "event_id_conflict",
            )))  # fmt: skip
    earlier: dict[str, list[dict[str, Any]]] = {}
    for r, eid, effective, recorded, batch, attributes in con.execute(
        "SELECT record_id, event_id, effective_date, recorded_date, batch_id, attributes "
        "FROM events WHERE event_type = 'correction' "
        "AND record_id IN (SELECT record_id FROM wanted)"
    ).fetchall():
        earlier.setdefault(r, []).append(
            {"event_id": eid, "effective_date": effective, "recorded_date": recorded,
             "batch_id": batch, "fix": _loads(attributes)}
        )  # fmt: skip
    # in the order `records.publicity` applies corrections, so each composes the ones before it
    corrections = sorted(
        (t for t in fresh if t[2]["event_type"] == "correction"),
        key=lambda t: _order({**t[2], "batch_id": batch_id}),
    )
    dropped: set[int] = set()
    for i, e, row in corrections:
        day = _order(row)[0]
        layers = sorted(
            (c for c in earlier.get(row["record_id"], []) if _order(c)[0] <= day), key=_order
        )
        composed: dict[str, Any] = {}
        for layer in [*(c["fix"] for c in layers), _loads(row["attributes"])]:
            composed = composed_correction(composed, layer)
        try:
            check_correction(composed, known[row["record_id"]], catalogue)
        except EventError as exc:
            rejected.append(_refused(i, e, exc))
            dropped.add(i)
            continue
        row["attributes"] = json.dumps(composed, ensure_ascii=False, sort_keys=True)
        earlier.setdefault(row["record_id"], []).append(
            {**row, "batch_id": batch_id, "fix": composed}
        )
    rejected.sort(key=lambda r: int(r["index"]))
    return [row for i, _, row in fresh if i not in dropped], rejected, already


def _says_the_same(before: dict[str, Any], row: dict[str, Any], fix: dict[str, Any]) -> bool:
    """Whether the event stored (or taken earlier in the file) under this id already says what
    `row` says: a stored correction is composed, so it need only contain this restatement."""
    if (before["record_id"], before["event_type"], before["effective_date"]) != (
        row["record_id"], row["event_type"], row["effective_date"]
    ):  # fmt: skip
        return False
    if row["event_type"] == "correction":
        return bool(composed_correction(before["fix"], fix) == before["fix"])
    return bool(before["fix"] == fix)


def _order(event: dict[str, Any]) -> tuple[date, str, str]:
    """`records.publicity`'s order of events: the day in force, then commit order, then id."""
    in_force = max(event["effective_date"], event["recorded_date"])
    return (in_force, str(event.get("batch_id") or ""), str(event.get("event_id") or ""))


def composed_correction(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Two corrections as one: `then`'s severity and amount replace `first`'s, attributes
    compose as JSON merge patches (RFC 7396, recursively; a null is kept: it still removes the
    key where the patch applies). Department files and objection decisions
    (`serving.objections.merged_correction`) both compose with it."""
    out = dict(first)
    for key, value in then.items():
        if key == "attributes" and isinstance(value, dict):
            out[key] = _composed_patch(out.get(key), value)
        else:
            out[key] = value
    return out


def _composed_patch(first: Any, then: Any) -> Any:
    if not isinstance(first, dict) or not isinstance(then, dict):
        return then
    out = dict(first)
    for key, value in then.items():
        out[key] = _composed_patch(out.get(key), value) if isinstance(value, dict) else value
    return out


def _loads(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def _refused(index: int, event: dict[str, Any], exc: EventError) -> dict[str, Any]:
    return {"index": index, "event": event, "reason": str(exc), "code": exc.code}


def _validated(
    e: dict[str, Any],
    known: dict[str, str],
    today: date,
    catalogue: Catalogue,
    *,
    event_types: Sequence[str] = EVENT_TYPES,
    owners: dict[str, list[str]] | None = None,
    source_dept: str | None = None,
    history: bool = True,
) -> dict[str, Any]:
    record_id = e.get("record_id")
    if not record_id:
        raise EventError("missing record_id", "missing_field")
    if record_id not in known:
        raise EventError(f"record_id {record_id!r} is not a stored record", "unknown_record")
    if source_dept is not None and owners is not None and owners.get(record_id) != [source_dept]:
        others = ", ".join(owners.get(record_id) or ["no department"])
        raise EventError(
            f"record {record_id!r} was reported by {others}, not {source_dept}: a department "
            "corrects or withdraws only its own records",
            "other_department",
        )
    event_type = e.get("event_type")
    if event_type not in event_types:
        if tuple(event_types) == EVENT_TYPES:
            raise EventError(
                f"event_type {event_type!r} is not one of {', '.join(EVENT_TYPES)}",
                "event_type_not_allowed",
            )
        raise EventError(
            f"event_type {event_type!r} is not one a department sends: only "
            f"{' or '.join(event_types)} (repairs, objections and unpublishing come from the "
            "service's own workflows)",
            "event_type_not_allowed",
        )
    effective = _as_date(e.get("effective_date"), "effective_date")
    recorded = _as_date(e.get("recorded_date") or today, "recorded_date")
    if effective > today or recorded > today:
        raise EventError(
            f"dates after today ({today}): effective {effective}, recorded {recorded}",
            "future_date",
        )
    if recorded < today and not history:
        raise EventError(
            f"recorded_date {recorded} is before today ({today}): the event would count as known "
            "on a day it was not; only a back-fill of history (--history) may name a past day",
            "past_recorded_date",
        )
    attributes = e.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise EventError("attributes must be a JSON object", "invalid_attributes")
    if event_type == "correction":
        check_correction(attributes, known[record_id], catalogue)
    event_id = e.get("event_id")
    if event_id and source_dept is not None:
        event_id = f"{source_dept}:{event_id}"
    return {
        "event_id": str(event_id or uuid.uuid4()),
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
            f"a correction may restate {', '.join(CORRECTABLE)}; not {', '.join(unknown)}",
            "invalid_correction",
        )
    if category_code not in catalogue:
        raise EventError(
            f"the record's category {category_code!r} is not in the catalogue", "invalid_correction"
        )
    category = catalogue[category_code]
    listing = set(category.severities) == LISTING_SEVERITIES
    if listing and "severity" in fix:
        # a corrected `removed` would end every earlier listing of the list, a corrected
        # `listed` would list anew: a listing ends by a removal record (naming it in `ref`),
        # a wrong listing or removal is withdrawn
        raise EventError(
            f"a correction may not restate the severity of {category.code} records (listed or "
            "removed): end a listing with a removal record naming it, withdraw a wrong one",
            "invalid_correction",
        )
    if listing and isinstance(fix.get("attributes"), dict) and "ref" in fix["attributes"]:
        # a removal without `ref` ends every earlier listing of the list; one with another
        # `ref` ends another listing: neither is a correction
        raise EventError(
            f"a correction may not restate which listing a {category.code} removal ends (its "
            "`ref`): withdraw the removal and record the right one",
            "invalid_correction",
        )
    if "severity" in fix:
        severity = fix["severity"]
        if severity is None:
            if category.severity_required:
                raise EventError(
                    f"{category.code} requires a severity ({', '.join(category.severities)})",
                    "missing_severity",
                )
        elif not isinstance(severity, str):
            raise EventError(f"corrected severity {severity!r} is not text", "severity_not_allowed")
        elif not category.severities:
            raise EventError(
                f"{category.code} takes no severity, got {severity!r}", "severity_not_allowed"
            )
        elif severity not in category.severities:
            raise EventError(
                f"severity {severity!r} is not one of {category.code}'s: "
                f"{', '.join(category.severities)}",
                "severity_not_allowed",
            )
    if "amount" in fix:
        amount = fix["amount"]
        if amount is None:
            if category.amount == "required":
                raise EventError(f"{category.code} requires an amount", "invalid_amount")
        elif isinstance(amount, bool) or not isinstance(amount, int | float):
            raise EventError(f"corrected amount {amount!r} is not a number", "invalid_amount")
        elif not math.isfinite(amount):
            raise EventError(
                f"corrected amount {amount!r} is not a finite number", "invalid_amount"
            )
        elif category.amount == "none":
            raise EventError(
                f"{category.code} takes no amount, got {amount!r}", "amount_not_applicable"
            )
        elif amount < 0 and not category.negative_amount_allowed:
            raise EventError(f"corrected amount {amount!r} is negative", "negative_amount")
    if fix.get("attributes") is not None and not isinstance(fix["attributes"], dict):
        raise EventError("corrected attributes must be a JSON object", "invalid_attributes")


def _as_date(value: Any, name: str) -> date:
    if isinstance(value, date):
        return value
    if not value:
        raise EventError(f"missing {name}", "missing_field")
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise EventError(f"{name} {value!r} is not a date (YYYY-MM-DD)", "invalid_date") from None


# ---- a department's event file --------------------------------------------------------------

EVENT_FILE_REQUIRED = ("record_id", "event_type", "effective_date")
EVENT_FILE_COLUMNS = (
    "event_id", "record_id", "event_type", "effective_date", "recorded_date",
    "severity", "amount", "attributes",
)  # fmt: skip
"""The columns of a department's event file (a JSON line may give `correction` instead of
`severity`, `amount` and `attributes`); other columns are ignored and reported."""


@dataclass
class EventRow:
    """One row of a department's event file: the event it makes, or why it makes none."""

    row: int | None
    """Its data row (CSV: 1 = the first after the header; JSON lines: the line number)."""
    raw: str
    """The row's values as JSON text, as quarantined."""
    event: dict[str, Any] | None = None
    reason: str | None = None
    message: str | None = None


@dataclass
class EventFile:
    path: Path
    rows: list[EventRow]
    ignored_columns: list[str] = field(default_factory=list)


@dataclass
class EventFileResult:
    batch_id: str
    source_file: str
    source_dept: str
    today: str
    history: bool = False
    rows_read: int = 0
    stored: int = 0
    already_stored: int = 0
    quarantined: int = 0
    """Rows refused, = rows_read - stored - already_stored (those quarantined before count too)."""
    already_quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_event_file(path: Path | str, encoding: str = "utf-8") -> EventFile:
    """Read a department's withdrawals and corrections: CSV/TSV, Excel or Parquet (read as
    ingestion reads them, `records.ingest.read_input`) or JSON lines (`.jsonl`), one event a row.

    A row whose values cannot make an event (a bad date, amount or attributes, a correction
    restating nothing) is kept with its reason, to be quarantined; a file the columns
    `EVENT_FILE_REQUIRED` are missing from, or that cannot be read, raises `IngestError`.
    An empty cell, or a null in a JSON line, is "not given": for `severity`, `amount` and
    `attributes` of a correction, not restated. A JSON line's `correction` object is taken as it
    is (a null there restates the value as none).
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise IngestError(f"unknown encoding {encoding!r} (e.g. utf-8, gbk, gb18030)") from None
    if path.suffix.lower() == ".jsonl":
        rows, extra = _json_lines(path, encoding)
        return EventFile(path, rows, extra)
    table, unread = read_input(path, encoding)
    columns = [c for c in table.column_names if c != "_row"]
    missing = [c for c in EVENT_FILE_REQUIRED if c not in columns]
    if missing:
        raise IngestError(
            f"{path.name}: missing column(s) {', '.join(missing)}; an event file has the columns "
            f"{', '.join(EVENT_FILE_COLUMNS)} ({', '.join(EVENT_FILE_REQUIRED)} required)"
        )
    rows = [EventRow(u.row, u.raw, reason=u.reason, message=u.message) for u in unread]
    for cells in table.to_pylist():
        raw = json.dumps({c: cells[c] for c in columns}, ensure_ascii=False,
                         separators=(",", ":"), default=str)  # fmt: skip
        rows.append(_event_row(cells["_row"], raw, cells, correction=None))
    rows.sort(key=lambda r: r.row if r.row is not None else 0)
    ignored = [c for c in columns if c not in EVENT_FILE_COLUMNS]
    return EventFile(path, rows, ignored)


def _json_lines(path: Path, encoding: str) -> tuple[list[EventRow], list[str]]:
    rows: list[EventRow] = []
    extra: dict[str, None] = {}
    try:
        for number, line in _lines(path, encoding):
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                obj, problem = None, f"not JSON ({exc})"
            else:
                problem = "" if isinstance(obj, dict) else "not a JSON object"
            if obj is None or not isinstance(obj, dict):
                rows.append(EventRow(
                    number, json.dumps({"line": line.rstrip("\r\n")}, ensure_ascii=False),
                    reason="malformed_row", message=f"line {number}: {problem}",
                ))  # fmt: skip
                continue
            extra.update(
                dict.fromkeys(k for k in obj if k not in (*EVENT_FILE_COLUMNS, "correction"))
            )
            raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            rows.append(_event_row(number, raw, obj, correction=obj.get("correction")))
    except UnicodeDecodeError as exc:
        raise IngestError(_decode_problem(path, encoding, str(exc))) from None
    except OSError as exc:
        raise IngestError(f"{path.name}: cannot read file: {exc}") from None
    return rows, list(extra)


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    # utf-8-sig: a byte order mark (Windows editors write one) is not part of the first line
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    with open(path, encoding=codec, newline="") as fh:
        yield from enumerate(fh, start=1)


def _event_row(number: int | None, raw: str, cells: dict[str, Any], correction: Any) -> EventRow:
    try:
        event = _event_of(cells, correction)
    except EventError as exc:
        return EventRow(number, raw, reason=exc.code, message=str(exc))
    return EventRow(number, raw, event)


def _event_of(cells: dict[str, Any], correction: Any) -> dict[str, Any]:
    """The event a row states; a problem with the row's own values raises `EventError`."""
    text = {c: _text(cells.get(c)) for c in ("event_id", "record_id", "event_type")}
    empty = [c for c in EVENT_FILE_REQUIRED if _blank(cells.get(c))]
    if empty:
        raise EventError(f"missing {', '.join(empty)}", "missing_field")
    event: dict[str, Any] = {
        **text,
        "effective_date": _day(cells.get("effective_date"), "effective_date"),
        "recorded_date": None if _blank(cells.get("recorded_date"))
        else _day(cells.get("recorded_date"), "recorded_date"),
    }  # fmt: skip
    restated: dict[str, Any] = {}
    if not _blank(cells.get("severity")):
        restated["severity"] = _text(cells.get("severity"))
    if not _blank(cells.get("amount")):
        restated["amount"] = _amount(cells.get("amount"))
    if not _blank(cells.get("attributes")):
        restated["attributes"] = _object(cells.get("attributes"), "attributes")
    if correction is not None:
        if restated:
            raise EventError(
                "give what a correction restates either in `correction` or as severity, amount "
                "and attributes, not both",
                "invalid_correction",
            )
        restated = _object(correction, "correction")
    if event["event_type"] == "correction":
        if not restated:
            raise EventError(
                "a correction must restate severity, amount or attributes (empty: not restated)",
                "empty_correction",
            )
        event["attributes"] = restated
    elif event["event_type"] == "withdrawal" and restated:
        raise EventError(
            f"a withdrawal restates nothing, yet the row gives {', '.join(restated)}: leave them "
            "empty, or send a correction",
            "invalid_withdrawal",
        )
    return event


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str | None:
    """A cell as text, trimmed of whitespace (Unicode spaces too, as ingestion trims)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    out = str(value).strip()
    return out or None


_DATE = re.compile(
    r"(?P<y>\d{4})(?:(?P<sep>[-/])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})"
    r"|年(?P<m2>\d{1,2})月(?P<d2>\d{1,2})日|(?P<m3>\d{2})(?P<d3>\d{2}))"
    r"(?:(?:T|\s+)(?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
EARLIEST_DAY = date(1900, 1, 1)


def _day(value: Any, name: str) -> date:
    """A date as ingestion reads one: 2024-01-05, 2024/1/5, 20240105, 2024年1月5日, with or
    without a time; a time with a UTC offset (or a time-zone-aware Parquet time stamp) is dated
    in China Standard Time."""
    if isinstance(value, datetime):
        day = value.astimezone(CHINA).date() if value.tzinfo else value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = _text(value) or ""
        m = _DATE.fullmatch(text)
        try:
            if m is None:
                raise ValueError(text)
            y, mo, d = (
                int(m["y"]),
                int(m["m"] or m["m2"] or m["m3"]),
                int(m["d"] or m["d2"] or m["d3"]),
            )
            if m["tz"]:
                stamp = datetime.fromisoformat(
                    f"{y:04d}-{mo:02d}-{d:02d}T{m['time']:0>5}{_offset(m['tz'])}"
                )
                day = stamp.astimezone(CHINA).date()
            else:
                day = date(y, mo, d)
        except ValueError:
            raise EventError(
                f"{name} {text!r} is not a date (e.g. 2024-01-05, 2024/1/5, 20240105, "
                "2024年1月5日)",
                "invalid_date",
            ) from None
    if day < EARLIEST_DAY:
        raise EventError(f"{name} {day} is implausible (before {EARLIEST_DAY})", "invalid_date")
    return day


def _offset(tz: str) -> str:
    if tz == "Z":
        return "+00:00"
    return tz if ":" in tz or len(tz) == 3 else f"{tz[:3]}:{tz[3:]}"


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def _amount(value: Any) -> float:
    """A restated amount as ingestion reads one: `1234.5`, `1,234.5`, `1.2e6`; finite."""
    if isinstance(value, bool):
        raise EventError(f"amount {value!r} is not a number", "invalid_amount")
    if isinstance(value, Real):
        number = float(value)
    else:
        text = _text(value) or ""
        if _THOUSANDS.fullmatch(text):
            text = text.replace(",", "")
        if not _NUMBER.fullmatch(text):
            raise EventError(f"amount {value!r} is not a number", "invalid_amount")
        number = float(text)
    if not math.isfinite(number):
        raise EventError(f"amount {value!r} is not a finite number", "invalid_amount")
    return number


def _object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object given as one (a JSON line) or as its text (a cell)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, dict):
        raise EventError(
            f'{name} must be a JSON object, e.g. {{"penalty_types": ["fine"]}}; got {value!r}',
            "invalid_attributes",
        )
    return value


def append_department_events(
    store: Store,
    file: EventFile,
    source_dept: str,
    today: date | None = None,
    history: bool = False,
    catalogue: Catalogue | None = None,
) -> EventFileResult:
    """Store a department's event file in one atomic batch: its events (`append_events` with
    `source_dept`, checked under the store's lock) and its refused rows in the quarantine, with
    their reason, row and values, as ingestion quarantines rows (once per file name, department,
    reason, row and values: a re-sent file quarantines nothing twice)."""
    today = today or china_today()
    catalogue = catalogue or default_catalogue()
    source_file = str(file.path)
    given = [r for r in file.rows if r.event is not None]
    with (
        store.begin("events", source_file=source_file, source_dept=source_dept,
                    history=history) as batch,
        store.connect() as con,
    ):  # fmt: skip
        rows, refused, already = _checked(
            con, batch.batch_id, [r.event for r in given if r.event is not None], today,
            catalogue, source_dept, history,
        )  # fmt: skip
        rejected = [r for r in file.rows if r.event is None]
        for f in refused:
            row = given[f["index"]]
            rejected.append(EventRow(row.row, row.raw, reason=f["code"], message=f["reason"]))
        rejected.sort(key=lambda r: r.row if r.row is not None else 0)
        result = EventFileResult(
            batch.batch_id, source_file, source_dept, today.isoformat(), history,
            rows_read=len(file.rows), stored=len(rows), already_stored=already,
            quarantined=len(rejected), ignored_columns=file.ignored_columns,
        )  # fmt: skip
        for r in rejected:
            assert r.reason is not None
            result.by_reason[r.reason] = result.by_reason.get(r.reason, 0) + 1
        result.by_reason = dict(sorted(result.by_reason.items()))
        quarantine = new_quarantine_rows(
            con, batch.batch_id, "events", source_file, source_dept,
            [{"row": r.row, "reason": r.reason, "message": r.message, "raw": r.raw}
             for r in rejected],
        )  # fmt: skip
        result.already_quarantined = len(rejected) - quarantine.num_rows
        for row in rows:
            row["batch_id"] = batch.batch_id
        batch.write_arrow("events", pa.Table.from_pylist(rows, schema=EVENTS))
        batch.write_arrow("quarantine", quarantine)
        batch.info.update(
            stored=result.stored, already_stored=already, quarantined=result.quarantined,
            already_quarantined=result.already_quarantined,
        )  # fmt: skip
    return result
