"""End to end: the batch pipeline on a small simulated province, `credsup load`, and the tier API
served by a real uvicorn process (`credsup serve`) on a free loopback port, queried over HTTP:
every endpoint, the role matrix, the audit log, schemathesis against /openapi.json, and a
champion whose artifact cannot be loaded (the service keeps the previous model; /readyz says so).
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow.parquet as pq
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from records.store import Store
from records.workdays import china_today
from serving.db import api_keys, audit_log, make_engine
from serving.load import mask_name
from tests.serving.pipeline import AS_OF, build_province, credsup
from tests.serving.uvicorn import start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
ROLES = ("admin", "regulator", "analyst", "department", "public")
DEPARTMENT = "tax"
UNKNOWN = "91110000600037341L"  # a valid code the province does not have
MALFORMED = "91110000600037341X"  # wrong check character
STARTUP_SECONDS = 120.0
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance,
]  # fmt: skip
EXAMPLES = 25


@dataclass
class Province:
    data_dir: Path
    keys: dict[str, str]
    key_ids: dict[str, int]
    tiers: dict[str, int]
    """Companies per tier as of AS_OF, as `credsup tier` reported them."""
    tiered: str
    """An enterprise with a tier."""
    individual: str
    """An individual business with a tier (its name is masked in the public view)."""
    individual_name: str
    busy: list[str]
    """Companies with records from many departments."""


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Province:
    data_dir = tmp_path_factory.mktemp("e2e")
    built = build_province(data_dir)
    loaded = credsup(data_dir, "load", "--as-of", AS_OF.isoformat())
    # a spot-check plan, so the spot-check endpoints have something to serve
    credsup(data_dir, "plan", "items", "import", "--preset", "national-default")
    credsup(data_dir, "plan", "inspectors", "demo")
    credsup(data_dir, "plan", "create", "--name", "e2e", "--departments", "samr,fire",
            "--snapshot", AS_OF.isoformat(), "--seed", "1")  # fmt: skip
    assert loaded["companies"] >= built["tiers"][AS_OF]["companies"] > 2500
    keys = {
        role: credsup(data_dir, "keys", "create", "--role", role, "--name", f"e2e {role}",
                      *(["--department", DEPARTMENT] if role == "department" else []))["key"]
        for role in ROLES
    }  # fmt: skip
    engine = make_engine(f"sqlite:///{data_dir / 'serving.db'}")
    with engine.connect() as con:
        ids = dict(con.execute(sa.select(api_keys.c.prefix, api_keys.c.id)).all())
    engine.dispose()
    tier_file = next((data_dir / "results" / "tiers" / f"as_of={AS_OF}").glob("*.parquet"))
    tiers = pq.read_table(tier_file, columns=["uscc", "tier"]).to_pandas().set_index("uscc")
    with Store(data_dir / "store", memory_limit="1GB", threads=2).connect() as con:
        entities = con.sql(
            "SELECT uscc, arg_max(name, recorded_date) AS name, "
            "arg_max(entity_type, recorded_date) AS entity_type FROM entities GROUP BY uscc"
        ).df()
        busy = con.sql(
            "SELECT uscc FROM records GROUP BY uscc "
            "ORDER BY count(DISTINCT source_dept) DESC, count(*) DESC, uscc LIMIT 3"
        ).fetchall()
    entities = entities[entities["uscc"].isin(tiers.index)].sort_values("uscc")
    enterprise = entities[entities["entity_type"] == "enterprise"].iloc[0]
    individual = entities[
        (entities["entity_type"] == "individual_business") & (entities["name"].str.len() > 4)
    ].iloc[0]
    return Province(
        data_dir=data_dir,
        keys=keys,
        key_ids={role: ids[key[:10]] for role, key in keys.items()},
        tiers=built["tiers"][AS_OF]["tiers"],
        tiered=str(enterprise["uscc"]),
        individual=str(individual["uscc"]),
        individual_name=str(individual["name"]),
        busy=[str(u) for (u,) in busy],
    )


@pytest.fixture(scope="module")
def server(province: Province) -> Iterator[Server]:
    log = province.data_dir / "uvicorn.log"
    started = None
    for _ in range(3):  # another process may take the port between our probe and uvicorn's bind
        started = start_server(province.data_dir, log)
        if started is not None:
            break
    if started is None:
        pytest.fail(f"the service did not start:\n{log.read_text(errors='replace')[-4000:]}")
    process, base_url = started
    try:
        yield Server(base_url=base_url, process=process, log=log)
    finally:
        stop_server(process)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as http:
        yield http
    assert server.process.poll() is None, server.log.read_text(errors="replace")[-4000:]


def as_(province: Province, role: str, purpose: str | None = "e2e test") -> dict[str, str]:
    headers = {"X-API-Key": province.keys[role]}
    if purpose is not None:
        headers["X-Purpose"] = purpose
    return headers


def error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the JSON error {code, message} with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"} and body["message"], body
    if code is not None:
        assert body["code"] == code, body
    return body


# ---- checks, run in order by the one test ------------------------------------------------


def check_health_readiness_metrics_docs_and_openapi(
    client: httpx.Client, province: Province
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] and body["database"] == "ok" and body["store"] == "ok"
    assert body["model"]["loaded"] and body["model"]["version"] == "1"
    assert body["model"]["last_reload_error"] is None
    assert body["audit_backlog"] >= 0 and body["audit_refused"] == 0

    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "credit-supervision tier API"
    assert set(spec["paths"]) == {
        "/v1/companies/{uscc}", "/v1/companies:batch", "/v1/companies/{uscc}/history",
        "/v1/companies/{uscc}/records", "/v1/tiers/summary", "/v1/admin/audit",
        "/v1/admin/audit/refused", "/v1/admin/reload", "/healthz", "/readyz", "/metrics",
        "/v1/check-items", "/v1/check-items/{item_id}", "/v1/inspectors",
        "/v1/spot-check-plans", "/v1/spot-check-plans/{plan_id}",
        "/v1/spot-check-plans/{plan_id}/notice", "/v1/spot-check-plans/{plan_id}/verification",
        "/v1/spot-check-plans/{plan_id}/cancel", "/v1/spot-check-plans/{plan_id}/audit-package",
        "/v1/spot-check-tasks/{task_id}/result", "/v1/spot-check-tasks/overdue",
        "/v1/spot-check-results", "/v1/repairs", "/v1/repairs/overdue", "/v1/repairs/{case_id}",
        "/v1/repairs/{case_id}/decision", "/v1/companies/{uscc}:rescore",
        "/v1/objections", "/v1/objections/overdue", "/v1/objections/{case_id}",
        "/v1/objections/{case_id}/decision", "/v1/objections/{case_id}/extension",
        "/v1/list-entries", "/v1/list-entries/{entry_id}", "/v1/list-entries/{entry_id}/listing",
        "/v1/list-entries/{entry_id}/objection", "/v1/list-entries/{entry_id}/objection-decision",
        "/v1/list-entries/{entry_id}/removal", "/v1/list-entries:derive",
        "/v1/public/companies/{uscc}", "/v1/public/lists",
    }  # fmt: skip
    # the body limit on every route, the public keys' rate on every route with a key
    answers = {path: set(op["responses"]) for path, ops in spec["paths"].items()
               for op in ops.values()}  # fmt: skip
    assert all("413" in codes for codes in answers.values())
    assert all("429" in codes for path, codes in answers.items()
               if path not in ("/healthz", "/readyz", "/metrics"))  # fmt: skip
    assert "429" not in answers["/healthz"]

    client.get("/v1/tiers/summary")  # a 401, counted like any request
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'credsup_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
    assert 'route="/v1/tiers/summary",status="401"' in metrics.text
    assert "credsup_request_seconds_bucket" in metrics.text


def check_keys_purposes_and_codes(client: httpx.Client, province: Province) -> None:
    company = f"/v1/companies/{province.tiered}"
    reads = [("GET", company), ("GET", f"{company}/history"), ("GET", f"{company}/records"),
             ("GET", "/v1/tiers/summary"), ("GET", "/v1/admin/audit"),
             ("GET", "/v1/admin/audit/refused"), ("POST", "/v1/admin/reload")]  # fmt: skip
    bad = {"X-API-Key": "cs_" + "x" * 43, "X-Purpose": "e2e"}
    for method, path in reads:
        error(client.request(method, path), 401, "unauthorized")
        error(client.request(method, path, headers=bad), 401, "unauthorized")
    for headers in ({}, bad):
        batch = client.post("/v1/companies:batch", headers=headers, json={"usccs": [UNKNOWN]})
        error(batch, 401, "unauthorized")
    # non-public roles say why they read credit information
    for role in ("admin", "regulator", "analyst", "department"):
        for path in (company, f"{company}/history", f"{company}/records"):
            error(client.get(path, headers=as_(province, role, None)), 400, "purpose_required")
            error(client.get(path, headers=as_(province, role, "")), 400, "purpose_required")
        batch = client.post(
            "/v1/companies:batch", headers=as_(province, role, None),
            json={"usccs": [province.tiered]},
        )  # fmt: skip
        error(batch, 400, "purpose_required")
    assert client.get(company, headers=as_(province, "public", None)).status_code == 200
    # malformed codes name what is wrong; valid unknown codes are 404
    for path in ("/v1/companies/{}", "/v1/companies/{}/history", "/v1/companies/{}/records"):
        bad = error(client.get(path.format(MALFORMED), headers=as_(province, "regulator")), 422)
        assert bad["code"] == "invalid_uscc:check" and "check character" in bad["message"]
        short = error(client.get(path.format("9111"), headers=as_(province, "regulator")), 422)
        assert short["code"] == "invalid_uscc:length"
        error(client.get(path.format(UNKNOWN), headers=as_(province, "regulator")), 404)
    error(client.get(f"/v1/companies/{UNKNOWN}", headers=as_(province, "public")), 404)
    error(client.get("/v1/nothing-here"), 404, "not_found")
    error(client.delete(company, headers=as_(province, "admin")), 405, "method_not_allowed")
    error(client.get("/v1/tiers/summary", headers=as_(province, "admin"),
                     params={"by": "colour"}), 422, "invalid")  # fmt: skip


def check_company_views_by_role(client: httpx.Client, province: Province) -> None:
    for uscc in (province.tiered, province.individual):
        docs = {}
        for role in ROLES:
            response = client.get(f"/v1/companies/{uscc}", headers=as_(province, role))
            assert response.status_code == 200, response.text
            docs[role] = response.json()
        full = docs["regulator"]
        for role in ("admin", "analyst", "department"):
            assert docs[role] == full
        assert full["uscc"] == uscc and full["as_of"] == AS_OF.isoformat()
        assert set(full["evaluation"]) >= {"score", "grade", "points", "vetoes", "method_version"}
        tier = full["tier"]
        assert tier["tier"] in "ABCD" and 0 <= tier["probability"] <= 1
        assert (tier["model"], tier["model_version"]) == ("credit-tier", "1")
        assert tier["reasons"] and all(r["zh"] and r["en"] for r in tier["reasons"])
        assert set(full["flags"]) == {"objection_open", "lists"}
        public = docs["public"]
        assert "tier" not in public
        assert public["evaluation"] == {
            "score": full["evaluation"]["score"], "grade": full["evaluation"]["grade"],
        }  # fmt: skip
        assert public["flags"] == {"objection_open": full["flags"]["objection_open"]}
    individual = client.get(
        f"/v1/companies/{province.individual}", headers=as_(province, "regulator")
    ).json()
    shown = client.get(f"/v1/companies/{province.individual}", headers=as_(province, "public"))
    assert individual["name"] == province.individual_name
    assert shown.json()["name"] == mask_name(province.individual_name) != province.individual_name
    assert "*" in shown.json()["name"]
    enterprise = client.get(f"/v1/companies/{province.tiered}", headers=as_(province, "public"))
    assert enterprise.json()["name"] and "*" not in enterprise.json()["name"]


def check_batch(client: httpx.Client, province: Province) -> None:
    # a public key asks for at most 100 companies at once, an authority for up to 10,000
    many = {"usccs": [province.tiered] * 101}
    refused = error(client.post("/v1/companies:batch", headers=as_(province, "public"), json=many),
                    413, "too_large")  # fmt: skip
    assert "at most 100" in refused["message"]
    assert client.post("/v1/companies:batch", headers=as_(province, "analyst"),
                       json=many).status_code == 200  # fmt: skip
    # a body beyond the limit (2 MiB) is refused before authentication, declared or streamed
    big = b'{"usccs": ["' + b"9" * (3 * 2**20) + b'"]}'
    json_type = {"content-type": "application/json"}
    error(client.post("/v1/companies:batch", content=big, headers=json_type), 413, "too_large")
    streamed = client.post("/v1/companies:batch", headers=json_type,
                           content=iter([big[: 2**20], big[2**20 :]]))  # fmt: skip
    error(streamed, 413, "too_large")
    long_code = {"usccs": ["9" * 65]}
    error(client.post("/v1/companies:batch", headers=as_(province, "analyst"), json=long_code), 422)

    wanted = [province.tiered, UNKNOWN, "not a code", province.individual, province.tiered]
    response = client.post(
        "/v1/companies:batch", headers=as_(province, "analyst"), json={"usccs": wanted}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["uscc"] for c in body["companies"]] == [province.tiered, province.individual]
    assert all(c["tier"]["tier"] in "ABCD" for c in body["companies"])
    assert body["not_found"] == [UNKNOWN]
    assert [i["uscc"] for i in body["invalid"]] == ["not a code"]
    public = client.post(
        "/v1/companies:batch", headers=as_(province, "public", None), json={"usccs": wanted}
    ).json()
    assert [c["uscc"] for c in public["companies"]] == [province.tiered, province.individual]
    assert all("tier" not in c for c in public["companies"])
    # the limit is 10,000 codes
    limit = [province.tiered] + [f"bad-{i}" for i in range(9_999)]
    full = client.post("/v1/companies:batch", headers=as_(province, "admin"), json={"usccs": limit})
    assert full.status_code == 200, full.text
    assert len(full.json()["companies"]) == 1 and len(full.json()["invalid"]) == 9_999
    over = client.post(
        "/v1/companies:batch", headers=as_(province, "admin"), json={"usccs": [*limit, "one"]}
    )
    assert "at most 10,000" in error(over, 413, "too_large")["message"]  # as a public key's
    error(client.post("/v1/companies:batch", headers=as_(province, "admin"),
                      json={"usccs": []}), 422, "invalid")  # fmt: skip


def check_history_records_and_summary_by_role(client: httpx.Client, province: Province) -> None:
    uscc = province.tiered
    current = client.get(f"/v1/companies/{uscc}", headers=as_(province, "regulator")).json()
    for role in ("admin", "regulator", "analyst", "department"):
        history = client.get(f"/v1/companies/{uscc}/history", headers=as_(province, role))
        assert history.status_code == 200, history.text
        (point,) = history.json()["history"]
        assert point["as_of"] == AS_OF.isoformat() and point["tier"] == current["tier"]["tier"]
        assert point["model_version"] == "1"
        assert point["score"] == current["evaluation"]["score"]
    error(client.get(f"/v1/companies/{uscc}/history", headers=as_(province, "public")), 403,
          "forbidden")  # fmt: skip

    # records: everything for the full roles, public + own for a department, public masked
    narrowed = False
    for company in province.busy:
        seen = {}
        for role in ("admin", "regulator", "analyst", "department", "public"):
            response = client.get(
                f"/v1/companies/{company}/records", headers=as_(province, role),
                params={"on": AS_OF.isoformat()},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.json()["on"] == AS_OF.isoformat()
            seen[role] = response.json()["records"]
        every = seen["regulator"]
        assert seen["admin"] == seen["analyst"] == every and every
        public_ids = {r["record_id"] for r in seen["public"]}
        assert public_ids < {r["record_id"] for r in every}
        assert all(r["recorded_date"] is None and r["attributes"] is None for r in seen["public"])
        expected = [r["record_id"] for r in every
                    if r["record_id"] in public_ids or r["source_dept"] == DEPARTMENT]  # fmt: skip
        assert [r["record_id"] for r in seen["department"]] == expected
        narrowed |= len(public_ids) < len(expected) < len(every)
    assert narrowed, "no company shows the department rule (public + own records)"

    # the tier summary: the full roles only, totals as `credsup tier` reported
    tiered = sum(province.tiers.values())
    for role in ("admin", "regulator", "analyst", "department"):
        for params in ({}, {"by": "region"}, {"by": "industry"}, {"by": "entity_type"},
                       {"as_of": AS_OF.isoformat()},
                       {"as_of": AS_OF.isoformat(), "by": "region"}):  # fmt: skip
            response = client.get("/v1/tiers/summary", headers=as_(province, role, None),
                                  params=params)  # fmt: skip
            assert response.status_code == 200, response.text
            rows = response.json()["rows"]
            assert sum(r["total"] for r in rows) == tiered
            assert {t: sum(r[t] for r in rows) for t in "ABCD"} == province.tiers
    by_all = client.get("/v1/tiers/summary", headers=as_(province, "regulator")).json()
    assert by_all["by"] == "all" and [r["group"] for r in by_all["rows"]] == ["all"]
    never = client.get("/v1/tiers/summary", headers=as_(province, "regulator"),
                       params={"as_of": date(2020, 1, 1).isoformat()})  # fmt: skip
    assert "2020-01-01" in error(never, 404, "not_loaded")["message"]
    error(client.get("/v1/tiers/summary", headers=as_(province, "public")), 403, "forbidden")


def check_every_company_read_is_audited(client: httpx.Client, province: Province) -> None:
    purpose = f"e2e audit {time.time_ns()}"
    uscc = province.individual
    for role in ROLES:
        response = client.get(f"/v1/companies/{uscc}", headers=as_(province, role, purpose))
        assert response.status_code == 200, response.text
    reads = [
        client.get(f"/v1/companies/{uscc}/history", headers=as_(province, "analyst", purpose)),
        client.get(f"/v1/companies/{uscc}/records", headers=as_(province, "department", purpose)),
        client.post("/v1/companies:batch", headers=as_(province, "regulator", purpose),
                    json={"usccs": [uscc, UNKNOWN]}),
        client.get(f"/v1/companies/{UNKNOWN}", headers=as_(province, "regulator", purpose)),
    ]  # fmt: skip
    assert [r.status_code for r in reads] == [200, 200, 200, 404]

    for role in ("regulator", "analyst", "department", "public"):
        error(client.get("/v1/admin/audit", headers=as_(province, role)), 403, "forbidden")
        refused = client.get("/v1/admin/audit/refused", headers=as_(province, role))
        error(refused, 403, "forbidden")
    admin = {"X-API-Key": province.keys["admin"]}
    refused_rows = client.get("/v1/admin/audit/refused", headers=admin).json()
    assert refused_rows == {"open": 0, "entries": [], "unfiled": 0}
    response = client.get("/v1/admin/audit", headers=admin, params={"uscc": uscc, "limit": 10_000})
    assert response.status_code == 200, response.text  # flushed before it answers
    mine = [e for e in response.json()["entries"] if e["purpose"] == purpose]
    got = sorted((e["endpoint"], e["role"], e["key_id"], e["status"]) for e in mine)
    ids = province.key_ids
    assert got == sorted(
        [("GET /v1/companies/{uscc}", role, ids[role], 200) for role in ROLES]
        + [
            ("GET /v1/companies/{uscc}/history", "analyst", ids["analyst"], 200),
            ("GET /v1/companies/{uscc}/records", "department", ids["department"], 200),
            ("POST /v1/companies:batch", "regulator", ids["regulator"], 200),
        ]
    )
    assert {e["department"] for e in mine if e["role"] == "department"} == {DEPARTMENT}
    assert [e["id"] for e in mine] == sorted((e["id"] for e in mine), reverse=True)

    # refused reads are logged too: a role that may not (403), a missing purpose (400)
    def refusals() -> set[tuple[str, str, int]]:
        got = client.get("/v1/admin/audit", headers=admin, params={"uscc": uscc, "limit": 10_000})
        return {(e["endpoint"], e["role"], e["status"]) for e in got.json()["entries"]
                if e["status"] in (400, 403) and e["purpose"] in (None, purpose)}  # fmt: skip

    history = f"/v1/companies/{uscc}/history"
    assert client.get(history, headers=as_(province, "public", purpose)).status_code == 403
    assert client.get(history, headers=as_(province, "regulator", None)).status_code == 400
    assert {("GET /v1/companies/{uscc}/history", "public", 403),
            ("GET /v1/companies/{uscc}/history", "regulator", 400)} <= refusals()  # fmt: skip
    # a purpose in Chinese is logged as written, sent as UTF-8 bytes (curl) or percent-encoded
    chinese = f"行政许可审查 {time.time_ns()}"
    sends: tuple[bytes | str, ...] = (chinese.encode(), quote(chinese))
    for sent in sends:
        headers = {"X-API-Key": province.keys["regulator"], "X-Purpose": sent}
        assert client.get(f"/v1/companies/{uscc}", headers=headers).status_code == 200
    logged = client.get("/v1/admin/audit", headers=admin, params={"uscc": uscc}).json()
    assert [e["purpose"] for e in logged["entries"][:2]] == [chinese, chinese]
    # the unknown company's reads are logged with their 404
    unknown = client.get("/v1/admin/audit", headers=admin, params={"uscc": UNKNOWN}).json()
    statuses = {(e["endpoint"], e["status"]) for e in unknown["entries"]
                if e["purpose"] == purpose}  # fmt: skip
    assert statuses == {("GET /v1/companies/{uscc}", 404), ("POST /v1/companies:batch", 404)}
    # filters: by key, and a page size
    by_key = client.get(
        "/v1/admin/audit", headers=admin, params={"key_id": ids["analyst"], "limit": 10_000}
    ).json()["entries"]
    assert by_key and {e["key_id"] for e in by_key} == {ids["analyst"]}
    page = client.get("/v1/admin/audit", headers=admin, params={"limit": 2}).json()["entries"]
    assert len(page) == 2
    error(client.get("/v1/admin/audit", headers=admin, params={"uscc": MALFORMED}), 422)
    error(client.get("/v1/admin/audit", headers=admin, params={"limit": 0}), 422, "invalid")
    huge = {"key_id": str(10**20)}  # once a 500: too large for the database's integer
    error(client.get("/v1/admin/audit", headers=admin, params=huge), 422, "invalid")
    for since in ("0001-01-01T00:00:00+08:00", "9999-12-31T23:00:00-08:00"):
        response = client.get("/v1/admin/audit", headers=admin, params={"since": since})
        assert response.status_code == 200, response.text


def _fuzz(operation: Any, headers: dict[str, str], mode: Any, statuses: set[int]) -> str | None:
    """Generated requests to one operation with these headers; a failure's text, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers}
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)
        statuses.add(response.status_code)

    try:
        run()
    except Unsatisfiable:  # nothing in this operation's schema can be made invalid
        return None
    except (AssertionError, BaseExceptionGroup) as exc:
        return f"{operation.label} ({mode.value}):\n{exc}"
    return None


