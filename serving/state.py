"""What the running service holds: database, key cache, audit writer, the champion model."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy.engine import Engine

from models.bundle import TierModel
from models.published import PublishedModels
from records.settings import Settings
from records.store import Store
from serving.audit import AuditWriter
from serving.auth import KeyCache
from serving.compactor import AutoCompactor
from serving.limits import RateLimiter
from serving.lookup import Lookup


@dataclass
class ModelSlot:
    """The model in use and the outcome of the last attempt to load one."""

    version: str | None = None
    model: TierModel | None = None
    loaded_at: float | None = None
    last_error: str | None = None
    last_attempt: float | None = None
    failed_version: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    RETRY_SECONDS: ClassVar[float] = 60.0

    def reload(self, models: PublishedModels) -> dict[str, Any]:
        """Load the current champion; on any failure keep the model in use."""
        with self.lock:
            self.last_attempt = time.time()
            try:
                version, model = models.load("champion")
                model.check_spec()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                return {"loaded": False, "error": self.last_error, "serving": self.version}
            changed = version != self.version
            self.version, self.model, self.loaded_at = version, model, time.time()
            self.last_error = None
            return {"loaded": True, "version": version, "changed": changed}

    def current(self, models: PublishedModels) -> tuple[TierModel | None, str | None]:
        """The model and its version as one pair, after a look at the `champion` alias (a
        query of the registry, not a load): a champion promoted since is loaded first. Several
        workers (`credsup serve --workers N`) each hold a slot; `POST /v1/admin/reload` reaches
        one of them, so what writes with the model asks here and no worker re-scores with a
        retired champion. A champion that failed to load is tried again only after
        `RETRY_SECONDS` (or at once by `POST /v1/admin/reload`), not on every call."""
        try:
            champion = models.version("champion")
        except Exception:
            champion = None  # the registry cannot answer: keep what is in use
        failed_lately = (
            champion == self.failed_version
            and time.time() - (self.last_attempt or 0) < self.RETRY_SECONDS
        )
        if champion is not None and champion != self.version and not failed_lately:
            outcome = self.reload(models)
            self.failed_version = None if outcome["loaded"] else champion
        with self.lock:
            return self.model, self.version


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    store: Store
    keys: KeyCache
    audit: AuditWriter
    models: PublishedModels
    slot: ModelSlot
    lookup: Lookup
    limiter: RateLimiter
    compactor: AutoCompactor | None = None
    """Sorts the service's own small writes into runs (`CREDSUP_AUTO_COMPACT_FILES`)."""
