"""Credit lists (DOMAIN §8): propose, object, decide, list, remove, read, derive, publish.

A listing or removal writes a record of the list's category to the store and re-scores the
company at once (its tier vetoes follow from the record); every step is kept in `lifecycle_log`.
Every request about entries is a line in the audit log per company it concerns, refusals
included (`serving.case_audit`); so is each company the published lists show.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from records.workdays import china_today
from serving import lists
from serving.auth import Caller
from serving.case_audit import CaseAudit, CaseAuditDep, PublicAuditDep
from serving.deps import (
    CallerDep,
    StateDep,
    own_cases_code,
    require,
    require_acting_for,
    require_may_file,
)  # fmt: skip
from serving.errors import ApiError, ErrorBody
from serving.rescore import rescore_served
from serving.routes.companies import KEY_ERRORS
from serving.state import ServiceState

router = APIRouter(prefix="/v1", tags=["lists"])
DECIDE = frozenset({"admin", "regulator"})
READ = frozenset({"admin", "regulator", "department"})
DERIVE = frozenset({"admin"})
ERRORS: dict[int | str, dict[str, Any]] = {
    **{s: {"model": ErrorBody} for s in (403, 404, 409, 422)},
    **KEY_ERRORS,
}
EntryId = Annotated[int, Path(ge=1, le=2**31 - 1)]
StatusName = Literal["notified", "objected", "rejected", "listed", "removed", "expired"]


class EntryIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    uscc: str = Field(min_length=1, max_length=64)
    list_: lists.ListName = Field(alias="list")
    legal_basis: str = Field(min_length=1, max_length=1000, description="The legal provision")
    reason: str = Field(min_length=1, max_length=4000, description="The facts behind it")
    source_records: list[str] = Field(
        default_factory=list, max_length=200, description="Records the entry rests on"
    )
    ground: str | None = Field(
        default=None, max_length=64,
        description="Abnormal-operation list: missing_annual_report, false_disclosure or "
        "unreachable; red list: its name (a_grade_taxpayer, contract_abiding, honour, other)",
    )  # fmt: skip


class ObjectionIn(BaseModel):
    reason: str = Field(min_length=1, max_length=4000)


ObjectionDecision = Literal["accepted", "dismissed"]
DECISION_OF_OUTCOME: dict[str | None, ObjectionDecision] = {
    "upheld": "accepted", "dismissed": "dismissed",
}  # fmt: skip
"""The stored outcome of an entry's objection (`upheld`: the objection, not the entry) as a
decision."""


class ObjectionDecisionIn(BaseModel):
    decision: ObjectionDecision | None = Field(
        default=None,
        description="accepted: the objection wins, the entry is rejected (never listed); "
        "dismissed: the entry stands and may be listed now",
    )
    upheld: bool | None = Field(
        default=None, deprecated=True,
        description="Deprecated: give `decision`. True is accepted (the objection, not the "
        "entry, upheld), false dismissed; with `decision` it must agree.",
    )  # fmt: skip
    reason: str = Field(min_length=1, max_length=4000)

    @model_validator(mode="after")
    def _one_decision(self) -> ObjectionDecisionIn:
        upheld = self.__dict__["upheld"]  # read without the deprecation warning
        if self.decision is None and upheld is None:
            raise ValueError("give decision: accepted (the entry is rejected) or dismissed")
        if upheld is not None and self.decision is not None and (
            (self.decision == "accepted") != upheld
        ):  # fmt: skip
            raise ValueError(
                f"decision {self.decision} and upheld {str(upheld).lower()} disagree (upheld "
                "true is accepted): give decision alone"
            )
        return self

    @property
    def accepted(self) -> bool:
        """The objection wins: the entry is rejected."""
        if self.decision is not None:
            return self.decision == "accepted"
        return bool(self.__dict__["upheld"])


class ListingIn(BaseModel):
    pass


class RemovalIn(BaseModel):
    reason: str = Field(min_length=1, max_length=4000)


class DeriveIn(BaseModel):
    as_of: date = Field(description="The records as of this date (no later than today)")


class Step(BaseModel):
    at: str
    action: str
    actor: int | None
    detail: dict[str, Any]


class EntryOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    uscc: str
    list_: str = Field(alias="list")
    status: str = Field(description="notified, objected, rejected, listed, removed or expired")
    legal_basis: str
    reason: str | None = Field(description="The proposer's text (not shown to other departments)")
    ground: str | None
    source_records: list[str]
    proposed_on: date
    objection_due: date | None
    objection_due_estimated: bool = Field(
        default=False,
        description="The objection window runs into a year whose holiday schedule is not "
        "published yet",
    )
    objection_reason: str | None
    objection_outcome: str | None = Field(
        description="upheld (the objection was accepted: the entry rejected) or dismissed; "
        "see objection_decision"
    )
    objection_decision: ObjectionDecision | None = Field(
        default=None,
        description="The decision on the company's objection: accepted (the entry rejected) "
        "or dismissed",
    )
    listed_on: date | None
    record_id: str | None = Field(description="The listing record in the store")
    term_end: date | None
    earliest_removal: date | None
    removed_on: date | None
    removal_reason: str | None
    removal_record_id: str | None
    steps: list[Step]
    rescored: dict[str, Any] | None = Field(
        default=None, description="The company re-scored today, after a listing or removal"
    )

    @model_validator(mode="before")
    @classmethod
    def _decision(cls, data: Any) -> Any:
        """The objection's decision, read from its stored outcome."""
        if isinstance(data, dict) and "objection_decision" not in data:
            decision = DECISION_OF_OUTCOME.get(data.get("objection_outcome"))
            return {**data, "objection_decision": decision}
        return data


