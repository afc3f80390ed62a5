"""What the company look-ups serve to each caller (TestClient, SQLite and PostgreSQL): a
department reads no more of a tier's reasons than the records it may see; the open-objection
flag is read live; the records page masks other departments' personal data and names the end
of publicity; the public page of a past day shows that day's evaluation; history says where a
point came from; a company not tiered says why; credit data is not cached.

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
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app as cli
from records import publicity
from records.events import append_events
from records.ingest import ingest_table
from records.publicity import records_on
from records.settings import Settings
from records.workdays import china_today
from serving import objections
from serving.app import create_app
from serving.auth import create_key, list_keys
from serving.db import companies, company_history, make_engine, upgrade
from serving.lookup import department_view, may_withhold, plain_reason
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.pipeline import AS_OF


@dataclass
class Served:
    world: Loaded
    client: TestClient
    keys: dict[str, str]
    taken: set[str] = field(default_factory=set)
    """Companies a test has taken (each works on its own)."""

    def key(self, role: str, department: str | None = None, uscc: str | None = None) -> str:
        name = f"{role}:{department or uscc or ''}"
        if name not in self.keys:
            self.keys[name] = create_key(self.world.engine, role, department, name, uscc)
        return self.keys[name]

    def get(self, path: str, key: str, **kw: Any) -> Any:
        headers = {"X-API-Key": key, "X-Purpose": "view test"}
        got = self.client.get(path, headers=headers, **kw)
        assert got.status_code == 200, got.text
        return got.json()

    def batch(self, codes: list[str], key: str) -> Any:
        headers = {"X-API-Key": key, "X-Purpose": "view test"}
        got = self.client.post("/v1/companies:batch", headers=headers, json={"usccs": codes})
        assert got.status_code == 200, got.text
        return got.json()

    def docs(self, like: str, limit: int = 20) -> list[tuple[str, dict[str, Any]]]:
        """Served companies whose full document contains `like`, with that document."""
        with self.world.engine.connect() as con:
            rows = con.execute(
                sa.select(companies.c.uscc, companies.c.full_doc)
                .where(companies.c.full_doc.like(f"%{like}%"))
                .order_by(companies.c.uscc).limit(limit)
            ).all()  # fmt: skip
        return [(u, json.loads(d)) for u, d in rows]


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy(request.param, request, tmp_path_factory, province, "views") as loaded:
        yield loaded


@pytest.fixture(scope="module")
def served(world: Loaded) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = Settings(data_dir=world.data_dir, DATABASE_URL=world.url,
                            duckdb_memory_limit="1GB")  # fmt: skip
        with TestClient(create_app(settings)) as client:
            yield Served(world, client, {})


def _reasons(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["code"]: r for r in doc["tier"]["reasons"]}


def test_a_department_reads_no_evidence_of_records_it_may_not_see(served: Served) -> None:
    """Tax declarations are not shared with the public or other departments: the ecology
    department gets the reason's code, kind, contribution and the feature in words, never the
    count, dates, departments or record ids; the tax department (whose records they are), the
    regulators and the company itself get the reason whole. Reasons on records the ecology
    department may see (public listings) stay whole for it too."""
    found = served.docs('"code": "tax_nil_declarations_3y"')
    assert found, "no company with a tax reason"
    with_listing = [(u, d) for u, d in found if "veto:on_abnormal_list" in _reasons(d)]
    uscc, stored = (with_listing or found)[0]
    ecology, tax = served.key("department", "ecology"), served.key("department", "tax")
    regulator = served.key("regulator")
    full = served.get(f"/v1/companies/{uscc}", regulator)
    assert full["tier"] == stored["tier"]
    secret = _reasons(full)["tax_nil_declarations_3y"]
    assert secret["evidence"]["departments"] == ["tax"] and secret["evidence"]["records"]

    seen = served.get(f"/v1/companies/{uscc}", ecology)
    (batched,) = served.batch([uscc], ecology)["companies"]
    assert batched == seen
    withheld = _reasons(seen)["tax_nil_declarations_3y"]
    assert withheld == {
        "code": "tax_nil_declarations_3y", "kind": "model", "contribution": secret["contribution"],
        "zh": "近3年零申报", "en": "nil tax returns in the last 3 years",
    }  # fmt: skip
    text = json.dumps(seen, ensure_ascii=False)
    assert "税务" not in text and '"tax"' not in text
    assert not any(rid in text for rid in secret["evidence"]["records"])
    assert secret["evidence"]["latest"] not in text
    # everything else is as the regulator sees it
    assert {k: v for k, v in seen.items() if k != "tier"} == {
        k: v for k, v in full.items() if k != "tier"}  # fmt: skip
    for code, reason in _reasons(full).items():
        if code != "tax_nil_declarations_3y" and "evidence" not in reason:
            assert _reasons(seen)[code] == reason
    if with_listing:  # a public listing's reason is seen whole
        listing = _reasons(full)["veto:on_abnormal_list"]
        assert _reasons(seen)["veto:on_abnormal_list"] == listing and listing["evidence"]

    # the tax department's own records, the authorities and the company itself: whole
    company = served.key("company", uscc=uscc)
    for key in (tax, regulator, served.key("analyst"), served.key("admin"), company):
        assert served.get(f"/v1/companies/{uscc}", key)["tier"] == full["tier"]
        assert served.batch([uscc], key)["companies"][0]["tier"] == full["tier"]


def test_a_department_is_served_as_stored_what_names_nothing_to_withhold(served: Served) -> None:
    """A department's look-up parsed and wrote again every document (1.48x a regulator's cost);
    now only those `may_withhold` finds a feature in. Never a document it would change: over
    every stored document, for the department whose records they may be and another, one that
    names none is left as it is by `department_view`, and is served byte for byte as stored."""
    with served.world.engine.connect() as con:
        rows = con.execute(sa.select(companies.c.uscc, companies.c.full_doc)
                           .order_by(companies.c.uscc)).all()  # fmt: skip
    plain, named = [], []
    for uscc, text in rows:
        (named if may_withhold(text) else plain).append((uscc, text))
        if may_withhold(text):
            continue
        for department in ("tax", "ecology", "samr"):
            doc = json.loads(text)
            department_view([doc], department)
            assert doc == json.loads(text), (uscc, department)
    assert plain and named  # the province has both kinds
    ecology = served.key("department", "ecology")
    headers = {"X-API-Key": ecology, "X-Purpose": "view test"}
    for uscc, text in plain[:5]:
        if '"objection_open": true' in text:
            continue
        got = served.client.get(f"/v1/companies/{uscc}", headers=headers)
        assert got.status_code == 200 and got.text == text
    # a name that is only a reason's code, a veto's or a deduction's feature is found
    for name in ("tax_nil_declarations_3y", "complaints_12m"):
        for shown in (f'"code": "{name}"', f'"code": "veto:{name}"', f'"feature": "{name}"'):
            assert may_withhold("{" + shown + "}")
    assert not may_withhold('{"code": "penalties_3y", "feature": "days_since_penalty"}')


def test_a_batch_withholds_per_company(served: Served) -> None:
    """In a batch the department's view is applied to every company: the tax reasons of each
    are withheld from the ecology department, the rest is the regulator's."""
    found = [u for u, _ in served.docs('"code": "tax_nil_declarations_3y"', limit=40)][-8:]
    others = [u for u, _ in served.docs('"code": "registered_capital_log"', limit=4)]
    codes = list(dict.fromkeys(found + others))
    ecology = served.batch(codes, served.key("department", "ecology"))["companies"]
    full = served.batch(codes, served.key("regulator"))["companies"]
    assert [c["uscc"] for c in ecology] == [c["uscc"] for c in full] == codes
    for seen, whole in zip(ecology, full, strict=True):
        for mine, theirs in zip(seen["tier"]["reasons"], whole["tier"]["reasons"], strict=True):
            assert (mine["code"], mine["kind"], mine["contribution"]) == (
                theirs["code"], theirs["kind"], theirs["contribution"])  # fmt: skip
            if mine["code"] == "tax_nil_declarations_3y":
                assert "evidence" not in mine and mine["zh"] == "近3年零申报"
            elif "evidence" not in theirs:
                assert mine == theirs


