"""Credit lists (DOMAIN §8): entries with their legal basis, dates and status, and their records.

Four lists: the abnormal-operation list (经营异常名录), the serious illegal and dishonest list
(严重违法失信名单), the focus-attention list (重点关注名单) and the red list (守信红名单). An entry
is managed here; what it does to features, scores and tiers it does through the record store,
like every other fact: listing writes a record of the list's category with severity `listed`
(record id `LIST-<entry id>`), removal a record with severity `removed` whose `attributes.ref`
is the listing's record id (record id `<listing's record id>-REMOVED`); the entry keeps both
ids. The feature builder turns those into `on_serious_dishonest_list`, `on_abnormal_list`, …
and the tier vetoes follow, point in time, from the listing day on.

Life of an entry:
- serious illegal and dishonest list: proposed as `notified` (the company is told first and
  has 5 working days to object, `objection_due`), possibly `objected` → `rejected` (objection
  upheld: never listed) or back to `notified` with the objection dismissed → `listed` once the
  window has passed or the objection was dismissed, and only on those of its source records
  that still ground it (`confirm` checks them again: one repaired, withdrawn or corrected into
  no heavy penalty meanwhile is dropped from the entry, the step `listed` naming it and why;
  with none left the entry is `rejected` with the step `lapsed`; one under objection waits for
  the decision) → `removed` (not before a year, the catalogue's minimum publicity) or `expired`
  (3 years, the catalogue's maximum publicity);
- the other lists: `listed` at once → `removed` (abnormal operation: once cured, any time) or
  `expired` at the end of the catalogue's publicity period.
`expired` is not written: it is what a listed entry reads as from its `term_end` on, the day the
catalogue's publicity period stops the listing record from counting. An entry is also `removed`
when an objection removes its listing record from the list or a repair of that record is approved
(`serving.objections`, `serving.repairs`).

A rejected or removed entry's source records do not ground a new entry of its list for the
company: `derive` proposes one again only on a record none of them cites (a new ground). A lapsed
entry is the exception: none of its records grounded anything when it lapsed, so whichever of
them grounds a listing again (a correction superseded) may ground a new entry. An expired entry
does not block: the rules decide (a heavy penalty grounds a proposal for a year, a listing lasts
three).

Entries are never deleted; every step is appended to `lifecycle_log` (case_type `list`,
append-only by database triggers). `derive` proposes entries from the records, set-based in
DuckDB (a province has millions of companies), and writes the listing records of the entries
listed at once in one batch.

Each step writes both stores: the database first, the record store last, so a database error
before the store's write leaves both as they were. If the database fails after it (the commit),
the records just written are withdrawn at once (a `withdrawal` event: they neither count nor are
published). If that did not happen either (the process died), the records stay behind with ids
the database never committed: the next step that hands out those ids (SQLite gives a
rolled-back entry id again; a confirmation or removal tried again) withdraws them and writes
its own record under a fresh id (`LIST-<entry id>-R<n>`, `…-REMOVED-R<n>`), never taken for
another's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from features.builder import (
    CORRECTED_COLUMNS,
    FIXES_CTE,
    LIST_CATEGORIES,
    UNDONE_CTE,
    open_listings_sql,
)
from features.specs import ANNUAL_REPORT_FILERS
from records import publicity, workdays
from records.catalogue import Catalogue, default_catalogue
from records.events import withdraw_left
from records.ingest import ingest_table
from records.schema import VERSION_ORDER
from records.store import Store
from records.uscc import entity_type_sql
from records.workdays import china_today
from serving import lifecycle
from serving.db import lifecycle_log, list_entries
from serving.load import mask_name

ListName = Literal[
    "abnormal_operation_list", "serious_dishonest_list", "focus_attention_list", "red_list"
]
LISTS: tuple[ListName, ...] = (
    "abnormal_operation_list", "serious_dishonest_list", "focus_attention_list", "red_list",
)  # fmt: skip
"""The lists kept here; their codes are the record categories of the catalogue."""

PUBLIC_LISTS: tuple[ListName, ...] = (
    "serious_dishonest_list", "abnormal_operation_list", "red_list",
)  # fmt: skip
"""Lists published to everyone (the focus-attention list is a supervision tool, not public)."""

NOTIFIED_FIRST = frozenset({"serious_dishonest_list"})
"""Lists whose company is told before listing and may object (DOMAIN §8)."""

OBJECTION_WORKING_DAYS = 5

OPEN_STATUSES = ("notified", "objected", "listed")
"""An entry in one of these blocks a new entry of its list for the company (unless expired)."""

STATUSES = ("notified", "objected", "rejected", "listed", "removed", "expired")

CLOSED_STATUSES = ("rejected", "removed")
"""An entry in one of these keeps its source records from grounding a new entry of its list for
the company (`derive`), unless it lapsed."""

LAPSED = "lapsed"
"""The step of a notified entry rejected because none of its source records grounds it any more
(`confirm`): unlike an upheld objection, it does not spend them (`_spent_grounds`)."""

GROUNDS: dict[str, tuple[str, ...]] = {
    "abnormal_operation_list": ("missing_annual_report", "false_disclosure", "unreachable"),
    "red_list": ("a_grade_taxpayer", "contract_abiding", "honour", "other"),
}
"""The grounds a list's record carries in its catalogue attribute (`reason` of the
abnormal-operation list, `list` of the red list); required for those two lists."""

GROUND_ATTRIBUTE = {"abnormal_operation_list": "reason", "red_list": "list"}

LIST_DEPARTMENT = "samr"
"""The department the list records come from: the market regulator keeps the lists."""

SERIOUS_PENALTY_TYPES = ("licence_revoked", "closure", "employment_ban")
"""Penalty types that make a serious penalty a case for the serious dishonest list."""

BASIS_ABNORMAL = "《企业信息公示暂行条例》第十七条"
BASIS_SERIOUS = "《市场监督管理严重违法失信名单管理办法》"
BASIS_RED = "《纳税信用管理办法》（纳税信用A级纳税人）"

ANNUAL_REPORT_DUE = (6, 30)
"""Annual reports of a year are due by 30 June of the next (DOMAIN §8)."""

NEGATIVE_LOOKBACK_MONTHS = 36
SERIOUS_LOOKBACK_MONTHS = 12
TAX_GRADE_MONTHS = 24
"""A tax credit grade is current for two years (its publicity period in the catalogue). These
look-backs are calendar months, as the features' windows: a record counts while `as_of` is
before its date plus the months."""

_LOCK_KEY = int.from_bytes(hashlib.sha256(b"credsup:list_entries").digest()[:8], "big", signed=True)


class ListError(Exception):
    """A request about list entries that cannot be carried out; `code` is machine-readable."""

    status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ListNotFound(ListError):
    status = 404


class ListConflict(ListError):
    """The entry is not in a state (or not yet on a date) that allows the step."""

    status = 409


# ---- dates and state ---------------------------------------------------------------------------


def term_of(list_: str, listed_on: date, catalogue: Catalogue | None = None) -> tuple[
    date | None, date | None
]:  # fmt: skip
    """(term_end, earliest_removal) of a listing: the catalogue's publicity period of the
    list's `listed` records, so the entry ends on the day its record stops counting."""
    period = publicity.period(list_, "listed", None, None, catalogue)
    return period.counts_until(listed_on), period.repairable_from(listed_on)


