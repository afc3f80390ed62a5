"""Objections to records (异议处理, DOMAIN §10): filing, extension, decision, the trail.

A company objects to one record. The objection is stored and an `objection_opened` event is
appended at once, so every consumer of the record sees the flag from the filing day (the
records route per record, the features' `objection_open` flag per company). The authority
decides within 5 working days, extendable once to 20 (both counted from the filing day on the
Chinese working-day calendar). Outcomes, each closing the objection (`objection_closed`):

- `upheld`: the record stands as it is.
- `corrected`: the record counts in its corrected form (`severity`, `amount`, `attributes`) from
  the decision day; `supplemented`: information is added (`attributes` only). The `correction`
  event carries the full correction relative to the original record, earlier corrections merged
  in, so the latest correction in force is the whole truth about the record. What serves the
  record shows the two apart (`records.publicity.supplements`: the decision's closing event,
  stored with the correction, names its outcome): `corrected` (结果已更正) for a correction,
  `supplemented` (已补充) for information added.
- `stop_publishing`: an `unpublish` event: the record stops being public but counts while its
  period runs.
- `removed_from_list`: for a listing record only: a `withdrawal` event (it stops counting and
  being public) and the list entry, if one is kept, is marked removed.

All events of one decision are appended in one batch (all or none), only after the objection
was claimed (open → decided), so a decision is made once. Objections are never deleted and each
step goes to `lifecycle_log` (append-only by database triggers). Earlier dates never change:
events take effect and are recorded on the decision day.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from records import workdays
from records.catalogue import default_catalogue
from records.events import EventError, append_events, check_correction, composed_correction
from records.publicity import CORRECTABLE
from records.store import Store
from records.workdays import china_today
from serving import lifecycle
from serving.db import credit_repairs, list_entries, objections
from serving.lists import LISTS

DECISION_WORKING_DAYS = 5
EXTENDED_WORKING_DAYS = 20
"""The deadline to decide, in working days after filing: by default, and once extended."""

Outcome = Literal["upheld", "corrected", "supplemented", "stop_publishing", "removed_from_list"]
OUTCOMES: tuple[Outcome, ...] = (
    "upheld", "corrected", "supplemented", "stop_publishing", "removed_from_list",
)  # fmt: skip
LISTING_CATEGORIES = LISTS
"""Categories whose `listed` records put a company on a list (what `removed_from_list` undoes)."""
CORRECTION_KEYS = CORRECTABLE


class ObjectionNotFound(LookupError):
    pass


class ObjectionConflict(Exception):
    """The objection cannot change state this way (one open already, decided, extended); `code`
    is machine-readable."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


class InvalidDecision(ValueError):
    """A decision the record does not allow (a correction that does not fit, a non-listing)."""


def record_on(store: Store, record_id: str, today: date) -> dict[str, Any] | None:
    """The record as stored (its original form), if the platform knew it by `today`."""
    with store.connect() as con:
        rows = con.sql(
            "SELECT record_id, uscc, category, severity, amount, attributes FROM records "
            "WHERE record_id = ? AND recorded_date <= ? ORDER BY batch_id LIMIT 1",
            params=[record_id, today],
        ).to_arrow_table().to_pylist()  # fmt: skip
    return rows[0] if rows else None


def _append(store: Store, events: list[dict[str, Any]], today: date) -> None:
    """Append the events in one batch; a refused event aborts the caller's transaction."""
    stored = append_events(store, events, today=today)
    if stored.rejected:
        raise RuntimeError(f"objection events were refused: {stored.rejected}")


def _event(case_id: int, suffix: str, record_id: str, event_type: str, today: date,
           attributes: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "event_id": f"objection-{case_id}-{suffix}", "record_id": record_id,
        "event_type": event_type, "effective_date": today, "recorded_date": today,
        "attributes": attributes,
    }  # fmt: skip


