"""Re-scoring one company on demand (`serving.rescore`, `POST /v1/companies/{uscc}:rescore`) on
each serving database: it reproduces the batch exactly, a repair lifts the score from its day on
and leaves earlier dates as published, it is idempotent, and it refuses what the batch does not
score; the route checks roles and purpose and is audited.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from features.builder import build_features
from features.scorecard import Scorecard, load_config
from models.bundle import TierModel
from models.published import PublishedModels
from records.events import append_events
from records.settings import Settings
from records.store import Store
from records.workdays import china_today
from serving import rescore as rescore_module
from serving.app import create_app
from serving.auth import create_key
from serving.db import audit_log, companies, company_history
from serving.load import load_results
from serving.rescore import (
    MethodMismatch,
    NoModel,
    PublishedDay,
    RescoreRefused,
    UnknownCompany,
    rescore_company,
    rescore_today,
)
from serving.routes import rescore as rescore_route
from tests.serving.databases import BACKENDS, loaded_copy
from tests.serving.pipeline import AS_OF, credsup

LATER = date(2026, 9, 30)
"""The day of the repair: after the batch (`AS_OF`), not after today (2026-11-22)."""
UNKNOWN = "91110000600037341L"  # a valid code no entity of the province has
TIERS = "ABCD"


@dataclass
class World:
    url: str
    engine: Engine
    store: Store
    data_dir: Path
    model: TierModel
    version: str

    def rescore(self, uscc: str, as_of: date, with_model: bool = True) -> dict[str, Any]:
        model, version = (self.model, self.version) if with_model else (None, None)
        return rescore_company(self.engine, self.store, self.data_dir, model, version, uscc, as_of)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[World]:
    """A copy of the province (the tests add events) loaded as of `AS_OF` into a fresh database,
    with its champion model."""
    with loaded_copy(request.param, request, tmp_path_factory, province, "rescore") as loaded:
        uri = f"sqlite:///{(loaded.data_dir / 'mlflow' / 'mlflow.db').resolve()}"
        version, model = PublishedModels(loaded.data_dir, uri=uri).load("champion")
        yield World(loaded.url, loaded.engine, loaded.store, loaded.data_dir, model, version)


def _served(engine: Engine, uscc: str) -> dict[str, Any] | None:
    with engine.connect() as con:
        row = con.execute(sa.select(companies).where(companies.c.uscc == uscc)).mappings().first()
    return None if row is None else dict(row)


def _history(engine: Engine, uscc: str) -> dict[date, dict[str, Any]]:
    """The company's history rows by date, without `source` (batch or rescore: compared apart)."""
    with engine.connect() as con:
        rows = con.execute(
            sa.select(company_history).where(company_history.c.uscc == uscc)
        ).mappings().all()  # fmt: skip
    return {r["as_of"]: {k: v for k, v in r.items() if k != "source"} for r in rows}


def _sources(engine: Engine, uscc: str) -> dict[date, str]:
    with engine.connect() as con:
        rows = con.execute(
            sa.select(company_history.c.as_of, company_history.c.source)
            .where(company_history.c.uscc == uscc)
        ).all()  # fmt: skip
    return {day: source for day, source in rows}


def _sample(engine: Engine) -> list[str]:
    """Companies of every kind the documents distinguish: inactive (no tier), individual
    businesses (masked names), vetoed, listed, with an open objection, and plain ones."""
    with engine.connect() as con:
        rows = pd.DataFrame(
            con.execute(sa.select(companies.c.uscc, companies.c.entity_type, companies.c.tier,
                                  companies.c.full_doc).order_by(companies.c.uscc)).all(),
            columns=["uscc", "entity_type", "tier", "full_doc"],
        )  # fmt: skip
    docs = rows["full_doc"].map(json.loads)
    kinds = [
        rows["tier"].isna(),
        rows["entity_type"] == "individual_business",
        rows["entity_type"] == "cooperative",
        docs.map(lambda d: bool(d["evaluation"]["vetoes"])),
        docs.map(lambda d: bool(d["flags"]["lists"])),
        docs.map(lambda d: d["flags"]["objection_open"]),
        rows["tier"] == "A",
        rows["tier"] == "D",
    ]
    chosen = [u for kind in kinds for u in rows.loc[kind, "uscc"].head(2)]
    return list(dict.fromkeys(chosen))


