"""What the running service holds: database, key cache, audit writer, the champion model."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from models.bundle import TierModel
from models.published import PublishedModels
from records.settings import Settings
from records.store import Store
from serving.audit import AuditWriter
from serving.auth import KeyCache
from serving.lookup import Lookup


@dataclass
class ModelSlot:
    """The model in use and the outcome of the last attempt to load one."""

    version: str | None = None
    model: TierModel | None = None
    loaded_at: float | None = None
    last_error: str | None = None
    last_attempt: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

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
