"""Admin: the audit log (read-only) and model reloads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query

from serving.auth import ADMIN
from serving.db import audit_log
from serving.deps import CallerDep, StateDep, require, valid_code
from serving.routes.companies import ERRORS
from serving.schemas import AuditPage, ReloadResult

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/audit", response_model=AuditPage, responses=ERRORS)
def audit(
    state: StateDep,
    caller: CallerDep,
    uscc: Annotated[str | None, Query()] = None,
    key_id: Annotated[int | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
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
        query = query.where(audit_log.c.at >= since)
    with state.engine.connect() as con:
        rows = con.execute(query).mappings().all()
    return AuditPage.model_validate({"entries": [{**r, "at": r["at"].isoformat()} for r in rows]})


@router.post("/reload", response_model=ReloadResult, responses=ERRORS)
def reload(state: StateDep, caller: CallerDep) -> ReloadResult:
    """Load the current champion; if that fails, keep serving the model in use."""
    require(caller, ADMIN, "reload the model")
    return ReloadResult.model_validate(state.slot.reload(state.models))