def status_on(row: dict[str, Any], today: date) -> str:
    """The entry's status as read on `today`: a listing past its term reads `expired`."""
    if row["status"] == "listed" and row["term_end"] is not None and today >= row["term_end"]:
        return "expired"
    return str(row["status"])


def _serialise(con: Connection) -> None:
    """One creator of entries at a time, so that two proposals for the same company and list
    cannot both find no open entry (there is no unique constraint: closed entries stay)."""
    if con.dialect.name == "postgresql":
        con.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    else:  # SQLite: any write statement takes the database's write lock until commit
        con.execute(list_entries.update().where(sa.false()).values(status=list_entries.c.status))


def _open_entry(con: Connection, uscc: str, list_: str, today: date) -> int | None:
    """The company's entry of the list that blocks a new one, if any."""
    found = con.execute(
        sa.select(list_entries.c.id)
        .where(
            list_entries.c.uscc == uscc, list_entries.c.list == list_,
            list_entries.c.status.in_(OPEN_STATUSES),
            sa.or_(list_entries.c.term_end.is_(None), list_entries.c.term_end > today),
        )
        .order_by(list_entries.c.id)
    ).first()  # fmt: skip
    return None if found is None else int(found[0])


# ---- records -----------------------------------------------------------------------------------


def _record_row(record_id: str, uscc: str, list_: str, severity: str, day: date,
                attributes: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "record_id": record_id, "uscc": uscc, "category": list_, "event_date": day.isoformat(),
        "recorded_date": day.isoformat(), "source_dept": LIST_DEPARTMENT, "severity": severity,
        "amount": None, "attributes": json.dumps(attributes, ensure_ascii=False, sort_keys=True),
    }  # fmt: skip


def _listing_attributes(entry_id: int, list_: str, legal_basis: str, reason: str,
                        ground: str | None) -> dict[str, Any]:  # fmt: skip
    """The listing record's attributes: the entry, its legal basis and reason, and the ground in
    the attribute the catalogue declares for it (`reason` of the abnormal-operation list, a code;
    the text then goes to `note`)."""
    attributes: dict[str, Any] = {"entry_id": entry_id, "legal_basis": legal_basis,
                                  "reason": reason}  # fmt: skip
    key = GROUND_ATTRIBUTE.get(list_)
    if key is not None and ground is not None:
        if key == "reason":
            attributes["note"] = reason
        attributes[key] = ground
    return attributes


def _write_records(store: Store, rows: Sequence[dict[str, Any]], today: date, what: str) -> None:
    """Store list records in one batch (the way spot-check results are stored); every row must
    land: the caller's transaction is rolled back otherwise."""
    if not rows:
        return
    columns = ("record_id", "uscc", "category", "event_date", "recorded_date", "source_dept",
               "severity", "amount", "attributes")  # fmt: skip
    table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in columns})
    outcome = ingest_table(store, table, "records", LIST_DEPARTMENT, today=today,
                           source_file=f"list-entries:{what}")  # fmt: skip
    if outcome.stored + outcome.already_stored != len(rows):
        raise RuntimeError(
            f"list records were not stored ({what}): {outcome.quarantined} refused, "
            f"{outcome.by_reason}"
        )


_AGAIN = re.compile(r"^(.*?)(?:-R([0-9]+))?$")
"""A list record id: the id its entry names it by (`LIST-<entry id>`, `…-REMOVED`) and, for one
written under a fresh id, the number of that attempt."""