def test_plain_reasons_say_the_feature_without_its_value() -> None:
    assert plain_reason("fines_3y", "model") == ("近3年罚款合计", "fines in the last 3 years")
    assert plain_reason("tax_declared_12m", "model") == (
        "近12个月申报税额", "tax declared in the last 12 months")  # fmt: skip
    assert plain_reason("veto:on_abnormal_list", "veto") == (
        "列入经营异常名录", "on the abnormal-operation list")  # fmt: skip
    assert plain_reason("tax_grade_worst_2y", "model") == (
        "近2年最低纳税信用等级（1=A … 4=D）",
        "worst tax credit grade in the last 2 years (1 = A … 4 = D)",
    )
    for code in ("complaints_12m", "utility_arrears_months", "shared_address_companies"):
        zh, en = plain_reason(code, "model")
        assert "{value}" not in zh + en and zh and en
    assert plain_reason("no_such_feature", "model") == ("no_such_feature", "no_such_feature")


def _company_with(served: Served, taken: set[str]) -> tuple[str, str, str]:
    """A served company (not in `taken`) with an administrative penalty public today and a tax
    declaration (never public), neither under objection: (uscc, public record, tax record)."""
    today = china_today()
    with served.world.engine.connect() as con:
        codes = set(con.execute(sa.select(companies.c.uscc)).scalars())
    with served.world.store.connect() as con:
        rows = con.execute(
            "SELECT p.uscc FROM records p JOIN records t ON t.uscc = p.uscc "
            "WHERE p.category = 'admin_penalty' AND t.category = 'tax_declaration' "
            "AND p.event_date > ? AND p.severity = 'serious' "
            "AND p.attributes NOT LIKE '%\"warning\"]%' GROUP BY p.uscc ORDER BY p.uscc",
            [today - timedelta(days=1000)],
        ).fetchall()  # fmt: skip
    for (uscc,) in rows:
        if uscc not in codes or uscc in taken:
            continue
        shown = records_on(served.world.store, uscc, today, now=today)
        public = [r for r in shown if r["public"] and r["category"] == "admin_penalty"]
        tax = [r for r in shown if r["category"] == "tax_declaration"]
        if public and tax and not any(r["objection_open"] for r in shown):
            taken.add(uscc)
            return uscc, public[0]["record_id"], tax[0]["record_id"]
    raise AssertionError("no company with a public penalty and a tax declaration")


