"""Credit lists over HTTP against a real uvicorn process, on SQLite and PostgreSQL: a serious
dishonest listing with its objection window, objection and dismissal, the veto it brings and
its earliest removal; an upheld objection and a late one; the abnormal-operation list; the
working-day windows across holidays; derivation from the records; the public lists, the roles
and the append-only trail; the `credsup lists` commands.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import holidays
import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from typer.testing import CliRunner

from cli.main import app
from features.builder import LIST_CATEGORIES, build_features
from records import workdays
from records.catalogue import default_catalogue
from records.events import append_events
from records.ingest import ingest_table
from records.workdays import china_today
from serving import lists, objections
from serving.auth import create_key
from serving.db import audit_log, companies, lifecycle_log, list_entries
from serving.load import mask_name
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.faults import failing_commit, failing_log
from tests.serving.uvicorn import running_server

SERIOUS_BASIS = "《市场监督管理严重违法失信名单管理办法》第二条"
DERIVE_DAY = date(2025, 7, 3)
"""Three days after the 2024 annual reports fell due: the simulator has recorded the missing
ones, and listed few of them yet."""


@dataclass
class Api:
    world: Loaded
    client: httpx.Client
    keys: dict[str, str]

    def call(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        """`who`: a role's key, or `company:<uscc>` for a key speaking for that company."""
        if who.startswith("company:") and who not in self.keys:
            self.keys[who] = create_key(self.world.engine, "company", None, who, who[8:])
        headers = {"X-API-Key": self.keys[who], "X-Purpose": "list test"}
        return self.client.request(method, path, headers=headers, **kw)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "lists") as loaded:
        yield loaded


@pytest.fixture(scope="module")
def api(world: Loaded) -> Iterator[Api]:
    """One served API per backend for the whole module."""
    keys = {
        "public": create_key(world.engine, "public", None, "anyone"),
        "regulator": create_key(world.engine, "regulator", None, "credit office"),
        "admin": create_key(world.engine, "admin", None, "administrator"),
        "department": create_key(world.engine, "department", "tax", "tax office"),
    }
    log = world.data_dir / "uvicorn-lists.log"
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client,
    ):
        yield Api(world, client, keys)


def _companies(world: Loaded, n: int, entity_type: str = "enterprise", known_by: date | None = None,
               exclude: Collection[str] = ()) -> list[str]:  # fmt: skip
    """Active served companies of the type, registered by `known_by`, without any list record
    or list entry (nor in `exclude`): their listings are the tests' own."""
    categories = ", ".join(f"'{c}'" for c in LIST_CATEGORIES)
    with world.store.connect() as con:
        rows = con.execute(
            "WITH v AS (SELECT uscc, min(recorded_date) AS first, "
            " arg_max(struct_pack(s := status, t := entity_type), "
            "         struct_pack(d := recorded_date, b := batch_id)) AS e "
            " FROM entities GROUP BY uscc) "
            "SELECT uscc FROM v WHERE e.s = 'active' AND e.t = ? AND first <= ? "
            f"AND uscc NOT IN (SELECT uscc FROM records WHERE category IN ({categories})) "
            "ORDER BY uscc",
            [entity_type, known_by or date(2025, 1, 1)],
        ).fetchall()
    with world.engine.connect() as con:
        taken = set(con.execute(sa.select(list_entries.c.uscc)).scalars())
        served = set(con.execute(sa.select(companies.c.uscc)).scalars())
    found = [u for (u,) in rows if u not in taken and u in served and u not in exclude]
    assert len(found) >= n, f"only {len(found)} clean {entity_type} companies"
    return found[:n]


def _flag(world: Loaded, uscc: str, day: date, name: str = "on_serious_dishonest_list") -> int:
    return int(build_features(world.store, day, [uscc]).to_pylist()[0][name] or 0)


def _tier(api: Api, uscc: str) -> str | None:
    doc = api.call("GET", f"/v1/companies/{uscc}", "regulator").json()
    return (doc.get("tier") or {}).get("tier")


def _serious(api: Api, uscc: str) -> httpx.Response:
    return api.call("POST", "/v1/list-entries", "regulator", json={
        "uscc": uscc, "list": "serious_dishonest_list", "legal_basis": SERIOUS_BASIS,
        "reason": "吊销营业执照", "source_records": [],
    })  # fmt: skip


def test_serious_dishonest_listing_with_objection_veto_and_earliest_removal(api: Api) -> None:
    world, today = api.world, china_today()
    yesterday = today - timedelta(days=1)
    (uscc,) = _companies(world, 1)

    proposed = _serious(api, uscc)
    assert proposed.status_code == 201, proposed.text
    entry = proposed.json()
    assert entry["status"] == "notified" and entry["listed_on"] is None
    due = workdays.add_working_days(today, 5)
    assert entry["objection_due"] == due.isoformat()
    case = entry["id"]
    assert _serious(api, uscc).json()["code"] == "already_open"

    early = api.call("POST", f"/v1/list-entries/{case}/listing", "regulator", json={})
    assert early.status_code == 409 and early.json()["code"] == "objection_window_open"
    assert due.isoformat() in early.json()["message"]

    for who in ("public", "department"):  # only the company itself (or an authority)
        denied = api.call("POST", f"/v1/list-entries/{case}/objection", who,
                          json={"reason": "x"})  # fmt: skip
        assert denied.status_code == 403, (who, denied.text)
    objected = api.call("POST", f"/v1/list-entries/{case}/objection", f"company:{uscc}",
                        json={"reason": "处罚决定正在行政复议中"})  # fmt: skip
    assert objected.status_code == 200, objected.text
    assert objected.json()["status"] == "objected" and "steps" not in objected.json()
    again = api.call("POST", f"/v1/list-entries/{case}/objection", f"company:{uscc}",
                     json={"reason": "再次异议"})  # fmt: skip
    assert again.status_code == 409 and again.json()["code"] == "already_objected"
    assert api.call("POST", f"/v1/list-entries/{case}/objection-decision", "department",
                    json={"upheld": False, "reason": "x"}).status_code == 403  # fmt: skip
    dismissed = api.call("POST", f"/v1/list-entries/{case}/objection-decision", "regulator",
                         json={"upheld": False, "reason": "复议维持原处罚决定"})  # fmt: skip
    assert dismissed.status_code == 200, dismissed.text
    assert dismissed.json()["status"] == "notified"
    assert dismissed.json()["objection_outcome"] == "dismissed"

    listed = api.call("POST", f"/v1/list-entries/{case}/listing", "regulator", json={})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["status"] == "listed" and body["listed_on"] == today.isoformat()
    assert body["record_id"] == f"LIST-{case}"
    # 3 and 1 calendar years (relativedelta: 29 February + 1 year is 28 February)
    assert body["term_end"] == (today + relativedelta(years=3)).isoformat()
    assert body["earliest_removal"] == (today + relativedelta(years=1)).isoformat()
    assert [s["action"] for s in body["steps"]] == [
        "proposed", "notified", "objected", "objection_dismissed", "listed",
    ]  # fmt: skip
    assert body["rescored"]["after"]["tier"] == "D", body["rescored"]

    # the listing counts from today, not before (point in time), and the veto follows
    assert _flag(world, uscc, today) == 1
    assert _flag(world, uscc, yesterday) == 0
    assert _tier(api, uscc) == "D"
    # the new score and tier went back to the regulator with the listing: a read, logged
    deadline = time.monotonic() + 10
    while True:  # the audit writer flushes in the background
        with world.engine.connect() as con:
            logged = con.execute(
                sa.select(audit_log.c.role, audit_log.c.purpose, audit_log.c.status).where(
                    audit_log.c.endpoint == "POST /v1/list-entries/{entry_id}/listing",
                    audit_log.c.uscc == uscc,
                ).order_by(audit_log.c.id)
            ).all()  # fmt: skip
        if len(logged) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # the refusal before the window (409) and the listing, each with the regulator's own purpose
    # (the listing was logged with a fixed "its score and tier after this change", the refusal
    # not at all)
    assert [tuple(r) for r in logged] == [("regulator", "list test", 409),
                                          ("regulator", "list test", 200)]  # fmt: skip
    with world.store.connect() as con:
        record = con.execute(
            "SELECT category, severity, event_date, recorded_date, attributes FROM records "
            "WHERE record_id = ?", [f"LIST-{case}"],
        ).fetchall()  # fmt: skip
    assert [r[:4] for r in record] == [("serious_dishonest_list", "listed", today, today)]
    assert json.loads(record[0][4])["legal_basis"] == SERIOUS_BASIS

    too_early = api.call("POST", f"/v1/list-entries/{case}/removal", "regulator",
                         json={"reason": "信用修复"})  # fmt: skip
    assert too_early.status_code == 409 and too_early.json()["code"] == "too_early"
    assert (today + relativedelta(years=1)).isoformat() in too_early.json()["message"]
    shown = api.call("GET", f"/v1/list-entries/{case}", "department")
    assert shown.status_code == 200 and shown.json()["status"] == "listed"
    public = api.call("GET", "/v1/public/lists", "public",
                      params={"list": "serious_dishonest_list", "limit": 1000}).json()  # fmt: skip
    assert uscc in {e["uscc"] for e in public["entries"]}