def test_rescoring_as_of_a_batch_date_reproduces_the_batch_exactly(world: World) -> None:
    sample = _sample(world.engine)
    assert len(sample) >= 10
    for uscc in sample:
        served, history = _served(world.engine, uscc), _history(world.engine, uscc)
        result = world.rescore(uscc, AS_OF)
        # the same row and documents, to the last bit of the probability
        assert _served(world.engine, uscc) == served, uscc
        assert _history(world.engine, uscc) == history, uscc
        assert _sources(world.engine, uscc)[AS_OF] == "batch"  # agrees: nothing written
        assert any("stands" in n for n in result["notes"])
        assert served is not None and result["current"]
        assert result["before"] == {
            "as_of": AS_OF, "score": result["after"]["score"], "grade": served["grade"],
            "tier": served["tier"],
        }  # fmt: skip
        # answered rounded to 6 places, as the company document and the history route have it
        stored = history[AS_OF]["probability"]
        assert result["after"]["probability"] == (None if stored is None else round(stored, 6))
        if served["tier"] is None:  # not active: the batch evaluates it but does not tier it
            assert any("not active" in n for n in result["notes"])


def test_a_published_day_keeps_the_batch_result_when_a_rescore_differs(world: World) -> None:
    """A re-score of a day before today once replaced the batch's published row (with another
    champion's tier, or none without a model). It is refused now, and nothing is written."""
    uscc = next(u for u in _sample(world.engine) if _served(world.engine, u)["tier"])  # type: ignore[index]
    served, history = _served(world.engine, uscc), _history(world.engine, uscc)
    with pytest.raises(PublishedDay, match=f"the batch published {AS_OF}.*model_version"):
        rescore_company(world.engine, world.store, world.data_dir, world.model, "99", uscc, AS_OF)
    assert _served(world.engine, uscc) == served and _history(world.engine, uscc) == history
    assert _sources(world.engine, uscc)[AS_OF] == "batch"


def _penalised(store: Store, day: date) -> tuple[str, str]:
    """An active company with one administrative penalty counting on `day`, a general or serious
    one (it carries points), and that penalty's record id."""
    feats = build_features(store, day).to_pandas()
    candidates = feats[(feats["active"] > 0) & (feats["penalties_3y"] == 1)]["uscc"].tolist()
    with store.connect() as con:
        con.register("candidates", pa.table({"uscc": pa.array(candidates, pa.string())}))
        found = con.execute(
            "SELECT uscc, record_id FROM records WHERE category = 'admin_penalty' "
            "AND severity IN ('general', 'serious') AND recorded_date <= ? "
            "AND event_date > ? AND uscc IN (SELECT uscc FROM candidates) "
            "ORDER BY event_date DESC, record_id LIMIT 1",
            [day, day - timedelta(days=365)],
        ).fetchone()
    assert found is not None, "no penalised company in the province"
    return str(found[0]), str(found[1])


