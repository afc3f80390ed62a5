"""Defects found by the review of ten spot-check plans over six months (the reviewer's report:
caps and floors crossed by rounding, list-level settings of an item file dropped, lists that
ignore corrections and objections, presets that loosen an item's cap, plans drawn twice and
never cancelled, triggered checks of every item, inspector imports that can never be drawn,
messages that mislead): each test pins the behaviour now."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from records.events import append_events
from records.settings import Settings
from records.workdays import china_today
from serving import objections
from serving.app import create_app
from serving.auth import create_key
from serving.db import company_history, lifecycle_log, spot_check_plans
from serving.spotcheck import plans as plans_module
from serving.spotcheck.draw import PlanError
from serving.spotcheck.plans import (
    InspectorIn,
    PlanRequest,
    TaskResult,
    create_plan,
    list_settings,
    load_items,
    post_result,
    resolve,
    save_inspectors,
    verify_plan,
)
from tests.serving import test_spotcheck_plans as _plans
from tests.serving.databases import Loaded
from tests.serving.test_spotcheck_plans import SMALL_AS_OF, _cli, _one_line, _tasks

small = _plans.small
"""40 companies of one county, the national-default items, 6 samr inspectors (the fixture)."""


def _request(**kw: Any) -> PlanRequest:
    return PlanRequest.model_validate({
        "name": "review", "departments": ["samr"], "items": ["SC-GS-01"], "seed": 3,
        "snapshot_date": SMALL_AS_OF, "start_date": date(2026, 7, 6), **kw,
    })  # fmt: skip


# ---- 1, 2: whole counts under a cap or a floor; old plans replay with their rule -----------


def test_a_plan_drawn_by_version_2_still_verifies(
    small: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans stored before the whole-count rule record draw_version 2 and replay with it; new
    plans record 4 (the whole-count rule and the repeat rule). A capped item on 40 companies
    tells the two apart."""
    resolve = plans_module.resolve
    monkeypatch.setattr(
        plans_module, "resolve", lambda e, r: dataclasses.replace(resolve(e, r), draw_version=2)
    )
    request = _request(
        items=["SC-DJ-02"],
        item_ratios={"SC-DJ-02": {"A": 0.5, "B": 0.5, "C": 0.5, "D": 0.5}},
        general_item_cap=0.045,
    )
    old = create_plan(small.engine, request, today=date(2026, 7, 6))
    monkeypatch.undo()
    new = create_plan(small.engine, request.model_copy(update={"name": "new"}),
                      today=date(2026, 7, 6))  # fmt: skip
    with small.engine.connect() as con:
        versions = {
            pid: json.loads(p)["draw_version"]
            for pid, p in con.execute(sa.select(spot_check_plans.c.id, spot_check_plans.c.params))
        }
    assert versions == {old.plan_id: 2, new.plan_id: 4}
    assert verify_plan(small.engine, old.plan_id).identical
    assert verify_plan(small.engine, new.plan_id).identical
    # 40 eligible at 4.5 %: 1.8 expected under version 2 (1 or 2 drawn); ⌊0.045 E⌋ under 3
    assert old.tasks in (1, 2)
    eligible = sum(new.summary["items"][0]["eligible"].values())
    assert new.tasks == int(0.045 * eligible) == 1


# ---- 3: the list's own settings are kept and applied ----------------------------------------

LIST_FILE = """\
name: zz-city-2026
ratios: {A: 0.02, B: 0.08, C: 0.30, D: 1.0}
general_item_cap: 0.06
department_yearly_cap: 1
items:
  - {id: ZZ-GS-01, department: samr, name_zh: 企业公示信息抽查, kind: general, floor: 0.03}
  - {id: ZZ-JG-06, department: samr, name_zh: 价格检查, kind: general, max_ratio: 0.04}
  - {id: ZZ-LOOSE, department: samr, name_zh: 宽松事项, kind: general, max_ratio: 0.5}
  - id: ZZ-SP-03
    department: samr
    name_zh: 食品经营检查
    kind: key
    ratios: {A: 1.0, B: 1.0, C: 1.0, D: 1.0}
"""