def test_the_objection_flag_is_read_live_for_every_view(served: Served) -> None:
    """A filing whose re-score did not happen (no model, a published day) left the served flag
    false until the next batch, and a decision left it true. The look-ups now read the open
    objections: every view sees the flag at once, for the records it may see: the public (and
    another company) only for public records, as the public page says; a department for
    records public today or its own; the authorities and the company itself for any."""
    world = served.world
    uscc, public_record, tax_record = _company_with(served, served.taken)
    company, page = f"/v1/companies/{uscc}", f"/v1/public/companies/{uscc}"
    keys = {
        "regulator": served.key("regulator"), "company": served.key("company", uscc=uscc),
        "tax": served.key("department", "tax"), "ecology": served.key("department", "ecology"),
        "public": served.key("public"),
        "another": served.key("company", uscc=_another(served, uscc)),
    }  # fmt: skip

    def flags() -> dict[str, bool]:
        seen = {who: served.get(company, key)["flags"]["objection_open"]
                for who, key in keys.items()}  # fmt: skip
        for who, key in keys.items():  # the batch says the same
            (doc,) = served.batch([uscc], key)["companies"]
            assert doc["flags"]["objection_open"] == seen[who], who
        seen["page"] = served.get(page, keys["public"])["objection_open"]
        return seen

    assert set(flags().values()) == {False}
    # an objection to the tax declaration, filed without a re-score (the stored document
    # still says false): the public, other companies and other departments do not see it
    case = objections.file_objection(world.engine, world.store, tax_record, "not ours", None, None)
    assert flags() == {"regulator": True, "company": True, "tax": True, "ecology": False,
                       "public": False, "another": False, "page": False}  # fmt: skip
    # an objection to the public penalty: everyone
    second = objections.file_objection(world.engine, world.store, public_record, "wrong", None,
                                       None)  # fmt: skip
    assert set(flags().values()) == {True}
    # decided without a re-score: down at once
    for case_id in (case["id"], second["id"]):
        objections.decide(world.engine, world.store, case_id, "upheld", "stands", None, None)
    assert set(flags().values()) == {False}


