"""Single-company look-ups, the hot path of the API.

SQLite answers a primary-key read in microseconds, so the look-up runs on the event loop. On
PostgreSQL a synchronous read would block the loop for several network round trips (begin,
pre-ping, query, rollback), so look-ups go through a small pool of psycopg async connections in
autocommit mode (measured: 877 → 2,614 requests/s at 32 clients on 1 M companies).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from features.specs import FeatureSpec, Spec, by_name
from records.catalogue import default_catalogue
from records.publicity import public_on, stored_with_events
from records.schema import VERSION_ORDER
from records.store import Store
from records.workdays import china_today
from serving.db import company_history, objections

logger = logging.getLogger(__name__)

_SQL = {
    full: f"SELECT 0, {doc} FROM companies WHERE uscc = %s "
    "UNION ALL SELECT 1, record_id FROM objections WHERE uscc = %s AND status = 'open'"
    for full, doc in ((True, "full_doc"), (False, "public_doc"))
}
"""The document and the records under an open objection, in one round trip."""
_SQLITE = {full: sql.replace("%s", "?") for full, sql in _SQL.items()}
"""The same in SQLite's parameter style."""


@dataclass(frozen=True)
class Newcomer:
    """A company registered after the latest batch loaded: in the store, not yet scored."""

    registered: date
    """Its establishment date (the day it became known here where none is given)."""
    known_since: date
    """The day its registration was first recorded here."""


NEWCOMERS_SECONDS = 60.0
"""How often the service looks in the store for companies registered since the last load."""
NEWCOMERS_MAX = 100_000
"""Most newcomers held (the latest registered): a province that loaded no batch yet has every
company new, and the look-ups would hold them all in each worker."""


