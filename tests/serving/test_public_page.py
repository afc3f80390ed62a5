"""The public company page over HTTP (real uvicorn, SQLite and PostgreSQL): it shows exactly the
records public on the day by DOMAIN §9 (checked against the rules restated in
tests/records/test_publicity.py), masks individual businesses' names, and follows a "stop
publishing" decision and a correction from their day, not before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from records.catalogue import default_catalogue
from records.events import append_events
from records.store import Store
from records.workdays import china_today
from serving.auth import create_key
from serving.db import audit_log
from serving.load import mask_name
from tests.records.test_publicity import oracle_public
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.pipeline import AS_OF
from tests.serving.uvicorn import running_server

COVERED = ("admin_penalty", "spot_check", "serious_dishonest_list", "complaint",
           "tax_declaration", "registration")  # fmt: skip
"""Categories the restated rules cover; the others are checked by their catalogue period."""


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "public") as loaded:
        yield loaded


def _history(store: Store, codes: list[str], day: date) -> dict[str, Any]:
    """Records (attributes as dicts), their events and entity types, as known on the day."""
    with store.connect() as con:
        con.execute("CREATE TEMP TABLE wanted AS SELECT unnest(?) AS uscc", [codes])
        records = con.sql(
            "SELECT * FROM records WHERE uscc IN (SELECT uscc FROM wanted) "
            "AND recorded_date <= ?", params=[day]
        ).to_arrow_table().to_pylist()  # fmt: skip
        events = con.sql(
            "SELECT * FROM events WHERE recorded_date <= ?", params=[day]
        ).to_arrow_table().to_pylist()  # fmt: skip
        kinds = dict(con.execute(
            "SELECT uscc, arg_max(entity_type, recorded_date) FROM entities "
            "WHERE uscc IN (SELECT uscc FROM wanted) AND recorded_date <= ? GROUP BY uscc", [day]
        ).fetchall())  # fmt: skip
    by_record: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        e["attributes"] = json.loads(e["attributes"] or "{}")
        by_record.setdefault(e["record_id"], []).append(e)
    for r in records:
        r["attributes"] = json.loads(r["attributes"] or "{}")
    return {"records": records, "events": by_record, "kinds": kinds}


def _sample(store: Store) -> list[str]:
    """Companies with warnings, heavy or special-domain penalties, complaints, an individual
    business, and a few others."""
    with store.connect() as con:
        rows = con.execute(
            """
            (SELECT uscc FROM records WHERE category = 'admin_penalty'
               AND attributes LIKE '%"warning"]%' AND attributes NOT LIKE '%"fine"%'
               AND event_date > DATE '2026-04-15' ORDER BY uscc LIMIT 4)
            UNION (SELECT uscc FROM records WHERE category = 'admin_penalty'
               AND attributes LIKE '%"fire"%' AND severity = 'minor' ORDER BY uscc LIMIT 4)
            UNION (SELECT uscc FROM records WHERE category = 'admin_penalty'
               AND attributes LIKE '%licence_revoked%' ORDER BY uscc LIMIT 3)
            UNION (SELECT uscc FROM records WHERE category = 'complaint' ORDER BY uscc LIMIT 3)
            UNION (SELECT uscc FROM entities WHERE entity_type = 'individual_business'
               ORDER BY uscc LIMIT 3)
            UNION (SELECT uscc FROM entities ORDER BY uscc LIMIT 5)
            """
        ).fetchall()
    return sorted({u for (u,) in rows})


def test_the_page_shows_exactly_the_public_records(world: Loaded) -> None:
    codes = _sample(world.store)
    assert len(codes) >= 12, codes
    catalogue = default_catalogue()
    day = AS_OF
    known = _history(world.store, codes, day)
    now = _history(world.store, codes, china_today())  # a record no longer public is not shown
    key = create_key(world.engine, "public", None, "a citizen")
    log = world.data_dir / "uvicorn-public.log"
    seen_warning = seen_masked = 0
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client,
    ):
        for code in codes:
            page = client.get(f"/v1/public/companies/{code}", params={"on": day.isoformat()},
                              headers={"X-API-Key": key})  # fmt: skip
            assert page.status_code == 200, page.text
            body = page.json()
            shown = {r["record_id"]: r for r in body["records"]}
            kind = known["kinds"].get(code)
            for r in (x for x in known["records"] if x["uscc"] == code):
                events = known["events"].get(r["record_id"], [])
                if r["category"] in COVERED:
                    later = now["events"].get(r["record_id"], [])
                    expected = oracle_public(r, events, day, kind) and oracle_public(
                        r, later, china_today(), kind
                    )
                    assert (r["record_id"] in shown) == expected, (r, events)
                elif r["record_id"] in shown:  # public categories, within their period today
                    c = catalogue[r["category"]]
                    span = c.publicity_for(r["severity"]).max
                    assert c.shared_with_public and (span is None or not span.zero)
                    assert span is None or china_today() < span.after(r["event_date"])
                types = r["attributes"].get("penalty_types") or []
                if types and set(types) == {"warning"}:
                    seen_warning += 1
                    assert r["record_id"] not in shown, "warnings are never published"
            for record in body["records"]:  # no personal data: only the listed attributes
                assert set(record["attributes"]) <= {"penalty_types", "domain", "reason", "list",
                    "year", "check_item", "licence", "legal_basis", "ref"}  # fmt: skip
            # the records page names the end of publicity as the public page does
            listed = client.get(f"/v1/companies/{code}/records", params={"on": day.isoformat()},
                                headers={"X-API-Key": key}).json()["records"]  # fmt: skip
            ends = {r["record_id"]: r["public_until"] for r in listed}
            assert {r["record_id"]: r["publicity_end"] for r in listed} == ends  # deprecated name
            for record in body["records"]:
                until = record["public_until"]
                assert ends.get(record["record_id"], until) == until, record["record_id"]
            if kind == "individual_business":
                seen_masked += 1
                assert body["name"] and "*" in body["name"]
        assert seen_warning and seen_masked, (seen_warning, seen_masked)
        unknown = client.get("/v1/public/companies/91110000000000000X",
                             headers={"X-API-Key": key})  # fmt: skip
        assert unknown.status_code in (404, 422)
        future = china_today() + timedelta(days=1)
        later = client.get(f"/v1/public/companies/{codes[0]}", params={"on": future.isoformat()},
                           headers={"X-API-Key": key})  # fmt: skip
        assert later.status_code == 422 and later.json()["code"] == "future_day"
    # every read is audited (the writer flushes in the background)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with world.engine.connect() as con:
            reads = audit_log.c.endpoint == "GET /v1/public/companies/{uscc}"
            n = con.execute(
                sa.select(sa.func.count()).select_from(audit_log).where(reads)
            ).scalar_one()
        if n >= len(codes):
            break
        time.sleep(0.2)
    assert n >= len(codes)


def test_stop_publishing_hides_every_day_and_a_correction_shows_from_its_day(
    world: Loaded,
) -> None:
    """A record no longer published is not shown on the public view of any day, the days it
    was public included (DOMAIN §9: after repair or expiry it stops being published); the
    authorities still see that it was public then."""
    today = china_today()
    yesterday = today - timedelta(days=1)
    with world.store.connect() as con:
        rows = con.execute(
            "SELECT record_id, uscc FROM records WHERE category = 'admin_penalty' "
            "AND severity = 'serious' AND event_date > ? AND attributes NOT LIKE '%\"warning\"]%' "
            "AND record_id NOT IN (SELECT record_id FROM events) ORDER BY record_id LIMIT 2",
            [today - timedelta(days=700)],
        ).fetchall()  # fmt: skip
    assert len(rows) == 2, rows
    (hidden, hidden_co), (fixed, fixed_co) = rows
    stored = append_events(world.store, [
        {"event_id": "test-unpublish", "record_id": hidden, "event_type": "unpublish",
         "effective_date": today, "recorded_date": today},
        {"event_id": "test-correction", "record_id": fixed, "event_type": "correction",
         "effective_date": today, "recorded_date": today,
         "attributes": {"severity": "general", "attributes": {"domain": "fire"}}},
    ], today=today)  # fmt: skip
    assert stored.stored == 2 and not stored.rejected
    keys = {"public": create_key(world.engine, "public", None, "a citizen"),
            "regulator": create_key(world.engine, "regulator", None, "credit office")}  # fmt: skip
    log = world.data_dir / "uvicorn-public-2.log"
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client,
    ):

        def page(code: str, day: date) -> dict[str, Any]:
            got = client.get(f"/v1/public/companies/{code}", params={"on": day.isoformat()},
                             headers={"X-API-Key": keys["public"]})  # fmt: skip
            assert got.status_code == 200, got.text
            return {r["record_id"]: r for r in got.json()["records"]}

        assert hidden not in page(hidden_co, yesterday) and hidden not in page(hidden_co, today)
        public = {"X-API-Key": keys["public"]}
        for day in (yesterday, today):
            got = client.get(f"/v1/companies/{hidden_co}/records", headers=public,
                             params={"on": day.isoformat()})  # fmt: skip
            assert got.status_code == 200, got.text
            assert hidden not in {r["record_id"] for r in got.json()["records"]}
        # the authorities still see it: no longer public, still counting; public yesterday
        headers = {"X-API-Key": keys["regulator"], "X-Purpose": "test"}
        for day, was_public in ((today, False), (yesterday, True)):
            seen = client.get(f"/v1/companies/{hidden_co}/records", headers=headers,
                              params={"on": day.isoformat()})  # fmt: skip
            record = next(r for r in seen.json()["records"] if r["record_id"] == hidden)
            assert (record["public"], record["counts"]) == (was_public, True)

        before, after = page(fixed_co, yesterday)[fixed], page(fixed_co, today)[fixed]
        assert (before["severity"], before["corrected"]) == ("serious", False)
        assert (after["severity"], after["corrected"]) == ("general", True)
        assert after["attributes"]["domain"] == "fire"


def test_free_text_reasons_are_not_published(world: Loaded) -> None:
    """A listing's reason written by its proposer may name people: the public page shows only
    the coded grounds the catalogue declares (the abnormal-operation list's), never free text."""
    with world.store.connect() as con:
        code = con.execute(
            "SELECT uscc FROM entities WHERE entity_type = 'individual_business' "
            "AND uscc NOT IN (SELECT uscc FROM records WHERE category LIKE '%_list') "
            "ORDER BY uscc LIMIT 1"
        ).fetchone()[0]  # fmt: skip
        coded = con.execute(
            "SELECT uscc, record_id FROM records WHERE category = 'abnormal_operation_list' "
            "AND severity = 'listed' AND attributes LIKE '%unreachable%' "
            "ORDER BY event_date DESC LIMIT 1"
        ).fetchone()  # fmt: skip
    text = "经营者张伟（身份证410102198001011234，电话13812345678）获评诚信经营户"
    keys = {"public": create_key(world.engine, "public", None, "a citizen"),
            "regulator": create_key(world.engine, "regulator", None, "credit office")}  # fmt: skip
    log = world.data_dir / "uvicorn-public-3.log"
    with (
        running_server(world.data_dir, log, {"DATABASE_URL": world.url}) as base_url,
        httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client,
    ):
        listed = client.post(
            "/v1/list-entries",
            headers={"X-API-Key": keys["regulator"], "X-Purpose": "test"},
            json={"uscc": code, "list": "red_list", "legal_basis": "豫信用办〔2025〕1号",
                  "reason": text, "ground": "honour"},
        )  # fmt: skip
        assert listed.status_code in (200, 201), listed.text
        record_id = listed.json()["record_id"]
        page = client.get(f"/v1/public/companies/{code}", headers={"X-API-Key": keys["public"]})
        assert page.status_code == 200, page.text
        assert "张伟" not in page.text and "13812345678" not in page.text
        body = page.json()
        assert [x["reason"] for x in body["lists"] if x["record_id"] == record_id] == [None]
        shown = next(r for r in body["records"] if r["record_id"] == record_id)
        assert shown["attributes"]["list"] == "honour" and "reason" not in shown["attributes"]
        # a coded ground is public
        if coded is not None:
            other = client.get(f"/v1/public/companies/{coded[0]}",
                               headers={"X-API-Key": keys["public"]}).json()  # fmt: skip
            reasons = {x["record_id"]: x["reason"] for x in other["lists"]}
            assert reasons.get(coded[1], "unreachable") == "unreachable"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("李四便利店", "李**利店"),  # once "李四*利店": the owner's whole name
        ("王小明烟酒店", "王***酒店"),
        ("欧阳娜娜", "欧***"),  # a business without a registered name goes by its owner's
        ("张三", "张*"),
        ("金水区王记小吃店", "金*****吃店"),
        ("李", "李"),
    ],
)
def test_a_masked_name_shows_no_more_of_the_owner_than_the_surname(name: str, shown: str) -> None:
    assert mask_name(name) == shown
    assert len(mask_name(name) or "") == len(name)
