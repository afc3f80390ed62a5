"""Credit repair over HTTP against a real uvicorn process, on SQLite and PostgreSQL: an
application refused at once with its reason, one refused by the authority, one granted; the
record stops being public and counting from the approval day and not before; the steps are kept
in an append-only log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa

from features.builder import build_features
from records import publicity, workdays
from records.catalogue import default_catalogue
from records.events import append_events
from records.store import Store
from records.workdays import china_today
from serving import lifecycle, lists, objections, repairs
from serving.auth import create_key
from serving.db import credit_repairs, lifecycle_log, list_entries
from serving.spotcheck.plans import latest_load
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.pipeline import AS_OF
from tests.serving.uvicorn import running_server

World = Loaded


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "repairs") as loaded:
        yield loaded


def _candidates(store: Store, today: date, want: int = 2) -> dict[str, list[dict[str, Any]]]:
    """Records by what an application for them would get today (until `want` are eligible)."""
    with store.connect() as con:
        rows = con.sql(
            "(SELECT record_id FROM records WHERE category = 'spot_check' "
            " ORDER BY record_id LIMIT 1) UNION ALL "
            "(SELECT record_id FROM records WHERE category = 'admin_penalty' "
            " ORDER BY record_id LIMIT 300)"
        ).fetchall()
    found: dict[str, list[dict[str, Any]]] = {}
    for (record_id,) in rows:
        record = repairs.record_on(store, record_id, today)
        assert record is not None
        verdict = repairs.eligibility(store, record, today)
        found.setdefault(verdict.code or "eligible", []).append(record)
        if len(found.get("eligible", [])) >= want and found.get("not_repairable"):
            break
    return found


def _penalties(store: Store, code: str, day: date) -> tuple[int, int]:
    """The company's penalties counted on that day: (in 3 years, all time, decayed weight > 0)."""
    row = build_features(store, day, [code]).to_pylist()[0]
    return int(row["penalties_3y"] or 0), int(row["days_since_penalty"] or -1)


def _public_eligible(store: Store, today: date) -> dict[str, Any]:
    """A general penalty past its 3 months and within its year, public today and eligible."""
    with store.connect() as con:
        rows = con.execute(
            "SELECT record_id, uscc FROM records WHERE category = 'admin_penalty' "
            "AND severity = 'general' AND event_date BETWEEN ? AND ? "
            "AND record_id NOT IN (SELECT record_id FROM events) ORDER BY record_id LIMIT 200",
            [today - timedelta(days=330), today - timedelta(days=100)],
        ).fetchall()  # fmt: skip
    for record_id, uscc in rows:
        shown = publicity.records_on(store, uscc, today, now=today)
        if not any(r["record_id"] == record_id and r["public"] for r in shown):
            continue
        record = repairs.record_on(store, record_id, today)
        if record is not None and repairs.eligibility(store, record, today).eligible:
            return record
    raise AssertionError("an eligible penalty that is public today")