def test_a_company_reads_its_own_entries_and_no_other_companys(api: Api) -> None:
    """Told before a serious listing (DOMAIN §8), a company key reads its own company's entries,
    listed and by id, with their legal basis, reason, state, objection deadline and steps,
    without stating a purpose; who at the authorities took a step is not shown. Another
    company's entry is unknown to it (404, as an unknown id), asking for another company's
    entries is refused (403), and the public reads none."""
    own, other = _companies(api.world, 2)
    case = _serious(api, own).json()["id"]
    others = _serious(api, other).json()["id"]
    company = f"company:{own}"
    listed = api.call("GET", "/v1/list-entries", company, params={"uscc": own})
    unsaid = api.client.get("/v1/list-entries", headers={"X-API-Key": api.keys[company]})
    assert unsaid.status_code == 200, unsaid.text  # no X-Purpose: its own information
    assert [e["id"] for e in unsaid.json()["entries"]] == [case]
    assert listed.status_code == 200, listed.text
    (entry,) = listed.json()["entries"]
    single = api.call("GET", f"/v1/list-entries/{case}", company)
    assert single.status_code == 200, single.text
    for shown in (entry, single.json()):
        assert (shown["id"], shown["uscc"], shown["status"]) == (case, own, "notified")
        assert shown["legal_basis"] == SERIOUS_BASIS and shown["reason"] == "吊销营业执照"
        assert shown["objection_due"] == workdays.add_working_days(china_today(), 5).isoformat()
        assert [s["action"] for s in shown["steps"]] == ["proposed", "notified"]
        assert all(s["actor"] is None for s in shown["steps"]), shown["steps"]
        assert shown["steps"][1]["detail"]["objection_due"] == shown["objection_due"]
    regulator = api.call("GET", f"/v1/list-entries/{case}", "regulator").json()
    assert regulator["steps"][0]["actor"] is not None  # the authorities see who
    # the company's own step shows its own key
    objected = api.call("POST", f"/v1/list-entries/{case}/objection", company,
                        json={"reason": "处罚决定正在行政复议中"})  # fmt: skip
    assert objected.status_code == 200, objected.text
    after = api.call("GET", f"/v1/list-entries/{case}", company).json()
    assert after["status"] == "objected" and after["objection_reason"] == "处罚决定正在行政复议中"
    assert after["steps"][-1]["action"] == "objected"
    actor = after["steps"][-1]["actor"]
    assert actor is not None and actor == _actor(api, case, "objected")

    hidden = api.call("GET", f"/v1/list-entries/{others}", company)
    unknown = api.call("GET", "/v1/list-entries/999999", company)
    assert (hidden.status_code, unknown.status_code) == (404, 404), hidden.text
    assert hidden.json() == {"code": "not_found", "message": f"no list entry {others}"}
    assert unknown.json()["code"] == "not_found" and other not in hidden.text
    asked = api.call("GET", "/v1/list-entries", company, params={"uscc": other})
    assert asked.status_code == 403 and other not in asked.text, asked.text
    assert api.call("GET", "/v1/list-entries", "public").status_code == 403
    assert api.call("GET", f"/v1/list-entries/{case}", "public").status_code == 403


def _actor(api: Api, entry_id: int, action: str) -> int | None:
    """Who took the step, as the authorities see it."""
    steps = api.call("GET", f"/v1/list-entries/{entry_id}", "regulator").json()["steps"]
    actor: int | None = next(s["actor"] for s in steps if s["action"] == action)
    return actor


def test_a_listing_of_more_than_a_year_ago_can_be_removed(api: Api) -> None:
    """Listed (by the module functions) 400 days ago: removed over HTTP today, it stops
    counting from today and still counted yesterday."""
    world, today = api.world, china_today()
    (uscc,) = _companies(world, 1)
    proposed_on = today - timedelta(days=420)
    entry = lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                          SERIOUS_BASIS, "责令关闭", today=proposed_on)  # fmt: skip
    listed_on = entry["objection_due"] + timedelta(days=1)
    entry = lists.confirm(world.engine, world.store, entry["id"], None, today=listed_on)
    assert entry["status"] == "listed" and entry["earliest_removal"] < today
    assert _flag(world, uscc, today) == 1

    removed = api.call("POST", f"/v1/list-entries/{entry['id']}/removal", "regulator",
                       json={"reason": "完成信用修复，提前移出"})  # fmt: skip
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert body["status"] == "removed" and body["removed_on"] == today.isoformat()
    assert body["removal_record_id"] == f"LIST-{entry['id']}-REMOVED"
    assert "after" in body["rescored"], body["rescored"]
    assert _flag(world, uscc, today) == 0
    assert _flag(world, uscc, today - timedelta(days=1)) == 1
    twice = api.call("POST", f"/v1/list-entries/{entry['id']}/removal", "regulator",
                     json={"reason": "again"})  # fmt: skip
    assert twice.status_code == 409 and twice.json()["code"] == "not_listed"


def test_an_upheld_objection_rejects_and_a_late_one_is_refused(api: Api) -> None:
    world, today = api.world, china_today()
    upheld_uscc, late_uscc = _companies(world, 2)

    case = _serious(api, upheld_uscc).json()["id"]
    assert api.call("POST", f"/v1/list-entries/{case}/objection", f"company:{upheld_uscc}",
                    json={"reason": "处罚已被撤销"}).status_code == 200  # fmt: skip
    decided = api.call("POST", f"/v1/list-entries/{case}/objection-decision", "regulator",
                       json={"upheld": True, "reason": "处罚决定已撤销"})  # fmt: skip
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    assert decided.json()["objection_outcome"] == "upheld"
    never = api.call("POST", f"/v1/list-entries/{case}/listing", "regulator", json={})
    assert never.status_code == 409 and never.json()["code"] == "not_notified"
    assert decided.json()["record_id"] is None and _flag(world, upheld_uscc, today) == 0

    # notified a month ago: its 5 working days are over
    late = lists.propose(world.engine, world.store, late_uscc, "serious_dishonest_list",
                         SERIOUS_BASIS, "从业禁止", today=today - timedelta(days=30))  # fmt: skip
    refused = api.call("POST", f"/v1/list-entries/{late['id']}/objection", f"company:{late_uscc}",
                       json={"reason": "逾期异议"})  # fmt: skip
    assert refused.status_code == 409 and refused.json()["code"] == "objection_window_closed"
    assert late["objection_due"].isoformat() in refused.json()["message"]

    public = api.call("GET", "/v1/public/lists", "public", params={"limit": 1000}).json()
    shown = {e["uscc"] for e in public["entries"]}
    assert upheld_uscc not in shown and late_uscc not in shown


