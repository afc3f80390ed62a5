"""Credit repair (信用修复, DOMAIN §9): applications, eligibility, decisions.

A company (or a regulator on its behalf) applies to repair one record. The application is checked
at once: refused with a reason code (`RepairRefused`, nothing stored: the record or its cases do
not allow it now), or accepted for a decision due in 3 working days. The authority's decision,
and what the checks find again on its day (a listing, a repeat since), is kept as a decided case.
Approval appends a `repair` event to the store: from the approval date the record stops being
public and stops counting in features, score and tier (earlier as-of dates are unchanged, by the
point-in-time construction of the features). Applications and every step of their handling are
kept: `credit_repairs` rows are never deleted and each step is appended to `lifecycle_log`
(append-only by database triggers). One application per record is pending at a time: filings
are serialised per record (the insert first on SQLite, an advisory lock on PostgreSQL).

An approval writes both stores: the database first (the claim and its step), the `repair` event
last, so a database error leaves both as they were. If the commit fails after the event was
stored, the application stays pending with its event in the store: approving it again completes
it (refusing it is a conflict). Approving the repair of a listing record (the focus-attention
list) marks its list entry removed in the same transaction, as an objection removing it from the
list does: the register agrees with the scores, and a new entry may be proposed.

Refusal codes:
- `not_repairable`: the record's category cannot be repaired (e.g. a spot-check result, or the
  listing on the serious dishonest or abnormal-operation list: those come off their list by
  removal, DOMAIN §8, and while on it the company may repair nothing).
- `under_objection`: an objection to the record is open: its decision comes first (it may
  correct or remove the record); checked again at the decision.
- `never_repairable_early`: the decision includes closure, business restriction, employment ban,
  downgraded qualification or a revoked licence: it runs its full publicity period.
- `minimum_period`: the record's minimum publicity period has not passed (the date it will), by
  the publicity rule (`records.publicity`: a fire or work-safety decision waits a year).
- `repeated`: the company has a later negative record of the same category: negative by the
  catalogue's polarity of its severity in its corrected form, neither repaired nor withdrawn (a
  tax grade B after a D, or `rectified` after a warning talk, is no repeat).
- `on_list`: the company is on the serious illegal and dishonest or the abnormal-operation list.
- `already_repaired`: the record is repaired or withdrawn already; `pending`: an application
  for it is waiting for a decision.
- `expired`: the record's publicity period is over: it is no longer public and no longer counts,
  there is nothing to repair.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from features.builder import UNDONE_CTE, build_features
from records import publicity, workdays
from records.catalogue import default_catalogue
from records.events import append_events
from records.store import Store
from records.workdays import china_today
from serving import lifecycle
from serving.db import credit_repairs, list_entries

DECISION_WORKING_DAYS = 3
LIST_FLAGS = ("on_serious_dishonest_list", "on_abnormal_list")


class RepairNotFound(LookupError):
    pass


class RepairConflict(Exception):
    """The application cannot change state this way (decided already)."""


class RepairRefused(RepairConflict):
    """An application refused when filed, with its refusal code (`code`); nothing is stored."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    code: str | None = None
    message: str | None = None


def record_on(store: Store, record_id: str, today: date) -> dict[str, Any] | None:
    """The record as it stands today: in its corrected form (a correction in force replaces its
    severity and attributes), with the day it was repaired or withdrawn, if it was."""
    with store.connect() as con:
        rows = con.sql(
            f"""WITH {UNDONE_CTE}
            SELECT r.record_id, r.uscc, r.category, r.severity, r.event_date, r.recorded_date,
                   r.amount, r.attributes, u.undone_on
            FROM records r LEFT JOIN undone u ON u.record_id = r.record_id
            WHERE r.record_id = ? AND r.recorded_date <= ?""",
            params=[record_id, today],
        ).to_arrow_table().to_pylist()  # fmt: skip
        events = con.sql(
            "SELECT event_id, event_type, effective_date, recorded_date, attributes, batch_id "
            "FROM events WHERE record_id = ? AND event_type = 'correction'",
            params=[record_id],
        ).to_arrow_table().to_pylist()  # fmt: skip
    if not rows:
        return None
    form = publicity.corrected(rows[0], events, today)
    form["attributes"] = json.dumps(form["attributes"], ensure_ascii=False)
    return form


