"""The tier API for departments: `create_app(settings)` builds it; `lifespan` opens the database
(running its migrations), the key cache, the audit writer and loads the champion model.

Run it with `credsup serve` (uvicorn, 127.0.0.1:8000 by default). Nothing happens at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.published import PublishedModels
from records.settings import Settings
from records.store import Store
from serving import errors
from serving.audit import AuditQuarantine, AuditWriter
from serving.auth import KeyCache
from serving.compactor import AutoCompactor
from serving.db import make_engine, upgrade
from serving.limits import RateLimiter
from serving.lookup import Lookup
from serving.routes import (
    admin,
    companies,
    health,
    lists,
    objections,
    public,
    repairs,
    rescore,
    spotchecks,
    tiers,
)  # fmt: skip
from serving.state import ModelSlot, ServiceState

REQUESTS = Counter("credsup_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "credsup_request_seconds", "HTTP request latency", ["route"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)  # fmt: skip

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip


class MetricsMiddleware:
    """Counts and times requests by route template (plain ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:  # fmt: skip
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], name, str(status["code"])).inc()
            LATENCY.labels(name).observe(time.perf_counter() - started)


class NoStoreMiddleware:
    """Every answer under /v1 carries credit information or is about it: `Cache-Control:
    private, no-store`, so that no browser or proxy keeps a copy (the health, metrics and docs
    routes are left as they are)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:  # fmt: skip
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"cache-control"]
                message["headers"] = [*headers, (b"cache-control", NO_STORE)]
            await send(message)

        await self.app(scope, receive, _send)


NO_STORE = b"private, no-store"


class BodyLimitMiddleware:
    """Refuses a request body larger than `limit` bytes with 413, by its Content-Length before
    anything reads it, and by counting the bytes of a body sent without one (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:  # fmt: skip
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)  # a look-up: nothing to count, no cost added
            return
        declared = next((v for k, v in scope.get("headers") or () if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def _receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(413, self._message)
            return message

        async def _send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _receive, _send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    @property
    def _message(self) -> str:
        return f"the request body exceeds {self.limit:,} bytes"

    async def _refuse(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:  # fmt: skip
        response = errors.error_response(413, "too_large", self._message)
        await response(scope, receive, send)


_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods whose body no route reads."""


class _TooLarge(StarletteHTTPException):
    """A streamed body passed the limit: an HTTP error, so that body parsing lets it through to
    the error handlers (code `too_large`)."""


def create_app(settings: Settings | None = None, *, plain_lookups: bool = True) -> FastAPI:
    """The API. `plain_lookups=False` leaves every request to the FastAPI routes (the tests
    compare the two ways of answering a look-up)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.serving_url
        upgrade(url)
        engine = make_engine(url)
        audit = AuditWriter(engine, quarantine=AuditQuarantine(settings.audit_quarantine_dir))
        audit.start()
        models = PublishedModels(settings.data_dir)
        slot = ModelSlot()
        slot.reload(models)
        lookup = Lookup(engine, url)
        await lookup.open()
        rate = settings.public_requests_per_second
        limiter = RateLimiter(rate, max(1, round(5 * rate)), settings.rate_table)
        store = Store(settings.store_dir, settings.duckdb_memory_limit, settings.duckdb_threads)
        compactor = None
        if settings.auto_compact_files:
            compactor = AutoCompactor(store, settings.auto_compact_files)
            compactor.start()
        app.state.service = ServiceState(
            settings=settings, engine=engine, store=store, compactor=compactor,
            keys=KeyCache(engine), audit=audit, models=models, slot=slot, lookup=lookup,
            limiter=limiter,
        )  # fmt: skip
        # the model and libraries leave ~350,000 long-lived objects: a full collection of them
        # took 225 ms and stalled every request in flight (p99); they never become garbage
        gc.collect()
        gc.freeze()
        timer = None
        if settings.model_reload_seconds:
            timer = asyncio.create_task(_reload_every(settings.model_reload_seconds, slot, models))
        # companies registered since the last load (a look-up without a document says "not yet
        # scored" for them, not "unknown"): read before the first request, then every minute
        await asyncio.to_thread(lookup.try_refresh_newcomers, app.state.service.store)
        newcomers = asyncio.create_task(lookup.keep_newcomers(app.state.service.store))
        try:
            yield
        finally:
            newcomers.cancel()
            if timer is not None:
                timer.cancel()
            audit.stop()
            if compactor is not None:
                compactor.stop()
            limiter.close()
            await lookup.close()
            engine.dispose()

    app = FastAPI(
        title="credit-supervision tier API",
        version="1",
        description="Public credit evaluation, supervision tiers A–D and reasons for departments.",
        lifespan=lifespan,
    )
    errors.install(app)
    for router in (
        companies.router, rescore.router, tiers.router, spotchecks.router, repairs.router,
        objections.router, lists.router, public.router,
        admin.router, health.router,
    ):  # fmt: skip
        # every route may answer 413 (the body limit); those with a key 429 (the public rate)
        limits: dict[int | str, dict[str, Any]] = {
            413: {"model": errors.ErrorBody, "description": "Request body too large"},
        }
        if router is not health.router:
            limits[429] = {"model": errors.ErrorBody,
                           "description": "Too many requests (see Retry-After)"}  # fmt: skip
            limits[503] = {
                "model": errors.ErrorBody,
                "description": "`unavailable`: the database cannot be reached (with an error id; "
                "try again shortly); `audit_unavailable`: the audit log cannot take the read",
            }
        app.include_router(router, responses=limits)
    if plain_lookups:
        # before every other route: the company look-up without a query string, answered
        # without FastAPI's per-request parameter machinery (1.67x the look-ups a second)
        app.router.routes.insert(0, companies.PlainLookup())
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(NoStoreMiddleware)
    app.add_middleware(MetricsMiddleware)
    return app


async def _reload_every(seconds: float, slot: ModelSlot, models: PublishedModels) -> None:
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(slot.current, models)  # loads only a new champion
