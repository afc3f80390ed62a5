"""Deadlines counted on an estimated calendar are counted again once the schedule is known
(`credsup deadlines redate`): a plan and its tasks, an open objection, a pending repair and a
notified list entry, each counted into 2027 before its schedule was published, move to the days
a schedule file gives; each move is logged; a second run moves nothing; a dry run changes
nothing; closed cases keep their deadlines; a bad schedule file stops the command, named.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import holidays
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli.main import app
from records import workdays
from serving import lists, objections, repairs
from serving.db import (
    credit_repairs,
    lifecycle_log,
    list_entries,
    spot_check_plans,
    spot_check_tasks,
)
from serving.db import objections as objection_table
from serving.deadlines import redate
from serving.spotcheck.demo import load_demo_inspectors
from serving.spotcheck.plans import PlanRequest, create_plan, import_preset_items
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.pipeline import AS_OF, env_for
from tests.serving.test_lists import SERIOUS_BASIS, _companies
from tests.serving.test_repairs import _candidates

SCHEDULE_2027 = """\
2027:   # a schedule as the State Council might publish it (not the real one)
  days_off: [2027-01-01, "2027-01-04..2027-01-05", "2027-02-06..2027-02-13"]
  working_weekends: [2027-01-09, 2027-02-20]
"""
OFF = {date(2027, 1, 1), date(2027, 1, 4), date(2027, 1, 5)} | {
    date(2027, 2, 6) + timedelta(days=k) for k in range(8)
}
WORKED = {date(2027, 1, 9), date(2027, 2, 20)}


def expected(start: date, n: int) -> date:
    """The n-th working day after `start`, counted here day by day: 2026 on the package's
    published calendar, 2027 on the schedule above (not `records.workdays`)."""
    cn = holidays.country_holidays("CN", years=[2026])
    day, left = start, n
    while left:
        day += timedelta(days=1)
        if day.year == 2026:
            works = cn.is_working_day(day)
        else:
            works = (day.weekday() < 5 and day not in OFF) or day in WORKED
        left -= works
    return day


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "deadlines") as loaded:
        import_preset_items(loaded.engine, "national-default")
        load_demo_inspectors(loaded.engine, per_city=6)
        yield loaded


def _cases(world: Loaded) -> dict[str, Any]:
    """One of each kind of case whose deadline runs into 2027, counted on today's calendar
    (2027 not published: estimated), and a closed objection that must keep its deadline."""
    assert not workdays.schedule_published(2027), "the package now knows 2027: pick a later year"
    engine, store = world.engine, world.store
    start = date(2026, 12, 21)
    plan = create_plan(engine, PlanRequest.model_validate({
        "name": "跨年抽查", "departments": ["samr"], "items": ["SC-GS-01"],
        "snapshot_date": AS_OF, "start_date": start,
    }), today=start)  # fmt: skip
    assert plan.due_estimated
    # due on Thursday 31 December 2026: estimated only because 2027's schedule might move work
    # into late December; once it is known the date stays
    december = create_plan(engine, PlanRequest.model_validate({
        "name": "十二月抽查", "departments": ["samr"], "items": ["SC-GS-01"],
        "snapshot_date": AS_OF, "start_date": date(2026, 12, 3),
    }), today=date(2026, 12, 3))  # fmt: skip
    assert december.due_date == date(2026, 12, 31) and december.due_estimated
    day = date(2026, 12, 30)
    candidates = _candidates(store, day, want=3)["eligible"]
    repair = repairs.apply(engine, store, candidates[0]["record_id"], "已整改", None, today=day)
    objection = objections.file_objection(engine, store, candidates[1]["record_id"], "记录有误",
                                          None, None, today=day)  # fmt: skip
    extended = objections.file_objection(engine, store, candidates[2]["record_id"], "记录有误",
                                         None, None, today=day)  # fmt: skip
    extended = objections.extend(engine, extended["id"], "需要核实", None, today=day)
    closed = objections.file_objection(engine, store, _candidates(store, date(2026, 12, 29), 4)
                                       ["eligible"][3]["record_id"], "记录有误", None, None,
                                       today=date(2026, 12, 29))  # fmt: skip
    closed = objections.decide(engine, store, closed["id"], "upheld", "经核查", None, None,
                               today=date(2026, 12, 30))  # fmt: skip
    (uscc,) = _companies(world, 1, known_by=day)
    entry = lists.propose(engine, store, uscc, "serious_dishonest_list", SERIOUS_BASIS,
                          "吊销许可证", today=day)  # fmt: skip
    return {"plan": plan, "repair": repair, "objection": objection, "extended": extended,
            "closed": closed, "entry": entry, "day": day, "start": start,
            "december": december}  # fmt: skip


def _deadlines(world: Loaded, c: dict[str, Any]) -> dict[str, Any]:
    plan_id = c["plan"].plan_id
    p, t, o = spot_check_plans.c, spot_check_tasks.c, objection_table.c
    with world.engine.connect() as con:
        plan = con.execute(sa.select(p.due_date, p.due_estimated).where(p.id == plan_id)).one()
        tasks = set(con.execute(sa.select(t.due_date).where(t.plan_id == plan_id)).scalars())
        due = {
            k: con.execute(sa.select(o.due_date).where(o.id == c[k]["id"])).scalar_one()
            for k in ("objection", "extended", "closed")
        }
        due["repair"] = con.execute(
            sa.select(credit_repairs.c.due_date).where(credit_repairs.c.id == c["repair"]["id"])
        ).scalar_one()
        due["entry"] = con.execute(
            sa.select(list_entries.c.objection_due).where(list_entries.c.id == c["entry"]["id"])
        ).scalar_one()
    return {"plan": plan.due_date, "estimated": bool(plan.due_estimated), "tasks": tasks, **due}


def _estimated(world: Loaded, c: dict[str, Any]) -> dict[str, bool]:
    return {
        "objection": objections.get(world.engine, c["objection"]["id"])["due_estimated"],
        "repair": repairs.get(world.engine, c["repair"]["id"])["due_estimated"],
        "entry": lists.get(world.engine, c["entry"]["id"])["objection_due_estimated"],
    }


def test_running_deadlines_move_to_the_published_schedule_once(
    world: Loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = _cases(world)
    before = _deadlines(world, c)
    day = c["day"]
    assert before["tasks"] == {before["plan"]} and before["estimated"]
    # counted on the estimate: 2027's statutory holidays by rule, no make-up days; the cases
    # say so where they are read
    assert before["repair"] == workdays.add_working_days(day, 3)
    assert _estimated(world, c) == {"objection": True, "repair": True, "entry": True}

    schedule = tmp_path / "holidays-2027.yaml"
    schedule.write_text(SCHEDULE_2027, encoding="utf-8")
    monkeypatch.setenv("CREDSUP_HOLIDAY_SCHEDULE", str(schedule))
    assert workdays.schedule_published(2027)
    assert workdays.is_working_day(date(2027, 1, 9)) and not workdays.is_working_day(
        date(2027, 1, 4)
    )

    want = {
        "plan": expected(c["start"], 20), "repair": expected(day, 3),
        "objection": expected(day, 5), "extended": expected(day, 20), "entry": expected(day, 5),
    }  # fmt: skip
    moved = {k for k in want if want[k] != before[k]}
    assert moved == set(want), (want, before)  # every one of them runs over 4–5 January

    dry = redate(world.engine, dry_run=True)
    assert {(m.case_type, m.new) for m in dry.moves} >= {("plan", want["plan"]),
                                                         ("repair", want["repair"])}  # fmt: skip
    assert _deadlines(world, c) == before  # a dry run changes nothing

    done = redate(world.engine, actor=None)
    after = _deadlines(world, c)
    for k, v in want.items():
        assert after[k] == v, k
    assert after["tasks"] == {want["plan"]} and after["estimated"] is False
    assert after["closed"] == before["closed"]  # decided: its deadline stays
    assert _estimated(world, c) == {"objection": False, "repair": False, "entry": False}
    assert done.still_estimated == 0 and not done.skipped
    # the December plan: the same day, no longer an estimate, and no step on its tasks
    december = c["december"].plan_id
    assert done.confirmed == [december] and ("plan", december) not in {
        (m.case_type, m.case_id) for m in done.moves
    }
    with world.engine.connect() as con:
        kept = con.execute(sa.select(spot_check_plans.c.due_date, spot_check_plans.c.due_estimated)
                           .where(spot_check_plans.c.id == december)).one()  # fmt: skip
        december_tasks = set(con.execute(sa.select(spot_check_tasks.c.id).where(
            spot_check_tasks.c.plan_id == december)).scalars())  # fmt: skip
    assert kept.due_date == date(2026, 12, 31) and kept.due_estimated is False
    by_case = {(m.case_type, m.case_id): m for m in done.moves}
    assert by_case[("plan", c["plan"].plan_id)].tasks == c["plan"].tasks
    assert ("objection", str(c["closed"]["id"])) not in by_case

    # every move is a step of its case; the plan's on each of its tasks
    with world.engine.connect() as con:
        steps = con.execute(
            sa.select(lifecycle_log.c.case_type, lifecycle_log.c.case_id, lifecycle_log.c.detail)
            .where(lifecycle_log.c.action == "deadline_redated")
        ).all()  # fmt: skip
        task_ids = set(con.execute(sa.select(spot_check_tasks.c.id).where(
            spot_check_tasks.c.plan_id == c["plan"].plan_id)).scalars())  # fmt: skip
    logged = {(t, i) for t, i, _ in steps}
    assert {("spot_check", i) for i in task_ids} <= logged
    assert not {("spot_check", i) for i in december_tasks} & logged
    for kind, key in (("repair", "repair"), ("objection", "objection"), ("list", "entry")):
        assert (kind, c[key]["id"]) in logged
    detail = next(json.loads(d) for t, i, d in steps if (t, i) == ("repair", c["repair"]["id"]))
    assert detail["from"] == before["repair"].isoformat()
    assert detail["to"] == want["repair"].isoformat() and detail["working_days"] == 3
    assert detail["schedule"] == str(schedule)

    # the cases' own reads use the new deadline: a list entry cannot be confirmed before it
    with pytest.raises(lists.ListConflict, match=want["entry"].isoformat()):
        lists.confirm(world.engine, world.store, c["entry"]["id"], None, today=want["entry"])

    again = redate(world.engine)
    assert again.moves == [] and _deadlines(world, c) == after


def test_the_command_line_redates_and_refuses_a_bad_schedule(world: Loaded, tmp_path: Path) -> None:
    env = {**env_for(world.data_dir), "DATABASE_URL": world.url}
    bad = tmp_path / "bad.yaml"
    bad.write_text("2027:\n  working_weekends: [2027-01-06]\n", encoding="utf-8")  # a Wednesday
    refused = CliRunner().invoke(app, ["deadlines", "redate"],
                                 env={**env, "CREDSUP_HOLIDAY_SCHEDULE": str(bad)})  # fmt: skip
    assert refused.exit_code == 2
    assert (
        "CREDSUP_HOLIDAY_SCHEDULE" in refused.output and "2027-01-06 is a weekday" in refused.output
    )
    good = tmp_path / "holidays-2027.yaml"
    good.write_text(SCHEDULE_2027, encoding="utf-8")
    shown = CliRunner().invoke(app, ["deadlines", "redate", "--dry-run", "--json"],
                               env={**env, "CREDSUP_HOLIDAY_SCHEDULE": str(good)})  # fmt: skip
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["dry_run"] is True and set(report["checked"]) == {"plan", "objection", "repair",
                                                                    "list"}  # fmt: skip
    words = CliRunner().invoke(app, ["deadlines", "redate"],
                               env={**env, "CREDSUP_HOLIDAY_SCHEDULE": str(good)})  # fmt: skip
    assert words.exit_code == 0 and "plan:" in words.output