def check_schemathesis_finds_no_server_errors_and_conforming_responses(
    client: httpx.Client, province: Province
) -> None:
    schema = schemathesis.openapi.from_url(str(client.base_url.join("/openapi.json")))
    regulator = {"X-API-Key": province.keys["regulator"], "X-Purpose": "schemathesis"}
    admin = {"X-API-Key": province.keys["admin"], "X-Purpose": "schemathesis"}
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        seen = statuses.setdefault(operation.label, set())
        runs = [regulator]
        if operation.label == "GET /v1/admin/audit":
            runs.append(admin)  # the regulator only gets 403 here
        for headers in runs:
            for mode in (schemathesis.GenerationMode.POSITIVE,
                         schemathesis.GenerationMode.NEGATIVE):  # fmt: skip
                failure = _fuzz(operation, headers, mode, seen)
                if failure:
                    failures.append(failure)
    assert not failures, "\n\n".join(failures)
    # 44 + …/spot-check-plans/{plan_id}/cancel, /v1/repairs/overdue, …/{plan_id}/audit-package
    assert len(statuses) == 47
    assert 200 in statuses["GET /v1/check-items"] and 200 in statuses["GET /v1/spot-check-plans"]
    assert all(401 not in s for s in statuses.values()), statuses  # the key was sent
    assert 200 in statuses["GET /v1/tiers/summary"] and 200 in statuses["GET /v1/admin/audit"]
    assert statuses["POST /v1/admin/reload"] == {403}