def test_repair_refused_at_once_refused_by_the_authority_and_granted(world: World) -> None:
    today = china_today()
    found = _candidates(world.store, today)
    assert len(found.get("eligible", [])) >= 2, {k: len(v) for k, v in found.items()}
    assert found.get("not_repairable"), "spot-check results cannot be repaired"
    # the granted record is public before, so its leaving the public view is seen
    granted = _public_eligible(world.store, today)
    refused = next(r for r in found["eligible"] if r["record_id"] != granted["record_id"])
    keys = {
        "other": create_key(world.engine, "public", None, "someone else"),
        "regulator": create_key(world.engine, "regulator", None, "credit office"),
        "department": create_key(world.engine, "department", "tax", "tax office"),
    }
    log = world.data_dir / "uvicorn-repairs.log"
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client,
    ):

        def call(method: str, path: str, who: str, **kw: Any) -> httpx.Response:
            if who.startswith("company:") and who not in keys:  # a key speaking for it
                keys[who] = create_key(world.engine, "company", None, who, who.split(":")[1])
            headers = {"X-API-Key": keys[who], "X-Purpose": "repair test"}
            return client.request(method, path, headers=headers, **kw)

        # only the company itself or an authority applies: not the public, not another company
        # (another company's key finds no such record: the owner is not named)
        for who in ("other", f"company:{refused['uscc']}" if refused["uscc"] != granted["uscc"]
                    else "department"):  # fmt: skip
            denied = call("POST", "/v1/repairs", who,
                          json={"record_id": granted["record_id"], "reason": "x"})  # fmt: skip
            another = who.startswith("company:")
            assert denied.status_code == (404 if another else 403), (who, denied.text)
            assert granted["uscc"] not in denied.text, denied.text

        # refused at once, with the reason: a conflict with the record's state, nothing stored
        spot = found["not_repairable"][0]
        answer = call("POST", "/v1/repairs", f"company:{spot['uscc']}",
                      json={"record_id": spot["record_id"], "reason": "已整改"})  # fmt: skip
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "not_repairable"
        assert spot["record_id"] in answer.json()["message"]
        assert _cases(world, spot["record_id"]) == []
        # a department reads a case only about a record it may see: its own (a tax return,
        # never public), not another department's that is never public (a complaint: the tax
        # office read that case, the company's reason with it, before). Neither can be
        # repaired: the cases are ones kept from before applications were refused unstored.
        for category, dept, expected in (("tax_declaration", "= 'tax'", 200),
                                         ("complaint", "<> 'tax'", 403)):  # fmt: skip
            with world.store.connect() as con:
                record_id, owner = con.execute(
                    f"SELECT record_id, uscc FROM records WHERE category = '{category}' "
                    f"AND source_dept {dept} AND recorded_date <= ? ORDER BY record_id LIMIT 1",
                    [today],
                ).fetchone() or (None, None)  # fmt: skip
            assert record_id is not None, category
            filed = call("POST", "/v1/repairs", f"company:{owner}",
                         json={"record_id": record_id, "reason": "已更正"})  # fmt: skip
            assert filed.status_code == 409, filed.text
            case_path = f"/v1/repairs/{_kept_case(world, record_id, today)}"
            read = call("GET", case_path, "department")
            assert read.status_code == expected, (category, read.text)
            assert call("GET", case_path, "regulator").status_code == 200
        assert (
            call(
                "POST",
                "/v1/repairs",
                "regulator",
                json={"record_id": "NO-SUCH-RECORD", "reason": "x"},
            ).status_code
            == 404
        )

        # applied, then refused by the authority
        answer = call(
            "POST",
            "/v1/repairs",
            "regulator",  # on the company's behalf
            json={"record_id": refused["record_id"], "reason": "已缴纳罚款"},
        )
        assert answer.status_code == 201 and answer.json()["status"] == "pending", answer.text
        case = answer.json()["id"]
        no = call("POST", f"/v1/repairs/{case}/decision", "regulator",
                  json={"approve": False, "reason": "危害后果未消除"})  # fmt: skip
        assert no.status_code == 200 and no.json()["status"] == "refused", no.text
        assert no.json()["refusal_code"] == "refused_by_authority"

        # not decided within its 3 working days: overdue, listed as such for the authorities
        month_ago = today - timedelta(days=30)
        late_record = next(
            r for r in _candidates(world.store, month_ago, want=5).get("eligible", [])
            if r["record_id"] not in (granted["record_id"], refused["record_id"])
        )  # fmt: skip
        late = repairs.apply(world.engine, world.store, late_record["record_id"], "已整改", None,
                             today=month_ago)  # fmt: skip
        assert late["status"] == "pending" and late["overdue"] is True, late
        shown = call("GET", f"/v1/repairs/{late['id']}", "regulator").json()
        assert shown["overdue"] is True and shown["due_date"] < today.isoformat()
        overdue = call("GET", "/v1/repairs/overdue", "regulator")
        assert overdue.status_code == 200, overdue.text
        assert late["id"] in [r["id"] for r in overdue.json()["repairs"]]
        assert all(r["overdue"] and r["status"] == "pending" for r in overdue.json()["repairs"])
        assert case not in [r["id"] for r in overdue.json()["repairs"]]  # decided
        for who in ("department", f"company:{late_record['uscc']}", "other"):
            assert call("GET", "/v1/repairs/overdue", who).status_code == 403, who
        unsaid = client.get("/v1/repairs/overdue", headers={"X-API-Key": keys["regulator"]})
        assert unsaid.status_code == 400 and unsaid.json()["code"] == "purpose_required"
        decided_late = call("POST", f"/v1/repairs/{late['id']}/decision", "regulator",
                            json={"approve": False, "reason": "材料不全"})  # fmt: skip
        assert decided_late.status_code == 200, decided_late.text
        assert decided_late.json()["overdue"] is False
        assert decided_late.json()["steps"][-1]["detail"]["late"] is True
        overdue = call("GET", "/v1/repairs/overdue", "regulator").json()["repairs"]
        assert late["id"] not in [r["id"] for r in overdue]

        # applied and granted
        yesterday_date = today - timedelta(days=1)
        before = _penalties(world.store, granted["uscc"], today)
        before_yesterday = _penalties(world.store, granted["uscc"], yesterday_date)
        answer = call(
            "POST",
            "/v1/repairs",
            f"company:{granted['uscc']}",
            json={"record_id": granted["record_id"], "reason": "已整改并缴纳罚款"},
        )
        body = answer.json()
        assert answer.status_code == 201 and body["status"] == "pending", answer.text
        assert body["due_date"] == workdays.add_working_days(today, 3).isoformat()
        assert body["overdue"] is False
        case = body["id"]
        again = call(
            "POST",
            "/v1/repairs",
            f"company:{granted['uscc']}",
            json={"record_id": granted["record_id"], "reason": "again"},
        )
        assert again.status_code == 409 and again.json()["code"] == "pending", again.text
        assert f"application {case}" in again.json()["message"]
        assert [c for c in _cases(world, granted["record_id"])] == [case]
        assert call("GET", f"/v1/repairs/{case}", f"company:{granted['uscc']}").status_code == 200
        assert call("GET", f"/v1/repairs/{case}", "other").status_code == 403
        # another company's key: unknown, as another company's record is (not said to exist)
        stranger = next(f"company:{r['uscc']}" for v in found.values() for r in v
                        if r["uscc"] != granted["uscc"])  # fmt: skip
        hidden = call("GET", f"/v1/repairs/{case}", stranger)
        assert hidden.status_code == 404, hidden.text
        assert hidden.json() == {"code": "not_found", "message": f"no repair application {case}"}
        assert call("GET", "/v1/repairs/999999", stranger).json() == {
            "code": "not_found", "message": "no repair application 999999",
        }  # fmt: skip
        assert (
            call(
                "POST",
                f"/v1/repairs/{case}/decision",
                "department",
                json={"approve": True, "reason": "x"},
            ).status_code
            == 403
        )
        records_before = call("GET", f"/v1/companies/{granted['uscc']}/records", "other").json()
        yes = call("POST", f"/v1/repairs/{case}/decision", "regulator",
                   json={"approve": True, "reason": "符合修复条件"})  # fmt: skip
        assert yes.status_code == 200 and yes.json()["status"] == "approved", yes.text
        assert [s["action"] for s in yes.json()["steps"]] == ["applied", "approved"]
        rescored = yes.json()["rescored"]
        assert rescored["as_of"] == today.isoformat(), rescored
        assert rescored["after"]["score"] >= (rescored["before"] or {}).get("score", 0) - 1e-9
        served = call("GET", f"/v1/companies/{granted['uscc']}", "regulator").json()
        assert served["as_of"] == today.isoformat()
        assert served["evaluation"]["score"] == rescored["after"]["score"]
        assert (
            call(
                "POST",
                f"/v1/repairs/{case}/decision",
                "regulator",
                json={"approve": True, "reason": "twice"},
            ).status_code
            == 409
        )
        listed = call("GET", "/v1/repairs", "regulator", params={"uscc": granted["uscc"]})
        assert case in [r["id"] for r in listed.json()["repairs"]]
        # a company key lists its own company's applications only
        owner = f"company:{granted['uscc']}"
        own_list = call("GET", "/v1/repairs", owner).json()["repairs"]
        assert case in [r["id"] for r in own_list]
        assert {r["uscc"] for r in own_list} == {granted["uscc"]}
        other = next(r["uscc"] for v in found.values() for r in v if r["uscc"] != granted["uscc"])
        assert call("GET", "/v1/repairs", owner, params={"uscc": other}).status_code == 403
        assert call("GET", "/v1/repairs", "department").status_code == 403

        # the record is no longer public from today; a view of yesterday made today for the
        # public leaves it out too (after repair it stops being published, DOMAIN §9), while
        # the authority's view of yesterday shows it as it was then: public (point in time)
        path = f"/v1/companies/{granted['uscc']}/records"
        yesterday = (today - timedelta(days=1)).isoformat()
        shown_now = call("GET", path, "other").json()
        shown_then = call("GET", path, "other", params={"on": yesterday}).json()
        ids = lambda page: {r["record_id"] for r in page["records"]}  # noqa: E731
        assert granted["record_id"] in ids(records_before)
        assert granted["record_id"] not in ids(shown_now)
        assert granted["record_id"] not in ids(shown_then)
        as_it_was = {
            r["record_id"]: r
            for r in call("GET", path, "regulator", params={"on": yesterday}).json()["records"]
        }
        assert as_it_was[granted["record_id"]]["public"] is True
        as_it_is = {r["record_id"]: r for r in call("GET", path, "regulator").json()["records"]}
        assert as_it_is[granted["record_id"]]["public"] is False

        # a record repaired already is refused as such
        twice = call("POST", "/v1/repairs", f"company:{granted['uscc']}",
                     json={"record_id": granted["record_id"], "reason": "再次申请"})  # fmt: skip
        assert twice.status_code == 409, twice.text
        assert twice.json()["code"] == "already_repaired"
        assert _cases(world, granted["record_id"]) == [case]

    # it stops counting from the approval day; what counted before is unchanged
    after = _penalties(world.store, granted["uscc"], today)
    if granted["event_date"] > today - timedelta(days=3 * 365):
        assert after[0] == before[0] - 1, (before, after)
    assert _penalties(world.store, granted["uscc"], yesterday_date) == before_yesterday
    with world.store.connect() as con:
        undone = con.execute(
            "SELECT effective_date, recorded_date FROM events WHERE record_id = ? "
            "AND event_type = 'repair'", [granted["record_id"]],
        ).fetchall()  # fmt: skip
    assert undone == [(today, today)]
    # a one-company re-score is no pool to draw spot checks from
    with world.engine.connect() as con:
        assert latest_load(con, today) == AS_OF

    # the append-only trail
    with world.engine.connect() as con:
        steps = con.execute(
            sa.select(lifecycle_log.c.action).where(lifecycle_log.c.case_id == case)
            .order_by(lifecycle_log.c.id)
        ).scalars().all()  # fmt: skip
    assert steps == ["applied", "approved"]
    with pytest.raises(sa.exc.DBAPIError), world.engine.begin() as con:
        con.execute(lifecycle_log.delete().where(lifecycle_log.c.case_id == case))


