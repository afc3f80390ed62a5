"""Re-scoring on demand: a company's evaluation and tier recomputed after a credit repair, a
correction or a list change, without waiting for the monthly batch (`serving.rescore`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from records.workdays import china_today
from serving.deps import CallerDep, PurposeHeader, StateDep, purpose_of, require, valid_code
from serving.errors import ApiError, ErrorBody
from serving.rescore import (
    MethodMismatch,
    NoModel,
    PublishedDay,
    RescoreRefused,
    UnknownCompany,
    rescore_company,
)
from serving.routes.companies import KEY_ERRORS

router = APIRouter(prefix="/v1", tags=["companies"])

RESCORE = frozenset({"admin", "regulator"})
ENDPOINT = "POST /v1/companies/{uscc}:rescore"
ERRORS: dict[int | str, dict[str, Any]] = {
    **{s: {"model": ErrorBody} for s in (403, 404, 409, 422)},
    **KEY_ERRORS,
}


class Served(BaseModel):
    """What the service published for the company before: its latest result."""

    as_of: date
    score: float | None = None
    grade: str | None = None
    tier: str | None = None


class Rescored(BaseModel):
    score: float
    grade: str
    tier: str | None = Field(
        default=None, description="None for a company not active that day (not tiered)"
    )
    probability: float | None = None


class RescoreResult(BaseModel):
    uscc: str
    as_of: date
    before: Served | None = Field(description="None when the company was not served yet")
    after: Rescored
    model_version: str | None = None
    current: bool = Field(
        description="The served result is now this one (false: a later one is kept)"
    )
    notes: list[str] = []


@router.post(
    "/companies/{uscc}:rescore", response_model=RescoreResult, responses=ERRORS,
    summary="Recompute a company's evaluation and tier now (after a repair or correction)",
)  # fmt: skip
def rescore(
    uscc: str,
    state: StateDep,
    caller: CallerDep,
    as_of: Annotated[
        date | None, Query(description="Date of the evaluation, no later than today (default)")
    ] = None,
    x_purpose: PurposeHeader = None,
) -> RescoreResult:
    """Point in time: the result is stored for `as_of` only; other dates keep theirs. A day
    before today that a batch published keeps the batch's result: a re-score that agrees writes
    nothing, one that differs is refused (409 `published`). Without a loaded model nothing is
    re-scored (409 `no_model`)."""
    require(caller, RESCORE, "rescore companies")
    purpose = purpose_of(caller, x_purpose)
    code = valid_code(uscc)
    today = china_today()
    day = as_of or today
    if day > today:
        raise ApiError(422, "invalid", f"as_of {day} is after today ({today})")
    model, version = state.slot.current(state.models)  # the champion, as one pair
    try:
        result = rescore_company(
            state.engine, state.store, state.settings.data_dir, model, version, code, day,
            model_name=state.models.name,
        )  # fmt: skip
    except RescoreRefused as exc:
        status, reason = (
            (404, "not_found") if isinstance(exc, UnknownCompany)
            else (409, "method_mismatch") if isinstance(exc, MethodMismatch)
            else (409, "no_model") if isinstance(exc, NoModel)
            else (409, "published") if isinstance(exc, PublishedDay)
            else (422, "invalid")
        )  # fmt: skip
        state.audit.log(caller, ENDPOINT, code, purpose, status)
        raise ApiError(status, reason, str(exc)) from None
    state.audit.log(caller, ENDPOINT, code, purpose, 200)
    return RescoreResult.model_validate(result)