class EntryPage(BaseModel):
    entries: list[EntryOut]


class ObjectionReceipt(BaseModel):
    """What the objecting company learns: its objection is on file, and the entry's state."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    uscc: str
    list_: str = Field(alias="list")
    status: str
    objection_due: date | None


class DeriveOut(BaseModel):
    as_of: date
    today: date
    report_year: int = Field(description="The annual reports checked (last due by as_of)")
    proposed: dict[str, int]
    listed: int
    notified: int


class PublicEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    uscc: str
    record_id: str = Field(description="The listing record")
    name: str | None = Field(description="Masked for an individual business")
    entity_type: str | None
    list_: str = Field(alias="list")
    legal_basis: str
    listed_on: date
    term_end: date | None = Field(description="The day the listing ends, where a term is set")
    source_dept: str | None = Field(description="The department that recorded the listing")
    objection_open: bool = Field(description="An objection to the listing is being decided")


class PublicPage(BaseModel):
    entries: list[PublicEntry]
    total: int = Field(description="Listings published in all (of `list`, when given)")
    next: int | None = Field(description="The `offset` of the next page; null: the last")


def _fail(exc: lists.ListError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def _rescored(state: ServiceState, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with the company re-scored today (a listing or removal changed its tier)."""
    entry["rescored"] = rescore_served(state, entry["uscc"])
    return entry


def _concerning(state: ServiceState, audit: CaseAudit, entry_id: int) -> str:
    """The company of the entry, named to the audit log before a step is taken on it (404
    for none): a refusal of the step is on record under it."""
    try:
        uscc: str = lists.get(state.engine, entry_id)["uscc"]
    except lists.ListError as exc:
        raise _fail(exc) from None
    audit.company(uscc)
    return uscc


def _published_only(caller: Caller) -> bool:
    """A department other than the lists' own sees published listings only: proposals,
    objections, rejections and ended listings are not shared with it (DOMAIN §10)."""
    return caller.role == "department" and caller.department != lists.LIST_DEPARTMENT