def test_an_item_files_yearly_cap_is_kept_with_the_list_and_applied(
    small: Loaded, tmp_path: Path
) -> None:
    """`department_yearly_cap: 1` in an item file was dropped (plans stored 2, and companies
    were visited twice by samr in 2026): it is now kept with the list and applied, also under
    a preset (whose 2 does not loosen it); the file's general-item cap bounds its items."""
    path = tmp_path / "items.yaml"
    path.write_text(LIST_FILE, encoding="utf-8")
    _zz_inspectors(small)
    imported = _cli(small, "plan", "items", "import", "--file", str(path), "--json")
    assert imported.exit_code == 0, imported.stderr
    assert json.loads(imported.stdout) == {
        "preset": "zz-city-2026", "items": 4, "general_item_cap": 0.06,
        "department_yearly_cap": 1, "avoid_repeat_within_year": None,
    }  # fmt: skip
    with small.engine.connect() as con:
        assert list_settings(con) == {
            "name": "zz-city-2026",
            "general_item_cap": 0.06,
            "department_yearly_cap": 1,
            "avoid_repeat_within_year": None,
        }
    caps = {i.id: i.max_ratio for i in load_items(small.engine) if i.id.startswith("ZZ")}
    assert caps == {"ZZ-GS-01": 0.06, "ZZ-JG-06": 0.04, "ZZ-LOOSE": 0.06, "ZZ-SP-03": None}
    for preset in (None, "national-default"):
        params = resolve(small.engine, _request(items=["ZZ-SP-03"], ratio_preset=preset))
        assert params.department_yearly_cap == 1, preset
    # a request's own yearly cap is what that plan asks
    assert resolve(small.engine, _request(items=["ZZ-SP-03"], department_yearly_cap=2)
                   ).department_yearly_cap == 2  # fmt: skip
    # applied: every company visited by samr in July (SP-03 at ratio 1) is left out in August
    july = create_plan(small.engine, _request(items=["ZZ-SP-03"]), today=date(2026, 7, 6))
    assert july.tasks == 40
    stored = json.loads(_plan_params(small, july.plan_id))
    assert stored["department_yearly_cap"] == 1
    august = create_plan(
        small.engine,
        _request(name="august", items=["ZZ-GS-01"], start_date=date(2026, 8, 3)),
        today=date(2026, 8, 3),
    )
    assert august.tasks == 0
    assert august.summary["items"][0]["excluded_over_cap"] == 40
    # a later file without the setting clears it: back to the default 2
    path.write_text(LIST_FILE.replace("department_yearly_cap: 1\n", ""), encoding="utf-8")
    assert _cli(small, "plan", "items", "import", "--file", str(path)).exit_code == 0
    assert resolve(small.engine, _request(items=["ZZ-SP-03"])).department_yearly_cap == 2


def test_an_item_files_repeat_rule_is_kept_with_the_list_and_applied(
    small: Loaded, tmp_path: Path
) -> None:
    """`avoid_repeat_within_year: false` in an item file is kept with the list and applies to
    its plans; a preset that keeps the rule restores it (the stricter holds), a request decides
    for its own plan, and a later file without the setting leaves the default, on."""
    path = tmp_path / "items.yaml"
    path.write_text(LIST_FILE + "avoid_repeat_within_year: false\n", encoding="utf-8")
    _zz_inspectors(small)
    imported = _cli(small, "plan", "items", "import", "--file", str(path), "--json")
    assert imported.exit_code == 0, imported.stderr
    assert json.loads(imported.stdout)["avoid_repeat_within_year"] is False
    with small.engine.connect() as con:
        assert list_settings(con)["avoid_repeat_within_year"] is False
    listed = _cli(small, "plan", "items", "list").stdout.splitlines()
    assert listed[1] == "a company inspected at random this year is drawn like any other"

    def rule(**kw: Any) -> bool:
        return resolve(small.engine, _request(items=["ZZ-SP-03"], **kw)).avoid_repeat_within_year

    assert rule() is False
    assert rule(ratio_preset="national-default") is True
    assert rule(avoid_repeat_within_year=True) is True
    assert rule(ratio_preset="national-default", avoid_repeat_within_year=False) is False
    # applied: the July companies (SP-03 at ratio 1) are drawn again for another item in August
    july = create_plan(small.engine, _request(items=["ZZ-SP-03"]), today=date(2026, 7, 6))
    assert july.tasks == 40 and json.loads(_plan_params(small, july.plan_id))[
        "avoid_repeat_within_year"] is False  # fmt: skip
    august = create_plan(
        small.engine,
        _request(name="august", items=["ZZ-LOOSE"], start_date=date(2026, 8, 3),
                 department_yearly_cap=2),
        today=date(2026, 8, 3),
    )  # fmt: skip
    assert august.summary["items"][0]["excluded_repeat"] == 0
    assert sum(august.summary["items"][0]["eligible"].values()) == 40
    # a later file without the setting: the default, on
    path.write_text(LIST_FILE, encoding="utf-8")
    assert _cli(small, "plan", "items", "import", "--file", str(path)).exit_code == 0
    assert rule() is True
    september = create_plan(
        small.engine,
        _request(name="september", items=["ZZ-JG-06"], start_date=date(2026, 9, 7),
                 department_yearly_cap=3),
        today=date(2026, 9, 7),
    )  # fmt: skip
    assert september.summary["items"][0]["eligible"] == {"A": 0, "B": 0, "C": 0, "D": 4}
    assert september.summary["items"][0]["excluded_repeat"] == 36  # all but tier D's 4
    assert september.summary["items"][0]["excluded_over_cap"] == 0