def file_objection(
    engine: Engine,
    store: Store,
    record_id: str,
    reason: str,
    requested: str | None,
    filed_by: int | None,
    today: date | None = None,
    check: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """File an objection: stored open with its deadline, and the record flagged from today.

    One open objection per record: a second is a conflict until the first is decided; so is one
    while an application to repair the record is pending (`repair_pending`: the two would decide
    the same record two ways; the repair decision checks again for an open objection). A record
    repaired or withdrawn is no longer public and no longer counts: nothing to object to
    (`repaired`, `withdrawn`). Once an objection to the record is decided, the record is not
    objected to again (`already_decided`, naming that decision) unless it changed since: a
    correction recorded after the decision (by its department) is a new state of the record,
    which may be objected to. Otherwise a company could file again after each decision and keep
    the record flagged, and a listing it grounds waiting, for ever.
    `check(uscc)` may refuse the filer by raising (the service: only the company itself or an
    authority objects).
    """
    today = today or china_today()
    record = record_on(store, record_id, today)
    if record is None:
        raise ObjectionNotFound(f"no record {record_id}")
    if check is not None:
        check(record["uscc"])
    events = _record_events(store, record_id, today)
    _refuse_undone(record_id, events)
    due = workdays.add_working_days(today, DECISION_WORKING_DAYS)
    with _closed_unless_committed(engine, store, today) as opened, engine.begin() as con:
        if con.dialect.name == "postgresql":  # two filings at once must not both see none open
            con.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"objection:{record_id}"})  # fmt: skip
        # SQLite: the insert comes first, so it takes the write lock before the check reads
        key = con.execute(
            objections.insert().values(
                uscc=record["uscc"], record_id=record_id, category=record["category"],
                filed_on=today, filed_by=filed_by, reason=reason, requested=requested,
                status="open", due_date=due, extended=False,
            )
        ).inserted_primary_key  # fmt: skip
        assert key is not None
        case_id = int(key[0])
        other = con.execute(
            sa.select(objections.c.id).where(
                objections.c.record_id == record_id, objections.c.status == "open",
                objections.c.id != case_id,
            )
        ).first()  # fmt: skip
        if other is not None:
            raise ObjectionConflict(f"objection {other[0]} to record {record_id} is open already")
        last = con.execute(
            sa.select(objections.c.id, objections.c.status, objections.c.outcome,
                      objections.c.decided_on)
            .where(objections.c.record_id == record_id, objections.c.id != case_id)
            .order_by(objections.c.id.desc())
        ).first()  # fmt: skip
        if (
            last is not None
            and last.status == "decided"
            and not _changed_since(events, int(last.id), last.decided_on)
        ):
            raise ObjectionConflict(
                f"objection {last.id} to record {record_id} was decided on {last.decided_on} "
                f"({last.outcome}) and the record has not changed since: it is not objected to "
                "again (a correction of the record recorded later may be)",
                "already_decided",
            )
        repair = con.execute(
            sa.select(credit_repairs.c.id).where(
                credit_repairs.c.record_id == record_id, credit_repairs.c.status == "pending"
            ).order_by(credit_repairs.c.id)
        ).first()  # fmt: skip
        if repair is not None:
            raise ObjectionConflict(
                f"repair application {repair[0]} for record {record_id} is waiting for a "
                "decision: object once it is decided",
                "repair_pending",
            )
        lifecycle.log(con, "objection", case_id, record["uscc"], "filed", filed_by,
             {"record_id": record_id, "reason": reason, "requested": requested,
              "due_date": due})  # fmt: skip
        # the store last, so a database error before it leaves both stores as they were
        _append_opening(con, store, case_id, record_id, today, opened)
    return get(engine, case_id)


def _record_events(store: Store, record_id: str, today: date) -> list[dict[str, Any]]:
    """The record's events in force by `today` (effective and known), in the order they were
    stored."""
    with store.connect() as con:
        rows: list[dict[str, Any]] = con.sql(
            "SELECT event_id, event_type, effective_date, recorded_date, batch_id, attributes "
            "FROM events WHERE record_id = ? AND greatest(effective_date, recorded_date) <= ? "
            "ORDER BY batch_id, event_id",
            params=[record_id, today],
        ).to_arrow_table().to_pylist()  # fmt: skip
    return rows


def _refuse_undone(record_id: str, events: list[dict[str, Any]]) -> None:
    """A repaired or withdrawn record is no longer public and no longer counts (DOMAIN §9): an
    objection to it is refused, with the step that ended it."""
    for event in events:
        if event["event_type"] not in ("repair", "withdrawal"):
            continue
        day = max(event["effective_date"], event["recorded_date"])
        if event["event_type"] == "repair":
            raise ObjectionConflict(
                f"record {record_id} was repaired on {day} ({event['event_id']}): it is no "
                "longer public and no longer counts, there is nothing to object to",
                "repaired",
            )
        raise ObjectionConflict(
            f"record {record_id} was withdrawn on {day} ({event['event_id']}): it is no longer "
            "public and no longer counts, there is nothing to object to",
            "withdrawn",
        )


