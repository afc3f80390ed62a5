"""The audit log is complete and exact (DOMAIN §10: every query is logged: who, when, which
company, why): every request of the case routes (repairs, objections, list entries) is one line
per company it concerns, refusals included, with the caller's purpose and the status answered;
lines keep the query parameters that chose what was read; malformed codes are on record as
given; the command line's reads (`credsup grade`, `lists`, `plan show`, `plan overdue`,
`predict`) require a purpose as the API does, and log their refusals with the API's status.

The service runs in-process (TestClient) on SQLite; the migration of the new column is tested on
both databases.
"""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from httpx import Response
from typer.testing import CliRunner

from cli.main import app as cli
from records.settings import Settings
from records.workdays import china_today
from serving import lists, repairs
from serving.app import create_app
from serving.audit import AuditUnavailable, AuditWriter, bind_asked
from serving.auth import Caller, create_key
from serving.db import alembic_config, audit_log, companies, list_entries, upgrade
from serving.state import ServiceState
from tests.serving.databases import BACKENDS, Loaded, fresh_url, loaded_copy
from tests.serving.pipeline import AS_OF

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


def test_every_repair_request_is_one_line_under_its_company(api: Api) -> None:
    """A company's application (201) and a refusal at once (409) were not logged at all, nor a
    decision that does not re-score (a refusal): their answers carry the record and the case."""
    eligible = _eligible(api)
    spot = _take(api, _records(api, "r.category = 'spot_check'")[0])
    own, other = f"company:{eligible['uscc']}", f"company:{spot['uscc']}"

    applied, lines = api.logged(
        "POST", "/v1/repairs", own, json={"record_id": eligible["record_id"], "reason": "已整改"}
    )
    assert applied.status_code == 201, applied.text
    # the company's own: without a purpose, as its reads are (README: it gives no reason)
    assert lines == [(eligible["uscc"], 201, "company", None)]
    case = applied.json()["id"]

    refused, lines = api.logged(
        "POST", "/v1/repairs", other, json={"record_id": spot["record_id"], "reason": "已整改"}
    )
    assert refused.status_code == 409 and refused.json()["code"] == "not_repairable"
    assert lines == [(spot["uscc"], 409, "company", None)]
    # another company's record: unknown to the key (404), on record under the record's company
    probe, lines = api.logged(
        "POST", "/v1/repairs", own, json={"record_id": spot["record_id"], "reason": "x"}
    )
    assert probe.status_code == 404 and spot["uscc"] not in probe.text
    assert lines == [(spot["uscc"], 404, "company", None)]
    unknown, lines = api.logged(
        "POST", "/v1/repairs", "regulator", json={"record_id": "NO-SUCH-RECORD", "reason": "x"}
    )
    assert unknown.status_code == 404 and lines == [(None, 404, "regulator", PURPOSE)]

    # an authority states why, before anything is done (400, nothing decided)
    unsaid, lines = api.logged("POST", f"/v1/repairs/{case}/decision", "regulator", purpose=None,
                               json={"approve": False, "reason": "x"})  # fmt: skip
    assert unsaid.status_code == 400 and unsaid.json()["code"] == "purpose_required"
    assert lines == [(None, 400, "regulator", None)]
    assert api.call("GET", f"/v1/repairs/{case}", "regulator").json()["status"] == "pending"

    no, lines = api.logged("POST", f"/v1/repairs/{case}/decision", "regulator",
                           json={"approve": False, "reason": "危害后果未消除"})  # fmt: skip
    assert no.status_code == 200 and no.json()["status"] == "refused", no.text
    assert lines == [(eligible["uscc"], 200, "regulator", PURPOSE)]
    again, lines = api.logged("POST", f"/v1/repairs/{case}/decision", "regulator",
                              json={"approve": True, "reason": "x"})  # fmt: skip
    assert again.status_code == 409 and lines == [(eligible["uscc"], 409, "regulator", PURPOSE)]
    for who, status in (("public", 403), ("department", 403)):  # a role that may not: no read
        denied, lines = api.logged("POST", f"/v1/repairs/{case}/decision", who,
                                   json={"approve": True, "reason": "x"})  # fmt: skip
        assert denied.status_code == status and len(lines) == 1 and lines[0][:2] == (None, 403)

    # reads: the case read under its company, a list of one company's under it (found or not)
    read, lines = api.logged("GET", f"/v1/repairs/{case}", own)
    assert read.status_code == 200 and lines == [(eligible["uscc"], 200, "company", None)]
    hidden, lines = api.logged("GET", f"/v1/repairs/{case}", other)
    assert hidden.status_code == 404 and lines == [(eligible["uscc"], 404, "company", None)]
    listed, lines = api.logged("GET", f"/v1/repairs?uscc={spot['uscc']}", "regulator")
    assert listed.status_code == 200 and listed.json()["repairs"] == []
    assert lines == [(spot["uscc"], 200, "regulator", PURPOSE)]
    _no_fixed_purpose(api)


