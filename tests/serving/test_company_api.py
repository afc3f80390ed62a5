"""The company look-ups' contract as a department integrates it (TestClient, SQLite and
PostgreSQL): a past day (`?on=`) answers the point in force then, marked as such; unknown query
parameters are refused, not ignored.

The province is loaded as of `OLDER` and `AS_OF`, so every company has two history points.
Each test works on companies of its own, so their order does not matter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from features.results import Results
from records import uscc as codes
from records.ingest import ingest_table
from records.settings import Settings
from records.workdays import china_today
from serving.app import create_app
from serving.auth import create_key
from serving.db import companies, company_history
from serving.load import LIST_CODES, load_results
from tests.serving.databases import BACKENDS, OLDER, Loaded, loaded_copy
from tests.serving.pipeline import AS_OF


@dataclass
class Api:
    world: Loaded
    client: TestClient
    keys: dict[str, str] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)

    def key(self, role: str, department: str | None = None, uscc: str | None = None) -> str:
        name = f"{role}:{department or uscc or ''}"
        if name not in self.keys:
            self.keys[name] = create_key(self.world.engine, role, department, name, uscc)
        return self.keys[name]

    def call(self, method: str, path: str, key: str, **kw: Any) -> Any:
        headers = {"X-API-Key": key, "X-Purpose": "contract test"}
        return self.client.request(method, path, headers=headers, **kw)

    def get(self, path: str, key: str, **kw: Any) -> Any:
        got = self.call("GET", path, key, **kw)
        assert got.status_code == 200, got.text
        return got.json()

    def batch(self, codes: list[str], key: str, **kw: Any) -> Any:
        got = self.call("POST", "/v1/companies:batch", key, json={"usccs": codes}, **kw)
        assert got.status_code == 200, got.text
        return got.json()

    def history(self) -> dict[str, dict[date, dict[str, Any]]]:
        with self.world.engine.connect() as con:
            rows = con.execute(sa.select(company_history)).mappings().all()
        out: dict[str, dict[date, dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r["uscc"], {})[r["as_of"]] = dict(r)
        return out

    def pick(self, test: Any) -> str:
        """A company no other test took whose two points pass `test(older, newer)`."""
        for uscc, points in sorted(self.history().items()):
            if uscc in self.taken or set(points) != {OLDER, AS_OF}:
                continue
            if test(points[OLDER], points[AS_OF]):
                self.taken.add(uscc)
                return uscc
        raise AssertionError("no such company")


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "api") as loaded:
        load_results(loaded.engine, loaded.store, loaded.data_dir, OLDER)  # history only
        yield loaded


@pytest.fixture(scope="module")
def api(world: Loaded) -> Iterator[Api]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = Settings(data_dir=world.data_dir, DATABASE_URL=world.url,
                            duckdb_memory_limit="1GB")  # fmt: skip
        with TestClient(create_app(settings)) as client:
            yield Api(world, client)


# ---- a past day: ?on= ----------------------------------------------------------------------


def test_a_past_day_answers_the_point_in_force_then(api: Api) -> None:
    """`?as_of=2025-12-31` answered today's document. `?on=DAY` now answers the evaluation and
    tier in force that day (the latest published on or before it), with `as_of` the point's
    date, `on` the day asked and `source`; reasons, points, vetoes and lists are not kept for
    a past point: null, and named in `not_served`, never today's under a past date."""
    uscc = api.pick(lambda old, new: old["tier"] and new["tier"] and old["tier"] != new["tier"])
    old = api.history()[uscc][OLDER]
    regulator = api.key("regulator")
    current = api.get(f"/v1/companies/{uscc}", regulator)
    for day in (OLDER, OLDER + timedelta(days=30), AS_OF - timedelta(days=1)):
        doc = api.get(f"/v1/companies/{uscc}", regulator, params={"on": day.isoformat()})
        assert (doc["as_of"], doc["on"], doc["source"]) == (OLDER.isoformat(), day.isoformat(),
                                                            "batch")  # fmt: skip
        assert doc["tier"]["tier"] == old["tier"] != current["tier"]["tier"]
        assert doc["tier"]["probability"] == round(old["probability"], 6)
        assert doc["tier"]["model_version"] == old["model_version"]
        assert doc["tier"]["reasons"] is None
        assert doc["evaluation"]["score"] == old["score"]
        assert doc["evaluation"]["grade"] == old["grade"]
        assert doc["evaluation"]["method_version"] == old["method_version"]
        assert doc["evaluation"]["points"] is None and doc["evaluation"]["vetoes"] is None
        assert doc["flags"]["lists"] is None
        assert {"tier.reasons", "evaluation.points", "flags.lists"} <= set(doc["not_served"])
        assert (doc["uscc"], doc["name"], doc["region"]) == (
            uscc, current["name"], current["region"])  # fmt: skip
        (batched,) = api.batch([uscc], regulator, params={"on": day.isoformat()})["companies"]
        assert batched == doc
    # on or after the current document's date: the current document, reasons and all
    for day in (AS_OF, china_today()):
        doc = api.get(f"/v1/companies/{uscc}", regulator, params={"on": day.isoformat()})
        assert {k: v for k, v in doc.items() if k not in ("on", "source")} == current
        assert (doc["on"], doc["source"]) == (day.isoformat(), "batch")
        assert "not_served" not in doc and doc["tier"]["reasons"]
    # the public view of a past day: that day's score and grade, no tier
    public = api.get(f"/v1/companies/{uscc}", api.key("public"), params={"on": OLDER.isoformat()})
    assert public["evaluation"] == {"score": old["score"], "grade": old["grade"]}
    assert "tier" not in public and public["as_of"] == OLDER.isoformat()
    # before anything was published; after today
    before = api.call("GET", f"/v1/companies/{uscc}", regulator,
                      params={"on": (OLDER - timedelta(days=1)).isoformat()})  # fmt: skip
    assert before.status_code == 404 and before.json()["code"] == "not_scored_by_date"
    later = api.call("GET", f"/v1/companies/{uscc}", regulator,
                     params={"on": (china_today() + timedelta(days=1)).isoformat()})  # fmt: skip
    assert later.status_code == 422 and later.json()["code"] == "future_day"
    bad = api.call("GET", f"/v1/companies/{uscc}", regulator, params={"on": "2025-13-01"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid"
    unknown = api.call("GET", "/v1/companies/91110000600037341L", regulator,
                       params={"on": OLDER.isoformat()})  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_a_past_day_of_a_batch_and_a_rescore(api: Api) -> None:
    """A batch of a past day answers each company's point of that day (unknown codes and those
    with nothing by then in `not_found`); a re-score is a point too, marked `rescore`, and
    the point before it is still answered for the days before it."""
    codes = [api.pick(lambda old, new: old["score"] is not None) for _ in range(3)]
    regulator = api.key("regulator")
    history = api.history()
    wanted = [*codes, "91110000600037341L"]
    body = api.batch(wanted, regulator, params={"on": OLDER.isoformat()})
    assert [c["uscc"] for c in body["companies"]] == codes
    assert body["not_found"] == ["91110000600037341L"]
    for doc in body["companies"]:
        assert doc["as_of"] == OLDER.isoformat()
        assert doc["evaluation"]["score"] == history[doc["uscc"]][OLDER]["score"]
    early = api.batch(codes, regulator, params={"on": (OLDER - timedelta(days=1)).isoformat()})
    assert early["companies"] == [] and early["not_found"] == codes

    rescored = api.call("POST", f"/v1/companies/{codes[0]}:rescore", regulator)
    assert rescored.status_code == 200, rescored.text
    today = china_today()
    now = api.get(f"/v1/companies/{codes[0]}", regulator, params={"on": today.isoformat()})
    assert (now["as_of"], now["source"]) == (today.isoformat(), "rescore")
    assert now["tier"]["reasons"] is not None  # the current document
    yesterday = (today - timedelta(days=1)).isoformat()
    then = api.get(f"/v1/companies/{codes[0]}", regulator, params={"on": yesterday})
    assert (then["as_of"], then["source"]) == (AS_OF.isoformat(), "batch")
    assert then["tier"]["reasons"] is None and "tier.reasons" in then["not_served"]


def test_a_department_reads_a_past_point_as_it_reads_the_current_one(api: Api) -> None:
    """The current document asked for with `?on=` is withheld for a department as without it
    (the tax reasons' evidence from the ecology department)."""
    with api.world.engine.connect() as con:
        found = list(con.execute(
            sa.select(companies.c.uscc).where(
                companies.c.full_doc.like('%"code": "tax_nil_declarations_3y"%'))
            .order_by(companies.c.uscc).limit(5)).scalars())  # fmt: skip
    uscc = next(u for u in found if u not in api.taken)
    api.taken.add(uscc)
    ecology = api.key("department", "ecology")
    plain = api.get(f"/v1/companies/{uscc}", ecology)
    dated = api.get(f"/v1/companies/{uscc}", ecology, params={"on": AS_OF.isoformat()})
    assert {k: v for k, v in dated.items() if k not in ("on", "source")} == plain
    assert '"tax"' not in json.dumps(dated)


# ---- unknown query parameters ----------------------------------------------------------------


def test_unknown_query_parameters_are_refused(api: Api) -> None:
    """`?as_of=` (or any parameter a route does not take) was ignored and today's answer given
    under it: the company routes now refuse it, 422 `unknown_parameter`, naming it."""
    uscc = api.pick(lambda old, new: True)
    regulator, public = api.key("regulator"), api.key("public")
    asks = [
        ("GET", f"/v1/companies/{uscc}", {"as_of": OLDER.isoformat()}, "as_of"),
        ("GET", f"/v1/companies/{uscc}", {"date": "x", "on": OLDER.isoformat()}, "date"),
        ("GET", f"/v1/companies/{uscc}/history", {"on": OLDER.isoformat()}, "on"),
        ("GET", f"/v1/companies/{uscc}/records", {"as_of": OLDER.isoformat()}, "as_of"),
        ("GET", f"/v1/public/companies/{uscc}", {"day": OLDER.isoformat()}, "day"),
    ]
    for method, path, params, named in asks:
        for key in (regulator, public):
            got = api.call(method, path, key, params=params)
            if key == public and path.endswith("/history"):
                assert got.status_code == 403  # not its to read, whatever it asks
                continue
            assert got.status_code == 422, (path, got.text)
            assert got.json()["code"] == "unknown_parameter"
            assert named in got.json()["message"]
    batch = api.call("POST", "/v1/companies:batch", regulator, json={"usccs": [uscc]},
                     params={"as_of": OLDER.isoformat()})  # fmt: skip
    assert batch.status_code == 422 and "as_of" in batch.json()["message"]
    in_body = api.call("POST", "/v1/companies:batch", regulator,
                       json={"usccs": [uscc], "as_of": OLDER.isoformat()})  # fmt: skip
    assert in_body.status_code == 422 and "as_of" in in_body.json()["message"]
    # the parameters a route takes are taken
    for path, params in ((f"/v1/companies/{uscc}", {"on": OLDER.isoformat()}),
                         (f"/v1/companies/{uscc}/records", {"on": OLDER.isoformat()}),
                         (f"/v1/public/companies/{uscc}", {"on": OLDER.isoformat()})):  # fmt: skip
        assert api.call("GET", path, regulator, params=params).status_code == 200, path


# ---- a company registered since the last load --------------------------------------------------


def test_a_company_registered_since_the_last_load_is_not_yet_scored(api: Api) -> None:
    """A company registered after the last batch was 404 "no evaluation or tier" (as an
    unknown code) and its records 404 "no company", though the public page knew it. The look-up
    now answers 404 `not_yet_scored` (registered on …, scored at the next batch), an unknown
    code `not_found`; the records and the public page know it from the store's entities."""
    world, today = api.world, china_today()
    new = codes.derive(f"newcomer-{world.url[:8]}", "contract-test", region="410100")
    entity = {
        "uscc": new, "name": "河南新设科技有限公司", "industry": "I65", "region": "410102",
        "entity_type": "enterprise", "registered_capital": 1_000_000.0,
        "established_date": (today - timedelta(days=3)).isoformat(), "status": "active",
    }  # fmt: skip
    stored = ingest_table(world.store, pa.Table.from_pylist([entity]), "entities", "samr",
                          today=today)  # fmt: skip
    assert stored.stored == 1, stored
    regulator, public = api.key("regulator"), api.key("public")
    unknown = "91110000600037341L"
    service = api.client.app.state.service  # type: ignore[attr-defined]
    assert service.lookup.refresh_newcomers(service.store) >= 1  # as every minute

    for key in (regulator, public, api.key("department", "tax")):
        got = api.call("GET", f"/v1/companies/{new}", key)
        assert got.status_code == 404, got.text
        body = got.json()
        assert body["code"] == "not_yet_scored"
        assert entity["established_date"] in body["message"] and "next batch" in body["message"]
        assert api.call("GET", f"/v1/companies/{unknown}", key).json()["code"] == "not_found"
    dated = api.call("GET", f"/v1/companies/{new}", regulator, params={"on": today.isoformat()})
    assert dated.status_code == 404 and dated.json()["code"] == "not_yet_scored"
    body = api.batch([new, unknown], regulator)
    assert body["companies"] == [] and body["not_found"] == [new, unknown]
    assert body["not_yet_scored"] == [new]
    # known to the records and the public page alike; an unknown code to neither
    assert api.get(f"/v1/companies/{new}/records", regulator)["records"] == []
    assert api.get(f"/v1/public/companies/{new}", public)["name"] == entity["name"]
    for path in (f"/v1/companies/{unknown}/records", f"/v1/public/companies/{unknown}"):
        assert api.call("GET", path, regulator).status_code == 404, path
    # before it was registered here, neither knows it
    yesterday = {"on": (today - timedelta(days=1)).isoformat()}
    for path in (f"/v1/companies/{new}/records", f"/v1/public/companies/{new}"):
        assert api.call("GET", path, regulator, params=yesterday).status_code == 404, path
    # a company of the last batch is never a newcomer
    assert not set(service.lookup.newcomers) & set(api.history())


# ---- list names ------------------------------------------------------------------------------


def test_the_red_list_is_a_flag_and_list_names_are_declared(api: Api) -> None:
    """`flags.lists` never carried the red list (which departments need for subsidies, "fewer
    inspections"), and its names were nowhere declared. The red list is now served; the names
    of `flags.lists` and `evaluation.vetoes` are enums of the OpenAPI schema, and each list name
    maps to the catalogue code that `/v1/public/lists` and the public page use."""
    features = next((api.world.data_dir / "results" / "features" / f"as_of={AS_OF}")
                    .glob("*.parquet"))  # fmt: skip
    table = pq.read_table(features, columns=["uscc", "on_red_list"]).to_pylist()
    red = sorted(r["uscc"] for r in table if (r["on_red_list"] or 0) > 0)
    assert red, "no company on the red list"
    regulator, public = api.key("regulator"), api.key("public")
    docs = api.batch(red[:50], regulator)["companies"]
    assert docs and all("red_list" in d["flags"]["lists"] for d in docs)
    doc = api.get(f"/v1/companies/{red[0]}", api.key("department", "ecology"))
    assert "red_list" in doc["flags"]["lists"]
    page = api.get(f"/v1/public/companies/{red[0]}", public)
    assert {LIST_CODES[n] for n in doc["flags"]["lists"]} >= {x["list"] for x in page["lists"]}
    assert "red_list" in {x["list"] for x in page["lists"]}

    spec = api.client.get("/openapi.json").json()["components"]["schemas"]
    lists = spec["Flags"]["properties"]["lists"]["anyOf"][0]["items"]
    assert lists["enum"] == [
        "serious_dishonest", "abnormal_operation", "dishonest_judgment_debtor", "focus_attention",
        "red_list",
    ]  # fmt: skip
    assert set(LIST_CODES) == set(lists["enum"])
    vetoes = spec["Evaluation"]["properties"]["vetoes"]["anyOf"][0]["items"]["enum"]
    assert {"on_serious_dishonest_list", "on_abnormal_list", "on_dishonest_debtor_list"} <= set(
        vetoes)  # fmt: skip
    assert "on_red_list" not in vetoes  # a veto caps for risk only
    # every served name is declared
    with api.world.engine.connect() as con:
        stored = [json.loads(d) for d in con.execute(sa.select(companies.c.full_doc)).scalars()]
    assert {n for d in stored for n in d["flags"]["lists"]} <= set(lists["enum"])
    assert {v for d in stored if d["evaluation"] for v in d["evaluation"]["vetoes"]} <= set(vetoes)


# ---- the evaluation's deductions ---------------------------------------------------------------


def test_the_evaluation_serves_its_largest_deductions(api: Api) -> None:
    """`credsup grade` showed the three largest deductions with their record ids, the API did
    not. The full view now has them as the batch stored them; a department reads a deduction
    resting on records of a category the catalogue does not share (complaints) without its
    record ids, as a tier reason's evidence; the public view has none."""
    with api.world.engine.connect() as con:
        rows = con.execute(
            sa.select(companies.c.uscc, companies.c.full_doc)
            .where(companies.c.full_doc.like('%"feature": "complaints_12m"%'))
            .order_by(companies.c.uscc).limit(10)).all()  # fmt: skip
    assert rows, "no company with a complaints deduction"
    uscc = next(u for u, _ in rows if u not in api.taken)
    api.taken.add(uscc)
    stored = Results(api.world.data_dir).score_on(uscc, AS_OF)
    assert stored is not None and stored["as_of"] == AS_OF
    regulator, ecology = api.key("regulator"), api.key("department", "ecology")
    full = api.get(f"/v1/companies/{uscc}", regulator)["evaluation"]["top_deductions"]
    assert full == [{"feature": d["feature"], "points": d["points"], "records": d["records"]}
                    for d in stored["top_deductions"]]  # fmt: skip
    complaints = next(d for d in full if d["feature"] == "complaints_12m")
    assert complaints["records"] and complaints["points"] < 0
    seen = api.get(f"/v1/companies/{uscc}", ecology)["evaluation"]["top_deductions"]
    (batched,) = api.batch([uscc], ecology)["companies"]
    assert batched["evaluation"]["top_deductions"] == seen
    for mine, whole in zip(seen, full, strict=True):
        if whole["feature"] in (
            "complaints_12m",
            "verified_complaints_3y",
            "negative_news_12m",
            "related_dishonest_parties_3y",
            "shared_address_companies",
        ):
            assert mine == {"feature": whole["feature"], "points": whole["points"]}
        else:
            assert mine == whole
    assert not any(r in json.dumps(seen) for r in complaints["records"])
    for key in (api.key("analyst"), api.key("company", uscc=uscc)):
        assert api.get(f"/v1/companies/{uscc}", key)["evaluation"]["top_deductions"] == full
    public = api.get(f"/v1/companies/{uscc}", api.key("public"))
    assert set(public["evaluation"]) == {"score", "grade"}
    # a shared category's records are the department's to read
    with api.world.engine.connect() as con:
        docs = [json.loads(d) for d in con.execute(
            sa.select(companies.c.full_doc)
            .where(companies.c.full_doc.like('%"feature": "general_penalties_decayed"%'))
            .order_by(companies.c.uscc).limit(3)).scalars()]  # fmt: skip
    assert docs
    for doc in docs:
        shown = api.get(f"/v1/companies/{doc['uscc']}", ecology)["evaluation"]["top_deductions"]
        penalty = next(d for d in shown if d["feature"] == "general_penalties_decayed")
        assert penalty["records"]
    # a re-score stores them as the batch does
    rescored = api.call("POST", f"/v1/companies/{docs[0]['uscc']}:rescore", regulator)
    assert rescored.status_code == 200, rescored.text
    again = api.get(f"/v1/companies/{docs[0]['uscc']}", regulator)["evaluation"]
    assert again["top_deductions"]
    assert all(isinstance(d["records"], list) and d["points"] < 0 for d in again["top_deductions"])


# ---- pages and filters -------------------------------------------------------------------------


def test_records_come_in_pages_and_filter_by_category_and_event_date(api: Api) -> None:
    """A company's records came in one page with no filter. They now take `limit`/`offset`
    (with `total` and the `next` offset), `category` (repeatable) and `from`/`to` (event
    dates, inclusive); an unknown category or `from` after `to` is a 422."""
    with api.world.store.connect() as con:
        busy = [u for (u,) in con.execute(
            "SELECT uscc FROM records GROUP BY uscc HAVING count(DISTINCT category) >= 4 "
            "ORDER BY count(*) DESC, uscc LIMIT 20").fetchall()]  # fmt: skip
    uscc = next(u for u in busy if u not in api.taken)
    api.taken.add(uscc)
    regulator = api.key("regulator")
    path = f"/v1/companies/{uscc}/records"
    whole = api.get(path, regulator)
    every = whole["records"]
    assert len(every) >= 8 and whole["total"] == len(every) and whole["next"] is None
    pages, offset = [], 0
    while offset is not None:
        page = api.get(path, regulator, params={"limit": 3, "offset": offset})
        assert page["total"] == len(every) and len(page["records"]) <= 3
        pages.extend(page["records"])
        offset = page["next"]
        assert offset is None or offset == len(pages)
    assert pages == every
    beyond = api.get(path, regulator, params={"limit": 3, "offset": len(every) + 5})
    assert beyond["records"] == [] and beyond["next"] is None and beyond["total"] == len(every)

    categories = sorted({r["category"] for r in every})
    one, two = categories[0], categories[1]
    only = api.get(path, regulator, params={"category": one})
    assert only["records"] == [r for r in every if r["category"] == one]
    assert only["total"] == len(only["records"])
    both = api.get(path, regulator, params=[("category", one), ("category", two)])
    assert both["records"] == [r for r in every if r["category"] in (one, two)]
    dates = sorted(r["event_date"] for r in every)
    low, high = dates[len(dates) // 4], dates[3 * len(dates) // 4]
    window = api.get(path, regulator, params={"from": low, "to": high})
    assert window["records"] == [r for r in every if low <= r["event_date"] <= high]
    assert 0 < window["total"] < len(every)
    paged = api.get(path, regulator, params={"from": low, "to": high, "limit": 2, "offset": 1})
    assert paged["records"] == window["records"][1:3] and paged["total"] == window["total"]
    # a filter that keeps nothing of a known company is an empty page, not a 404
    none = api.get(path, regulator, params={"from": "1990-01-01", "to": "1990-12-31"})
    assert none == {"uscc": uscc, "on": china_today().isoformat(), "records": [], "total": 0,
                    "next": None}  # fmt: skip
    for params, code in (({"category": "no_such_category"}, "unknown_category"),
                         ({"from": high, "to": low}, "invalid"),
                         ({"limit": 0}, "invalid"), ({"limit": 1001}, "invalid"),
                         ({"offset": -1}, "invalid")):  # fmt: skip
        if code == "invalid" and "from" in params and low == high:
            continue
        got = api.call("GET", path, regulator, params=params)
        assert got.status_code == 422 and got.json()["code"] == code, (params, got.text)
    # a department's page counts only what it may see
    tax = api.get(path, api.key("department", "tax"), params={"limit": 1})
    shown = api.get(path, api.key("department", "tax"))["records"]
    assert tax["total"] == len(shown) and tax["records"] == shown[:1]


def test_history_comes_in_pages(api: Api) -> None:
    uscc = api.pick(lambda old, new: True)
    regulator = api.key("regulator")
    path = f"/v1/companies/{uscc}/history"
    whole = api.get(path, regulator)
    assert [p["as_of"] for p in whole["history"]] == [OLDER.isoformat(), AS_OF.isoformat()]
    assert (whole["total"], whole["next"]) == (2, None)
    first = api.get(path, regulator, params={"limit": 1})
    assert first["history"] == whole["history"][:1] and (first["total"], first["next"]) == (2, 1)
    second = api.get(path, regulator, params={"limit": 1, "offset": 1})
    assert second["history"] == whole["history"][1:] and second["next"] is None


def test_the_public_lists_say_how_many_there_are(api: Api) -> None:
    """`/v1/public/lists` had limit and offset, but no total and no next page."""
    public = api.key("public")
    every = api.get("/v1/public/lists", public, params={"limit": 1000})
    assert every["total"] == len(every["entries"]) >= 3 and every["next"] is None
    first = api.get("/v1/public/lists", public, params={"limit": 2})
    assert first["entries"] == every["entries"][:2]
    assert (first["total"], first["next"]) == (every["total"], 2)
    last = api.get("/v1/public/lists", public, params={"limit": 2, "offset": every["total"] - 1})
    assert len(last["entries"]) == 1 and last["next"] is None
    red = api.get("/v1/public/lists", public, params={"list": "red_list", "limit": 1})
    assert red["total"] == sum(e["list"] == "red_list" for e in every["entries"])


# ---- the OpenAPI contract ----------------------------------------------------------------------


def test_the_schema_declares_enums_dates_and_the_statuses_served(api: Api) -> None:
    """The schema was looser than the answers: no enums for tiers and reason kinds, dates as
    plain strings, 503 (documented) declared nowhere, 404 declared on the batch (which never
    answers it), and the `invalid_uscc:<reason>` codes nowhere."""
    spec = api.client.get("/openapi.json").json()
    schemas, paths = spec["components"]["schemas"], spec["paths"]

    def prop(model: str, name: str) -> dict[str, Any]:
        p: dict[str, Any] = schemas[model]["properties"][name]
        return next((x for x in p.get("anyOf", []) if x.get("type") != "null"), p)

    assert prop("Tier", "tier")["enum"] == ["A", "B", "C", "D"]
    assert prop("Tier", "model_tier")["enum"] == ["A", "B", "C", "D"]
    assert prop("HistoryPoint", "tier")["enum"] == ["A", "B", "C", "D"]
    assert prop("Reason", "kind")["enum"] == ["veto", "default", "model"]
    assert "log-odds" in schemas["Reason"]["properties"]["contribution"]["description"]
    assert prop("Company", "not_tiered")["enum"] == ["inactive", "no_tier"]
    assert prop("Company", "source")["enum"] == ["batch", "rescore"]
    for model, name in (("Company", "as_of"), ("Company", "on"), ("HistoryPoint", "as_of"),
                        ("RecordView", "event_date"), ("RecordView", "recorded_date"),
                        ("RecordView", "source_recorded_date"), ("RecordView", "public_until"),
                        ("Records", "on"), ("Summary", "as_of")):  # fmt: skip
        assert prop(model, name)["format"] == "date", (model, name)
    # the grade's scale is the province's (A–D, 优/良/中/差, nine levels, its own): no enum
    assert "enum" not in prop("Evaluation", "grade")
    company_routes = ("/v1/companies/{uscc}", "/v1/companies/{uscc}/history",
                      "/v1/companies/{uscc}/records", "/v1/public/companies/{uscc}")  # fmt: skip
    for path in (*company_routes, "/v1/companies:batch"):
        (operation,) = paths[path].values()
        assert "503" in operation["responses"], path
        assert "invalid_uscc:<reason>" in operation["responses"]["422"]["description"], path
    for path in company_routes:
        assert "404" in paths[path]["get"]["responses"], path
    batch = paths["/v1/companies:batch"]["post"]["responses"]
    assert "404" not in batch and "413" in batch
    assert "503" not in paths["/healthz"]["get"]["responses"]
    # what is served conforms: a history, a page of records
    uscc = api.pick(lambda old, new: True)
    regulator = api.key("regulator")
    assert api.get(f"/v1/companies/{uscc}/history", regulator)["history"][0]["as_of"] == (
        OLDER.isoformat())  # fmt: skip
    assert date.fromisoformat(api.get(f"/v1/companies/{uscc}/records", regulator)["on"])


def test_a_batch_too_large_is_413_for_every_key(api: Api) -> None:
    """Over 10,000 codes from an authority was 422 `invalid` (pydantic's "List should have at
    most 10000 items"), over 100 from a public key 413 `too_large`: both are 413 `too_large`
    now, the limit in the message."""
    codes_ = [f"bad-{i}" for i in range(10_001)]
    for role, size, limit in (("regulator", 10_001, "10,000"), ("analyst", 10_001, "10,000"),
                              ("public", 101, "100")):  # fmt: skip
        got = api.call("POST", "/v1/companies:batch", api.key(role), json={"usccs": codes_[:size]})
        assert got.status_code == 413, got.text
        assert got.json()["code"] == "too_large" and f"at most {limit} " in got.json()["message"]
    at_limit = api.batch(codes_[:10_000], api.key("regulator"))
    assert len(at_limit["invalid"]) == 10_000
    empty = api.call("POST", "/v1/companies:batch", api.key("regulator"), json={"usccs": []})
    assert empty.status_code == 422 and empty.json()["code"] == "invalid"


def test_the_schema_declares_the_api_key_and_the_purpose(api: Api) -> None:
    """The key was a plain header parameter of every route and no security scheme, so Swagger
    UI's Authorize did nothing and generated clients did not send it: the schema declares an
    `apiKey` scheme (header `X-API-Key`) required by every keyed route, and none on the health
    routes; where non-public roles must send `X-Purpose` the parameter and the 400 say so. What
    the service answers without a key is unchanged (401 `unauthorized`, both look-up paths)."""
    spec = api.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": spec["components"]["securitySchemes"]["ApiKey"]["description"]},
    }  # fmt: skip
    keyed = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"].lower(): p for p in operation.get("parameters", [])
                       if p["in"] == "header"}  # fmt: skip
            assert "x-api-key" not in headers, (method, path)  # the scheme sends it
            if path.startswith("/v1/"):
                keyed += 1
                assert operation["security"] == [{"ApiKey": []}], (method, path)
                assert "`unauthorized`" in operation["responses"]["401"]["description"]
            else:
                assert "security" not in operation, (method, path)
    assert keyed == 44  # 43 + GET /v1/spot-check-plans/{plan_id}/audit-package
    required = {  # routes that answer 400 purpose_required to a non-public role without one
        ("get", "/v1/companies/{uscc}"), ("post", "/v1/companies:batch"),
        ("get", "/v1/companies/{uscc}/history"), ("get", "/v1/companies/{uscc}/records"),
        ("get", "/v1/public/companies/{uscc}"), ("post", "/v1/companies/{uscc}:rescore"),
        ("get", "/v1/objections"), ("post", "/v1/repairs"), ("get", "/v1/list-entries"),
        ("get", "/v1/spot-check-plans/{plan_id}/audit-package"),
    }  # fmt: skip
    for method, path in required:
        operation = spec["paths"][path][method]
        (purpose,) = [p for p in operation["parameters"] if p["name"] == "x-purpose"]
        assert "400 `purpose_required`" in purpose["description"], (method, path)
        assert "`purpose_required`" in operation["responses"]["400"]["description"]
    for method, path in (("get", "/v1/public/lists"),
                         ("post", "/v1/spot-check-tasks/{task_id}/result")):  # fmt: skip
        (purpose,) = [p for p in spec["paths"][path][method]["parameters"]
                      if p["name"] == "x-purpose"]  # fmt: skip
        assert "not required" in purpose["description"], (method, path)
    # the answers without a valid key are as they were, on the plain and the FastAPI path
    uscc = api.pick(lambda old, new: True)
    for path in (f"/v1/companies/{uscc}", f"/v1/companies/{uscc}?on={OLDER}",
                 "/v1/tiers/summary", "/v1/objections"):  # fmt: skip
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "cs_wrong"}):
            got = api.client.get(path, headers=headers)
            assert got.status_code == 401, (path, headers, got.text)
            assert got.json() == {"code": "unauthorized",
                                  "message": "a valid X-API-Key header is required"}  # fmt: skip
    assert api.client.get("/healthz").status_code == 200