def _changed_since(events: list[dict[str, Any]], case_id: int, decided_on: date) -> bool:
    """Whether the record changed after objection `case_id` was decided: a correction stored
    after the decision's events (its own correction is stored with them), or, without those,
    recorded after the decision day."""
    closed = next(
        (e for e in events if e["event_id"] == f"objection-{case_id}-closed"), None
    )  # fmt: skip
    for event in events:
        if event["event_type"] != "correction":
            continue
        if closed is not None and str(event["batch_id"]) > str(closed["batch_id"]):
            return True
        if closed is None and event["recorded_date"] > decided_on:
            return True
    return False


UNCOMMITTED = "uncommitted"
"""The suffix of the `objection_closed` event that ends the flag of an uncommitted filing."""


@contextmanager
def _closed_unless_committed(
    engine: Engine, store: Store, today: date
) -> Iterator[list[dict[str, Any]]]:
    """Yields the list the filing puts its `objection_opened` event in before appending it; when
    the filing fails after that (its database commit did not happen), the flag is ended at once
    by an `objection_closed` event (unless an objection to the record is open meanwhile). If this
    fails too, the next filing that gets the same objection id ends it (`_append_opening`)."""
    opened: list[dict[str, Any]] = []
    try:
        yield opened
    except BaseException:
        with contextlib.suppress(Exception):
            _close_uncommitted(engine, store, opened, today, exclude=None)
        raise


def _close_uncommitted(engine: Engine, store: Store, opened: list[dict[str, Any]], today: date,
                       exclude: int | None, con: Connection | None = None) -> None:  # fmt: skip
    """End the flags of these opening events of filings that were not committed, but not of a
    record with an objection open (other than `exclude`, the filing under way)."""
    if not opened:
        return
    record_ids = sorted({e["record_id"] for e in opened})
    query = sa.select(objections.c.record_id).where(
        objections.c.record_id.in_(record_ids), objections.c.status == "open"
    )
    if exclude is not None:
        query = query.where(objections.c.id != exclude)
    if con is None:
        with engine.connect() as fresh:
            busy = set(fresh.execute(query).scalars().all())
    else:
        busy = set(con.execute(query).scalars().all())
    events = [
        {"event_id": f"{e['event_id']}-{UNCOMMITTED}", "record_id": e["record_id"],
         "event_type": "objection_closed", "effective_date": today, "recorded_date": today,
         "attributes": {"objection_id": e["attributes"]["objection_id"],
                        "reason": "the filing was not committed"}}
        for e in opened if e["record_id"] not in busy
    ]  # fmt: skip
    if events:
        _append(store, events, today)


def _append_opening(con: Connection, store: Store, case_id: int, record_id: str, today: date,
                    opened: list[dict[str, Any]]) -> None:  # fmt: skip
    """Append the filing's `objection_opened` event (put in `opened` first). Its id is
    `objection-<id>-opened`, unless a filing that was not committed left one of that id (SQLite
    gives a rolled-back id again): that one's flag is ended, if it was not, and this filing's
    event gets a fresh id (`objection-<id>-opened-R<n>`), never taken for another's."""
    base = f"objection-{case_id}-opened"
    with store.connect() as duck:
        left = {
            event_id: (rid, attributes)
            for event_id, rid, attributes in duck.execute(
                "SELECT event_id, record_id, attributes FROM events "
                "WHERE event_id = ? OR event_id LIKE ?", [base, f"{base}-%"],
            ).fetchall()
        }  # fmt: skip
    stale = [
        {"event_id": event_id, "record_id": rid, "attributes": json.loads(attributes or "{}")}
        for event_id, (rid, attributes) in left.items()
        if not event_id.endswith(UNCOMMITTED) and f"{event_id}-{UNCOMMITTED}" not in left
        and rid != record_id  # this filing opens that record's flag again anyway
    ]  # fmt: skip
    if stale:
        _close_uncommitted(con.engine, store, stale, today, exclude=case_id, con=con)
    taken = [e for e in left if not e.endswith(UNCOMMITTED)]
    event = _event(case_id, "opened", record_id, "objection_opened", today,
                   {"objection_id": case_id})  # fmt: skip
    if taken:
        event["event_id"] = f"{base}-R{len(taken) + 1}"
    opened.append(event)
    _append(store, [event], today)