def _cases(world: World, record_id: str) -> list[int]:
    """The applications stored for the record, oldest first."""
    with world.engine.connect() as con:
        return list(con.execute(
            sa.select(credit_repairs.c.id).where(credit_repairs.c.record_id == record_id)
            .order_by(credit_repairs.c.id)
        ).scalars())  # fmt: skip


def _kept_case(world: World, record_id: str, today: date) -> int:
    """A pending application for the record, as one filed before applications refused at once
    were no longer stored (the service does not store one for a record that cannot be
    repaired)."""
    record = repairs.record_on(world.store, record_id, today)
    assert record is not None
    with world.engine.begin() as con:
        key = con.execute(credit_repairs.insert().values(
            uscc=record["uscc"], record_id=record_id, category=record["category"],
            applied_on=today, reason="已更正", status="pending",
            due_date=workdays.add_working_days(today, 3),
        )).inserted_primary_key  # fmt: skip
    assert key is not None
    return int(key[0])


def test_an_application_the_record_does_not_allow_is_refused_unstored(world: World) -> None:
    """Refused at filing because of the record's state: a conflict (`RepairRefused`, 409 over
    HTTP) with the refusal code and a message naming the record and why (the day the minimum
    period ends), and nothing stored: no application, no step."""
    today = china_today()
    found = _candidates(world.store, today)
    for code in ("minimum_period", "not_repairable"):
        assert found.get(code), code
        record = found[code][0]
        with world.engine.connect() as con:
            steps = con.execute(sa.select(sa.func.count()).select_from(lifecycle_log)).scalar()
        with pytest.raises(repairs.RepairRefused) as refused:
            repairs.apply(world.engine, world.store, record["record_id"], "已整改", None, today)
        assert refused.value.code == code
        message = str(refused.value)
        assert record["record_id"] in message and "\n" not in message, message
        if code == "minimum_period":
            period = publicity.period(record["category"], record["severity"],
                                      record["attributes"])  # fmt: skip
            ends = period.repairable_from(record["event_date"])
            assert ends is not None and ends.isoformat() in message, message
        assert _cases(world, record["record_id"]) == []
        with world.engine.connect() as con:
            after = con.execute(sa.select(sa.func.count()).select_from(lifecycle_log)).scalar()
        assert after == steps


