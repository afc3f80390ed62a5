"""Every error is JSON `{code, message}`."""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3

import psycopg
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from records import uscc as codes
from serving.audit import AuditUnavailable

logger = logging.getLogger(__name__)

STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "too_large", 422: "invalid", 429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}  # fmt: skip


class ErrorBody(BaseModel):
    code: str
    message: str


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


REFUSED = (400, 403)
"""Refusals (no purpose, a role that may not): logged like the reads they refused, since every
query of credit information is (DOMAIN §10): under the company when the path names one, else
(an entry, a case, a batch: refused before it is read) as a line without a company."""


DENIALS = ("forbidden", "purpose_required")
"""The refusals of access itself (a role that may not, no purpose), logged on every route."""

INVALID_CODE = "invalid_uscc"
"""The code of a malformed company code (`invalid_uscc:<reason>`): a probe, logged without a
company, with the code as given in the line's detail."""


def _audit_refusal(request: Request, status: int, code_name: str) -> None:
    from serving.audit import probe_detail
    from serving.deps import stated_purpose  # deps raises ApiError: imported here, not above

    caller = getattr(request.state, "caller", None)
    route = request.scope.get("route")
    if caller is None or route is None or getattr(request.state, "audited", False):
        return  # no key, no route, or a case route that logged its request itself
    raw = request.path_params.get("uscc")
    probe = code_name.startswith(INVALID_CODE)
    code: str | None = None
    detail: str | None = None
    if not raw and code_name not in DENIALS and not probe:
        return  # a malformed request that names no company reads nothing
    if raw:
        try:
            code = codes.validate(raw)
        except codes.InvalidUSCC:
            detail = probe_detail(raw)  # a malformed code names no company: kept as given
    purpose = stated_purpose(request.headers.get("x-purpose"))
    with contextlib.suppress(AuditUnavailable):  # a refusal serves nothing: it is sent anyway
        request.app.state.service.audit.log(
            caller, f"{request.method} {getattr(route, 'path', request.url.path)}", code,
            purpose, status, detail=detail,
        )  # fmt: skip


def crash_status(exc: BaseException) -> int:
    """The status an unforeseen error is answered with: 503 when the database is away, else
    500 (`install`'s handler of `Exception`)."""
    return 503 if _unreachable(exc) else 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status in REFUSED or exc.code.startswith(INVALID_CODE):
            _audit_refusal(request, exc.status, exc.code)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(AuditUnavailable)
    async def _unlogged(_: Request, exc: AuditUnavailable) -> JSONResponse:
        return error_response(503, "audit_unavailable", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        # its headers stay: a 405's Allow names the methods the path takes
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error_response(422, "invalid", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        """What the service did not foresee: the caller gets an error id, never the driver's
        text (it can hold the SQL, its parameters and the database's address); the service log
        gets the whole exception under that id. A database that cannot be reached is 503."""
        error_id = secrets.token_hex(6)
        where = f"{request.method} {request.url.path}"
        if crash_status(exc) == 503:
            logger.error("database unavailable [%s] on %s: %s", error_id, where, exc)
            return error_response(
                503, "unavailable",
                f"the database cannot be reached; try again shortly (error id {error_id})",
            )  # fmt: skip
        logger.error("internal error [%s] on %s", error_id, where, exc_info=exc)
        return error_response(
            500, "internal_error", f"an internal error occurred (error id {error_id})"
        )


CONNECTION_STATES = ("08", "57P01", "57P02", "57P03")
"""PostgreSQL SQLSTATEs of a connection lost or refused (class 08; the server shutting down or
starting): the database is away, not the statement wrong."""

SQLITE_AWAY = ("database is locked", "unable to open database file")


def _unreachable(exc: BaseException) -> bool:
    """The database is away (a lost or refused connection, a locked or missing SQLite file), as
    opposed to a statement it refused (no such table, a read-only file: a 500 to look into)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate
        return state is None or state.startswith(CONNECTION_STATES)
    if isinstance(orig, sqlite3.OperationalError):
        return any(text in str(orig) for text in SQLITE_AWAY)
    return isinstance(orig, psycopg.InterfaceError)