def test_a_stored_flag_gives_way_to_the_live_one(served: Served) -> None:
    """A document stored with the flag up (the re-score of a filing) no longer says so once
    the objection is decided, though nothing re-scored the company."""
    world = served.world
    uscc, _, _ = _company_with(served, served.taken)
    with world.engine.begin() as con:
        text = con.execute(sa.select(companies.c.full_doc).where(companies.c.uscc == uscc))
        stored = json.loads(text.scalar_one())
        stored["flags"]["objection_open"] = True
        con.execute(companies.update().where(companies.c.uscc == uscc)
                    .values(full_doc=json.dumps(stored, ensure_ascii=False)))  # fmt: skip
    assert served.get(f"/v1/companies/{uscc}", served.key("regulator"))["flags"] == {
        **stored["flags"], "objection_open": False}  # fmt: skip


def test_a_batch_reads_the_objections_once(served: Served) -> None:
    """The flags of a batch come from one query of the objections table (per 900 codes), not
    one per company."""
    with served.world.engine.connect() as con:
        codes = list(con.execute(sa.select(companies.c.uscc).order_by(companies.c.uscc)
                                 .limit(1500)).scalars())  # fmt: skip
    engine = served.client.app.state.service.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def count(_con: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        body = served.batch(codes, served.key("regulator"))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(body["companies"]) == len(codes)
    assert sum("FROM objections" in s for s in statements) == 2  # 1,500 codes: two parts


def _another(served: Served, uscc: str) -> str:
    with served.world.engine.connect() as con:
        return str(con.execute(sa.select(companies.c.uscc).where(companies.c.uscc != uscc)
                               .order_by(companies.c.uscc).limit(1)).scalar_one())  # fmt: skip


PERSONAL = {"party_name": "张三", "id_number": "410102199001011234", "phone": "13812345678",
            "reason": "张三无照经营，电话13812345678"}  # fmt: skip


def test_a_department_sees_no_personal_data_of_other_departments_records(
    served: Served,
) -> None:
    """A tax key read a market-regulation record of an individual business with its owner's
    name, identity number and phone. A department now sees the attributes of its own records
    and, of other departments' records, only those the public page shows; the authorities
    and the company itself see them all. Enterprises alike."""
    world, today = served.world, china_today()
    with world.engine.connect() as con:
        served_codes = set(con.execute(sa.select(companies.c.uscc)).scalars())
    with world.store.connect() as con:
        kinds = dict(con.execute(
            "SELECT uscc, arg_max(entity_type, recorded_date) FROM entities GROUP BY uscc"
        ).fetchall())  # fmt: skip
        taxed = {u for (u,) in con.execute(
            "SELECT DISTINCT uscc FROM records WHERE category = 'tax_declaration'"
        ).fetchall()}  # fmt: skip
    picked = {}
    for kind in ("individual_business", "enterprise"):
        free = sorted(served_codes & taxed - served.taken)
        picked[kind] = next(u for u in free if kinds.get(u) == kind)
        served.taken.add(picked[kind])
    rows = [
        {"record_id": f"VIEW-PEN-{kind}-{world.url[:5]}", "uscc": uscc, "category": "admin_penalty",
         "event_date": (today - timedelta(days=30)).isoformat(), "severity": "general",
         "amount": 500.0,
         "attributes": json.dumps({**PERSONAL, "penalty_types": ["fine"], "domain": "market_order"},
                                  ensure_ascii=False)}
        for kind, uscc in picked.items()
    ]  # fmt: skip
    stored = ingest_table(world.store, pa.Table.from_pylist(rows), "records", "samr", today=today)
    assert stored.stored == 2, stored
    keys = {who: served.key("department", who) for who in ("tax", "samr", "ecology")}
    for kind, uscc in picked.items():
        path = f"/v1/companies/{uscc}/records"
        record_id = f"VIEW-PEN-{kind}-{world.url[:5]}"
        full = {r["record_id"]: r for r in served.get(path, served.key("regulator"))["records"]}
        assert full[record_id]["attributes"] == {**PERSONAL, "penalty_types": ["fine"],
                                                 "domain": "market_order"}  # fmt: skip
        assert full[record_id]["public"] is True
        for who in ("tax", "ecology"):
            body = served.get(path, keys[who])
            seen = {r["record_id"]: r for r in body["records"]}
            assert seen[record_id]["attributes"] == {"penalty_types": ["fine"],
                                                     "domain": "market_order"}  # fmt: skip
            text = json.dumps(body, ensure_ascii=False)
            assert not any(v in text for v in ("张三", "410102199001011234", "13812345678"))
            for rid, r in seen.items():  # its own records whole, others' as the public page
                if r["source_dept"] == who:
                    assert r["attributes"] == full[rid]["attributes"]
                else:
                    assert set(r["attributes"]) <= {"penalty_types", "domain", "reason", "list",
                        "year", "check_item", "licence", "legal_basis", "ref"}  # fmt: skip
        own_tax = [r for r in served.get(path, keys["tax"])["records"]
                   if r["category"] == "tax_declaration"]  # fmt: skip
        assert own_tax and all(r["attributes"] == full[r["record_id"]]["attributes"]
                               and "period_end" in r["attributes"] for r in own_tax)  # fmt: skip
        for key in (keys["samr"], served.key("company", uscc=uscc), served.key("admin")):
            mine = {r["record_id"]: r for r in served.get(path, key)["records"]}
            assert mine[record_id]["attributes"] == full[record_id]["attributes"]


def test_a_record_no_longer_public_says_when_its_publicity_ended(served: Served) -> None:
    """`public_until` was null for every record not public on the day, so a company could not
    see when its record stopped being public. Now a record that was public and is no longer
    gives the day its publicity ended (expired, stopped publishing), with `public: false`, in
    every view that shows it; null stays for records never public (a tax declaration)."""
    world, today = served.world, china_today()
    uscc, public_record, tax_record = _company_with(served, served.taken)
    with world.store.connect() as con:
        expired = con.execute(
            "SELECT record_id, uscc, event_date, severity, attributes FROM records "
            "WHERE category = 'admin_penalty' AND severity = 'minor' AND event_date < ? "
            "AND event_date > ? AND attributes LIKE '%\"fine\"%' AND attributes NOT LIKE "
            "'%\"fire\"%' AND record_id NOT IN (SELECT record_id FROM events) "
            "ORDER BY record_id LIMIT 1",
            [today - timedelta(days=400), today - timedelta(days=700)],
        ).fetchone()  # fmt: skip
    assert expired is not None
    stored = append_events(world.store, [
        {"event_id": f"view-unpublish-{public_record}", "record_id": public_record,
         "event_type": "unpublish", "effective_date": today, "recorded_date": today},
    ], today=today)  # fmt: skip
    assert stored.stored == 1 and not stored.rejected

    def records(code: str, key: str, day: date) -> dict[str, dict[str, Any]]:
        body = served.get(f"/v1/companies/{code}/records", key, params={"on": day.isoformat()})
        return {r["record_id"]: r for r in body["records"]}

    company = served.key("company", uscc=uscc)
    (owner,) = {r["source_dept"] for r in records_on(world.store, uscc, today)
                if r["record_id"] == public_record}  # fmt: skip
    department = served.key("department", owner)  # its own record, though not public
    for key in (served.key("regulator"), company, department):
        seen = records(uscc, key, today)
        stopped = seen[public_record]
        assert stopped["public_until"] == stopped["publicity_end"] == today.isoformat()
        assert stopped["public"] in (False, None)
        if key != department:
            never = seen[tax_record]
            assert never["public"] is False
            assert never["public_until"] is never["publicity_end"] is None
    # yesterday it was public: the authorities see it so (the end then known: its period's);
    # the department's view made today says it is no longer, and since when
    yesterday = today - timedelta(days=1)
    then = records(uscc, served.key("regulator"), yesterday)[public_record]
    assert then["public"] is True and then["public_until"] > today.isoformat()
    now = records(uscc, department, yesterday)[public_record]
    assert now["public_until"] == today.isoformat()
    # expired by its period: the period's end, in the company's own view too
    record_id, code, event_date, severity, attributes = expired
    kind = records_on(world.store, code, today)[0]["entity_type"]
    end = publicity.period("admin_penalty", severity, attributes, kind).public_until(event_date)
    assert end is not None and event_date < end <= today
    for key in (served.key("regulator"), served.key("company", uscc=code)):
        old = records(code, key, today)[record_id]
        assert old["public"] is False
        assert old["public_until"] == old["publicity_end"] == end.isoformat()


def test_the_public_page_of_a_past_day_shows_that_days_evaluation(served: Served) -> None:
    """Once a company was re-scored, its public page of an earlier day showed no evaluation,
    though that day's batch was published. The page now reads the evaluation in force on the
    day from the history: the latest published on or before it."""
    world, today = served.world, china_today()
    uscc, _, _ = _company_with(served, served.taken)
    with world.engine.connect() as con:
        batch = con.execute(
            sa.select(company_history.c.score, company_history.c.grade)
            .where(company_history.c.uscc == uscc, company_history.c.as_of == AS_OF)
        ).one()  # fmt: skip
    regulator = {"X-API-Key": served.key("regulator"), "X-Purpose": "view test"}
    rescored = served.client.post(f"/v1/companies/{uscc}:rescore", headers=regulator)
    assert rescored.status_code == 200, rescored.text
    after = rescored.json()["after"]
    page = f"/v1/public/companies/{uscc}"
    public = served.key("public")
    for day in (AS_OF, AS_OF + timedelta(days=10), today - timedelta(days=1)):
        shown = served.get(page, public, params={"on": day.isoformat()})["evaluation"]
        assert shown == {"score": batch.score, "grade": batch.grade}, day
    for day in (today, None):
        params = {"on": day.isoformat()} if day else {}
        shown = served.get(page, public, params=params)["evaluation"]
        assert shown == {"score": after["score"], "grade": after["grade"]}
    before = served.get(page, public, params={"on": (AS_OF - timedelta(days=1)).isoformat()})
    assert before["evaluation"] is None  # nothing published by then


def test_history_points_say_their_source_and_probabilities_are_rounded(served: Served) -> None:
    """A history point did not say whether it was the monthly batch's or a re-score's; now it
    does (`source`). Its probability, and a re-score's, are rounded to 6 places as the company
    document's."""
    world = served.world
    uscc, _, _ = _company_with(served, served.taken)
    regulator = {"X-API-Key": served.key("regulator"), "X-Purpose": "view test"}
    rescored = served.client.post(f"/v1/companies/{uscc}:rescore", headers=regulator)
    assert rescored.status_code == 200, rescored.text
    answer = rescored.json()["after"]["probability"]
    with world.engine.connect() as con:
        stored = dict(con.execute(
            sa.select(company_history.c.as_of, company_history.c.probability)
            .where(company_history.c.uscc == uscc)).all())  # fmt: skip
    points = served.get(f"/v1/companies/{uscc}/history", served.key("regulator"))["history"]
    assert [(p["as_of"], p["source"]) for p in points] == [
        (AS_OF.isoformat(), "batch"), (china_today().isoformat(), "rescore")]  # fmt: skip
    for point in points:
        day = date.fromisoformat(point["as_of"])
        assert point["probability"] == round(stored[day], 6)
        assert len(repr(point["probability"]).split(".")[-1]) <= 6
    assert answer == points[-1]["probability"]
    doc = served.get(f"/v1/companies/{uscc}", served.key("regulator"))
    assert doc["tier"]["probability"] == answer
    assert any(round(p, 6) != p for p in stored.values()), "probabilities with more places"


def test_a_company_without_a_tier_says_why(served: Served) -> None:
    """Deregistered and revoked companies were served with a grade, `tier: null` and no word
    why. The document now carries the registration status (every view) and, in the full view,
    `not_tiered`: `inactive` for a registration that is not active; a tiered company is
    `active` with `not_tiered: null`."""
    world = served.world
    with world.engine.connect() as con:
        untiered = list(con.execute(
            sa.select(companies.c.uscc).where(companies.c.tier.is_(None))
            .order_by(companies.c.uscc).limit(5)).scalars())  # fmt: skip
        tiered = con.execute(
            sa.select(companies.c.uscc).where(companies.c.tier.is_not(None))
            .order_by(companies.c.uscc).limit(1)).scalar_one()  # fmt: skip
    assert untiered, "no company without a tier"
    with world.store.connect() as con:
        statuses = dict(con.execute(
            "SELECT uscc, arg_max(status, recorded_date) FROM entities "
            "WHERE recorded_date <= ? GROUP BY uscc", [AS_OF]).fetchall())  # fmt: skip
    regulator, public = served.key("regulator"), served.key("public")
    for uscc in untiered:
        doc = served.get(f"/v1/companies/{uscc}", regulator)
        assert doc["tier"] is None and doc["evaluation"]["grade"]
        assert doc["status"] == statuses[uscc] != "active"
        assert doc["not_tiered"] == "inactive"
        shown = served.get(f"/v1/companies/{uscc}", public)
        assert shown["status"] == doc["status"] and "not_tiered" not in shown
        (batched,) = served.batch([uscc], regulator)["companies"]
        assert (batched["status"], batched["not_tiered"]) == (doc["status"], "inactive")
    doc = served.get(f"/v1/companies/{tiered}", regulator)
    assert (doc["status"], doc["not_tiered"]) == ("active", None) and doc["tier"]["tier"]
    # a re-score writes them too
    headers = {"X-API-Key": regulator, "X-Purpose": "view test"}
    assert served.client.post(f"/v1/companies/{untiered[0]}:rescore",
                              headers=headers).status_code == 200  # fmt: skip
    again = served.get(f"/v1/companies/{untiered[0]}", regulator)
    assert again["as_of"] == china_today().isoformat()
    assert (again["status"], again["not_tiered"], again["tier"]) == (
        statuses[untiered[0]], "inactive", None)  # fmt: skip


def test_credit_answers_are_not_cached(served: Served) -> None:
    """Answers about a company carried no Cache-Control: a browser or proxy could keep them.
    Every /v1 answer now says `private, no-store` (errors too), the health and docs routes do
    not."""
    uscc, _, _ = _company_with(served, served.taken)
    regulator = {"X-API-Key": served.key("regulator"), "X-Purpose": "view test"}
    public = {"X-API-Key": served.key("public")}
    client = served.client
    answers = [
        client.get(f"/v1/companies/{uscc}", headers=regulator),
        client.get(f"/v1/companies/{uscc}", headers=public),
        client.post("/v1/companies:batch", headers=regulator, json={"usccs": [uscc]}),
        client.get(f"/v1/companies/{uscc}/history", headers=regulator),
        client.get(f"/v1/companies/{uscc}/records", headers=regulator),
        client.get(f"/v1/public/companies/{uscc}", headers=public),
        client.get("/v1/companies/91110000600037341L", headers=regulator),  # 404
        client.get(f"/v1/companies/{uscc}", headers={"X-API-Key": served.key("regulator")}),
    ]
    assert [a.status_code for a in answers] == [200] * 6 + [404, 400]
    for answer in answers:
        assert answer.headers["cache-control"] == "private, no-store", answer.request.url
    for path in ("/readyz", "/openapi.json", "/healthz"):
        assert "no-store" not in client.get(path).headers.get("cache-control", ""), path


def test_a_405_names_the_allowed_methods(served: Served) -> None:
    """A 405 lost its Allow header in the JSON error handler; it keeps it."""
    regulator = {"X-API-Key": served.key("regulator"), "X-Purpose": "view test"}
    uscc = _another(served, "")
    refused = served.client.delete(f"/v1/companies/{uscc}", headers=regulator)
    assert refused.status_code == 405 and refused.json()["code"] == "method_not_allowed"
    assert refused.headers["allow"] == "GET"
    batch = served.client.get("/v1/companies:batch", headers=regulator)
    assert batch.status_code == 405 and batch.headers["allow"] == "POST"


def test_a_department_key_names_a_known_department(tmp_path: Path) -> None:
    """`credsup keys create --role department --department X` took any text, so a typo made a
    key that saw no records as its own. A department must now be one the service knows (or one
    that sent records), matched regardless of case and kept as its code; anything else is
    refused in one line naming the known ones."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        create_key(engine, "department", " Tax ", "tax office")
        create_key(engine, "department", "bdci2020", "a province's own", departments=["bdci2020"])
        with pytest.raises(ValueError, match=r"unknown department 'taxes': known are .*ecology"):
            create_key(engine, "department", "taxes", "typo")
        with pytest.raises(ValueError, match="needs --department"):
            create_key(engine, "department", None, "none")
        assert [(k["role"], k["department"]) for k in list_keys(engine)] == [
            ("department", "tax"), ("department", "bdci2020")]  # fmt: skip
    finally:
        engine.dispose()
    env = {"CREDSUP_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": None,
           "CREDSUP_DATABASE_URL": None}  # fmt: skip
    made = CliRunner().invoke(cli, ["keys", "create", "--role", "department", "--department",
                                    "ECOLOGY", "--json"], env=env)  # fmt: skip
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["department"] == "ecology"
    refused = CliRunner().invoke(cli, ["keys", "create", "--role", "department",
                                       "--department", "ecolgy"], env=env)  # fmt: skip
    assert refused.exit_code == 2
    assert "unknown department 'ecolgy': known are" in " ".join(refused.output.split())
