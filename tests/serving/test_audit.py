"""The audit log is exact (DOMAIN §10: every query is logged: who, when, which company, why): a
step on a case or list entry that re-scores the company is one line, with the caller's purpose
and the status answered, and a step the log cannot take is refused before it is made.

The service runs in-process (TestClient) on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

from records.settings import Settings
from records.workdays import china_today
from serving import repairs
from serving.app import create_app
from serving.auth import create_key
from serving.db import audit_log, companies, list_entries
from serving.state import ServiceState
from tests.serving.databases import Loaded, loaded_copy

PURPOSE = "audit test 审计"
OLD_FIXED = "its score and tier after this change"
"""The purpose re-scores once logged in place of the caller's."""


@dataclass
class Api:
    world: Loaded
    client: TestClient
    keys: dict[str, str]
    used: set[str] = field(default_factory=set)

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.client.app.state.service  # type: ignore[attr-defined]
        return state

    def call(self, method: str, path: str, who: str, purpose: str | None = PURPOSE,
             **kw: Any) -> Response:  # fmt: skip
        """`who`: a role's key, or `company:<uscc>` for a key speaking for that company (which
        sends no purpose unless one is given)."""
        if who.startswith("company:"):
            if who not in self.keys:
                self.keys[who] = create_key(self.world.engine, "company", None, who, who[8:])
            purpose = None  # a company reads its own without giving a reason
        headers: dict[str, str | bytes] = {"X-API-Key": self.keys[who]}
        if purpose is not None:
            headers["X-Purpose"] = purpose.encode()  # UTF-8 bytes, as curl sends them
        answer: Response = self.client.request(method, path, headers=headers, **kw)
        return answer

    def mark(self) -> int:
        self.state.audit.flush()
        with self.world.engine.connect() as con:
            return int(con.execute(sa.select(sa.func.coalesce(sa.func.max(audit_log.c.id), 0)))
                       .scalar_one())  # fmt: skip

    def since(self, mark: int) -> list[dict[str, Any]]:
        """The audit lines written after `mark`, oldest first."""
        self.state.audit.flush()
        with self.world.engine.connect() as con:
            rows = con.execute(
                sa.select(audit_log).where(audit_log.c.id > mark).order_by(audit_log.c.id)
            ).mappings().all()  # fmt: skip
        return [dict(r) for r in rows]

    def logged(self, method: str, path: str, who: str, **kw: Any) -> tuple[Response, list[Any]]:
        """The answer of one request and its audit lines as (uscc, status, role, purpose)."""
        answer, rows = self.rows(method, path, who, **kw)
        return answer, [(r["uscc"], r["status"], r["role"], r["purpose"]) for r in rows]

    def rows(self, method: str, path: str, who: str, **kw: Any) -> tuple[Response, list[Any]]:
        """The answer of one request and its audit lines."""
        mark = self.mark()
        answer = self.call(method, path, who, **kw)
        return answer, self.since(mark)


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy("sqlite", request, tmp_path_factory, province, "audit") as loaded:
        yield loaded


@pytest.fixture(scope="module")
def api(world: Loaded) -> Iterator[Api]:
    settings = Settings(data_dir=world.data_dir, DATABASE_URL=world.url,
                        duckdb_memory_limit="1GB")  # fmt: skip
    keys = {role: create_key(world.engine, role, "tax" if role == "department" else None,
                             f"audit {role}")
            for role in ("admin", "regulator", "department", "public")}  # fmt: skip
    with TestClient(create_app(settings)) as client:
        yield Api(world, client, keys)


def _served(world: Loaded) -> set[str]:
    with world.engine.connect() as con:
        return set(con.execute(sa.select(companies.c.uscc)).scalars())