def test_an_expired_record_is_refused_as_expired_not_as_repeated(world: World) -> None:
    """A penalty past its publicity period no longer counts and is no longer public: there is
    nothing to repair (`expired`), even when a later negative record of its category would
    otherwise make it a repeat."""
    today = china_today()
    with world.store.connect() as con:
        rows = con.execute(
            "SELECT record_id FROM records WHERE category = 'admin_penalty' "
            "AND severity IN ('minor', 'general') AND event_date < ? "
            "AND record_id NOT IN (SELECT record_id FROM events) ORDER BY record_id LIMIT 200",
            [today - timedelta(days=400)],
        ).fetchall()  # fmt: skip
    expired = []
    for (record_id,) in rows:
        record = repairs.record_on(world.store, record_id, today)
        assert record is not None
        period = publicity.period(record["category"], record["severity"], record["attributes"])
        ended = period.counts_until(record["event_date"])
        if ended is not None and ended <= today:
            expired.append(record)
    assert expired, "a penalty past its publicity period"
    repeats = [r for r in expired if repairs.later_negatives(world.store, r, today)]
    assert repeats, "an expired penalty followed by another penalty"
    for record in expired[:5] + repeats[:5]:
        verdict = repairs.eligibility(world.store, record, today)
        assert verdict.code == "expired", (record["record_id"], verdict)
    with pytest.raises(repairs.RepairRefused, match="no longer counts") as refused:
        repairs.apply(world.engine, world.store, repeats[0]["record_id"], "已整改", None, today)
    assert refused.value.code == "expired"
    assert _cases(world, repeats[0]["record_id"]) == []