def eligibility(store: Store, record: dict[str, Any], today: date) -> Eligibility:
    """Whether the record may be repaired today, and if not, why (DOMAIN §9)."""
    catalogue = default_catalogue()
    category = catalogue[record["category"]]
    if record["undone_on"] is not None and record["undone_on"] <= today:
        return Eligibility(False, "already_repaired", "the record is repaired or withdrawn")
    if not category.repairable or category.polarity_of(record["severity"]) != "negative":
        return Eligibility(
            False, "not_repairable", f"{record['category']} records cannot be repaired"
        )
    ended = publicity.period(
        record["category"], record["severity"], record["attributes"]
    ).counts_until(record["event_date"])  # fmt: skip
    if ended is not None and ended <= today:
        return Eligibility(
            False, "expired",
            f"its publicity period ended on {ended}: it is no longer public and no longer "
            "counts, there is nothing to repair",
        )  # fmt: skip
    if objection_open(store, record["record_id"], today):
        return Eligibility(
            False, "under_objection",
            f"an objection to record {record['record_id']} is open: it is decided first",
        )  # fmt: skip
    attributes = json.loads(record["attributes"]) if record["attributes"] else {}
    attributes = attributes if isinstance(attributes, dict) else {}
    listed_types = attributes.get("penalty_types")
    # stored values may be odd (not a list, or holding objects): only the names count
    types = (
        {t for t in listed_types if isinstance(t, str)} if isinstance(listed_types, list) else set()
    )
    early = sorted(types & set(category.never_repairable_early))
    if early:
        return Eligibility(
            False, "never_repairable_early",
            f"the decision includes {', '.join(early)}: it runs its full publicity period",
        )  # fmt: skip
    period = publicity.period(record["category"], record["severity"], attributes)
    open_on = period.repairable_from(record["event_date"])
    if open_on is not None and today < open_on:
        return Eligibility(
            False, "minimum_period",
            f"the minimum publicity period ({period.minimum}) ends on {open_on}",
        )  # fmt: skip
    repeats = later_negatives(store, record, today)
    if repeats:
        return Eligibility(
            False, "repeated",
            f"{len(repeats)} later negative {record['category']} record(s) of the company: "
            f"{', '.join(repeats[:5])}",
        )  # fmt: skip
    feats = build_features(store, today, [record["uscc"]]).to_pylist()
    listed = [f for f in LIST_FLAGS if feats and (feats[0].get(f) or 0) > 0]
    if listed:
        return Eligibility(False, "on_list", f"the company is on a list ({', '.join(listed)})")
    return Eligibility(True)


def objection_open(store: Store, record_id: str, today: date) -> bool:
    """Whether an objection to the record is open today (its flag, as every consumer reads it)."""
    with store.connect() as con:
        events = con.sql(
            "SELECT event_id, event_type, effective_date, recorded_date, batch_id FROM events "
            "WHERE record_id = ? AND event_type IN ('objection_opened', 'objection_closed')",
            params=[record_id],
        ).to_arrow_table().to_pylist()  # fmt: skip
    return publicity.objection_open(events, today)


def later_negatives(store: Store, record: dict[str, Any], today: date) -> list[str]:
    """The company's later records of the record's category that are negative today: by the
    catalogue's polarity of their severity in their corrected form, neither repaired nor
    withdrawn (a grade B after a grade D, or `rectified` after a warning talk, is no repeat)."""
    category = default_catalogue()[record["category"]]
    with store.connect() as con:
        rows = con.sql(
            f"""WITH {UNDONE_CTE}
            SELECT r.record_id, r.uscc, r.category, r.severity, r.event_date, r.recorded_date,
                   r.amount, r.attributes, u.undone_on
            FROM {store.scan('records', record['uscc'])} r
            LEFT JOIN undone u ON u.record_id = r.record_id
            WHERE r.uscc = ? AND r.category = ? AND r.event_date > ? AND r.recorded_date <= ?
              AND r.record_id <> ?
            ORDER BY r.record_id, r.batch_id""",
            params=[record["uscc"], record["category"], record["event_date"], today,
                    record["record_id"]],
        ).to_arrow_table().to_pylist()  # fmt: skip
        ids = sorted({r["record_id"] for r in rows})
        fixes = con.sql(
            "SELECT event_id, event_type, record_id, effective_date, recorded_date, attributes, "
            "batch_id FROM events WHERE event_type = 'correction' "
            "AND record_id IN (SELECT unnest(?))",
            params=[ids],
        ).to_arrow_table().to_pylist() if ids else []  # fmt: skip
    found: dict[str, bool] = {}
    for row in rows:
        if row["record_id"] in found:  # the first stored version of a record
            continue
        undone = row["undone_on"] is not None and row["undone_on"] <= today
        form = publicity.corrected(
            row, [f for f in fixes if f["record_id"] == row["record_id"]], today
        )
        found[row["record_id"]] = (
            not undone and category.polarity_of(form["severity"]) == "negative"
        )
    return [r for r, negative in found.items() if negative]


