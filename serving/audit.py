"""The audit log writer: every read of a company's credit information becomes a row.

Entries are queued by the request and written by one background thread in batches (one
transaction per batch, at least every `interval` seconds), so that look-ups do not wait for the
database's writer lock. `flush()` drains the queue (used at shutdown and by tests);
`backlog` is reported by /readyz.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from serving.auth import Caller
from serving.db import audit_log


class AuditWriter:
    def __init__(self, engine: Engine, interval: float = 0.05, batch: int = 5000) -> None:
        self.engine = engine
        self.interval = interval
        self.batch = batch
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
        self._queue.put(
            {
                "at": datetime.now(UTC),
                "key_id": caller.key_id,
                "role": caller.role,
                "department": caller.department,
                "uscc": uscc,
                "endpoint": endpoint,
                "purpose": purpose,
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
        """A read of many companies (a list, a page, an export): a line per company, once."""
        for code in dict.fromkeys(usccs):
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
                except Exception:
                    self.failures += 1
                    for row in rows:  # keep them: nothing is dropped
                        self._queue.put(row)
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