def test_the_decision_is_due_in_3_working_days_across_national_day(world: World) -> None:
    """Applied on Tuesday 2025-09-30: 1–8 October are holidays and Saturday 11 October a
    make-up working day, so the third working day is 2025-10-11."""
    day = date(2025, 9, 30)
    eligible = _candidates(world.store, day).get("eligible")
    assert eligible, "an eligible record on 2025-09-30"
    case = repairs.apply(world.engine, world.store, eligible[-1]["record_id"], "已整改", None,
                         today=day)  # fmt: skip
    assert case["status"] == "pending" and case["due_date"] == "2025-10-11"
    assert case["steps"][0]["action"] == "applied"
    # overdue from the first day after its deadline
    overdue_ids = lambda on: [c["id"] for c in repairs.search(world.engine, overdue_on=on)]  # noqa: E731
    assert case["id"] not in overdue_ids(date(2025, 10, 11))
    assert case["id"] in overdue_ids(date(2025, 10, 12))
    assert repairs.get(world.engine, case["id"], today=date(2025, 10, 11))["overdue"] is False
    assert repairs.get(world.engine, case["id"], today=date(2025, 10, 12))["overdue"] is True


def test_eligibility_reads_the_record_in_its_corrected_form(world: World) -> None:
    """A serious penalty waits a year before repair; corrected to minor (an objection found the
    severity wrong), it may be repaired at once, from the day the correction is in force."""
    today = china_today()
    with world.store.connect() as con:
        rows = con.execute(
            "SELECT record_id FROM records WHERE category = 'admin_penalty' "
            "AND severity = 'serious' AND event_date > ? AND attributes NOT LIKE '%licence_%' "
            "AND attributes NOT LIKE '%closure%' AND attributes NOT LIKE '%employment_ban%' "
            "AND attributes NOT LIKE '%qualification_%' AND attributes NOT LIKE '%restriction%' "
            "AND attributes NOT LIKE '%\"fire\"%' AND attributes NOT LIKE '%work_safety%' "
            "AND attributes NOT LIKE '%special_equipment%' "
            "AND record_id NOT IN (SELECT record_id FROM events) ORDER BY record_id LIMIT 20",
            [today - timedelta(days=360)],
        ).fetchall()  # fmt: skip
    waiting = []
    for (record_id,) in rows:
        record = repairs.record_on(world.store, record_id, today)
        assert record is not None
        if repairs.eligibility(world.store, record, today).code == "minimum_period":
            waiting.append(record_id)
    assert waiting, "a serious penalty within its minimum period"
    record_id = waiting[0]
    stored = append_events(world.store, [
        {"event_id": "test-repair-correction", "record_id": record_id, "event_type": "correction",
         "effective_date": today, "recorded_date": today, "attributes": {"severity": "minor"}},
    ], today=today)  # fmt: skip
    assert stored.stored == 1, stored.rejected
    yesterday = today - timedelta(days=1)
    before = repairs.record_on(world.store, record_id, yesterday)
    after = repairs.record_on(world.store, record_id, today)
    assert before is not None and after is not None
    assert (before["severity"], after["severity"]) == ("serious", "minor")
    assert repairs.eligibility(world.store, after, today).code != "minimum_period"