def apply(
    engine: Engine,
    store: Store,
    record_id: str,
    reason: str,
    applicant: int | None,
    today: date | None = None,
    check: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """File an application: stored pending with its decision deadline, or refused at once
    (`RepairRefused`, with the refusal code and a message naming the record and why: nothing
    is stored). `check(uscc)` may refuse the applicant by raising (the service: only the company
    itself or an authority applies)."""
    today = today or china_today()
    record = record_on(store, record_id, today)
    if record is None:
        raise RepairNotFound(f"no record {record_id}")
    if check is not None:
        check(record["uscc"])
    found = eligibility(store, record, today)  # the store's side, read before any lock is taken
    if not found.eligible:
        raise RepairRefused(str(found.code), f"record {record_id}: {found.message}")
    due = workdays.add_working_days(today, DECISION_WORKING_DAYS)
    with engine.begin() as con:
        if con.dialect.name == "postgresql":  # two applications at once must not both see none
            con.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"repair:{record_id}"})  # fmt: skip
        # SQLite: the insert comes first, so it takes the write lock before the check reads
        key = con.execute(
            credit_repairs.insert().values(
                uscc=record["uscc"], record_id=record_id, category=record["category"],
                applied_on=today, applicant=applicant, reason=reason, status="pending",
                due_date=due,
            )
        ).inserted_primary_key  # fmt: skip
        assert key is not None
        case_id = int(key[0])
        waiting = con.execute(
            sa.select(credit_repairs.c.id).where(
                credit_repairs.c.record_id == record_id, credit_repairs.c.status == "pending",
                credit_repairs.c.id != case_id,
            ).order_by(credit_repairs.c.id)
        ).first()  # fmt: skip
        if waiting is not None:  # raised inside the transaction: the insert is rolled back
            raise RepairRefused(
                "pending",
                f"record {record_id}: application {waiting[0]} is waiting for a decision",
            )
        lifecycle.log(con, "repair", case_id, record["uscc"], "applied", applicant,
                      {"reason": reason})  # fmt: skip
    return get(engine, case_id)


