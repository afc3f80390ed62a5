"""Objections over HTTP against a real uvicorn process, on SQLite and PostgreSQL: a record is
flagged at once when objected to and the flag goes with the decision; corrections merge with
earlier ones; "stop publishing" hides a record that still counts; "removed from a list" takes
the company off the list from the decision day and not before; the deadline runs on the Chinese
working-day calendar, extendable once; only the authorities decide, once; the trail is kept.

One server per backend serves every test of the module; each test works on companies of its
own, so the order of the tests does not matter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from features.builder import build_features
from records import publicity, workdays
from records.events import append_events
from records.store import Store
from records.workdays import china_today
from serving import objections, repairs
from serving.auth import create_key
from serving.db import audit_log, companies, credit_repairs, lifecycle_log, list_entries
from serving.db import objections as objections_table
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.faults import failing_commit, failing_log
from tests.serving.uvicorn import running_server


@dataclass
class Served:
    """The loaded province, its running service, a key per role and the companies in use."""

    world: Loaded
    client: httpx.Client
    keys: dict[str, str]
    served: set[str]
    used: set[str] = field(default_factory=set)

    def call(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        """`who`: a role's key, or `company:<uscc>` for a key speaking for that company."""
        if who.startswith("company:") and who not in self.keys:
            self.keys[who] = create_key(self.world.engine, "company", None, who, who[8:])
        headers = {"X-API-Key": self.keys[who], "X-Purpose": "objection test"}
        return self.client.request(method, path, headers=headers, **kw)

    def pick(self, where: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Records matching `where` (SQL over `r`) without any event, of served companies no
        other test uses, one per company; the first company found is then taken."""
        with self.world.store.connect() as con:
            rows = con.sql(
                f"""SELECT r.record_id, r.uscc, r.category, r.severity, r.event_date,
                    r.recorded_date, r.amount
                FROM records r
                WHERE {where} AND NOT EXISTS (
                    SELECT 1 FROM events e WHERE e.record_id = r.record_id)
                ORDER BY r.record_id""",
                params=params or [],
            ).to_arrow_table().to_pylist()  # fmt: skip
        found, seen = [], set()
        for row in rows:
            if row["uscc"] in self.served and row["uscc"] not in self.used | seen:
                seen.add(row["uscc"])
                found.append(row)
        return found

    def take(self, record: dict[str, Any]) -> dict[str, Any]:
        self.used.add(record["uscc"])
        return record


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "objections") as loaded:
        yield loaded


@pytest.fixture(scope="module")
def service(world: Loaded) -> Iterator[Served]:
    keys = {
        "other": create_key(world.engine, "public", None, "someone else"),
        "regulator": create_key(world.engine, "regulator", None, "credit office"),
        "admin": create_key(world.engine, "admin", None, "platform admin"),
        "department": create_key(world.engine, "department", "tax", "tax office"),
    }
    with world.engine.connect() as con:
        served = set(con.execute(sa.select(companies.c.uscc)).scalars())
    log = world.data_dir / "uvicorn-objections.log"
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client,
    ):
        yield Served(world, client, keys, served)


def _features(store: Store, uscc: str, day: date) -> dict[str, Any]:
    row: dict[str, Any] = build_features(store, day, [uscc]).to_pylist()[0]
    return row


def _events(store: Store, record_id: str) -> dict[str, dict[str, Any]]:
    with store.connect() as con:
        rows = con.execute(
            "SELECT event_id, event_type, effective_date, recorded_date, attributes FROM events "
            "WHERE record_id = ?", [record_id],
        ).fetchall()  # fmt: skip
    return {
        r[0]: {"type": r[1], "effective": r[2], "recorded": r[3], "attributes": json.loads(r[4])}
        for r in rows
    }


def _shown(page: httpx.Response) -> dict[str, dict[str, Any]]:
    assert page.status_code == 200, page.text
    return {r["record_id"]: r for r in page.json()["records"]}


def _file(service: Served, record_id: str, who: str = "company", **extra: Any) -> dict[str, Any]:
    """File an objection; by default with a key of the record's company."""
    if who == "company":
        with service.world.store.connect() as con:
            found = con.execute("SELECT uscc FROM records WHERE record_id = ?", [record_id])
            who = f"company:{found.fetchone()[0]}"  # type: ignore[index]
    answer = service.call("POST", "/v1/objections", who,
                          json={"record_id": record_id, "reason": "记录有误", **extra})  # fmt: skip
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _department_correction(store: Store, record_id: str, today: date,
                           correction: dict[str, Any]) -> None:  # fmt: skip
    """The record's department corrects it today (composed over the corrections in force)."""
    with store.connect() as con:
        (dept,) = con.execute(
            "SELECT source_dept FROM records WHERE record_id = ?", [record_id]
        ).fetchone() or (None,)  # fmt: skip
    stored = append_events(store, [{"event_id": f"fix-{record_id}-{time.monotonic_ns()}",
                                    "record_id": record_id, "event_type": "correction",
                                    "effective_date": today, "recorded_date": today,
                                    "attributes": correction}],
                           today=today, source_dept=dept)  # fmt: skip
    assert stored.stored == 1, stored.rejected


def _another(service: Served, uscc: str) -> str:
    return next(u for u in sorted(service.served) if u != uscc)


def _decide(service: Served, case: int, outcome: str, **extra: Any) -> httpx.Response:
    return service.call("POST", f"/v1/objections/{case}/decision", "regulator",
                        json={"outcome": outcome, "reason": "经核查", **extra})  # fmt: skip


def test_the_record_is_flagged_at_once_and_the_flag_goes_with_the_decision(
    service: Served,
) -> None:
    today = china_today()
    candidates = service.pick("r.category = 'admin_penalty' AND r.recorded_date <= ?", [today])
    assert candidates, "an administrative penalty to object to"
    record = service.take(candidates[0])
    uscc, record_id = record["uscc"], record["record_id"]
    company = f"/v1/companies/{uscc}"
    served = service.call("GET", company, "regulator").json()
    assert served["flags"]["objection_open"] is False

    body = _file(service, record_id, requested="撤销该处罚记录")
    assert body["status"] == "open" and body["uscc"] == uscc and body["extended"] is False
    assert body["filed_on"] == today.isoformat()
    assert body["due_date"] == workdays.add_working_days(today, 5).isoformat()
    assert body["requested"] == "撤销该处罚记录"
    assert [s["action"] for s in body["steps"]] == ["filed"]
    # filing re-scores nothing: the flag is read live, and a re-score as of today would move
    # the company to a new date (and perhaps a new tier) for exercising a right
    assert body["rescored"] is None
    case = body["id"]

    # visible at once to every consumer: the company's flags (every view) and the record; the
    # public view's flag covers the public records only, as the public page's does
    page = service.call("GET", f"/v1/public/companies/{uscc}", "other").json()
    public = record_id in {r["record_id"] for r in page["records"]}
    assert page["objection_open"] is public
    for who, flagged in (("regulator", True), ("other", public)):
        doc = service.call("GET", company, who).json()
        assert doc["flags"]["objection_open"] is flagged, (who, doc)
        assert doc["as_of"] == served["as_of"]
    assert service.call("GET", company, "regulator").json()["tier"] == served["tier"]
    # the company itself sees its full view, reasons included; others the public view
    own = service.call("GET", company, f"company:{uscc}").json()
    assert own["tier"] is not None and own["tier"]["reasons"], own
    assert "tier" not in service.call("GET", company, "other").json()
    records = _shown(service.call("GET", f"{company}/records", "regulator"))
    assert records[record_id]["objection_open"] is True
    assert not any(r["objection_open"] for k, r in records.items() if k != record_id)
    assert _features(service.world.store, uscc, today)["objection_open"] == 1
    assert _features(service.world.store, uscc, today - timedelta(days=1))["objection_open"] == 0

    # one open objection per record; the filer and the authorities see it, no one else
    denied = service.call("POST", "/v1/objections", "other",
                          json={"record_id": record_id, "reason": "x"})  # fmt: skip
    assert denied.status_code == 403 and uscc not in denied.text, denied.text  # not the public
    # another company: the record reads as unknown, its owner is not named
    another = f"company:{_another(service, uscc)}"
    denied = service.call("POST", "/v1/objections", another,
                          json={"record_id": record_id, "reason": "x"})  # fmt: skip
    unknown = service.call("POST", "/v1/objections", another,
                           json={"record_id": "NO-SUCH-RECORD", "reason": "x"})  # fmt: skip
    assert (denied.status_code, unknown.status_code) == (404, 404), denied.text
    assert denied.json()["code"] == unknown.json()["code"] == "not_found"
    assert uscc not in denied.text
    again = service.call("POST", "/v1/objections", "regulator",
                         json={"record_id": record_id, "reason": "again"})  # fmt: skip
    assert again.status_code == 409 and again.json()["code"] == "conflict", again.text
    assert service.call("GET", f"/v1/objections/{case}", f"company:{uscc}").status_code == 200
    assert service.call("GET", f"/v1/objections/{case}", "other").status_code == 403
    # another company's key: unknown, as another company's record is (its existence not told)
    hidden = service.call("GET", f"/v1/objections/{case}", another)
    assert hidden.status_code == 404, hidden.text
    assert hidden.json() == {"code": "not_found", "message": f"no objection {case}"}
    assert service.call("GET", "/v1/objections/999999", another).json()["code"] == "not_found"
    # a department sees the case exactly when it sees the record (public today, or its own)
    seen = record_id in _shown(service.call("GET", f"{company}/records", "department"))
    answer = service.call("GET", f"/v1/objections/{case}", "department")
    assert answer.status_code == (200 if seen else 403), answer.text
    listed = service.call("GET", "/v1/objections", "regulator",
                          params={"uscc": uscc, "status": "open"})  # fmt: skip
    assert [o["id"] for o in listed.json()["objections"]] == [case]
    # a company key lists its own company's cases (no purpose needed), and only those
    own_list = service.call("GET", "/v1/objections", f"company:{uscc}")
    assert [o["id"] for o in own_list.json()["objections"]] == [case], own_list.text
    others = service.call("GET", "/v1/objections", another).json()["objections"]
    assert case not in [o["id"] for o in others]
    asked = service.call("GET", "/v1/objections", another, params={"uscc": uscc})
    assert asked.status_code == 403 and uscc not in asked.text.replace(another, ""), asked.text
    assert service.call("GET", "/v1/objections", "department").status_code == 403

    upheld = _decide(service, case, "upheld")
    body = upheld.json()
    assert upheld.status_code == 200, upheld.text
    assert (body["status"], body["outcome"], body["decided_on"]) == (
        "decided", "upheld", today.isoformat(),
    )  # fmt: skip
    assert body["correction"] is None
    assert [s["action"] for s in body["steps"]] == ["filed", "decided"]
    assert body["steps"][1]["detail"]["late"] is False
    assert body["rescored"] is None  # the record stands: nothing a score reads has changed
    assert service.call("GET", company, "other").json()["flags"]["objection_open"] is False
    records = _shown(service.call("GET", f"{company}/records", "regulator"))
    assert records[record_id]["objection_open"] is False
    events = _events(service.world.store, record_id)
    assert {e["type"] for e in events.values()} == {"objection_opened", "objection_closed"}
    assert events[f"objection-{case}-opened"]["effective"] == today
    assert events[f"objection-{case}-closed"]["attributes"]["outcome"] == "upheld"
    decided = service.call("GET", "/v1/objections", "admin",
                           params={"uscc": uscc, "status": "decided"})  # fmt: skip
    assert [o["id"] for o in decided.json()["objections"]] == [case]


def test_a_decided_record_is_objected_to_again_only_once_it_changed(service: Served) -> None:
    """After a decision the company cannot file again and again to keep the record flagged: a
    new objection is refused (409 `already_decided`, naming the decision, in one line) and
    nothing is stored or flagged, whoever files it; once the department corrected the record
    after the decision, the new state may be objected to."""
    today = china_today()
    store, engine = service.world.store, service.world.engine
    record = service.take(service.pick(
        "r.category = 'admin_penalty' AND r.recorded_date <= ?", [today]
    )[0])  # fmt: skip
    uscc, record_id = record["uscc"], record["record_id"]
    company = f"/v1/companies/{uscc}"
    first = _file(service, record_id)["id"]
    assert _decide(service, first, "upheld").status_code == 200

    def ids() -> list[int]:
        with engine.connect() as con:
            query = (
                sa.select(objections_table.c.id)
                .where(objections_table.c.record_id == record_id)
                .order_by(objections_table.c.id)
            )
            return list(con.execute(query).scalars())

    for who in (f"company:{uscc}", "regulator"):
        again = service.call("POST", "/v1/objections", who,
                             json={"record_id": record_id, "reason": "再次异议"})  # fmt: skip
        assert again.status_code == 409, (who, again.text)
        body = again.json()
        assert body["code"] == "already_decided", body
        message = body["message"]
        assert f"objection {first}" in message and "upheld" in message, message
        assert today.isoformat() in message and "\n" not in message, message
    assert ids() == [first]
    # the regulator's view: the public's flag covers public records only, and this one may not be
    assert service.call("GET", company, "regulator").json()["flags"]["objection_open"] is False
    assert _features(store, uscc, today)["objection_open"] == 0
    assert not _flagged(store, uscc, record_id, today)
    # once its department corrected it (after the decision) the record may be objected to
    _department_correction(store, record_id, today, {"amount": 500.0})
    second = _file(service, record_id)
    assert second["status"] == "open" and ids() == [first, second["id"]]
    assert service.call("GET", company, "regulator").json()["flags"]["objection_open"] is True
    # decided in turn (corrected: the decision's own correction is no later change)
    assert _decide(service, second["id"], "corrected", correction={"amount": 300.0}).status_code \
        == 200  # fmt: skip
    third = service.call("POST", "/v1/objections", f"company:{uscc}",
                         json={"record_id": record_id, "reason": "仍有误"})  # fmt: skip
    assert third.status_code == 409 and third.json()["code"] == "already_decided", third.text
    assert f"objection {second['id']}" in third.json()["message"]
    assert "corrected" in third.json()["message"]


def test_a_repaired_or_withdrawn_record_is_not_objected_to(service: Served) -> None:
    """A record repaired, or withdrawn by its department, is no longer public and no longer
    counts: an objection to it is refused (409 `repaired`, `withdrawn`), nothing stored."""
    today = china_today()
    store, engine = service.world.store, service.world.engine
    repaired, withdrawn = (service.take(r) for r in service.pick(
        "r.category = 'admin_penalty' AND r.recorded_date <= ?", [today])[:2])  # fmt: skip
    done = append_events(store, [{"event_id": f"test-repair-{repaired['record_id']}",
                                  "record_id": repaired["record_id"], "event_type": "repair",
                                  "effective_date": today, "recorded_date": today,
                                  "attributes": {"repair_id": 0}}], today=today)  # fmt: skip
    assert done.stored == 1, done.rejected
    with store.connect() as con:
        (dept,) = con.execute("SELECT source_dept FROM records WHERE record_id = ?",
                              [withdrawn["record_id"]]).fetchone() or (None,)  # fmt: skip
    done = append_events(store, [{"event_id": "w-1", "record_id": withdrawn["record_id"],
                                  "event_type": "withdrawal", "effective_date": today,
                                  "recorded_date": today, "attributes": {"reason": "录入错误"}}],
                         today=today, source_dept=dept)  # fmt: skip
    assert done.stored == 1, done.rejected
    with engine.connect() as con:
        before = con.execute(sa.select(sa.func.count()).select_from(objections_table)).scalar()
    for record, code in ((repaired, "repaired"), (withdrawn, "withdrawn")):
        answer = service.call("POST", "/v1/objections", f"company:{record['uscc']}",
                              json={"record_id": record["record_id"], "reason": "x"})  # fmt: skip
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == code, answer.text
        assert record["record_id"] in answer.json()["message"]
        assert not _flagged(store, record["uscc"], record["record_id"], today)
    with engine.connect() as con:
        after = con.execute(sa.select(sa.func.count()).select_from(objections_table)).scalar()
    assert after == before


def test_a_correction_merges_with_earlier_ones_and_takes_effect_from_the_decision_day(
    service: Served,
) -> None:
    """A first objection supplements the record, a second corrects its severity: the second
    `correction` event restates both against the original record."""
    today, yesterday = china_today(), china_today() - timedelta(days=1)
    store = service.world.store
    candidates = service.pick(
        "r.category = 'admin_penalty' AND r.severity = 'serious' AND r.recorded_date <= ? "
        "AND r.event_date > ?",
        [yesterday, today - timedelta(days=365)],
    )
    record = next(
        (c for c in candidates if _features(store, c["uscc"], today)["serious_penalties_3y"]),
        None,
    )
    assert record is not None, "a serious penalty that counts today"
    service.take(record)
    uscc, record_id = record["uscc"], record["record_id"]
    before_today = _features(store, uscc, today)
    before_yesterday = _features(store, uscc, yesterday)
    assert before_yesterday["serious_penalties_3y"] == before_today["serious_penalties_3y"]

    first = _file(service, record_id)["id"]
    bad = {
        "unknown severity": {"severity": "catastrophic"},
        "non-numeric amount": {"amount": "lots"},
        "unknown key": {"category": "warning_talk"},
        "negative amount": {"amount": -7},  # once stored, and the deduction was gone
    }
    for what, correction in bad.items():
        refused = _decide(service, first, "corrected", correction=correction)
        assert refused.status_code == 422, (what, refused.text)
        assert refused.json()["message"], what
    assert _decide(service, first, "corrected").status_code == 422  # a correction is required
    only_attributes = _decide(service, first, "supplemented", correction={"severity": "minor"})
    assert only_attributes.status_code == 422
    assert "attributes" in only_attributes.json()["message"]
    added = {"rectified": True, "note": "已补充整改材料"}
    supplemented = _decide(service, first, "supplemented", correction={"attributes": added})
    assert supplemented.status_code == 200, supplemented.text
    assert supplemented.json()["correction"] == {"attributes": added}

    def shown() -> tuple[bool, bool, str]:
        """(corrected, supplemented, severity) of the record on the records page."""
        page = service.call("GET", f"/v1/companies/{uscc}/records", "regulator").json()
        (row,) = [r for r in page["records"] if r["record_id"] == record_id]
        assert row["attributes"]["rectified"] is True  # what the supplement added stays
        public = service.call("GET", f"/v1/public/companies/{uscc}", "other").json()
        (seen,) = [r for r in public["records"] if r["record_id"] == record_id]
        assert (seen["corrected"], seen["supplemented"]) == (row["corrected"], row["supplemented"])
        return row["corrected"], row["supplemented"], row["severity"]

    # information added is shown as such (已补充), not as a correction (it was `corrected`)
    assert shown() == (False, True, "serious")

    assert _features(store, uscc, today)["objection_open"] == 0  # the first is decided
    # decided, the record is not objected to again until it changes: its department corrects it
    again = service.call("POST", "/v1/objections", f"company:{uscc}",
                         json={"record_id": record_id, "reason": "记录有误"})  # fmt: skip
    assert again.status_code == 409 and again.json()["code"] == "already_decided", again.text
    dept = {"attributes": {"decision_no": "更正〔2026〕1号"}}
    _department_correction(store, record_id, today, dept)
    second = _file(service, record_id)["id"]
    # filed the day the first was decided: open (the steps are ordered as they were stored)
    assert _features(store, uscc, today)["objection_open"] == 1
    company = f"/v1/companies/{uscc}"
    assert service.call("GET", company, "regulator").json()["flags"]["objection_open"] is True
    fix = {"severity": "minor", "attributes": {"note": "处罚决定已变更为轻微"}}
    corrected = _decide(service, second, "corrected", correction=fix)
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    assert body["outcome"] == "corrected" and body["correction"] == fix
    attributes = {**added, **dept["attributes"], "note": "处罚决定已变更为轻微"}
    merged = {"severity": "minor", "attributes": attributes}
    assert body["steps"][-1]["detail"]["in_force"] == merged
    assert "error" not in body["rescored"], body["rescored"]
    assert shown() == (True, True, "minor")  # corrected since, and supplemented before

    events = _events(store, record_id)
    assert events[f"objection-{first}-correction"]["attributes"] == {"attributes": added}
    latest = events[f"objection-{second}-correction"]
    assert latest == {"type": "correction", "effective": today, "recorded": today,
                      "attributes": merged}  # fmt: skip
    assert events[f"objection-{second}-closed"]["type"] == "objection_closed"
    # what counted before the decision day is unchanged
    assert _features(store, uscc, yesterday) == before_yesterday
    # from today the record counts as a minor penalty (the builder applies `correction` events)
    after_today = _features(store, uscc, today)
    assert after_today["serious_penalties_3y"] == before_today["serious_penalties_3y"] - 1, (
        "the corrected severity does not count yet: features/builder.py does not apply "
        "correction events"
    )
    assert after_today["penalties_3y"] == before_today["penalties_3y"]


def test_stop_publishing_hides_the_record_that_still_counts(service: Served) -> None:
    today, yesterday = china_today(), china_today() - timedelta(days=1)
    store = service.world.store
    candidates = service.pick(
        "r.category = 'admin_penalty' AND r.severity IN ('general', 'serious') "
        "AND r.recorded_date <= ? AND r.event_date > ?",
        [yesterday, today - timedelta(days=300)],
    )
    record = None
    for c in candidates[:20]:
        shown = _shown(service.call("GET", f"/v1/companies/{c['uscc']}/records", "other"))
        if c["record_id"] in shown:
            record = service.take(c)
            break
    assert record is not None, "a penalty public today"
    uscc, record_id = record["uscc"], record["record_id"]
    page = f"/v1/companies/{uscc}/records"
    before = _features(store, uscc, today)

    case = _file(service, record_id)["id"]
    assert _shown(service.call("GET", page, "other"))[record_id]["objection_open"] is True
    stopped = _decide(service, case, "stop_publishing")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["outcome"] == "stop_publishing"
    events = _events(store, record_id)
    assert events[f"objection-{case}-unpublish"]["type"] == "unpublish"
    assert events[f"objection-{case}-unpublish"]["effective"] == today

    # it still counts, and the authorities still see it, and that it was public until yesterday
    assert _features(store, uscc, today) == before
    assert record_id in _shown(service.call("GET", page, "regulator"))
    then = _shown(service.call("GET", page, "regulator", params={"on": yesterday.isoformat()}))
    assert then[record_id]["public"] is True
    # the public no longer sees it on any day, the days it was public included (DOMAIN §9)
    assert record_id not in _shown(
        service.call("GET", page, "other", params={"on": yesterday.isoformat()})
    )
    # not public from today (the records route applies `unpublish` by records.publicity)
    assert record_id not in _shown(service.call("GET", page, "other")), (
        "the unpublished record is still public: the records route does not apply unpublish"
    )


def test_removed_from_list_takes_the_company_off_the_list_from_today(service: Served) -> None:
    today, yesterday = china_today(), china_today() - timedelta(days=1)
    store, engine = service.world.store, service.world.engine
    candidates = service.pick(
        "r.category = 'serious_dishonest_list' AND r.severity = 'listed' AND r.recorded_date <= ? "
        "AND r.event_date <= ? AND (SELECT count(*) FROM records o WHERE o.uscc = r.uscc "
        "AND o.category = r.category AND o.severity = 'listed') = 1",
        [yesterday, yesterday],
    )
    flag = "on_serious_dishonest_list"
    record = next(
        (c for c in candidates[:30] if _features(store, c["uscc"], today)[flag] == 1), None
    )
    if record is None:
        pytest.skip("the simulated province has no company on the serious dishonest list today")
    service.take(record)
    uscc, record_id = record["uscc"], record["record_id"]
    assert _features(store, uscc, yesterday)[flag] == 1
    with engine.begin() as con:  # the entry the lists workflow would keep for the listing
        entry = con.execute(
            list_entries.insert().values(
                uscc=uscc, list="serious_dishonest_list", status="listed", legal_basis="test",
                reason="test listing", proposed_on=record["event_date"],
                listed_on=record["event_date"], record_id=record_id,
            )
        ).inserted_primary_key[0]  # fmt: skip

    case = _file(service, record_id)["id"]
    removed = _decide(service, case, "removed_from_list", reason="列入依据不成立")
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert body["outcome"] == "removed_from_list"
    assert body["steps"][-1]["detail"]["list_entries_removed"] == [entry]
    assert body["rescored"]["after"] is not None

    assert _features(store, uscc, today)[flag] == 0
    assert _features(store, uscc, yesterday)[flag] == 1
    events = _events(store, record_id)
    assert events[f"objection-{case}-withdrawal"]["type"] == "withdrawal"
    doc = service.call("GET", f"/v1/companies/{uscc}", "regulator").json()
    assert "serious_dishonest" not in doc["flags"]["lists"], doc["flags"]
    with engine.connect() as con:
        row = con.execute(sa.select(list_entries).where(list_entries.c.id == entry)).one()
        steps = con.execute(
            sa.select(lifecycle_log.c.action, lifecycle_log.c.detail).where(
                lifecycle_log.c.case_type == "list", lifecycle_log.c.case_id == entry
            )
        ).all()  # fmt: skip
    assert (row.status, row.removed_on) == ("removed", today)
    assert row.removal_reason == f"objection {case}: 列入依据不成立"
    assert [s.action for s in steps] == ["removed"]
    assert json.loads(steps[0].detail)["objection_id"] == case


def test_the_deadline_is_extended_once_to_20_working_days(service: Served) -> None:
    today = china_today()
    candidates = service.pick("r.category = 'spot_check' AND r.recorded_date <= ?", [today])
    record = service.take(candidates[0])
    body = _file(service, record["record_id"])
    case = body["id"]
    assert body["due_date"] == workdays.add_working_days(today, 5).isoformat()
    assert service.call("POST", f"/v1/objections/{case}/extension", "department",
                        json={"reason": "x"}).status_code == 403  # fmt: skip
    extended = service.call("POST", f"/v1/objections/{case}/extension", "admin",
                            json={"reason": "需要现场核查"})  # fmt: skip
    assert extended.status_code == 200, extended.text
    assert extended.json()["extended"] is True
    assert extended.json()["due_date"] == workdays.add_working_days(today, 20).isoformat()
    assert [s["action"] for s in extended.json()["steps"]] == ["filed", "extended"]
    twice = service.call("POST", f"/v1/objections/{case}/extension", "regulator",
                         json={"reason": "再次延期"})  # fmt: skip
    assert twice.status_code == 409, twice.text
    assert "once" in twice.json()["message"]
    overdue = service.call("GET", "/v1/objections/overdue", "regulator").json()["objections"]
    assert case not in [o["id"] for o in overdue]


def test_an_overdue_objection_is_not_extended_and_its_decision_is_late(service: Served) -> None:
    """Filed a month ago and not decided within its 5 working days: an extension now would hide
    the missed deadline, so it is refused; the objection stays overdue and its decision is
    logged late. On its last day it may still be extended."""
    today = china_today()
    filed_on = today - timedelta(days=30)
    candidates = service.pick("r.category = 'spot_check' AND r.recorded_date <= ?", [filed_on])
    overdue_record, last_day_record = service.take(candidates[0]), service.take(candidates[1])
    world = service.world
    case = objections.file_objection(world.engine, world.store, overdue_record["record_id"],
                                     "记录有误", None, None, filed_on)  # fmt: skip
    due = workdays.add_working_days(filed_on, 5)
    assert case["due_date"] == due.isoformat() and due < today
    refused = service.call("POST", f"/v1/objections/{case['id']}/extension", "regulator",
                           json={"reason": "需要核查"})  # fmt: skip
    assert refused.status_code == 409 and refused.json()["code"] == "overdue", refused.text
    assert due.isoformat() in refused.json()["message"]
    after = objections.get(world.engine, case["id"])
    assert (after["due_date"], after["extended"]) == (due.isoformat(), False)
    assert [s["action"] for s in after["steps"]] == ["filed"]
    overdue = service.call("GET", "/v1/objections/overdue", "regulator").json()["objections"]
    assert case["id"] in [o["id"] for o in overdue]
    decided = _decide(service, case["id"], "upheld")
    assert decided.status_code == 200, decided.text
    assert decided.json()["steps"][-1]["detail"]["late"] is True

    on_time = objections.file_objection(world.engine, world.store, last_day_record["record_id"],
                                        "记录有误", None, None, filed_on)  # fmt: skip
    extended = objections.extend(world.engine, on_time["id"], "需要核查", None, today=due)
    assert extended["due_date"] == workdays.add_working_days(filed_on, 20).isoformat()


def test_a_department_reads_a_case_only_about_a_record_it_may_see(service: Served) -> None:
    """The tax office read an objection to another department's record that is never public
    (the company's reason with it); its own records' cases it reads."""
    today = china_today()
    hidden = service.take(service.pick(
        "r.category = 'complaint' AND r.source_dept <> 'tax' AND r.recorded_date <= ?", [today]
    )[0])  # fmt: skip
    own = service.take(service.pick(
        "r.category = 'tax_declaration' AND r.source_dept = 'tax' AND r.recorded_date <= ?",
        [today],
    )[0])  # fmt: skip
    for record, expected in ((hidden, 403), (own, 200)):
        filed = service.call("POST", "/v1/objections", f"company:{record['uscc']}",
                             json={"record_id": record["record_id"], "reason": "异议"})  # fmt: skip
        assert filed.status_code == 201, filed.text
        case = filed.json()["id"]
        answer = service.call("GET", f"/v1/objections/{case}", "department")
        assert answer.status_code == expected, (record["category"], answer.text)
        assert service.call("GET", f"/v1/objections/{case}", "regulator").status_code == 200


def test_only_the_authorities_decide_once_and_the_trail_is_append_only(service: Served) -> None:
    assert (
        service.call("POST", "/v1/objections", "regulator",
                     json={"record_id": "NO-SUCH-RECORD", "reason": "x"}).status_code
        == 404
    )  # fmt: skip
    assert service.call("GET", "/v1/objections/999999", "regulator").status_code == 404
    assert _decide(service, 999999, "upheld").status_code == 404
    candidates = service.pick(
        "r.category = 'admin_penalty' AND r.recorded_date <= ?", [china_today()]
    )
    record = service.take(candidates[0])
    case = _file(service, record["record_id"])["id"]
    for who in ("department", f"company:{record['uscc']}", "other"):
        answer = service.call("POST", f"/v1/objections/{case}/decision", who,
                              json={"outcome": "upheld", "reason": "x"})  # fmt: skip
        assert answer.status_code == 403, (who, answer.text)
    not_listing = _decide(service, case, "removed_from_list")
    assert not_listing.status_code == 422 and "listing" in not_listing.json()["message"]
    with_correction = _decide(service, case, "upheld", correction={"amount": 1.0})
    assert with_correction.status_code == 422
    assert _decide(service, case, "upheld").status_code == 200
    twice = _decide(service, case, "corrected", correction={"severity": "minor"})
    assert twice.status_code == 409, twice.text
    late_extension = service.call("POST", f"/v1/objections/{case}/extension", "admin",
                                  json={"reason": "x"})  # fmt: skip
    assert late_extension.status_code == 409 and "decided" in late_extension.json()["message"]

    engine = service.world.engine
    with engine.connect() as con:
        steps = con.execute(
            sa.select(lifecycle_log.c.action)
            .where(lifecycle_log.c.case_type == "objection", lifecycle_log.c.case_id == case)
            .order_by(lifecycle_log.c.id)
        ).scalars().all()  # fmt: skip
    assert steps == ["filed", "decided"]
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as con:
        con.execute(lifecycle_log.delete().where(lifecycle_log.c.case_type == "objection"))
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as con:
        con.execute(lifecycle_log.update().where(lifecycle_log.c.case_id == case)
                    .values(action="erased"))  # fmt: skip


def test_the_deadline_runs_on_working_days_across_national_day(service: Served) -> None:
    """Filed on Tuesday 2025-09-30: 1–8 October are holidays and Saturday 11 October a make-up
    working day, so the 5 working days are 9, 10, 11, 13 and 14 October; extended, the 20th
    working day is 4 November. Decided on 15 October without extension: late."""
    day = date(2025, 9, 30)
    candidates = service.pick("r.category = 'admin_penalty' AND r.recorded_date <= ?", [day])
    record = service.take(candidates[0])
    engine, store = service.world.engine, service.world.store
    case = objections.file_objection(engine, store, record["record_id"], "记录有误", None, None,
                                     today=day)  # fmt: skip
    assert case["due_date"] == "2025-10-14"
    assert workdays.add_working_days(day, 20) == date(2025, 11, 4)
    overdue_ids = lambda on: [c["id"] for c in objections.search(engine, overdue_on=on)]  # noqa: E731
    assert case["id"] not in overdue_ids(date(2025, 10, 14))
    assert case["id"] in overdue_ids(date(2025, 10, 15))
    listed = service.call("GET", "/v1/objections/overdue", "regulator")
    assert case["id"] in [o["id"] for o in listed.json()["objections"]]

    decided = objections.decide(engine, store, case["id"], "upheld", "经核查", None, None,
                                today=date(2025, 10, 15))  # fmt: skip
    assert decided["steps"][-1]["detail"]["late"] is True
    assert case["id"] not in overdue_ids(china_today())
    opened = _features(store, record["uscc"], date(2025, 10, 1))["objection_open"]
    closed = _features(store, record["uscc"], date(2025, 10, 15))["objection_open"]
    assert (opened, closed) == (1, 0)


def _flagged(store: Store, uscc: str, record_id: str, day: date) -> bool:
    """Whether the record shows an open objection on the day (the records route's rule)."""
    shown = [r for r in publicity.records_on(store, uscc, day) if r["record_id"] == record_id]
    return bool(shown and shown[0]["objection_open"])


def test_a_failed_decision_leaves_both_stores_as_they_were_or_completes_when_retried(
    service: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error in a `corrected` decision leaves the objection open and the record
    without its correction and closing; when the commit fails after the store took the events,
    only the same decision completes it (another is a conflict), its events stored once."""
    engine, store, today = service.world.engine, service.world.store, china_today()
    record = service.take(service.pick("r.category = 'admin_coercion' AND r.recorded_date <= ?",
                                       [today])[0])  # fmt: skip
    record_id = record["record_id"]
    case = objections.file_objection(engine, store, record_id, "有误", None, None, today)["id"]
    fix = {"severity": next(s for s in ("seizure", "freezing") if s != record["severity"])}

    failing_log(monkeypatch, "decided")
    with pytest.raises(RuntimeError, match="injected"):
        objections.decide(engine, store, case, "corrected", "r", fix, None, today)
    monkeypatch.undo()
    assert objections.get(engine, case)["status"] == "open"
    assert sorted(_events(store, record_id)) == [f"objection-{case}-opened"]
    assert _flagged(store, record["uscc"], record_id, today)

    with failing_commit(engine), pytest.raises(RuntimeError, match="injected"):
        objections.decide(engine, store, case, "corrected", "r", fix, None, today)
    assert objections.get(engine, case)["status"] == "open"
    with pytest.raises(objections.ObjectionConflict, match="'corrected'"):
        objections.decide(engine, store, case, "upheld", "stands", None, None, today)
    done = objections.decide(engine, store, case, "corrected", "r", fix, None, today)
    assert (done["status"], done["outcome"], done["correction"]) == ("decided", "corrected", fix)
    assert [s["action"] for s in done["steps"]] == ["filed", "decided"]
    events = _events(store, record_id)
    assert sorted(events) == [f"objection-{case}-{s}" for s in ("closed", "correction", "opened")]
    assert events[f"objection-{case}-correction"]["attributes"] == fix
    assert not _flagged(store, record["uscc"], record_id, today)


def test_a_failed_filing_leaves_no_flag_and_the_next_filing_is_flagged(
    service: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filing whose database work fails stores no event; one whose commit fails after the
    store took its opening has the flag ended at once. The next filing, which SQLite gives the
    rolled-back id again, is flagged all the same: its event is never taken for the other's."""
    engine, store, today = service.world.engine, service.world.store, china_today()
    first, second = (service.take(r) for r in service.pick(
        "r.category = 'admin_coercion' AND r.recorded_date <= ?", [today])[:2])  # fmt: skip

    def ids() -> list[int]:
        with engine.connect() as con:
            return list(con.execute(sa.select(objections_table.c.id)).scalars())

    known = ids()
    failing_log(monkeypatch, "filed")
    with pytest.raises(RuntimeError, match="injected"):
        objections.file_objection(engine, store, first["record_id"], "x", None, None, today)
    monkeypatch.undo()
    assert ids() == known
    assert _events(store, first["record_id"]) == {}

    with failing_commit(engine), pytest.raises(RuntimeError, match="injected"):
        objections.file_objection(engine, store, first["record_id"], "x", None, None, today)
    assert ids() == known
    assert not _flagged(store, first["uscc"], first["record_id"], today)

    case = objections.file_objection(engine, store, second["record_id"], "y", None, None, today)
    assert case["status"] == "open"
    assert _flagged(store, second["uscc"], second["record_id"], today)
    opened = [e for e, v in _events(store, second["record_id"]).items()
              if v["type"] == "objection_opened"]  # fmt: skip
    assert len(opened) == 1 and opened[0].startswith(f"objection-{case['id']}-opened"), opened
    assert not _flagged(store, first["uscc"], first["record_id"], today)


def test_a_decision_keeps_the_catalogues_attribute_types(service: Served) -> None:
    """`penalty_types` is a list of text: a decision giving it an object is refused (422 naming
    the attribute), so an application to repair the record is answered, never a 500; eligibility
    reads odd stored values all the same."""
    today = china_today()
    record = service.take(service.pick("r.category = 'admin_penalty' AND r.recorded_date <= ?",
                                       [today])[0])  # fmt: skip
    case = _file(service, record["record_id"])["id"]
    odd = {"attributes": {"penalty_types": ["fine", {"type": "closure"}]}}
    refused = _decide(service, case, "supplemented", correction=odd)
    assert refused.status_code == 422, refused.text
    assert "penalty_types" in refused.json()["message"]
    single = _decide(service, case, "supplemented", correction={"attributes": {"domain": ["x"]}})
    assert single.status_code == 422 and "domain" in single.json()["message"], single.text
    fine = {"attributes": {"penalty_types": ["fine"], "note": {"free": "not in the catalogue"}}}
    assert _decide(service, case, "supplemented", correction=fine).status_code == 200
    applied = service.call("POST", "/v1/repairs", f"company:{record['uscc']}",
                           json={"record_id": record["record_id"], "reason": "已整改"})  # fmt: skip
    # pending, or refused at once (409 with its refusal code): answered either way
    assert applied.status_code in (201, 409), applied.text
    assert applied.status_code == 201 or applied.json()["code"] in (
        "not_repairable", "expired", "never_repairable_early", "minimum_period", "repeated",
        "on_list",
    ), applied.text  # fmt: skip
    form = repairs.record_on(service.world.store, record["record_id"], today)
    assert form is not None
    form["event_date"] = today  # within its period, whenever the penalty was decided
    form["attributes"] = json.dumps({"penalty_types": ["closure", {"type": "fine"}, 3]})
    assert repairs.eligibility(service.world.store, form, today).code == "never_repairable_early"
    form["attributes"] = json.dumps({"penalty_types": {"type": "closure"}})
    assert repairs.eligibility(service.world.store, form, today).code != "never_repairable_early"


def test_reads_of_repairs_and_objections_are_audited(service: Served) -> None:
    """Reading one objection, one repair application or a list of them is a line in the audit
    log per company, with the stated purpose."""
    today = china_today()
    record = service.take(service.pick("r.category = 'admin_penalty' AND r.recorded_date <= ?",
                                       [today])[0])  # fmt: skip
    uscc = record["uscc"]
    objection = _file(service, record["record_id"])["id"]
    # an application for the record (refused at once, it would not be stored: one kept as a
    # case, as the decision keeps a refusal)
    with service.world.engine.begin() as con:
        repair = con.execute(credit_repairs.insert().values(
            uscc=uscc, record_id=record["record_id"], category=record["category"],
            applied_on=today, reason="x", status="refused", decided_on=today,
            refusal_code="refused_by_authority", decision_reason="x",
        )).inserted_primary_key[0]  # fmt: skip
    reads = {
        "GET /v1/objections/{case_id}": f"/v1/objections/{objection}",
        "GET /v1/repairs/{case_id}": f"/v1/repairs/{repair}",
        "GET /v1/repairs": f"/v1/repairs?uscc={uscc}",
    }
    for path in reads.values():
        assert service.call("GET", path, "regulator").status_code == 200, path
        # an authority states why it reads (once optional here); the company need not
        unsaid = service.client.get(path, headers={"X-API-Key": service.keys["regulator"]})
        assert unsaid.status_code == 400 and unsaid.json()["code"] == "purpose_required", path
    own = service.client.get(f"/v1/objections/{objection}",
                             headers={"X-API-Key": service.keys[f"company:{uscc}"]})  # fmt: skip
    assert own.status_code == 200, own.text
    deadline = time.monotonic() + 10
    while True:  # the audit writer flushes in the background
        with service.world.engine.connect() as con:
            logged = {(row[0], row[1]) for row in con.execute(
                sa.select(audit_log.c.endpoint, audit_log.c.purpose)
                .where(audit_log.c.uscc == uscc, audit_log.c.endpoint.in_(list(reads)),
                       audit_log.c.role == "regulator")
            )}  # fmt: skip
        if len(logged) >= len(reads) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logged == {(endpoint, "objection test") for endpoint in reads}


def test_a_later_correction_keeps_nested_attributes_an_earlier_one_fixed(
    service: Served,
) -> None:
    """Corrections compose as the JSON merge patches the publicity rule applies: a later one
    fixing one key of a nested attribute keeps the keys an earlier one fixed beside it."""
    engine, store, today = service.world.engine, service.world.store, china_today()
    record = service.take(service.pick("r.category = 'admin_penalty' AND r.recorded_date <= ?",
                                       [today])[0])  # fmt: skip
    record_id = record["record_id"]
    steps = [{"basis": {"law": "广告法", "article": "55"}}, {"basis": {"article": "58"}}]
    dept = {"attributes": {"decision_no": "更正〔2026〕2号"}}
    for i, attributes in enumerate(steps):
        if i:  # a decided record is objected to again only once it changed: its department's
            _department_correction(store, record_id, today, dept)
        case = objections.file_objection(engine, store, record_id, "x", None, None, today)["id"]
        objections.decide(engine, store, case, "supplemented", "r", {"attributes": attributes},
                          None, today)  # fmt: skip
    latest = _events(store, record_id)[f"objection-{case}-correction"]["attributes"]
    assert latest == {"attributes": {"basis": {"law": "广告法", "article": "58"},
                                     **dept["attributes"]}}  # fmt: skip
    form = repairs.record_on(store, record_id, today)
    assert form is not None
    assert json.loads(form["attributes"])["basis"] == {"law": "广告法", "article": "58"}