def _unused(world: World, today: date, taken: int) -> list[dict[str, Any]]:
    """Eligible records no application names yet (the tests of this module share the world)."""
    with world.engine.connect() as con:
        named = set(con.execute(sa.select(credit_repairs.c.record_id)).scalars().all())
    found = _candidates(world.store, today, want=taken + len(named) + 2).get("eligible", [])
    free = [r for r in found if r["record_id"] not in named]
    assert len(free) >= taken, f"{taken} eligible records no application names"
    return free[:taken]


def _repair_events(store: Store, record_id: str) -> list[str]:
    with store.connect() as con:
        return [r for (r,) in con.execute(
            "SELECT event_id FROM events WHERE record_id = ? AND event_type = 'repair' "
            "ORDER BY event_id", [record_id],
        ).fetchall()]  # fmt: skip


def test_a_failed_approval_leaves_both_stores_as_they_were_and_a_retry_completes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error while recording an approval leaves the application pending and the
    record unrepaired; if the database fails after the store took the repair event (its commit),
    approving again completes the approval with that event, and refusing is a conflict."""
    today = china_today()
    (record,) = _unused(world, today, 1)
    case = repairs.apply(world.engine, world.store, record["record_id"], "已整改", None, today)
    assert case["status"] == "pending"
    real_log = lifecycle.log

    def failing_log(con: sa.Connection, case_type: str, *args: Any) -> None:
        if args[2] == "approved":
            raise RuntimeError("injected: the database fails while logging the approval")
        real_log(con, case_type, *args)

    monkeypatch.setattr(lifecycle, "log", failing_log)
    with pytest.raises(RuntimeError, match="injected"):
        repairs.decide(world.engine, world.store, case["id"], True, "ok", None, today)
    monkeypatch.setattr(lifecycle, "log", real_log)
    assert repairs.get(world.engine, case["id"])["status"] == "pending"
    assert _repair_events(world.store, record["record_id"]) == []
    form = repairs.record_on(world.store, record["record_id"], today)
    assert form is not None and form["undone_on"] is None

    # the commit fails after the store took the event: the retry completes the approval
    def failing_commit(con: sa.Connection) -> None:
        raise RuntimeError("injected: the database commit fails")

    sa.event.listen(world.engine, "commit", failing_commit)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            repairs.decide(world.engine, world.store, case["id"], True, "ok", None, today)
    finally:
        sa.event.remove(world.engine, "commit", failing_commit)
    assert repairs.get(world.engine, case["id"])["status"] == "pending"
    with pytest.raises(repairs.RepairConflict, match="approve it again"):
        repairs.decide(world.engine, world.store, case["id"], False, "no", None, today)
    done = repairs.decide(world.engine, world.store, case["id"], True, "ok", None, today)
    assert done["status"] == "approved" and done["refusal_code"] is None, done
    assert [s["action"] for s in done["steps"]] == ["applied", "approved"]
    assert _repair_events(world.store, record["record_id"]) == [f"repair-{case['id']}"]


def test_two_applications_at_once_leave_one_pending(world: World) -> None:
    """Two applications for one record filed at the same moment: one is pending, the other is
    refused as `pending` (so the record cannot be repaired twice)."""
    today = china_today()
    (record,) = _unused(world, today, 1)
    start = threading.Barrier(2)
    cases: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def file(i: int) -> None:
        start.wait()
        try:
            cases.append(repairs.apply(world.engine, world.store, record["record_id"],
                                       f"reason {i}", None, today))  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=file, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(c["status"], c["refusal_code"]) for c in cases] == [("pending", None)], cases
    assert [(type(e), getattr(e, "code", None)) for e in errors] == [
        (repairs.RepairRefused, "pending")
    ], errors
    assert _cases(world, record["record_id"]) == [cases[0]["id"]]


BEFORE_REPEATED = ("already_repaired", "not_repairable", "expired", "under_objection",
                   "never_repairable_early", "minimum_period")  # fmt: skip
"""The refusals `repairs.eligibility` checks before a repeat, in its order."""


def _later(store: Store, today: date, later_negative: bool) -> list[dict[str, Any]]:
    """Negative records of repairable categories with severities, still counting (not past
    their period: an expired record is refused as such), each followed by later records of its
    category (of the company) of which at least one is negative (`later_negative`) or none is
    (each later one positive or neutral)."""
    catalogue = default_catalogue()
    negative = {c.code: [s for s in c.severities if c.polarity_of(s) == "negative"]
                for c in catalogue.categories if c.repairable and c.severities}  # fmt: skip
    pairs = [(code, s) for code, severities in negative.items() for s in severities]
    with store.connect() as con:
        con.register("negative", pa.table({"category": [c for c, _ in pairs],
                                           "severity": [s for _, s in pairs]}))  # fmt: skip
        rows = con.sql(
            f"""SELECT a.record_id,
                bool_or(n.severity IS NOT NULL) AS any_negative
            FROM records a
            JOIN negative na ON na.category = a.category AND na.severity = a.severity
            JOIN records b ON b.uscc = a.uscc AND b.category = a.category
                AND b.event_date > a.event_date AND b.recorded_date <= ?
                AND b.record_id <> a.record_id
            LEFT JOIN negative n ON n.category = b.category AND n.severity = b.severity
            WHERE a.recorded_date <= ? AND a.record_id NOT IN (SELECT record_id FROM events)
              AND b.record_id NOT IN (SELECT record_id FROM events)
            GROUP BY a.record_id HAVING any_negative = {'true' if later_negative else 'false'}
            ORDER BY a.record_id LIMIT 400""",
            params=[today, today],
        ).fetchall()  # fmt: skip
    out = []
    for record_id, _ in rows:
        record = repairs.record_on(store, record_id, today)
        assert record is not None
        period = publicity.period(record["category"], record["severity"], record["attributes"])
        ended = period.counts_until(record["event_date"])
        if ended is None or ended > today:
            out.append(record)
        if len(out) == 8:
            break
    return out


def test_only_a_later_negative_record_of_the_category_is_a_repeat(world: World) -> None:
    """A tax grade D followed by a grade B, or a warning talk followed by `rectified`, did not
    repeat: no `repeated` refusal; a later negative record of the category still refuses."""
    today = china_today()
    improved = _later(world.store, today, later_negative=False)
    assert improved, "a negative record followed only by positive or neutral ones"
    codes = {repairs.eligibility(world.store, r, today).code for r in improved}
    assert "repeated" not in codes, codes
    repeated = _later(world.store, today, later_negative=True)
    assert repeated, "a negative record followed by another negative one of its category"
    for record in repeated:  # each one: refused as a repeat unless a check before it refuses
        later = repairs.later_negatives(world.store, record, today)
        assert later, record["record_id"]
        code = repairs.eligibility(world.store, record, today).code
        assert code in ("repeated", *BEFORE_REPEATED), (record["record_id"], code)
    assert "repeated" in {repairs.eligibility(world.store, r, today).code for r in repeated}
    for record in improved:
        assert repairs.later_negatives(world.store, record, today) == [], record["record_id"]


def _clean_company(world: World, today: date) -> str:
    """A served, active company with no list record or entry: its listings are the test's own."""
    with world.store.connect() as con:
        rows = con.execute(
            "WITH v AS (SELECT uscc, arg_max(status, struct_pack(d := recorded_date, "
            "b := batch_id)) AS status, min(recorded_date) AS first FROM entities GROUP BY uscc) "
            "SELECT uscc FROM v WHERE status = 'active' AND first <= ? AND uscc NOT IN ("
            "SELECT uscc FROM records WHERE category LIKE '%_list') ORDER BY uscc",
            [today - timedelta(days=400)],
        ).fetchall()  # fmt: skip
    with world.engine.connect() as con:
        taken = set(con.execute(sa.select(list_entries.c.uscc)).scalars())
        taken |= set(con.execute(sa.select(credit_repairs.c.uscc)).scalars())
    return next(u for (u,) in rows if u not in taken)