def decide(
    engine: Engine,
    store: Store,
    case_id: int,
    approve: bool,
    reason: str,
    decided_by: int | None,
    today: date | None = None,
) -> dict[str, Any]:
    """Approve (the record stops counting and being public from today) or refuse."""
    today = today or china_today()
    with engine.begin() as con:
        case = con.execute(
            sa.select(credit_repairs).where(credit_repairs.c.id == case_id)
        ).mappings().one_or_none()  # fmt: skip
        if case is None:
            raise RepairNotFound(f"no repair application {case_id}")
        event_id = repair_event_id(case_id)
        left = case["status"] == "pending" and _stored(store, event_id)
        if left and not approve:
            raise RepairConflict(
                f"the approval of application {case_id} is in the record store already (its "
                "recording did not complete): approve it again to complete it"
            )
        verdict = Eligibility(True)
        if approve and not left:  # checked again on the day: a listing or a repeat may have come
            record = record_on(store, case["record_id"], today)
            verdict = eligibility(store, record, today) if record else Eligibility(False, "gone")
        granted = approve and verdict.eligible
        claimed = con.execute(
            credit_repairs.update()
            .where(credit_repairs.c.id == case_id, credit_repairs.c.status == "pending")
            .values(
                status="approved" if granted else "refused", decided_on=today,
                decided_by=decided_by,
                decision_reason=reason if granted or not approve else verdict.message,
                refusal_code=None if granted else ("refused_by_authority" if not approve
                                                   else verdict.code),
            )
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise RepairConflict(f"application {case_id} is {case['status']}, not pending")
        removed = _remove_list_entries(con, case, reason, decided_by, today) if granted else []
        lifecycle.log(con, "repair", case_id, case["uscc"],
                      "approved" if granted else "refused", decided_by,
                      {"reason": reason, "code": None if granted else verdict.code,
                       "late": today > case["due_date"], "completed": left or None,
                       "list_entries_removed": removed or None})  # fmt: skip
        if granted:  # the store last: a database error before it leaves both stores as they were
            stored = append_events(
                store,
                [{"event_id": event_id, "record_id": case["record_id"],
                  "event_type": "repair", "effective_date": today, "recorded_date": today,
                  "attributes": {"repair_id": case_id, "reason": reason}}],
                today=today,
            )  # fmt: skip
            if stored.rejected:
                raise RuntimeError(f"the repair event was refused: {stored.rejected}")
    return get(engine, case_id)


def _remove_list_entries(con: Connection, case: RowMapping, reason: str, actor: int | None,
                         today: date) -> list[int]:  # fmt: skip
    """Mark the list entries whose listing record is repaired removed, each step logged for its
    entry: the listing stops counting from today, so the entry is off its list from today."""
    c = list_entries.c
    entries = con.execute(
        sa.select(c.id, c.uscc, c.list).where(c.record_id == case["record_id"],
                                              c.status == "listed")
    ).all()  # fmt: skip
    removal = f"repair {case['id']}: {reason}"
    removed = []
    for entry in entries:
        changed = con.execute(
            list_entries.update().where(c.id == entry.id, c.status == "listed")
            .values(status="removed", removed_on=today, removal_reason=removal)
        ).rowcount  # fmt: skip
        if changed == 1:
            removed.append(int(entry.id))
            lifecycle.log(con, "list", int(entry.id), entry.uscc, "removed", actor,
                          {"list": entry.list, "reason": removal, "repair_id": case["id"],
                           "record_id": case["record_id"]})  # fmt: skip
    return removed


def repair_event_id(case_id: int) -> str:
    """The id of an approval's `repair` event: an application's id is never reused (the row is
    committed when filed and never deleted), so neither is this."""
    return f"repair-{case_id}"


def _stored(store: Store, event_id: str) -> bool:
    """Whether the store holds this event: a `repair` event of a pending application was left by
    an approval whose database commit failed after the store's (the retry completes it)."""
    with store.connect() as con:
        row = con.execute("SELECT count(*) FROM events WHERE event_id = ?", [event_id]).fetchone()
    return bool(row and row[0])


def _documents(con: Connection, cases: list[RowMapping], today: date) -> list[dict[str, Any]]:
    """The applications as served, each with its steps and whether it is `overdue` today
    (pending past its decision deadline); two queries whatever their number."""
    steps = lifecycle.steps(con, "repair", [int(c["id"]) for c in cases])
    out = []
    for case in cases:
        doc = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in dict(case).items()}
        doc["overdue"] = bool(
            case["status"] == "pending" and case["due_date"] is not None
            and case["due_date"] < today
        )  # fmt: skip
        doc["due_estimated"] = case["due_date"] is not None and workdays.deadline_estimated(
            case["applied_on"], case["due_date"]
        )
        doc["steps"] = steps[int(case["id"])]
        out.append(doc)
    return out


def get(engine: Engine, case_id: int, today: date | None = None) -> dict[str, Any]:
    """One application with its steps."""
    with engine.connect() as con:
        case = con.execute(
            sa.select(credit_repairs).where(credit_repairs.c.id == case_id)
        ).mappings().one_or_none()  # fmt: skip
        if case is None:
            raise RepairNotFound(f"no repair application {case_id}")
        return _documents(con, [case], today or china_today())[0]


def search(
    engine: Engine,
    uscc: str | None = None,
    status: str | None = None,
    limit: int = 100,
    overdue_on: date | None = None,
) -> list[dict[str, Any]]:
    """Applications, newest first; with `overdue_on`, the pending ones past their decision
    deadline on that day (due_date < overdue_on), the longest overdue first."""
    c = credit_repairs.c
    query = sa.select(credit_repairs).limit(limit)
    if uscc is not None:
        query = query.where(c.uscc == uscc)
    if status is not None:
        query = query.where(c.status == status)
    if overdue_on is not None:
        query = query.where(c.status == "pending", c.due_date < overdue_on)
        query = query.order_by(c.due_date, c.id)
    else:
        query = query.order_by(c.id.desc())
    with engine.connect() as con:
        cases = list(con.execute(query).mappings().all())
        return _documents(con, cases, overdue_on or china_today())