def _record_ids(store: Store, bases: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The id to write each of these records under, and the records in the store to withdraw
    first. A record of one of these ids in the store (or of one of its fresh ids) was left by a
    step whose database commit did not happen: the caller holds the entry, so none of them is a
    committed entry's. Those not withdrawn yet are to be; the new record gets a fresh id
    (`<id>-R<n>`, n one more than any taken); the plain id otherwise."""
    if not bases:
        return {}, []
    with store.connect() as con:
        con.register("wanted_list_ids", pa.table({"base": pa.array(list(bases), pa.string())}))
        left = con.execute(
            r"""WITH ids AS (
                SELECT DISTINCT record_id,
                       regexp_extract(record_id, '^(.*?)(-R[0-9]+)?$', 1) AS base
                FROM records WHERE record_id LIKE 'LIST-%'
            )
            SELECT i.record_id, EXISTS (
                SELECT 1 FROM events e
                WHERE e.record_id = i.record_id AND e.event_type = 'withdrawal') AS withdrawn
            FROM ids i WHERE i.base IN (SELECT base FROM wanted_list_ids)
            ORDER BY i.record_id"""
        ).fetchall()  # fmt: skip
    taken: dict[str, int] = {}
    for record_id, _ in left:
        match = _AGAIN.match(record_id)
        assert match is not None
        base, attempt = match.group(1), int(match.group(2) or 1)
        taken[base] = max(taken.get(base, 1), attempt)
    ids = {b: f"{b}-R{taken[b] + 1}" if b in taken else b for b in bases}
    return ids, [record_id for record_id, withdrawn in left if not withdrawn]


def _withdraw(store: Store, record_ids: Sequence[str], reason: str, today: date) -> list[Any]:
    """Withdraw list records no committed entry names (`records.events.withdraw_left`)."""
    return withdraw_left(store, record_ids, "list", reason, today)


def _store_last(store: Store, stale: Sequence[str], rows: Sequence[dict[str, Any]], today: date,
                what: str, written: list[str]) -> None:  # fmt: skip
    """The step's store writes, the last thing in its transaction: the records left behind by
    uncommitted steps withdrawn, then its own records (their ids put in `written` first)."""
    refused = _withdraw(store, stale, f"left by a step that was not committed ({what})", today)
    if refused:
        raise RuntimeError(f"list records {', '.join(stale)} could not be withdrawn: {refused}")
    written.extend(r["record_id"] for r in rows)
    _write_records(store, rows, today, what)


@contextmanager
def _withdrawn_unless_committed(engine: Engine, store: Store, today: date) -> Iterator[list[str]]:
    """Yields the list a step puts the ids of its records in before writing them; when the step
    fails after that (its database commit did not happen), they are withdrawn at once. If this
    fails too, the next step that hands out their ids withdraws them (`_record_ids`)."""
    written: list[str] = []
    try:
        yield written
    except BaseException:
        with contextlib.suppress(Exception):
            _withdraw_uncommitted(engine, store, written, today)
        raise


def _withdraw_uncommitted(engine: Engine, store: Store, written: list[str], today: date) -> None:
    """Withdraw these records unless an entry names them: a commit that raised may still have
    happened (a connection lost while committing); if the database cannot tell, it did not."""
    if not written:
        return
    named: set[str] = set()
    with contextlib.suppress(Exception), engine.connect() as con:
        c = list_entries.c
        for i in range(0, len(written), 500):
            chunk = written[i : i + 500]
            named |= set(con.execute(sa.select(c.record_id).where(c.record_id.in_(chunk)))
                         .scalars())  # fmt: skip
            named |= set(con.execute(sa.select(c.removal_record_id)
                                     .where(c.removal_record_id.in_(chunk))).scalars())  # fmt: skip
    _withdraw(store, [r for r in written if r not in named], "its step was not committed", today)


def _entity(store: Store, uscc: str, day: date) -> dict[str, Any] | None:
    """The entity facts in force on `day` (natural persons are never entities)."""
    with store.connect() as con:
        rows = con.execute(
            "SELECT uscc, "
            f"arg_max(name, {VERSION_ORDER}) AS name, "
            f"arg_max(entity_type, {VERSION_ORDER}) AS entity_type, "
            f"arg_max(status, {VERSION_ORDER}) AS status "
            f"FROM {store.scan('entities', uscc)} WHERE uscc = ? AND recorded_date <= ? "
            "GROUP BY uscc",
            [uscc, day],
        ).fetchall()
    if not rows:
        return None
    code, name, entity_type, status = rows[0]
    return {"uscc": code, "name": name, "entity_type": entity_type, "status": status}


def _check_sources(store: Store, uscc: str, record_ids: Sequence[str], day: date) -> None:
    if not record_ids:
        return
    with store.connect() as con:
        found = {
            r for (r,) in con.execute(
                f"SELECT record_id FROM {store.scan('records', uscc)} "
                "WHERE uscc = ? AND recorded_date <= ? "
                "AND record_id IN (SELECT unnest(?))",
                [uscc, day, list(record_ids)],
            ).fetchall()
        }  # fmt: skip
    missing = [r for r in record_ids if r not in found]
    if missing:
        raise ListError("unknown_record", f"no record of {uscc} with id {', '.join(missing[:5])}")


# ---- the steps ---------------------------------------------------------------------------------


def propose(
    engine: Engine,
    store: Store,
    uscc: str,
    list_: str,
    legal_basis: str,
    reason: str,
    source_records: Sequence[str] = (),
    proposed_by: int | None = None,
    ground: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Propose an entry: `notified` with its objection deadline (serious dishonest list), else
    listed at once with its listing record written. Returns the entry."""
    today = today or china_today()
    if list_ not in LISTS:
        raise ListError("unknown_list", f"no list {list_!r} (one of {', '.join(LISTS)})")
    grounds = GROUNDS.get(list_)
    if grounds is None and ground is not None:
        raise ListError("ground_not_applicable", f"{list_} takes no ground")
    if grounds is not None and ground not in grounds:
        raise ListError("ground_required",
                        f"{list_} needs a ground, one of {', '.join(grounds)}")  # fmt: skip
    entity = _entity(store, uscc, today)
    if entity is None:
        raise ListNotFound("unknown_company",
                           f"{uscc} is not a registered market entity by {today}")  # fmt: skip
    if entity["status"] == "deregistered":
        raise ListError("deregistered", f"{uscc} is deregistered: it cannot be listed")
    sources = list(dict.fromkeys(source_records))
    _check_sources(store, uscc, sources, today)
    notified = list_ in NOTIFIED_FIRST
    with _withdrawn_unless_committed(engine, store, today) as written, engine.begin() as con:
        _serialise(con)
        blocking = _open_entry(con, uscc, list_, today)
        if blocking is not None:
            raise ListConflict("already_open",
                               f"{uscc} has entry {blocking} of {list_} open")  # fmt: skip
        key = con.execute(
            list_entries.insert().values(
                uscc=uscc, list=list_, status="notified" if notified else "listed",
                legal_basis=legal_basis, reason=reason,
                source_records=json.dumps(sources, ensure_ascii=False),
                proposed_on=today, proposed_by=proposed_by,
                objection_due=workdays.add_working_days(today, OBJECTION_WORKING_DAYS)
                if notified else None,
            )
        ).inserted_primary_key  # fmt: skip
        assert key is not None
        entry_id = int(key[0])
        lifecycle.log(con, "list", entry_id, uscc, "proposed", proposed_by,
             {"list": list_, "legal_basis": legal_basis, "reason": reason, "ground": ground,
              "source_records": sources})  # fmt: skip
        if notified:
            lifecycle.log(con, "list", entry_id, uscc, "notified", proposed_by, {
                "objection_due": workdays.add_working_days(today, OBJECTION_WORKING_DAYS),
            })  # fmt: skip
            # records of this id left by an uncommitted step (SQLite gives its id again)
            _, stale = _record_ids(store, [listing_id(entry_id)])
            _store_last(store, stale, [], today, f"entry-{entry_id}", written)
        else:
            _list(con, store, entry_id, uscc, list_, legal_basis, reason, ground, proposed_by,
                  today, claim_from=None, written=written)  # fmt: skip
    return get(engine, entry_id, today)


def listing_id(entry_id: int) -> str:
    """The id of an entry's listing record, unless a record of that id was left by a step that
    was not committed (`_record_ids`): the entry's `record_id` is the one written."""
    return f"LIST-{entry_id}"


def _list(con: Connection, store: Store, entry_id: int, uscc: str, list_: str, legal_basis: str,
          reason: str, ground: str | None, actor: int | None, today: date,
          claim_from: str | None, written: list[str],
          dropped: dict[str, str] | None = None) -> None:  # fmt: skip
    """Put the entry on its list: its dates and step, then its listing record, the last thing
    in the caller's transaction (so a refused record leaves the entry as it was; `written`: see
    `_withdrawn_unless_committed`). `dropped`: source records that no longer ground it, with
    why: the entry is listed on the others, and its step names them."""
    term_end, earliest = term_of(list_, today)
    query = list_entries.update().where(list_entries.c.id == entry_id)
    if claim_from is not None:
        query = query.where(list_entries.c.status == claim_from)
    values: dict[str, Any] = {"status": "listed", "listed_on": today, "term_end": term_end,
                              "earliest_removal": earliest}  # fmt: skip
    detail: dict[str, Any] = {}
    if dropped:
        sources = json.loads(_row(con, entry_id)["source_records"] or "[]")
        kept = [r for r in sources if r not in dropped]
        values["source_records"] = json.dumps(kept, ensure_ascii=False)
        detail = {"source_records": kept, "dropped": dropped}
    # the claim first: it holds the entry (and SQLite's write lock) while the store is read
    claimed = con.execute(query.values(**values)).rowcount
    if claimed != 1:
        raise ListConflict("conflict", f"entry {entry_id} changed meanwhile: try again")
    ids, stale = _record_ids(store, [listing_id(entry_id)])
    record_id = ids[listing_id(entry_id)]
    con.execute(list_entries.update().where(list_entries.c.id == entry_id)
                .values(record_id=record_id))  # fmt: skip
    lifecycle.log(con, "list", entry_id, uscc, "listed", actor,
         {"record_id": record_id, "term_end": term_end, "earliest_removal": earliest,
          **detail})  # fmt: skip
    attributes = _listing_attributes(entry_id, list_, legal_basis, reason, ground)
    _store_last(store, stale, [_record_row(record_id, uscc, list_, "listed", today, attributes)],
                today, record_id, written)  # fmt: skip


def _row(con: Connection, entry_id: int) -> dict[str, Any]:
    row = con.execute(
        sa.select(list_entries).where(list_entries.c.id == entry_id)
    ).mappings().one_or_none()  # fmt: skip
    if row is None:
        raise ListNotFound("not_found", f"no list entry {entry_id}")
    return dict(row)


def object_to(
    engine: Engine, entry_id: int, reason: str, by: int | None, today: date | None = None
) -> dict[str, Any]:
    """The company objects to a notified entry, within its 5 working days."""
    today = today or china_today()
    with engine.begin() as con:
        row = _row(con, entry_id)
        if row["status"] == "objected" or row["objection_outcome"] is not None:
            raise ListConflict("already_objected",
                               f"entry {entry_id} has had its objection already")  # fmt: skip
        if row["status"] != "notified":
            raise ListConflict(
                "not_notified", f"entry {entry_id} is {status_on(row, today)}, not notified"
            )
        if today > row["objection_due"]:
            raise ListConflict(
                "objection_window_closed",
                f"the objection period of entry {entry_id} ended on {row['objection_due']}",
            )
        claimed = con.execute(
            list_entries.update()
            .where(list_entries.c.id == entry_id, list_entries.c.status == "notified")
            .values(status="objected", objection_reason=reason)
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise ListConflict("conflict", f"entry {entry_id} changed meanwhile: try again")
        lifecycle.log(con, "list", entry_id, row["uscc"], "objected", by, {"reason": reason})
    return get(engine, entry_id, today)


def decide_objection(
    engine: Engine,
    entry_id: int,
    accepted: bool,
    reason: str,
    by: int | None,
    today: date | None = None,
) -> dict[str, Any]:
    """Accept the objection (the company is right: the entry is `rejected`, never listed) or
    dismiss it (the entry is `notified` again and may be listed at once). An accepted objection
    is kept as the outcome `upheld` (its step `objection_upheld`), as it always was: the objection
    upheld, unlike a record objection's `upheld`, where the record stands."""
    today = today or china_today()
    with engine.begin() as con:
        row = _row(con, entry_id)
        if row["status"] != "objected":
            raise ListConflict(
                "not_objected", f"entry {entry_id} is {status_on(row, today)}, not objected"
            )
        outcome = "upheld" if accepted else "dismissed"
        claimed = con.execute(
            list_entries.update()
            .where(list_entries.c.id == entry_id, list_entries.c.status == "objected")
            .values(status="rejected" if accepted else "notified", objection_outcome=outcome)
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise ListConflict("conflict", f"entry {entry_id} changed meanwhile: try again")
        lifecycle.log(con, "list", entry_id, row["uscc"], f"objection_{outcome}", by,
             {"reason": reason, "late": today > row["objection_due"],
              "decision": "accepted" if accepted else "dismissed"})  # fmt: skip
    return get(engine, entry_id, today)


def confirm(
    engine: Engine, store: Store, entry_id: int, by: int | None, today: date | None = None
) -> dict[str, Any]:
    """List a notified entry: only once the objection period has passed without an objection,
    or its objection was dismissed, and on those of its source records that still ground it
    (`grounds_problem`); with none left it lapses (`grounds_changed`, raised after the commit)."""
    today = today or china_today()
    with _withdrawn_unless_committed(engine, store, today) as written, engine.begin() as con:
        row = _row(con, entry_id)
        if row["status"] != "notified":
            raise ListConflict(
                "not_notified", f"entry {entry_id} is {status_on(row, today)}, not notified"
            )
        if row["objection_outcome"] != "dismissed" and today <= row["objection_due"]:
            raise ListConflict(
                "objection_window_open",
                f"the company may object until {row['objection_due']}: list entry {entry_id} "
                f"from {row['objection_due'] + timedelta(days=1)} or after a dismissed objection",
            )
        problem, dropped = grounds_problem(store, row, today)
        if problem is None:
            ground = _ground(con, entry_id)
            _list(con, store, entry_id, row["uscc"], row["list"], row["legal_basis"],
                  row["reason"], ground, by, today, claim_from="notified", written=written,
                  dropped=dropped)  # fmt: skip
        elif problem.code == "grounds_changed":  # none of its records grounds it any more
            claimed = con.execute(
                list_entries.update()
                .where(list_entries.c.id == entry_id, list_entries.c.status == "notified")
                .values(status="rejected")
            ).rowcount  # fmt: skip
            if claimed != 1:
                raise ListConflict("conflict", f"entry {entry_id} changed meanwhile: try again")
            lifecycle.log(con, "list", entry_id, row["uscc"], LAPSED, by,
                          {"code": problem.code, "reason": problem.message,
                           "dropped": dropped})  # fmt: skip
        else:
            raise problem
    if problem is not None:  # raised after the commit: the entry lapsed
        raise problem
    return get(engine, entry_id, today)


def _heavy(form: dict[str, Any]) -> bool:
    """Whether a record, in its corrected form, is a heavy penalty of the serious rule of
    `candidates_sql` (the one-year look-back aside)."""
    types = form["attributes"].get("penalty_types")
    named = {t for t in types if isinstance(t, str)} if isinstance(types, list) else set()
    return (form["category"] == "admin_penalty" and form["severity"] == "serious"
            and bool(named & set(SERIOUS_PENALTY_TYPES)))  # fmt: skip


def _kind(form: dict[str, Any]) -> tuple[Any, Any]:
    """What a correction may change that decides whether a penalty is heavy."""
    return form["severity"], form["attributes"].get("penalty_types")


def grounds_problem(
    store: Store, row: dict[str, Any], today: date
) -> tuple[ListConflict | None, dict[str, str]]:
    """Whether the entry's source records still ground its listing today: the problem, if any,
    and the source records that no longer ground it, with why. A source record is gone when it
    no longer counts (repaired, withdrawn, past its period), is not the company's, or no longer
    is a heavy penalty in its corrected form today (one cited though not a heavy penalty: when it
    was corrected since the proposal); a correction that keeps it heavy leaves it a ground.
    Problems: `grounds_changed` when every source record is gone (the entry lapses);
    `source_under_objection` when an objection to one that counts is open (the listing waits for
    its decision). Neither: the entry is listed on the source records not gone. The one-year
    look-back of derivation is not applied again: it chose the records on the day of the
    proposal."""
    sources = [str(r) for r in json.loads(row["source_records"] or "[]")]
    if not sources:
        return None, {}
    originals, by_record = publicity.stored_with_events(store, sources, today)
    gone: dict[str, str] = {}
    objected: list[str] = []
    for record_id in sources:
        record, events = originals.get(record_id), by_record.get(record_id, [])
        if record is None or record["uscc"] != row["uscc"]:
            gone[record_id] = f"not a record of {row['uscc']}"
            continue
        if not publicity.counts_on(record, events, today):
            gone[record_id] = "no longer counts (repaired, withdrawn or expired)"
            continue
        if publicity.objection_open(events, today):
            objected.append(record_id)
        then = publicity.corrected(record, events, row["proposed_on"])
        now = publicity.corrected(record, events, today)
        if _heavy(now):
            continue
        form = f"{now['severity']}, {now['attributes'].get('penalty_types')}"
        if _heavy(then):
            gone[record_id] = f"no longer a heavy penalty ({form})"
        elif _kind(then) != _kind(now):  # cited though not heavy: its correction changed it
            gone[record_id] = f"corrected since the proposal ({form}), not a heavy penalty"
    if len(gone) == len(sources):
        why = "; ".join(f"{r} {reason}" for r, reason in gone.items())
        return ListConflict(
            "grounds_changed",
            f"entry {row['id']} is not listed: none of its source records grounds it any more "
            f"({why}); the entry lapsed (a new proposal needs grounds that hold)",
        ), gone  # fmt: skip
    if objected:
        return ListConflict(
            "source_under_objection",
            f"an objection to source record {', '.join(objected)} of entry {row['id']} is open: "
            "list it once the objection is decided",
        ), gone  # fmt: skip
    return None, gone


def remove(
    engine: Engine,
    store: Store,
    entry_id: int,
    reason: str,
    by: int | None,
    today: date | None = None,
) -> dict[str, Any]:
    """Take a listed entry off its list: a `removed` record referring to the listing, from
    today. Not before the catalogue's minimum publicity period (a year on the serious dishonest
    list); an expired entry is off the list already."""
    today = today or china_today()
    with _withdrawn_unless_committed(engine, store, today) as written, engine.begin() as con:
        row = _row(con, entry_id)
        status = status_on(row, today)
        if status != "listed":
            raise ListConflict("expired" if status == "expired" else "not_listed",
                               f"entry {entry_id} is {status}, not listed")  # fmt: skip
        if row["earliest_removal"] is not None and today < row["earliest_removal"]:
            raise ListConflict(
                "too_early",
                f"entry {entry_id} may be removed from {row['earliest_removal']} on "
                f"(listed on {row['listed_on']})",
            )
        # the claim first: it holds the entry (and SQLite's write lock) while the store is read
        claimed = con.execute(
            list_entries.update()
            .where(list_entries.c.id == entry_id, list_entries.c.status == "listed")
            .values(status="removed", removed_on=today, removal_reason=reason)
        ).rowcount  # fmt: skip
        if claimed != 1:
            raise ListConflict("conflict", f"entry {entry_id} changed meanwhile: try again")
        base = f"{row['record_id']}-REMOVED"
        ids, stale = _record_ids(store, [base])
        removal_id = ids[base]
        con.execute(list_entries.update().where(list_entries.c.id == entry_id)
                    .values(removal_record_id=removal_id))  # fmt: skip
        lifecycle.log(con, "list", entry_id, row["uscc"], "removed", by,
             {"reason": reason, "record_id": removal_id})  # fmt: skip
        attributes = {"ref": row["record_id"], "reason": reason, "entry_id": entry_id}
        _store_last(
            store, stale,
            [_record_row(removal_id, row["uscc"], row["list"], "removed", today, attributes)],
            today, removal_id, written,
        )  # fmt: skip
    return get(engine, entry_id, today)


# ---- reading -----------------------------------------------------------------------------------


def _ground(con: Connection, entry_id: int) -> str | None:
    """The ground given with the proposal (kept in its logged step)."""
    detail = con.execute(
        sa.select(lifecycle_log.c.detail)
        .where(lifecycle_log.c.case_type == "list", lifecycle_log.c.case_id == entry_id,
               lifecycle_log.c.action == "proposed")
        .order_by(lifecycle_log.c.id)
    ).scalar()  # fmt: skip
    return None if detail is None else json.loads(detail).get("ground")


def _out(row: dict[str, Any], steps: list[dict[str, Any]], today: date) -> dict[str, Any]:
    out = dict(row)
    out["status"] = status_on(row, today)
    out["objection_due_estimated"] = row["objection_due"] is not None and (
        workdays.deadline_estimated(row["proposed_on"], row["objection_due"])
    )
    out["source_records"] = json.loads(row["source_records"] or "[]")
    proposed = next((s for s in steps if s["action"] == "proposed"), None)
    out["ground"] = proposed["detail"].get("ground") if proposed else None
    out["steps"] = steps
    return out


def get(engine: Engine, entry_id: int, today: date | None = None) -> dict[str, Any]:
    """The entry, its status as read today and its steps."""
    today = today or china_today()
    with engine.connect() as con:
        row = _row(con, entry_id)
        return _out(row, lifecycle.steps(con, "list", [entry_id])[entry_id], today)


def _status_filter(status: str, today: date) -> Any:
    c = list_entries.c
    if status == "expired":
        return sa.and_(c.status == "listed", c.term_end.is_not(None), c.term_end <= today)
    if status == "listed":
        return sa.and_(c.status == "listed", sa.or_(c.term_end.is_(None), c.term_end > today))
    return c.status == status


def find(
    engine: Engine,
    uscc: str | None = None,
    list_: str | None = None,
    status: str | None = None,
    limit: int = 100,
    today: date | None = None,
) -> list[dict[str, Any]]:
    """Entries, newest first, with their steps."""
    today = today or china_today()
    query = sa.select(list_entries).order_by(list_entries.c.id.desc()).limit(limit)
    if uscc is not None:
        query = query.where(list_entries.c.uscc == uscc)
    if list_ is not None:
        query = query.where(list_entries.c.list == list_)
    if status is not None:
        query = query.where(_status_filter(status, today))
    with engine.connect() as con:
        rows = [dict(r) for r in con.execute(query).mappings()]
        steps = lifecycle.steps(con, "list", [r["id"] for r in rows])
    return [_out(r, steps[r["id"]], today) for r in rows]


Published = tuple[dict[str, Any], list[dict[str, Any]], str | None, str | None]
"""A published listing: its record, the record's events, the company's name and type."""

_published_cache: dict[str, tuple[tuple[str, date], list[Published]]] = {}
"""Per store: the published listings of the public lists, for (store version, day)."""


def _published(store: Store, today: date, catalogue: Catalogue) -> list[Published]:
    """Every listing of the public lists open and public today, newest first. Computed once per
    store version and day (it reads every listing of the province: ~2 s at 200,000 companies)."""
    key = (store.version(), today)
    cached = _published_cache.get(str(store.root))
    if cached is not None and cached[0] == key:
        return cached[1]
    wanted = list(PUBLIC_LISTS)
    with store.connect() as con:
        open_ids = [r[0] for r in con.execute(
            f"""WITH points AS (
                SELECT DISTINCT uscc, CAST(? AS DATE) AS as_of FROM records
                WHERE category IN (SELECT unnest(?)) AND recorded_date <= ?
            ),
            {UNDONE_CTE},
            {FIXES_CTE},
            {open_listings_sql(catalogue)}
            SELECT record_id FROM open_listings WHERE category IN (SELECT unnest(?))""",
            [today, wanted, today, wanted],
        ).fetchall()]  # fmt: skip
    originals, by_record = publicity.stored_with_events(store, open_ids, today)
    names = _names(store, {r["uscc"] for r in originals.values()}, today)
    shown: list[Published] = []
    for r in originals.values():
        evs = by_record.get(r["record_id"], [])
        name, entity_type = names.get(r["uscc"], (None, None))
        if publicity.public_on(r, evs, today, entity_type, catalogue):
            shown.append((r, evs, name, entity_type))
    shown.sort(key=lambda x: (x[0]["event_date"], x[0]["record_id"]), reverse=True)
    _published_cache[str(store.root)] = (key, shown)
    return shown


def public_records(
    store: Store, record_ids: list[str], today: date, catalogue: Catalogue | None = None
) -> set[str]:
    """Those of these listing records that are public today, by the publicity rule (an
    objection decided "stop publishing" or a withdrawal ends it while the entry stays
    `listed`)."""
    originals, by_record = publicity.stored_with_events(store, record_ids, today)
    names = _names(store, {r["uscc"] for r in originals.values()}, today)
    return {
        rid for rid, r in originals.items()
        if publicity.public_on(r, by_record.get(rid, []), today,
                               names.get(r["uscc"], (None, None))[1], catalogue)
    }  # fmt: skip


def public_page(
    engine: Engine,
    store: Store,
    list_: str | None = None,
    limit: int = 100,
    offset: int = 0,
    today: date | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """A page of what is published of the lists, and how many listings there are in all.

    What is published of the lists: every listing open and public today, whoever recorded it
    (an entry managed here, or a listing record a department sent), newest first. The record
    store is the one source, read by the feature builder's rule (`open_listings_sql`) and the
    publicity rule (`records.publicity.public_on`), so the lists agree with the company pages,
    the features and the tiers. Each entry: the company's name (an individual business's masked:
    it carries its owner's name), the legal basis (the entry's, the record's, or the list's
    default), the term's end where known, and whether an objection to it is open; no reason
    text (it may name people). Proposals, rejected, removed, expired, repaired, withdrawn and
    unpublished listings are not shown."""
    today = today or china_today()
    if list_ is not None and list_ not in PUBLIC_LISTS:
        return [], 0
    catalogue = default_catalogue()
    shown = [p for p in _published(store, today, catalogue)
             if list_ is None or p[0]["category"] == list_]  # fmt: skip
    page = shown[offset : offset + limit]
    entry_ids = {}
    for r, evs, _, _ in page:
        entry_id = publicity.corrected(r, evs, today)["attributes"].get("entry_id")
        if entry_id is not None:
            entry_ids[r["record_id"]] = int(entry_id)
    c = list_entries.c
    with engine.connect() as con:
        entries = {
            row.id: row
            for row in con.execute(
                sa.select(c.id, c.legal_basis, c.term_end, c.record_id)
                .where(c.id.in_(entry_ids.values()))
            )
        }  # fmt: skip
    out = []
    for r, evs, name, entity_type in page:
        form = publicity.corrected(r, evs, today)
        entry = entries.get(entry_ids.get(r["record_id"], -1))
        if entry is not None and entry.record_id == r["record_id"]:  # else not this entry's
            basis, term_end = entry.legal_basis, entry.term_end
        else:
            basis = form["attributes"].get("legal_basis") or DERIVED[form["category"]][0]
            term_end = term_of(form["category"], form["event_date"], catalogue)[0]
        out.append({
            "uscc": r["uscc"], "record_id": r["record_id"], "list": form["category"],
            "name": mask_name(name) if entity_type == "individual_business" else name,
            "entity_type": entity_type, "legal_basis": basis, "listed_on": form["event_date"],
            "term_end": term_end, "source_dept": form["source_dept"],
            "objection_open": publicity.objection_open(evs, today),
        })  # fmt: skip
    return out, len(shown)


def _names(
    store: Store, codes: Iterable[str], day: date
) -> dict[str, tuple[str | None, str | None]]:
    wanted = sorted(codes)
    if not wanted:
        return {}
    with store.connect() as con:
        rows = con.execute(
            f"SELECT uscc, arg_max(name, {VERSION_ORDER}), "
            f"arg_max(entity_type, {VERSION_ORDER}) "
            "FROM entities WHERE recorded_date <= ? AND uscc IN (SELECT unnest(?)) GROUP BY uscc",
            [day, wanted],
        ).fetchall()
    return {u: (n, t) for u, n, t in rows}


# ---- derivation from records -------------------------------------------------------------------


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _negative_sql(catalogue: Catalogue) -> str:
    """SQL true for a record whose category and severity read negative in the catalogue."""
    cases = []
    for c in catalogue.categories:
        for sev, polarity in c.polarity.items():
            if sev != "*":
                cases.append(f"WHEN category = {_lit(c.code)} AND severity = {_lit(sev)} "
                             f"THEN {str(polarity == 'negative').lower()}")  # fmt: skip
        default = c.polarity.get("*", "neutral")
        cases.append(f"WHEN category = {_lit(c.code)} THEN {str(default == 'negative').lower()}")
    return "CASE " + " ".join(cases) + " ELSE false END"


def report_year_due(as_of: date) -> int:
    """The latest report year whose annual report was due by `as_of` (30 June of the next)."""
    month, day = ANNUAL_REPORT_DUE
    return as_of.year - 1 if as_of >= date(as_of.year, month, day) else as_of.year - 2


def candidates_sql(catalogue: Catalogue) -> str:
    """Companies the records put on a list, one row per company and list with the records
    behind it (`$as_of`: what the records showed then; `$today`: the day of listing, on which
    a company already listed, or cured, is left out). Parameters `$as_of`, `$today`, `$year`,
    `$open_entries` (a table of (uscc, list) with an open entry)."""
    lists = ", ".join(_lit(c) for c in LIST_CATEGORIES)
    penalty_types = "[" + ", ".join(_lit(t) for t in SERIOUS_PENALTY_TYPES) + "]"
    filers = "(" + ", ".join(_lit(t) for t in ANNUAL_REPORT_FILERS) + ")"
    return f"""
    WITH {UNDONE_CTE},
    entity AS (
        SELECT uscc, arg_max(status, {VERSION_ORDER}) AS status,
               coalesce(arg_max(entity_type, {VERSION_ORDER}), {entity_type_sql("uscc")}) AS kind
        FROM entities WHERE recorded_date <= $today GROUP BY uscc
    ),
    known AS (  -- records known on the day of listing and counting then
        SELECT r.uscc, r.record_id, r.category, r.severity, r.event_date, r.recorded_date,
               r.attributes
        FROM records r LEFT JOIN undone u ON u.record_id = r.record_id
        WHERE r.recorded_date <= $today AND r.event_date <= $today
          AND (u.undone_on IS NULL OR u.undone_on > $today)
    ),
    fixed AS (  -- the latest correction in force on the day of listing, per record
        SELECT record_id,
               arg_max(attributes, struct_pack(s := greatest(effective_date, recorded_date),
                                               b := batch_id, i := event_id)) AS fix
        FROM events
        WHERE event_type = 'correction' AND greatest(effective_date, recorded_date) <= $today
        GROUP BY record_id
    ),
    seen AS (  -- the records known on the as-of date, in their corrected form on the day of
               -- listing and still counting then (an objection's correction, a repair or a
               -- withdrawal since the as-of date grounds no listing)
        SELECT r.uscc, r.record_id, r.category, r.event_date, {CORRECTED_COLUMNS}
        FROM records r LEFT JOIN undone u ON u.record_id = r.record_id
        LEFT JOIN fixed f ON f.record_id = r.record_id
        WHERE r.recorded_date <= $as_of AND r.event_date <= $as_of
          AND (u.undone_on IS NULL OR u.undone_on > $today)
    ),
    objected AS (  -- records under an open objection on the day of listing (as the feature
                   -- builder reads it): they ground no proposal until it is decided
        SELECT record_id FROM (
            SELECT record_id, arg_max(event_type, struct_pack(
                d := effective_date, b := batch_id,
                k := CASE WHEN event_type = 'objection_closed' THEN 1 ELSE 0 END,
                i := event_id)) AS last_step
            FROM events
            WHERE effective_date <= $today AND recorded_date <= $today
              AND event_type IN ('objection_opened', 'objection_closed')
            GROUP BY record_id)
        WHERE last_step = 'objection_opened'
    ),
    list_rows AS (
        SELECT uscc, record_id, category, severity, event_date,
               json_extract_string(attributes, '$.ref') AS ref
        FROM known
        WHERE category IN ({lists})
          AND coalesce($today < {publicity.counting_end_sql(catalogue)}, true)
    ),
    open_listed AS (  -- listings open on the day of listing, as the feature builder reads them
        SELECT DISTINCT l.uscc, l.category AS list FROM list_rows l
        WHERE l.severity = 'listed'
          AND NOT EXISTS (SELECT 1 FROM list_rows x WHERE x.severity = 'removed'
                          AND x.uscc = l.uscc AND x.ref = l.record_id)
          AND NOT EXISTS (SELECT 1 FROM list_rows x WHERE x.severity = 'removed'
                          AND x.uscc = l.uscc AND x.category = l.category AND x.ref IS NULL
                          AND x.event_date >= l.event_date)
    ),
    abnormal AS (  -- the annual report due last is missing and was not filed since
        SELECT uscc, 'abnormal_operation_list' AS list,
               list(record_id ORDER BY record_id) AS source_records
        FROM seen
        WHERE category = 'annual_report' AND severity = 'missing'
          AND record_id NOT IN (SELECT record_id FROM objected)
          AND TRY_CAST(json_extract_string(attributes, '$.year') AS INTEGER) = $year
          AND uscc NOT IN (
              SELECT uscc FROM known WHERE category = 'annual_report'
                AND coalesce(severity, '') <> 'missing'
                AND TRY_CAST(json_extract_string(attributes, '$.year') AS INTEGER) = $year)
        GROUP BY uscc
    ),
    serious AS (  -- heavy penalties of the last year
        SELECT uscc, 'serious_dishonest_list' AS list,
               list(record_id ORDER BY record_id) AS source_records
        FROM seen
        WHERE category = 'admin_penalty' AND severity = 'serious'
          AND record_id NOT IN (SELECT record_id FROM objected)
          AND $as_of < event_date + INTERVAL {SERIOUS_LOOKBACK_MONTHS} MONTH
          AND list_has_any(from_json(json_extract(attributes, '$.penalty_types'), '["VARCHAR"]'),
                           {penalty_types})
        GROUP BY uscc
    ),
    grade AS (  -- the latest current tax credit grade
        SELECT uscc, arg_max(struct_pack(grade := severity, rid := record_id),
                             struct_pack(d := event_date, r := record_id)) AS latest
        FROM seen
        WHERE category = 'tax_credit_grade'
          AND $as_of < event_date + INTERVAL {TAX_GRADE_MONTHS} MONTH
        GROUP BY uscc
    ),
    negative AS (
        SELECT DISTINCT uscc FROM seen
        WHERE $as_of < event_date + INTERVAL {NEGATIVE_LOOKBACK_MONTHS} MONTH
          AND {_negative_sql(catalogue)}
    ),
    red AS (  -- A-grade taxpayers without a negative record in three years
        SELECT g.uscc, 'red_list' AS list, [g.latest.rid] AS source_records
        FROM grade g
        WHERE g.latest.grade = 'A'
          AND g.uscc NOT IN (SELECT uscc FROM negative)
          AND g.uscc NOT IN (SELECT uscc FROM open_listed WHERE list <> 'red_list')
          AND g.uscc IN (SELECT uscc FROM entity WHERE status = 'active')
    ),
    proposed AS (
        SELECT * FROM abnormal UNION ALL SELECT * FROM serious UNION ALL SELECT * FROM red
    )
    SELECT p.uscc, p.list, p.source_records
    FROM proposed p JOIN entity e ON e.uscc = p.uscc
    WHERE e.status <> 'deregistered'
      -- a missing annual report lists only those who must file one with market regulation
      AND (p.list <> 'abnormal_operation_list' OR e.kind IN {filers})
      AND NOT EXISTS (SELECT 1 FROM open_listed o WHERE o.uscc = p.uscc AND o.list = p.list)
      AND NOT EXISTS (SELECT 1 FROM $open_entries x WHERE x.uscc = p.uscc AND x.list = p.list)
    ORDER BY p.list, p.uscc
    """


DERIVED = {
    "abnormal_operation_list": (BASIS_ABNORMAL, "missing_annual_report"),
    "serious_dishonest_list": (BASIS_SERIOUS, None),
    "red_list": (BASIS_RED, "a_grade_taxpayer"),
}


def _derived_reason(list_: str, year: int) -> str:
    return {
        "abnormal_operation_list": f"未按规定报送{year}年度报告（截止{year + 1}年6月30日）",
        "serious_dishonest_list": "受到吊销许可证件、责令关闭或从业禁止等较重行政处罚",
        "red_list": "纳税信用A级，三年内无不良信用记录",
    }[list_]


def _spent_grounds(con: Connection) -> dict[tuple[str, str], set[str]]:
    """The source records of each company's rejected and removed entries, per list; not of a
    lapsed one (none of its records grounded it when it lapsed: one that grounds a listing again
    is a ground again)."""
    c, log = list_entries.c, lifecycle_log.c
    lapsed = sa.exists().where(
        log.uscc == c.uscc, log.case_type == "list", log.case_id == c.id, log.action == LAPSED
    )
    spent: dict[tuple[str, str], set[str]] = {}
    for uscc, list_, sources in con.execute(
        sa.select(c.uscc, c.list, c.source_records).where(c.status.in_(CLOSED_STATUSES), ~lapsed)
    ):
        spent.setdefault((uscc, list_), set()).update(json.loads(sources or "[]"))
    return spent


def derive(
    engine: Engine,
    store: Store,
    as_of: date,
    today: date | None = None,
    by: int | None = None,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """Propose the entries the records call for as of `as_of` (DOMAIN §8):

    - abnormal-operation list: the annual report last due (report year `report_year_due`) is
      `missing` and not filed since: listed at once (only those who file annual reports with
      market regulation, `features.specs.ANNUAL_REPORT_FILERS`);
    - serious dishonest list: a serious penalty of the last year that revoked a licence, closed
      the business or banned from the trade: `notified`, the company may object;
    - red list: the latest current tax credit grade is A and no negative record in 3 years
      (and on no negative list): listed at once.
    Records are read in their corrected form on `today`, without those repaired or withdrawn
    by then. A company already on the list (by a record or by an open entry) is left out, so
    running it again proposes nothing new; so is one whose rejected or removed entry of the list
    cites every record that grounds it now (an objection upheld, a listing removed by objection,
    repair or the authority: a new entry needs a new ground). Returns the counts per list.
    """
    today = today or china_today()
    if as_of > today:
        raise ListError("invalid", f"as_of {as_of} is after today ({today})")
    cat = catalogue or default_catalogue()
    year = report_year_due(as_of)
    with _withdrawn_unless_committed(engine, store, today) as written, engine.begin() as con:
        _serialise(con)
        c = list_entries.c
        open_rows = con.execute(
            sa.select(c.uscc, c.list).where(
                c.status.in_(OPEN_STATUSES), sa.or_(c.term_end.is_(None), c.term_end > today)
            )
        ).all()  # fmt: skip
        open_entries = pa.table({
            "uscc": pa.array([u for u, _ in open_rows], pa.string()),
            "list": pa.array([x for _, x in open_rows], pa.string()),
        })  # fmt: skip
        with store.connect() as duck:
            duck.register("open_entries_input", open_entries)
            found = duck.sql(
                candidates_sql(cat).replace("$open_entries", "open_entries_input"),
                params={"as_of": as_of, "today": today, "year": year},
            ).to_arrow_table().to_pylist()  # fmt: skip
        spent = _spent_grounds(con)
        found = [f for f in found if (f["uscc"], f["list"]) not in spent
                 or not set(f["source_records"]) <= spent[(f["uscc"], f["list"])]]  # fmt: skip
        objection_due = workdays.add_working_days(today, OBJECTION_WORKING_DAYS)
        rows: list[dict[str, Any]] = []
        for f in found:
            notified = f["list"] in NOTIFIED_FIRST
            term_end, earliest = (None, None) if notified else term_of(f["list"], today, cat)
            rows.append({
                "uscc": f["uscc"], "list": f["list"],
                "status": "notified" if notified else "listed",
                "legal_basis": DERIVED[f["list"]][0], "reason": _derived_reason(f["list"], year),
                "source_records": json.dumps(f["source_records"], ensure_ascii=False),
                "proposed_on": today, "proposed_by": by,
                "objection_due": objection_due if notified else None,
                "listed_on": None if notified else today,
                "term_end": term_end, "earliest_removal": earliest,
            })  # fmt: skip
        ids: list[int] = []
        if rows:
            ids = [
                int(i) for i in con.execute(
                    list_entries.insert().returning(list_entries.c.id,
                                                    sort_by_parameter_order=True),
                    rows,
                ).scalars()
            ]  # fmt: skip
        # records of these ids left by uncommitted steps (SQLite gives rolled-back ids again)
        record_ids, stale = _record_ids(store, [listing_id(i) for i in ids])
        logs: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        named: list[dict[str, Any]] = []
        for entry_id, row in zip(ids, rows, strict=True):
            basis, ground = DERIVED[row["list"]]
            logs.append(lifecycle.step("list", entry_id, row["uscc"], "proposed", by, {
                "list": row["list"], "legal_basis": basis, "reason": row["reason"],
                "ground": ground, "source_records": json.loads(row["source_records"]),
                "derived": {"as_of": as_of, "report_year": year},
            }))  # fmt: skip
            if row["status"] == "notified":
                logs.append(lifecycle.step("list", entry_id, row["uscc"], "notified", by,
                                     {"objection_due": objection_due}))  # fmt: skip
                continue
            record_id = record_ids[listing_id(entry_id)]
            named.append({"entry": entry_id, "rid": record_id})
            attributes = _listing_attributes(entry_id, row["list"], basis, row["reason"], ground)
            records.append(_record_row(record_id, row["uscc"], row["list"], "listed", today,
                                       attributes))  # fmt: skip
            logs.append(lifecycle.step("list", entry_id, row["uscc"], "listed", by, {
                "record_id": record_id, "term_end": row["term_end"],
                "earliest_removal": row["earliest_removal"],
            }))  # fmt: skip
        if named:
            con.execute(
                list_entries.update()
                .where(list_entries.c.id == sa.bindparam("entry"))
                .values(record_id=sa.bindparam("rid")),
                named,
            )  # fmt: skip
        if logs:
            con.execute(lifecycle_log.insert(), logs)
        _store_last(store, stale, records, today, f"derive-{as_of.isoformat()}", written)
    counts = {name: 0 for name in DERIVED}
    for row in rows:
        counts[row["list"]] += 1
    return {
        "as_of": as_of, "today": today, "report_year": year, "proposed": counts,
        "listed": len(records), "notified": len(rows) - len(records),
    }  # fmt: skip
