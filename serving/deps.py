"""Request dependencies: the service state, the caller (401/403) and the declared purpose."""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader

from records import uscc as codes
from records.publicity import records_on
from records.workdays import china_today
from serving.audit import bind_asked, clean_purpose
from serving.auth import AUTHORITIES, NO_PURPOSE, Caller
from serving.errors import ApiError
from serving.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


API_KEY = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKey", auto_error=False,
    description="The caller's API key (`credsup keys create`): every `/v1` route needs one; "
    "without a valid one the answer is 401 `unauthorized`.",
)  # fmt: skip
"""The key as the OpenAPI document declares it (a security scheme, so that Swagger UI's
Authorize and generated clients send it). `auto_error=False`: a missing key reaches
`get_caller`, which answers 401 `unauthorized` as before (FastAPI's own error would differ)."""


async def get_caller(
    request: Request,
    state: StateDep,
    x_api_key: Annotated[str | None, Security(API_KEY)],
) -> Caller:
    caller = state.keys.get(x_api_key)
    if caller is None:
        raise ApiError(401, "unauthorized", "a valid X-API-Key header is required")
    if caller.role in NO_PURPOSE:
        wait = state.limiter.wait(caller.key_id)
        if wait:
            raise ApiError(
                429, "rate_limited",
                f"this {caller.role} key asks more than {state.limiter.rate:g} times a second; "
                f"try again in {wait:.1f} s", headers={"Retry-After": str(math.ceil(wait))},
            )  # fmt: skip
    request.state.caller = caller  # a refused read of a company is audited too (serving.errors)
    bind_asked(request.query_params.multi_items())  # every audit line of it keeps its query
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def require(caller: Caller, roles: frozenset[str], what: str) -> None:
    if caller.role not in roles:
        raise ApiError(403, "forbidden", f"role {caller.role} may not {what}")


def own_cases_code(
    caller: Caller, roles: frozenset[str], uscc: str | None, what: str
) -> str | None:
    """The company whose cases (objections, repair applications) a list may show: any, or the
    one asked for, to `roles`; a company key lists its own company's only (asking for another
    company's is refused, 403)."""
    if caller.role == "company" and caller.uscc is not None:
        if uscc is not None and valid_code(uscc) != caller.uscc:
            raise ApiError(403, "forbidden", f"a company key may {what} of its own company only")
        return caller.uscc
    require(caller, roles, what)
    return None if uscc is None else valid_code(uscc)


def require_may_file(caller: Caller, what: str) -> None:
    """Before anything is looked up: only a company (for itself) or an authority files."""
    if caller.role not in AUTHORITIES and caller.role != "company":
        raise ApiError(403, "forbidden", f"role {caller.role} may not {what}: only the company "
                       "itself (a company key) or an authority")  # fmt: skip


def require_acting_for(caller: Caller, uscc: str, missing: str) -> None:
    """Only the company itself (a `company` key for it) or an authority may do this for it. To
    anyone else what is another company's reads as unknown (`missing`, the message an unknown
    id gets): which company a record or entry belongs to is not told."""
    if not caller.acts_for(uscc):
        raise ApiError(404, "not_found", missing)


def department_shares(state: ServiceState, caller: Caller, uscc: str, record_id: str) -> bool:
    """Whether the caller may read a case about this record: a department only when the record
    is public today or its own (as `/companies/{uscc}/records` shows them); other roles by
    their role checks."""
    if caller.role != "department":
        return True
    today = china_today()
    for r in records_on(state.store, uscc, today, now=today):
        if r["record_id"] == record_id:
            return bool(r["public"] or r["source_dept"] == caller.department)
    return False


def purpose_of(
    caller: Caller,
    x_purpose: str | None,
) -> str | None:
    """Non-public roles must say why they read credit information (DOMAIN §10). The header is
    UTF-8, sent as raw bytes (curl) or percent-encoded (browsers); the server reads header bytes
    as latin-1, so they are decoded again here to log the purpose as it was written."""
    text = stated_purpose(x_purpose)
    if caller.role not in NO_PURPOSE and not text:
        raise ApiError(
            400, "purpose_required", "send X-Purpose: why this credit information is read"
        )
    return text


def stated_purpose(x_purpose: str | None) -> str | None:
    """The purpose as written (see `purpose_of`), or None where none is sent: for reads that
    log a purpose without requiring one."""
    return clean_purpose(_utf8(x_purpose or ""))


def _utf8(header: str) -> str:
    try:
        text = header.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        text = header  # not UTF-8 bytes: kept as received
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return text  # percent signs that are no UTF-8 encoding: kept as written


PurposeHeader = Annotated[
    str | None,
    Header(
        description="Why the credit information is read, as written (UTF-8, raw or "
        "percent-encoded), kept in the audit log. Required of the admin, regulator, analyst "
        "and department roles: without it they are answered 400 `purpose_required`; public "
        "and company keys need not send one.",
    ),
]
"""The purpose of a route that requires it of non-public roles (`purpose_of`)."""
OptionalPurposeHeader = Annotated[
    str | None,
    Header(
        description="Why the information is read, kept in the audit log when sent (not "
        "required here: what this route answers is public, or the route records a step).",
    ),
]
"""The purpose of a route that logs one when sent, requiring none (`stated_purpose`)."""


def valid_code(uscc: str) -> str:
    try:
        return codes.validate(uscc)
    except codes.InvalidUSCC as exc:
        raise ApiError(422, f"invalid_uscc:{exc.reason}", exc.message) from None
