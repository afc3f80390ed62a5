"""Objections: file, extend, decide, see (DOMAIN §10). Every step is kept in `lifecycle_log`.

Deciding re-scores the company at once, so a corrected or withdrawn record shows in the served
evaluation without waiting for the next batch. Filing re-scores nothing: the open-objection flag
needs no re-score (every look-up reads the open objections live), and a re-score as of today
moved the company to a new date, and so perhaps a new tier, for exercising a right.

Every request is a line in the audit log per company it concerns, refusals included
(`serving.case_audit`): the answers carry the case, its record and the company's score.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from records.workdays import china_today
from serving import objections
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

router = APIRouter(prefix="/v1", tags=["objections"])
DECIDE = frozenset({"admin", "regulator"})
OBJECTION_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 409: ERRORS[422]}
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class FileObjectionIn(BaseModel):
    record_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=4000, description="Why the record is wrong")
    requested: str | None = Field(
        default=None, max_length=4000, description="What the company asks for (free text)"
    )


class ExtensionIn(BaseModel):
    reason: str = Field(min_length=1, max_length=4000, description="Why more time is needed")


class CorrectionIn(BaseModel):
    """What changes in the record; keys left out stay as they are (`amount: null` clears)."""

    model_config = ConfigDict(extra="forbid")

    severity: str | None = Field(
        default=None, max_length=32, description="One of the category's severities"
    )
    amount: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = None
    attributes: dict[str, Any] | None = Field(
        default=None, description="Keys overlaid on the record's attributes"
    )


class ObjectionOutcomeIn(BaseModel):
    outcome: objections.Outcome
    reason: str = Field(min_length=1, max_length=4000)
    correction: CorrectionIn | None = Field(
        default=None, description="Required for corrected; attributes only for supplemented"
    )


class ObjectionStep(BaseModel):
    at: str
    action: str
    actor: int | None = None
    detail: dict[str, Any]


class ObjectionOut(BaseModel):
    id: int
    uscc: str
    record_id: str
    category: str
    filed_on: date
    reason: str
    requested: str | None
    status: str = Field(description="open | decided")
    due_date: date
    due_estimated: bool = Field(
        default=False,
        description="The deadline runs into a year whose holiday schedule is not published yet "
        "(an estimate; `credsup deadlines redate` moves it once it is)",
    )
    extended: bool
    outcome: str | None
    correction: dict[str, Any] | None
    decided_on: date | None
    decision_reason: str | None
    steps: list[ObjectionStep]
    rescored: dict[str, Any] | None = Field(
        default=None, description="The company's evaluation and tier before and after"
    )


class ObjectionPage(BaseModel):
    objections: list[ObjectionOut]


@router.post("/objections", response_model=ObjectionOut, status_code=201,
             responses=OBJECTION_ERRORS)  # fmt: skip
def post_objection(
    body: FileObjectionIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> ObjectionOut:
    """Object to a record: it is flagged at once (every look-up reads the open objections live)
    and the decision is due in 5 working days. 409 while an objection to the record is open."""

    require_may_file(caller, "object to a record")

    def check(uscc: str) -> None:
        audit.company(uscc)  # the record's company: a refusal from here on is on record under it
        require_acting_for(caller, uscc, f"no record {body.record_id}")

    try:
        case = objections.file_objection(state.engine, state.store, body.record_id, body.reason,
                                         body.requested, caller.key_id, check=check)  # fmt: skip
    except objections.ObjectionNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except objections.ObjectionConflict as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    case["rescored"] = None  # the flag is read live: filing changes no score and no tier
    return ObjectionOut.model_validate(case)


@router.get("/objections", response_model=ObjectionPage, responses=ERRORS)
def list_objections(
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
    uscc: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query(pattern="^(open|decided)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ObjectionPage:
    """Objections, newest first (the authorities; a company key, its own company's); a line in
    the audit log per company."""
    code = own_cases_code(caller, DECIDE, uscc, "list objections")
    found = objections.search(state.engine, code, status, limit)
    audit.companies(c["uscc"] for c in found)
    return ObjectionPage(objections=[ObjectionOut.model_validate(c) for c in found])


@router.get("/objections/overdue", response_model=ObjectionPage, responses=ERRORS)
def overdue_objections(
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> ObjectionPage:
    """Open objections past their deadline today, the longest overdue first (the authorities)."""
    require(caller, DECIDE, "list overdue objections")
    found = objections.search(state.engine, limit=limit, overdue_on=china_today())
    audit.companies(c["uscc"] for c in found)
    return ObjectionPage(objections=[ObjectionOut.model_validate(c) for c in found])


@router.get("/objections/{case_id}", response_model=ObjectionOut, responses=ERRORS)
def get_objection(
    case_id: CaseId, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> ObjectionOut:
    """An objection with its steps (the filer's key or a full-view role; to another company's
    key it is unknown, 404); a line in the audit log."""
    try:
        case = objections.get(state.engine, case_id)
    except objections.ObjectionNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    audit.company(case["uscc"])
    own = case["filed_by"] == caller.key_id or caller.is_company(case["uscc"])
    if caller.role == "company" and not own:  # as for records: another's is not said to exist
        raise ApiError(404, "not_found", f"no objection {case_id}")
    if caller.role not in FULL_VIEW and not own:
        raise ApiError(403, "forbidden", "only the filer and the authorities see it")
    if not own and not department_shares(state, caller, case["uscc"], case["record_id"]):
        raise ApiError(403, "forbidden", f"the record of objection {case_id} is neither public "
                       f"nor the {caller.department} department's")  # fmt: skip
    return ObjectionOut.model_validate(case)


@router.post("/objections/{case_id}/extension", response_model=ObjectionOut,
             responses=OBJECTION_ERRORS)  # fmt: skip
def post_extension(
    case_id: CaseId, body: ExtensionIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> ObjectionOut:
    """Extend the deadline to 20 working days after filing, once; 409 if decided or extended."""
    require(caller, DECIDE, "extend objections")
    audit.case(lambda: objections.get(state.engine, case_id))
    try:
        case = objections.extend(state.engine, case_id, body.reason, caller.key_id)
    except objections.ObjectionNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except objections.ObjectionConflict as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    return ObjectionOut.model_validate(case)


@router.post("/objections/{case_id}/decision", response_model=ObjectionOut,
             responses=OBJECTION_ERRORS)  # fmt: skip
def post_decision(
    case_id: CaseId,
    body: ObjectionOutcomeIn,
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
) -> ObjectionOut:
    """Decide: upheld, corrected, supplemented, stop_publishing or removed_from_list. The
    objection closes, the decision's events take effect today and the company is re-scored,
    unless the record is upheld: nothing then changes that a score reads."""
    require(caller, DECIDE, "decide objections")
    audit.case(lambda: objections.get(state.engine, case_id))
    correction = None if body.correction is None else body.correction.model_dump(
        exclude_unset=True
    )  # fmt: skip
    try:
        case = objections.decide(state.engine, state.store, case_id, body.outcome, body.reason,
                                 correction, caller.key_id)  # fmt: skip
    except objections.ObjectionNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except objections.ObjectionConflict as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    except objections.InvalidDecision as exc:
        raise ApiError(422, "invalid_decision", str(exc)) from None
    case["rescored"] = None if body.outcome == "upheld" else rescore_served(state, case["uscc"])
    return ObjectionOut.model_validate(case)
