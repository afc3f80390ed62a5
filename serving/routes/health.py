"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
import os
import secrets

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from serving.deps import StateDep
from serving.schemas import Readiness

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


def _failed(part: str, exc: Exception) -> str:
    """The probe is unauthenticated: it names the kind of failure and an error id; the detail
    (paths, hosts, users, SQL) goes to the service log only."""
    error_id = secrets.token_hex(6)
    logger.error("readiness: %s failed [%s]: %s: %s", part, error_id, type(exc).__name__, exc)
    return f"error: {type(exc).__name__} (error id {error_id})"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(state: StateDep) -> JSONResponse:
    """Ready when the database and the store answer and a model is loaded. A failed reload is
    reported here while the previous model keeps serving."""
    try:
        with state.engine.connect() as con:
            con.execute(sa.text("SELECT 1"))
        database = "ok"
    except Exception as exc:
        database = _failed("database", exc)
    try:
        with state.store.connect() as con:
            con.execute("SELECT count(*) FROM entities").fetchall()
        store = "ok"
    except Exception as exc:
        store = _failed("store", exc)
    slot = state.slot
    model = {
        "loaded": slot.model is not None, "version": slot.version,
        "spec_version": slot.model.spec_version if slot.model else None,
        "last_reload_error": slot.last_error,
    }  # fmt: skip
    audit = state.audit
    refused = audit.open_refused
    ready = (
        database == "ok" and store == "ok" and slot.model is not None
        and not refused and audit.backlog < audit.max_backlog
    )  # fmt: skip
    body = Readiness(
        ready=ready, database=database, store=store, model=model,
        audit_backlog=audit.backlog, audit_refused=refused,
    )  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> Response:
    """Prometheus metrics. With several workers (`credsup serve --workers N` sets
    PROMETHEUS_MULTIPROC_DIR), the counts of all of them, whichever answers: one worker's
    alone read as a counter reset on every scrape another worker answered."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
