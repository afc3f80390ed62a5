"""Admin: the audit log (read-only) and model reloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query

from serving.auth import ADMIN
from serving.db import audit_log
from serving.deps import CallerDep, StateDep, require, valid_code
from serving.routes.companies import ERRORS
from serving.schemas import AuditPage, RefusedAuditPage, ReloadResult

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/audit", response_model=AuditPage, responses=ERRORS)
def audit(
    state: StateDep,
    caller: CallerDep,
    uscc: Annotated[str | None, Query()] = None,
    key_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    since: Annotated[
        datetime | None, Query(description="Entries at or after this time (UTC if no offset)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> AuditPage:
    """Who read which company's credit information, when and why (newest first)."""
    require(caller, ADMIN, "read the audit log")
    state.audit.flush()
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if uscc is not None:
        query = query.where(audit_log.c.uscc == valid_code(uscc))
    if key_id is not None:
        query = query.where(audit_log.c.key_id == key_id)
    if since is not None:
        # SQLite keeps the UTC wall time without an offset: compare in UTC on both databases
        query = query.where(audit_log.c.at >= _utc(since))
    with state.engine.connect() as con:
        rows = con.execute(query).mappings().all()
    return AuditPage.model_validate(
        {"entries": [{**r, "at": _utc(r["at"]).isoformat()} for r in rows]}
    )


@router.get("/audit/refused", response_model=RefusedAuditPage, responses=ERRORS)
def audit_refused(state: StateDep, caller: CallerDep) -> RefusedAuditPage:
    """Audit rows the database refused (the audit quarantine), oldest first: while any is open
    the service is not ready; `credsup audit acknowledge` acknowledges them."""
    require(caller, ADMIN, "read the audit log")
    state.audit.flush()
    quarantine = state.audit.quarantine  # the service always has one
    rows = quarantine.listing()[0] if quarantine is not None else []
    return RefusedAuditPage(
        open=state.audit.open_refused, entries=rows, unfiled=state.audit.unfiled
    )


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC (a time without an offset is taken as UTC, as stored)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # beyond year 1 or 9999 in UTC
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


@router.post("/reload", response_model=ReloadResult, responses=ERRORS)
def reload(state: StateDep, caller: CallerDep) -> ReloadResult:
    """Load the current champion; if that fails, keep serving the model in use."""
    require(caller, ADMIN, "reload the model")
    return ReloadResult.model_validate(state.slot.reload(state.models))
