"""The second round of the spot-check review (the reviewer's report, items M5/M12, M6, M11,
L1, L2, L4, L7, L8): inspectors that could never be drawn, pools that only grew, checks that
could not be made, unknown filters, wording, published times, findings and the audit of
results. Each test pins the behaviour now."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from records.settings import Settings
from records.uscc import derive
from serving.app import create_app
from serving.auth import create_key
from serving.db import audit_log, inspectors
from serving.spotcheck.plans import (
    PlanRequest,
    TaskResult,
    cancel_tasks,
    create_plan,
    department_filter,
    post_result,
    verify_plan,
)
from tests.serving import test_spotcheck_plans as _plans
from tests.serving.databases import Loaded
from tests.serving.test_spotcheck_plans import _cli, _one_line

small = _plans.small
"""40 companies of county 410102, the national-default items, 6 samr inspectors samr-00…05."""


@pytest.fixture
def api(
    small: Loaded, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The application on the small world, with a regulator's key."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=small.data_dir, DATABASE_URL=small.url, duckdb_memory_limit="1GB")
    key = create_key(small.engine, "regulator", None, "pools test")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {"X-API-Key": key, "X-Purpose": "pools test"}


def _stored(loaded: Loaded, *ids: str) -> dict[str, dict[str, Any]]:
    with loaded.engine.connect() as con:
        rows = con.execute(sa.select(inspectors).where(inspectors.c.id.in_(ids))).mappings()
        return {r["id"]: dict(r) for r in rows}


# ---- 1. inspectors who could never be drawn ----------------------------------------------------

TYPO_FILE = """\
执法人员编号,姓名,所属部门,区域,检查事项,在岗
Y01,甲,市场监督管理局,4101,SC-GS-01,在岗
Y02,乙,samr,4101,SC-GS-1;sc-dj-02;XF-01,在岗
Y03,丙,SAMR,410100,SC-GS-01,在岗
Y04,丁,郑州市消防救援支队,410000,XF-01,在岗
Y05,戊,samr,4101,,在岗
"""


def test_an_inspector_file_maps_department_names_and_codes_and_warns_of_items(
    small: Loaded, tmp_path: Path
) -> None:
    """`市场监督管理局` and `SAMR` were stored as new departments, `410100`/`410000` covered no
    company and unknown items were taken silently: names and codes in any case are now the
    department's code, a city's or province's 6-digit code its prefix, and each item not in the
    list (or another department's) a warning on stderr naming the row."""
    path = tmp_path / "typo.csv"
    path.write_text(TYPO_FILE, encoding="utf-8")
    done = _cli(small, "plan", "inspectors", "import", str(path))
    assert done.exit_code == 0, done.stderr
    assert "5 inspectors" in done.stdout
    stored = _stored(small, "Y01", "Y02", "Y03", "Y04", "Y05")
    assert {k: (v["department"], v["area"]) for k, v in stored.items()} == {
        "Y01": ("samr", "4101"), "Y02": ("samr", "4101"), "Y03": ("samr", "4101"),
        "Y04": ("fire", "41"), "Y05": ("samr", "4101"),
    }  # fmt: skip
    assert stored["Y02"]["items"] == "SC-DJ-02;SC-GS-1;XF-01"
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert warnings == [
        "warning: row 3 (Y02): item SC-GS-1 is not in the check-item list: never drawn for it",
        "warning: row 3 (Y02): item sc-dj-02 read as SC-DJ-02",
        "warning: row 3 (Y02): item XF-01 is fire's, not samr's: never drawn for it",
        "warning: row 4 (Y03): area 410100 is a city's code, read as the prefix 4101 (the "
        "companies' regions are counties)",
        "warning: row 5 (Y04): area 410000 is a province's code, read as the prefix 41 (the "
        "companies' regions are counties)",
        "warning: row 6 (Y05): no check items: never drawn",
    ]
    as_json = _cli(small, "plan", "inspectors", "import", str(path), "--json")
    assert as_json.exit_code == 0
    assert len(json.loads(as_json.stdout)["warnings"]) == 6


def test_an_inspector_file_with_an_unknown_department_is_refused_row_by_row(
    small: Loaded, tmp_path: Path
) -> None:
    path = tmp_path / "unknown.csv"
    path.write_text(
        "inspector_id,department,area,items\nZ01,市场监管,4101,SC-GS-01\nZ02,samr,4101,SC-GS-01\n"
        "Z03,nosuch,4101,SC-GS-01\n",
        encoding="utf-8",
    )
    done = _cli(small, "plan", "inspectors", "import", str(path))
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"error: {path}: 2 inspectors refused:"
    assert lines[1].startswith("  row 2 (Z01): unknown department '市场监管': give a code or "
                               "Chinese name of one (known: agriculture 农业农村局,")  # fmt: skip
    assert lines[2].startswith("  row 4 (Z03): unknown department 'nosuch'")
    assert len(lines) == 3
    assert _stored(small, "Z01", "Z02", "Z03") == {}  # refused whole


def test_post_inspectors_maps_a_chinese_department_like_the_file(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    """`POST /v1/inspectors` kept 消防救援机构 as the code (never drawn for fire): the file's
    mapping now applies, an unknown department is 422 naming the inspector, and the answer
    lists the warnings."""
    client, headers = api
    body = {"inspectors": [
        {"inspector_id": "F06", "department": "消防救援机构", "area": "4101", "items": ["XF-01"]},
        {"inspector_id": "F07", "department": "FIRE", "area": "410100", "items": ["XF-1"]},
    ]}  # fmt: skip
    got = client.post("/v1/inspectors", headers=headers, json=body)
    assert got.status_code == 200, got.text
    assert got.json() == {
        "inspectors": 2, "conflicts": 0, "deactivated": [],
        "warnings": [
            "inspectors[1] (F07): area 410100 is a city's code, read as the prefix 4101 (the "
            "companies' regions are counties)",
            "inspectors[1] (F07): item XF-1 is not in the check-item list: never drawn for it",
        ],
    }  # fmt: skip
    stored = _stored(small, "F06", "F07")
    assert {k: (v["department"], v["area"]) for k, v in stored.items()} == {
        "F06": ("fire", "4101"), "F07": ("fire", "4101"),
    }  # fmt: skip
    bad = client.post("/v1/inspectors", headers=headers, json={"inspectors": [
        {"inspector_id": "F08", "department": "消防队", "area": "4101", "items": ["XF-01"]},
    ]})  # fmt: skip
    assert bad.status_code == 422
    assert bad.json()["code"] == "unknown_department"
    assert bad.json()["message"].startswith("inspectors[0] (F08): unknown department '消防队'")
    assert _stored(small, "F08") == {}
    # replace: the roster of fire is F06 alone
    roster = client.post("/v1/inspectors", headers=headers, json={"replace": True, "inspectors": [
        {"inspector_id": "F06", "department": "fire", "area": "4101", "items": ["XF-01"]},
    ]})  # fmt: skip
    assert roster.json()["deactivated"] == ["F07"]
    assert {k: v["active"] for k, v in _stored(small, "F06", "F07").items()} == {
        "F06": True, "F07": False,
    }  # fmt: skip


def test_an_empty_inspector_file_is_named_once(small: Loaded, tmp_path: Path) -> None:
    """The message said "empty0.csv: empty0.csv: no inspector header": the file is named once,
    and an empty one is called empty."""
    path = tmp_path / "empty0.csv"
    path.write_text("", encoding="utf-8")
    done = _cli(small, "plan", "inspectors", "import", str(path))
    assert done.exit_code == 2
    assert (
        done.stderr.strip() == f"error: {path}: the file is empty: no inspector header and no rows"
    )


# ---- 2. a roster replaces the department's pool; listings -----------------------------------


def test_a_roster_imported_with_replace_makes_the_absent_inactive(
    small: Loaded, tmp_path: Path
) -> None:
    """Re-importing a department's roster never took anyone out: with --replace, the inspectors
    of the file's departments absent from it become inactive (reported by id, kept: plans refer
    to them); other departments are untouched, and a plan drawn before still verifies."""
    before = create_plan(
        small.engine,
        PlanRequest.model_validate({
            "name": "before", "departments": ["samr"], "items": ["SC-CP-04"], "seed": 1,
            "snapshot_date": _plans.SMALL_AS_OF, "start_date": date(2026, 7, 6),
            "item_ratios": {"SC-CP-04": _plans.ALL_OF_IT},
        }),
        today=date(2026, 7, 6),
    )  # fmt: skip
    fire = tmp_path / "fire.csv"
    fire.write_text("inspector_id,department,area,items\nF01,fire,4101,XF-01\n", encoding="utf-8")
    assert _cli(small, "plan", "inspectors", "import", str(fire)).exit_code == 0
    roster = tmp_path / "samr.csv"
    roster.write_text(
        "inspector_id,department,area,items\n"
        + "".join(f"samr-{k:02d},市场监管局,4101,SC-CP-04\n" for k in (0, 1, 2, 3))
        + "samr-10,samr,4101,SC-CP-04\n",
        encoding="utf-8",
    )
    plain = _cli(small, "plan", "inspectors", "import", str(roster), "--json")
    assert json.loads(plain.stdout)["deactivated"] == []
    assert all(v["active"] for v in _stored(small, "samr-04", "samr-05").values())
    done = _cli(small, "plan", "inspectors", "import", str(roster), "--replace")
    assert done.exit_code == 0, done.stderr
    assert "made inactive (not in the file): samr-04, samr-05" in done.stdout
    stored = _stored(small, "samr-00", "samr-04", "samr-05", "samr-10", "F01")
    assert {k: v["active"] for k, v in stored.items()} == {
        "samr-00": True, "samr-04": False, "samr-05": False, "samr-10": True, "F01": True,
    }  # fmt: skip
    again = _cli(small, "plan", "inspectors", "import", str(roster), "--replace", "--json")
    assert json.loads(again.stdout)["deactivated"] == []  # inactive already: not again
    assert verify_plan(small.engine, before.plan_id).identical


def test_plan_inspectors_list_shows_the_pool_by_department(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = api
    client.post("/v1/inspectors", headers=headers, json={"inspectors": [
        {"inspector_id": "F01", "department": "fire", "area": "4101", "items": ["XF-01"],
         "conflicts": [derive("a", "t", region="410102"), derive("b", "t", region="410102")],
         "active": False},
    ]})  # fmt: skip
    done = _cli(small, "plan", "inspectors", "list", "--department", "消防救援机构", "--json")
    assert done.exit_code == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed == {"inspectors": [{
        "inspector_id": "F01", "name": None, "department": "fire", "area": "4101",
        "items": ["XF-01"], "active": False, "conflicts": 2,
    }]}  # fmt: skip
    assert client.get("/v1/inspectors", headers=headers, params={"department": "fire"}).json() \
        == listed  # fmt: skip
    text = _cli(small, "plan", "inspectors", "list")
    assert text.stdout.startswith("7 inspector(s)")
    assert "F01" in text.stdout and "inactive" in text.stdout and "conflicts 2" in text.stdout
    unknown = _cli(small, "plan", "inspectors", "list", "--department", "nosuch")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: unknown department 'nosuch'")


def test_plan_items_list_shows_caps_floors_and_the_lists_settings(
    small: Loaded, tmp_path: Path
) -> None:
    text = _cli(small, "plan", "items", "list")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0] == (
        "list national-default: general-item cap 5%, a department's inspections of a company "
        "a year 2"
    )
    assert lines[1] == "a company inspected at random this year is not drawn again unless tier D"
    gs = next(line for line in lines if line.startswith("SC-GS-01"))
    assert "cap 5.0%, floor 3.0%, yearly 1" in gs
    xf = next(line for line in lines if line.startswith("XF-01"))
    assert "no cap, yearly 1" in xf
    as_json = json.loads(_cli(small, "plan", "items", "list", "--json").stdout)
    assert as_json["settings"] == {
        "name": "national-default", "general_item_cap": 0.05, "department_yearly_cap": 2,
        "avoid_repeat_within_year": True,
    }  # fmt: skip


def test_plan_list_counts_done_overdue_and_cancelled_like_the_api(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = api
    frame = _plans._small_plan(small, date(2026, 7, 6))
    plan_id = str(frame["plan_id"].iloc[0])
    ids = sorted(int(i) for i in frame["id"])
    post_result(
        small.engine,
        small.store,
        ids[0],
        TaskResult(result="pass", check_date=date(2026, 7, 8)),
        today=date(2026, 7, 8),
    )
    cancel_tasks(small.engine, plan_id, "重复抽取", ids[1])
    done = _cli(small, "plan", "list", "--json")
    assert done.exit_code == 0, done.stderr
    page = json.loads(done.stdout)
    assert page == client.get("/v1/spot-check-plans", headers=headers).json()
    brief = page["plans"][0]
    assert (brief["plan_id"], brief["tasks"], brief["done"], brief["cancelled"]) == (
        plan_id, len(ids), 1, 1,
    )  # fmt: skip
    assert brief["overdue"] == len(ids) - 2  # due in August 2026, long past
    text = _cli(small, "plan", "list").stdout
    assert f"{plan_id} 2026-07-06" in text
    assert f"{len(ids)} tasks: 1 done, {len(ids) - 2} overdue, 1 cancelled" in text


# ---- 3. a check that could not be made ---------------------------------------------------------


def test_a_check_not_made_closes_the_task_with_its_reason(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    """Results were pass/problem/serious only: a company not found at its registered address
    left its task open and overdue for good. `not_inspected` with a reason closes it (not
    overdue), is stored as a record that is neither a pass nor a problem (no feature counts it,
    training takes no example from it), and reads 未能检查（原因） in the lists."""
    client, headers = api
    frame = _plans._small_plan(small, date(2026, 7, 6))
    plan_id = str(frame["plan_id"].iloc[0])
    first, second, third = (str(i) for i in sorted(int(i) for i in frame["id"])[:3])
    day = ["--date", "2026-07-08"]
    refused = [
        (["--result", "not_inspected"], "--result not_inspected needs --reason unreachable|"),
        (["--result", "not_inspected", "--reason", "other"], "--result not_inspected needs"),
        (["--result", "not_inspected", "--reason", "unreachable", "--minor", "1"],
         "--result not_inspected needs"),
        (["--result", "pass", "--reason", "unreachable"],
         "--reason and --note are for --result not_inspected only"),
    ]  # fmt: skip
    for args, said in refused:
        text = _one_line(_cli(small, "plan", "result", first, *args, *day))
        assert said in text, (args, text)
    posted = _cli(small, "plan", "result", first, "--result", "not_inspected", "--reason",
                  "unreachable", *day, "--json")  # fmt: skip
    assert posted.exit_code == 0, posted.stderr
    assert json.loads(posted.stdout)["reason"] == "unreachable"
    by_api = client.post(f"/v1/spot-check-tasks/{second}/result", headers=headers, json={
        "result": "not_inspected", "check_date": "2026-07-08", "reason": "other",
        "note": "门店拆迁，联系人张三称已搬离",
    })  # fmt: skip
    assert by_api.status_code == 201, by_api.text
    assert by_api.json()["reason"] == "other"
    post_result(
        small.engine,
        small.store,
        int(third),
        TaskResult(result="pass", check_date=date(2026, 7, 8)),
        today=date(2026, 7, 8),
    )
    # closed: not overdue
    overdue = client.get("/v1/spot-check-tasks/overdue", headers=headers,
                         params={"plan_id": plan_id}).json()["tasks"]  # fmt: skip
    assert {t["task_id"] for t in overdue}.isdisjoint({int(first), int(second), int(third)})
    # the record: severity not_inspected, the reason a code, the note kept (never public)
    records = {
        r["record_id"]: r for r in small.store.read("records").to_pylist()
        if r["category"] == "spot_check"
    }  # fmt: skip
    mine = {r["severity"]: json.loads(r["attributes"]) for r in records.values()}
    assert mine["not_inspected"]["reason"] in ("unreachable", "other")
    assert any(json.loads(r["attributes"]).get("note") == "门店拆迁，联系人张三称已搬离"
               for r in records.values())  # fmt: skip
    # the lists: JSON gives the reason, CSV reads 未能检查（…）
    body = client.get(f"/v1/spot-check-plans/{plan_id}", headers=headers).json()
    by_task = {str(t["task_id"]): t for t in body["tasks"]}
    assert (by_task[first]["result"], by_task[first]["not_inspected_reason"]) == (
        "not_inspected", "unreachable",
    )  # fmt: skip
    assert by_task[first]["status"] == "done"
    assert by_task[third]["not_inspected_reason"] is None
    csv_text = client.get(f"/v1/spot-check-plans/{plan_id}", headers=headers,
                          params={"format": "csv"}).content.decode("utf-8-sig")  # fmt: skip
    assert "未能检查（通过登记的住所无法联系）" in csv_text
    assert "未能检查（其他原因）" in csv_text
    assert "张三" not in csv_text  # the note stays with the task and the record
    # published: the reason's code, never the note
    public = client.get("/v1/spot-check-results", headers=headers,
                        params={"plan_id": plan_id}).json()["results"]  # fmt: skip
    shown = {str(r["task_id"]): r for r in public}
    assert shown[first]["result"] == "not_inspected"
    assert shown[first]["not_inspected_reason"] == "unreachable"
    assert "张三" not in json.dumps(public, ensure_ascii=False)


def test_training_takes_no_example_from_a_check_not_made(small: Loaded) -> None:
    from training.dataset import spot_check_examples

    frame = _plans._small_plan(small, date(2026, 7, 6))
    first, second = sorted(int(i) for i in frame["id"])[:2]
    day = date(2026, 7, 8)
    post_result(small.engine, small.store, first,
                TaskResult(result="not_inspected", check_date=day, reason="deregistered"),
                today=day)  # fmt: skip
    post_result(small.engine, small.store, second,
                TaskResult(result="pass", check_date=day), today=day)  # fmt: skip
    examples = spot_check_examples(small.store).to_pylist()
    assert [e["record_id"] for e in examples] == [f"{frame['plan_id'].iloc[0]}-T{second:09d}"]
    assert examples[0]["label"] == 0


# ---- 4. unknown filters are refused, Chinese names accepted ------------------------------------


def test_unknown_filters_are_refused_and_department_names_accepted(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    """`--department 消防救援机构`, `--inspector S99`, `--department nosuch`, `--plan-id
    SJ-2026-09999` and `?department=nosuch` answered an empty list as if true: a Chinese name now
    stands for its code, and what names nothing is refused in one line (exit 2; 422 or 404)."""
    client, headers = api
    frame = _plans._small_plan(small, date(2026, 7, 6))
    plan_id = str(frame["plan_id"].iloc[0])
    named = _cli(small, "plan", "show", plan_id, "--department", "市场监管局", "--format", "json",
                 "--purpose", "test")  # fmt: skip
    assert named.exit_code == 0, named.stderr
    assert len(json.loads(named.stdout)["tasks"]) == len(frame)
    refusals = [
        (["plan", "show", plan_id, "--department", "nosuch"], "error: unknown department 'nosuch'"),
        (["plan", "show", plan_id, "--inspector", "S99"], "error: unknown inspector 'S99'"),
        (["plan", "overdue", "--department", "nosuch"], "error: unknown department 'nosuch'"),
        (["plan", "overdue", "--plan-id", "SJ-2026-09999"],
         "error: no spot-check plan SJ-2026-09999"),
    ]  # fmt: skip
    for args, said in refusals:
        assert _one_line(_cli(small, *args, "--purpose", "test")).startswith(said), args
    overdue = _cli(small, "plan", "overdue", "--department", "SAMR", "--plan-id", plan_id,
                   "--purpose", "test", "--json")  # fmt: skip
    assert len(json.loads(overdue.stdout)["tasks"]) == len(frame)
    base = f"/v1/spot-check-plans/{plan_id}"
    for path, params, status, code in [
        (base, {"department": "nosuch"}, 422, "unknown_department"),
        (base, {"inspector": "S99"}, 422, "unknown_inspector"),
        ("/v1/spot-check-tasks/overdue", {"department": "nosuch"}, 422, "unknown_department"),
        ("/v1/spot-check-tasks/overdue", {"plan_id": "SJ-2026-09999"}, 404, "not_found"),
        ("/v1/inspectors", {"department": "nosuch"}, 422, "unknown_department"),
        ("/v1/check-items", {"department": "nosuch"}, 422, "unknown_department"),
    ]:
        got = client.get(path, headers=headers, params=params)
        assert (got.status_code, got.json()["code"]) == (status, code), (path, params)
    by_name = client.get(base, headers=headers, params={"department": "市场监督管理局"}).json()
    assert len(by_name["tasks"]) == len(frame)
    assert client.get(base, headers=headers, params={"inspector": "samr-00"}).status_code == 200


def test_a_name_stored_as_a_code_before_still_means_its_department(small: Loaded) -> None:
    """An inspector posted with department 消防救援机构 before names were mapped left that name
    as a code: a filter or plan by that name still means fire, and refusals do not offer the
    name as a department of its own."""
    with small.engine.begin() as con:
        con.execute(inspectors.insert().values(
            id="F06", name=None, department="消防救援机构", area="4101", items="XF-01",
            active=True, updated_at=datetime.now(UTC),
        ))  # fmt: skip
    with small.engine.connect() as con:
        assert department_filter(con, "消防救援机构") == "fire"
        with pytest.raises(LookupError) as info:
            department_filter(con, "nosuch")
    assert "消防救援机构)" not in str(info.value) and "fire 消防救援机构" in str(info.value)
    refused = _one_line(_cli(small, "plan", "create", "--name", "n", "--departments",
                             "消防救援机构", "--snapshot", "2026-06-30", "--start", "2026-07-06",
                             "--record-past"))  # fmt: skip
    assert "fire in 410102 for XF-01" in refused  # fire (F06 is no fire inspector yet)


def test_a_plan_request_names_departments_in_chinese(small: Loaded) -> None:
    made = create_plan(small.engine, PlanRequest.model_validate({
        "name": "names", "departments": ["市场监管局"], "items": ["SC-CP-04"], "seed": 1,
        "snapshot_date": _plans.SMALL_AS_OF, "start_date": date(2026, 7, 6),
    }), today=date(2026, 7, 6))  # fmt: skip
    assert {i["item_id"] for i in made.summary["items"]} == {"SC-CP-04"}
    assert verify_plan(small.engine, made.plan_id).identical


# ---- 5. wording ----------------------------------------------------------------------------------


def test_a_department_key_is_told_what_it_may_not_see(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    """A fire key asking for samr's inspectors was told "a fire key sees its own tasks only"."""
    client, _ = api
    fire = {"X-API-Key": create_key(small.engine, "department", "fire", "fire"), "X-Purpose": "t"}
    got = client.get("/v1/inspectors", headers=fire, params={"department": "samr"})
    assert got.status_code == 403
    assert (
        got.json()["message"] == "a fire key sees its own department's inspectors only, not samr's"
    )
    own = client.get("/v1/inspectors", headers=fire, params={"department": "消防救援机构"})
    assert own.status_code == 200


def test_plan_create_refusals_name_the_option_once(small: Loaded) -> None:
    """ "triggered: triggered: check character…" and "population.tiers.0: …": a refusal names
    the option (and the value refused) once."""
    good = derive("x", "t", region="410102")
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    base = ["plan", "create", "--name", "w", "--departments", "samr", "--items", "SC-CP-04",
            "--snapshot", "2026-06-30", "--start", "2026-07-06", "--record-past"]  # fmt: skip
    text = _one_line(_cli(small, *base, "--triggered", bad))
    assert text.startswith(f"error: --triggered: {bad}: check character should be ")
    text = _one_line(_cli(small, *base, "--triggered", f"{bad}:SC-CP-04"))
    assert text.startswith(f"error: --triggered: {bad}: check character should be ")
    text = _one_line(_cli(small, *base, "--tiers", "C,E"))
    assert text == "error: --tiers: Input should be 'A', 'B', 'C' or 'D' (got 'E')"


# ---- 6. published time with its offset; the findings' description kept in the record ----------


def test_published_at_has_its_offset_and_the_description_stays_private(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    """`published_at` was UTC without a zone ("2026-12-05T10:29:06", 18:29 in China): now China
    time with +08:00. The findings' description ("无证经营") was kept on the task only: it is in
    the record's attributes too, and out of every public view (free text may name people)."""
    from serving.load import shown_attributes

    client, headers = api
    frame = _plans._small_plan(small, date(2026, 7, 6))
    task = int(sorted(int(i) for i in frame["id"])[0])
    got = client.post(f"/v1/spot-check-tasks/{task}/result", headers=headers, json={
        "result": "problem", "check_date": "2026-07-08",
        "findings": {"minor": 1, "description": "无证经营，负责人李四在场"},
    })  # fmt: skip
    assert got.status_code == 201, got.text
    record = next(
        r
        for r in small.store.read("records").to_pylist()
        if r["record_id"] == got.json()["record_id"]
    )
    attributes = json.loads(record["attributes"])
    assert attributes["description"] == "无证经营，负责人李四在场"
    assert "description" not in shown_attributes("spot_check", attributes)
    assert shown_attributes("spot_check", {**attributes, "reason": "unreachable", "note": "张三"}) \
        == {"check_item": attributes["check_item"], "reason": "unreachable"}  # fmt: skip
    public = client.get(
        "/v1/spot-check-results", headers=headers, params={"plan_id": str(frame["plan_id"].iloc[0])}
    ).json()["results"]
    shown = next(r for r in public if r["task_id"] == task)
    assert "李四" not in json.dumps(public, ensure_ascii=False)
    stamp = datetime.fromisoformat(shown["published_at"])
    assert shown["published_at"].endswith("+08:00") and stamp.microsecond == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 600


# ---- 7. a posted result is audited -------------------------------------------------------------


def test_a_posted_result_is_one_audit_line_for_the_company(
    small: Loaded, api: tuple[TestClient, dict[str, str]]
) -> None:
    """Posting a result (API or command line) left nothing in the audit log: each is now one
    line for the company with the caller's purpose (a default when none is given)."""
    client, headers = api
    frame = _plans._small_plan(small, date(2026, 7, 6))
    plan_id = str(frame["plan_id"].iloc[0])
    first, second, third = (int(i) for i in sorted(int(i) for i in frame["id"])[:3])
    by_task = dict(zip(frame["id"].astype(int), frame["uscc"], strict=True))
    body = {"result": "pass", "check_date": "2026-07-08"}
    purpose = {**headers, "X-Purpose": "现场检查录入".encode()}
    got = client.post(f"/v1/spot-check-tasks/{first}/result", headers=purpose, json=body)
    assert got.status_code == 201, got.text
    bare = {"X-API-Key": headers["X-API-Key"]}
    assert client.post(f"/v1/spot-check-tasks/{second}/result", headers=bare,
                       json=body).status_code == 201  # fmt: skip
    client.app.state.service.audit.flush()  # type: ignore[attr-defined]
    posted = _cli(small, "plan", "result", str(third), "--result", "pass", "--date", "2026-07-08",
                  "--purpose", "补录")  # fmt: skip
    assert posted.exit_code == 0, posted.stderr
    with small.engine.connect() as con:
        lines = con.execute(
            sa.select(audit_log.c.uscc, audit_log.c.endpoint, audit_log.c.purpose,
                      audit_log.c.status, audit_log.c.role)
            .where(audit_log.c.endpoint.like("%result%"))
            .order_by(audit_log.c.id)
        ).all()  # fmt: skip
    assert [(u, e, s, r) for u, e, _, s, r in lines] == [
        (by_task[first], "POST /v1/spot-check-tasks/{task_id}/result", 201, "regulator"),
        (by_task[second], "POST /v1/spot-check-tasks/{task_id}/result", 201, "regulator"),
        (by_task[third], "credsup plan result", 201, "operator"),
    ]
    assert lines[0].purpose == f"{plan_id} task {first}: 现场检查录入"
    assert lines[1].purpose == f"{plan_id} task {second}: spot-check result"
    assert lines[2].purpose.startswith(f"{plan_id} task {third}: 补录 (by ")