def _records(api: Api, where: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Records matching `where` (SQL over `r`) without events, of served companies no other test
    of this module took, one per company."""
    with api.world.store.connect() as con:
        rows = con.sql(
            "SELECT r.record_id, r.uscc, r.category FROM records r "
            f"WHERE {where} AND NOT EXISTS (SELECT 1 FROM events e WHERE e.record_id = r.record_id)"
            " ORDER BY r.record_id", params=params or [],
        ).to_arrow_table().to_pylist()  # fmt: skip
    served, found, seen = _served(api.world), [], set[str]()
    for row in rows:
        if row["uscc"] in served and row["uscc"] not in api.used | seen:
            seen.add(row["uscc"])
            found.append(row)
    return found


def _take(api: Api, record: dict[str, Any]) -> dict[str, Any]:
    api.used.add(record["uscc"])
    return record


def _clean_company(api: Api) -> str:
    """An active served enterprise without list records or entries, not taken yet."""
    with api.world.store.connect() as con:
        rows = con.execute(
            "SELECT uscc FROM entities GROUP BY uscc HAVING arg_max(status, recorded_date) = "
            "'active' AND arg_max(entity_type, recorded_date) = 'enterprise' AND uscc NOT IN "
            "(SELECT uscc FROM records WHERE category LIKE '%list%') ORDER BY uscc"
        ).fetchall()
    with api.world.engine.connect() as con:
        listed = set(con.execute(sa.select(list_entries.c.uscc)).scalars())
    served = _served(api.world)
    code: str = next(u for (u,) in rows if u in served and u not in listed | api.used)
    api.used.add(code)
    return code


def _eligible(api: Api) -> dict[str, Any]:
    """A record whose company may apply for its repair today (a penalty past its minimum
    period), of a company not taken yet."""
    today = china_today()
    for row in _records(api, "r.category = 'admin_penalty'"):
        record = repairs.record_on(api.world.store, row["record_id"], today)
        if record is not None and repairs.eligibility(api.world.store, record, today).eligible:
            return _take(api, row)
    raise AssertionError("no record eligible for repair")


def _no_fixed_purpose(api: Api) -> None:
    with api.world.engine.connect() as con:
        fixed = con.execute(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(audit_log.c.purpose == OLD_FIXED)
        ).scalar_one()  # fmt: skip
    assert fixed == 0


# ---- the case routes -----------------------------------------------------------------------------


def test_a_step_that_rescores_is_logged_with_the_callers_purpose_and_status(api: Api) -> None:
    """A step that re-scores the company answers with its new score and tier; it was logged with
    a fixed purpose ("its score and tier after this change") and 200, for a 201 too. Now: one
    line, the caller's purpose as written, the status answered. An authority states why before
    anything is changed (400 `purpose_required`, as for its reads)."""
    code = _clean_company(api)
    body = {"uscc": code, "list": "focus_attention_list", "legal_basis": "第三条",
            "reason": "审计测试"}  # fmt: skip
    unsaid, lines = api.logged("POST", "/v1/list-entries", "regulator", purpose=None, json=body)
    assert unsaid.status_code == 400 and unsaid.json()["code"] == "purpose_required"
    assert lines == [(None, 400, "regulator", None)]
    with api.world.engine.connect() as con:
        proposed = sa.select(list_entries.c.id).where(list_entries.c.uscc == code)
        assert con.execute(proposed).all() == []  # nothing was done
    listed, lines = api.logged("POST", "/v1/list-entries", "regulator", json=body)
    assert listed.status_code == 201 and listed.json()["status"] == "listed", listed.text
    assert listed.json()["rescored"] is not None
    assert lines == [(code, 201, "regulator", PURPOSE)]

    record = _eligible(api)
    applied = api.call("POST", "/v1/repairs", "regulator",
                       json={"record_id": record["record_id"], "reason": "已整改"})  # fmt: skip
    assert applied.status_code == 201, applied.text
    path = f"/v1/repairs/{applied.json()['id']}/decision"
    approved, lines = api.logged("POST", path, "admin", purpose="信用修复 2026-017",
                                 json={"approve": True, "reason": "已修复"})  # fmt: skip
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["rescored"] is not None
    assert lines == [(record["uscc"], 200, "admin", "信用修复 2026-017")]
    _no_fixed_purpose(api)


def test_a_step_the_log_cannot_take_is_refused_before_it_is_made(api: Api) -> None:
    """While the log is full, a step is answered 503 with nothing changed (a step was made, and
    its answer then refused 503, unlogged); once there is room it goes through."""
    code = _clean_company(api)
    body = {"uscc": code, "list": "focus_attention_list", "legal_basis": "第三条",
            "reason": "审计测试"}  # fmt: skip
    writer = api.state.audit
    limit, writer.max_backlog = writer.max_backlog, 0
    try:
        full = api.call("POST", "/v1/list-entries", "regulator", json=body)
        assert full.status_code == 503 and full.json()["code"] == "audit_unavailable"
        with api.world.engine.connect() as con:
            stored = con.execute(sa.select(sa.func.count()).select_from(list_entries).where(
                list_entries.c.uscc == code)).scalar_one()  # fmt: skip
        assert stored == 0
    finally:
        writer.max_backlog = limit
    answer, lines = api.logged("POST", "/v1/list-entries", "regulator", json=body)
    assert answer.status_code == 201 and lines == [(code, 201, "regulator", PURPOSE)]
