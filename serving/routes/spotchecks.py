"""Double random, one public: check items, inspectors, plans, lists, results, publication.

Roles: admin and regulator manage items and inspectors and draw plans; a department key sees
and reports on its own department's tasks only; everyone (public included) reads the check-item
list, a plan's public notice, its verification and the published results. Reads of company
lists are audited like any read of credit information.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from records.workdays import china_today
from serving.audit import AuditUnavailable
from serving.auth import Caller
from serving.db import check_items
from serving.deps import (
    CallerDep,
    OptionalPurposeHeader,
    PurposeHeader,
    StateDep,
    purpose_of,
    require,
    stated_purpose,
    valid_code,
)
from serving.errors import ApiError
from serving.routes.companies import ERRORS
from serving.spotcheck import export
from serving.spotcheck.draw import PlanError
from serving.spotcheck.items import CheckItem
from serving.spotcheck.package import audit_package
from serving.spotcheck.plans import (
    InspectorIn,
    InspectorsRefused,
    PlanCreated,
    PlanRequest,
    ResultConflict,
    TaskNotFound,
    TaskResult,
    Verification,
    cancel_tasks,
    create_plan,
    department_filter,
    get_plan,
    inspector_filter,
    inspector_pool,
    overdue_tasks,
    plan_briefs,
    plan_list,
    post_result,
    public_notice,
    published_results,
    refuse_caller_seed,
    save_inspectors,
    save_items,
    verify_plan,
)
from serving.state import ServiceState

router = APIRouter(prefix="/v1", tags=["spot checks"])
log = logging.getLogger(__name__)
MANAGE = frozenset({"admin", "regulator"})
TASKS = frozenset({"admin", "regulator", "department"})
LIST_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 409: ERRORS[422]}


PLAN_CONFLICTS = frozenset({"duplicate_plan"})
"""Refusals that are conflicts with what is stored (409), not bad requests (422)."""


def _plan_error(exc: PlanError) -> ApiError:
    return ApiError(409 if exc.code in PLAN_CONFLICTS else 422, exc.code, str(exc))


def _department(state: ServiceState, given: str | None) -> str | None:
    """A `department` filter as its code (a code in any case or a Chinese name, the inspector
    file's mapping); one that names no department is refused (422 `unknown_department`), not
    answered with an empty list."""
    if given is None:
        return None
    with state.engine.connect() as con:
        try:
            return department_filter(con, given)
        except LookupError as exc:
            raise ApiError(422, "unknown_department", str(exc.args[0])) from None


def _own_department(
    state: ServiceState, caller: Caller, department: str | None, what: str = "tasks"
) -> str | None:
    """The department filter in force: a department key is limited to its own department's
    `what` (tasks, inspectors)."""
    department = _department(state, department)
    if caller.role == "department":
        if department is not None and department != caller.department:
            raise ApiError(
                403, "forbidden",
                f"a {caller.department} key sees its own department's {what} only, not "
                f"{department}'s",
            )  # fmt: skip
        return caller.department or "-"
    return department


def _inspector(state: ServiceState, given: str | None) -> str | None:
    """An `inspector` filter, checked to be in the pool (422 `unknown_inspector` if not)."""
    if given is None:
        return None
    with state.engine.connect() as con:
        try:
            return inspector_filter(con, given)
        except LookupError as exc:
            raise ApiError(422, "unknown_inspector", str(exc.args[0])) from None


# ---- check items and inspectors ---------------------------------------------------------------


class ItemList(BaseModel):
    items: list[CheckItem]


@router.get("/check-items", response_model=ItemList, responses=ERRORS)
def list_items(
    state: StateDep, caller: CallerDep, department: Annotated[str | None, Query()] = None
) -> ItemList:
    """The check-item list (抽查事项清单): public."""
    department = _department(state, department)
    query = sa.select(check_items.c.definition).order_by(check_items.c.id)
    if department is not None:
        query = query.where(check_items.c.department == department)
    with state.engine.connect() as con:
        return ItemList(items=[CheckItem.model_validate_json(d) for (d,) in con.execute(query)])


@router.put("/check-items/{item_id}", response_model=CheckItem, responses=ERRORS)
def put_item(item_id: str, item: CheckItem, state: StateDep, caller: CallerDep) -> CheckItem:
    """Add or replace a check item."""
    require(caller, MANAGE, "change check items")
    if item.id != item_id:
        raise ApiError(422, "invalid", f"path item {item_id} differs from body id {item.id}")
    save_items(state.engine, [item])
    return item


class InspectorsIn(BaseModel):
    inspectors: list[InspectorIn]
    replace: bool = False
    """The list is each named department's roster: the department's inspectors absent from it
    become inactive (never deleted), as `credsup plan inspectors import --replace`."""


class Imported(BaseModel):
    inspectors: int
    conflicts: int
    deactivated: list[str] = Field(default_factory=list)
    """Inspectors made inactive by `replace`."""
    warnings: list[str] = Field(default_factory=list)
    """Inspectors stored but never drawn for some of their items (not in the check-item list,
    another department's), active ones without items, area codes read as a prefix."""


class InspectorOut(BaseModel):
    inspector_id: str
    name: str | None
    department: str
    area: str
    items: list[str]
    active: bool
    conflicts: int = 0
    """Companies the inspector has declared a conflict with."""


class InspectorList(BaseModel):
    inspectors: list[InspectorOut]


@router.post("/inspectors", response_model=Imported, responses=ERRORS)
def post_inspectors(body: InspectorsIn, state: StateDep, caller: CallerDep) -> Imported:
    """Add or replace inspectors (and their declared conflicts). A department is given by its
    code (any case) or its Chinese name, as in the inspector file; one that names no department
    is refused (422 `unknown_department`, each inspector named); `warnings` names what can never
    be drawn. With `replace`, the departments' inspectors absent from the list become inactive
    (`deactivated`)."""
    require(caller, MANAGE, "manage the inspector pool")
    try:
        return Imported(**save_inspectors(state.engine, body.inspectors, replace=body.replace))
    except InspectorsRefused as exc:
        raise ApiError(422, "unknown_department", "; ".join(exc.problems)) from None


@router.get("/inspectors", response_model=InspectorList, responses=ERRORS)
def list_inspectors(
    state: StateDep, caller: CallerDep, department: Annotated[str | None, Query()] = None
) -> InspectorList:
    """The inspector pool (a department key: its own), with each one's declared conflicts
    counted (`credsup plan inspectors list` gives the same)."""
    require(caller, TASKS, "read the inspector pool")
    department = _own_department(state, caller, department, "inspectors")
    with state.engine.connect() as con:
        rows = inspector_pool(con, department)
    return InspectorList(inspectors=[InspectorOut.model_validate(r) for r in rows])


# ---- plans ------------------------------------------------------------------------------------


@router.post(
    "/spot-check-plans", response_model=PlanCreated, status_code=201, responses=LIST_ERRORS
)
def post_plan(body: PlanRequest, state: StateDep, caller: CallerDep) -> PlanCreated:
    """Draw a plan: companies at random by tier, inspectors at random, joint visits. A second
    plan of the same name, start day and departments is refused (409 `duplicate_plan`, naming
    the plan) unless `allow_duplicate`."""
    require(caller, MANAGE, "draw spot-check plans")
    try:
        refuse_caller_seed(body, state.settings.caller_seeds)
        created = create_plan(state.engine, body, created_by=caller.key_id, store=state.store)
    except PlanError as exc:
        raise _plan_error(exc) from None
    return created


class PlanBrief(BaseModel):
    plan_id: str
    name: str
    start_date: date
    due_date: date
    snapshot_date: date
    tasks: int
    visits: int
    list_sha256: str
    done: int = 0
    """Tasks with a result."""
    overdue: int = 0
    """Tasks past their deadline without a result (not cancelled), today."""
    cancelled: int = 0


class PlanPage(BaseModel):
    plans: list[PlanBrief]


@router.get("/spot-check-plans", response_model=PlanPage, responses=ERRORS)
def list_plans(
    state: StateDep, caller: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> PlanPage:
    """The plans, latest first, with how many tasks are done, overdue and cancelled today
    (`credsup plan list` gives the same). Admins and regulators only, as the README says."""
    require(caller, MANAGE, "list spot-check plans")
    with state.engine.connect() as con:
        rows = plan_briefs(con, china_today(), limit)
    return PlanPage(plans=[PlanBrief.model_validate(r) for r in rows])


@router.get(
    "/spot-check-plans/{plan_id}", responses=ERRORS,
    summary="A plan's list: JSON, CSV or Excel (Chinese headers), by department or inspector",
)  # fmt: skip
def get_plan_list(
    plan_id: str,
    state: StateDep,
    caller: CallerDep,
    format: Annotated[export.ListFormat, Query()] = "json",
    department: Annotated[str | None, Query()] = None,
    inspector: Annotated[str | None, Query()] = None,
    x_purpose: PurposeHeader = None,
) -> Response:
    require(caller, TASKS, "read spot-check lists")
    purpose = purpose_of(caller, x_purpose)
    department = _own_department(state, caller, department)
    inspector = _inspector(state, inspector)
    why = f"{plan_id}: {purpose or ''}"[:256]
    with state.engine.connect() as con:
        try:
            plan, frame = plan_list(con, plan_id, department, inspector, store=state.store)
        except LookupError as exc:  # the query is on record: a line without a company
            state.audit.log(caller, "GET /v1/spot-check-plans/{plan_id}", None, why, 404)
            raise ApiError(404, "not_found", str(exc)) from None
    state.audit.log_companies(caller, "GET /v1/spot-check-plans/{plan_id}", frame["uscc"], why)
    # the same bytes as `credsup plan show` (one export: serving.spotcheck.export)
    headers = (
        {} if format == "json"
        else {"Content-Disposition": f'attachment; filename="{plan_id}.{format}"'}
    )  # fmt: skip
    return Response(
        export.plan_list_bytes(plan, frame, format),
        media_type=export.LIST_MEDIA_TYPES[format],
        headers=headers,
    )


class CancelIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)
    """Why the checks are called off (kept with who and when)."""
    task_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    """One task only (default: every task of the plan without a result)."""


class Cancelled(BaseModel):
    plan_id: str
    cancelled: int
    task_ids: list[int]
    reason: str
    cancelled_at: str
    left_done: int
    """Tasks of the plan (or the task) that have a result and stay as they are."""


@router.post("/spot-check-plans/{plan_id}/cancel", response_model=Cancelled, responses=LIST_ERRORS)
def post_cancel(plan_id: str, body: CancelIn, state: StateDep, caller: CallerDep) -> Cancelled:
    """Cancel a plan's (or one task's) checks without a result, with the reason: not overdue,
    not counted against yearly limits, shown as cancelled; the draw is unchanged and verifies."""
    require(caller, MANAGE, "cancel spot-check tasks")
    try:
        done = cancel_tasks(
            state.engine, plan_id, body.reason, body.task_id, caller.key_id, by=caller.name
        )
    except (LookupError, TaskNotFound) as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ResultConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except PlanError as exc:
        raise _plan_error(exc) from None
    return Cancelled.model_validate(done)


@router.get("/spot-check-plans/{plan_id}/notice", responses=ERRORS)
def get_notice(plan_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """The public notice of a plan: scope, items, ratios, counts, seed and hashes."""
    try:
        return public_notice(state.engine, plan_id)
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.get(
    "/spot-check-plans/{plan_id}/verification", response_model=Verification, responses=ERRORS
)
def get_verification(plan_id: str, state: StateDep, caller: CallerDep) -> Verification:
    """Replay the draw from the stored seed, parameters and snapshot and compare the lists."""
    try:
        return verify_plan(state.engine, plan_id)
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except PlanError as exc:
        raise _plan_error(exc) from None


@router.get(
    "/spot-check-plans/{plan_id}/audit-package", response_class=Response,
    responses={**ERRORS, 200: {"description": "The package (zip)", "content": {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
    summary="A draw's audit package (zip): seed, snapshot, parameters, list and the code to "
    "replay it offline",
)  # fmt: skip
def get_audit_package(
    plan_id: str, state: StateDep, caller: CallerDep, x_purpose: PurposeHeader = None
) -> Response:
    """Everything an outside auditor needs to re-run the draw without the service
    (`serving.spotcheck.package`). It holds the tier of every company in the plan's pool: for
    those who manage plans, with a purpose; each of those companies is logged."""
    require(caller, MANAGE, "export a draw's audit package")
    purpose = purpose_of(caller, x_purpose)
    why = f"{plan_id}: {purpose or ''}"[:256]
    endpoint = "GET /v1/spot-check-plans/{plan_id}/audit-package"
    try:
        made = audit_package(state.engine, plan_id, exported_by=f"{caller.role} {caller.name}")
    except LookupError as exc:
        state.audit.log(caller, endpoint, None, why, 404)
        raise ApiError(404, "not_found", str(exc)) from None
    except PlanError as exc:
        raise _plan_error(exc) from None
    state.audit.log_companies(caller, endpoint, made.companies, why)
    return Response(
        made.data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{made.filename}"'},
    )


# ---- tasks and results ------------------------------------------------------------------------


class ResultOut(BaseModel):
    task_id: int
    plan_id: str
    uscc: str
    item_id: str
    result: str
    check_date: date
    record_id: str
    published_late: bool
    reason: str | None = None
    """Why the check could not be made (result not_inspected)."""


@router.post(
    "/spot-check-tasks/{task_id}/result", response_model=ResultOut, status_code=201,
    responses=LIST_ERRORS,
)  # fmt: skip
def post_task_result(
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: TaskResult,
    state: StateDep,
    caller: CallerDep,
    x_purpose: OptionalPurposeHeader = None,
) -> ResultOut:
    """Record a check's result: it becomes a `spot_check` record and is published. The audit
    log gets a line for the company, with the caller's `X-Purpose` (optional here: a result is
    written, not read; `spot-check result` without it)."""
    require(caller, TASKS, "report spot-check results")
    department = caller.department if caller.role == "department" else None
    if caller.role == "department" and not department:
        raise ApiError(403, "forbidden", "this department key names no department")
    try:
        out = post_result(state.engine, state.store, task_id, body, caller.key_id, department)
    except TaskNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except PermissionError as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except ResultConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except PlanError as exc:
        raise _plan_error(exc) from None
    purpose = stated_purpose(x_purpose) or RESULT_PURPOSE
    try:
        state.audit.log(caller, "POST /v1/spot-check-tasks/{task_id}/result", out["uscc"],
                        f"{out['plan_id']} task {task_id}: {purpose}"[:256], 201)  # fmt: skip
    except AuditUnavailable as exc:  # the result is stored: say so, rather than a 503
        log.error("result of task %s posted but not audited: %s", task_id, exc)
    return ResultOut.model_validate(out)


RESULT_PURPOSE = "spot-check result"
"""The purpose an audit line of a posted result states when the caller gave none."""


class TaskOut(BaseModel):
    task_id: int
    plan_id: str
    uscc: str
    company_name: str | None
    item_id: str
    department: str
    inspectors: str
    due_date: date


class TaskPage(BaseModel):
    as_of: date
    tasks: list[TaskOut]


@router.get("/spot-check-tasks/overdue", response_model=TaskPage, responses=ERRORS)
def get_overdue(
    state: StateDep,
    caller: CallerDep,
    department: Annotated[str | None, Query()] = None,
    plan_id: Annotated[str | None, Query()] = None,
    as_of: Annotated[date | None, Query(description="Default: today")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    x_purpose: PurposeHeader = None,
) -> TaskPage:
    """Tasks whose 20 working days have passed without a result; a line in the audit log per
    company listed."""
    require(caller, TASKS, "read overdue tasks")
    purpose = purpose_of(caller, x_purpose)
    department = _own_department(state, caller, department)
    day = as_of or china_today()
    with state.engine.connect() as con:
        if plan_id is not None:
            try:
                get_plan(con, plan_id)
            except LookupError as exc:  # the query is on record: a line without a company
                state.audit.log(caller, "GET /v1/spot-check-tasks/overdue", None, purpose, 404)
                raise ApiError(404, "not_found", str(exc)) from None
        frame = overdue_tasks(con, day, department, plan_id, limit)
    state.audit.log_companies(caller, "GET /v1/spot-check-tasks/overdue", frame["uscc"], purpose)
    return TaskPage(
        as_of=day,
        tasks=[TaskOut.model_validate({**r, "task_id": r["id"]})
               for r in frame.to_dict("records")],
    )  # fmt: skip


class PublishedResult(BaseModel):
    task_id: int
    plan_id: str
    uscc: str
    company_name: str | None
    item_id: str
    item_name: str
    department: str
    result: str
    """In its corrected form once corrected (an objection decided "corrected"); not_inspected
    (未能检查) when the check could not be made."""
    not_inspected_reason: str | None = None
    """Why (a code: unreachable, deregistered, ceased_trading, other), for not_inspected."""
    corrected: bool = False
    """Its result corrected (结果已更正): a correction in force changed it."""
    supplemented: bool = False
    """Information added to it by an objection decided supplemented (结果已补充); the result
    itself is as posted unless also `corrected`."""
    check_date: date
    published_at: str | None
    """When the result was posted, China time with its offset (2026-12-05T18:29:06+08:00)."""
    published_late: bool
    objection_open: bool = Field(False, description="An objection to the result is being decided")


class PublishedPage(BaseModel):
    results: list[PublishedResult]


@router.get("/spot-check-results", response_model=PublishedPage, responses=ERRORS)
def get_results(
    state: StateDep,
    caller: CallerDep,
    uscc: Annotated[str | None, Query()] = None,
    plan_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    x_purpose: PurposeHeader = None,
) -> PublishedPage:
    """Published results (一公开): public, 5 years (2 for an individual business), by the one
    publicity rule: a withdrawn or unpublished result is hidden, a corrected one shown corrected."""
    if uscc is None and plan_id is None:
        raise ApiError(400, "bad_request", "give uscc or plan_id")
    code = valid_code(uscc) if uscc is not None else None
    purpose = purpose_of(caller, x_purpose)
    with state.engine.connect() as con:
        rows = published_results(con, state.store, china_today(), code, plan_id, limit)
    # a line per company shown (a plan's page names many), or the one asked for
    shown = [code] if code is not None else [r["uscc"] for r in rows]
    state.audit.log_companies(caller, "GET /v1/spot-check-results", shown, purpose)
    return PublishedPage(results=[PublishedResult.model_validate(r) for r in rows])
