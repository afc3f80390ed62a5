"""The audit line of a case route (credit repair, objections, list entries), written in one place.

Their answers carry a company's credit information (a case and its record, a list entry, the
score and tier a step moved), refusals included (a conflict names the record and why). So every
request to them is logged (DOMAIN §10: who, when, which company, why), as the company look-ups
are: a line per company the route named (`CaseAudit.company`: as soon as it knows it, so that a
refusal after that is on record under it), else one line without a company (a role refused
before anything was read, an unknown case), with the purpose sent (an authority must send one:
400 `purpose_required` before anything is read or changed; a company need not) and the status
answered: the route's own (201 for a filing) or the refusal's. A malformed code is a line
without a company, the code as given in its detail.

The dependency asks the audit log for room before the route runs: a step is refused 503
`audit_unavailable` before anything is changed, rather than made and left unlogged; the line of
a step taken is then queued whatever the backlog. A read (GET) is queued as any read: past the
limit it is answered 503, not served unlogged. `serving.errors` logs the refusals of the other
routes; it leaves those of a request this dependency logged (`request.state.audited`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from serving.audit import AuditUnavailable, probe_detail
from serving.auth import Caller
from serving.deps import (
    CallerDep,
    OptionalPurposeHeader,
    PurposeHeader,
    StateDep,
    purpose_of,
    stated_purpose,
    valid_code,
)  # fmt: skip
from serving.errors import ApiError, crash_status
from serving.state import ServiceState


class CaseAudit:
    """The companies a request concerns, named by its route as it learns them."""

    def __init__(self) -> None:
        self.usccs: list[str] = []
        self.given: str | None = None
        """A malformed code given in the body (`code`), for the line of its refusal."""

    def company(self, uscc: str) -> None:
        """The request concerns this company (once, in the order named)."""
        if uscc not in self.usccs:
            self.usccs.append(uscc)

    def companies(self, usccs: Iterable[str]) -> None:
        for uscc in usccs:
            self.company(uscc)

    def case(self, read: Callable[[], Mapping[str, Any]]) -> str:
        """The company of the case `read` returns (an objection, a repair application), named
        before a step is taken on it, so that a refusal of the step is on record under it; a
        case it does not find (`LookupError`) is 404 `not_found`."""
        try:
            uscc = str(read()["uscc"])
        except LookupError as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        self.company(uscc)
        return uscc

    def code(self, given: str) -> str:
        """A code given in a request's body, validated (422 as `valid_code`) and named; a
        malformed one is kept as given for the line of the refusal."""
        try:
            code = valid_code(given)
        except ApiError:
            self.given = given
            raise
        self.company(code)
        return code


@contextlib.asynccontextmanager
async def _audited(
    request: Request,
    state: ServiceState,
    caller: Caller,
    purpose: str | None,
) -> AsyncIterator[CaseAudit]:
    state.audit.ensure_room()  # before anything is read or changed
    audit = CaseAudit()
    asked = request.query_params.get("uscc")
    if asked is not None:  # a list of one company's cases concerns it, found or not
        with contextlib.suppress(ApiError):  # malformed: the route refuses it (422) and the
            audit.company(valid_code(asked))  # line's detail has the code as given
    try:
        yield audit
    except ApiError as exc:
        _write(request, state, caller, purpose, audit, exc.status)
        raise
    except (RequestValidationError, AuditUnavailable):
        raise  # a malformed body reads nothing; a full log can take nothing
    except Exception as exc:
        _write(request, state, caller, purpose, audit, crash_status(exc))
        raise
    else:
        route = request.scope.get("route")
        _write(request, state, caller, purpose, audit, getattr(route, "status_code", None) or 200)


def _write(
    request: Request,
    state: ServiceState,
    caller: Caller,
    purpose: str | None,
    audit: CaseAudit,
    status: int,
) -> None:
    route = request.scope.get("route")
    endpoint = f"{request.method} {getattr(route, 'path', request.url.path)}"
    detail = probe_detail(audit.given) if audit.given is not None else None
    lines: list[tuple[str | None, int]] = [(u, status) for u in audit.usccs] or [(None, status)]
    request.state.audited = True  # serving.errors does not log the refusal a second time
    state.audit.log_each(caller, endpoint, lines, purpose, detail=detail,
                         admitted=request.method != "GET")  # fmt: skip


async def case_audit(
    request: Request, state: StateDep, caller: CallerDep, x_purpose: PurposeHeader = None
) -> AsyncIterator[CaseAudit]:
    """A case route's request, logged; the authorities state why (`X-Purpose`)."""
    async with _audited(request, state, caller, purpose_of(caller, x_purpose)) as audit:
        yield audit


async def public_audit(
    request: Request, state: StateDep, caller: CallerDep, x_purpose: OptionalPurposeHeader = None
) -> AsyncIterator[CaseAudit]:
    """A read of public information (the published lists), logged with the purpose when one
    is sent (none is required)."""
    async with _audited(request, state, caller, stated_purpose(x_purpose)) as audit:
        yield audit


CaseAuditDep = Annotated[CaseAudit, Depends(case_audit, scope="function")]
"""`scope="function"`: the line is written when the route has answered, before the answer is
sent (a read the log cannot take is answered 503), and the route's refusals reach it."""
PublicAuditDep = Annotated[CaseAudit, Depends(public_audit, scope="function")]