def test_every_objection_request_is_one_line_under_its_company(api: Api) -> None:
    """Filing (no longer a re-score, so no longer logged by one), extending and deciding."""
    record = _take(api, _records(api, "r.category = 'admin_penalty' AND r.severity = 'general'")[0])
    company = f"company:{record['uscc']}"
    filed, lines = api.logged(
        "POST",
        "/v1/objections",
        company,
        json={"record_id": record["record_id"], "reason": "金额有误"},
    )
    assert filed.status_code == 201, filed.text
    assert lines == [(record["uscc"], 201, "company", None)]
    case = filed.json()["id"]
    twice, lines = api.logged(
        "POST",
        "/v1/objections",
        company,
        json={"record_id": record["record_id"], "reason": "again"},
    )
    assert twice.status_code == 409 and lines == [(record["uscc"], 409, "company", None)]

    path = f"/v1/objections/{case}"
    extended, lines = api.logged("POST", f"{path}/extension", "regulator", json={"reason": "核实"})
    assert extended.status_code == 200, extended.text
    assert lines == [(record["uscc"], 200, "regulator", PURPOSE)]
    once, lines = api.logged("POST", f"{path}/extension", "regulator", json={"reason": "again"})
    assert once.status_code == 409 and lines == [(record["uscc"], 409, "regulator", PURPOSE)]

    decided, lines = api.logged(
        "POST",
        f"{path}/decision",
        "regulator",
        json={"outcome": "stop_publishing", "reason": "不再公示"},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["rescored"] is not None  # re-scored: the score went back with it
    # one line, the caller's purpose, the status answered (no second line of the re-score)
    assert lines == [(record["uscc"], 200, "regulator", PURPOSE)]
    late, lines = api.logged("POST", f"{path}/decision", "admin",
                             json={"outcome": "upheld", "reason": "x"})  # fmt: skip
    assert late.status_code == 409 and lines == [(record["uscc"], 409, "admin", PURPOSE)]
    missing, lines = api.logged("POST", "/v1/objections/2000000000/extension", "regulator",
                                json={"reason": "x"})  # fmt: skip
    assert missing.status_code == 404 and lines == [(None, 404, "regulator", PURPOSE)]
    _no_fixed_purpose(api)


def test_every_list_entry_request_is_one_line_under_its_company(api: Api) -> None:
    """A proposal that notifies, the company's objection, its decision and a refused removal
    were not logged; listing was, with a fixed purpose and 200 whatever was answered."""
    code = _clean_company(api)
    company = f"company:{code}"
    proposed, lines = api.logged("POST", "/v1/list-entries", "regulator", json={
        "uscc": code, "list": "serious_dishonest_list", "legal_basis": "第二条",
        "reason": "审计测试",
    })  # fmt: skip
    assert proposed.status_code == 201 and proposed.json()["status"] == "notified"
    assert lines == [(code, 201, "regulator", PURPOSE)]
    entry = proposed.json()["id"]
    path = f"/v1/list-entries/{entry}"

    objected, lines = api.logged("POST", f"{path}/objection", company, json={"reason": "有误"})
    assert objected.status_code == 200, objected.text
    assert lines == [(code, 200, "company", None)]
    dismissed, lines = api.logged(
        "POST",
        f"{path}/objection-decision",
        "regulator",
        json={"decision": "dismissed", "reason": "理由不成立"},
    )
    assert dismissed.status_code == 200 and lines == [(code, 200, "regulator", PURPOSE)]
    listed, lines = api.logged("POST", f"{path}/listing", "regulator", json={})
    assert listed.status_code == 200 and listed.json()["rescored"], listed.text
    assert lines == [(code, 200, "regulator", PURPOSE)]
    early, lines = api.logged("POST", f"{path}/removal", "regulator", json={"reason": "x"})
    assert early.status_code == 409 and early.json()["code"] == "too_early", early.text
    assert lines == [(code, 409, "regulator", PURPOSE)]

    # another company's key: the entry is unknown to it, and the probe on record under it
    stranger = f"company:{_clean_company(api)}"
    hidden, lines = api.logged("GET", path, stranger)
    assert hidden.status_code == 404 and lines == [(code, 404, "company", None)]
    asked, lines = api.logged("GET", f"/v1/list-entries?uscc={code}", stranger)
    assert asked.status_code == 403 and lines == [(code, 403, "company", None)]
    read, lines = api.logged("GET", f"/v1/list-entries?uscc={code}", "regulator")
    assert read.status_code == 200 and lines == [(code, 200, "regulator", PURPOSE)]
    _no_fixed_purpose(api)


# ---- what was asked: the query, the writer, the column -------------------------------------------


def test_lines_keep_the_parameters_that_chose_what_was_read(api: Api) -> None:
    code = next(iter(sorted(_served(api.world))))
    mark = api.mark()
    day = AS_OF.isoformat()
    read = api.call("GET", f"/v1/companies/{code}/records", "regulator", params={"on": day})
    assert read.status_code == 200, read.text
    listed = api.call("GET", "/v1/objections", "regulator",
                      params={"uscc": code, "status": "open", "limit": 5})  # fmt: skip
    assert listed.status_code == 200
    page = api.call("GET", "/v1/admin/audit", "admin", params={"uscc": code, "limit": 5})
    assert page.status_code == 200
    shown = {(e["endpoint"], e["detail"]) for e in page.json()["entries"] if e["id"] > mark}
    assert shown == {
        ("GET /v1/companies/{uscc}/records", f"on={day}"),
        ("GET /v1/objections", f"uscc={code}&status=open&limit=5"),
    }
    # as written: a Chinese value is not percent-encoded, a control character is a space (on
    # a route that takes what it is not asked: the company routes refuse unknown parameters)
    mark = api.mark()
    asked = {"uscc": code, "status": "open", "note": "核\x00查"}
    assert api.call("GET", "/v1/objections", "regulator", params=asked).is_success
    assert [r["detail"] for r in api.since(mark)] == [f"uscc={code}&status=open&note=核 查"]


def test_the_writer_keeps_what_was_asked_per_context_and_admits_a_step_made(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    engine = sa.create_engine(url)
    writer = AuditWriter(engine, max_backlog=1)  # not started: flush() writes synchronously
    caller = Caller(key_id=3, role="regulator", department=None, name="t")
    code = "91110000600037341L"

    def request(params: list[tuple[str, str]]) -> None:
        bind_asked(params)
        writer.log(caller, "GET /x", code, "why", 200)

    def elsewhere() -> None:  # another request: none of the first one's
        writer.log(caller, "GET /x", code, "why", 200)
        writer.flush()
        writer.log(caller, "GET /x", code, "why", 200, detail="x" * 600)
        with pytest.raises(AuditUnavailable, match="not served unlogged"):
            writer.ensure_room()
        writer.log_each(caller, "POST /y", [(code, 201)], "why", admitted=True)  # it stands

    contextvars.Context().run(request, [("on", "2026-03-31"), ("note", "a\x00b")])
    writer.flush()
    contextvars.Context().run(elsewhere)
    assert writer.backlog == 2
    writer.flush()
    with engine.connect() as con:
        details = list(
            con.execute(sa.select(audit_log.c.detail).order_by(audit_log.c.id)).scalars()
        )
    assert details == ["on=2026-03-31&note=a b", None, "x" * 512, None]
    engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_detail_column_comes_and_goes_and_the_log_stays_append_only(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_url(backend, request, tmp_path)
    upgrade(url)
    engine = sa.create_engine(url)
    marker = secrets.token_hex(4)
    row = {"at": datetime.now(UTC), "key_id": 1, "role": "admin", "endpoint": "GET /x",
           "purpose": marker, "status": 200}  # fmt: skip
    try:
        with engine.begin() as con:
            con.execute(audit_log.insert().values(**row, detail="on=2026-01-05"))
        command.downgrade(alembic_config(url), "0008")
        assert "detail" not in {c["name"] for c in sa.inspect(engine).get_columns("audit_log")}
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as con:
            con.execute(sa.text("DELETE FROM audit_log"))
        upgrade(url)
        with engine.begin() as con:
            con.execute(audit_log.insert().values(**row, detail=None))
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as con:
            con.execute(audit_log.update().values(detail="changed"))
        with engine.connect() as con:
            kept = con.execute(sa.select(audit_log.c.purpose, audit_log.c.detail)).all()
        assert [tuple(r) for r in kept] == [(marker, None), (marker, None)]
    finally:
        engine.dispose()


# ---- malformed codes -----------------------------------------------------------------------------


def test_a_malformed_code_is_on_record_as_given(api: Api) -> None:
    """Probing codes is visible: a 422 for a malformed code is a line without a company, the
    code as given in its detail (cut to the column's width)."""
    cases = [
        ("GET", "/v1/companies/nonsense", "uscc=nonsense"),
        ("GET", "/v1/companies/nonsense/records?on=2026-01-05", "uscc=nonsense&on=2026-01-05"),
        ("POST", "/v1/companies/nonsense:rescore", "uscc=nonsense"),
        ("GET", "/v1/objections?uscc=nonsense", "uscc=nonsense"),
        ("GET", "/v1/repairs?uscc=nonsense&limit=3", "uscc=nonsense&limit=3"),
    ]
    for method, path, detail in cases:
        answer, rows = api.rows(method, path, "regulator")
        assert answer.status_code == 422 and answer.json()["code"].startswith("invalid_uscc")
        lines = [(r["uscc"], r["status"], r["endpoint"].split()[0], r["detail"]) for r in rows]
        assert lines == [(None, 422, method, detail)], path
    mark = api.mark()
    body = {"uscc": "91-BAD", "list": "red_list", "legal_basis": "x", "reason": "x",
            "ground": "honour"}  # fmt: skip
    answer = api.call("POST", "/v1/list-entries", "regulator", json=body)
    assert answer.status_code == 422 and answer.json()["code"].startswith("invalid_uscc")
    assert [(r["uscc"], r["status"], r["detail"]) for r in api.since(mark)] == [
        (None, 422, "uscc=91-BAD")
    ]
    mark = api.mark()
    long = "9" * 2000
    assert api.call("GET", f"/v1/companies/{long}", "public").status_code == 422
    [line] = api.since(mark)
    assert line["uscc"] is None and line["detail"] == f"uscc={long}"[:512]


def test_a_batchs_malformed_codes_are_on_record_as_given(api: Api) -> None:
    """A batch answered its malformed codes in `invalid` (200) and logged nothing of them,
    where a look-up of one is a line without a company (422, the code as given): asking a batch
    of made-up codes was an unrecorded way to probe. Each distinct malformed code is now such a
    line, with the batch's other lines (queued together: all or none)."""
    code = _clean_company(api)
    unknown = "91110000600037341L"  # valid, not known here
    long = "9" * 64  # the longest a batch takes
    asked = [code, "nonsense", unknown, "91-BAD", "nonsense", long]
    for role in ("regulator", "public"):
        answer, rows = api.rows("POST", "/v1/companies:batch?on=" + AS_OF.isoformat(), role,
                                json={"usccs": asked})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert [i["uscc"] for i in answer.json()["invalid"]] == ["nonsense", "91-BAD", "nonsense",
                                                                 long]  # fmt: skip
        on = f"on={AS_OF.isoformat()}"
        lines = sorted(((r["uscc"] or "", r["status"], r["detail"]) for r in rows), key=str)
        assert lines == sorted([
            (code, 200, on), (unknown, 404, on), ("", 422, f"uscc=nonsense&{on}"),
            ("", 422, f"uscc=91-BAD&{on}"), ("", 422, f"uscc={long}&{on}"),
        ], key=str), role  # fmt: skip
        assert {(r["endpoint"], r["role"]) for r in rows} == {("POST /v1/companies:batch", role)}
    # a batch of malformed codes alone: a line each, none for a company
    answer, rows = api.rows("POST", "/v1/companies:batch", "regulator",
                            json={"usccs": ["x1", "x2"]})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["companies"] == []
    assert sorted((r["uscc"], r["status"], r["detail"]) for r in rows) == [
        (None, 422, "uscc=x1"), (None, 422, "uscc=x2")]  # fmt: skip


# ---- the command line ----------------------------------------------------------------------------


def max_id(world: Loaded) -> int:
    with world.engine.connect() as con:
        return int(
            con.execute(sa.select(sa.func.coalesce(sa.func.max(audit_log.c.id), 0))).scalar_one()
        )


def test_the_command_line_requires_a_purpose_and_logs_the_day_read(world: Loaded) -> None:
    """`credsup grade` logged "command line (by root on vm)" without --purpose: an operator
    reads any company, so the API's rule for the authorities holds here too; so did `plan show`,
    `plan overdue` and `predict`, which require it now as well. A refusal is logged (400), as
    the API logs one."""
    env = {"CREDSUP_DATA_DIR": str(world.data_dir), "DATABASE_URL": world.url,
           "MLFLOW_TRACKING_URI": None}  # fmt: skip
    runner = CliRunner()
    code = next(iter(sorted(_served(world))))
    day = AS_OF.isoformat()

    def lines(mark: int) -> list[tuple[Any, ...]]:
        with world.engine.connect() as con:
            rows = con.execute(
                sa.select(audit_log.c.uscc, audit_log.c.role, audit_log.c.endpoint,
                          audit_log.c.purpose, audit_log.c.detail)
                .where(audit_log.c.id > mark).order_by(audit_log.c.id)
            ).all()  # fmt: skip
        return [tuple(r) for r in rows]

    mark = max_id(world)
    for args in (["grade", code, "--on", day], ["grade", code, "--on", day, "--purpose", " "],
                 ["lists", "show", "1"], ["lists", "list"], ["lists", "confirm", "1"],
                 ["lists", "remove", "1", "--reason", "x"], ["plan", "show", "SJ-2026-00001"],
                 ["plan", "overdue"], ["plan", "overdue", "--purpose", ""],
                 ["predict", "--points", "points.csv"]):  # fmt: skip
        refused = runner.invoke(cli, args, env=env)
        assert refused.exit_code == 2 and "--purpose" in refused.output, (args, refused.output)
    # nothing read; each refusal logged, as the API logs its 400 purpose_required (under the
    # company a valid code names, else without one)
    refusals = lines(mark)
    assert [(r[0], r[2]) for r in refusals] == [
        (code, "credsup grade"), (code, "credsup grade"), (None, "credsup lists show"),
        (None, "credsup lists list"), (None, "credsup lists confirm"),
        (None, "credsup lists remove"), (None, "credsup plan show"),
        (None, "credsup plan overdue"), (None, "credsup plan overdue"), (None, "credsup predict"),
    ]  # fmt: skip
    assert {(r[1], r[4]) for r in refusals} == {("operator", None)}
    assert all(r[3].startswith("command line (by ") for r in refusals)
    mark = max_id(world)

    graded = runner.invoke(cli, ["grade", code, "--on", day, "--purpose", "年报抽查", "--json"],
                           env=env)  # fmt: skip
    assert graded.exit_code == 0, graded.output
    [(uscc, role, endpoint, purpose, detail)] = lines(mark)
    assert (uscc, role, endpoint, detail) == (code, "operator", "credsup grade", f"on={day}")
    assert purpose.startswith("年报抽查 (by ")
    shown = runner.invoke(cli, ["lists", "list", "--status", "listed", "--limit", "3",
                                "--purpose", "名单核对"], env=env)  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert {r[4] for r in lines(mark)[1:]} == {"status=listed&limit=3"}
    # `plan overdue` required no purpose either ("command line (by …)"): now as the others
    mark = max_id(world)
    late = runner.invoke(cli, ["plan", "overdue", "--as-of", day, "--purpose", "逾期核查",
                               "--json"], env=env)  # fmt: skip
    assert late.exit_code == 0, late.output
    logged = lines(mark)
    assert logged and {(r[1], r[2], r[4]) for r in logged} == {
        ("operator", "credsup plan overdue", f"as_of={day}")}  # fmt: skip
    assert all(r[3].startswith("逾期核查 (by ") for r in logged)


def test_command_line_refusals_are_logged_with_the_status_the_api_answers(api: Api) -> None:
    """A command-line read was logged 200 before it was known to find anything: a grade without
    an evaluation, a step on an entry its state then refused; an unknown entry or plan, or a
    malformed code, was not logged at all. Now each line has the status the API answers (and
    logs) for the same request: 404, 409, 422 (the code as given in its detail, as a probe)."""
    world = api.world
    env = {"CREDSUP_DATA_DIR": str(world.data_dir), "DATABASE_URL": world.url,
           "MLFLOW_TRACKING_URI": None}  # fmt: skip
    runner = CliRunner()

    def run(*args: str, exit_code: int) -> list[tuple[Any, ...]]:
        mark = api.mark()
        done = runner.invoke(cli, [*args, "--purpose", "复核"], env=env)
        assert done.exit_code == exit_code, (args, done.output)
        return [(r["uscc"], r["status"], r["endpoint"], r["detail"]) for r in api.since(mark)]

    code = _clean_company(api)
    assert run("grade", code, "--on", "2000-01-03", exit_code=1) == [
        (code, 404, "credsup grade", "on=2000-01-03")]  # fmt: skip
    assert run("grade", "91-BAD", "--on", "2026-01-05", exit_code=2) == [
        (None, 422, "credsup grade", "uscc=91-BAD&on=2026-01-05")]  # fmt: skip
    # a malformed code asked of the list entries was logged 200 (found nothing): now a probe
    assert run("lists", "list", "--uscc", "91-BAD", "--status", "listed", exit_code=2) == [
        (None, 422, "credsup lists list", "uscc=91-BAD&status=listed&limit=100")]  # fmt: skip
    answer, rows = api.rows("GET", "/v1/list-entries?uscc=91-BAD&status=listed", "regulator")
    assert answer.status_code == 422, answer.text
    assert [(r["uscc"], r["status"]) for r in rows] == [(None, 422)]
    # no purpose: refused before anything is read, and logged as the API logs its 400
    for args, company in ((["grade", code, "--on", "2026-01-05"], code),
                          (["grade", "91-BAD", "--on", "2026-01-05"], None),
                          (["lists", "list", "--uscc", code], code), (["lists", "show", "1"], None),
                          (["plan", "show", "SJ-2099-99999"], None)):  # fmt: skip
        mark = api.mark()
        done = runner.invoke(cli, args, env=env)
        assert done.exit_code == 2 and "say why" in done.output, (args, done.output)
        command = "grade" if args[0] == "grade" else " ".join(args[:2])
        assert [(r["uscc"], r["status"], r["endpoint"]) for r in api.since(mark)] == [
            (company, 400, f"credsup {command}")]  # fmt: skip
    answer, rows = api.rows("GET", f"/v1/companies/{code}", "regulator", purpose=None)
    assert answer.status_code == 400 and [(r["uscc"], r["status"]) for r in rows] == [(code, 400)]
    for args in (["lists", "show", "999999"], ["lists", "confirm", "999999", "--no-rescore"],
                 ["lists", "remove", "999999", "--reason", "x", "--no-rescore"]):  # fmt: skip
        assert run(*args, exit_code=2) == [(None, 404, f"credsup {' '.join(args[:2])}", None)]
    assert run("plan", "show", "SJ-2099-99999", exit_code=2) == [
        (None, 404, "credsup plan show", None)]  # fmt: skip
    assert run("plan", "overdue", "--plan-id", "SJ-2099-99999", exit_code=2) == [
        (None, 404, "credsup plan overdue", "plan_id=SJ-2099-99999")]  # fmt: skip
    # as the API logs them now (an unknown plan was not logged there either)
    for path, endpoint, detail in (
        ("/v1/spot-check-plans/SJ-2099-99999", "GET /v1/spot-check-plans/{plan_id}", None),
        ("/v1/spot-check-tasks/overdue?plan_id=SJ-2099-99999", "GET /v1/spot-check-tasks/overdue",
         "plan_id=SJ-2099-99999"),
    ):  # fmt: skip
        answer, rows = api.rows("GET", path, "regulator")
        assert answer.status_code == 404, answer.text
        assert [(r["uscc"], r["status"], r["endpoint"], r["detail"]) for r in rows] == [
            (None, 404, endpoint, detail)]  # fmt: skip
    # a step the entry's state refuses: 409 under its company, as the API's line (it was 200)
    entry = lists.propose(world.engine, world.store, code, "serious_dishonest_list", "第十条",
                          "审计测试")  # fmt: skip
    assert entry["status"] == "notified"
    entry_id = str(entry["id"])
    assert run("lists", "confirm", entry_id, "--no-rescore", exit_code=1) == [
        (code, 409, "credsup lists confirm", None)]  # fmt: skip
    assert run("lists", "remove", entry_id, "--reason", "x", "--no-rescore", exit_code=1) == [
        (code, 409, "credsup lists remove", None)]  # fmt: skip
    assert run("lists", "show", entry_id, exit_code=0) == [(code, 200, "credsup lists show", None)]