def _zz_inspectors(loaded: Loaded) -> None:
    save_inspectors(loaded.engine, [
        InspectorIn(inspector_id=f"zz-{k:02d}", department="samr", area="4101",
                    items=["ZZ-GS-01", "ZZ-JG-06", "ZZ-LOOSE", "ZZ-SP-03"])
        for k in range(6)
    ])  # fmt: skip


def _plan_params(loaded: Loaded, plan_id: str) -> str:
    with loaded.engine.connect() as con:
        return str(con.execute(
            sa.select(spot_check_plans.c.params).where(spot_check_plans.c.id == plan_id)
        ).scalar_one())  # fmt: skip


# ---- 4: lists read results through corrections and objections -------------------------------


@pytest.fixture()
def small_api(
    small: Loaded, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The application on the small world, with a regulator's key."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=small.data_dir, DATABASE_URL=small.url, duckdb_memory_limit="1GB")
    key = create_key(small.engine, "regulator", None, "spot-check review test")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {"X-API-Key": key, "X-Purpose": "review test"}


def _list(client: TestClient, headers: dict[str, str], plan_id: str, fmt: str) -> bytes:
    got = client.get(f"/v1/spot-check-plans/{plan_id}", headers=headers, params={"format": fmt})
    assert got.status_code == 200, got.text
    return got.content


def test_plan_lists_show_corrected_results_and_open_objections(
    small: Loaded, small_api: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    """After a correction to "pass", the plan's list still said 发现问题 while the published
    results said pass, corrected; and an open objection was not shown. The list now reads each
    result through the same rule, in every format, and `plan show` still gives the API's
    bytes."""
    client, reg = small_api
    today = china_today()
    start = today - timedelta(days=10)
    made = create_plan(small.engine, _request(
        name="corrections", items=["SC-CP-04"], start_date=start, record_past=True,
        item_ratios={"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}},
    ), today=today)  # fmt: skip
    ids = [int(t) for t in _tasks(small.engine, made.plan_id).sort_values("id")["id"].head(3)]
    problem = TaskResult(result="problem", check_date=start, findings={"minor": 1})
    posted = [post_result(small.engine, small.store, t, problem, today=today) for t in ids]
    fixed, objected = (p["record_id"] for p in posted[:2])
    stored = append_events(small.store, [
        {"record_id": fixed, "event_type": "correction", "effective_date": today,
         "attributes": {"severity": "pass", "attributes": {"findings_minor": 0}}},
        {"record_id": objected, "event_type": "objection_opened", "effective_date": today},
    ], today=today)  # fmt: skip
    assert stored.stored == 2 and not stored.rejected
    published = client.get("/v1/spot-check-results", headers=reg,
                           params={"plan_id": made.plan_id}).json()["results"]  # fmt: skip
    public = {r["task_id"]: (r["result"], r["corrected"], r["objection_open"]) for r in published}
    body = json.loads(_list(client, reg, made.plan_id, "json"))
    listed = {t["task_id"]: (t["result"], t["corrected"], t["objection_open"])
              for t in body["tasks"] if t["task_id"] in ids}  # fmt: skip
    assert listed == public == {
        ids[0]: ("pass", True, False), ids[1]: ("problem", False, True),
        ids[2]: ("problem", False, False),
    }  # fmt: skip
    csv_text = _list(client, reg, made.plan_id, "csv").decode("utf-8-sig")
    rows = {r["任务编号"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    assert (rows[str(ids[0])]["检查结果"], rows[str(ids[0])]["结果已更正"]) == ("未发现问题", "是")
    assert (rows[str(ids[1])]["检查结果"], rows[str(ids[1])]["异议处理中"]) == ("发现问题", "是")
    assert rows[str(ids[2])]["异议处理中"] == "否"
    sheet = openpyxl.load_workbook(io.BytesIO(_list(client, reg, made.plan_id, "xlsx"))).active
    header = [c.value for c in sheet[2]]
    by_task = {
        r[0]: dict(zip(header, r, strict=True)) for r in sheet.iter_rows(3, values_only=True)
    }
    assert by_task[str(ids[0])]["检查结果"] == "未发现问题"
    assert by_task[str(ids[1])]["异议处理中"] == "是"
    for fmt in ("json", "csv"):
        shown = _cli(small, "plan", "show", made.plan_id, "--format", fmt, "--purpose", "t")
        assert shown.exit_code == 0, shown.stderr
        assert shown.stdout_bytes == _list(client, reg, made.plan_id, fmt), fmt
    out = tmp_path / "list.xlsx"
    shown = _cli(small, "plan", "show", made.plan_id, "--format", "xlsx", "--out", str(out),
                 "--purpose", "t")  # fmt: skip
    assert shown.exit_code == 0 and out.read_bytes() == _list(client, reg, made.plan_id, "xlsx")


def test_a_supplemented_result_is_shown_supplemented_not_corrected(
    small: Loaded, small_api: tuple[TestClient, dict[str, str]]
) -> None:
    """An objection decided "supplemented" (information added, DOMAIN §10) was shown as a
    corrected result (`corrected` 结果已更正, `corrected` on the published results): it is
    `supplemented` 结果已补充 now, the result itself unchanged; a result corrected later is
    both."""
    client, reg = small_api
    today = china_today()
    start = today - timedelta(days=10)
    made = create_plan(small.engine, _request(
        name="supplements", items=["SC-CP-04"], start_date=start, record_past=True,
        item_ratios={"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}},
    ), today=today)  # fmt: skip
    (task,) = [int(t) for t in _tasks(small.engine, made.plan_id).sort_values("id")["id"].head(1)]
    problem = TaskResult(result="problem", check_date=start, findings={"minor": 1})
    record_id = post_result(small.engine, small.store, task, problem, today=today)["record_id"]
    case = objections.file_objection(small.engine, small.store, record_id, "已整改", None, None,
                                     today=today)["id"]  # fmt: skip
    added = {"attributes": {"rectification": "已提交整改报告"}}
    objections.decide(small.engine, small.store, case, "supplemented", "材料补充", added, None,
                      today=today)  # fmt: skip

    def shown() -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[str, str, str]]:
        published = client.get("/v1/spot-check-results", headers=reg,
                               params={"plan_id": made.plan_id}).json()["results"]  # fmt: skip
        (public,) = [(r["result"], r["corrected"], r["supplemented"]) for r in published
                     if r["task_id"] == task]  # fmt: skip
        body = json.loads(_list(client, reg, made.plan_id, "json"))
        (listed,) = [(t["result"], t["corrected"], t["supplemented"]) for t in body["tasks"]
                     if t["task_id"] == task]  # fmt: skip
        text = _list(client, reg, made.plan_id, "csv").decode("utf-8-sig")
        row = {r["任务编号"]: r for r in csv.DictReader(io.StringIO(text))}[str(task)]
        return public, listed, (row["检查结果"], row["结果已更正"], row["结果已补充"])

    assert shown() == (("problem", False, True), ("problem", False, True),
                       ("发现问题", "否", "是"))  # fmt: skip
    fixed = append_events(small.store, [
        {"record_id": record_id, "event_type": "correction", "effective_date": today,
         "attributes": {"severity": "pass", "attributes": {"findings_minor": 0}}},
    ], today=today)  # fmt: skip
    assert fixed.stored == 1 and not fixed.rejected
    assert shown() == (("pass", True, True), ("pass", True, True), ("未发现问题", "是", "是"))


# ---- 5: a preset never loosens an item's own stricter cap ------------------------------------


def test_the_stricter_of_an_items_cap_and_the_provincial_cap_applies(
    small: Loaded, tmp_path: Path
) -> None:
    """With `--preset national-default` an item configured `max_ratio: 0.04` was capped at the
    preset's 0.05: the stricter (smaller) cap now applies, whoever gives the provincial one."""
    path = tmp_path / "items.yaml"
    path.write_text(LIST_FILE, encoding="utf-8")
    assert _cli(small, "plan", "items", "import", "--file", str(path)).exit_code == 0
    both = ["ZZ-GS-01", "ZZ-JG-06"]

    def caps(**kw: Any) -> dict[str, float | None]:
        return {i.id: i.max_ratio for i in resolve(small.engine, _request(items=both, **kw)).items}

    assert caps() == {"ZZ-GS-01": 0.06, "ZZ-JG-06": 0.04}
    assert caps(ratio_preset="national-default") == {"ZZ-GS-01": 0.05, "ZZ-JG-06": 0.04}
    assert caps(ratio_preset="national-default", general_item_cap=0.2) == {
        "ZZ-GS-01": 0.05, "ZZ-JG-06": 0.04,
    }  # fmt: skip
    assert caps(general_item_cap=0.045) == {"ZZ-GS-01": 0.045, "ZZ-JG-06": 0.04}


# ---- 6: a plan drawn twice is refused; tasks can be cancelled ---------------------------------


def test_a_plan_drawn_twice_is_refused_naming_the_first(
    small: Loaded, small_api: tuple[TestClient, dict[str, str]]
) -> None:
    """The same request twice gave two plans (47 and 41 tasks) counted against every company's
    yearly limits. The second is refused (409 / exit 2) naming the first, unless meant."""
    client, reg = small_api
    start = china_today() + timedelta(days=3)
    body = {"name": "十月联合抽查", "departments": ["samr"], "items": ["SC-SP-03"], "seed": 4,
            "snapshot_date": SMALL_AS_OF.isoformat(), "start_date": start.isoformat()}  # fmt: skip
    first = client.post("/v1/spot-check-plans", headers=reg, json=body)
    assert first.status_code == 201, first.text
    plan_id = first.json()["plan_id"]
    again = client.post("/v1/spot-check-plans", headers=reg, json=body)
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "duplicate_plan" and plan_id in again.json()["message"]
    refused = _cli(small, "plan", "create", "--name", "十月联合抽查", "--departments", "samr",
                   "--items", "SC-SP-03", "--snapshot", SMALL_AS_OF.isoformat(),
                   "--start", start.isoformat(), "--seed", "4")  # fmt: skip
    assert plan_id in _one_line(refused)
    # another start day, other departments, or an explicit flag: drawn
    other_day = client.post(
        "/v1/spot-check-plans",
        headers=reg,
        json={**body, "start_date": (start + timedelta(days=1)).isoformat()},
    )
    assert other_day.status_code == 201, other_day.text
    meant = _cli(
        small,
        "plan",
        "create",
        "--name",
        "十月联合抽查",
        "--departments",
        "samr",
        "--items",
        "SC-SP-03",
        "--snapshot",
        SMALL_AS_OF.isoformat(),
        "--start",
        start.isoformat(),
        "--seed",
        "4",
        "--allow-duplicate",
        "--json",
    )
    assert meant.exit_code == 0, meant.stderr
    assert json.loads(meant.stdout)["plan_id"] not in (plan_id, other_day.json()["plan_id"])


def test_cancelled_tasks_are_not_overdue_nor_counted_and_the_plan_verifies(
    small: Loaded, small_api: tuple[TestClient, dict[str, str]]
) -> None:
    """A plan drawn by mistake could not be withdrawn: its tasks were overdue for good and
    counted against the yearly limits. Cancelling (CLI or API, with a reason) calls off the
    checks without a result, keeps who/when/why, and leaves the draw verifiable."""
    client, reg = small_api
    today = china_today()
    start = today - timedelta(days=60)
    all_of_it = {"SC-CP-04": {"A": 1, "B": 1, "C": 1, "D": 1}}
    mistake = create_plan(small.engine, _request(
        name="mistake", items=["SC-CP-04"], item_ratios=all_of_it, start_date=start,
        record_past=True,
    ), store=small.store, today=today)  # fmt: skip
    tasks = _tasks(small.engine, mistake.plan_id).sort_values("id")
    assert len(tasks) == 40
    done_id, one_id = int(tasks["id"].iloc[0]), int(tasks["id"].iloc[1])
    post_result(small.engine, small.store, done_id,
                TaskResult(result="pass", check_date=start), today=today)  # fmt: skip
    overdue = _cli(
        small, "plan", "overdue", "--plan-id", mistake.plan_id, "--purpose", "t", "--json"
    )
    assert len(json.loads(overdue.stdout)["tasks"]) == 39
    # one task by the API (a regulator), the rest by the command line
    one = client.post(f"/v1/spot-check-plans/{mistake.plan_id}/cancel", headers=reg,
                      json={"task_id": one_id, "reason": "企业已注销"})  # fmt: skip
    assert one.status_code == 200, one.text
    assert one.json()["cancelled"] == 1 and one.json()["task_ids"] == [one_id]
    again = client.post(f"/v1/spot-check-plans/{mistake.plan_id}/cancel", headers=reg,
                        json={"task_id": done_id, "reason": "x"})  # fmt: skip
    assert again.status_code == 409  # a check done stays done
    no_reason = _cli(small, "plan", "cancel", mistake.plan_id, "--reason", " ")
    assert "reason" in _one_line(no_reason)
    rest = _cli(small, "plan", "cancel", mistake.plan_id, "--reason", "重复抽取", "--json")
    assert rest.exit_code == 0, rest.stderr
    assert json.loads(rest.stdout)["cancelled"] == 38 and json.loads(rest.stdout)["left_done"] == 1
    # not overdue, shown as cancelled, results refused, kept in the lifecycle log
    overdue = _cli(
        small, "plan", "overdue", "--plan-id", mistake.plan_id, "--purpose", "t", "--json"
    )
    assert json.loads(overdue.stdout)["tasks"] == []
    body = json.loads(_list(client, reg, mistake.plan_id, "json"))
    status = {t["task_id"]: t["status"] for t in body["tasks"]}
    assert status[done_id] == "done" and status[one_id] == "cancelled"
    assert sum(s == "cancelled" for s in status.values()) == 39
    assert "已取消" in _list(client, reg, mistake.plan_id, "csv").decode("utf-8-sig")
    late = client.post(f"/v1/spot-check-tasks/{one_id}/result", headers=reg,
                       json={"result": "pass", "check_date": today.isoformat()})  # fmt: skip
    assert late.status_code == 409 and "cancelled" in late.text
    with small.engine.connect() as con:
        trail = con.execute(
            sa.select(lifecycle_log.c.case_id, lifecycle_log.c.action, lifecycle_log.c.detail)
            .where(lifecycle_log.c.case_type == "spot_check")
        ).all()  # fmt: skip
    assert len(trail) == 39 and {a for _, a, _ in trail} == {"cancelled"}
    reasons = {i: json.loads(d)["reason"] for i, _, d in trail}
    assert reasons[one_id] == "企业已注销" and set(reasons.values()) == {"企业已注销", "重复抽取"}
    # the draw is unchanged
    assert verify_plan(small.engine, mistake.plan_id).identical
    # not counted: the same item at ratio 1 in the same year takes the 39 cancelled companies
    again_plan = create_plan(small.engine, _request(
        name="redo", items=["SC-CP-04"], item_ratios=all_of_it, start_date=today,
    ), store=small.store, today=today)  # fmt: skip
    redo = set(_tasks(small.engine, again_plan.plan_id)["uscc"])
    cancelled = set(tasks["uscc"]) - {tasks["uscc"].iloc[0]}
    assert redo == cancelled


# ---- 7: a triggered check names its items -----------------------------------------------------


def _tier_codes(loaded: Loaded, tier: str) -> list[str]:
    with loaded.engine.connect() as con:
        return sorted(con.execute(
            sa.select(company_history.c.uscc).where(company_history.c.tier == tier)
        ).scalars())  # fmt: skip


def test_a_triggered_check_covers_the_items_it_names(small: Loaded) -> None:
    """A food complaint against a tier-A company brought a task for every item of every
    department. A triggered entry may now name its items or department; a plain code keeps
    meaning every applicable item."""
    a_named, a_plain, a_dept, a_cli = _tier_codes(small, "A")[:4]
    items = ["SC-CP-04", "SC-GS-01"]
    made = create_plan(small.engine, _request(name="complaints", items=items, triggered=[
        {"uscc": a_named, "items": ["SC-CP-04"]}, a_plain, {"uscc": a_dept, "department": "samr"},
    ]), today=date(2026, 7, 6))  # fmt: skip
    tasks = _tasks(small.engine, made.plan_id)
    triggered = tasks[tasks["basis"] == "triggered"].groupby("uscc")["item_id"].apply(sorted)
    assert triggered.to_dict() == {a_named: ["SC-CP-04"], a_plain: items, a_dept: items}
    assert (tasks[tasks["basis"] == "triggered"]["inclusion_prob"] == 1.0).all()
    assert verify_plan(small.engine, made.plan_id).identical
    # the command line: CODE:ITEM[,ITEM], plain codes as before
    shown = _cli(small, "plan", "create", "--name", "cli complaints", "--departments", "samr",
                 "--items", ",".join(items), "--snapshot", SMALL_AS_OF.isoformat(),
                 "--start", "2026-07-06", "--record-past", "--seed", "5",
                 "--triggered", f"{a_cli}:SC-CP-04;{a_plain}", "--json")  # fmt: skip
    assert shown.exit_code == 0, shown.stderr
    cli_tasks = _tasks(small.engine, json.loads(shown.stdout)["plan_id"])
    by = cli_tasks[cli_tasks["basis"] == "triggered"].groupby("uscc")["item_id"].apply(sorted)
    assert by.to_dict() == {a_cli: ["SC-CP-04"], a_plain: items}
    # an item not in the plan is refused by name
    with pytest.raises(PlanError) as refused:
        resolve(small.engine, _request(items=items, triggered=[
            {"uscc": a_named, "items": ["SC-SP-03"]}
        ]))  # fmt: skip
    assert refused.value.code == "unknown_item" and "SC-SP-03" in str(refused.value)


# ---- the list shows a late check, an estimated deadline and rounded chances ---------------------


def test_plan_lists_show_late_checks_estimated_deadlines_and_rounded_chances(
    small: Loaded, small_api: tuple[TestClient, dict[str, str]]
) -> None:
    """A check made after its deadline was shown only 已完成; the list did not say whether the
    deadline was counted past the holiday calendar; 入选概率 was a raw float in CSV."""
    client, reg = small_api
    today = china_today()
    start = today - timedelta(days=70)
    made = create_plan(small.engine, _request(
        name="late checks", items=["SC-CP-04"], start_date=start, record_past=True,
        item_ratios={"SC-CP-04": {"A": 0.5, "B": 0.5, "C": 0.5, "D": 0.5}},
    ), today=today)  # fmt: skip
    tasks = _tasks(small.engine, made.plan_id).sort_values("id")
    ids = [int(t) for t in tasks["id"].head(2)]
    due = made.due_date
    assert due < today - timedelta(days=1)
    for task, day in zip(ids, (due, due + timedelta(days=1)), strict=True):
        post_result(small.engine, small.store, task,
                    TaskResult(result="pass", check_date=day), today=today)  # fmt: skip
    body = json.loads(_list(client, reg, made.plan_id, "json"))
    status = {t["task_id"]: t["status"] for t in body["tasks"]}
    assert (status[ids[0]], status[ids[1]]) == ("done", "done_late")
    assert {t["due_estimated"] for t in body["tasks"]} == {False}
    chances = [t["inclusion_prob"] for t in body["tasks"]]
    csv_text = _list(client, reg, made.plan_id, "csv").decode("utf-8-sig")
    rows = {r["任务编号"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    assert (rows[str(ids[0])]["状态"], rows[str(ids[1])]["状态"]) == ("已完成", "逾期完成")
    assert {r["完成期限为估算"] for r in rows.values()} == {"否"}
    shown = [float(r["入选概率"]) for r in rows.values()]
    assert all(len(r["入选概率"].split(".")[-1]) <= 4 for r in rows.values())
    assert shown == pytest.approx([round(c, 4) for c in chances])
