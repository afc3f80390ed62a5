"""The audit log writer: every read of a company's credit information becomes a row.

Entries are queued by the request and written by one background thread in batches (one
transaction per batch, at least every `interval` seconds), so that look-ups do not wait for the
database's writer lock. `flush()` drains the queue (used at shutdown and by tests);
`backlog` is reported by /readyz.

Each line says who (key, role, department), when, which company, why (the purpose as written),
where (the endpoint or command), the status answered, and what else chose what was read
(`detail`: the request's query parameters, such as the day `on=` of a records read, `as_of=` of
a re-score, a list's filters; bound once per request by `bind_asked`, so that every line of the
request carries them without each route passing them on).

Nothing read goes unlogged:
- a purpose and a detail are kept as text a database stores: control characters (a NUL sent as
  `%00`, which PostgreSQL refuses in text) become spaces, and they are cut at their columns'
  widths (256 and 512 characters);
- a batch the database refuses is written row by row: one row it refuses as data no longer
  holds back the others; such a row goes to the audit quarantine (`AuditQuarantine`: an
  append-only JSON-lines file beside the data, with the database's reason, and the service
  log), and the service reports itself not ready (/readyz 503) until an operator has looked
  at it and acknowledged it (`credsup audit acknowledge`), across restarts and workers;
- while the log cannot be written (the database is down), entries wait in the queue; past
  `max_backlog` of them `log` raises `AuditUnavailable` and the read is answered 503, not
  served unlogged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.auth import Caller
from serving.db import audit_log

logger = logging.getLogger(__name__)

PURPOSE_LENGTH = 256
"""The longest purpose kept (the column's length)."""

DETAIL_LENGTH = 512
"""The longest detail kept (the column's length)."""


class AuditUnavailable(Exception):
    """The audit log cannot take more entries: the read must not be served."""


def clean_purpose(text: str | None) -> str | None:
    """A purpose as stored: control characters as spaces, trimmed, at most 256 characters."""
    return _clean(text, PURPOSE_LENGTH)


def _clean(text: str | None, length: int) -> str | None:
    if text is None:
        return None
    shown = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return shown.strip()[:length] or None


def asked(params: Iterable[tuple[str, str]]) -> str | None:
    """Parameters as a line's detail: `name=value` joined by `&`, as written (not
    percent-encoded: `on=2026-03-31&status=open`), cleaned and cut as stored; None for none."""
    return _clean("&".join(f"{name}={value}" for name, value in params), DETAIL_LENGTH)


_ASKED: ContextVar[str | None] = ContextVar("audit_asked", default=None)
"""The detail of the request (or command) being served: what `bind_asked` bound last in this
context. Each request runs in a context of its own, so one request's never reaches another's."""


def bind_asked(params: Iterable[tuple[str, str]]) -> None:
    """Every line the current request (or command) writes keeps these parameters as its detail:
    the service binds the query's (`serving.deps.get_caller`), a command its options."""
    _ASKED.set(asked(params))


@contextlib.contextmanager
def asking(params: Iterable[tuple[str, str]]) -> Iterator[None]:
    """`bind_asked` for a block (a command's read): the binding ends with it."""
    token = _ASKED.set(asked(params))
    try:
        yield
    finally:
        _ASKED.reset(token)


PROBE_STATUS = 422
"""The status of a malformed code's line: what a look-up of it answers."""


def probe_detail(given: str) -> str | None:
    """The detail of the line of a malformed code: the code as given, then the rest of what was
    asked (the code leaves the `uscc` column empty: it names no company)."""
    rest = _ASKED.get()
    return _clean(f"uscc={given}" + (f"&{rest}" if rest else ""), DETAIL_LENGTH)


class AuditQuarantine:
    """Audit rows the database refused, kept so that no read goes unrecorded: `refused.jsonl`
    (a line per row: the row, the database's reason, when and by which process) and
    `acknowledged.jsonl` (a line per acknowledgement: the last entry it covers, by whom, why), both
    only appended to. Rows are JSON with every non-ASCII and control character escaped, so the
    file holds what the database would not (a NUL is written as \\u0000).

    Open entries (not yet acknowledged) keep every service using this directory unready, also
    after a restart; an operator reads them (`credsup audit refused`), mends the cause and
    acknowledges them (`credsup audit acknowledge --by … --note …`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.entries_path = directory / "refused.jsonl"
        self.acknowledged_path = directory / "acknowledged.jsonl"
        self._lock = threading.Lock()
        self._seen: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._open = 0

    def add(self, row: dict[str, Any], reason: str) -> None:
        entry = {
            "id": secrets.token_hex(8), "refused_at": datetime.now(UTC).isoformat(),
            "reason": reason, "pid": os.getpid(), "row": {**row, "at": _iso(row.get("at"))},
        }  # fmt: skip
        self._append(self.entries_path, entry)

    def entries(self) -> list[dict[str, Any]]:
        return _read_lines(self.entries_path)

    def acknowledgements(self) -> list[dict[str, Any]]:
        return _read_lines(self.acknowledged_path)

    def listing(self) -> tuple[list[dict[str, Any]], int]:
        """(every entry with `acknowledged` set, how many are open). Acknowledged are those up
        to the last one an acknowledgement named (by its id, not its place: a file rotated or
        archived since starts again, and what it holds is open)."""
        named = {a.get("last_id") for a in self.acknowledgements()}
        entries = self.entries()
        through = next(
            (i + 1 for i in range(len(entries) - 1, -1, -1) if entries[i].get("id") in named), 0
        )
        shown = [{**e, "acknowledged": i < through} for i, e in enumerate(entries)]
        return shown, len(entries) - through

    def open_count(self) -> int:
        """Entries not yet acknowledged (re-read only when a file changed: /readyz asks)."""
        seen = (_stamp(self.entries_path), _stamp(self.acknowledged_path))
        if seen != self._seen:
            self._open = self.listing()[1]
            self._seen = seen
        return self._open

    def acknowledge(self, by: str, note: str) -> int:
        """Acknowledge every entry written so far; the number newly acknowledged."""
        if not by.strip() or not note.strip():
            raise ValueError("an acknowledgement names who made it (--by) and why (--note)")
        entries, still_open = self.listing()
        if not still_open:
            return 0
        self._append(self.acknowledged_path, {
            "at": datetime.now(UTC).isoformat(), "last_id": entries[-1]["id"],
            "entries": still_open, "by": by.strip(), "note": note.strip(),
        })  # fmt: skip
        return still_open

    def _append(self, path: Path, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=True, default=str) + "\n").encode()
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            # one write of one line with O_APPEND: whole lines, also from several workers
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # after a line cut short by a crash: a line of its own
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def _iso(moment: Any) -> Any:
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # none yet, or no folder for it
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="ascii")
    except (FileNotFoundError, NotADirectoryError):
        return []
    # a line cut short by a crash mid-write is not an entry (it was not acknowledged either)
    out = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


COLUMNS = ("at", "key_id", "role", "department", "uscc", "endpoint", "purpose", "status", "detail")
"""An audit row's columns, in the order `insert_rows` sends them."""

_INSERT = {
    "sqlite": f"INSERT INTO audit_log ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(COLUMNS)))
    + " FROM json_each(?)",
    "postgresql": f"INSERT INTO audit_log ({', '.join(COLUMNS)}) SELECT "
    "(e->>0)::timestamptz, (e->>1)::integer, e->>2, e->>3, e->>4, e->>5, e->>6, "
    "(e->>7)::integer, e->>8 FROM json_array_elements(%s::json) AS e",
}
"""A batch of rows in one statement with one parameter (a JSON array of rows): the database
unpacks it. Row by row (`executemany`) the driver binds each row in Python and SQLite's gives
the interpreter's lock back and takes it again for each: measured on 20,000 companies (SQLite,
one worker, the plain look-up route), 3,380 → 3,534 look-ups a second."""


def insert_rows(con: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write audit rows in one statement (SQLite and PostgreSQL; others by `executemany`).
    The moments are stored as SQLAlchemy stores them (`UtcDateTime`: UTC, on SQLite without a
    zone as `YYYY-MM-DD HH:MM:SS.ffffff`), so that reads see no difference."""
    name = con.dialect.name
    if name not in _INSERT:
        con.execute(audit_log.insert(), list(rows))
        return
    batch = []
    for row in rows:
        at: datetime = row["at"]
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        moment = at.strftime("%Y-%m-%d %H:%M:%S.%f") if name == "sqlite" else at.isoformat()
        batch.append([moment, *(row.get(c) for c in COLUMNS[1:])])
    con.exec_driver_sql(_INSERT[name], (json.dumps(batch, ensure_ascii=False),))


UNFILED_RETRY_SECONDS = 30.0
"""How often refused rows the quarantine could not take are offered to it again."""


class AuditWriter:
    def __init__(
        self,
        engine: Engine,
        interval: float = 0.05,
        batch: int = 5000,
        max_backlog: int = 100_000,
        quarantine: AuditQuarantine | None = None,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.batch = batch
        self.max_backlog = max_backlog
        self.quarantine = quarantine
        self.refused: list[tuple[dict[str, Any], str]] = []
        """Rows the database refused in this process (also in the quarantine, if there is one)."""
        self._unfiled: list[tuple[dict[str, Any], str]] = []
        """Refused rows the quarantine could not take either: offered to it again every
        `UNFILED_RETRY_SECONDS` (once its cause is mended they are filed and acknowledged as
        any other), and in the service log."""
        self._unfiled_tried = 0.0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._admit = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self.written = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def log(
        self,
        caller: Caller,
        endpoint: str,
        uscc: str | None,
        purpose: str | None,
        status: int,
        *,
        detail: str | None = None,
    ) -> None:
        self.log_each(caller, endpoint, [(uscc, status)], purpose, detail=detail)

    def log_each(
        self,
        caller: Caller,
        endpoint: str,
        lines: Sequence[tuple[str | None, int]],
        purpose: str | None,
        *,
        detail: str | None = None,
        admitted: bool = False,
        probes: Sequence[str] = (),
    ) -> None:
        """The lines (company, status) of one read, queued all or none: refused when they
        would take the backlog past its limit, so one large read cannot fill the queue for
        everyone, nor leave half its lines for a read that is then not served. Admission and
        queueing are one step for concurrent reads. `detail` defaults to what the request (or
        command) bound (`bind_asked`). `admitted`: the lines of a change already made, whose
        room was asked for before it was made (`ensure_room`): queued whatever the backlog,
        since the change stands and its line must not be lost. `probes`: malformed codes the
        read was asked for (a batch's `invalid`), each a line without a company, 422 (what a
        look-up of it answers), the code as given in its detail (`probe_detail`)."""
        at = datetime.now(UTC)
        cleaned = clean_purpose(purpose)
        shown = _ASKED.get() if detail is None else _clean(detail, DETAIL_LENGTH)
        rows = [(uscc, status, shown) for uscc, status in lines]
        rows += [(None, PROBE_STATUS, probe_detail(given)) for given in probes]
        with self._admit:
            if not admitted:
                self._check_room(len(rows))
            for uscc, status, said in rows:
                self._queue.put({
                    "at": at, "key_id": caller.key_id, "role": caller.role,
                    "department": caller.department, "uscc": uscc, "endpoint": endpoint,
                    "purpose": cleaned, "status": status, "detail": said,
                })  # fmt: skip

    def ensure_room(self, lines: int = 1) -> None:
        """Raises `AuditUnavailable` unless `lines` more would be taken now: asked before a
        change is made, so that a change is refused (503) rather than made and left unlogged."""
        with self._admit:
            self._check_room(lines)

    def _check_room(self, lines: int) -> None:
        behind = self._queue.qsize()
        if behind + lines > self.max_backlog:
            raise AuditUnavailable(
                f"the audit log is {behind:,} entries behind and this read would add "
                f"{lines:,} (the database does not take them fast enough): credit "
                "information is not served unlogged"
            )

    def log_companies(
        self,
        caller: Caller,
        endpoint: str,
        usccs: Iterable[str],
        purpose: str | None,
        status: int = 200,
        *,
        detail: str | None = None,
    ) -> None:
        """A read of many companies (a list, a page, an export): a line per company, once; a
        read that found none is one line without a company (the query itself is on record)."""
        codes: list[str | None] = list(dict.fromkeys(usccs))
        self.log_each(caller, endpoint, [(code, status) for code in codes or [None]], purpose,
                      detail=detail)  # fmt: skip

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    @property
    def open_refused(self) -> int:
        """Refused rows nobody has acknowledged: the service is not ready while there are any."""
        if self.quarantine is None:
            return len(self.refused)
        return self.quarantine.open_count() + self.unfiled

    def flush(self) -> None:
        with self._lock:
            while True:
                rows: list[dict[str, Any]] = []
                try:
                    while len(rows) < self.batch:
                        rows.append(self._queue.get_nowait())
                except queue.Empty:
                    pass
                if not rows:
                    return
                try:
                    with self.engine.begin() as con:
                        insert_rows(con, rows)
                    self.written += len(rows)
                except sa.exc.DBAPIError as exc:
                    self.failures += 1
                    if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError):
                        self._requeue(rows)  # the database is away: the batch waits for it
                        raise
                    self._row_by_row(rows)
                except Exception:
                    self.failures += 1
                    self._requeue(rows)
                    raise

    def _requeue(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:  # keep them: nothing is dropped
            self._queue.put(row)

    def _row_by_row(self, rows: list[dict[str, Any]]) -> None:
        """A batch the database refused: each row on its own, so that one bad row does not hold
        back the rest; the rows it refuses as data are set aside in `refused`."""
        for i, row in enumerate(rows):
            try:
                with self.engine.begin() as con:
                    con.execute(audit_log.insert(), [row])
                self.written += 1
            except (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
                reason = f"{type(exc.orig).__name__}: {exc.orig}"
                self.refused.append((row, reason))
                logger.error("audit row refused by the database (%s): %r", exc.orig, row)
                if self.quarantine is not None:
                    try:
                        self.quarantine.add(row, reason)
                    except Exception:
                        self._unfiled.append((row, reason))
                        logger.exception("the audit quarantine could not take the row either")
            except Exception:
                self._requeue(rows[i:])
                raise

    @property
    def unfiled(self) -> int:
        """Refused rows the quarantine has not taken yet."""
        return len(self._unfiled)

    def file_unfiled(self) -> int:
        """Offers the rows the quarantine could not take to it again; how many are still
        unfiled."""
        if self.quarantine is None:
            return 0
        with self._lock:
            self._unfiled_tried = time.monotonic()
            left, last = [], None
            for row, reason in self._unfiled:
                try:
                    self.quarantine.add(row, reason)
                except Exception as exc:
                    left.append((row, reason))
                    last = exc
            if left:
                logger.error("%d refused audit row(s) still cannot be filed: %s", len(left), last)
            elif self._unfiled:
                logger.warning("%d refused audit row(s) now filed", len(self._unfiled))
            self._unfiled = left
            return len(left)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # a failed batch stays queued and is retried next round (counted in `failures`)
            with contextlib.suppress(Exception):
                self.flush()
            if self._unfiled and time.monotonic() - self._unfiled_tried > UNFILED_RETRY_SECONDS:
                with contextlib.suppress(Exception):
                    self.file_unfiled()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()
