"""The service compacts its own small writes (`CREDSUP_AUTO_COMPACT_FILES`).

Each spot-check result, objection step, repair or listing the service stores is a batch of a
row or a few, one small Parquet file. A company's read looks at every file not sorted yet, and an
ingestion checks its ids against every file: at 100,000 companies, 1,200 such files made a
records page 12x slower (21 → 255 ms) and a result's write 2x slower (216 → 450 ms);
threshold 64 kept the page within 1.2x (`benchmarks/loose_files.py`). `credsup compact` after
the day's ingestion sorts them away; in between, a thread of the service does it once a table
has `threshold` files not sorted yet:
`Store.compact(keep_largest=True)`, which merges them (and, past `MAX_RUNS` runs, the smaller
runs) into one run and never rewrites the largest run, the daily compaction's. It wakes when
the service commits a batch, and once a minute for what other processes (the command line)
wrote. Several workers each run one; the store's lock lets one compact at a time, and the others
then find nothing to do. A failure is logged and kept for `/metrics`; the next wake tries again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import Counter

from records.store import SORT_KEYS, Batch, Store, layout

log = logging.getLogger(__name__)

COMPACTIONS = Counter(
    "credsup_store_auto_compactions", "Compactions of the service's own small writes"
)
COMPACTION_FAILURES = Counter(
    "credsup_store_auto_compaction_failures", "Failed compactions of the service's small writes"
)


class AutoCompactor:
    def __init__(self, store: Store, threshold: int, period: float = 60.0) -> None:
        self.store = store
        self.threshold = threshold
        self.period = period
        self.compactions = 0
        self.failures = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.store.on_commit = self.notify
        self._thread = threading.Thread(target=self._loop, name="auto-compactor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self.store.on_commit = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self, batch: Batch) -> None:
        """Called by the store after each commit (under its lock: it only wakes the thread)."""
        if batch.kind != "compaction":
            self._wake.set()

    def due(self) -> list[str]:
        log_ = self.store.log()
        return [t for t in SORT_KEYS if layout(log_, t)["unsorted_files"] >= self.threshold]

    def run_once(self) -> dict[str, Any] | None:
        """Compact the tables with `threshold` files not sorted yet; None when none has."""
        tables = self.due()
        if not tables:
            return None
        done = self.store.compact(tables, keep_largest=True, min_loose=self.threshold)
        if done["batch"] is not None:
            self.compactions += 1
            COMPACTIONS.inc()
            log.info("compacted the service's small writes: %s", done["tables"])
        return done

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.period)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.store.repair_head()  # a HEAD a killed writer left behind the log
                self.run_once()
                self.last_error = None
            except Exception as exc:  # logged and shown; the next wake tries again
                self.failures += 1
                COMPACTION_FAILURES.inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("auto-compaction failed")
