"""Request rates per API key: a token bucket for each key of the public and company roles.

The public page is one company per request and a company reads its own; a key asking faster
than a person or a page would (a scraper, a runaway client) is answered 429 with Retry-After,
so that it cannot crowd out the departments' reads, nor fill the audit log's queue (every
company read is a line in it). Authorities, who must say why they read, are not limited here.
Per process: with several workers each keeps its own buckets.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """`rate` requests a second per key, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, key: int, now: float | None = None) -> float:
        """0 when the request may go now (and takes its token), else seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