def test_repairing_a_focus_attention_listing_takes_its_entry_off_the_list(world: World) -> None:
    """The repair of a focus-attention listing (past its six months) ends the listing in the
    scores and marks its list entry removed in the same decision, so the register agrees and a
    new entry may be proposed."""
    today = china_today()
    uscc = _clean_company(world, today)
    entry = lists.propose(world.engine, world.store, uscc, "focus_attention_list", "依据",
                          "重点关注", today=today - timedelta(days=200))  # fmt: skip
    assert build_features(world.store, today, [uscc]).to_pylist()[0]["on_focus_list"] == 1
    case = repairs.apply(world.engine, world.store, entry["record_id"], "已整改", None, today)
    assert case["status"] == "pending", case
    done = repairs.decide(world.engine, world.store, case["id"], True, "同意修复", None, today)
    assert done["status"] == "approved"
    assert done["steps"][-1]["detail"]["list_entries_removed"] == [entry["id"]]
    assert build_features(world.store, today, [uscc]).to_pylist()[0]["on_focus_list"] == 0
    after = lists.get(world.engine, entry["id"], today)
    assert (after["status"], after["removed_on"]) == ("removed", today)
    assert after["removal_reason"] == f"repair {case['id']}: 同意修复"
    assert [s["action"] for s in after["steps"]] == ["proposed", "listed", "removed"]
    again = lists.propose(world.engine, world.store, uscc, "focus_attention_list", "依据",
                          "再次关注", today=today)  # fmt: skip
    assert again["status"] == "listed"


