"""Request rates per API key: a token bucket for each key of the public and company roles.

The public page is one company per request and a company reads its own; a key asking faster
than a person or a page would (a scraper, a runaway client) is answered 429 with Retry-After,
so that it cannot crowd out the departments' reads, nor fill the audit log's queue (every
company read is a line in it). Authorities, who must say why they read, are not limited here.

The buckets live in a fixed table of slots (key, tokens, last update). In one process it is
private memory; `credsup serve --workers N` creates a file for it before the workers start
(`CREDSUP_RATE_TABLE`), and every worker maps that file and takes an exclusive lock on it for
each look, so a key gets its rate from the service as a whole, not N times over. The clock is
CLOCK_MONOTONIC, one for the whole machine.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from pathlib import Path

SLOT = struct.Struct("<qdd")  # key id (0: never used), tokens, monotonic time of the last look
SLOTS = 65_536
"""Slots in a table (1.5 MiB): keys that asked within the last burst/rate seconds need one each;
a slot whose bucket has filled up again is as good as empty and is taken by the next key."""
PROBE = 32
"""Slots looked at from a key's home slot. When all of them hold keys still refilling, the one
looked at longest ago gives its slot up (that key starts again from a full bucket)."""


def create_table(path: Path, slots: int = SLOTS) -> Path:
    """An empty table file for the workers of one server (replaces any left by an earlier one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spare = path.with_name(path.name + ".new")
    with spare.open("wb") as out:
        out.truncate(slots * SLOT.size)
    os.replace(spare, path)  # a worker of the earlier server still mapping the old file keeps it
    return path


class RateLimiter:
    """`rate` requests a second per key, in bursts of up to `burst`; the buckets in `table` (a
    file made by `create_table`, shared by the processes that map it) or in private memory."""

    def __init__(
        self, rate: float, burst: int, table: Path | None = None, slots: int = SLOTS
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()  # threads of this process (the file lock is per process)
        self._file = None
        if table is None:
            self._slots = slots
            self._map = mmap.mmap(-1, slots * SLOT.size)
        else:
            self._file = table.open("r+b")
            size = os.fstat(self._file.fileno()).st_size
            if size == 0 or size % SLOT.size:
                raise ValueError(f"{table} is not a rate table ({size} bytes)")
            self._slots = size // SLOT.size
            self._map = mmap.mmap(self._file.fileno(), size)

    def close(self) -> None:
        self._map.close()
        if self._file is not None:
            self._file.close()

    def wait(self, key: int, now: float | None = None) -> float:
        """0 when the request may go now (and takes its token), else seconds until it may."""
        if key <= 0:
            raise ValueError(f"key ids are positive (got {key})")
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._file is None:
                return self._take(key, now)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                return self._take(key, now)
            finally:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def _take(self, key: int, now: float) -> float:
        home = (key * 0x9E3779B97F4A7C15) % (1 << 64) % self._slots  # spreads consecutive ids
        found = spare = oldest = None
        oldest_then = float("inf")
        for step in range(min(PROBE, self._slots)):
            slot = (home + step) % self._slots
            held, tokens, then = SLOT.unpack_from(self._map, slot * SLOT.size)
            if held == key:
                found = slot
                break
            if spare is None and (held == 0 or self._refill(tokens, then, now) >= self.burst):
                spare = slot
            if then < oldest_then:
                oldest, oldest_then = slot, then
        if found is None:  # a key not seen lately starts from a full bucket
            found = spare if spare is not None else oldest
            assert found is not None
            tokens, then = float(self.burst), now
        tokens = self._refill(tokens, then, now)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        SLOT.pack_into(self._map, found * SLOT.size, key, tokens - 1 if not wait else tokens, now)
        return wait

    def _refill(self, tokens: float, then: float, now: float) -> float:
        return min(float(self.burst), tokens + max(0.0, now - then) * self.rate)