def extend(
    engine: Engine, case_id: int, reason: str, actor: int | None, today: date | None = None
) -> dict[str, Any]:
    """Extend the deadline, once, to 20 working days after filing, and only by its deadline: an
    extension after it would hide the missed deadline (`overdue`)."""
    today = today or china_today()
    case = _case(engine, case_id)
    due = workdays.add_working_days(case["filed_on"], EXTENDED_WORKING_DAYS)
    with engine.begin() as con:
        claimed = con.execute(
            objections.update()
            .where(objections.c.id == case_id, objections.c.status == "open",
                   objections.c.extended.is_(False), objections.c.due_date >= today)
            .values(extended=True, due_date=due)
        ).rowcount  # fmt: skip
        if claimed != 1:
            now = con.execute(
                sa.select(objections.c.status, objections.c.extended, objections.c.due_date)
                .where(objections.c.id == case_id)
            ).one()  # fmt: skip
            if now.status != "open":
                raise ObjectionConflict(f"objection {case_id} is decided")
            if now.extended:
                raise ObjectionConflict(f"objection {case_id} is extended already (only once)")
            raise ObjectionConflict(
                f"objection {case_id} was due on {now.due_date}: its deadline can be extended "
                "until that day, not after it; decide it (the decision is logged late)",
                "overdue",
            )
        lifecycle.log(con, "objection", case_id, case["uscc"], "extended", actor,
             {"reason": reason, "due_date": due, "previous_due_date": case["due_date"],
              "on": today})  # fmt: skip
    return get(engine, case_id)