def test_a_repair_counts_from_its_day_on_and_earlier_dates_stay_as_published(
    world: World,
) -> None:
    uscc, record_id = _penalised(world.store, LATER)
    published = _history(world.engine, uscc)[AS_OF]
    features_then = build_features(world.store, AS_OF, [uscc]).to_pylist()

    first = world.rescore(uscc, LATER)
    assert first["before"]["as_of"] == AS_OF and first["current"]
    assert _served(world.engine, uscc)["as_of"] == LATER  # type: ignore[index]
    penalised = _served(world.engine, uscc)
    assert _history(world.engine, uscc)[LATER]["score"] == first["after"]["score"]

    stored = append_events(
        world.store,
        [{"record_id": record_id, "event_type": "repair", "effective_date": LATER,
          "recorded_date": LATER, "attributes": {"decision": "test"}}],
        today=LATER,
    )  # fmt: skip
    assert stored.stored == 1 and not stored.rejected
    # the penalty stops counting on the repair's day, not before
    assert build_features(world.store, LATER, [uscc]).column("penalties_3y").to_pylist() == [0]
    before_repair = build_features(world.store, LATER - timedelta(days=1), [uscc])
    assert before_repair.column("penalties_3y").to_pylist() == [1]
    assert build_features(world.store, AS_OF, [uscc]).to_pylist() == features_then

    second = world.rescore(uscc, LATER)
    assert second["before"] == {
        "as_of": LATER, "score": first["after"]["score"], "grade": first["after"]["grade"],
        "tier": first["after"]["tier"],
    }  # fmt: skip
    assert second["after"]["score"] > first["after"]["score"]  # a deduction less
    assert TIERS.index(second["after"]["tier"]) <= TIERS.index(first["after"]["tier"])
    assert second["after"]["probability"] <= first["after"]["probability"]  # monotone model
    repaired = _served(world.engine, uscc)
    assert repaired is not None and penalised is not None
    assert repaired["as_of"] == LATER and repaired["full_doc"] != penalised["full_doc"]
    assert json.loads(repaired["full_doc"])["evaluation"]["score"] == second["after"]["score"]
    history = _history(world.engine, uscc)
    assert history[LATER]["score"] == second["after"]["score"]
    assert round(history[LATER]["probability"], 6) == second["after"]["probability"]
    assert history[AS_OF] == published  # point in time: the batch date keeps what it had

    # idempotent: nothing changed, nothing moves
    third = world.rescore(uscc, LATER)
    assert third["after"] == second["after"]
    assert third["before"] == {"as_of": LATER, **{k: second["after"][k] for k in
                                                  ("score", "grade", "tier")}}  # fmt: skip
    assert _served(world.engine, uscc) == repaired and _history(world.engine, uscc) == history

    # re-scoring the batch date now: the repair does not reach back, the later row is kept
    again = world.rescore(uscc, AS_OF)
    assert not again["current"] and any("later" in n for n in again["notes"])
    assert again["after"]["score"] == published["score"]
    assert _history(world.engine, uscc)[AS_OF] == published
    assert _served(world.engine, uscc) == repaired


