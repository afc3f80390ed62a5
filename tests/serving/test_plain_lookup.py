"""The company look-up's hot path (`serving.routes.companies.PlainLookup`, a plain Starlette
route before the FastAPI one) answers exactly as the FastAPI route does: the same status, body,
headers and audit lines, for every kind of caller and every refusal (TestClient, SQLite and
PostgreSQL). Anything with a query string, and every other method, is left to the FastAPI
route."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.routing import Match

from records import uscc as codes
from records.publicity import records_on
from records.settings import Settings
from records.workdays import china_today
from serving import objections
from serving.app import create_app
from serving.auth import create_key
from serving.db import audit_log, companies
from serving.routes.companies import PlainLookup
from tests.serving.databases import BACKENDS, Loaded, loaded_copy

COMPARED_HEADERS = ("content-type", "cache-control", "allow", "retry-after")


@dataclass
class Both:
    world: Loaded
    plain: TestClient
    fastapi: TestClient


@pytest.fixture(scope="module", params=BACKENDS)
def both(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Both]:
    with (
        loaded_copy(request.param, request, tmp_path_factory, province, "plain") as world,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = Settings(data_dir=world.data_dir, DATABASE_URL=world.url,
                            duckdb_memory_limit="1GB")  # fmt: skip
        with (
            TestClient(create_app(settings)) as plain,
            TestClient(create_app(settings, plain_lookups=False)) as fastapi,
        ):
            yield Both(world, plain, fastapi)


def _answer(client: TestClient, engine: sa.Engine, method: str, path: str,
            headers: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """What one request answered and the audit lines it wrote (without id and time)."""
    with engine.connect() as con:
        last = con.execute(sa.select(sa.func.coalesce(sa.func.max(audit_log.c.id), 0))).scalar()
    got = client.request(method, path, headers=headers)
    client.app.state.service.audit.flush()  # type: ignore[attr-defined]
    with engine.connect() as con:
        lines = [
            {k: v for k, v in row.items() if k not in ("id", "at")}
            for row in con.execute(
                sa.select(audit_log).where(audit_log.c.id > last).order_by(audit_log.c.id)
            ).mappings()
        ]
    json_body = got.headers.get("content-type") == "application/json" and got.content
    body = got.json() if json_body else got.text
    if isinstance(body, dict) and "error id" in str(body.get("message")):
        body["message"] = "(an error id)"
    return {
        "status": got.status_code, "body": body, "audit": lines,
        "headers": {h: got.headers.get(h) for h in COMPARED_HEADERS},
    }  # fmt: skip


def _company_under_objection(world: Loaded) -> str:
    """A served company with a public record, now under an open objection."""
    today = china_today()
    with world.engine.connect() as con:
        served = con.execute(sa.select(companies.c.uscc).order_by(companies.c.uscc)).scalars()
        candidates = list(served)[10:60]
    for uscc in candidates:
        public = [r for r in records_on(world.store, uscc, today, now=today) if r["public"]]
        if public:
            objections.file_objection(world.engine, world.store, public[0]["record_id"],
                                      "not ours", None, None)  # fmt: skip
            return uscc
    raise AssertionError("no served company with a public record")


def test_the_plain_route_answers_as_the_fastapi_route(both: Both) -> None:
    world = both.world
    with world.engine.connect() as con:
        served = list(con.execute(sa.select(companies.c.uscc).order_by(companies.c.uscc)
                                  .limit(3)).scalars())  # fmt: skip
    own, other, third = served
    disputed = _company_under_objection(world)
    unknown = codes.generate_many(np.random.default_rng(7), ["91"], ["110000"])[0]
    assert unknown not in served
    keys = {
        "regulator": create_key(world.engine, "regulator", None, "plain: regulator"),
        "tax": create_key(world.engine, "department", "tax", "plain: tax"),
        "public": create_key(world.engine, "public", None, "plain: public"),
        "company": create_key(world.engine, "company", None, "plain: company", own),
    }
    bad = own[:-1] + ("0" if own[-1] != "0" else "1")  # a wrong check character
    purpose: dict[str, Any] = {"X-Purpose": "核查 plain test".encode()}  # raw UTF-8, as curl
    cases: list[tuple[str, str, str, dict[str, Any]]] = []
    for who, key in keys.items():
        for uscc in (own, other, disputed, unknown, bad, own.lower()):
            cases.append((who, "GET", f"/v1/companies/{uscc}", {"X-API-Key": key, **purpose}))
    cases += [
        ("no purpose", "GET", f"/v1/companies/{third}", {"X-API-Key": keys["regulator"]}),
        ("utf-8 purpose", "GET", f"/v1/companies/{third}",
         {"X-API-Key": keys["regulator"], "X-Purpose": quote("许可审查")}),
        ("no key", "GET", f"/v1/companies/{third}", purpose),
        ("wrong key", "GET", f"/v1/companies/{third}", {"X-API-Key": "nope", **purpose}),
        ("HEAD", "HEAD", f"/v1/companies/{third}", {"X-API-Key": keys["regulator"], **purpose}),
        ("DELETE", "DELETE", f"/v1/companies/{third}",
         {"X-API-Key": keys["regulator"], **purpose}),
        ("trailing slash", "GET", f"/v1/companies/{third}/",
         {"X-API-Key": keys["regulator"], **purpose}),
    ]  # fmt: skip
    statuses = set()
    for who, method, path, headers in cases:
        plain = _answer(both.plain, world.engine, method, path, headers)
        fastapi = _answer(both.fastapi, world.engine, method, path, headers)
        assert plain == fastapi, (who, method, path)
        statuses.add(plain["status"])
    # the cases cover answers and refusals alike
    assert {200, 400, 401, 404, 405, 422} <= statuses
    flagged = _answer(both.plain, world.engine, "GET", f"/v1/companies/{disputed}",
                      {"X-API-Key": keys["regulator"], **purpose})  # fmt: skip
    assert flagged["body"]["flags"]["objection_open"] is True


def test_the_plain_route_comes_first_and_takes_only_plain_gets(both: Both) -> None:
    app = both.plain.app
    assert isinstance(app.router.routes[0], PlainLookup)  # type: ignore[attr-defined]
    assert not any(isinstance(r, PlainLookup) for r in both.fastapi.app.router.routes)  # type: ignore[attr-defined]
    route = PlainLookup()
    code = "91110000600037341L"

    def scope(method: str = "GET", path: str = f"/v1/companies/{code}",
              query: bytes = b"") -> dict[str, Any]:  # fmt: skip
        return {"type": "http", "method": method, "path": path, "root_path": "",
                "query_string": query}  # fmt: skip

    match, child = route.matches(scope())
    assert match == Match.FULL and child["path_params"] == {"uscc": code}
    assert child["route"] is route  # the metrics label the look-ups by route
    others = [scope(query=b"on=2026-01-01"), scope(query=b"as_of=x"), scope("HEAD"),
              scope("POST"), scope(path=f"/v1/companies/{code}/history"),
              scope(path="/v1/companies:batch"), {"type": "websocket", "path": "/"}]  # fmt: skip
    for other in others:
        assert route.matches(other)[0] == Match.NONE, other
    # a past day goes to the FastAPI route and is answered there (with its `on`)
    regulator = create_key(both.world.engine, "regulator", None, "plain: on")
    with both.world.engine.connect() as con:
        uscc = con.execute(sa.select(companies.c.uscc).limit(1)).scalar_one()
    day = (china_today() - timedelta(days=1)).isoformat()
    got = both.plain.get(f"/v1/companies/{uscc}", params={"on": day},
                         headers={"X-API-Key": regulator, "X-Purpose": "plain test"})  # fmt: skip
    assert got.status_code == 200 and got.json()["on"] == day


def test_a_lookup_sees_each_commit_and_outlives_a_lost_connection(both: Both) -> None:
    """On SQLite the look-ups read on a connection of their own, kept open: it must hold no
    snapshot (a load committed since is served at once), and a connection lost under it costs
    no request (it is opened again)."""
    world = both.world
    regulator = create_key(world.engine, "regulator", None, "plain: fresh")
    headers = {"X-API-Key": regulator, "X-Purpose": "plain test"}
    with world.engine.connect() as con:
        uscc, text = con.execute(
            sa.select(companies.c.uscc, companies.c.full_doc).order_by(companies.c.uscc.desc())
            .limit(1)
        ).one()  # fmt: skip
    lookup = both.plain.app.state.service.lookup  # type: ignore[attr-defined]
    try:
        for marker in ("first load", "second load"):
            with world.engine.begin() as con:
                marked = text.replace(
                    f'"uscc": "{uscc}"', f'"uscc": "{uscc}", "marker": "{marker}"'
                )
                con.execute(
                    companies.update().where(companies.c.uscc == uscc).values(full_doc=marked)
                )
            got = both.plain.get(f"/v1/companies/{uscc}", headers=headers)
            assert got.status_code == 200 and got.json()["marker"] == marker
            if lookup._sqlite is not None:  # SQLite: the look-ups' own connection, no transaction
                assert not lookup._sqlite.driver_connection.in_transaction
        if world.engine.dialect.name == "sqlite":
            lookup._sqlite.driver_connection.close()  # lost under it
            got = both.plain.get(f"/v1/companies/{uscc}", headers=headers)
            assert got.status_code == 200 and got.json()["marker"] == "second load"
    finally:
        with world.engine.begin() as con:
            con.execute(companies.update().where(companies.c.uscc == uscc).values(full_doc=text))
