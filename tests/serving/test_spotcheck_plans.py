"""Spot-check plans on each serving database (SQLite and PostgreSQL): drawing, storing,
verifying and replaying, caps and conflicts across plans, lists as CSV and Excel, results that
become records and change features, publication, overdue tasks, roles and audit; 20 plans
created concurrently through a real uvicorn process.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from cli.main import app
from features.builder import build_features
from records import workdays
from records.events import append_events
from records.ingest import ingest_table
from records.publicity import records_on
from records.settings import Settings
from records.store import Store
from records.uscc import derive, generate_many, is_valid
from records.workdays import china_today
from serving.app import create_app
from serving.auth import create_key
from serving.db import (
    audit_log,
    companies,
    company_history,
    plan_counter,
    spot_check_assignments,
    spot_check_plans,
    spot_check_tasks,
)
from serving.spotcheck import plans as plans_module
from serving.spotcheck.demo import load_demo_inspectors
from serving.spotcheck.draw import PlanError, Snapshot, canonical_list, draw_plan
from serving.spotcheck.plans import (
    InspectorIn,
    PlanCreated,
    PlanRequest,
    TaskResult,
    cancel_tasks,
    create_plan,
    import_preset_items,
    params_from_json,
    post_result,
    public_notice,
    resolve,
    save_inspectors,
    seed_commitment,
    snapshot_from_bytes,
    snapshot_to_bytes,
    store_inspections,
    take_snapshot,
    verify_plan,
)
from tests.serving.databases import BACKENDS, Loaded, fresh_url, loaded_copy
from tests.serving.pipeline import AS_OF, env_for
from tests.serving.uvicorn import running_server

JOINT = ["samr", "fire", "emergency", "ecology", "health"]


World = Loaded


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    """A copy of the province loaded into a fresh database, with the national-default items and
    a simulated inspector pool."""
    with loaded_copy(request.param, request, tmp_path_factory, province, "spotcheck") as loaded:
        import_preset_items(loaded.engine, "national-default")
        load_demo_inspectors(loaded.engine, per_city=6)
        yield loaded


def _tasks(engine: Engine, plan_id: str) -> pd.DataFrame:
    with engine.connect() as con:
        rows = con.execute(
            sa.select(spot_check_tasks).where(spot_check_tasks.c.plan_id == plan_id)
        ).mappings()
        return pd.DataFrame([dict(r) for r in rows])


START = date(2026, 7, 6)
"""The start of `_request`'s plans, and the day they are drawn (`create_plan(today=START)`): a
plan may not start before its draw day unless it records one that already began."""


def _request(**kw: Any) -> PlanRequest:
    base: dict[str, Any] = {"name": "test plan", "departments": JOINT, "seed": 20261122,
                            "snapshot_date": AS_OF, "start_date": START}  # fmt: skip
    return PlanRequest.model_validate({**base, **kw})


# ---- drawing, storing, verifying --------------------------------------------------------------


def test_a_plan_is_stored_with_its_list_and_replays_identically_after_the_store_grows(
    world: World,
) -> None:
    created = create_plan(world.engine, _request(name="replay"), today=START)
    assert created.tasks > 100 and created.visits < created.tasks  # joint visits
    assert created.due_date == workdays.add_working_days(date(2026, 7, 6), 20)
    tasks = _tasks(world.engine, created.plan_id)
    assert len(tasks) == created.tasks
    assert tasks.groupby("uscc")["visit_no"].nunique().max() == 1  # one visit per company
    assert not tasks.duplicated(["uscc", "item_id"]).any()
    with world.engine.connect() as con:
        plan = con.execute(
            sa.select(spot_check_plans).where(spot_check_plans.c.id == created.plan_id)
        ).mappings().one()  # fmt: skip
        members = con.execute(
            sa.select(spot_check_assignments.c.task_id, spot_check_assignments.c.inspector_id)
        ).all()
    stored = zlib.decompress(plan["list_blob"])
    assert canonical_list(tasks.sort_values(["visit_no", "item_id"])) == stored
    by_task: dict[int, set[str]] = {}
    for task_id, inspector in members:
        by_task.setdefault(task_id, set()).add(inspector)
    assert all(by_task[t] == set(i.split(";")) and len(by_task[t]) >= 2
               for t, i in zip(tasks["id"], tasks["inspectors"], strict=True))  # fmt: skip
    # the drawn counts per tier are what the plan summary and the public notice say
    summary = json.loads(plan["summary"])
    for item in summary["items"]:
        drawn = tasks[(tasks["item_id"] == item["item_id"]) & (tasks["basis"] == "random")]
        assert (
            drawn.groupby("tier").size().reindex(list("ABCD"), fill_value=0).to_dict()
            == (item["drawn"])
        )

    first = verify_plan(world.engine, created.plan_id)
    assert first.identical and first.pool_hash_ok and first.inspector_hash_ok
    assert first.replayed_sha256 == created.list_sha256

    # the store and the pools grow: new companies tiered on the snapshot day, new records, new
    # inspectors, another plan's tasks ...
    new_codes = ["91410100MA9XY0001N", "91410100MA9XY0002L"]
    with world.engine.begin() as con:
        for code in new_codes:
            con.execute(companies.insert().values(
                uscc=code, region="410102", industry="C13", entity_type="enterprise",
                as_of=AS_OF, tier="D", grade="C", full_doc="{}", public_doc="{}", name="新公司",
            ))  # fmt: skip
            con.execute(company_history.insert().values(
                uscc=code, as_of=AS_OF, tier="D", region="410102", industry="C13",
                entity_type="enterprise", name="新公司",
            ))  # fmt: skip
    ingest_table(
        world.store,
        pa.table({"record_id": ["NEW-PEN-1"], "uscc": [new_codes[0]],
                  "category": ["admin_penalty"], "event_date": ["2026-06-01"],
                  "recorded_date": ["2026-06-02"], "source_dept": ["samr"],
                  "severity": ["general"], "amount": ["5000"], "attributes": ["{}"]}),
        "records", "samr",
    )  # fmt: skip
    save_inspectors(world.engine, [InspectorIn(inspector_id="samr-4101-99", department="samr",
                                               area="4101", items=["SC-GS-01"])])  # fmt: skip
    create_plan(world.engine, _request(name="another", departments=["samr"], seed=5), today=START)
    with world.engine.connect() as con:
        now, _ = take_snapshot(con, create_plan_params(world), AS_OF, date(2026, 7, 6))
    assert now.pool_hash != created.pool_hash  # the live pool has changed ...
    again = verify_plan(world.engine, created.plan_id)
    assert again.identical and again.replayed_sha256 == created.list_sha256  # ... the plan not

    # a plan drawn by another version of the sampling design is not "verified" by this one
    with world.engine.begin() as con:
        params = json.loads(plan["params"])
        con.execute(spot_check_plans.update().where(spot_check_plans.c.id == created.plan_id)
                    .values(params=json.dumps({**params, "draw_version": 0})))  # fmt: skip
    try:
        with pytest.raises(PlanError) as refused:
            verify_plan(world.engine, created.plan_id)
        assert refused.value.code == "draw_version"
    finally:
        with world.engine.begin() as con:
            con.execute(spot_check_plans.update().where(spot_check_plans.c.id == created.plan_id)
                        .values(params=plan["params"]))  # fmt: skip

    # tampering with a stored task is detected
    task_id = int(tasks["id"].iloc[0])
    original = tasks["inspectors"].iloc[0]
    with world.engine.begin() as con:
        con.execute(spot_check_tasks.update().where(spot_check_tasks.c.id == task_id)
                    .values(inspectors="x;y"))  # fmt: skip
    try:
        tampered = verify_plan(world.engine, created.plan_id)
        assert not tampered.identical and not tampered.tasks_match
    finally:
        with world.engine.begin() as con:
            con.execute(spot_check_tasks.update().where(spot_check_tasks.c.id == task_id)
                        .values(inspectors=original))  # fmt: skip


def create_plan_params(world: World) -> Any:
    from serving.spotcheck.plans import resolve

    return resolve(world.engine, _request())


def test_yearly_caps_and_last_inspectors_hold_across_plans(world: World) -> None:
    """Product quality at 100 % for every tier, three plans in one year: the first takes every
    eligible company, the second only tier D (the item's yearly cap exempts D) with none of the
    inspectors who came last time, the third nobody (the department's 2 inspections a year)."""
    kw: dict[str, Any] = {
        "departments": ["samr"], "items": ["SC-CP-04"],
        "item_ratios": {"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}},
        "start_date": date(2027, 3, 1),
    }  # fmt: skip
    day = kw["start_date"]
    first = create_plan(world.engine, _request(name="cap 1", **kw), today=day)
    second = create_plan(world.engine, _request(name="cap 2", seed=2, **kw), today=day)
    third = create_plan(world.engine, _request(name="cap 3", seed=3, **kw), today=day)
    t1, t2 = _tasks(world.engine, first.plan_id), _tasks(world.engine, second.plan_id)
    eligible = first.summary["items"][0]["eligible"]
    assert len(t1) == sum(eligible.values()) > 50
    assert set(t2["uscc"]) == set(t1.loc[t1["tier"] == "D", "uscc"])
    assert second.summary["items"][0]["excluded_over_cap"] == len(t1) - len(t2)
    last = dict(zip(t1["uscc"], t1["inspectors"].str.split(";").map(set), strict=True))
    for code, team in zip(t2["uscc"], t2["inspectors"].str.split(";").map(set), strict=True):
        assert not team & last[code], (code, team, last[code])
    assert third.tasks == 0 and third.summary["items"][0]["excluded_over_cap"] == len(t1)
    assert verify_plan(world.engine, third.plan_id).identical


def _spot_check_records(
    store: Store, department: str, rows: list[tuple[str, str, str, str, str]], today: date
) -> None:
    """Department-uploaded `spot_check` records: (record id, company, item, checked, recorded),
    known from their recorded dates (a back-fill of history)."""
    outcome = ingest_table(
        store,
        pa.table({
            "record_id": [r[0] for r in rows], "uscc": [r[1] for r in rows],
            "category": ["spot_check"] * len(rows), "event_date": [r[3] for r in rows],
            "recorded_date": [r[4] for r in rows], "source_dept": [department] * len(rows),
            "severity": ["pass"] * len(rows), "amount": pa.array([None] * len(rows), pa.string()),
            "attributes": [json.dumps({"check_item": r[2]}) for r in rows],
        }),
        "records", department, today=today, history=True,
    )  # fmt: skip
    assert outcome.stored == len(rows), outcome.by_reason


def _manufacturers(engine: Engine) -> dict[str, list[str]]:
    """Companies tiered on the snapshot day that product quality (SC-CP-04, industry C) applies
    to, by tier (valid codes only: a test adds made-up companies)."""
    with engine.connect() as con:
        rows = con.execute(
            sa.select(company_history.c.uscc, company_history.c.tier)
            .where(company_history.c.as_of == AS_OF, company_history.c.tier.is_not(None),
                   company_history.c.industry.like("C%"))
            .order_by(company_history.c.uscc)
        ).all()  # fmt: skip
    out: dict[str, list[str]] = {t: [] for t in "ABCD"}
    for code, tier in rows:
        if is_valid(code):
            out[tier].append(code)
    return out


def test_yearly_caps_count_department_records_known_on_the_draw_day_once(world: World) -> None:
    """Inspections that reach the store as departments' `spot_check` records count for the
    yearly caps like plan tasks, by the record's department and check item, if recorded by the
    draw day; a result posted through a plan counts once (as its task)."""
    day = date(2029, 3, 1)
    # the caps alone (the repeat rule, which these records also feed, has its own test:
    # test_department_records_feed_the_repeat_rule_by_their_basis)
    kw: dict[str, Any] = {
        "departments": ["samr"], "items": ["SC-CP-04"],
        "item_ratios": {"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}}, "start_date": day,
        "avoid_repeat_within_year": False,
    }  # fmt: skip
    by_tier = _manufacturers(world.engine)
    twice, item_done, later, last_year, other_body = (by_tier["B"] + by_tier["C"])[:5]
    d_once, d_later, d_posted = by_tier["D"][:3]
    _spot_check_records(world.store, "samr", [
        ("DEPT-2029-01", twice, "SC-GS-01", "2029-01-10", "2029-01-12"),
        ("DEPT-2029-02", twice, "SC-DJ-02", "2029-02-10", "2029-02-12"),
        ("DEPT-2029-03", item_done, "SC-CP-04", "2029-01-20", "2029-01-25"),
        ("DEPT-2029-04", d_once, "SC-CP-04", "2029-01-20", "2029-01-25"),
        ("DEPT-2029-05", later, "SC-CP-04", "2029-02-20", "2029-03-05"),  # known after the draw
        ("DEPT-2029-06", d_later, "SC-CP-04", "2029-02-20", "2029-03-05"),
        ("DEPT-2028-01", last_year, "SC-CP-04", "2028-11-20", "2028-11-25"),
        ("DEPT-2029-07", other_body, "SC-GS-01", "2029-01-05", "2029-01-06"),
    ], today=date(2029, 3, 5))  # fmt: skip
    _spot_check_records(world.store, "fire", [  # another body: not samr's cap
        ("DEPT-2029-08", other_body, "XF-01", "2029-02-05", "2029-02-06"),
    ], today=date(2029, 3, 5))  # fmt: skip

    first = create_plan(world.engine, _request(name="store 1", **kw), store=world.store, today=day)
    t1 = _tasks(world.engine, first.plan_id)
    drawn = set(t1["uscc"])
    assert twice not in drawn  # samr's 2 inspections this year, both from the store
    assert item_done not in drawn  # the item's yearly cap (not tier D)
    assert {d_once, d_later, d_posted, later, last_year, other_body} <= drawn
    assert first.summary["items"][0]["excluded_over_cap"] == 2

    # a result posted through the plan is a task and a record: one inspection
    task_id = int(t1.loc[t1["uscc"] == d_posted, "id"].iloc[0])
    result = TaskResult(result="pass", check_date=date(2029, 3, 2))
    post_result(world.engine, world.store, task_id, result, today=date(2029, 3, 3))
    second = create_plan(world.engine, _request(name="store 2", seed=2, record_past=True, **kw),
                         store=world.store, today=date(2029, 3, 10))  # fmt: skip
    t2 = set(_tasks(world.engine, second.plan_id)["uscc"])
    assert d_posted in t2  # tier D, 1 samr inspection (its task, not also its record)
    assert d_once not in t2 and d_later not in t2  # a record and the first plan: 2 this year
    assert t2 == set(t1.loc[t1["tier"] == "D", "uscc"]) - {d_once, d_later}


def test_a_replay_is_unchanged_by_records_that_arrive_after_the_draw(world: World) -> None:
    """The inspections a draw counted are stored with it: a department's record that arrives
    later (even dated before the draw) changes the next plan's pool, not the replay."""
    day = date(2031, 3, 1)
    kw: dict[str, Any] = {
        "departments": ["samr"], "items": ["SC-CP-04"],
        "item_ratios": {"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}}, "start_date": day,
    }  # fmt: skip
    created = create_plan(world.engine, _request(name="replay store", **kw),
                          store=world.store, today=day)  # fmt: skip
    drawn = _tasks(world.engine, created.plan_id)
    code = next(c for c in drawn.loc[drawn["tier"] == "D", "uscc"] if is_valid(c))
    _spot_check_records(world.store, "samr", [
        ("DEPT-2031-01", code, "SC-GS-01", "2031-02-01", "2031-02-02"),
    ], today=date(2031, 3, 2))  # fmt: skip
    with world.engine.connect() as con:
        params = resolve(world.engine, _request(**kw))
        recorded = store_inspections(world.store, day.year, day)
        live, _ = take_snapshot(con, params, AS_OF, day, recorded)
    checks = live.tables["department_checks"]
    assert checks.loc[(checks["uscc"] == code) & (checks["department"] == "samr"), "n"].sum() == 2
    replay = verify_plan(world.engine, created.plan_id)
    assert (
        replay.identical and replay.pool_hash_ok and replay.replayed_sha256 == created.list_sha256
    )
    later = create_plan(world.engine, _request(name="replay store 2", seed=2, record_past=True,
                                               **kw),
                        store=world.store, today=date(2031, 3, 3))  # fmt: skip
    assert code not in set(_tasks(world.engine, later.plan_id)["uscc"])


def test_the_last_inspectors_of_the_same_department_are_not_sent_again(world: World) -> None:
    """samr, then fire, then samr again at the same companies: samr's second team has none of
    samr's first (the company's last inspection, by fire, does not hide samr's)."""
    start = date(2030, 3, 1)
    samr: dict[str, Any] = {
        "departments": ["samr"], "items": ["SC-CP-04"],
        "item_ratios": {"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}}, "start_date": start,
    }  # fmt: skip
    fire: dict[str, Any] = {
        "departments": ["fire"], "items": ["XF-01"], "population": {"industries": ["C"]},
        "item_ratios": {"XF-01": {"A": 1, "B": 1, "C": 1, "D": 1}}, "start_date": start,
    }  # fmt: skip
    first = create_plan(world.engine, _request(name="samr 1", seed=31, **samr), today=start)
    between = create_plan(world.engine, _request(name="fire", seed=32, **fire), today=start)
    again = create_plan(world.engine, _request(name="samr 2", seed=33, **samr), today=start)
    t1, t3 = _tasks(world.engine, first.plan_id), _tasks(world.engine, again.plan_id)
    fire_codes = set(_tasks(world.engine, between.plan_id)["uscc"])
    assert len(t3) >= 5 and set(t3["uscc"]) <= fire_codes  # tier D, inspected by fire between
    last = dict(zip(t1["uscc"], t1["inspectors"].str.split(";").map(set), strict=True))
    for code, team in zip(t3["uscc"], t3["inspectors"].str.split(";").map(set), strict=True):
        assert not team & last[code], (code, team, last[code])
    assert verify_plan(world.engine, again.plan_id).identical


def test_declared_conflicts_and_inactive_inspectors_are_never_drawn(world: World) -> None:
    created = create_plan(world.engine, _request(name="conflicts", seed=99), today=START)
    tasks = _tasks(world.engine, created.plan_id)
    with world.engine.connect() as con:
        declared = set(con.execute(sa.text(
            "SELECT inspector_id, uscc FROM inspector_conflicts")).all())  # fmt: skip
        inactive = {r for (r,) in con.execute(sa.text(
            "SELECT id FROM inspectors WHERE NOT active"))}  # fmt: skip
    assert declared and inactive
    for code, team in zip(tasks["uscc"], tasks["inspectors"].str.split(";"), strict=True):
        assert not set(team) & inactive
        assert not {(i, code) for i in team} & declared


def test_plans_refuse_bad_requests_with_a_reason(world: World) -> None:
    cases = [
        ({"items": ["NOPE-1"]}, "unknown_item"),
        ({"departments": ["tax"], "items": ["SC-GS-01"]}, "item_department"),
        ({"ratio_preset": "mars-2030"}, "unknown_preset"),
        ({"snapshot_date": date(2001, 1, 1)}, "no_tiers"),
        ({"departments": ["education"]}, "no_items"),
    ]
    for override, code in cases:
        with pytest.raises(PlanError) as caught:
            create_plan(world.engine, _request(**override), today=START)
        assert caught.value.code == code, (override, caught.value)
    with pytest.raises(ValueError, match="triggered"):
        _request(triggered=["91110000600037341X"])


# ---- the API: lists, results, publication, overdue --------------------------------------------


def test_lists_results_publication_and_overdue_through_the_api(world: World) -> None:
    """End to end over HTTP against a real uvicorn process on this database."""
    keys = {role: create_key(world.engine, role, dept, f"plan test {role}")
            for role, dept in (("regulator", None), ("public", None), ("admin", None))}  # fmt: skip
    samr = create_key(world.engine, "department", "samr", "samr inspectors")
    fire = create_key(world.engine, "department", "fire", "fire inspectors")
    reg = {"X-API-Key": keys["regulator"], "X-Purpose": "spot-check plan test"}
    public = {"X-API-Key": keys["public"]}
    today = china_today()
    start = today - timedelta(days=45)  # more than 20 working days ago: open tasks are overdue
    log = world.data_dir / "uvicorn-api.log"
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client,
    ):
        made = client.post("/v1/spot-check-plans", headers=reg, json={
            "name": "API 联合抽查", "departments": JOINT, "seed": 4242,
            "snapshot_date": AS_OF.isoformat(), "start_date": start.isoformat(),
            "record_past": True,
        })  # fmt: skip
        assert made.status_code == 201, made.text
        plan = made.json()
        plan_id = plan["plan_id"]
        assert (
            client.post(
                "/v1/spot-check-plans", headers=public, json={"name": "x", "departments": ["samr"]}
            ).status_code
            == 403
        )
        # the plans are listed to admins and regulators only (the public key could list them)
        assert client.get("/v1/spot-check-plans", headers=public).status_code == 403
        briefs = client.get("/v1/spot-check-plans", headers=reg)
        assert briefs.status_code == 200 and plan_id in {p["plan_id"] for p in
                                                          briefs.json()["plans"]}  # fmt: skip

        listing = client.get(f"/v1/spot-check-plans/{plan_id}", headers=reg)
        assert listing.status_code == 200, listing.text
        tasks = listing.json()["tasks"]
        assert len(tasks) == plan["tasks"] and all(t["status"] == "overdue" for t in tasks)
        csv = client.get(f"/v1/spot-check-plans/{plan_id}", headers=reg,
                         params={"format": "csv", "department": "samr"})  # fmt: skip
        assert csv.status_code == 200 and csv.content.startswith(b"\xef\xbb\xbf")
        frame = pd.read_csv(io.BytesIO(csv.content), dtype=str, encoding="utf-8-sig")
        assert "统一社会信用代码" in frame.columns and "执法检查人员" in frame.columns
        samr_tasks = [t for t in tasks if t["department"] == "samr"]
        assert sorted(frame["统一社会信用代码"]) == sorted(t["uscc"] for t in samr_tasks)
        xlsx = client.get(f"/v1/spot-check-plans/{plan_id}", headers=reg,
                          params={"format": "xlsx"})  # fmt: skip
        assert xlsx.status_code == 200
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True).worksheets[0]
        rows = [r for r in sheet.iter_rows(values_only=True) if any(v is not None for v in r)]
        header = next(i for i, r in enumerate(rows) if "统一社会信用代码" in r)
        codes = [r[rows[header].index("统一社会信用代码")] for r in rows[header + 1 :]]
        assert sorted(codes) == sorted(t["uscc"] for t in tasks)
        one = tasks[0]["inspectors"].split(";")[0]
        mine = client.get(f"/v1/spot-check-plans/{plan_id}", headers=reg,
                          params={"inspector": one}).json()["tasks"]  # fmt: skip
        assert mine and all(one in t["inspectors"].split(";") for t in mine)
        # a department key sees its own department only
        own = client.get(
            f"/v1/spot-check-plans/{plan_id}", headers={"X-API-Key": samr, "X-Purpose": "my tasks"}
        ).json()["tasks"]
        assert own and {t["department"] for t in own} == {"samr"}
        assert (
            client.get(
                f"/v1/spot-check-plans/{plan_id}",
                params={"department": "fire"},
                headers={"X-API-Key": samr, "X-Purpose": "x"},
            ).status_code
            == 403
        )

        notice = client.get(f"/v1/spot-check-plans/{plan_id}/notice", headers=public)
        assert notice.status_code == 200 and notice.json()["list_sha256"] == plan["list_sha256"]
        assert "tasks" not in notice.json() or isinstance(notice.json()["tasks"], int)
        check = client.get(f"/v1/spot-check-plans/{plan_id}/verification", headers=public)
        assert check.status_code == 200 and check.json()["identical"], check.text

        # results: a problem and a pass from samr; fire's key may not report samr's task
        problem = next(t for t in samr_tasks if t["tier"] in "BCD")
        passed = next(t for t in samr_tasks if t["uscc"] != problem["uscc"])
        before = _features(world.store, problem["uscc"], today)
        body = {"result": "problem", "check_date": (start + timedelta(days=3)).isoformat(),
                "findings": {"minor": 2, "major": 1, "description": "台账不全"}}  # fmt: skip
        assert client.post(f"/v1/spot-check-tasks/{problem['task_id']}/result", json=body,
                           headers={"X-API-Key": fire}).status_code == 403  # fmt: skip
        bad = {**body, "result": "pass"}
        assert client.post(f"/v1/spot-check-tasks/{problem['task_id']}/result", json=bad,
                           headers={"X-API-Key": samr}).status_code == 422  # fmt: skip
        # `today` was taken minutes ago: a day after China's today now (midnight may have passed)
        future = {**body, "check_date": (china_today() + timedelta(days=1)).isoformat()}
        refused = client.post(f"/v1/spot-check-tasks/{problem['task_id']}/result", json=future,
                              headers={"X-API-Key": samr})  # fmt: skip
        assert refused.status_code == 422 and refused.json()["code"] == "future_date"
        posted = client.post(f"/v1/spot-check-tasks/{problem['task_id']}/result", json=body,
                             headers={"X-API-Key": samr})  # fmt: skip
        assert posted.status_code == 201, posted.text
        assert posted.json()["published_late"] is True  # checked 3 days in, reported 45 later
        again = client.post(f"/v1/spot-check-tasks/{problem['task_id']}/result", json=body,
                            headers={"X-API-Key": samr})  # fmt: skip
        assert again.status_code == 409
        ok = client.post(f"/v1/spot-check-tasks/{passed['task_id']}/result", headers=reg,
                         json={"result": "pass", "check_date": today.isoformat()})  # fmt: skip
        assert ok.status_code == 201, ok.text
        assert client.post("/v1/spot-check-tasks/999999999/result", headers=reg,
                           json={"result": "pass", "check_date": today.isoformat()}
                           ).status_code == 404  # fmt: skip

        # the result is a record in the store and changes the company's features
        with world.store.connect() as con:
            record = con.execute(
                "SELECT category, severity, source_dept, event_date, attributes FROM records "
                "WHERE record_id = ?", [posted.json()["record_id"]],
            ).fetchall()  # fmt: skip
        assert len(record) == 1
        category, severity, dept, event_date, attributes = record[0]
        assert (category, severity, dept) == ("spot_check", "problem", "samr")
        attrs = json.loads(attributes)
        assert attrs["plan_id"] == plan_id and attrs["check_item"] == problem["item_id"]
        assert attrs["inclusion_prob"] == pytest.approx(problem["inclusion_prob"])
        assert (attrs["basis"], attrs["tier"]) == (problem["basis"], problem["tier"])
        after = _features(world.store, problem["uscc"], today)
        assert after["spot_check_problems_3y"] == (before["spot_check_problems_3y"] or 0) + 1
        assert after["days_since_problem_check"] == (today - event_date).days

        # published, to anyone
        shown = client.get("/v1/spot-check-results", headers=public,
                           params={"uscc": problem["uscc"]}).json()["results"]  # fmt: skip
        assert [r["task_id"] for r in shown if r["plan_id"] == plan_id] == [problem["task_id"]]
        by_plan = client.get("/v1/spot-check-results", headers=public,
                             params={"plan_id": plan_id}).json()["results"]  # fmt: skip
        assert {r["task_id"] for r in by_plan} == {problem["task_id"], passed["task_id"]}

        # overdue: every task without a result, past its 20 working days
        overdue = client.get("/v1/spot-check-tasks/overdue", headers=reg,
                             params={"plan_id": plan_id, "limit": 100000})  # fmt: skip
        assert overdue.status_code == 200, overdue.text
        assert {t["task_id"] for t in overdue.json()["tasks"]} == (
            {t["task_id"] for t in tasks} - {problem["task_id"], passed["task_id"]}
        )
        due = date.fromisoformat(plan["due_date"])
        assert due == workdays.add_working_days(start, 20)
        on_time = client.get(
            "/v1/spot-check-tasks/overdue",
            headers=reg,
            params={"plan_id": plan_id, "as_of": due.isoformat()},
        ).json()
        assert on_time["tasks"] == []  # due that day: not yet overdue
        unsaid = client.get("/v1/spot-check-tasks/overdue", headers={"X-API-Key": samr})
        assert unsaid.status_code == 400 and unsaid.json()["code"] == "purpose_required"
        samr_late = client.get(
            "/v1/spot-check-tasks/overdue", headers={"X-API-Key": samr, "X-Purpose": "follow-up"},
            params={"limit": 100000},
        ).json()  # fmt: skip
        assert {t["department"] for t in samr_late["tasks"]} == {"samr"}

    with world.engine.connect() as con:
        logged = con.execute(
            sa.select(audit_log.c.endpoint, audit_log.c.uscc, audit_log.c.purpose)
            .where(audit_log.c.endpoint.like("%spot-check%"))
        ).all()  # fmt: skip
    assert ("GET /v1/spot-check-results", problem["uscc"], None) in logged
    # the plan's page of results: a line per company shown on it (once a single line without one)
    by_plan_logged = [u for e, u, _ in logged if e == "GET /v1/spot-check-results"]
    assert set(by_plan_logged) == {problem["uscc"], passed["uscc"]}
    assert by_plan_logged.count(passed["uscc"]) == 1
    assert any(e == "GET /v1/spot-check-plans/{plan_id}" and p.startswith(plan_id)
               for e, _, p in logged)  # fmt: skip
    # a list read names its companies: a line per company, for the plan and the overdue tasks
    exported = {u for e, u, p in logged
                if e == "GET /v1/spot-check-plans/{plan_id}" and p.startswith(plan_id)}  # fmt: skip
    assert exported == {t["uscc"] for t in tasks}
    late = {u for e, u, _ in logged if e == "GET /v1/spot-check-tasks/overdue"}
    assert late >= {t["uscc"] for t in tasks} - {problem["uscc"], passed["uscc"]}
    # a read that found nothing is on record too (the plan's tasks on their due day)
    assert ("GET /v1/spot-check-tasks/overdue", None, "spot-check plan test") in logged


def _features(store: Store, code: str, day: date) -> dict[str, Any]:
    table = build_features(store, day, [code])
    row: dict[str, Any] = table.to_pylist()[0]
    return row


# ---- concurrency through a real server --------------------------------------------------------


def test_twenty_plans_created_concurrently_through_the_api(world: World) -> None:
    """20 simultaneous POSTs to a real uvicorn process: each succeeds (or fails with a clean
    error), plan numbers are distinct, no task is lost or duplicated, every plan replays, and
    the department's yearly cap holds across them (plans are drawn one at a time)."""
    key = create_key(world.engine, "regulator", None, "concurrency test")
    with world.engine.connect() as con:
        before = con.execute(sa.select(sa.func.count()).select_from(spot_check_tasks)).scalar()
    log = world.data_dir / "uvicorn-concurrent.log"
    responses: list[httpx.Response] = []
    lock = threading.Lock()
    with running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url:
        barrier = threading.Barrier(20)

        def create(n: int) -> None:
            with httpx.Client(base_url=base_url, timeout=300, trust_env=False) as http:
                barrier.wait()
                answer = http.post("/v1/spot-check-plans", headers={"X-API-Key": key}, json={
                    "name": f"并发 {n}", "departments": ["samr", "fire"], "seed": n,
                    "snapshot_date": AS_OF.isoformat(), "start_date": "2028-03-01",
                    "record_past": True,  # a fixed start: still drawn once 2028 has begun
                })  # fmt: skip
            with lock:
                responses.append(answer)

        threads = [threading.Thread(target=create, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(responses) == 20
    for r in responses:
        assert r.status_code == 201 or (
            r.status_code in (409, 422, 503) and set(r.json()) == {"code", "message"}
        ), r.text
    made = [r.json() for r in responses if r.status_code == 201]
    assert len(made) == 20, [r.text for r in responses if r.status_code != 201]
    assert len({m["plan_id"] for m in made}) == 20
    with world.engine.connect() as con:
        after = con.execute(sa.select(sa.func.count()).select_from(spot_check_tasks)).scalar()
        stored = dict(con.execute(
            sa.select(spot_check_tasks.c.plan_id, sa.func.count())
            .group_by(spot_check_tasks.c.plan_id)
            .where(spot_check_tasks.c.plan_id.in_([m["plan_id"] for m in made]))
        ).all())  # fmt: skip
        per_company = con.execute(sa.text(
            "SELECT uscc, department, count(DISTINCT plan_id) FROM spot_check_tasks t "
            "JOIN spot_check_plans p ON p.id = t.plan_id WHERE p.start_date BETWEEN :d AND :e "
            "AND t.basis = 'random' GROUP BY uscc, department"
        ), {"d": date(2028, 1, 1), "e": date(2028, 12, 31)}).all()  # fmt: skip
    assert after - before == sum(m["tasks"] for m in made)
    assert all(stored.get(m["plan_id"], 0) == m["tasks"] for m in made)
    assert max(n for _, _, n in per_company) <= 2  # the department's yearly cap
    assert sum(m["tasks"] for m in made[:2]) > 0
    for m in made[:3]:
        assert verify_plan(world.engine, m["plan_id"]).identical


def test_results_are_public_for_the_catalogue_period(world: World) -> None:
    """5 calendar years from the check (the last day excluded), 2 for an individual business: a
    check of 23 November 2021 is public on 22 November 2026, 1,825 days later (2024 has 366)."""
    from serving.spotcheck.plans import published_results

    created = create_plan(world.engine, _request(
        name="publicity", departments=["samr"], items=["SC-GS-01"], seed=8,
        start_date=date(2030, 1, 7),  # the task rows get their check days below
    ), today=date(2030, 1, 7))  # fmt: skip
    tasks = _tasks(world.engine, created.plan_id).head(4)
    assert len(tasks) == 4
    today = date(2026, 11, 22)
    cases = [  # (entity type, check day, public?)
        ("enterprise", date(2021, 11, 23), True), ("enterprise", date(2021, 11, 22), False),
        ("individual_business", date(2024, 11, 23), True),
        ("individual_business", date(2024, 11, 22), False),
    ]  # fmt: skip
    assert today - cases[0][1] == timedelta(days=1825)
    with world.engine.begin() as con:
        for task_id, (kind, check_date, _) in zip(tasks["id"], cases, strict=True):
            con.execute(spot_check_tasks.update().where(spot_check_tasks.c.id == int(task_id))
                        .values(result="pass", check_date=check_date,
                                entity_type=kind, company_name="王小明食品店"))  # fmt: skip
    with world.engine.connect() as con:
        shown = {
            r["task_id"]: r
            for r in published_results(con, world.store, today, plan_id=created.plan_id)
        }
    for task_id, (kind, _, public) in zip(tasks["id"], cases, strict=True):
        assert (int(task_id) in shown) == public, (kind, task_id)
    masked = shown[int(tasks["id"].iloc[2])]["company_name"]
    assert masked == "王***品店"  # the surname and the trade only (once "王小**品店")


# ---- publication follows the record's events; results survive a crash; refused requests -------


@pytest.fixture()
def api(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The application on the world's data directory and database, with a regulator's key."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=world.data_dir, DATABASE_URL=world.url, duckdb_memory_limit="1GB")
    key = create_key(world.engine, "regulator", None, "spot-check api test")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {"X-API-Key": key, "X-Purpose": "spot-check test"}


def _plan_count(engine: Engine) -> int:
    with engine.connect() as con:
        return int(con.execute(sa.select(sa.func.count()).select_from(spot_check_plans)).scalar())


def test_published_results_follow_withdrawals_unpublishing_and_corrections(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    """A withdrawn or no-longer-published result disappears from the published results and a
    corrected one shows in its corrected form, as on the public company page (one rule)."""
    client, reg = api
    today = china_today()
    created = create_plan(world.engine, _request(
        name="published events", departments=["samr"], items=["SC-GS-01"], seed=31,
        start_date=today - timedelta(days=10), record_past=True,
    ))  # fmt: skip
    tasks = [int(t) for t in _tasks(world.engine, created.plan_id)["id"].head(4)]
    assert len(tasks) == 4
    problem = TaskResult(result="problem", check_date=today - timedelta(days=5),
                         findings={"minor": 1})  # fmt: skip
    posted = [post_result(world.engine, world.store, t, problem, today=today) for t in tasks]
    withdrawn, unpublished, corrected, objected = (p["record_id"] for p in posted)
    stored = append_events(world.store, [
        {"record_id": withdrawn, "event_type": "withdrawal", "effective_date": today},
        {"record_id": unpublished, "event_type": "unpublish", "effective_date": today},
        {"record_id": corrected, "event_type": "correction", "effective_date": today,
         "attributes": {"severity": "pass", "attributes": {"findings_minor": 0}}},
        {"record_id": objected, "event_type": "objection_opened", "effective_date": today},
    ], today=today)  # fmt: skip
    assert stored.stored == 4 and not stored.rejected

    shown = client.get("/v1/spot-check-results", headers=reg, params={"plan_id": created.plan_id})
    assert shown.status_code == 200, shown.text
    results = {r["task_id"]: r["result"] for r in shown.json()["results"]}
    assert results == {tasks[2]: "pass", tasks[3]: "problem"}
    flags = {r["task_id"]: r["objection_open"] for r in shown.json()["results"]}
    assert flags == {tasks[2]: False, tasks[3]: True}  # an open objection is shown to all
    by_company = client.get("/v1/spot-check-results", headers=reg,
                            params={"uscc": posted[0]["uscc"]}).json()["results"]  # fmt: skip
    assert tasks[0] not in {r["task_id"] for r in by_company}
    # the same verdict as the records page and the public company page
    for p in posted:
        [record] = [r for r in records_on(world.store, p["uscc"], today)
                    if r["record_id"] == p["record_id"]]  # fmt: skip
        assert record["public"] == (p["task_id"] in results), p
        if record["public"]:
            assert record["severity"] == results[p["task_id"]]


def _results_of(store: Store, task_record_prefix: str) -> list[dict[str, Any]]:
    with store.connect() as con:
        return con.sql(
            "SELECT record_id, uscc, severity FROM records WHERE record_id LIKE ? "
            "ORDER BY record_id", params=[task_record_prefix + "%"],
        ).to_arrow_table().to_pylist()  # fmt: skip


def test_a_result_that_fails_after_the_store_write_can_be_posted_again(
    world: World, api: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is written before the database commits: when the commit does not happen (an
    error, or the process dies), the record it left neither counts nor is published, the task
    stays open and posting the result again succeeds (201, never 500), with another result or
    the same one."""
    import serving.spotcheck.plans as plans

    client, reg = api
    today = china_today()
    created = create_plan(world.engine, _request(
        name="crash", departments=["samr"], items=["SC-GS-01"], seed=37,
        start_date=today - timedelta(days=10), record_past=True,
    ))  # fmt: skip
    first, second = (int(t) for t in _tasks(world.engine, created.plan_id)["id"].head(2))
    real_ingest = plans.ingest_table

    def then(failure: BaseException) -> Any:
        def ingest_and_fail(*args: Any, **kwargs: Any) -> Any:
            real_ingest(*args, **kwargs)
            raise failure

        return ingest_and_fail

    serious = TaskResult(result="serious", check_date=today - timedelta(days=2),
                         findings={"serious": 1})  # fmt: skip
    body = {"result": "pass", "check_date": (today - timedelta(days=2)).isoformat()}
    # an error after the store write (the commit fails): undone at once
    monkeypatch.setattr(plans, "ingest_table", then(OSError("the commit failed")))
    with pytest.raises(OSError, match="the commit failed"):
        post_result(world.engine, world.store, first, serious, today=today)
    # the process dies after the store write: nothing can run until the next attempt
    monkeypatch.setattr(plans, "ingest_table", then(SystemExit("killed")))
    with pytest.raises(SystemExit):
        post_result(world.engine, world.store, second, serious, today=today)
    monkeypatch.setattr(plans, "ingest_table", real_ingest)

    tasks = _tasks(world.engine, created.plan_id).set_index("id")
    assert tasks.loc[first, "result"] is None and tasks.loc[second, "result"] is None
    code = tasks.loc[first, "uscc"]
    [left] = _results_of(world.store, f"{created.plan_id}-T{first:09d}")
    [record] = [
        r for r in records_on(world.store, code, today) if r["record_id"] == left["record_id"]
    ]
    assert not record["counts"] and not record["public"]  # as if never written

    again = client.post(f"/v1/spot-check-tasks/{first}/result", headers=reg, json=body)
    assert again.status_code == 201, again.text
    again = client.post(f"/v1/spot-check-tasks/{second}/result", headers=reg, json={
        "result": "serious", "check_date": serious.check_date.isoformat(),
        "findings": {"serious": 1},
    })  # fmt: skip
    assert again.status_code == 201, again.text
    assert client.post(f"/v1/spot-check-tasks/{second}/result", headers=reg,
                       json=body).status_code == 409  # fmt: skip

    tasks = _tasks(world.engine, created.plan_id).set_index("id")
    for task_id, expected in ((first, "pass"), (second, "serious")):
        assert tasks.loc[task_id, "result"] == expected
        code = tasks.loc[task_id, "uscc"]
        records = [r for r in records_on(world.store, code, today)
                   if r["record_id"].startswith(f"{created.plan_id}-T{task_id:09d}")]  # fmt: skip
        counting = [r for r in records if r["counts"]]
        # exactly one record of the task counts: the one the task names, with its result
        assert [(r["record_id"], r["severity"]) for r in counting] == [
            (tasks.loc[task_id, "record_id"], expected)
        ]
    shown = client.get("/v1/spot-check-results", headers=reg, params={"plan_id": created.plan_id})
    assert {r["task_id"]: r["result"] for r in shown.json()["results"]} == {
        first: "pass",
        second: "serious",
    }


def test_a_request_that_leaves_no_company_is_refused_naming_the_filter(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    """No plan of 0 tasks for a filter that matches nobody: the filter is named, and an entity
    type the register does not know is refused by name."""
    client, reg = api
    before = _plan_count(world.engine)
    cases = [
        ({"population": {"regions": ["99"]}}, "empty_population", "99"),
        ({"population": {"regions": ["4101", "98"]}}, "empty_population", "98"),
        ({"population": {"industries": ["Z9"]}}, "empty_population", "Z9"),
        ({"departments": ["health"], "items": ["WS-01"], "population": {"industries": ["C"]}},
         "empty_population", "WS-01"),
    ]  # fmt: skip
    for override, code, named in cases:
        with pytest.raises(PlanError) as caught:
            create_plan(world.engine, _request(name="empty", **override), today=START)
        assert caught.value.code == code and named in str(caught.value), (override, caught.value)
    with pytest.raises(ValidationError, match="enterprize"):
        _request(population={"entity_types": ["enterprize"]})
    base = {"name": "empty", "departments": ["fire"], "seed": 1, "record_past": True,
            "snapshot_date": AS_OF.isoformat(), "start_date": "2026-07-06"}  # fmt: skip
    empty = client.post("/v1/spot-check-plans", headers=reg,
                        json={**base, "population": {"regions": ["99"]}})  # fmt: skip
    assert empty.status_code == 422 and empty.json()["code"] == "empty_population", empty.text
    assert "99" in empty.json()["message"]
    misspelt = client.post(
        "/v1/spot-check-plans", headers=reg,
        json={**base, "population": {"entity_types": ["enterprize"]}},
    )  # fmt: skip
    assert misspelt.status_code == 422 and "enterprize" in misspelt.json()["message"]
    assert _plan_count(world.engine) == before


def test_an_unknown_department_next_to_a_known_one_is_refused(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, reg = api
    before = _plan_count(world.engine)
    with pytest.raises(PlanError) as caught:
        create_plan(world.engine, _request(departments=["fire", "nosuchdept"]))
    assert caught.value.code == "unknown_department" and "nosuchdept" in str(caught.value)
    # a known department without active items is not dropped either
    with pytest.raises(PlanError) as caught:
        create_plan(world.engine, _request(departments=["fire", "education"]))
    assert caught.value.code == "no_items" and "education" in str(caught.value)
    answer = client.post("/v1/spot-check-plans", headers=reg, json={
        "name": "x", "departments": ["fire", "nosuchdept"], "seed": 1,
        "snapshot_date": AS_OF.isoformat(), "start_date": "2026-07-06",
    })  # fmt: skip
    assert answer.status_code == 422 and answer.json()["code"] == "unknown_department"
    assert "nosuchdept" in answer.json()["message"]
    assert _plan_count(world.engine) == before


def test_triggered_companies_the_plan_cannot_check_are_refused_by_name(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    """A triggered company (a complaint, a referral) must be checked: one that is not in the
    pool on the snapshot day, outside the plan's population or not concerned by any item of the
    plan is named with the reason, and no plan is drawn."""
    client, reg = api
    with world.engine.connect() as con:
        pool = con.execute(
            sa.select(company_history.c.uscc, company_history.c.region,
                      company_history.c.industry)
            .where(company_history.c.as_of == AS_OF, company_history.c.tier.is_not(None))
            .order_by(company_history.c.uscc)
        ).all()  # fmt: skip
    fire = ("C", "F52", "H", "O80", "P", "Q", "R")  # the industries XF-01 applies to
    # (an earlier test adds companies with made-up codes: a request names only valid ones)
    inside = next(c for c, region, industry in pool if is_valid(c)
                  and region.startswith("4101") and industry.startswith(fire))  # fmt: skip
    outside = next(c for c, region, industry in pool if is_valid(c)
                   and not region.startswith("4101") and industry.startswith(fire))  # fmt: skip
    unknown = derive("never-registered", "spot-check test", region="410100")
    assert unknown not in {c for c, _, _ in pool}
    before = _plan_count(world.engine)
    kw: dict[str, Any] = {"departments": ["fire"], "population": {"regions": ["4101"]},
                          "start_date": date(2026, 7, 6)}  # fmt: skip
    with pytest.raises(PlanError) as caught:
        create_plan(world.engine, _request(triggered=[inside, outside, unknown], **kw), today=START)
    message = str(caught.value)
    assert caught.value.code == "triggered_not_drawable", message
    assert outside in message and unknown in message and inside not in message
    answer = client.post("/v1/spot-check-plans", headers=reg, json={
        "name": "x", "departments": ["fire"], "seed": 1, "snapshot_date": AS_OF.isoformat(),
        "start_date": "2026-07-06", "population": {"regions": ["4101"]},
        "triggered": [inside, outside], "record_past": True,
    })  # fmt: skip
    assert answer.status_code == 422 and outside in answer.json()["message"], answer.text
    assert _plan_count(world.engine) == before
    made = create_plan(
        world.engine, _request(name="triggered", triggered=[inside], seed=5, **kw), today=START
    )
    assert made.summary["items"][0]["triggered"] == 1


def test_a_start_date_beyond_the_holiday_calendar_is_refused(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, reg = api
    last = workdays.LAST_YEAR
    for start in (date(last + 1, 1, 4), date(last, 12, 20)):
        with pytest.raises(PlanError) as caught:
            create_plan(world.engine, _request(start_date=start))
        assert caught.value.code == "no_calendar", caught.value
        assert start.isoformat() in str(caught.value) and str(last) in str(caught.value)
    answer = client.post("/v1/spot-check-plans", headers=reg, json={
        "name": "x", "departments": ["fire"], "seed": 1, "snapshot_date": AS_OF.isoformat(),
        "start_date": f"{last}-12-20",
    })  # fmt: skip
    assert answer.status_code == 422 and answer.json()["code"] == "no_calendar", answer.text


def test_a_snapshot_after_the_start_date_is_refused(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    """Point in time: a plan draws from the tiers known when its checks begin."""
    client, reg = api
    before = _plan_count(world.engine)
    with pytest.raises(PlanError) as caught:
        create_plan(world.engine, _request(start_date=date(2025, 3, 3), snapshot_date=AS_OF))
    assert caught.value.code == "snapshot_after_start"
    assert AS_OF.isoformat() in str(caught.value) and "2025-03-03" in str(caught.value)
    answer = client.post("/v1/spot-check-plans", headers=reg, json={
        "name": "x", "departments": ["fire"], "seed": 1, "snapshot_date": AS_OF.isoformat(),
        "start_date": "2025-03-03",
    })  # fmt: skip
    assert answer.status_code == 422 and answer.json()["code"] == "snapshot_after_start"
    assert _plan_count(world.engine) == before


# ---- a small world of one county (year boundary, lateness, verification, requests) -----------

SMALL_AS_OF = date(2026, 6, 30)
ALL_OF_IT = {"A": 1, "B": 1, "C": 1, "D": 1}


@pytest.fixture(params=BACKENDS)
def small(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Loaded]:
    """40 companies of one county tiered on `SMALL_AS_OF`, the national-default items, 6 samr
    inspectors for the city and an empty store."""
    from serving.db import make_engine, upgrade

    url = fresh_url(request.param, request, tmp_path)
    upgrade(url)
    engine = make_engine(url)
    rng = np.random.default_rng(1)
    codes = generate_many(rng, ["91"] * 40, ["410102"] * 40)
    tiers = ["A"] * 10 + ["B"] * 20 + ["C"] * 6 + ["D"] * 4
    with engine.begin() as con:
        con.execute(company_history.insert(), [
            {"uscc": c, "as_of": SMALL_AS_OF, "tier": t, "region": "410102", "industry": "C13",
             "entity_type": "enterprise", "name": f"郑州某某公司{i}", "source": "batch"}
            for i, (c, t) in enumerate(zip(codes, tiers, strict=True))
        ])  # fmt: skip
    import_preset_items(engine, "national-default")
    save_inspectors(engine, [
        InspectorIn(inspector_id=f"samr-{k:02d}", department="samr", area="4101",
                    items=["SC-GS-01", "SC-DJ-02", "SC-SP-03", "SC-CP-04", "SC-TZ-05"])
        for k in range(6)
    ])  # fmt: skip
    try:
        store = Store(tmp_path / "store", memory_limit="1GB", threads=1)
        yield Loaded(url, engine, store, tmp_path)
    finally:
        engine.dispose()


def _small_plan(
    small: Loaded, start: date, seed: int = 1, item: str = "SC-CP-04", **kw: Any
) -> pd.DataFrame:
    """A samr plan of one key item taking every company it may (ratio 1), drawn on its start
    day."""
    request = PlanRequest.model_validate({
        "name": f"plan {start}", "departments": ["samr"], "items": [item], "seed": seed,
        "snapshot_date": SMALL_AS_OF, "start_date": start, "item_ratios": {item: ALL_OF_IT}, **kw,
    })  # fmt: skip
    made = create_plan(small.engine, request, store=small.store, today=start)
    tasks = _tasks(small.engine, made.plan_id)
    return tasks if made.tasks else pd.DataFrame(columns=[c.name for c in spot_check_tasks.c])


def test_a_december_plans_january_checks_count_in_the_new_year(small: Loaded) -> None:
    """A task counted towards the year its plan started, so a December plan's checks done in
    January counted towards no year's caps: a tier-B company checked on 2027-01-05 was drawn
    again for the same item in March 2027 (item cap 1), a tier-D company three times by samr
    (department cap 2). A task with a result counts in the year of its check; an open task in
    every year from its plan's start to its due date."""
    december = _small_plan(small, date(2026, 12, 28)).set_index("uscc")
    assert len(december) == 40 and december["due_date"].max() > date(2026, 12, 31)
    b_new, b_old, b_open = december.index[december["tier"] == "B"][:3]
    d = december.index[december["tier"] == "D"][0]
    checked = {b_new: date(2027, 1, 5), d: date(2027, 1, 5), b_old: date(2026, 12, 30)}
    for code, day in checked.items():
        task_id = int(december.loc[code, "id"])
        done = TaskResult(result="pass", check_date=day)
        post_result(small.engine, small.store, task_id, done, today=date(2027, 1, 6))
    march = set(_small_plan(small, date(2027, 3, 1), seed=2)["uscc"])
    assert b_new not in march  # checked on this item in 2027 already
    assert b_open not in march  # its task is still open and was due in 2027
    assert b_old in march  # checked in 2026: nothing in 2027 yet
    assert d in march  # tier D: no item cap; samr's second inspection of it in 2027
    # the repeat rule counts the same years: in June the companies inspected at random in 2027
    # (January, March) are kept out unless tier D, not those of 2026 alone
    with small.engine.connect() as con:
        params = resolve(small.engine, _small_request(items=["SC-SP-03"]))
        snapshot, _ = take_snapshot(con, params, SMALL_AS_OF, date(2027, 6, 1))
    repeats = set(snapshot.tables["random_checks"]["uscc"])
    assert repeats == set(december.index)  # the open December tasks, and b_old in March 2027
    kept = draw_plan(params, snapshot, 3).items[0]
    assert kept.excluded_repeat == 36 and kept.excluded_over_cap == 4  # tier D: samr twice
    # another samr item in June: only the department cap (2 a year) can keep a company out
    # (with the repeat rule off: the caps' years are what this test is about)
    june = set(_small_plan(small, date(2027, 6, 1), seed=3, item="SC-SP-03",
                           avoid_repeat_within_year=False)["uscc"])  # fmt: skip
    assert d not in june  # 2 samr inspections in 2027 already (January, March)
    assert b_old in june  # 1 (March)
    assert b_new in june  # 1 (January)
    # in 2026 the open December tasks count, the January checks do not
    with small.engine.connect() as con:
        params = resolve(small.engine, _small_request())
        snapshot, _ = take_snapshot(con, params, SMALL_AS_OF, date(2026, 12, 29))
    counted = set(snapshot.tables["item_checks"]["uscc"])
    assert b_open in counted and b_old in counted
    assert b_new not in counted and d not in counted


def _small_request(**kw: Any) -> PlanRequest:
    return PlanRequest.model_validate({
        "name": "small", "departments": ["samr"], "items": ["SC-CP-04"], "seed": 1,
        "snapshot_date": SMALL_AS_OF, "start_date": date(2026, 7, 6), **kw,
    })  # fmt: skip


def test_results_are_late_only_after_the_twentieth_working_day(small: Loaded) -> None:
    """Published on the 20th working day after the check is on time; a day later is late."""
    tasks = _small_plan(small, date(2026, 7, 6))
    check_day = date(2026, 7, 7)
    deadline = workdays.add_working_days(check_day, 20)
    cases = [(check_day, False), (deadline, False), (deadline + timedelta(days=1), True),
             (deadline + timedelta(days=40), True)]  # fmt: skip
    for (today, late), task_id in zip(cases, tasks["id"], strict=False):
        done = TaskResult(result="pass", check_date=check_day)
        posted = post_result(small.engine, small.store, int(task_id), done, today=today)
        assert posted["published_late"] is late, (today, deadline)
        with small.engine.connect() as con:
            stored = con.execute(
                sa.select(spot_check_tasks.c.published_late).where(
                    spot_check_tasks.c.id == int(task_id)
                )
            ).scalar_one()
        assert stored is late


def test_a_result_record_says_why_the_company_was_checked(small: Loaded) -> None:
    """A triggered check's record carried p = 1 like a random tier-D check's, with nothing to
    tell them apart: the record states the basis and the tier at the draw, and training leaves
    the triggered one out."""
    from training.dataset import spot_check_examples, triggered_left_out

    with small.engine.connect() as con:
        tiers = dict(con.execute(sa.select(company_history.c.uscc, company_history.c.tier)).all())
    suspect = next(c for c, t in sorted(tiers.items()) if t == "A")
    made = create_plan(small.engine, _small_request(triggered=[suspect]), today=date(2026, 7, 6))
    tasks = _tasks(small.engine, made.plan_id)
    triggered = tasks[tasks["basis"] == "triggered"].iloc[0]
    random_d = tasks[(tasks["basis"] == "random") & (tasks["tier"] == "D")].iloc[0]
    assert triggered["inclusion_prob"] == random_d["inclusion_prob"] == 1.0
    found = TaskResult(result="problem", check_date=date(2026, 7, 7), findings={"minor": 1})
    for task in (triggered, random_d):
        post_result(small.engine, small.store, int(task["id"]), found, today=date(2026, 7, 8))
    with small.store.connect() as con:
        stated = dict(con.execute(
            "SELECT uscc, attributes FROM records WHERE category = 'spot_check'"
        ).fetchall())  # fmt: skip
    assert json.loads(stated[suspect])["basis"] == "triggered"
    assert json.loads(stated[suspect])["tier"] == "A"
    assert json.loads(stated[random_d["uscc"]])["basis"] == "random"
    assert json.loads(stated[random_d["uscc"]])["tier"] == "D"
    examples = spot_check_examples(small.store)
    assert examples.column("uscc").to_pylist() == [random_d["uscc"]]
    assert triggered_left_out(examples) == 1


def test_verification_fails_when_the_snapshot_or_an_assignment_was_changed(small: Loaded) -> None:
    """`identical` was true (CLI exit 0) although the stored snapshot no longer matched its
    hashes, and the assignments table was never compared."""
    made = create_plan(small.engine, _small_request(), today=date(2026, 7, 6))
    assert verify_plan(small.engine, made.plan_id).identical
    with small.engine.connect() as con:
        blob = con.execute(sa.select(spot_check_plans.c.snapshot_blob)
                           .where(spot_check_plans.c.id == made.plan_id)).scalar_one()  # fmt: skip
    original = snapshot_from_bytes(blob)
    drawn = set(_tasks(small.engine, made.plan_id)["uscc"])
    undrawn = [c for c in original.tables["companies"]["uscc"] if c not in drawn][:2]

    def stored_snapshot(**tables: pd.DataFrame) -> None:
        changed = Snapshot({**{k: v.copy() for k, v in original.tables.items()}, **tables})
        with small.engine.begin() as con:
            con.execute(spot_check_plans.update().where(spot_check_plans.c.id == made.plan_id)
                        .values(snapshot_blob=snapshot_to_bytes(changed)))  # fmt: skip

    # the pool: two undrawn companies said to have had a samr inspection (the replay is the same)
    stored_snapshot(department_checks=pd.DataFrame({"uscc": undrawn, "department": "samr", "n": 1}))
    check = verify_plan(small.engine, made.plan_id)
    assert check.replayed_sha256 == check.list_sha256 and check.tasks_match
    assert not check.pool_hash_ok and check.inspector_hash_ok and not check.identical
    # the inspectors: a conflict nobody declared
    stored_snapshot(conflicts=pd.DataFrame({"inspector_id": ["samr-00"], "uscc": [undrawn[0]]}))
    check = verify_plan(small.engine, made.plan_id)
    assert check.pool_hash_ok and not check.inspector_hash_ok and not check.identical
    stored_snapshot()
    assert verify_plan(small.engine, made.plan_id).identical

    # an assignment: another inspector than the list names, then one missing, then one more
    a = spot_check_assignments.c
    with small.engine.connect() as con:
        task_id, member = con.execute(
            sa.select(a.task_id, a.inspector_id)
            .join(spot_check_tasks, spot_check_tasks.c.id == a.task_id)
            .where(spot_check_tasks.c.plan_id == made.plan_id)
            .order_by(a.task_id, a.inspector_id)
        ).first()  # fmt: skip
        team = set(con.execute(sa.select(a.inspector_id).where(a.task_id == task_id)).scalars())
    outsider = next(f"samr-{k:02d}" for k in range(6) if f"samr-{k:02d}" not in team)
    for change, undo in (
        (sa.update(spot_check_assignments).where(a.task_id == task_id, a.inspector_id == member)
         .values(inspector_id=outsider),
         sa.update(spot_check_assignments).where(a.task_id == task_id, a.inspector_id == outsider)
         .values(inspector_id=member)),
        (sa.delete(spot_check_assignments).where(a.task_id == task_id, a.inspector_id == member),
         sa.insert(spot_check_assignments).values(task_id=task_id, inspector_id=member)),
        (sa.insert(spot_check_assignments).values(task_id=task_id, inspector_id=outsider),
         sa.delete(spot_check_assignments).where(a.task_id == task_id, a.inspector_id == outsider)),
    ):  # fmt: skip
        with small.engine.begin() as con:
            con.execute(change)
        check = verify_plan(small.engine, made.plan_id)
        assert check.tasks_match and check.pool_hash_ok and check.inspector_hash_ok
        assert not check.assignments_match and not check.identical
        with small.engine.begin() as con:
            con.execute(undo)
        assert verify_plan(small.engine, made.plan_id).identical


def test_a_general_item_cap_below_an_items_floor_is_refused(small: Loaded) -> None:
    """The floor (company information checks: at least 3 %) was silently lowered to a smaller
    cap; the request is refused naming the item and both figures."""
    request = _small_request(items=["SC-DJ-02", "SC-GS-01"], general_item_cap=0.02)
    with pytest.raises(PlanError) as caught:
        resolve(small.engine, request)
    assert caught.value.code == "cap_below_floor"
    message = str(caught.value)
    assert "SC-GS-01" in message and "0.03" in message and "0.02" in message
    assert "SC-DJ-02" not in message  # no floor: the cap is fine for it
    with pytest.raises(PlanError):
        create_plan(small.engine, request, today=date(2026, 7, 6))
    with small.engine.connect() as con:
        assert con.execute(sa.select(sa.func.count()).select_from(spot_check_plans)).scalar() == 0
    at_floor = resolve(small.engine, _small_request(items=["SC-GS-01"], general_item_cap=0.03))
    assert at_floor.items[0].floor == at_floor.items[0].max_ratio == 0.03


def test_the_notice_commits_to_the_seed_until_the_checks_are_over(world: World) -> None:
    """The notice showed the seed before the checks: with it and the tiers (which departments
    read) the list could be rebuilt before the unannounced visits. Until the due date has passed
    and every task has its result it shows a salted hash and who chose the seed; then the seed
    and salt, which match it, and a replay from them gives the stored list."""
    few = {"departments": ["samr"], "items": ["SC-GS-01"]}
    chosen = create_plan(
        world.engine, _request(name="notice, chosen seed", seed=7, **few), today=START
    )
    drawn = create_plan(
        world.engine, _request(name="notice, service seed", seed=None, **few), today=START
    )
    for created, source in ((chosen, "caller"), (drawn, "service")):
        due, after_due = created.due_date, created.due_date + timedelta(days=1)
        tasks = _tasks(world.engine, created.plan_id)
        for when in (due, after_due):  # after the due date too: an overdue check is unannounced
            hidden = public_notice(world.engine, created.plan_id, today=when)
            assert hidden["seed"] is None and hidden["seed_salt"] is None
            assert hidden["seed_source"] == source and "open" in hidden["seed_shown"]
            assert created.seed not in {str(v) for v in hidden.values()}  # in no other field
        first, rest = int(tasks["id"].iloc[0]), [int(t) for t in tasks["id"].iloc[1:]]
        post_result(world.engine, world.store, first,
                    TaskResult(result="pass", check_date=due), today=due)  # fmt: skip
        assert public_notice(world.engine, created.plan_id, today=after_due)["seed"] is None
        with world.engine.begin() as con:  # the others' results (posting is tested above)
            con.execute(spot_check_tasks.update().where(spot_check_tasks.c.id.in_(rest))
                        .values(result="pass", check_date=due))  # fmt: skip
        assert public_notice(world.engine, created.plan_id, today=due)["seed"] is None
        shown = public_notice(world.engine, created.plan_id, today=after_due)
        assert shown["seed"] == created.seed and shown["seed_sha256"] == hidden["seed_sha256"]
        assert seed_commitment(shown["seed"], shown["seed_salt"]) == hidden["seed_sha256"]
        assert len(shown["seed_salt"]) == 32  # 128 bits: seed 7 cannot be guessed from the hash
    with world.engine.connect() as con:
        plan = con.execute(
            sa.select(spot_check_plans).where(spot_check_plans.c.id == chosen.plan_id)
        ).mappings().one()  # fmt: skip
    shown = public_notice(world.engine, chosen.plan_id, today=chosen.due_date + timedelta(days=1))
    assert shown["seed"] == "7"
    # the libraries the stream depends on are kept with the plan and named by a verification
    checked = verify_plan(world.engine, chosen.plan_id)
    assert checked.identical and checked.drawn_with == checked.replayed_with
    assert checked.drawn_with == {"numpy": np.__version__, "pandas": pd.__version__}
    snapshot = snapshot_from_bytes(plan["snapshot_blob"])
    replayed = draw_plan(params_from_json(plan["params"]), snapshot, int(shown["seed"]))
    assert replayed.canonical_list() == zlib.decompress(plan["list_blob"])


# ---- the command line: results, lists, back-dated plans ---------------------------------------


def _cli(loaded: Loaded, *args: str) -> Result:
    """`credsup …` in-process against this database and data directory."""
    env = {**env_for(loaded.data_dir), "DATABASE_URL": loaded.url}
    return CliRunner().invoke(app, list(args), env=env)


def _one_line(result: Result) -> str:
    """The refusal on stderr, checked to be one line without a traceback or pydantic's dump."""
    text = result.stderr.strip()
    assert result.exit_code == 2, (result.exit_code, result.stdout, text, result.exception)
    assert len(text.splitlines()) == 1, text
    assert "Traceback" not in text and "pydantic" not in text and "validation error" not in text
    return text


def test_a_result_without_the_findings_it_needs_is_refused_in_one_line(small: Loaded) -> None:
    """`credsup plan result … --result problem` without counts exited 2 with pydantic's dump
    ("1 validation error for TaskResult … https://errors.pydantic.dev/…"): now one line saying
    what the result needs, as `{"error": …}` with --json, an unknown result refused by name
    among the allowed ones, and nothing written."""
    task_id = str(int(_small_plan(small, date(2026, 7, 6))["id"].iloc[0]))
    day = ["--date", "2026-07-07"]
    cases = [
        (["--result", "problem"], "--result problem needs --minor N or --major N (findings), "
                                  "and no --serious"),
        (["--result", "problem", "--minor", "1", "--serious", "1"], "--result problem needs"),
        (["--result", "serious"], "--result serious needs --serious N"),
        (["--result", "serious", "--minor", "2"], "--result serious needs --serious N"),
        (["--result", "pass", "--major", "1"], "--result pass takes no findings"),
        (["--result", "pass", "--minor", "-1"], "--minor: Input should be greater than or equal"),
    ]  # fmt: skip
    for args, said in cases:
        text = _one_line(_cli(small, "plan", "result", task_id, *args, *day))
        assert text.startswith("error: ") and said in text, (args, text)
    as_json = _cli(small, "plan", "result", task_id, "--result", "problem", *day, "--json")
    assert as_json.exit_code == 2 and not as_json.stderr.strip(), as_json.stderr
    assert json.loads(as_json.stdout) == {
        "error": "--result problem needs --minor N or --major N (findings), and no --serious"
    }
    unknown = _cli(small, "plan", "result", task_id, "--result", "excellent", *day)
    said = " ".join(unknown.stderr.replace("│", " ").split())  # the usage error's box wraps
    assert unknown.exit_code == 2 and "Traceback" not in said and "errors.pydantic" not in said
    assert "--result" in said and "'excellent' is not one of 'pass', 'problem', 'serious'" in said
    with small.engine.connect() as con:
        open_task = con.execute(
            sa.select(spot_check_tasks.c.result).where(spot_check_tasks.c.id == int(task_id))
        ).scalar_one()
    assert open_task is None  # nothing refused was written
    posted = _cli(small, "plan", "result", task_id, "--result", "problem", "--minor", "2", *day,
                  "--json")  # fmt: skip
    assert posted.exit_code == 0, posted.stderr
    assert json.loads(posted.stdout)["result"] == "problem"


def test_plan_show_writes_the_apis_bytes_in_every_format(
    world: World, api: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    """`credsup plan show --format json` gave a bare list of tasks with due dates as
    "2027-01-04T00:00:00.000" and 9-digit probabilities, and its CSV on stdout lost the
    byte-order mark Excel needs for the Chinese headers: the command now writes exactly the
    API's bytes (one export), on stdout and to --out, for every format and filter."""
    client, reg = api
    created = create_plan(world.engine, _request(
        name="列表 show", departments=["samr"], items=["SC-GS-01", "SC-TZ-05"], seed=17,
    ), today=START)  # fmt: skip
    tasks = _tasks(world.engine, created.plan_id).sort_values("id")
    assert len(tasks) > 5
    found = TaskResult(result="problem", check_date=date(2026, 7, 8), findings={"minor": 1})
    post_result(world.engine, world.store, int(tasks["id"].iloc[0]), found, today=date(2026, 7, 9))
    one = tasks["inspectors"].iloc[1].split(";")[0]
    filters: list[dict[str, str]] = [{}, {"department": "samr"}, {"inspector": one},
                                     {"department": "fire"}]  # fmt: skip
    for params in filters:
        options = [f"--{k}={v}" for k, v in params.items()]
        for fmt in ("json", "csv", "xlsx"):
            served = client.get(f"/v1/spot-check-plans/{created.plan_id}", headers=reg,
                                params={"format": fmt, **params})  # fmt: skip
            assert served.status_code == 200, served.text
            shown = tmp_path / f"list-{len(params)}-{fmt}"
            written = _cli(world, "plan", "show", created.plan_id, "--format", fmt, *options,
                           "--out", str(shown), "--purpose", "test")  # fmt: skip
            assert written.exit_code == 0, written.stderr
            assert shown.read_bytes() == served.content, (fmt, params)
            if fmt != "xlsx":
                printed = _cli(world, "plan", "show", created.plan_id, "--format", fmt,
                               *options, "--purpose", "test")  # fmt: skip
                assert printed.exit_code == 0, printed.stderr
                assert printed.stdout_bytes == served.content, (fmt, params)
    # what the bytes are: the API's object, dates as dates, the stored probabilities
    body = json.loads(client.get(f"/v1/spot-check-plans/{created.plan_id}", headers=reg).content)
    assert set(body) == {"plan_id", "name", "start_date", "due_date", "list_sha256", "tasks"}
    assert body["due_date"] == created.due_date.isoformat() == body["tasks"][0]["due_date"]
    assert body["tasks"][0]["check_date"] == "2026-07-08" and body["tasks"][1]["check_date"] is None
    stored = dict(zip(tasks["id"], tasks["inclusion_prob"], strict=True))
    assert {t["task_id"]: t["inclusion_prob"] for t in body["tasks"]} == stored
    # the overdue tasks: `credsup plan overdue --json` answers what the API answers
    later = (created.due_date + timedelta(days=30)).isoformat()
    params = {"plan_id": created.plan_id, "as_of": later, "limit": "100000"}
    served = client.get("/v1/spot-check-tasks/overdue", headers=reg, params=params).json()
    printed = _cli(world, "plan", "overdue", "--plan-id", created.plan_id, "--as-of", later,
                   "--purpose", "test", "--json")  # fmt: skip
    assert printed.exit_code == 0, printed.stderr
    assert json.loads(printed.stdout) == served and len(served["tasks"]) == len(tasks) - 1
    assert served["tasks"][0]["due_date"] == created.due_date.isoformat()
    csv = client.get(f"/v1/spot-check-plans/{created.plan_id}", headers=reg,
                     params={"format": "csv"}).content  # fmt: skip
    assert csv.startswith(b"\xef\xbb\xbf" + '"任务编号"'.encode())  # Excel reads UTF-8
    no_file = _cli(world, "plan", "show", created.plan_id, "--format", "xlsx", "--purpose", "t")
    assert "--out" in _one_line(no_file)


def test_a_plan_may_not_start_before_the_day_it_is_drawn(
    world: World, api: tuple[TestClient, dict[str, str]]
) -> None:
    """`credsup plan create --start 2026-11-01` on 2026-12-05 drew a plan already due on
    2026-11-27, every task overdue at once. A plan starts on its draw day (China time) or later;
    one that records checks already begun says so (`record_past`, `--record-past`), and its
    notice keeps the day it was drawn. The same rule for the API and the command line."""
    client, reg = api
    before = _plan_count(world.engine)
    today, fire = date(2032, 12, 6), {"departments": ["fire"], "items": ["XF-01"]}
    for start in (date(2032, 11, 1), date(2032, 12, 1)):  # deadline passed / still ahead
        due = workdays.add_working_days(start, 20)
        with pytest.raises(PlanError) as caught:
            create_plan(world.engine, _request(start_date=start, **fire), today=today)
        message = str(caught.value)
        assert caught.value.code == "start_in_past", message
        for named in (start, today, due):
            assert named.isoformat() in message, (named, message)
        assert "record_past" in message and "--record-past" in message
        assert ("already past" in message) == (due < today)
    assert _plan_count(world.engine) == before
    on_the_day = create_plan(world.engine, _request(start_date=today, **fire), today=today)
    entered = create_plan(world.engine, _request(start_date=date(2032, 11, 1), record_past=True,
                                                 seed=2, **fire), today=today)  # fmt: skip
    assert entered.start_date == date(2032, 11, 1) and entered.tasks > 0
    for made, back_dated in ((on_the_day, False), (entered, True)):
        assert made.summary["drawn_on"] == today.isoformat()
        assert made.summary["back_dated"] is back_dated
        assert public_notice(world.engine, made.plan_id, today=today)["drawn_on"] == "2032-12-06"

    # the API and the command line draw on China's today
    now = china_today()
    start = now - timedelta(days=34)
    body = {"name": "补录", "seed": 3, "snapshot_date": AS_OF.isoformat(),
            "start_date": start.isoformat(), "population": {"regions": ["4101"]},
            **fire}  # fmt: skip
    refused = client.post("/v1/spot-check-plans", headers=reg, json=body)
    assert refused.status_code == 422 and refused.json()["code"] == "start_in_past", refused.text
    assert start.isoformat() in refused.json()["message"]
    args = ["plan", "create", "--name", "补录", "--departments", "fire", "--items", "XF-01",
            "--regions", "4101", "--snapshot", AS_OF.isoformat(), "--start", start.isoformat(),
            "--seed", "3"]  # fmt: skip
    said = _one_line(_cli(world, *args))
    assert "start_date" in said and start.isoformat() in said and "--record-past" in said
    as_json = _cli(world, *args, "--json")
    assert as_json.exit_code == 2 and "start_date" in json.loads(as_json.stdout)["error"]
    assert _plan_count(world.engine) == before + 2
    accepted = client.post("/v1/spot-check-plans", headers=reg, json={**body, "record_past": True})
    assert accepted.status_code == 201, accepted.text
    # the same name, start and department as the API's plan just drawn: a duplicate unless meant
    duplicate = _cli(world, *args, "--record-past")
    assert accepted.json()["plan_id"] in _one_line(duplicate)
    recorded = _cli(world, *args, "--record-past", "--allow-duplicate", "--json")
    assert recorded.exit_code == 0, recorded.stderr
    made = json.loads(recorded.stdout)
    assert made["start_date"] == start.isoformat() and made["summary"]["back_dated"] is True
    assert made["summary"]["drawn_on"] in {now.isoformat(), china_today().isoformat()}


# ---- the repeat rule: no repeated check of a company within the year (DOMAIN §7) -------------


def _fire_inspectors(loaded: Loaded) -> None:
    save_inspectors(loaded.engine, [
        InspectorIn(inspector_id=f"fire-{k:02d}", department="fire", area="4101", items=["XF-01"])
        for k in range(6)
    ])  # fmt: skip


def _small_tiers(loaded: Loaded) -> dict[str, list[str]]:
    """The small world's companies by tier (10 A, 20 B, 6 C, 4 D)."""
    with loaded.engine.connect() as con:
        rows = con.execute(
            sa.select(company_history.c.uscc, company_history.c.tier)
            .where(company_history.c.as_of == SMALL_AS_OF).order_by(company_history.c.uscc)
        ).all()  # fmt: skip
    return {t: [c for c, tier in rows if tier == t] for t in "ABCD"}


def _one_item_plan(
    loaded: Loaded, start: date, department: str, item: str, ratios: dict[str, float],
    seed: int = 1, **kw: Any,
) -> PlanCreated:  # fmt: skip
    """A plan of one item drawn on its start day (with the store)."""
    request = PlanRequest.model_validate({
        "name": f"{item} {start} {seed}", "departments": [department], "items": [item],
        "seed": seed, "snapshot_date": SMALL_AS_OF, "start_date": start,
        "item_ratios": {item: ratios}, **kw,
    })  # fmt: skip
    return create_plan(loaded.engine, request, store=loaded.store, today=start)


def _stored_params(loaded: Loaded, plan_id: str) -> dict[str, Any]:
    with loaded.engine.connect() as con:
        text = con.execute(
            sa.select(spot_check_plans.c.params).where(spot_check_plans.c.id == plan_id)
        ).scalar_one()  # fmt: skip
    return dict(json.loads(text))


def test_a_company_inspected_at_random_this_year_is_not_drawn_again_by_any_department(
    small: Loaded,
) -> None:
    """samr checks tiers B and D at random in March (two items: one joint visit) and an A and a
    C company on a trigger; fire's June draw leaves out the B companies (inspected at random
    this year, by another department), not tier D, not the companies only triggered in March,
    and takes a B company triggered in June; in 2028 everyone is eligible again."""
    _fire_inspectors(small)
    by = _small_tiers(small)
    a_trig, c_trig, b_trig = by["A"][0], by["C"][0], by["B"][0]
    bd = {"A": 0, "B": 1, "C": 0, "D": 1}
    request = PlanRequest.model_validate({
        "name": "march", "departments": ["samr"], "items": ["SC-CP-04", "SC-SP-03"], "seed": 1,
        "snapshot_date": SMALL_AS_OF, "start_date": date(2027, 3, 1),
        "item_ratios": {"SC-CP-04": bd, "SC-SP-03": bd}, "triggered": [a_trig, c_trig],
    })  # fmt: skip
    march = create_plan(small.engine, request, store=small.store, today=date(2027, 3, 1))
    t1 = _tasks(small.engine, march.plan_id)
    assert set(t1.loc[t1["basis"] == "random", "uscc"]) == set(by["B"]) | set(by["D"])
    assert set(t1.loc[t1["basis"] == "triggered", "uscc"]) == {a_trig, c_trig}
    assert (t1.groupby("uscc")["item_id"].nunique() == 2).all()  # both items, one visit each
    assert march.summary["repeat_rule"] == {"avoid_repeat_within_year": True,
                                            "companies_kept_out": 0}  # fmt: skip

    june = _one_item_plan(small, date(2027, 6, 1), "fire", "XF-01", ALL_OF_IT, seed=2,
                          triggered=[b_trig])  # fmt: skip
    t2 = _tasks(small.engine, june.plan_id)
    random = set(t2.loc[t2["basis"] == "random", "uscc"])
    assert random == set(by["A"]) | set(by["C"]) | set(by["D"])  # B kept out; D and triggers not
    assert not random & set(by["B"])
    assert set(t2.loc[t2["basis"] == "triggered", "uscc"]) == {b_trig}  # a trigger always goes
    assert (t2.loc[t2["basis"] == "random", "inclusion_prob"] == 1.0).all()
    item = june.summary["items"][0]
    assert item["eligible"] == {"A": 10, "B": 0, "C": 6, "D": 4}
    assert item["excluded_repeat"] == 19 and item["excluded_over_cap"] == 0
    assert item["triggered"] == 1
    assert june.summary["repeat_rule"] == {"avoid_repeat_within_year": True,
                                           "companies_kept_out": 19}  # fmt: skip
    notice = public_notice(small.engine, june.plan_id, today=date(2027, 6, 1))
    assert notice["items"][0]["excluded_repeat"] == 19
    assert notice["avoid_repeat_within_year"] is True
    assert notice["companies_kept_out_as_repeats"] == 19
    params = _stored_params(small, june.plan_id)
    assert params["draw_version"] == 4 and params["avoid_repeat_within_year"] is True
    # the snapshot keeps what the rule read: one random inspection per company (one visit of
    # two items), triggered checks not counted
    with small.engine.connect() as con:
        blob = con.execute(sa.select(spot_check_plans.c.snapshot_blob)
                           .where(spot_check_plans.c.id == june.plan_id)).scalar_one()  # fmt: skip
    seen = snapshot_from_bytes(blob).tables["random_checks"]
    assert set(seen["uscc"]) == set(by["B"]) | set(by["D"]) and (seen["n"] == 1).all()

    # a random check in June (fire) keeps the A and C companies out of samr's September draw too
    september = _one_item_plan(small, date(2027, 9, 1), "samr", "SC-TZ-05", ALL_OF_IT, seed=4)
    t3 = _tasks(small.engine, september.plan_id)
    assert set(t3["uscc"]) == set(by["D"]) and september.summary["items"][0][
        "excluded_repeat"] == 36  # fmt: skip

    # a new year: nobody has been inspected in it
    next_year = _one_item_plan(small, date(2028, 3, 1), "fire", "XF-01", ALL_OF_IT, seed=3)
    assert next_year.tasks == 40
    assert next_year.summary["items"][0]["excluded_repeat"] == 0
    for plan in (march, june, september, next_year):
        assert verify_plan(small.engine, plan.plan_id).identical, plan.plan_id


def test_the_repeat_rule_is_a_parameter_of_the_plan(small: Loaded) -> None:
    """Off for one plan (`avoid_repeat_within_year: false`, `--allow-repeat`): the companies
    inspected at random this year are drawn like the others; stored with the plan, replayed."""
    _fire_inspectors(small)
    _one_item_plan(small, date(2027, 3, 1), "samr", "SC-CP-04", ALL_OF_IT)
    off = _one_item_plan(small, date(2027, 6, 1), "fire", "XF-01", ALL_OF_IT, seed=2,
                         avoid_repeat_within_year=False)  # fmt: skip
    assert off.tasks == 40 and off.summary["items"][0]["excluded_repeat"] == 0
    assert off.summary["repeat_rule"] == {"avoid_repeat_within_year": False,
                                          "companies_kept_out": 0}  # fmt: skip
    assert _stored_params(small, off.plan_id)["avoid_repeat_within_year"] is False
    assert verify_plan(small.engine, off.plan_id).identical
    assert public_notice(small.engine, off.plan_id)["avoid_repeat_within_year"] is False
    # the command line: on by default (samr's second inspection of the year is under its cap,
    # so the rule alone keeps the 36 companies of tiers A-C out), off with --allow-repeat
    args = ["plan", "create", "--departments", "samr", "--snapshot", SMALL_AS_OF.isoformat(),
            "--start", "2027-06-07", "--seed", "5", "--json"]  # fmt: skip
    on = _cli(small, *args, "--name", "cli on", "--items", "SC-SP-03")
    assert on.exit_code == 0, on.stderr
    made = json.loads(on.stdout)
    assert made["summary"]["items"][0]["excluded_repeat"] == 36
    assert made["summary"]["repeat_rule"] == {"avoid_repeat_within_year": True,
                                              "companies_kept_out": 36}  # fmt: skip
    text = _cli(small, *args[:-1], "--name", "cli text", "--items", "SC-TZ-05")
    assert text.exit_code == 0, text.stderr
    assert "inspected this year 36" in text.stdout
    assert "36 companies inspected at random earlier this year kept out" in text.stdout
    allowed = _cli(small, *args, "--name", "cli off", "--items", "SC-GS-01", "--allow-repeat")
    assert allowed.exit_code == 0, allowed.stderr
    made = json.loads(allowed.stdout)
    assert made["summary"]["repeat_rule"]["avoid_repeat_within_year"] is False
    assert _stored_params(small, made["plan_id"])["avoid_repeat_within_year"] is False
    # the API: a field of the request; the notice counts what the rule kept out
    settings = Settings(data_dir=small.data_dir, DATABASE_URL=small.url, duckdb_memory_limit="1GB")
    key = create_key(small.engine, "regulator", None, "repeat rule test")
    headers = {"X-API-Key": key, "X-Purpose": "repeat rule test"}
    body = {"name": "api", "departments": ["samr"], "items": ["SC-SP-03"], "seed": 6,
            "snapshot_date": SMALL_AS_OF.isoformat(), "start_date": "2027-06-14",
            "department_yearly_cap": 4}  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        bad = client.post("/v1/spot-check-plans", headers=headers,
                          json={**body, "avoid_repeat_within_year": "sometimes"})  # fmt: skip
        assert bad.status_code == 422, bad.text
        posted = client.post("/v1/spot-check-plans", headers=headers,
                             json={**body, "avoid_repeat_within_year": False})  # fmt: skip
        assert posted.status_code == 201, posted.text
        assert posted.json()["summary"]["repeat_rule"]["avoid_repeat_within_year"] is False
        cli_plan = json.loads(on.stdout)["plan_id"]
        notice = client.get(f"/v1/spot-check-plans/{cli_plan}/notice", headers=headers).json()
    assert notice["companies_kept_out_as_repeats"] == 36 and notice["items"][0][
        "excluded_repeat"] == 36  # fmt: skip
    assert _stored_params(small, posted.json()["plan_id"])["avoid_repeat_within_year"] is False


def _checks_recorded(
    store: Store, department: str, rows: list[tuple[str, str, str, dict[str, Any]]], today: date
) -> None:
    """Department-uploaded `spot_check` records: (record id, company, recorded, attributes),
    checked on 2027-02-01 (item XF-01 unless the attributes say otherwise)."""
    outcome = ingest_table(
        store,
        pa.table({
            "record_id": [r[0] for r in rows], "uscc": [r[1] for r in rows],
            "category": ["spot_check"] * len(rows), "event_date": ["2027-02-01"] * len(rows),
            "recorded_date": [r[2] for r in rows], "source_dept": [department] * len(rows),
            "severity": ["pass"] * len(rows), "amount": pa.array([None] * len(rows), pa.string()),
            "attributes": [json.dumps({"check_item": "XF-01", **r[3]}) for r in rows],
        }),
        "records", department, today=today, history=True,
    )  # fmt: skip
    assert outcome.stored == len(rows), outcome.by_reason


def test_department_records_feed_the_repeat_rule_by_their_basis(small: Loaded) -> None:
    """A department's `spot_check` record known on the draw day is an inspection for the rule
    when it was random (`basis` random, or none: as training reads it), not when triggered; a
    `not_inspected` result counts (as for the caps: the department went), a cancelled task
    does not (no visit)."""
    by = _small_tiers(small)
    plain, random, triggered, late = by["B"][:4]
    d = by["D"][0]
    _checks_recorded(small.store, "fire", [
        ("FIRE-2027-01", plain, "2027-02-02", {}),
        ("FIRE-2027-02", random, "2027-02-02", {"basis": "random"}),
        ("FIRE-2027-03", triggered, "2027-02-02", {"basis": "triggered"}),
        ("FIRE-2027-04", late, "2027-03-05", {"basis": "random"}),  # known after the draw
        ("FIRE-2027-05", d, "2027-02-02", {"basis": "random"}),
    ], today=date(2027, 3, 5))  # fmt: skip
    march = _one_item_plan(small, date(2027, 3, 1), "samr", "SC-CP-04", ALL_OF_IT)
    t1 = _tasks(small.engine, march.plan_id)
    drawn = set(t1["uscc"])
    assert plain not in drawn and random not in drawn
    assert {triggered, late, d} <= drawn
    assert march.summary["items"][0]["excluded_repeat"] == 2
    assert len(drawn) == 38

    # results: a check not made still counts; a cancelled check was no visit
    not_made, called_off = sorted(set(t1.loc[t1["tier"] == "B", "uscc"]) - {triggered, late})[:2]
    task_of = dict(zip(t1["uscc"], t1["id"].astype(int), strict=True))
    post_result(small.engine, small.store, task_of[not_made],
                TaskResult(result="not_inspected", check_date=date(2027, 3, 2),
                           reason="unreachable"), today=date(2027, 3, 3))  # fmt: skip
    cancel_tasks(small.engine, march.plan_id, "重复抽取", task_id=task_of[called_off])
    june = _one_item_plan(small, date(2027, 6, 1), "samr", "SC-SP-03", ALL_OF_IT, seed=2)
    t2 = set(_tasks(small.engine, june.plan_id)["uscc"])
    assert t2 == set(by["D"]) | {called_off}
    assert not_made not in t2
    assert verify_plan(small.engine, march.plan_id).identical
    assert verify_plan(small.engine, june.plan_id).identical


def test_plans_drawn_before_the_repeat_rule_replay_with_their_own(
    small: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3 did not know the rule: a plan it drew takes the companies inspected earlier in
    the year, and replays so, from a snapshot stored without `random_checks` too (as that
    release stored it); version 4 leaves them out."""
    _fire_inspectors(small)
    resolve_now = plans_module.resolve
    monkeypatch.setattr(
        plans_module, "resolve", lambda e, r: dataclasses.replace(resolve_now(e, r), draw_version=3)
    )
    first = _one_item_plan(small, date(2027, 3, 1), "samr", "SC-CP-04", ALL_OF_IT)
    again = _one_item_plan(small, date(2027, 6, 1), "samr", "SC-SP-03", ALL_OF_IT, seed=2)
    monkeypatch.undo()
    assert first.tasks == again.tasks == 40  # version 3: inspected in March, drawn in June
    for plan in (first, again):
        params = _stored_params(small, plan.plan_id)
        assert params["draw_version"] == 3 and "avoid_repeat_within_year" not in params
    now = _one_item_plan(small, date(2027, 6, 1), "fire", "XF-01", ALL_OF_IT, seed=3)
    assert now.tasks == 4 and now.summary["items"][0]["excluded_repeat"] == 36  # version 4
    # the first plan as the release before stored it: no random_checks table, nor the rule's
    # counts in its summary
    with small.engine.begin() as con:
        plan = (
            con.execute(sa.select(spot_check_plans).where(spot_check_plans.c.id == first.plan_id))
            .mappings()
            .one()
        )
        source = zipfile.ZipFile(io.BytesIO(plan["snapshot_blob"]))
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w") as old:
            for name in source.namelist():
                if name != "random_checks.parquet":
                    old.writestr(name, source.read(name))
        summary = json.loads(plan["summary"])
        summary.pop("repeat_rule")
        for item in summary["items"]:
            item.pop("excluded_repeat")
        con.execute(
            spot_check_plans.update()
            .where(spot_check_plans.c.id == first.plan_id)
            .values(snapshot_blob=sink.getvalue(), summary=json.dumps(summary))
        )
    assert "random_checks.parquet" not in zipfile.ZipFile(io.BytesIO(sink.getvalue())).namelist()
    for plan_id in (first.plan_id, again.plan_id, now.plan_id):
        check = verify_plan(small.engine, plan_id)
        assert check.identical and check.pool_hash_ok, plan_id
    notice = public_notice(small.engine, first.plan_id)
    assert notice["avoid_repeat_within_year"] is False and notice["items"][0][
        "excluded_repeat"] == 0  # fmt: skip


def test_plan_numbers_restart_each_year(small: Loaded) -> None:
    """`SJ-<year>-<n>`: n counts the plans of the start's year (it counted every plan of every
    year); a year holding an id of the old count goes on after its highest number."""
    first = _one_item_plan(small, date(2026, 12, 7), "samr", "SC-GS-01", {"B": 0.1})
    assert first.plan_id == "SJ-2026-00001"
    assert _one_item_plan(small, date(2027, 3, 1), "samr", "SC-GS-01", {"B": 0.1}
                          ).plan_id == "SJ-2027-00001"  # fmt: skip
    assert _one_item_plan(small, date(2026, 12, 8), "samr", "SC-GS-01", {"B": 0.1}
                          ).plan_id == "SJ-2026-00002"  # fmt: skip
    # an id the one counter gave (the fifth plan of all, the first of 2028) is kept and followed;
    # the order of the plans (`seq`) still counts across years
    with small.engine.begin() as con:
        row = dict(
            con.execute(sa.select(spot_check_plans).where(spot_check_plans.c.id == first.plan_id))
            .mappings()
            .one()
        )
        con.execute(plan_counter.update().values(n=5))
        con.execute(
            spot_check_plans.insert().values({**row, "id": "SJ-2028-00005", "seq": 5, "tasks": 0})
        )
    later = _one_item_plan(small, date(2028, 3, 1), "samr", "SC-GS-01", {"B": 0.1})
    assert later.plan_id == "SJ-2028-00006"
    with small.engine.connect() as con:
        seqs = dict(con.execute(sa.select(spot_check_plans.c.id, spot_check_plans.c.seq)).all())
    assert seqs == {"SJ-2026-00001": 1, "SJ-2027-00001": 2, "SJ-2026-00002": 3,
                    "SJ-2028-00005": 5, "SJ-2028-00006": 6}  # fmt: skip
    assert verify_plan(small.engine, later.plan_id).identical