def test_what_the_batch_does_not_score_is_refused_and_nothing_is_written(
    world: World,
) -> None:
    with world.engine.connect() as con:
        counts = [con.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                  for t in (companies, company_history)]  # fmt: skip
    with pytest.raises(UnknownCompany, match="not an entity registered"):
        world.rescore(UNKNOWN, AS_OF)
    with world.store.connect() as con:
        newcomer, registered = con.execute(
            "SELECT uscc, min(recorded_date) AS m FROM entities GROUP BY uscc "
            "ORDER BY m DESC, uscc LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    with pytest.raises(UnknownCompany):  # not registered yet on that day
        world.rescore(newcomer, registered - timedelta(days=1))
    with pytest.raises(RescoreRefused, match="after today"):
        world.rescore(newcomer, china_today() + timedelta(days=1))
    # a date the batch evaluated with another scorecard method is not mixed with this one
    other = world.data_dir / "results" / "scores" / "as_of=2026-10-30" / "sc-other.parquet"
    other.parent.mkdir(parents=True)
    pq.write_table(pa.table({"uscc": pa.array([], pa.string())}), other)
    with pytest.raises(MethodMismatch, match="sc-other"):
        world.rescore(newcomer, date(2026, 10, 30))
    with world.engine.connect() as con:
        assert counts == [con.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                          for t in (companies, company_history)]  # fmt: skip


def test_a_province_grading_on_its_own_scale_keeps_it_when_a_company_is_rescored(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> None:
    """Re-scoring once applied the packaged A-D scorecard: after a repair, a company of a
    province publishing 优/良/中/差 was served "C" (and another method) among 中 and 良."""
    with loaded_copy("sqlite", request, tmp_path_factory, province, "scale") as loaded:
        hunan = Scorecard(load_config(None, "hunan")).method_version
        scored = credsup(loaded.data_dir, "score", "--as-of", AS_OF.isoformat(), "--scale", "hunan",
                         "--restate", "the province grades 优/良/中/差")  # fmt: skip
        assert scored["method_version"] == hunan
        load_results(loaded.engine, loaded.store, loaded.data_dir, AS_OF)  # the file written last
        uscc = _sample(loaded.engine)[0]
        before = _served(loaded.engine, uscc)
        assert before is not None and before["grade"] in "优良中差"
        uri = f"sqlite:///{(loaded.data_dir / 'mlflow' / 'mlflow.db').resolve()}"
        version, model = PublishedModels(loaded.data_dir, uri=uri).load("champion")
        result = rescore_company(
            loaded.engine, loaded.store, loaded.data_dir, model, version, uscc, LATER
        )
        assert result["after"]["grade"] in ("优", "良", "中", "差"), result
        assert _history(loaded.engine, uscc)[LATER]["method_version"] == hunan
        doc = json.loads(_served(loaded.engine, uscc)["full_doc"])  # type: ignore[index]
        assert doc["evaluation"]["method_version"] == hunan
        # a method whose configuration was not recorded is refused, naming it
        (loaded.data_dir / "results" / "methods" / f"{hunan}.json").unlink()
        with pytest.raises(MethodMismatch, match=f"{hunan}, whose configuration is not recorded"):
            rescore_company(loaded.engine, loaded.store, loaded.data_dir, model, version, uscc,
                            LATER)  # fmt: skip


def test_without_a_model_nothing_is_rescored_and_the_served_tier_stays(world: World) -> None:
    """Without a model a re-score wrote the evaluation with no tier, erasing the served tier
    (the CLI already refused). It is refused now, and the routes' re-score after a change says
    so in `rescored` (the change itself stands)."""
    uscc = _sample(world.engine)[-1]
    served, history = _served(world.engine, uscc), _history(world.engine, uscc)
    with pytest.raises(NoModel, match="no tier model is loaded"):
        world.rescore(uscc, date(2026, 10, 31), with_model=False)
    assert (
        "no tier model"
        in rescore_today(world.engine, world.store, world.data_dir, None, None, uscc)["error"]
    )
    assert _served(world.engine, uscc) == served and _history(world.engine, uscc) == history


def test_two_rescores_of_a_company_at_once_take_turns(world: World) -> None:
    """A re-score that had read the store before an objection was filed wrote after the
    filing's own re-score, and the served document lost the open-objection flag. Re-scores of
    one company now take turns from reading the store to writing: the later one reads after
    the earlier one has written."""
    today = china_today()
    with world.store.connect() as con:  # a company the other tests leave alone: no penalty
        uscc, record_id = con.execute(
            "SELECT uscc, min(record_id) FROM records WHERE uscc NOT IN "
            "(SELECT uscc FROM records WHERE category = 'admin_penalty') "
            "AND uscc IN (SELECT uscc FROM entities WHERE status = 'active') "
            "GROUP BY uscc ORDER BY uscc LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    read, go = threading.Event(), threading.Event()
    real = rescore_module.build_features

    def slow(*args: Any, **kwargs: Any) -> Any:  # the first re-score pauses once it has read
        built = real(*args, **kwargs)
        if threading.current_thread().name == "first":
            read.set()
            assert go.wait(60)
        return built

    results: dict[str, Any] = {}
    rescore_module.build_features = slow  # type: ignore[assignment]
    try:
        first = threading.Thread(name="first", target=lambda: results.update(
            first=world.rescore(uscc, today)))  # fmt: skip
        first.start()
        assert read.wait(120)
        filed = append_events(
            world.store,
            [{"event_id": "race-opened", "record_id": record_id,
              "event_type": "objection_opened", "effective_date": today,
              "recorded_date": today, "attributes": {}}],
            today=today,
        )  # fmt: skip
        assert filed.stored == 1 and not filed.rejected
        second = threading.Thread(name="second", target=lambda: results.update(
            second=world.rescore(uscc, today)))  # fmt: skip
        second.start()
        second.join(1.0)  # it waits for the first re-score (before: it wrote now)
        go.set()
        first.join(120)
        second.join(120)
    finally:
        rescore_module.build_features = real  # type: ignore[assignment]
        go.set()
    assert set(results) == {"first", "second"}
    doc = json.loads(_served(world.engine, uscc)["full_doc"])  # type: ignore[index]
    assert doc["flags"]["objection_open"] is True, doc["flags"]


def test_rescores_at_once_need_one_connection_each(world: World) -> None:
    """On PostgreSQL a re-score held a pooled connection for its lock and asked for a second to
    write: with every connection held by a lock, none got its second (all timed out). It now
    uses one connection, whose transaction holds the lock: six re-scores through a pool of two
    all finish."""
    args: dict[str, Any] = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 60}
    if world.url.startswith("sqlite"):
        args["connect_args"] = {"check_same_thread": False, "timeout": 60}
    small = sa.create_engine(world.url, **args)
    codes = [u for u in _sample(world.engine) if _served(world.engine, u)][:6]
    assert len(codes) == 6
    results: dict[str, Any] = {}
    failures: list[BaseException] = []

    def rescore(uscc: str) -> None:
        try:
            results[uscc] = rescore_company(small, world.store, world.data_dir, world.model,
                                            world.version, uscc, china_today())  # fmt: skip
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=rescore, args=(u,)) for u in codes]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    small.dispose()
    assert not failures, failures
    assert sorted(results) == sorted(codes), time.monotonic() - started
    assert all(_served(world.engine, u)["as_of"] == china_today() for u in codes)  # type: ignore[index]