def check_an_unloadable_champion_leaves_the_previous_model_serving(
    client: httpx.Client, province: Province
) -> None:
    admin = {"X-API-Key": province.keys["admin"]}
    error(client.post("/v1/admin/reload", headers=as_(province, "regulator")), 403, "forbidden")
    same = client.post("/v1/admin/reload", headers=admin)
    assert same.status_code == 200, same.text
    assert same.json() == {
        "loaded": True, "version": "1", "changed": False, "error": None, "serving": None,
    }  # fmt: skip

    # a second version, promoted, whose artifact is then damaged
    artifacts = province.data_dir / "mlflow" / "artifacts"
    before = set(artifacts.rglob("tier_model.pkl"))
    trained = credsup(province.data_dir, "train", "--no-plots")
    assert trained["version"] == "2"
    promoted = credsup(province.data_dir, "promote", "2", "--force", "--reason", "e2e drill")
    assert promoted["promoted"]
    damaged = sorted(set(artifacts.rglob("tier_model.pkl")) - before)
    assert damaged, f"no new tier_model.pkl under {artifacts}"
    good = {path: path.read_bytes() for path in damaged}
    for path in damaged:
        path.write_bytes(b"not a pickle")
    try:
        failed = client.post("/v1/admin/reload", headers=admin)
        assert failed.status_code == 200, failed.text
        outcome = failed.json()
        assert outcome["loaded"] is False and outcome["serving"] == "1", outcome
        assert outcome["error"]

        # still answering, with the previous model, and saying why it did not change
        looked_up = client.get(f"/v1/companies/{province.tiered}", headers=as_(province, "admin"))
        assert looked_up.status_code == 200 and looked_up.json()["tier"]["tier"] in "ABCD"
        batch = client.post(
            "/v1/companies:batch", headers=as_(province, "regulator"),
            json={"usccs": [province.tiered, province.individual]},
        )  # fmt: skip
        assert batch.status_code == 200 and len(batch.json()["companies"]) == 2
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        model = ready.json()["model"]
        assert model["loaded"] and model["version"] == "1"
        assert model["last_reload_error"] == outcome["error"]
    finally:
        for path, content in good.items():
            path.write_bytes(content)

    # repaired: the reload takes version 2 and the error is cleared
    repaired = client.post("/v1/admin/reload", headers=admin).json()
    assert repaired["loaded"] and repaired["version"] == "2" and repaired["changed"]
    assert client.get("/readyz").json()["model"] == {
        "loaded": True, "version": "2", "spec_version": trained["spec_version"],
        "last_reload_error": None,
    }  # fmt: skip