class Lookup:
    def __init__(self, engine: Engine, url: str, size: int = 8) -> None:
        self.engine = engine
        self.url = url
        self.size = size
        self._pool: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self._sqlite: Any = None
        """The look-ups' own SQLite connection (`_read_sqlite`), opened at the first one."""
        self.newcomers: dict[str, Newcomer] = {}
        """Companies registered since the latest batch loaded, refreshed from the store every
        `NEWCOMERS_SECONDS` (`refresh_newcomers`), so that a look-up that finds no document
        tells "not yet scored" from "unknown" without reading the store."""

    def refresh_newcomers(self, store: Store) -> int:
        """Read the companies first recorded after the latest batch loaded (all, up to
        `NEWCOMERS_MAX`, when none was loaded) into `newcomers`; their number."""
        with self.engine.connect() as con:
            since = con.execute(
                sa.select(sa.func.max(company_history.c.as_of))
                .where(company_history.c.source == "batch")
            ).scalar()  # fmt: skip
        with store.connect() as con:
            # only the codes recorded since are grouped (the files' date statistics skip the
            # rest), not the whole register
            rows = con.execute(
                "SELECT uscc, min(recorded_date) AS known_since, "
                f"arg_max(established_date, {VERSION_ORDER}) AS established "
                "FROM entities WHERE uscc IN (SELECT uscc FROM entities WHERE recorded_date > ?) "
                "GROUP BY uscc HAVING min(recorded_date) > ? "
                "ORDER BY known_since DESC, uscc LIMIT ?",
                [since or date.min, since or date.min, NEWCOMERS_MAX],
            ).fetchall()  # fmt: skip
        self.newcomers = {
            str(u): Newcomer(registered=established or known, known_since=known)
            for u, known, established in rows
        }
        return len(self.newcomers)

    def try_refresh_newcomers(self, store: Store) -> None:
        """`refresh_newcomers`, a failure logged (a store being written or not there yet: the
        last list stays until the next time)."""
        try:
            self.refresh_newcomers(store)
        except Exception as exc:
            logger.warning("could not read the companies registered since the last load: %s", exc)

    async def keep_newcomers(self, store: Store, seconds: float = NEWCOMERS_SECONDS) -> None:
        """Refresh `newcomers` every `seconds`."""
        while True:
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.try_refresh_newcomers, store)

    def _read_sqlite(self, sql: str, uscc: str) -> list[Any]:
        """One look-up statement on SQLite, on a connection of its own kept for the look-ups
        (they run on the event loop, one at a time): checking a connection out of SQLAlchemy's
        pool and wrapping the result took 19 % of the time a department's look-up held the
        interpreter. The read opens no transaction (the driver begins one only before a
        write), so each sees the latest committed load; any error closes the connection, and
        the next look-up opens a new one (a failed read is tried once more on it at once)."""
        for attempt in (1, 2):
            if self._sqlite is None:
                self._sqlite = self.engine.raw_connection()
            try:
                cursor = self._sqlite.cursor()
                try:
                    cursor.execute(sql, (uscc, uscc))
                    rows: list[Any] = cursor.fetchall()
                finally:
                    cursor.close()
                # never expected (reads begin none): no snapshot is kept past the read
                if self._sqlite.driver_connection.in_transaction:
                    self._sqlite.rollback()
                return rows
            except Exception:
                with contextlib.suppress(Exception):
                    self._sqlite.invalidate()
                self._sqlite = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @property
    def asynchronous(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conninfo = make_url(self.url).set(drivername="postgresql")
        return await psycopg.AsyncConnection.connect(
            conninfo.render_as_string(hide_password=False), autocommit=True
        )

    async def open(self) -> None:
        if not self.asynchronous:
            return
        self._pool = asyncio.Queue()
        for _ in range(self.size):
            self._pool.put_nowait(await self._connect())

    async def close(self) -> None:
        if self._sqlite is not None:
            with contextlib.suppress(Exception):
                self._sqlite.close()
            self._sqlite = None
        if self._pool is None:
            return
        while not self._pool.empty():
            await self._pool.get_nowait().close()

    async def company(self, uscc: str, full: bool) -> tuple[str | None, set[str]]:
        """The company's served document (full or public) and the records of it under an open
        objection now (`disputed`: the flag is read live, not from the document)."""
        if self._pool is None:
            rows = self._read_sqlite(_SQLITE[full], uscc)
            docs = [str(value) for kind, value in rows if kind == 0]
            return (docs[0] if docs else None), {str(v) for kind, v in rows if kind == 1}
        con = await self._pool.get()
        try:
            for attempt in (1, 2):
                try:
                    cursor = await con.execute(_SQL[full], (uscc, uscc))
                    rows = await cursor.fetchall()
                    break
                except psycopg.OperationalError:
                    if attempt == 2 or not (con.broken or con.closed):
                        raise  # a statement refused (a timeout) on a healthy connection
                    # the server ended the connection (a restart, a failover, a terminated
                    # backend): it is replaced and the read tried once more on the new one, so
                    # a database that is back costs no request (each pooled connection fails
                    # once); if it cannot be reached, the read fails (503)
                    with contextlib.suppress(Exception):
                        await con.close()
                    con = await self._connect()
        finally:
            self._pool.put_nowait(con)
        docs = [str(value) for kind, value in rows if kind == 0]
        return (docs[0] if docs else None), {str(value) for kind, value in rows if kind == 1}


def registered_entity(store: Store, code: str, day: date) -> dict[str, Any] | None:
    """The company's registration facts as recorded by `day` (name, entity type, region), or
    None when it was not registered here by then: what decides whether a code is known (the
    public page, the records)."""
    with store.connect() as con:
        rows = con.sql(
            f"SELECT arg_max(name, {VERSION_ORDER}) AS name, "
            f"arg_max(entity_type, {VERSION_ORDER}) AS entity_type, "
            f"arg_max(region, {VERSION_ORDER}) AS region, "
            "count(*) AS n "
            f"FROM {store.scan('entities', code)} WHERE uscc = ? AND recorded_date <= ?",
            params=[code, day],
        ).to_arrow_table().to_pylist()  # fmt: skip
    return rows[0] if rows and rows[0]["n"] else None


# ---- the open-objection flag, read live ---------------------------------------------------------


def disputed_on(con: Connection, codes: list[str], day: date) -> dict[str, set[str]]:
    """Per company, the records under an objection open on `day` (filed by then and not decided
    before its end), from the objections table: one query for all the codes."""
    rows = con.execute(
        sa.select(objections.c.uscc, objections.c.record_id).where(
            objections.c.uscc.in_(codes), objections.c.filed_on <= day,
            sa.or_(objections.c.status == "open", objections.c.decided_on > day),
        )
    ).all()  # fmt: skip
    out: dict[str, set[str]] = {}
    for uscc, record_id in rows:
        out.setdefault(str(uscc), set()).add(str(record_id))
    return out


def objection_flags(
    store: Store,
    disputed: dict[str, set[str]],
    entity_types: dict[str, str | None],
    *,
    public: bool,
    department: str | None = None,
    day: date | None = None,
) -> dict[str, bool]:
    """The open-objection flag of each company (DOMAIN §10: visible to every consumer of the
    record at once): whether a record it may see is under objection. The public (and a company
    looking at another) sees the records public on `day` and still public today, as the public
    page does; a department those public today or its own; the other authorities and the
    company itself every record. The store is read only when a company has a disputed record
    the view may not include."""
    today = china_today()
    day = day or today
    codes = list(entity_types)
    if not public and department is None:
        return {u: bool(disputed.get(u)) for u in codes}
    wanted = sorted({rid for u in codes for rid in disputed.get(u, ())})
    seen = _visible(store, wanted, entity_types, department, day, today) if wanted else set()
    return {u: bool(disputed.get(u, set()) & seen) for u in codes}


# ---- what a department sees of a company's reasons ---------------------------------------------


@functools.cache
def _specs() -> dict[str, Spec]:
    return by_name()


_UNIT_ZH = re.compile(r"\{value\}(个月|[次项元天件个条家年])?")
_VALUE_EN = re.compile(r"^\{value\}\s+|(\s+of)?:?\s*(CNY\s+)?\{value\}(\s+(days?|months?))?")


def plain_reason(code: str, kind: str) -> tuple[str, str]:
    """A reason's feature in words without its value (Chinese, English): what a department
    reads of a reason whose records it may not see ("近3年零申报", "nil tax returns in the
    last 3 years"); the code itself for a feature the installed specs do not know."""
    feature = code.removeprefix("veto:") if kind == "veto" else code
    spec = _specs().get(feature)
    if spec is None:
        return code, code
    zh = _UNIT_ZH.sub("", spec.reason_zh).strip(" ：:")
    en = " ".join(_VALUE_EN.sub(" ", spec.reason_en).split()).strip(" :")
    return zh or code, en or code


def _record_feature(reason: dict[str, Any]) -> FeatureSpec | None:
    """The record feature a model reason or a veto rests on (None: entity facts, defaults)."""
    kind = reason.get("kind")
    if kind not in ("model", "veto"):
        return None
    spec = _specs().get(str(reason.get("code", "")).removeprefix("veto:"))
    return spec if isinstance(spec, FeatureSpec) else None


def _shared_categories(spec: FeatureSpec) -> bool:
    catalogue = default_catalogue()
    return all(c in catalogue and catalogue[c].shared_with_public for c in spec.categories)


def _withheld(reason: dict[str, Any], department: str | None) -> bool:
    """Whether a department reads this reason without its evidence: it rests on records of a
    category the catalogue does not share with the public (tax returns), unless every record
    behind it is the department's own. Decided from the document and the catalogue alone, so
    a department's look-up never reads the store (a look-up by record would take 0.2-0.4 s at
    200,000 companies): what the catalogue shares, a department reads evidence of."""
    spec = _record_feature(reason)
    if spec is None or _shared_categories(spec):
        return False
    departments = set((reason.get("evidence") or {}).get("departments") or [])
    return not (departments and department is not None and departments <= {department})


@functools.cache
def _withholding() -> tuple[str, ...]:
    """`name"` of every feature resting on a category the catalogue does not share."""
    return tuple(sorted(f'{n}"' for n, s in _specs().items()
                        if isinstance(s, FeatureSpec) and not _shared_categories(s)))  # fmt: skip


def may_withhold(text: str) -> bool:
    """Whether `department_view` could change this stored (full) document: it names, as a
    reason's code (`"name"`, `"veto:name"`) or a deduction's feature, a feature resting on
    categories the catalogue does not share. A substring test per name (17 of them: 7 µs a
    document; one regular expression of them all: 9 µs): the 31 % of documents that name none
    (20,000 simulated companies) are served to a department as stored, not parsed and written
    again. A name that merely ends another's only costs the parse."""
    return any(name in text for name in _withholding())


def department_view(docs: list[dict[str, Any]], department: str | None) -> None:
    """Withhold from a department what the reasons of these (full) documents say about records
    of categories the catalogue does not share with it (`_withheld`): such a reason keeps its
    code, kind and contribution and says its feature in words (`plain_reason`), without the
    value, counts, dates, departments and record ids behind it (no `evidence`). The
    evaluation's deductions by the same rule: such a deduction keeps its feature and points,
    without its record ids (a deduction names no departments, so not even the department
    whose records they are sees them here; its records page does)."""
    for doc in docs:
        for deduction in (doc.get("evaluation") or {}).get("top_deductions") or []:
            if _withheld({"kind": "model", "code": deduction.get("feature")}, department):
                deduction.pop("records", None)
        tier = doc.get("tier") or {}
        for i, reason in enumerate(tier.get("reasons") or []):
            if not _withheld(reason, department):
                continue
            zh, en = plain_reason(str(reason["code"]), str(reason["kind"]))
            shown = {k: reason[k] for k in ("code", "kind", "contribution", "raised")
                     if k in reason}  # fmt: skip
            tier["reasons"][i] = {**shown, "zh": zh, "en": en}


def _visible(
    store: Store, record_ids: list[str], entity_types: dict[str, str | None],
    department: str | None, day: date | None = None, now: date | None = None,
) -> set[str]:  # fmt: skip
    """Of these records, those of `department` and those public on `day` (default today) and
    still public on `now`, as `records.publicity.records_on` has it for a view made on `now`."""
    today = china_today()
    day, now = day or today, now or today
    records, events = stored_with_events(store, record_ids, max(day, now))
    out = set()
    for rid, r in records.items():
        if department is not None and r["source_dept"] == department:
            out.add(rid)
            continue
        kind, later = entity_types.get(r["uscc"]), events.get(rid, [])
        known = [e for e in later if e["recorded_date"] <= day]
        if public_on(r, known, day, kind) and (now <= day or public_on(r, later, now, kind)):
            out.add(rid)
    return out