def test_a_champion_promoted_since_is_what_a_rescore_uses_in_every_worker(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    province: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With several workers, `POST /v1/admin/reload` reaches one: the others re-scored with the
    retired champion (4 of 6 re-scores in the reviewer's run). A re-score now looks at the
    alias first and loads a champion promoted since."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with loaded_copy("sqlite", request, tmp_path_factory, province, "champion") as loaded:
        settings = Settings(data_dir=loaded.data_dir, DATABASE_URL=loaded.url,
                            duckdb_memory_limit="1GB")  # fmt: skip
        key = create_key(loaded.engine, "regulator", None, "worker test")
        headers = {"X-API-Key": key, "X-Purpose": "repair decision"}
        uscc = _sample(loaded.engine)[-1]
        with TestClient(create_app(settings)) as client:  # a worker serving version 1
            state = client.app.state.service  # type: ignore[attr-defined]
            assert state.slot.version == "1"
            first = client.post(f"/v1/companies/{uscc}:rescore", headers=headers)
            assert first.status_code == 200 and first.json()["model_version"] == "1"
            # another process promotes version 2 (the same bundle, registered again)
            registry = state.models.client
            one = registry.get_model_version(state.models.name, "1")
            two = registry.create_model_version(state.models.name, one.source, one.run_id)
            registry.set_registered_model_alias(state.models.name, "champion", two.version)
            again = client.post(f"/v1/companies/{uscc}:rescore", headers=headers)
            assert again.status_code == 200, again.text
            assert again.json()["model_version"] == str(two.version) == state.slot.version
            assert client.get("/readyz").json()["model"]["version"] == str(two.version)


def test_the_rescore_route(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=world.data_dir, DATABASE_URL=world.url, duckdb_memory_limit="1GB")
    app = create_app(settings)
    if not any(getattr(r, "path", None) == "/v1/companies/{uscc}:rescore" for r in app.routes):
        app.include_router(rescore_route.router)  # until serving/app.py registers it
    keys = {role: create_key(world.engine, role, "samr" if role == "department" else None,
                             "rescore test")
            for role in ("admin", "regulator", "public", "department")}  # fmt: skip
    with world.engine.connect() as con:
        uscc, tier = con.execute(
            sa.select(companies.c.uscc, companies.c.tier).where(companies.c.as_of == AS_OF)
            .where(companies.c.tier.is_not(None)).order_by(companies.c.uscc.desc()).limit(1)
        ).one()  # fmt: skip
    path = f"/v1/companies/{uscc}:rescore"
    reg = {"X-API-Key": keys["regulator"], "X-Purpose": "credit repair decision 2026-017"}

    with TestClient(app) as client:
        for role in ("public", "department"):
            denied = client.post(path, headers={"X-API-Key": keys[role], "X-Purpose": "x"})
            assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
        missing = client.post(path, headers={"X-API-Key": keys["regulator"]})
        assert missing.status_code == 400 and missing.json()["code"] == "purpose_required"
        assert client.post("/v1/companies/nonsense:rescore", headers=reg).status_code == 422
        future = client.post(path, headers=reg, params={"as_of": "2099-01-01"})
        assert future.status_code == 422 and "after today" in future.json()["message"]
        unknown = client.post(f"/v1/companies/{UNKNOWN}:rescore", headers=reg)
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"

        same = client.post(path, headers=reg, params={"as_of": AS_OF.isoformat()})
        assert same.status_code == 200, same.text
        body = same.json()
        assert body["as_of"] == AS_OF.isoformat() and body["model_version"] == world.version
        assert body["before"]["tier"] == body["after"]["tier"] == tier
        assert body["before"]["score"] == body["after"]["score"]

        now = client.post(path, headers={**reg, "X-API-Key": keys["admin"]})  # as of today
        assert now.status_code == 200, now.text
        body = now.json()
        assert body["as_of"] == china_today().isoformat() and body["current"]
        assert body["before"]["as_of"] == AS_OF.isoformat()
        assert body["after"]["tier"] in TIERS and 0 < body["after"]["probability"] < 1
        shown = client.get(f"/v1/companies/{uscc}", headers=reg).json()
        assert shown["as_of"] == china_today().isoformat()
        assert shown["evaluation"]["score"] == body["after"]["score"]
        # one company re-scored today is not today's distribution; the batch date still counts
        # every company, the re-scored one included
        today = client.get("/v1/tiers/summary", headers=reg,
                           params={"as_of": china_today().isoformat()})  # fmt: skip
        assert today.status_code == 404 and today.json()["code"] == "not_loaded"
        with world.engine.connect() as con:  # every company tiered as of that date, once
            batch = con.execute(
                sa.select(sa.func.count(sa.distinct(company_history.c.uscc))).where(
                    company_history.c.as_of == AS_OF, company_history.c.tier.is_not(None)
                )
            ).scalar_one()  # fmt: skip
        loaded = client.get("/v1/tiers/summary", headers=reg, params={"as_of": AS_OF.isoformat()})
        assert loaded.status_code == 200 and loaded.json()["rows"][0]["total"] == batch

    with world.engine.connect() as con:
        audited = con.execute(
            sa.select(audit_log.c.uscc, audit_log.c.status, audit_log.c.purpose)
            .where(audit_log.c.endpoint == "POST /v1/companies/{uscc}:rescore")
        ).all()  # fmt: skip
        details = con.execute(
            sa.select(audit_log.c.detail).where(
                audit_log.c.endpoint == "POST /v1/companies/{uscc}:rescore",
                audit_log.c.status == 200,
            )
        ).scalars().all()  # fmt: skip
    # the refusals too: two roles that may not (403), a regulator without a purpose (400), and
    # the malformed code, without a company (its code as given is in the line's detail)
    assert sorted((u or "", s) for u, s, _ in audited) == sorted(
        [(uscc, 403), (uscc, 403), (uscc, 400), (uscc, 200), (uscc, 200), (UNKNOWN, 404),
         ("", 422)]
    )  # fmt: skip
    assert {p for _, s, p in audited if s not in (400, 403)} == {reg["X-Purpose"]}
    # the day asked for is kept with the line; as of today, nothing was asked beyond the company
    assert set(details) == {f"as_of={AS_OF.isoformat()}", None} and len(details) == 2