def test_a_company_on_the_abnormal_operation_list_repairs_nothing(world: World) -> None:
    """While listed, its penalties are refused `on_list`; the listing itself is no record to
    repair (it comes off the list by removal, once cured)."""
    today = china_today()
    record = next(
        r
        for r in _unused(world, today, 10)
        if (lists._entity(world.store, r["uscc"], today) or {}).get("status") == "active"
    )  # an active company: a deregistered one is listed on no list
    listed = lists.propose(world.engine, world.store, record["uscc"], "abnormal_operation_list",
                           lists.BASIS_ABNORMAL, "通过登记的住所无法联系", ground="unreachable",
                           today=today)  # fmt: skip
    with pytest.raises(repairs.RepairRefused, match="on_abnormal_list") as on_list:
        repairs.apply(world.engine, world.store, record["record_id"], "已整改", None, today)
    assert on_list.value.code == "on_list"
    with pytest.raises(repairs.RepairRefused) as listing:
        repairs.apply(world.engine, world.store, listed["record_id"], "已整改", None, today)
    assert listing.value.code == "not_repairable"
    assert _cases(world, record["record_id"]) == _cases(world, listed["record_id"]) == []
    lists.remove(world.engine, world.store, listed["id"], "已恢复联系", None, today)


def test_a_record_under_objection_is_not_repaired_and_a_pending_repair_is_not_objected_to(
    world: World,
) -> None:
    """A repair and an objection never run on one record at once: an application while an
    objection is open is refused `under_objection`, an objection while an application is pending
    `repair_pending`; an objection flag that comes in while the application waits refuses the
    approval at the decision."""
    today = china_today()
    first, second = _unused(world, today, 2)
    objection = objections.file_objection(world.engine, world.store, first["record_id"],
                                          "处罚有误", None, None, today)  # fmt: skip
    with pytest.raises(repairs.RepairRefused, match=first["record_id"]) as refused:
        repairs.apply(world.engine, world.store, first["record_id"], "已整改", None, today)
    assert refused.value.code == "under_objection"
    objections.decide(world.engine, world.store, objection["id"], "upheld", "维持", None, None,
                      today)  # fmt: skip
    assert repairs.apply(world.engine, world.store, first["record_id"], "已整改", None,
                         today)["status"] == "pending"  # fmt: skip

    case = repairs.apply(world.engine, world.store, second["record_id"], "已整改", None, today)
    assert case["status"] == "pending"
    with pytest.raises(objections.ObjectionConflict, match=f"repair application {case['id']}") \
            as conflict:  # fmt: skip
        objections.file_objection(world.engine, world.store, second["record_id"], "有误", None,
                                  None, today)  # fmt: skip
    assert conflict.value.code == "repair_pending"
    # a flag that got in meanwhile (filed at the same moment): the decision checks again
    stored = append_events(world.store, [
        {"event_id": f"test-flag-{second['record_id']}", "record_id": second["record_id"],
         "event_type": "objection_opened", "effective_date": today, "recorded_date": today,
         "attributes": {"objection_id": 0}},
    ], today=today)  # fmt: skip
    assert stored.stored == 1, stored.rejected
    decided = repairs.decide(world.engine, world.store, case["id"], True, "同意", None, today)
    assert (decided["status"], decided["refusal_code"]) == ("refused", "under_objection")
    assert _repair_events(world.store, second["record_id"]) == []