def test_the_objection_decision_says_accepted_or_dismissed(api: Api) -> None:
    """`decision: accepted` means the objection wins (the entry is rejected), `dismissed` that
    the entry stands; the older `upheld` is still taken, is marked deprecated, and must agree
    with `decision` when both are given (422 otherwise, nothing decided)."""
    accepted_uscc, dismissed_uscc, both_uscc = _companies(api.world, 3)
    cases = {}
    for uscc in (accepted_uscc, dismissed_uscc, both_uscc):
        cases[uscc] = _serious(api, uscc).json()["id"]
        objected = api.call("POST", f"/v1/list-entries/{cases[uscc]}/objection",
                            f"company:{uscc}", json={"reason": "处罚决定已撤销"})  # fmt: skip
        assert objected.status_code == 200, objected.text

    def decide(uscc: str, **body: Any) -> httpx.Response:
        return api.call("POST", f"/v1/list-entries/{cases[uscc]}/objection-decision",
                        "regulator", json={"reason": "经核查", **body})  # fmt: skip

    for body, word in (({"decision": "accepted", "upheld": False}, "disagree"),
                       ({"decision": "dismissed", "upheld": True}, "disagree"),
                       ({}, "decision"), ({"decision": "upheld"}, "decision")):  # fmt: skip
        refused = decide(both_uscc, **body)
        assert refused.status_code == 422, (body, refused.text)
        assert word in refused.json()["message"], (body, refused.text)
    still = api.call("GET", f"/v1/list-entries/{cases[both_uscc]}", "regulator").json()
    assert (still["status"], still["objection_decision"]) == ("objected", None)

    accepted = decide(accepted_uscc, decision="accepted")
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert (body["status"], body["objection_decision"]) == ("rejected", "accepted")
    assert body["objection_outcome"] == "upheld" and body["record_id"] is None
    assert body["steps"][-1]["detail"]["decision"] == "accepted"
    dismissed = decide(dismissed_uscc, decision="dismissed", upheld=False)
    assert dismissed.status_code == 200, dismissed.text
    assert (dismissed.json()["status"], dismissed.json()["objection_decision"]) == (
        "notified", "dismissed",
    )  # fmt: skip
    legacy = decide(both_uscc, upheld=True)  # the deprecated field alone: accepted
    assert legacy.status_code == 200, legacy.text
    assert (legacy.json()["status"], legacy.json()["objection_decision"]) == (
        "rejected", "accepted",
    )  # fmt: skip

    schema = api.client.get("/openapi.json").json()["components"]["schemas"]
    fields = schema["ObjectionDecisionIn"]["properties"]
    assert fields["upheld"].get("deprecated") is True, fields["upheld"]
    assert "deprecated" not in fields["decision"]
    assert "accepted" in json.dumps(fields["decision"]) and "dismissed" in json.dumps(
        fields["decision"]
    )  # fmt: skip


def test_the_abnormal_operation_list_lists_at_once_and_removes_once_cured(api: Api) -> None:
    world, today = api.world, china_today()
    (uscc,) = _companies(world, 1)
    body = {"uscc": uscc, "list": "abnormal_operation_list", "legal_basis": lists.BASIS_ABNORMAL,
            "reason": "通过登记的住所无法联系"}  # fmt: skip
    missing = api.call("POST", "/v1/list-entries", "regulator", json=body)
    assert missing.status_code == 422 and missing.json()["code"] == "ground_required"
    assert api.call("POST", "/v1/list-entries", "department",
                    json={**body, "ground": "unreachable"}).status_code == 403  # fmt: skip
    answer = api.call(
        "POST", "/v1/list-entries", "regulator", json={**body, "ground": "unreachable"}
    )
    assert answer.status_code == 201, answer.text
    entry = answer.json()
    assert entry["status"] == "listed" and entry["objection_due"] is None
    assert entry["term_end"] is None and entry["earliest_removal"] is None
    assert entry["ground"] == "unreachable"
    assert entry["rescored"]["after"]["tier"] in ("C", "D"), entry["rescored"]
    assert _flag(world, uscc, today, "on_abnormal_list") == 1
    assert _tier(api, uscc) in ("C", "D")
    with world.store.connect() as con:
        (attributes,) = con.execute(
            "SELECT attributes FROM records WHERE record_id = ?", [entry["record_id"]]
        ).fetchone() or (None,)  # fmt: skip
    assert json.loads(attributes)["reason"] == "unreachable"

    removed = api.call("POST", f"/v1/list-entries/{entry['id']}/removal", "regulator",
                       json={"reason": "已恢复联系，申请移出"})  # fmt: skip
    assert removed.status_code == 200 and removed.json()["status"] == "removed", removed.text
    assert _flag(world, uscc, today, "on_abnormal_list") == 0
    assert _flag(world, uscc, today - timedelta(days=1), "on_abnormal_list") == 0


def test_the_objection_window_is_5_working_days_across_holidays(world: Loaded) -> None:
    """Notified on Tuesday 2025-09-30: 1–8 October are the National Day holidays and Saturday
    11 October a make-up working day, so the days are 9, 10, 11, 13 and 14 October. Notified on
    Friday 2026-02-13: Saturday 14 February is a make-up working day, 15–23 February the Spring
    Festival, so the days are 14, 24, 25, 26 and 27 February."""
    cn = holidays.country_holidays("CN", years=[2025, 2026])
    assert all(not cn.is_working_day(date(2025, 10, d)) for d in range(1, 9))
    assert cn.is_working_day(date(2025, 10, 11)) and cn.is_working_day(date(2025, 9, 28))
    assert all(not cn.is_working_day(date(2026, 2, d)) for d in range(15, 24))
    assert cn.is_working_day(date(2026, 2, 14))

    national_day, spring, late = _companies(world, 3, known_by=date(2025, 9, 30))
    entry = lists.propose(world.engine, world.store, national_day, "serious_dishonest_list",
                          SERIOUS_BASIS, "吊销许可证", today=date(2025, 9, 30))  # fmt: skip
    assert entry["objection_due"] == date(2025, 10, 14)
    assert entry["steps"][1]["detail"]["objection_due"] == "2025-10-14"
    with pytest.raises(lists.ListConflict, match="2025-10-14") as early:
        lists.confirm(world.engine, world.store, entry["id"], None, today=date(2025, 10, 14))
    assert early.value.code == "objection_window_open"
    listed = lists.confirm(world.engine, world.store, entry["id"], None, today=date(2025, 10, 15))
    assert listed["listed_on"] == date(2025, 10, 15)
    assert listed["term_end"] == date(2028, 10, 15)  # 3 years, not 1,095 days (2028 is a leap year)
    assert listed["earliest_removal"] == date(2026, 10, 15)

    entry = lists.propose(world.engine, world.store, spring, "serious_dishonest_list",
                          SERIOUS_BASIS, "责令关闭", today=date(2026, 2, 13))  # fmt: skip
    assert entry["objection_due"] == date(2026, 2, 27)
    objected = lists.object_to(world.engine, entry["id"], "异议", None, today=date(2026, 2, 27))
    assert objected["status"] == "objected"

    entry = lists.propose(world.engine, world.store, late, "serious_dishonest_list",
                          SERIOUS_BASIS, "从业禁止", today=date(2026, 2, 13))  # fmt: skip
    with pytest.raises(lists.ListConflict) as closed:
        lists.object_to(world.engine, entry["id"], "异议", None, today=date(2026, 2, 28))
    assert closed.value.code == "objection_window_closed"


