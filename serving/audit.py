"""The audit log writer: every read of a company's credit information becomes a row.

Entries are queued by the request and written by one background thread in batches (one
transaction per batch, at least every `interval` seconds), so that look-ups do not wait for the
database's writer lock. `flush()` drains the queue (used at shutdown and by tests);
`backlog` is reported by /readyz.

Nothing read goes unlogged:
- a purpose is kept as text a database stores: control characters (a NUL sent as `%00`, which
  PostgreSQL refuses in text) become spaces, and it is cut at 256 characters;
- a batch the database refuses is written row by row: one row it refuses as data no longer
  holds back the others; such a row is kept in `refused` (and written to the service log), and
  the service reports itself not ready (/readyz 503) until it is restarted;
- while the log cannot be written (the database is down), entries wait in the queue; past
  `max_backlog` of them `log` raises `AuditUnavailable` and the read is answered 503, not
  served unlogged.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.auth import Caller
from serving.db import audit_log

logger = logging.getLogger(__name__)

PURPOSE_LENGTH = 256
"""The longest purpose kept (the column's length)."""


class AuditUnavailable(Exception):
    """The audit log cannot take more entries: the read must not be served."""


def clean_purpose(text: str | None) -> str | None:
    """A purpose as stored: control characters as spaces, trimmed, at most 256 characters."""
    if text is None:
        return None
    shown = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return shown.strip()[:PURPOSE_LENGTH] or None


class AuditWriter:
    def __init__(
        self, engine: Engine, interval: float = 0.05, batch: int = 5000, max_backlog: int = 100_000
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.batch = batch
        self.max_backlog = max_backlog
        self.refused: list[tuple[dict[str, Any], str]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self.written = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def log(
        self, caller: Caller, endpoint: str, uscc: str | None, purpose: str | None, status: int
    ) -> None:
        if self._queue.qsize() >= self.max_backlog:
            raise AuditUnavailable(
                f"the audit log is {self._queue.qsize():,} entries behind (the database does not "
                "take them): credit information is not served unlogged"
            )
        self._queue.put(
            {
                "at": datetime.now(UTC),
                "key_id": caller.key_id,
                "role": caller.role,
                "department": caller.department,
                "uscc": uscc,
                "endpoint": endpoint,
                "purpose": clean_purpose(purpose),
                "status": status,
            }
        )

    def log_companies(
        self,
        caller: Caller,
        endpoint: str,
        usccs: Iterable[str],
        purpose: str | None,
        status: int = 200,
    ) -> None:
        """A read of many companies (a list, a page, an export): a line per company, once; a
        read that found none is one line without a company (the query itself is on record)."""
        codes: list[str | None] = list(dict.fromkeys(usccs))
        for code in codes or [None]:
            self.log(caller, endpoint, code, purpose, status)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

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
                        con.execute(audit_log.insert(), rows)
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
                self.refused.append((row, f"{type(exc.orig).__name__}: {exc.orig}"))
                logger.error("audit row refused by the database (%s): %r", exc.orig, row)
            except Exception:
                self._requeue(rows[i:])
                raise

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # a failed batch stays queued and is retried next round (counted in `failures`)
            with contextlib.suppress(Exception):
                self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()