def _published(state: ServiceState, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries whose listing is public today: listed, and its record still published."""
    listed = [e for e in entries if e["status"] == "listed" and e.get("record_id")]
    shown = lists.public_records(state.store, [e["record_id"] for e in listed], china_today())
    return [e for e in listed if e["record_id"] in shown]


def _shared(caller: Caller, entry: dict[str, Any]) -> dict[str, Any]:
    """What a department other than the lists' own sees of a published listing: the listing,
    its ground, term and record, not the proposer's text, the evidence records, the company's
    objection and its decision, or the steps."""
    if not _published_only(caller):
        return entry
    return {**entry, "reason": None, "source_records": [], "objection_due": None,
            "objection_due_estimated": False,
            "objection_reason": None, "objection_outcome": None, "removal_reason": None,
            "steps": []}  # fmt: skip


def _own(caller: Caller, entry: dict[str, Any]) -> dict[str, Any]:
    """What a company sees of its own entry: all of it (the legal basis, the reason, the state,
    the objection deadline, the steps), but who took a step only where it was the company's own
    key: the authorities' keys are not the company's to know."""
    if caller.role != "company":
        return entry
    steps = [{**s, "actor": s["actor"] if s["actor"] == caller.key_id else None}
             for s in entry["steps"]]  # fmt: skip
    return {**entry, "steps": steps}


def _require_reader(caller: Caller) -> None:
    """The authorities and departments read entries; a company key its own company's."""
    if not (caller.role == "company" and caller.uscc is not None):
        require(caller, READ, "read list entries")


@router.post("/list-entries", response_model=EntryOut, status_code=201, responses=ERRORS)
def post_entry(body: EntryIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep) -> EntryOut:
    """Propose an entry. Serious illegal and dishonest list: `notified`, the company has 5
    working days to object before it can be listed; other lists: listed at once (and the
    company re-scored)."""
    require(caller, DECIDE, "propose list entries")
    code = audit.code(body.uscc)
    try:
        entry = lists.propose(
            state.engine, state.store, code, body.list_, body.legal_basis, body.reason,
            body.source_records, caller.key_id, body.ground,
        )  # fmt: skip
    except lists.ListError as exc:
        raise _fail(exc) from None
    if entry["status"] == "listed":
        entry = _rescored(state, entry)
    return EntryOut.model_validate(entry)


@router.post("/list-entries:derive", response_model=DeriveOut, responses=ERRORS)
def post_derive(body: DeriveIn, state: StateDep, caller: CallerDep) -> DeriveOut:
    """Propose the entries the records call for (missing annual reports, heavy penalties,
    A-grade taxpayers); companies already on a list are left out. Companies listed by it are
    re-scored by the next batch."""
    require(caller, DERIVE, "derive list entries")
    try:
        counts = lists.derive(state.engine, state.store, body.as_of, by=caller.key_id)
    except lists.ListError as exc:
        raise _fail(exc) from None
    return DeriveOut.model_validate(counts)


@router.get("/list-entries/{entry_id}", response_model=EntryOut, responses=ERRORS)
def get_entry(
    entry_id: EntryId, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> EntryOut:
    """An entry with its steps (the authorities, departments as published; a company key, its
    own company's: another company's entry is unknown to it)."""
    _require_reader(caller)
    try:
        entry = lists.get(state.engine, entry_id)
    except lists.ListError as exc:
        raise _fail(exc) from None
    audit.company(entry["uscc"])
    if caller.role == "company" and entry["uscc"] != caller.uscc:
        raise ApiError(404, "not_found", f"no list entry {entry_id}")
    if _published_only(caller) and not _published(state, [entry]):
        raise ApiError(403, "forbidden", f"list entry {entry_id} is not published: the "
                       f"{caller.department} department sees published listings only")  # fmt: skip
    return EntryOut.model_validate(_own(caller, _shared(caller, entry)))


@router.get("/list-entries", response_model=EntryPage, responses=ERRORS)
def get_entries(
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
    uscc: Annotated[str | None, Query()] = None,
    list_: Annotated[lists.ListName | None, Query(alias="list")] = None,
    status: Annotated[StatusName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EntryPage:
    """Entries, newest first (`expired`: listed entries past their term); a company key lists
    its own company's (asking for another company's is refused, 403)."""
    code = own_cases_code(caller, READ, uscc, "read list entries")
    if _published_only(caller):
        if status not in (None, "listed"):
            raise ApiError(403, "forbidden", f"the {caller.department} department sees "
                           "published listings only (status listed)")  # fmt: skip
        status = "listed"
    found = lists.find(state.engine, code, list_, status, limit)
    if _published_only(caller):
        found = _published(state, found)
    audit.companies(e["uscc"] for e in found)
    return EntryPage(
        entries=[EntryOut.model_validate(_own(caller, _shared(caller, e))) for e in found]
    )


@router.post(
    "/list-entries/{entry_id}/objection", response_model=ObjectionReceipt, responses=ERRORS
)
def post_objection(
    entry_id: EntryId, body: ObjectionIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> ObjectionReceipt:
    """The company objects to a notified entry within its 5 working days
    (`objection_window_closed` after them)."""
    require_may_file(caller, "object to a listing")
    owner = _concerning(state, audit, entry_id)
    try:
        require_acting_for(caller, owner, f"no list entry {entry_id}")
        entry = lists.object_to(state.engine, entry_id, body.reason, caller.key_id)
    except lists.ListError as exc:
        raise _fail(exc) from None
    return ObjectionReceipt.model_validate(entry)


@router.post(
    "/list-entries/{entry_id}/objection-decision", response_model=EntryOut, responses=ERRORS
)
def post_objection_decision(
    entry_id: EntryId,
    body: ObjectionDecisionIn,
    state: StateDep,
    caller: CallerDep,
    audit: CaseAuditDep,
) -> EntryOut:
    """Decide the company's objection: `decision` accepted (the objection wins: the entry is
    rejected) or dismissed (it may be listed now). The older `upheld` (true: accepted) is still
    taken; given with `decision`, the two must agree (422)."""
    require(caller, DECIDE, "decide objections to list entries")
    _concerning(state, audit, entry_id)
    try:
        entry = lists.decide_objection(state.engine, entry_id, body.accepted, body.reason,
                                       caller.key_id)  # fmt: skip
    except lists.ListError as exc:
        raise _fail(exc) from None
    return EntryOut.model_validate(entry)


@router.post("/list-entries/{entry_id}/listing", response_model=EntryOut, responses=ERRORS)
def post_listing(
    entry_id: EntryId, body: ListingIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> EntryOut:
    """List a notified entry once its objection period has passed or its objection was
    dismissed (`objection_window_open` before); the company is re-scored at once."""
    require(caller, DECIDE, "list companies")
    _concerning(state, audit, entry_id)
    try:
        entry = lists.confirm(state.engine, state.store, entry_id, caller.key_id)
    except lists.ListError as exc:
        raise _fail(exc) from None
    return EntryOut.model_validate(_rescored(state, entry))


@router.post("/list-entries/{entry_id}/removal", response_model=EntryOut, responses=ERRORS)
def post_removal(
    entry_id: EntryId, body: RemovalIn, state: StateDep, caller: CallerDep, audit: CaseAuditDep
) -> EntryOut:
    """Take a listed entry off its list from today (`too_early` before its earliest removal
    date: a year on the serious dishonest list); the company is re-scored at once."""
    require(caller, DECIDE, "remove list entries")
    _concerning(state, audit, entry_id)
    try:
        entry = lists.remove(state.engine, state.store, entry_id, body.reason, caller.key_id)
    except lists.ListError as exc:
        raise _fail(exc) from None
    return EntryOut.model_validate(_rescored(state, entry))


@router.get("/public/lists", response_model=PublicPage, responses=ERRORS)
def public_lists(
    state: StateDep,
    audit: PublicAuditDep,
    list_: Annotated[
        Literal["serious_dishonest_list", "abnormal_operation_list", "red_list"] | None,
        Query(alias="list"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> PublicPage:
    """The published lists: companies currently listed, newest first, whoever recorded the
    listing (public information: an individual business's name is masked; no reasons, no
    proposals; an open objection is flagged). Each company shown is a line in the audit log,
    with the purpose when one is sent (public information: none is required)."""
    found, total = lists.public_page(state.engine, state.store, list_, limit, offset)
    audit.companies(e["uscc"] for e in found)
    return PublicPage(entries=[PublicEntry.model_validate(e) for e in found], total=total,
                      next=offset + limit if offset + limit < total else None)  # fmt: skip
