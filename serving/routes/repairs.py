"""Credit repair: apply, see, decide (DOMAIN §9). Every step is kept in `lifecycle_log`.

Every request is a line in the audit log per company it concerns, refusals included
(`serving.case_audit`): the answers carry the application, its record and the company's score.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from records.workdays import china_today
from serving import repairs
from serving.auth import FULL_VIEW
from serving.case_audit import CaseAuditDep
from serving.deps import (
    CallerDep,
    StateDep,
    department_shares,
    own_cases_code,
    require,
    require_acting_for,
    require_may_file,
)
from serving.errors import ApiError
from serving.rescore import rescore_served
from serving.routes.companies import ERRORS

router = APIRouter(prefix="/v1", tags=["credit repair"])
DECIDE = frozenset({"admin", "regulator"})
REPAIR_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 409: ERRORS[422]}
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class RepairIn(BaseModel):
    record_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=4000, description="What the company did")


class DecisionIn(BaseModel):
    approve: bool
    reason: str = Field(min_length=1, max_length=4000)


class Step(BaseModel):
    at: str
    action: str
    detail: dict[str, Any]


class RepairOut(BaseModel):
    id: int
    uscc: str
    record_id: str
    category: str
    applied_on: date
    status: str
    due_date: date | None
    due_estimated: bool = Field(
        default=False,
        description="The deadline runs into a year whose holiday schedule is not published yet",
    )
    decided_on: date | None
    refusal_code: str | None
    decision_reason: str | None
    overdue: bool = Field(
        description="Pending past its decision deadline (3 working days after applying) today"
    )
    steps: list[Step]
    rescored: dict[str, Any] | None = None


class RepairPage(BaseModel):
    repairs: list[RepairOut]


@router.post("/repairs", response_model=RepairOut, status_code=201, responses=REPAIR_ERRORS)
def post_repair(
    body: RepairIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> RepairOut:
    """Apply to repair a record (the company's own key, or an authority on its behalf): pending
    with its decision deadline (3 working days), or refused at once, 409 with the refusal code
    (`minimum_period`, `under_objection`, `pending`, …) and why, nothing stored."""

    require_may_file(caller, "apply for repair")

    def check(uscc: str) -> None:
        audit.company(uscc)  # the record's company: a refusal from here on is on record under it
        require_acting_for(caller, uscc, f"no record {body.record_id}")

    try:
        case = repairs.apply(state.engine, state.store, body.record_id, body.reason,
                             caller.key_id, check=check)  # fmt: skip
    except repairs.RepairNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except repairs.RepairRefused as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    return RepairOut.model_validate(case)


@router.get("/repairs/overdue", response_model=RepairPage, responses=ERRORS)
def overdue_repairs(
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> RepairPage:
    """Pending applications past their decision deadline today, the longest overdue first (the
    authorities); a line in the audit log per company."""
    require(caller, DECIDE, "list overdue repair applications")
    found = repairs.search(state.engine, limit=limit, overdue_on=china_today())
    audit.companies(c["uscc"] for c in found)
    return RepairPage(repairs=[RepairOut.model_validate(c) for c in found])


@router.get("/repairs/{case_id}", response_model=RepairOut, responses=ERRORS)
def get_repair(
    case_id: CaseId, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> RepairOut:
    """An application with its steps (the applicant's key, the company, a full-view role; to
    another company's key it is unknown, 404); a line in the audit log."""
    try:
        case = repairs.get(state.engine, case_id)
    except repairs.RepairNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    audit.company(case["uscc"])
    own = case["applicant"] == caller.key_id or caller.is_company(case["uscc"])
    if caller.role == "company" and not own:  # as for records: another's is not said to exist
        raise ApiError(404, "not_found", f"no repair application {case_id}")
    if caller.role not in FULL_VIEW and not own:
        raise ApiError(403, "forbidden", "only the applicant and the authorities see it")
    if not own and not department_shares(state, caller, case["uscc"], case["record_id"]):
        raise ApiError(403, "forbidden", f"the record of repair {case_id} is neither public "
                       f"nor the {caller.department} department's")  # fmt: skip
    return RepairOut.model_validate(case)


@router.get("/repairs", response_model=RepairPage, responses=ERRORS)
def list_repairs(
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
    uscc: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query(pattern="^(pending|approved|refused)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RepairPage:
    """Applications, newest first (the authorities; a company key, its own company's); a line
    in the audit log per company."""
    code = own_cases_code(caller, DECIDE, uscc, "list repair applications")
    found = repairs.search(state.engine, code, status, limit)
    audit.companies(c["uscc"] for c in found)
    return RepairPage(repairs=[RepairOut.model_validate(c) for c in found])


@router.post("/repairs/{case_id}/decision", response_model=RepairOut, responses=REPAIR_ERRORS)
def post_decision(
    case_id: CaseId, body: DecisionIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> RepairOut:
    """Approve or refuse; on approval the record stops counting and being public from today
    and the company is re-scored at once."""
    require(caller, DECIDE, "decide repair applications")
    audit.case(lambda: repairs.get(state.engine, case_id))
    try:
        case = repairs.decide(state.engine, state.store, case_id, body.approve, body.reason,
                              caller.key_id)  # fmt: skip
    except repairs.RepairNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except repairs.RepairConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    if case["status"] == "approved":  # the repaired company does not wait for the next batch
        case["rescored"] = rescore_served(state, case["uscc"])
    return RepairOut.model_validate(case)