def check_command_line_reads_are_audited(client: httpx.Client, province: Province) -> None:
    """The plan's tasks and the list entries read at the command line are logged like the
    API's reads: a line per company, role `operator`, the purpose and the user who read."""
    data_dir = province.data_dir
    later = (china_today() + timedelta(days=90)).isoformat()  # every task overdue by then
    overdue = credsup(data_dir, "plan", "overdue", "--as-of", later, "--purpose", "follow-up")
    entries = credsup(data_dir, "lists", "list", "--limit", "5", "--purpose", "list review")
    graded = credsup(data_dir, "grade", province.tiered, "--on", china_today().isoformat(),
                     "--purpose", "licensing")  # fmt: skip
    assert overdue["tasks"] and graded["uscc"] == province.tiered
    engine = make_engine(f"sqlite:///{data_dir / 'serving.db'}")
    with engine.connect() as con:
        rows = con.execute(
            sa.select(audit_log.c.endpoint, audit_log.c.uscc, audit_log.c.role,
                      audit_log.c.purpose).where(audit_log.c.endpoint.like("credsup %"))
        ).all()  # fmt: skip
    engine.dispose()
    late = [r for r in rows if r.endpoint == "credsup plan overdue"]
    assert sorted(r.uscc for r in late) == sorted({t["uscc"] for t in overdue["tasks"]})
    assert all(r.role == "operator" and r.purpose.startswith("follow-up (by ") for r in late)
    listed = [r for r in rows if r.endpoint == "credsup lists list"]
    assert {r.uscc for r in listed} == ({e["uscc"] for e in entries["entries"]} or {None})
    assert all(r.purpose.startswith("list review (by ") for r in listed)
    grades = [(r.uscc, r.purpose[:13]) for r in rows if r.endpoint == "credsup grade"]
    assert grades == [(province.tiered, "licensing (by")]