def test_the_commands_show_list_confirm_and_remove(world: Loaded) -> None:
    (uscc,) = _companies(world, 1)
    today = china_today()
    month_ago = today - timedelta(days=30)
    entry = lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                          SERIOUS_BASIS, "吊销许可证", today=month_ago)  # fmt: skip
    runner = CliRunner()
    env = {"CREDSUP_DATA_DIR": str(world.data_dir), "DATABASE_URL": world.url,
           "CREDSUP_DATABASE_URL": None, "MLFLOW_TRACKING_URI": None}  # fmt: skip

    def credsup(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, ["lists", *args, "--purpose", "list test", "--json"], env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return json.loads(result.stdout) if code == 0 else None

    confirmed = credsup("confirm", str(entry["id"]), "--no-rescore")
    assert confirmed["status"] == "listed" and confirmed["listed_on"] == today.isoformat()
    shown = credsup("show", str(entry["id"]))
    assert [s["action"] for s in shown["steps"]] == ["proposed", "notified", "listed"]
    found = credsup("list", "--uscc", uscc, "--status", "listed")
    assert [e["id"] for e in found["entries"]] == [entry["id"]]
    credsup("remove", str(entry["id"]), "--reason", "提前移出", "--no-rescore", code=1)
    assert credsup("list", "--uscc", uscc, "--status", "removed")["entries"] == []
    # no such entry: a wrong id (exit 2, one line), not a refusal to wait out (exit 1)
    for command in (["show", "999999"], ["confirm", "999999", "--no-rescore"],
                    ["remove", "999999", "--reason", "x", "--no-rescore"]):  # fmt: skip
        result = runner.invoke(app, ["lists", *command, "--purpose", "list test"], env=env)
        assert result.exit_code == 2, (command, result.stdout, result.stderr, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "no list entry 999999" in lines[0], (command, result.stderr)


def test_derive_lists_missing_annual_reports_and_notifies_heavy_penalties(api: Api) -> None:
    world = api.world
    # a clean A-grade taxpayer the simulator did not put on the red list: no negative record
    # and no grade of its own (whichever companies other tests took before)
    with world.store.connect() as con:
        unclean = {u for (u,) in con.execute(
            "SELECT DISTINCT uscc FROM records WHERE category = 'tax_credit_grade' OR "
            f"({lists._negative_sql(default_catalogue())})").fetchall()}  # fmt: skip
    (clean,) = _companies(world, 1, known_by=date(2024, 1, 1), exclude=unclean)
    grade = pa.table({
        "record_id": ["TEST-TCG-RED"], "uscc": [clean], "category": ["tax_credit_grade"],
        "event_date": ["2025-04-15"], "recorded_date": ["2025-04-15"], "source_dept": ["tax"],
        "severity": ["A"], "amount": ["95"], "attributes": ['{"year": 2024}'],
    })  # fmt: skip
    stored = ingest_table(world.store, grade, "records", "tax", today=date(2025, 4, 15))
    assert stored.stored == 1, stored.by_reason
    # a social organisation files no annual report with market regulation: a "missing" one sent
    # for it puts it on no abnormal-operation list
    (social,) = _companies(world, 1, "social_organisation", known_by=date(2024, 1, 1))
    report = pa.table({
        "record_id": ["TEST-AR-SOCIAL"], "uscc": [social], "category": ["annual_report"],
        "event_date": ["2025-07-01"], "recorded_date": ["2025-07-01"], "source_dept": ["samr"],
        "severity": ["missing"], "amount": [None], "attributes": ['{"year": 2024}'],
    })  # fmt: skip
    stored = ingest_table(world.store, report, "records", "samr", today=date(2025, 7, 1))
    assert stored.stored == 1, stored.by_reason

    derived = lists.derive(world.engine, world.store, DERIVE_DAY, today=DERIVE_DAY)
    counts = derived["proposed"]
    assert derived["report_year"] == 2024
    assert counts["abnormal_operation_list"] > 0, derived
    assert counts["serious_dishonest_list"] + counts["red_list"] > 0, derived
    assert derived["listed"] == counts["abnormal_operation_list"] + counts["red_list"]
    with world.engine.connect() as con:
        rows = con.execute(
            sa.select(list_entries).where(list_entries.c.proposed_on == DERIVE_DAY)
        ).mappings().all()  # fmt: skip
    red = [r for r in rows if r["list"] == "red_list"]
    assert [r["uscc"] for r in red] == [clean] and json.loads(red[0]["source_records"]) == [
        "TEST-TCG-RED"
    ]
    notified = [r for r in rows if r["list"] == "serious_dishonest_list"]
    assert all(r["status"] == "notified" and r["objection_due"] for r in notified)
    assert all(r["legal_basis"] == lists.BASIS_SERIOUS for r in notified)

    # every entry listed at once has its listing record, on the day, from the records it cites
    at_once = {r["record_id"]: r for r in rows if r["status"] == "listed"}
    assert len(at_once) == derived["listed"]
    with world.store.connect() as con:
        stored_rows = con.execute(
            "SELECT record_id, uscc, category, severity, event_date FROM records "
            "WHERE record_id IN (SELECT unnest(?))", [list(at_once)],
        ).fetchall()  # fmt: skip
    assert {r[0] for r in stored_rows} == set(at_once)
    for record_id, uscc, category, severity, event_date in stored_rows:
        entry = at_once[record_id]
        assert (uscc, category, severity, event_date) == (
            entry["uscc"], entry["list"], "listed", DERIVE_DAY
        )  # fmt: skip
    abnormal = next(r for r in rows if r["list"] == "abnormal_operation_list")
    assert _flag(world, abnormal["uscc"], DERIVE_DAY, "on_abnormal_list") == 1
    assert social not in {r["uscc"] for r in rows}
    assert _flag(world, clean, DERIVE_DAY, "on_red_list") == 1

    again = lists.derive(world.engine, world.store, DERIVE_DAY, today=DERIVE_DAY)
    assert again["proposed"] == {k: 0 for k in counts}, again

    assert api.call("POST", "/v1/list-entries:derive", "regulator",
                    json={"as_of": DERIVE_DAY.isoformat()}).status_code == 403  # fmt: skip
    over_http = api.call("POST", "/v1/list-entries:derive", "admin",
                         json={"as_of": china_today().isoformat()})  # fmt: skip
    assert over_http.status_code == 200, over_http.text
    assert set(over_http.json()["proposed"]) == set(counts)


def test_public_lists_roles_and_the_append_only_trail(api: Api) -> None:
    world = api.world
    public = api.call("GET", "/v1/public/lists", "public",
                      params={"list": "abnormal_operation_list", "limit": 1000})  # fmt: skip
    assert public.status_code == 200, public.text
    shown = public.json()["entries"]
    assert shown and {e["list"] for e in shown} == {"abnormal_operation_list"}
    assert all("reason" not in e for e in shown)
    with world.engine.connect() as con:
        states = dict(con.execute(sa.select(list_entries.c.id, list_entries.c.status)).all())
        by_uscc = con.execute(
            sa.select(list_entries.c.uscc, list_entries.c.status)
            .where(list_entries.c.list == "abnormal_operation_list")
        ).all()  # fmt: skip
    listed = {u for u, s in by_uscc if s == "listed"}
    # one source: the entries listed here and the listings departments sent, as the features
    # (and so the tiers and the company pages) have them today
    today = china_today()
    on_list = {r["uscc"] for r in build_features(world.store, today).to_pylist()
               if r["on_abnormal_list"]}  # fmt: skip
    assert listed <= {e["uscc"] for e in shown} == on_list
    assert len(shown) == len({e["record_id"] for e in shown})
    everything = api.call("GET", "/v1/public/lists", "public", params={"limit": 1000}).json()
    with world.engine.connect() as con:
        pairs = con.execute(
            sa.select(list_entries.c.uscc, list_entries.c.list, list_entries.c.status)
        ).all()  # fmt: skip
    hidden = {(u, x) for u, x, s in pairs if s in ("notified", "objected", "rejected")}
    hidden -= {(u, x) for u, x, s in pairs if s == "listed"}
    assert hidden, "proposals and rejections to keep out of the public lists"
    assert not {(e["uscc"], e["list"]) for e in everything["entries"]} & hidden
    individual = [e for e in shown if e["entity_type"] == "individual_business"]
    assert individual, "the derived abnormal-operation list holds individual businesses"
    with world.store.connect() as con:
        names = dict(con.execute(
            "SELECT uscc, arg_max(name, struct_pack(d := recorded_date, b := batch_id)) "
            "FROM entities WHERE uscc IN (SELECT unnest(?)) GROUP BY uscc",
            [[e["uscc"] for e in individual]],
        ).fetchall())  # fmt: skip
    for e in individual:
        assert e["name"] == mask_name(names[e["uscc"]]) and e["name"] != names[e["uscc"]]

    any_id = next(iter(states))
    assert api.call("GET", f"/v1/list-entries/{any_id}", "public").status_code == 403
    assert api.call("GET", "/v1/list-entries", "public").status_code == 403
    # a department reads a published entry (one on the public list: the first row the database
    # returns may be a proposal, which it does not see)
    with world.engine.connect() as con:
        published = con.execute(
            sa.select(list_entries.c.id)
            .where(list_entries.c.record_id.in_([e["record_id"] for e in shown]))
            .order_by(list_entries.c.id)
        ).scalars().first()  # fmt: skip
    assert published is not None
    assert api.call("GET", f"/v1/list-entries/{published}", "department").status_code == 200
    page = api.call("GET", "/v1/list-entries", "regulator",
                    params={"status": "listed", "list": "abnormal_operation_list"})  # fmt: skip
    assert page.status_code == 200 and all(e["status"] == "listed" for e in page.json()["entries"])
    assert api.call("GET", "/v1/list-entries/999999", "regulator").status_code == 404

    with world.engine.connect() as con:
        logged = set(con.execute(
            sa.select(lifecycle_log.c.case_id).where(lifecycle_log.c.case_type == "list")
        ).scalars())  # fmt: skip
    assert set(states) <= logged
    with pytest.raises(sa.exc.DBAPIError), world.engine.begin() as con:
        con.execute(lifecycle_log.delete().where(lifecycle_log.c.case_type == "list"))


def test_a_department_listing_is_published_flagged_under_objection_and_unpublished(
    api: Api,
) -> None:
    """A listing a department sends as a record is on the public list like an entry made here
    (one source: the record store); an objection to it is flagged there; a "stop publishing"
    decision takes it off; every company shown is a line in the audit log."""
    world, today = api.world, china_today()
    (uscc,) = _companies(world, 1)
    listing = pa.table({
        "record_id": ["TEST-AOL-DEPT"], "uscc": [uscc], "category": ["abnormal_operation_list"],
        "event_date": [today.isoformat()], "recorded_date": [today.isoformat()],
        "source_dept": ["samr"], "severity": ["listed"], "amount": [None],
        "attributes": ['{"reason": "unreachable"}'],
    })  # fmt: skip
    stored = ingest_table(world.store, listing, "records", "samr", today=today)
    assert stored.stored == 1, stored.by_reason

    def entry() -> dict[str, Any] | None:
        got = api.call("GET", "/v1/public/lists", "public",
                       params={"list": "abnormal_operation_list", "limit": 1000})  # fmt: skip
        assert got.status_code == 200, got.text
        return next((e for e in got.json()["entries"] if e["record_id"] == "TEST-AOL-DEPT"), None)

    shown = entry()
    assert shown is not None
    assert (shown["uscc"], shown["source_dept"], shown["listed_on"], shown["objection_open"]) == (
        uscc,
        "samr",
        today.isoformat(),
        False,
    )
    assert shown["legal_basis"] == lists.BASIS_ABNORMAL and "reason" not in shown

    objection = {"record_id": "TEST-AOL-DEPT", "reason": "已在住所地正常经营"}
    filed = api.call("POST", "/v1/objections", f"company:{uscc}", json=objection)
    assert filed.status_code == 201, filed.text
    assert (entry() or {}).get("objection_open") is True
    decided = api.call(
        "POST", f"/v1/objections/{filed.json()['id']}/decision", "regulator",
        json={"outcome": "stop_publishing", "reason": "核实后停止公示"},
    )  # fmt: skip
    assert decided.status_code == 200, decided.text
    assert entry() is None

    deadline = time.monotonic() + 10
    while True:  # the audit writer flushes in the background
        with world.engine.connect() as con:
            logged = con.execute(
                sa.select(sa.func.count()).select_from(audit_log).where(
                    audit_log.c.endpoint == "GET /v1/public/lists", audit_log.c.uscc == uscc
                )
            ).scalar_one()  # fmt: skip
        if logged >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logged >= 2
    with world.engine.connect() as con:  # with the purpose sent (once dropped)
        purposes = con.execute(
            sa.select(audit_log.c.purpose).distinct().where(
                audit_log.c.endpoint == "GET /v1/public/lists", audit_log.c.uscc == uscc
            )
        ).scalars().all()  # fmt: skip
    assert purposes == ["list test"]


def _entries(world: Loaded, uscc: str) -> list[dict[str, Any]]:
    with world.engine.connect() as con:
        return [dict(r) for r in con.execute(
            sa.select(list_entries).where(list_entries.c.uscc == uscc).order_by(list_entries.c.id)
        ).mappings()]  # fmt: skip


def _last_id(world: Loaded) -> int:
    with world.engine.connect() as con:
        return int(con.execute(sa.select(sa.func.max(list_entries.c.id))).scalar() or 0)


def _published(world: Loaded, uscc: str, today: date) -> list[str]:
    """The record ids of the company's listings on the public lists today."""
    shown, _ = lists.public_page(world.engine, world.store, limit=10**7, today=today)
    return [e["record_id"] for e in shown if e["uscc"] == uscc]


def _stored(world: Loaded, record_id: str) -> tuple[str, dict[str, Any]]:
    """The company and attributes of a stored record (one stored version)."""
    with world.store.connect() as con:
        found = con.execute(
            "SELECT DISTINCT uscc, attributes FROM records WHERE record_id = ?", [record_id]
        ).fetchall()
    assert len(found) == 1, (record_id, found)
    return found[0][0], json.loads(found[0][1])


def _unreachable(world: Loaded, uscc: str, today: date) -> dict[str, Any]:
    return lists.propose(world.engine, world.store, uscc, "abnormal_operation_list",
                         lists.BASIS_ABNORMAL, "通过登记的住所无法联系", ground="unreachable",
                         today=today)  # fmt: skip


def test_a_failed_listing_lists_nobody_and_the_next_listing_works(
    world: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing whose database work fails, before or at its commit, leaves the company off the
    list in both stores. The next listing, which SQLite gives the rolled-back entry id again,
    lists its company with a record of its own, and its removal ends that listing."""
    today = china_today()
    first, second = _companies(world, 2)
    before = _last_id(world)

    failing_log(monkeypatch, "listed")
    with pytest.raises(RuntimeError, match="injected"):
        _unreachable(world, first, today)
    monkeypatch.undo()
    assert _entries(world, first) == [] and _last_id(world) == before
    assert _flag(world, first, today, "on_abnormal_list") == 0
    assert _published(world, first, today) == []

    with failing_commit(world.engine), pytest.raises(RuntimeError, match="injected"):
        _unreachable(world, first, today)
    assert _entries(world, first) == [] and _last_id(world) == before
    assert _flag(world, first, today, "on_abnormal_list") == 0
    assert _published(world, first, today) == []

    entry = _unreachable(world, second, today)
    if world.engine.dialect.name == "sqlite":
        assert entry["id"] == before + 1  # the id of the listings that were rolled back
    assert entry["status"] == "listed" and entry["record_id"].startswith(f"LIST-{entry['id']}")
    uscc, attributes = _stored(world, entry["record_id"])
    assert (uscc, attributes["entry_id"]) == (second, entry["id"])
    assert _flag(world, second, today, "on_abnormal_list") == 1
    assert _published(world, second, today) == [entry["record_id"]]
    assert _flag(world, first, today, "on_abnormal_list") == 0
    assert _published(world, first, today) == []
    assert [s["detail"].get("record_id") for s in entry["steps"] if s["action"] == "listed"] == [
        entry["record_id"]
    ]

    removed = lists.remove(world.engine, world.store, entry["id"], "已恢复联系", None, today)
    assert removed["removal_record_id"] == f"{entry['record_id']}-REMOVED"
    assert _stored(world, removed["removal_record_id"])[1]["ref"] == entry["record_id"]
    assert _flag(world, second, today, "on_abnormal_list") == 0
    assert _published(world, second, today) == []

    again = _unreachable(world, first, today)
    assert again["status"] == "listed" and _flag(world, first, today, "on_abnormal_list") == 1


def test_a_failed_confirmation_leaves_the_entry_notified_and_confirming_again_lists_it(
    world: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A confirmation whose commit fails leaves the entry notified and the company off the
    serious dishonest list. One whose clean-up did not happen either (as if the process died)
    leaves a listing record behind: confirming again withdraws it and lists the entry with a
    record of its own, so the company is listed once."""
    today = china_today()
    (uscc,) = _companies(world, 1)
    entry = lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                          SERIOUS_BASIS, "吊销营业执照",
                          today=today - timedelta(days=30))  # fmt: skip
    case = entry["id"]

    with failing_commit(world.engine), pytest.raises(RuntimeError, match="injected"):
        lists.confirm(world.engine, world.store, case, None, today)
    left = lists.get(world.engine, case, today)
    assert (left["status"], left["record_id"], left["listed_on"]) == ("notified", None, None)
    assert _flag(world, uscc, today) == 0 and _published(world, uscc, today) == []

    monkeypatch.setattr(lists, "_withdraw_uncommitted", lambda *args: None)
    with failing_commit(world.engine), pytest.raises(RuntimeError, match="injected"):
        lists.confirm(world.engine, world.store, case, None, today)
    monkeypatch.undo()
    assert lists.get(world.engine, case, today)["status"] == "notified"
    (orphan,) = _published(world, uscc, today)  # what a process dying there leaves

    listed = lists.confirm(world.engine, world.store, case, None, today)
    assert listed["status"] == "listed" and listed["record_id"] not in (None, orphan)
    assert listed["record_id"].startswith(f"LIST-{case}-R")
    assert _stored(world, listed["record_id"])[0] == uscc
    assert _flag(world, uscc, today) == 1
    assert _published(world, uscc, today) == [listed["record_id"]]


def test_a_failed_removal_leaves_the_company_listed_and_removing_again_works(
    world: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal whose database work fails, before or at its commit, leaves the entry listed and
    the company on the list in both stores; removing again takes it off, with the removal
    record the entry names."""
    today = china_today()
    (uscc,) = _companies(world, 1)
    entry = _unreachable(world, uscc, today)
    assert _flag(world, uscc, today, "on_abnormal_list") == 1

    failing_log(monkeypatch, "removed")
    with pytest.raises(RuntimeError, match="injected"):
        lists.remove(world.engine, world.store, entry["id"], "已恢复联系", None, today)
    monkeypatch.undo()
    assert lists.get(world.engine, entry["id"], today)["status"] == "listed"
    assert _flag(world, uscc, today, "on_abnormal_list") == 1
    assert _published(world, uscc, today) == [entry["record_id"]]

    with failing_commit(world.engine), pytest.raises(RuntimeError, match="injected"):
        lists.remove(world.engine, world.store, entry["id"], "已恢复联系", None, today)
    left = lists.get(world.engine, entry["id"], today)
    assert (left["status"], left["removal_record_id"]) == ("listed", None)
    assert _flag(world, uscc, today, "on_abnormal_list") == 1
    assert _published(world, uscc, today) == [entry["record_id"]]

    removed = lists.remove(world.engine, world.store, entry["id"], "已恢复联系", None, today)
    assert removed["status"] == "removed"
    assert removed["removal_record_id"].startswith(f"{entry['record_id']}-REMOVED")
    assert _stored(world, removed["removal_record_id"])[1]["ref"] == entry["record_id"]
    assert _flag(world, uscc, today, "on_abnormal_list") == 0
    assert _published(world, uscc, today) == []


def test_a_failed_derivation_lists_nobody_and_deriving_again_lists(world: Loaded) -> None:
    """A derivation whose commit fails after the store took its listing records leaves no entry
    and nobody listed; deriving again (SQLite hands out the same entry ids) lists them."""
    today = china_today()
    year = lists.report_year_due(today)
    with world.store.connect() as con:
        filed = {u for (u,) in con.execute(
            "SELECT DISTINCT uscc FROM records WHERE category = 'annual_report' "
            "AND json_extract_string(attributes, '$.year') = ?", [str(year)],
        ).fetchall()}  # fmt: skip
    (uscc,) = _companies(world, 1, exclude=filed)
    missing = pa.table({
        "record_id": [f"TEST-AR-MISSING-{uscc}"], "uscc": [uscc], "category": ["annual_report"],
        "event_date": [today.isoformat()], "recorded_date": [today.isoformat()],
        "source_dept": ["samr"], "severity": ["missing"], "amount": [None],
        "attributes": [json.dumps({"year": year})],
    })  # fmt: skip
    assert ingest_table(world.store, missing, "records", "samr", today=today).stored == 1
    before = _last_id(world)

    with failing_commit(world.engine), pytest.raises(RuntimeError, match="injected"):
        lists.derive(world.engine, world.store, today, today=today)
    assert _last_id(world) == before and _entries(world, uscc) == []
    assert _flag(world, uscc, today, "on_abnormal_list") == 0
    assert _published(world, uscc, today) == []

    derived = lists.derive(world.engine, world.store, today, today=today)
    assert derived["proposed"]["abnormal_operation_list"] >= 1, derived
    (entry,) = _entries(world, uscc)
    assert entry["status"] == "listed" and entry["id"] > before
    assert _stored(world, entry["record_id"])[0] == uscc
    assert _flag(world, uscc, today, "on_abnormal_list") == 1
    assert _published(world, uscc, today) == [entry["record_id"]]
    with world.engine.connect() as con:
        named = con.execute(
            sa.select(list_entries.c.id, list_entries.c.record_id)
            .where(list_entries.c.id > before, list_entries.c.status == "listed")
        ).all()  # fmt: skip
    with world.store.connect() as con:
        owners = dict(con.execute(
            "SELECT record_id, any_value(json_extract(attributes, '$.entry_id')::INTEGER) "
            "FROM records WHERE record_id IN (SELECT unnest(?)) GROUP BY record_id",
            [[r for _, r in named]],
        ).fetchall())  # fmt: skip
    assert owners == {r: i for i, r in named}


def test_a_department_other_than_the_lists_own_sees_published_listings_only(api: Api) -> None:
    """A proposal is not published: the tax department neither lists nor reads it (it read
    the notified serious-dishonest proposal, its reason and source record, before)."""
    (uscc,) = _companies(api.world, 1)
    proposed = _serious(api, uscc)
    assert proposed.status_code == 201, proposed.text
    case = proposed.json()["id"]
    assert proposed.json()["status"] == "notified"
    single = api.call("GET", f"/v1/list-entries/{case}", "department")
    assert single.status_code == 403 and "not published" in single.json()["message"]
    assert api.call("GET", f"/v1/list-entries/{case}", "regulator").status_code == 200
    by_status = api.call("GET", "/v1/list-entries", "department", params={"status": "notified"})
    assert by_status.status_code == 403, by_status.text
    every = api.call("GET", "/v1/list-entries", "department", params={"limit": 1000})
    assert every.status_code == 200
    assert {e["status"] for e in every.json()["entries"]} <= {"listed"}
    assert case not in {e["id"] for e in every.json()["entries"]}
    # once listed (the objection dismissed), the department sees the listing, not the
    # company's objection, the decision, the proposer's text or the steps
    objected = api.call("POST", f"/v1/list-entries/{case}/objection", f"company:{uscc}",
                        json={"reason": "异议理由：法定代表人王某身份证号码…"})  # fmt: skip
    assert objected.status_code == 200, objected.text
    dismissed = api.call("POST", f"/v1/list-entries/{case}/objection-decision", "regulator",
                         json={"upheld": False, "reason": "驳回理由"})  # fmt: skip
    assert dismissed.status_code == 200, dismissed.text
    listed = api.call("POST", f"/v1/list-entries/{case}/listing", "regulator", json={})
    assert listed.status_code == 200, listed.text
    full = api.call("GET", f"/v1/list-entries/{case}", "regulator").json()
    assert full["objection_reason"] and full["steps"] and full["reason"]
    for shown in (api.call("GET", f"/v1/list-entries/{case}", "department").json(),
                  *(e for e in api.call("GET", "/v1/list-entries", "department",
                                        params={"uscc": uscc}).json()["entries"])):  # fmt: skip
        assert shown["id"] == case and shown["status"] == "listed"
        assert shown["term_end"] == full["term_end"] and shown["record_id"] == full["record_id"]
        assert (shown["objection_reason"], shown["objection_outcome"], shown["reason"],
                shown["source_records"], shown["steps"]) == (None, None, None, [], [])  # fmt: skip
        assert "王某" not in json.dumps(shown, ensure_ascii=False)
    # an objection to the listing record decided "stop publishing": the entry stays `listed`,
    # the listing is no longer public, and the department no longer sees it
    filed = api.call("POST", "/v1/objections", f"company:{uscc}",
                     json={"record_id": full["record_id"], "reason": "已履行"})  # fmt: skip
    assert filed.status_code == 201, filed.text
    decided = api.call("POST", f"/v1/objections/{filed.json()['id']}/decision", "regulator",
                       json={"outcome": "stop_publishing", "reason": "不再公示"})  # fmt: skip
    assert decided.status_code == 200, decided.text
    assert api.call("GET", f"/v1/list-entries/{case}", "regulator").json()["status"] == "listed"
    assert api.call("GET", f"/v1/list-entries/{case}", "department").status_code == 403
    after = api.call("GET", "/v1/list-entries", "department", params={"uscc": uscc})
    assert after.status_code == 200 and after.json()["entries"] == []


def _penalty(world: Loaded, uscc: str, record_id: str, day: date,
             types: tuple[str, ...] = ("licence_revoked",)) -> str:  # fmt: skip
    """Store a serious penalty of the company decided and recorded on `day`."""
    table = pa.table({
        "record_id": [record_id], "uscc": [uscc], "category": ["admin_penalty"],
        "event_date": [day.isoformat()], "recorded_date": [day.isoformat()],
        "source_dept": ["samr"], "severity": ["serious"], "amount": ["100000"],
        "attributes": [json.dumps({"penalty_types": list(types)})],
    })  # fmt: skip
    assert ingest_table(world.store, table, "records", "samr", today=day).stored == 1
    return record_id


def _object(world: Loaded, record_id: str, today: date, outcome: str | None = None,
            correction: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """File an objection to the record; decided the same day with `outcome`, if given."""
    case = objections.file_objection(world.engine, world.store, record_id, "处罚有误", None,
                                     None, today)  # fmt: skip
    if outcome is None:
        return case
    return objections.decide(world.engine, world.store, case["id"], outcome,  # type: ignore[arg-type]
                             "经核查", correction, None, today)  # fmt: skip


def test_a_notified_entry_is_listed_only_while_its_source_records_ground_it(
    world: Loaded,
) -> None:
    """Notified a month ago on a heavy penalty: if an objection corrected the penalty to a
    general fine meanwhile, confirming refuses (`grounds_changed`, naming the record) and the
    entry lapses, never listed; while an objection to the penalty is open, confirming waits
    (`source_under_objection`), and lists once the objection is upheld."""
    today = china_today()
    month_ago = today - timedelta(days=30)
    corrected_uscc, objected_uscc = _companies(world, 2)
    fixed = _penalty(world, corrected_uscc, f"TEST-PEN-FIXED-{corrected_uscc}", month_ago)
    objected = _penalty(world, objected_uscc, f"TEST-PEN-OBJECTED-{objected_uscc}", month_ago)
    entries = {
        uscc: lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                            SERIOUS_BASIS, "吊销许可证", [record], today=month_ago)
        for uscc, record in ((corrected_uscc, fixed), (objected_uscc, objected))
    }  # fmt: skip
    _object(
        world,
        fixed,
        today,
        "corrected",
        {"severity": "general", "attributes": {"penalty_types": ["fine"]}},
    )
    case = _object(world, objected, today)

    entry = entries[corrected_uscc]
    with pytest.raises(lists.ListConflict, match=fixed) as changed:
        lists.confirm(world.engine, world.store, entry["id"], None, today)
    assert changed.value.code == "grounds_changed"
    lapsed = lists.get(world.engine, entry["id"], today)
    assert (lapsed["status"], lapsed["record_id"], lapsed["listed_on"]) == ("rejected", None, None)
    assert [s["action"] for s in lapsed["steps"]] == ["proposed", "notified", "lapsed"]
    assert _flag(world, corrected_uscc, today) == 0

    entry = entries[objected_uscc]
    with pytest.raises(lists.ListConflict, match=objected) as waiting:
        lists.confirm(world.engine, world.store, entry["id"], None, today)
    assert waiting.value.code == "source_under_objection"
    assert lists.get(world.engine, entry["id"], today)["status"] == "notified"
    assert _flag(world, objected_uscc, today) == 0
    objections.decide(world.engine, world.store, case["id"], "upheld", "维持原处罚", None, None,
                      today)  # fmt: skip
    listed = lists.confirm(world.engine, world.store, entry["id"], None, today)
    assert listed["status"] == "listed" and _flag(world, objected_uscc, today) == 1


def test_objecting_again_to_a_decided_source_record_does_not_hold_up_the_listing(
    world: Loaded,
) -> None:
    """Notified a month ago on a heavy penalty the company objected to: once that objection is
    decided, objecting again is refused (`already_decided`), so the entry is listed instead of
    waiting (`source_under_objection`) for every new objection."""
    today = china_today()
    month_ago = today - timedelta(days=30)
    (uscc,) = _companies(world, 1, exclude=_heavy_taken(world))
    record = _penalty(world, uscc, f"TEST-PEN-AGAIN-{uscc}", month_ago)
    entry = lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                          SERIOUS_BASIS, "吊销许可证", [record], today=month_ago)  # fmt: skip
    _object(world, record, today, "upheld")
    with pytest.raises(objections.ObjectionConflict, match="was decided") as again:
        _object(world, record, today)
    assert again.value.code == "already_decided"
    listed = lists.confirm(world.engine, world.store, entry["id"], None, today)
    assert listed["status"] == "listed" and _flag(world, uscc, today) == 1


def _heavy_taken(world: Loaded) -> set[str]:
    """Companies with a serious penalty in the store: derive may list them on other grounds."""
    with world.store.connect() as con:
        return {u for (u,) in con.execute(
            "SELECT DISTINCT uscc FROM records "
            "WHERE category = 'admin_penalty' AND severity = 'serious'"
        ).fetchall()}  # fmt: skip


def _serious_entries(world: Loaded, uscc: str) -> list[dict[str, Any]]:
    return [e for e in _entries(world, uscc) if e["list"] == "serious_dishonest_list"]


def _event(world: Loaded, record_id: str, event_type: str, today: date,
           attributes: dict[str, Any]) -> None:  # fmt: skip
    """A department's event about the record, in force today."""
    done = append_events(world.store, [{"record_id": record_id, "event_type": event_type,
                                        "effective_date": today, "attributes": attributes}],
                         today=today)  # fmt: skip
    assert done.stored == 1, done.rejected


NOT_HEAVY = {"severity": "general", "attributes": {"penalty_types": ["fine"]}}


def test_a_notified_entry_is_listed_on_the_source_records_that_still_ground_it(
    world: Loaded,
) -> None:
    """Notified a month ago on two heavy penalties. One corrected to a general fine meanwhile:
    confirming lists the entry on the other, its source records narrowed to it and the step
    naming the one dropped and why. One corrected but still heavy (a closure added): the entry
    is listed on both. Deriving again proposes nothing for either: they are listed."""
    today = china_today()
    month_ago = today - timedelta(days=30)
    narrowed_uscc, heavier_uscc = _companies(world, 2, exclude=_heavy_taken(world))
    corrections = {
        narrowed_uscc: NOT_HEAVY,
        heavier_uscc: {"severity": "serious",
                       "attributes": {"penalty_types": ["licence_revoked", "closure"]}},
    }  # fmt: skip
    listed = {}
    for uscc, correction in corrections.items():
        first = _penalty(world, uscc, f"TEST-PEN-1-{uscc}", month_ago)
        second = _penalty(world, uscc, f"TEST-PEN-2-{uscc}", month_ago)
        entry = lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                              SERIOUS_BASIS, "吊销许可证", [first, second],
                              today=month_ago)  # fmt: skip
        _object(world, first, today, "corrected", correction)
        listed[uscc] = lists.confirm(world.engine, world.store, entry["id"], None, today)
        assert listed[uscc]["status"] == "listed", listed[uscc]
        assert _flag(world, uscc, today) == 1

    narrowed, heavier = listed[narrowed_uscc], listed[heavier_uscc]
    first, second = f"TEST-PEN-1-{narrowed_uscc}", f"TEST-PEN-2-{narrowed_uscc}"
    assert narrowed["source_records"] == [second]
    (entry,) = _serious_entries(world, narrowed_uscc)
    assert json.loads(entry["source_records"]) == [second]
    step = narrowed["steps"][-1]
    assert step["action"] == "listed" and step["detail"]["source_records"] == [second]
    assert list(step["detail"]["dropped"]) == [first]
    assert "no longer a heavy penalty" in step["detail"]["dropped"][first]
    assert heavier["source_records"] == [f"TEST-PEN-1-{heavier_uscc}", f"TEST-PEN-2-{heavier_uscc}"]
    assert "dropped" not in heavier["steps"][-1]["detail"]

    lists.derive(world.engine, world.store, today, today=today)
    for uscc in corrections:
        assert [e["status"] for e in _serious_entries(world, uscc)] == ["listed"]


def test_an_entry_whose_source_records_are_all_gone_lapses_without_spending_them(
    world: Loaded,
) -> None:
    """Every source record of a notified entry gone (one corrected to a general fine, one
    withdrawn): confirming lapses it, the step naming both. Deriving proposes nothing while
    nothing grounds a listing; then a new heavy penalty grounds a new proposal, and so does a
    lapsed source record that grounds a listing again (a later correction makes it heavy again):
    a lapse, unlike an upheld objection, does not spend the records."""
    today = china_today()
    month_ago = today - timedelta(days=30)
    fresh_uscc, restored_uscc = _companies(world, 2, exclude=_heavy_taken(world))
    lapsed = {}
    for uscc in (fresh_uscc, restored_uscc):
        fined = _penalty(world, uscc, f"TEST-PEN-FINED-{uscc}", month_ago)
        withdrawn = _penalty(world, uscc, f"TEST-PEN-WITHDRAWN-{uscc}", month_ago)
        entry = lists.propose(world.engine, world.store, uscc, "serious_dishonest_list",
                              SERIOUS_BASIS, "吊销许可证", [fined, withdrawn],
                              today=month_ago)  # fmt: skip
        _object(world, fined, today, "corrected", NOT_HEAVY)
        _event(world, withdrawn, "withdrawal", today, {"reason": "录入错误"})
        with pytest.raises(lists.ListConflict) as gone:
            lists.confirm(world.engine, world.store, entry["id"], None, today)
        assert gone.value.code == "grounds_changed"
        assert fined in gone.value.message and withdrawn in gone.value.message
        lapsed[uscc] = lists.get(world.engine, entry["id"], today)
        assert (lapsed[uscc]["status"], lapsed[uscc]["listed_on"]) == ("rejected", None)
        assert [s["action"] for s in lapsed[uscc]["steps"]] == ["proposed", "notified", "lapsed"]
        assert sorted(lapsed[uscc]["steps"][-1]["detail"]["dropped"]) == sorted([fined, withdrawn])
        assert _flag(world, uscc, today) == 0

    lists.derive(world.engine, world.store, today, today=today)
    for uscc in (fresh_uscc, restored_uscc):
        assert [e["status"] for e in _serious_entries(world, uscc)] == ["rejected"]

    new = _penalty(world, fresh_uscc, f"TEST-PEN-NEW-{fresh_uscc}", today, ("closure",))
    restored = f"TEST-PEN-FINED-{restored_uscc}"
    _event(
        world,
        restored,
        "correction",
        today,
        {"severity": "serious", "attributes": {"penalty_types": ["licence_revoked"]}},
    )
    lists.derive(world.engine, world.store, today, today=today)
    for uscc, grounds in ((fresh_uscc, [new]), (restored_uscc, [restored])):
        found = [(e["status"], json.loads(e["source_records"]))
                 for e in _serious_entries(world, uscc)]  # fmt: skip
        assert found == [("rejected", lapsed[uscc]["source_records"]), ("notified", grounds)]


def test_derive_does_not_bring_back_what_an_objection_undid(world: Loaded) -> None:
    """A heavy penalty whose entry was rejected on objection, and a missing annual report whose
    listing an objection removed, ground no new entry when deriving again; a penalty corrected
    to a general fine grounds none at all; a new heavy penalty is a new ground."""
    today = china_today()
    week_ago = today - timedelta(days=7)
    year = lists.report_year_due(today)
    with world.store.connect() as con:
        reported_or_penalised = {u for (u,) in con.execute(  # the test's records only
            "SELECT DISTINCT uscc FROM records WHERE (category = 'annual_report' "
            "AND json_extract_string(attributes, '$.year') = ?) "
            "OR (category = 'admin_penalty' AND severity = 'serious')", [str(year)],
        ).fetchall()}  # fmt: skip
    rejected_uscc, removed_uscc, corrected_uscc = _companies(
        world, 3, exclude=reported_or_penalised
    )
    heavy = _penalty(world, rejected_uscc, f"TEST-PEN-REJECTED-{rejected_uscc}", week_ago)
    fined = _penalty(world, corrected_uscc, f"TEST-PEN-CORRECTED-{corrected_uscc}", week_ago)
    _object(
        world,
        fined,
        week_ago,
        "corrected",
        {"severity": "general", "attributes": {"penalty_types": ["fine"]}},
    )
    missing = pa.table({
        "record_id": [f"TEST-AR-UNDONE-{removed_uscc}"], "uscc": [removed_uscc],
        "category": ["annual_report"], "event_date": [week_ago.isoformat()],
        "recorded_date": [week_ago.isoformat()], "source_dept": ["samr"],
        "severity": ["missing"], "amount": [None], "attributes": [json.dumps({"year": year})],
    })  # fmt: skip
    assert ingest_table(world.store, missing, "records", "samr", today=week_ago).stored == 1

    lists.derive(world.engine, world.store, today, today=today)
    (notified,) = _entries(world, rejected_uscc)
    (listed,) = _entries(world, removed_uscc)
    assert _entries(world, corrected_uscc) == []  # read in its corrected form
    assert (notified["status"], json.loads(notified["source_records"])) == ("notified", [heavy])
    assert listed["status"] == "listed"
    lists.object_to(world.engine, notified["id"], "处罚已被撤销", None, today)
    lists.decide_objection(world.engine, notified["id"], True, "异议成立", None, today)
    _object(world, listed["record_id"], today, "removed_from_list")
    assert lists.get(world.engine, listed["id"], today)["status"] == "removed"

    lists.derive(world.engine, world.store, today, today=today)
    assert [e["status"] for e in _entries(world, rejected_uscc)] == ["rejected"]
    assert [e["status"] for e in _entries(world, removed_uscc)] == ["removed"]
    assert _flag(world, removed_uscc, today, "on_abnormal_list") == 0
    assert _entries(world, corrected_uscc) == []

    again = _penalty(world, rejected_uscc, f"TEST-PEN-AGAIN-{rejected_uscc}", today,
                     ("closure",))  # fmt: skip
    lists.derive(world.engine, world.store, today, today=today)
    new = [e for e in _entries(world, rejected_uscc) if e["status"] == "notified"]
    assert [sorted(json.loads(e["source_records"])) for e in new] == [sorted([heavy, again])]


def test_a_record_under_objection_grounds_no_proposal_until_it_is_decided(
    world: Loaded,
) -> None:
    """A heavy penalty and a missing annual report under an open objection were proposed (the
    penalty) and listed at once (the report) by derive. They wait for the decision now: the
    objection upheld, the next derive takes them."""
    today = china_today()
    week_ago = today - timedelta(days=7)
    year = lists.report_year_due(today)
    with world.store.connect() as con:
        taken = {u for (u,) in con.execute(  # companies other tests gave such records
            "SELECT DISTINCT uscc FROM records WHERE (category = 'annual_report' "
            "AND json_extract_string(attributes, '$.year') = ?) "
            "OR (category = 'admin_penalty' AND severity = 'serious')", [str(year)],
        ).fetchall()}  # fmt: skip
    penalised, unreported = _companies(world, 2, exclude=taken)
    heavy = _penalty(world, penalised, f"TEST-PEN-OBJECTED-{penalised}", week_ago)
    missing = pa.table({
        "record_id": [f"TEST-AR-OBJECTED-{unreported}"], "uscc": [unreported],
        "category": ["annual_report"], "event_date": [week_ago.isoformat()],
        "recorded_date": [week_ago.isoformat()], "source_dept": ["samr"],
        "severity": ["missing"], "amount": [None], "attributes": [json.dumps({"year": year})],
    })  # fmt: skip
    assert ingest_table(world.store, missing, "records", "samr", today=week_ago).stored == 1
    cases = [
        _object(world, record, week_ago) for record in (heavy, f"TEST-AR-OBJECTED-{unreported}")
    ]

    lists.derive(world.engine, world.store, today, today=today)
    assert _entries(world, penalised) == [] and _entries(world, unreported) == []

    for case in cases:
        objections.decide(world.engine, world.store, case["id"], "upheld", "经核查", None, None,
                          today)  # fmt: skip
    lists.derive(world.engine, world.store, today, today=today)
    assert [e["status"] for e in _entries(world, penalised)] == ["notified"]
    assert [e["status"] for e in _entries(world, unreported)] == ["listed"]


def test_derive_from_the_command_line_lists_and_notifies_today_only(world: Loaded) -> None:
    """A past `--today` is refused: a listing record of a past day would change what was
    published for it, and a notice dated in the past would cut the company's 5 working days.
    The records of a past day are read with `--as-of`."""
    today = china_today()
    yesterday = (today - timedelta(days=1)).isoformat()
    before = _last_id(world)
    env = {"CREDSUP_DATA_DIR": str(world.data_dir), "DATABASE_URL": world.url,
           "CREDSUP_DATABASE_URL": None, "MLFLOW_TRACKING_URI": None}  # fmt: skip
    result = CliRunner().invoke(
        app, ["lists", "derive", "--as-of", yesterday, "--today", yesterday], env=env
    )
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout + result.stderr).split())
    assert result.exit_code == 2, text
    assert f"--today {yesterday} is before today ({today.isoformat()})" in text
    assert _last_id(world) == before
    result = CliRunner().invoke(
        app,
        ["lists", "derive", "--as-of", yesterday, "--today", today.isoformat(), "--json"],
        env=env,
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["today"] == today.isoformat()