def validated_correction(
    outcome: Outcome, record: dict[str, Any], correction: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The correction a decision carries, checked against the record's category: required for
    `corrected` (severity, amount, attributes) and `supplemented` (attributes only), refused
    for the other outcomes."""
    if outcome not in ("corrected", "supplemented"):
        if correction:
            raise InvalidDecision(
                f"a correction goes with corrected or supplemented, not {outcome}"
            )
        return None
    if not correction:
        raise InvalidDecision(f"{outcome} needs a correction (what changes in the record)")
    allowed = CORRECTION_KEYS if outcome == "corrected" else ("attributes",)
    unknown = sorted(set(correction) - set(allowed))
    if unknown:
        raise InvalidDecision(
            f"{outcome}: the correction may hold only {', '.join(allowed)}; "
            f"not {', '.join(unknown)}"
        )
    if "severity" in correction:
        severities = default_catalogue()[record["category"]].severities
        severity = correction["severity"]
        if not severities:
            raise InvalidDecision(f"{record['category']} records have no severity")
        if severity not in severities:
            raise InvalidDecision(
                f"severity {severity!r} is not one of {record['category']}'s: "
                f"{', '.join(severities)}"
            )
    if "amount" in correction:
        amount = correction["amount"]
        number = isinstance(amount, int | float) and not isinstance(amount, bool)
        if amount is not None and not (number and math.isfinite(amount)):
            raise InvalidDecision(f"amount must be a number or null, not {amount!r}")
    if "attributes" in correction:
        if not isinstance(correction["attributes"], dict):
            raise InvalidDecision("attributes must be an object (keys overlaid on the record's)")
        if outcome == "supplemented" and not correction["attributes"]:
            raise InvalidDecision("supplemented needs the attributes added")
        _check_attribute_types(record["category"], correction["attributes"])
    try:  # what ingestion allows the category (negative amounts, amounts where none is taken)
        check_correction(correction, record["category"], default_catalogue())
    except EventError as exc:
        raise InvalidDecision(str(exc)) from None
    return dict(correction)


def _check_attribute_types(category: str, attributes: dict[str, Any]) -> None:
    """The attributes the catalogue names keep its types: one described as a "list of …"
    (`penalty_types`) a list of text, any other a single value (text, number or boolean); null
    removes the attribute. Attributes the catalogue does not name are free."""
    described = default_catalogue()[category].attributes
    for name, value in attributes.items():
        if name not in described or value is None:
            continue
        if described[name].strip().lower().startswith("list of"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidDecision(
                    f"attribute {name} of {category} records is a list of text, not {value!r}"
                )
        elif isinstance(value, dict | list):
            raise InvalidDecision(
                f"attribute {name} of {category} records is a single value, not {value!r}"
            )


def merged_correction(
    store: Store, record_id: str, correction: dict[str, Any], today: date, own: str = ""
) -> dict[str, Any]:
    """This correction over the ones already in force for the record (earliest first,
    `attributes` composed as JSON merge patches, recursively, as `records.publicity` applies
    them), so the new event is the whole correction relative to the original record: a later
    correction never drops what an earlier one fixed, however deep. `own`: the id of this
    decision's event (left by an attempt that was not committed), not an earlier correction."""
    with store.connect() as con:
        earlier = con.execute(
            "SELECT attributes FROM events WHERE record_id = ? AND event_type = 'correction' "
            "AND greatest(effective_date, recorded_date) <= ? AND event_id <> ? "
            "ORDER BY greatest(effective_date, recorded_date), batch_id, event_id",
            [record_id, today, own],
        ).fetchall()  # fmt: skip
    merged: dict[str, Any] = {}
    for layer in [*(json.loads(a) if a else {} for (a,) in earlier), correction]:
        merged = composed_correction(merged, layer)
    return merged


def decide(
    engine: Engine,
    store: Store,
    case_id: int,
    outcome: Outcome,
    reason: str,
    correction: dict[str, Any] | None,
    decided_by: int | None,
    today: date | None = None,
) -> dict[str, Any]:
    """Decide an open objection (see the module docstring for the outcomes); the objection is
    claimed first, then the decision's events are appended in one batch."""
    today = today or china_today()
    case = _case(engine, case_id)
    if case["status"] != "open":
        raise ObjectionConflict(f"objection {case_id} is {case['status']}, not open")
    if outcome not in OUTCOMES:
        raise InvalidDecision(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    record_id = case["record_id"]
    record = record_on(store, record_id, today)
    if record is None:
        raise ObjectionNotFound(f"record {record_id} is not known on {today}")
    fix = validated_correction(outcome, record, correction)
    listing = record["category"] in LISTING_CATEGORIES and record["severity"] == "listed"
    if outcome == "removed_from_list" and not listing:
        raise InvalidDecision(
            f"removed_from_list is for a listing record ({', '.join(LISTING_CATEGORIES)} with "
            f"severity listed); record {record_id} is {record['category']}/{record['severity']}"
        )
    note = {"objection_id": case_id, "reason": reason}
    events = []
    in_force = None
    if fix is not None:
        own = _event(case_id, "correction", record_id, "correction", today, {})["event_id"]
        in_force = merged_correction(store, record_id, fix, today, own=own)
        events.append(_event(case_id, "correction", record_id, "correction", today, in_force))
    elif outcome == "stop_publishing":
        events.append(_event(case_id, "unpublish", record_id, "unpublish", today, note))
    elif outcome == "removed_from_list":
        events.append(_event(case_id, "withdrawal", record_id, "withdrawal", today, note))
    events.append(_event(case_id, "closed", record_id, "objection_closed", today,
                         {**note, "outcome": outcome}))  # fmt: skip
    _check_left(store, case_id, events)
    with engine.begin() as con:  # the claim is the first statement: it takes the write lock
        claimed = con.execute(
            objections.update()
            .where(objections.c.id == case_id, objections.c.status == "open")
            .values(
                status="decided", outcome=outcome, decided_on=today, decided_by=decided_by,
                decision_reason=reason,
                correction=None if fix is None else json.dumps(fix, ensure_ascii=False),
            )
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise ObjectionConflict(f"objection {case_id} was decided meanwhile")
        due = con.execute(
            sa.select(objections.c.due_date).where(objections.c.id == case_id)
        ).scalar_one()  # as claimed: an extension granted meanwhile counts
        late = today > due
        removed = []
        if outcome == "removed_from_list":
            removed = _remove_list_entries(con, case, reason, decided_by, today)
        lifecycle.log(con, "objection", case_id, case["uscc"], "decided", decided_by,
             {"outcome": outcome, "reason": reason, "late": late, "correction": fix,
              "in_force": in_force, "events": [e["event_id"] for e in events],
              "list_entries_removed": removed})  # fmt: skip
        # the store last: a database error before it leaves both stores as they were; one after
        # it (the commit) leaves the events, and deciding the same again completes the decision
        _append(store, events, today)
    return get(engine, case_id)


def _check_left(store: Store, case_id: int, events: list[dict[str, Any]]) -> None:
    """The events of a decision of this open objection left in the store by an attempt whose
    database commit did not happen must be this decision's: only the same decision completes
    it (its events are skipped as stored), any other is a conflict."""
    ids = [e["event_id"] for e in events]
    with store.connect() as con:
        left = {
            event_id: (event_type, json.loads(attributes or "{}"))
            for event_id, event_type, attributes in con.execute(
                "SELECT event_id, event_type, attributes FROM events "
                "WHERE event_id LIKE ? AND event_id NOT LIKE ?",
                [f"objection-{case_id}-%", f"objection-{case_id}-opened%"],
            ).fetchall()
        }  # fmt: skip
    if not left:
        return
    closed = left.get(f"objection-{case_id}-closed", ("", {}))[1]
    wanted = {e["event_id"]: (e["event_type"], e["attributes"]) for e in events}
    same = set(left) == set(ids) and all(
        left[i][0] == wanted[i][0]
        and (left[i][1] == wanted[i][1] or left[i][0] != "correction")
        for i in ids
    ) and closed.get("outcome") == wanted[ids[-1]][1]["outcome"]  # fmt: skip
    if not same:
        raise ObjectionConflict(
            f"the decision {closed.get('outcome')!r} of objection {case_id} is in the record "
            "store already (its recording did not complete): decide it the same way again to "
            "complete it"
        )


def _remove_list_entries(con: Connection, case: RowMapping, reason: str, actor: int | None,
                         today: date) -> list[int]:  # fmt: skip
    """Mark the list entries kept for the record removed, each step logged for its entry."""
    entries = con.execute(
        sa.select(list_entries.c.id, list_entries.c.uscc, list_entries.c.list).where(
            list_entries.c.record_id == case["record_id"], list_entries.c.status == "listed"
        )
    ).all()  # fmt: skip
    removal = f"objection {case['id']}: {reason}"
    removed = []
    for entry in entries:
        changed = con.execute(
            list_entries.update()
            .where(list_entries.c.id == entry.id, list_entries.c.status == "listed")
            .values(status="removed", removed_on=today, removal_reason=removal)
        ).rowcount  # fmt: skip
        if changed == 1:
            removed.append(int(entry.id))
            lifecycle.log(con, "list", int(entry.id), entry.uscc, "removed", actor,
                 {"list": entry.list, "reason": removal, "objection_id": case["id"],
                  "record_id": case["record_id"]})  # fmt: skip
    return removed


def _case(engine: Engine, case_id: int) -> RowMapping:
    with engine.connect() as con:
        case = con.execute(
            sa.select(objections).where(objections.c.id == case_id)
        ).mappings().one_or_none()  # fmt: skip
    if case is None:
        raise ObjectionNotFound(f"no objection {case_id}")
    return case


def _documents(con: Connection, cases: list[RowMapping]) -> list[dict[str, Any]]:
    """The objections as served, each with its steps (two queries whatever their number)."""
    steps = lifecycle.steps(con, "objection", [int(c["id"]) for c in cases])
    out = []
    for case in cases:
        doc = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in dict(case).items()}
        doc["extended"] = bool(doc["extended"])
        # counted into a year whose holiday schedule is not published: `deadlines redate` moves it
        doc["due_estimated"] = workdays.deadline_estimated(case["filed_on"], case["due_date"])
        doc["correction"] = json.loads(doc["correction"]) if doc["correction"] else None
        doc["steps"] = steps[int(case["id"])]
        out.append(doc)
    return out


def get(engine: Engine, case_id: int) -> dict[str, Any]:
    """One objection with its steps."""
    with engine.connect() as con:
        case = con.execute(
            sa.select(objections).where(objections.c.id == case_id)
        ).mappings().one_or_none()  # fmt: skip
        if case is None:
            raise ObjectionNotFound(f"no objection {case_id}")
        return _documents(con, [case])[0]


def search(
    engine: Engine,
    uscc: str | None = None,
    status: str | None = None,
    limit: int = 100,
    overdue_on: date | None = None,
) -> list[dict[str, Any]]:
    """Objections, newest first; with `overdue_on`, the open ones past their deadline on that
    day (due_date < overdue_on), the longest overdue first."""
    query = sa.select(objections).limit(limit)
    if uscc is not None:
        query = query.where(objections.c.uscc == uscc)
    if status is not None:
        query = query.where(objections.c.status == status)
    if overdue_on is not None:
        query = query.where(objections.c.status == "open", objections.c.due_date < overdue_on)
        query = query.order_by(objections.c.due_date, objections.c.id)
    else:
        query = query.order_by(objections.c.id.desc())
    with engine.connect() as con:
        return _documents(con, list(con.execute(query).mappings().all()))