CHECKS_IN_ORDER = [
    check_health_readiness_metrics_docs_and_openapi,
    check_keys_purposes_and_codes,
    check_company_views_by_role,
    check_batch,
    check_history_records_and_summary_by_role,
    check_every_company_read_is_audited,
    check_command_line_reads_are_audited,
    check_schemathesis_finds_no_server_errors_and_conforming_responses,
    check_an_unloadable_champion_leaves_the_previous_model_serving,  # changes the champion: last
]


def test_the_tier_api_end_to_end(
    client: httpx.Client, province: Province, subtests: pytest.Subtests
) -> None:
    """One test (the pipeline and the server are built once even under xdist, which spreads a
    module's tests over its workers), each part reported as a subtest."""
    for check in CHECKS_IN_ORDER:
        with subtests.test(msg=check.__name__.removeprefix("check_")):
            check(client, province)


def test_two_workers_count_their_requests_together(province: Province) -> None:
    """`credsup serve --workers 2`: each worker had its own counters, so /metrics showed the
    counts of whichever answered (a counter reset to Prometheus at every other scrape)."""
    log = province.data_dir / "uvicorn-workers.log"
    started = None
    for _ in range(3):  # another process may take the port between our probe and uvicorn's bind
        started = start_server(province.data_dir, log, None, "--workers", "2")
        if started is not None:
            break
    assert started is not None, log.read_text(errors="replace")[-4000:]
    process, base_url = started
    line = 'credsup_requests_total{method="GET",route="/healthz",status="200"}'

    def healthz_count(http: httpx.Client) -> float:
        text = http.get("/metrics").text
        (value,) = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
        return value

    try:
        counts = []
        for _ in range(3):
            with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http:
                before = healthz_count(http)
            for _ in range(40):  # a connection each: the workers share them out
                assert httpx.get(f"{base_url}/healthz", trust_env=False).status_code == 200
            with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http:
                counts.append(healthz_count(http) - before)
        assert counts == [40.0, 40.0, 40.0]
        assert process.poll() is None and (province.data_dir / "metrics").is_dir()
    finally:
        stop_server(process)


@pytest.mark.parametrize("table", ["made by serve", "named in .env"])
def test_the_public_rate_holds_for_the_service_not_each_worker(tmp_path: Path, table: str) -> None:
    """With two workers each kept its own buckets, and a public key got twice its rate. The
    workers of `credsup serve` now share one table: over 80 requests (a connection each, so
    both workers answer) the key gets its burst and what refilled while it asked, no more. A
    table named in the data directory's .env that does not exist yet is made too."""
    data_dir = tmp_path / "rates"
    data_dir.mkdir()
    named = tmp_path / "shared" / "rates.table"
    if table == "named in .env":
        (data_dir / ".env").write_text(f"CREDSUP_RATE_TABLE={named}\n", encoding="utf-8")
    key = credsup(data_dir, "keys", "create", "--role", "public", "--name", "scraper")["key"]
    log = tmp_path / "uvicorn-rates.log"
    started = None
    for _ in range(3):  # another process may take the port between our probe and uvicorn's bind
        started = start_server(data_dir, log, {"CREDSUP_PUBLIC_REQUESTS_PER_SECOND": "1"},
                               "--workers", "2")  # fmt: skip
        if started is not None:
            break
    assert started is not None, log.read_text(errors="replace")[-4000:]
    process, base_url = started
    try:
        begun = time.monotonic()
        codes = [httpx.get(f"{base_url}/v1/companies/91350100M000100Y43",
                           headers={"X-API-Key": key}, trust_env=False).status_code
                 for _ in range(80)]  # fmt: skip
        elapsed = time.monotonic() - begun
        answered = sum(code != 429 for code in codes)
        assert 429 in codes and codes[:5].count(429) == 0, codes  # a burst of 5 at 1 a second
        assert answered <= 5 + math.ceil(elapsed * 1.0) + 1, (answered, elapsed, codes)
        assert named.exists() == (table == "named in .env")
    finally:
        stop_server(process)


def test_two_workers_start_on_a_new_data_directory(tmp_path: Path) -> None:
    """Both workers created the model registry's tables at once on a new data directory; one
    failed ("table … already exists"), uvicorn stopped the service, and `credsup serve` exited
    0. The registry is now opened once before the workers start (and a worker that fails to
    start makes `credsup serve` exit 3)."""
    data_dir = tmp_path / "new"
    data_dir.mkdir()
    log = tmp_path / "uvicorn-new.log"
    started = None
    for _ in range(3):  # another process may take the port between our probe and uvicorn's bind
        started = start_server(data_dir, log, None, "--workers", "2")
        if started is not None:
            break
    assert started is not None, log.read_text(errors="replace")[-4000:]
    process, base_url = started
    try:
        # a worker that fails to start stops the service within a second or two: keep asking
        # (a connection each, so both workers answer) for longer than that
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and process.poll() is None:
            assert httpx.get(f"{base_url}/healthz", trust_env=False).status_code == 200
        ready = httpx.get(f"{base_url}/readyz", trust_env=False)
        assert ready.status_code == 503 and ready.json()["model"]["loaded"] is False
        assert process.poll() is None
        assert "failed to start" not in log.read_text(errors="replace")
    finally:
        stop_server(process)
