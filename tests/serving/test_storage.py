"""The serving database on SQLite (the embedded default) and PostgreSQL (`DATABASE_URL`).

Every test runs on both. PostgreSQL is expected at 127.0.0.1:5432 (trust auth, user postgres,
database `test`, or `CREDSUP_TEST_POSTGRES_URL`); each test session works in databases of its
own (`credsup_test_<random>`, created through `test` and dropped at the end), so runs never
collide. Without a reachable server these tests skip, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import json
import math
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from cli.main import app
from records.settings import Settings
from records.store import Store
from serving.app import create_app
from serving.audit import AuditQuarantine, AuditUnavailable, AuditWriter, insert_rows
from serving.auth import Caller, KeyCache, create_key, hash_key, list_keys, revoke_key
from serving.db import (
    alembic_config,
    api_keys,
    audit_log,
    companies,
    company_history,
    make_engine,
    metadata,
    upgrade,
)
from serving.limits import RateLimiter, create_table
from serving.load import AmbiguousLoad, Loaded, NothingToLoad, build_documents, load_results
from tests.serving.databases import BACKENDS, OLDER, fresh_url
from tests.serving.pipeline import AS_OF
from tests.serving.uvicorn import REPO

TABLES = {
    "companies", "company_history", "api_keys", "audit_log", "check_items", "inspectors",
    "inspector_conflicts", "plan_counter", "spot_check_plans", "spot_check_tasks",
    "spot_check_assignments", "credit_repairs", "lifecycle_log", "objections", "list_entries",
    "check_list_settings",
}  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[tuple[str, Engine, list[Loaded]]]:
    """A migrated database of each backend, loaded with `AS_OF` and then the older `OLDER`."""
    url = fresh_url(request.param, request, tmp_path_factory.mktemp(request.param))
    upgrade(url)
    engine = make_engine(url)
    store = Store(province / "store", memory_limit="1GB", threads=2)
    loads = [load_results(engine, store, province, day) for day in (AS_OF, OLDER)]
    try:
        yield url, engine, loads
    finally:
        engine.dispose()


# ---- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_run_and_are_idempotent(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = fresh_url(backend, request, tmp_path)
    # three processes (workers) starting on the empty database at once: one migrates, the
    # others wait and find it done (they raced to create the same tables, and the service
    # stopped); then a second run finds the schema at head and changes nothing
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def migrate() -> None:
        start.wait()
        try:
            upgrade(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    upgrade(url)
    engine = make_engine(url)
    try:
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        with engine.connect() as con:
            assert MigrationContext.configure(con).get_current_revision() == head == "0010"
            assert con.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == TABLES | {"alembic_version"}
        for table in metadata.sorted_tables:  # the migrations build what the code declares
            assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.c.keys())
        indexed = {i["name"] for i in inspector.get_indexes("companies")}
        assert {"ix_companies_as_of", "ix_companies_tier", "ix_companies_region"} <= indexed
        assert {i["name"] for i in inspector.get_indexes("audit_log")} >= {"ix_audit_log_uscc"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_loaded_before_0002_gets_what_the_pool_reads(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """0002 added region, industry, type and name to the history without filling them: a date
    loaded under 0001 could not be drawn from (no company of region 4101) until loaded again."""
    from alembic import command

    url = fresh_url(backend, request, tmp_path)
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    try:
        with engine.begin() as con:
            con.execute(sa.text(
                "INSERT INTO companies (uscc, region, industry, entity_type, as_of, tier, grade, "
                "full_doc, public_doc) VALUES ('91410100MA0000000X', '410102', 'C13', "
                "'enterprise', '2026-06-30', 'B', 'B', '{}', '{}')"
            ))  # fmt: skip
            con.execute(sa.text(
                "INSERT INTO company_history (uscc, as_of, tier) "
                "VALUES ('91410100MA0000000X', '2026-06-30', 'B')"
            ))  # fmt: skip
        upgrade(url)
        with engine.connect() as con:
            row = con.execute(sa.select(company_history)).mappings().one()
        assert (row["region"], row["industry"], row["entity_type"]) == (
            "410102", "C13", "enterprise",
        )  # fmt: skip
    finally:
        engine.dispose()


def test_results_load_and_an_older_load_keeps_newer_rows(
    database: tuple[str, Engine, list[Loaded]], province: Path
) -> None:
    _, engine, (current, older) = database
    assert current.as_of == AS_OF and older.as_of == OLDER
    assert current.kept_newer == 0 and current.companies > 2500
    assert current.score_file and current.tier_file and older.tier_file
    assert Path(current.tier_file).parent.name == f"as_of={AS_OF}"
    with engine.connect() as con:
        rows = con.execute(sa.select(companies)).mappings().all()
        dates = con.execute(
            sa.select(company_history.c.as_of, sa.func.count())
            .group_by(company_history.c.as_of).order_by(company_history.c.as_of)
        ).all()  # fmt: skip
    # every company of the older load already held the newer result, which is kept
    assert older.kept_newer == current.companies
    assert len(rows) == current.companies
    assert {r["as_of"] for r in rows} == {AS_OF}
    docs = [json.loads(r["full_doc"]) for r in rows]
    assert {d["as_of"] for d in docs} == {AS_OF.isoformat()}
    tiered = [d for d in docs if d["tier"] is not None]
    assert len(tiered) == sum(province_tiers(province, AS_OF).values())
    assert {d["tier"]["tier"] for d in tiered} == set("ABCD")
    assert all(r["tier"] == (d["tier"] or {}).get("tier") for r, d in zip(rows, docs, strict=True))
    # the public document holds no tier, probability or reasons
    assert all("tier" not in json.loads(r["public_doc"]) for r in rows)
    # both dates are in the history, each once
    assert [d for d, _ in dates] == [OLDER, AS_OF]
    assert dates[1][1] == current.companies and 0 < dates[0][1] <= current.companies

    # loading the same date again replaces its history rather than adding to it
    again = load_results(engine, Store(province / "store"), province, AS_OF)
    assert again.companies == current.companies and again.kept_newer == 0
    with engine.connect() as con:
        n = con.execute(
            sa.select(sa.func.count()).select_from(company_history)
            .where(company_history.c.as_of == AS_OF)
        ).scalar_one()  # fmt: skip
    assert n == current.companies


def test_two_versions_known_the_same_day_the_later_batch_is_loaded(
    province: Path, tmp_path: Path
) -> None:
    """Late delivery makes versions known on the same day common (every late one lands on its
    ingestion day): the documents take the later batch's, as the features do."""
    import shutil

    from records.ingest import ingest_table

    data_dir = tmp_path / "province"
    shutil.copytree(province, data_dir)
    store = Store(data_dir / "store", memory_limit="1GB", threads=2)
    code = sorted(set(store.read("entities").column("uscc").to_pylist()))[0]
    for name, region in (("旧名称有限公司", "410102"), ("新名称有限公司", "410105")):
        row = {"uscc": code, "name": name, "region": region, "recorded_date": AS_OF.isoformat()}
        ingest_table(store, pa.Table.from_pylist([row]), "entities", "samr", today=AS_OF,
                     history=True)  # fmt: skip
    frame, _, _ = build_documents(store, data_dir, AS_OF)
    got = frame.loc[frame["uscc"] == code, ["name", "region"]].to_dict("records")
    assert got == [{"name": "新名称有限公司", "region": "410105"}]


def province_tiers(data_dir: Path, day: date) -> dict[str, int]:
    import pyarrow.parquet as pq

    files = sorted((data_dir / "results" / "tiers" / f"as_of={day}").glob("*.parquet"))
    tiers = pq.read_table(files[-1], columns=["tier"]).column("tier").to_pylist()
    return {t: tiers.count(t) for t in "ABCD"}


def test_api_keys_are_stored_hashed_and_revocable(
    database: tuple[str, Engine, list[Loaded]],
) -> None:
    _, engine, _ = database
    with pytest.raises(ValueError, match="role must be one of"):
        create_key(engine, "superuser", None, None)
    with pytest.raises(ValueError, match="needs --department"):
        create_key(engine, "department", None, None)
    keys = {
        role: create_key(engine, role, "tax" if role == "department" else None, f"{role} test")
        for role in ("admin", "regulator", "analyst", "department", "public")
    }
    assert all(k.startswith("cs_") and len(k) == 46 for k in keys.values())
    assert len(set(keys.values())) == len(keys)
    with engine.connect() as con:
        stored = con.execute(
            sa.select(api_keys).where(api_keys.c.key_hash.in_([hash_key(k) for k in keys.values()]))
        ).mappings().all()  # fmt: skip
    assert len(stored) == len(keys)
    for row in stored:
        key = keys[row["role"]]
        assert row["prefix"] == key[:10] and row["revoked_at"] is None
        assert row["created_at"] is not None
        assert key not in {str(v) for v in row.values()}  # only the hash is kept
    cache = KeyCache(engine, ttl=0)
    caller = cache.get(keys["department"])
    assert isinstance(caller, Caller)
    assert (caller.role, caller.department, caller.name) == ("department", "tax", "department test")
    assert cache.get(keys["admin"]) is not None
    assert cache.get(keys["admin"] + "x") is None and cache.get(None) is None
    assert revoke_key(engine, keys["admin"][:10]) == 1
    assert revoke_key(engine, keys["admin"][:10]) == 0
    assert cache.get(keys["admin"]) is None
    assert cache.get(keys["regulator"]) is not None
    # the whole key revokes it too (matched by its hash); a listing shows no secret
    assert revoke_key(engine, keys["analyst"] + "x") == 0
    assert revoke_key(engine, f" {keys['analyst']}\n") == 1
    assert cache.get(keys["analyst"]) is None
    listed = {row["prefix"]: row for row in list_keys(engine)}
    assert listed[keys["analyst"][:10]]["revoked_at"] is not None
    assert listed[keys["public"][:10]]["revoked_at"] is None
    assert all("key_hash" not in row for row in listed.values())


def test_keys_are_listed_without_secrets_and_revoked_by_prefix_or_whole(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CREDSUP_DATA_DIR": str(tmp_path), "DATABASE_URL": None, "CREDSUP_DATABASE_URL": None}

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    made = run("keys", "create", "--role", "analyst", "--name", "王工", "--json")
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)["key"]
    listed = run("keys", "list", "--json")
    (row,) = json.loads(listed.stdout)["keys"]
    assert (row["prefix"], row["role"], row["name"], row["revoked_at"]) == (
        key[:10], "analyst", "王工", None,
    )  # fmt: skip
    assert key not in listed.stdout and "key_hash" not in listed.stdout
    wrong = run("keys", "revoke", key[:-1] + ("x" if key[-1] != "x" else "y"))
    assert wrong.exit_code == 1 and key[10:] not in wrong.output and key[:10] in wrong.output
    assert run("keys", "revoke", key).exit_code == 0  # the whole key, as it was handed out
    assert json.loads(run("keys", "list", "--json").stdout)["keys"][0]["revoked_at"]
    shown = run("keys", "list").stdout
    header, line = shown.splitlines()[:2]
    assert header.split() == ["prefix", "role", "department", "company", "created", "state",
                              "holder"]  # fmt: skip
    assert line.split()[:2] == [key[:10], "analyst"] and "revoked" in line and key not in shown
    assert run("keys", "revoke", key[:10]).exit_code == 1  # no active key left


def test_a_company_key_speaks_for_its_own_company_only(
    database: tuple[str, Engine, list[Loaded]],
) -> None:
    _, engine, _ = database
    own, other = "91110000600037341L", "91350100M000100Y43"
    with pytest.raises(ValueError, match="needs --uscc"):
        create_key(engine, "company", None, None)
    with pytest.raises(ValueError, match="check"):
        create_key(engine, "company", None, None, own[:-1] + "X")  # wrong check character
    with pytest.raises(ValueError, match="company keys only"):
        create_key(engine, "public", None, None, own)
    caller = KeyCache(engine, ttl=0).get(create_key(engine, "company", None, "co", own))
    assert caller is not None and (caller.role, caller.uscc) == ("company", own)
    assert caller.is_company(own) and caller.sees_fully(own) and caller.acts_for(own)
    assert not caller.is_company(other) and not caller.sees_fully(other)
    assert not caller.acts_for(other)
    regulator = Caller(1, "regulator", None, None)
    department = Caller(2, "department", "tax", None)
    assert regulator.acts_for(other) and regulator.sees_fully(other)
    assert department.sees_fully(other) and not department.acts_for(other)


def test_audit_log_is_append_only(database: tuple[str, Engine, list[Loaded]]) -> None:
    _, engine, _ = database
    writer = AuditWriter(engine)  # not started: flush() writes synchronously
    caller = Caller(key_id=7, role="regulator", department=None, name="audit test")
    marker = f"append-only {secrets.token_hex(4)}"
    for status in (200, 404):
        writer.log(caller, "GET /v1/companies/{uscc}", "91110000600037341L", marker, status)
    writer.flush()
    assert writer.written == 2 and writer.backlog == 0
    mine = audit_log.c.purpose == marker
    for statement in (
        audit_log.update().where(mine).values(purpose="rewritten"),
        audit_log.update().where(mine).values(status=200),
        audit_log.delete().where(mine),
        audit_log.delete(),
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as con:
            con.execute(statement)
    if engine.dialect.name == "postgresql":  # TRUNCATE is a statement of its own there
        for table in ("audit_log", "lifecycle_log"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as con:
                con.execute(sa.text(f"TRUNCATE {table}"))
    with engine.connect() as con:
        rows = con.execute(sa.select(audit_log).where(mine).order_by(audit_log.c.id)).all()
    assert [(r.status, r.purpose, r.key_id) for r in rows] == [(200, marker, 7), (404, marker, 7)]


def test_a_batch_of_audit_rows_in_one_statement_reads_back_as_written(
    database: tuple[str, Engine, list[Loaded]],
) -> None:
    """The writer sends a batch as one JSON parameter (`serving.audit.insert_rows`): what is read
    back is what SQLAlchemy's own insert stores, to the microsecond, with every kind of value
    (none, Chinese, quotes and backslashes, a zone other than UTC, a moment without one)."""
    _, engine, _ = database
    marker = f"one statement {secrets.token_hex(4)}"
    moment = datetime(2026, 12, 5, 13, 1, 2, 345678, tzinfo=UTC)
    rows = [
        {"at": moment, "key_id": 3, "role": "department", "department": "tax",
         "uscc": "91110000600037341L", "endpoint": "GET /v1/companies/{uscc}",
         "purpose": f"{marker} 许可审查 \"quoted\" \\ back", "status": 200,
         "detail": "on=2026-01-05"},
        {"at": moment.astimezone(timezone(timedelta(hours=8))), "key_id": 4, "role": "public",
         "department": None, "uscc": None, "endpoint": "GET /v1/public/companies/{uscc}",
         "purpose": marker, "status": 404, "detail": None},
        {"at": moment.replace(tzinfo=None, microsecond=0), "key_id": 5, "role": "admin",
         "department": None, "uscc": "91110000600037341L", "endpoint": "credsup grade",
         "purpose": marker + " naive", "status": 200, "detail": "x" * 512},
    ]  # fmt: skip
    with engine.begin() as con:
        insert_rows(con, rows)
        con.execute(audit_log.insert(), [{**r, "purpose": r["purpose"] + " (sa)"} for r in rows])
    with engine.connect() as con:
        got = con.execute(
            sa.select(audit_log).where(audit_log.c.purpose.startswith(marker))
            .order_by(audit_log.c.id)
        ).mappings().all()  # fmt: skip
    ours = [{k: v for k, v in r.items() if k != "id"} for r in got[:3]]
    theirs = [{k: v for k, v in r.items() if k != "id"} for r in got[3:]]
    assert [r["at"] for r in ours] == [moment, moment, moment.replace(microsecond=0)]
    assert ours == [{**r, "purpose": r["purpose"][: -len(" (sa)")]} for r in theirs]
    assert ours[0]["purpose"].endswith('许可审查 "quoted" \\ back')


def test_a_row_the_database_refuses_does_not_stop_the_audit_log(
    database: tuple[str, Engine, list[Loaded]],
) -> None:
    """A NUL in a purpose (sent as `%00`; PostgreSQL refuses NUL in text) once failed every batch
    it was in, for ever: no read was logged again while reads went on being served."""
    _, engine, _ = database
    writer = AuditWriter(engine, max_backlog=5)  # not started: flush() writes synchronously
    caller = Caller(key_id=8, role="public", department=None, name="audit test")
    marker = f"refused {secrets.token_hex(4)}"
    endpoint = "GET /v1/companies/{uscc}"
    writer.log(caller, endpoint, "91110000600037341L", f"{marker}\x00\x07x\ty\n", 200)
    writer.log(caller, None, "91110000600037341L", marker, 200)  # type: ignore[arg-type]
    writer.log(caller, endpoint, "91110000600037341L", marker, 404)
    writer.flush()
    # the row the database refuses as data (no endpoint) is set aside; the others are written
    assert (writer.written, writer.backlog, len(writer.refused)) == (2, 0, 1)
    assert writer.refused[0][0]["endpoint"] is None and "endpoint" in writer.refused[0][1].lower()
    assert writer.open_refused == 1  # no quarantine: until the process ends
    with engine.connect() as con:
        rows = con.execute(
            sa.select(audit_log.c.purpose, audit_log.c.status)
            .where(audit_log.c.purpose.startswith(marker)).order_by(audit_log.c.id)
        ).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [(f"{marker}  x y", 200), (marker, 404)]
    # a log that cannot keep up refuses more entries rather than let reads go unlogged
    for status in range(5):
        writer.log(caller, endpoint, "91110000600037341L", marker, status)
    with pytest.raises(AuditUnavailable, match="not served unlogged"):
        writer.log(caller, endpoint, "91110000600037341L", marker, 200)
    writer.flush()
    writer.log(caller, endpoint, "91110000600037341L", marker, 200)  # drained: logs again
    # a read of many companies that would pass the limit is refused before any line is queued
    with pytest.raises(AuditUnavailable, match="1 entries behind and this read would add 5"):
        writer.log_companies(caller, endpoint, [f"code-{i}" for i in range(5)], marker)
    assert writer.backlog == 1
    writer.log_companies(caller, endpoint, [f"code-{i}" for i in range(4)], marker)
    assert writer.backlog == 5
    writer.flush()


def test_the_audit_quarantine_keeps_refused_rows_until_acknowledged(tmp_path: Path) -> None:
    """What the database refused is kept, escaped, across processes, and acknowledged only by
    someone who says who and why; a line cut short by a crash is not an entry."""
    quarantine = AuditQuarantine(tmp_path / "audit")
    assert (quarantine.open_count(), quarantine.entries()) == (0, [])
    row = {"at": datetime(2026, 12, 4, 1, 2, 3, tzinfo=UTC), "key_id": 3, "role": "regulator",
           "department": None, "uscc": "91110000600037341L", "endpoint": "GET /x",
           "purpose": "a\x00b 查看", "status": 200}  # fmt: skip
    quarantine.add(row, "DataError: NUL")
    raw = quarantine.entries_path.read_bytes()
    assert b"\x00" not in raw and b"\\u0000" in raw and raw.isascii()
    assert quarantine.entries()[0]["row"] == {**row, "at": "2026-12-04T01:02:03+00:00"}
    assert quarantine.open_count() == 1
    with pytest.raises(ValueError, match="--by"):
        quarantine.acknowledge("", "seen")
    with pytest.raises(ValueError, match="--note"):
        quarantine.acknowledge("ops", "  ")
    assert quarantine.acknowledge("ops", "seen") == 1 and quarantine.open_count() == 0
    assert quarantine.acknowledge("ops", "again") == 0  # nothing new: nothing written
    assert len(quarantine.acknowledgements()) == 1
    # a line cut short by a crash, then another process adds one (a new object, same files)
    with quarantine.entries_path.open("a") as f:
        f.write('{"refused_at": "2026-12-')
    AuditQuarantine(tmp_path / "audit").add({**row, "status": 404}, "DataError: again")
    assert quarantine.open_count() == 1
    assert [e["row"]["status"] for e in quarantine.entries()] == [200, 404]
    assert quarantine.acknowledge("ops", "second") == 1 and quarantine.open_count() == 0
    # the file archived (rotated): a row refused after that is open, whatever its place
    quarantine.entries_path.rename(tmp_path / "refused-2026-12.jsonl")
    quarantine.add({**row, "status": 500}, "DataError: after the rotation")
    shown, still_open = quarantine.listing()
    assert quarantine.open_count() == still_open == 1 and shown[0]["acknowledged"] is False


def test_a_database_that_comes_back_costs_no_request_and_one_away_is_503(
    database: tuple[str, Engine, list[Loaded]],
    province: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL restarted (its connections ended): every pooled look-up connection once
    failed its next request with a 500 naming the driver's error, even minutes after the
    database was back. And an error's text (SQL, parameters, the server's address) reached any
    caller, even one without a valid key."""
    url, engine, _ = database
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=province, DATABASE_URL=url, duckdb_memory_limit="1GB")
    regulator = {"X-API-Key": create_key(engine, "regulator", None, "t"), "X-Purpose": "restart"}
    with engine.connect() as con:
        # the last code: the other tests of this database audit reads of the first ones
        uscc = con.execute(
            sa.select(companies.c.uscc).order_by(companies.c.uscc.desc()).limit(1)
        ).scalar_one()
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/v1/companies/{uscc}", headers=regulator).status_code == 200
        if engine.dialect.name == "postgresql":
            with engine.connect() as con:  # every other connection to this database ends
                ended = con.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )).scalar_one()  # fmt: skip
            assert ended >= 8  # the look-up pool at least
        codes = [client.get(f"/v1/companies/{uscc}", headers=regulator).status_code
                 for _ in range(12)]  # fmt: skip
        assert codes == [200] * 12
    # a database that cannot be reached: 503, with an error id and nothing of the driver's text
    away = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        lookup = client.app.state.service.lookup  # type: ignore[attr-defined]
        lookup._pool, lookup.engine = None, make_engine(away)  # the database goes away
        lost = client.get(f"/v1/companies/{uscc}", headers=regulator)
        assert lost.status_code == 503, lost.text
        body = lost.json()
        assert body["code"] == "unavailable" and "error id" in body["message"]
        assert "127.0.0.1" not in lost.text and "nowhere" not in lost.text


def test_the_api_on_each_database(
    database: tuple[str, Engine, list[Loaded]],
    province: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, engine, _ = database
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=province, DATABASE_URL=url, duckdb_memory_limit="1GB")
    assert settings.serving_url == url
    regulator = create_key(engine, "regulator", None, "api test")
    public = create_key(engine, "public", None, "api test")
    admin = create_key(engine, "admin", None, "api test")
    with engine.connect() as con:
        known = con.execute(
            sa.select(companies.c.uscc, companies.c.entity_type)
            .where(companies.c.tier.is_not(None)).order_by(companies.c.uscc).limit(20)
        ).all()  # fmt: skip
    uscc = known[0].uscc
    started = datetime.now(UTC) - timedelta(seconds=1)
    reg = {"X-API-Key": regulator, "X-Purpose": "storage test"}

    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == "ok" and ready.json()["model"]["version"] == "1"

        full = client.get(f"/v1/companies/{uscc}", headers=reg)
        assert full.status_code == 200, full.text
        body = full.json()
        assert body["uscc"] == uscc and body["as_of"] == AS_OF.isoformat()
        assert body["tier"]["tier"] in "ABCD" and body["tier"]["model_version"] == "1"
        shown = client.get(f"/v1/companies/{uscc}", headers={"X-API-Key": public}).json()
        assert "tier" not in shown and shown["evaluation"].keys() == {"score", "grade"}
        assert client.get("/v1/companies/91110000600037341L", headers=reg).status_code == 404

        batch = client.post(
            "/v1/companies:batch", headers=reg,
            json={"usccs": [k.uscc for k in known] + ["91110000600037341L", "nonsense"]},
        )  # fmt: skip
        assert batch.status_code == 200, batch.text
        got = batch.json()
        assert [c["uscc"] for c in got["companies"]] == [k.uscc for k in known]
        assert got["not_found"] == ["91110000600037341L"]
        assert [i["uscc"] for i in got["invalid"]] == ["nonsense"]

        history = client.get(f"/v1/companies/{uscc}/history", headers=reg)
        assert history.status_code == 200, history.text
        points = history.json()["history"]
        assert [p["as_of"] for p in points][-1] == AS_OF.isoformat()
        assert points[-1]["tier"] == body["tier"]["tier"]

        records = client.get(f"/v1/companies/{uscc}/records", headers=reg)
        assert records.status_code == 200 and records.json()["uscc"] == uscc

        for query in ({"by": "all"}, {"by": "region"}, {"by": "entity_type", "as_of": AS_OF}):
            summary = client.get("/v1/tiers/summary", headers=reg, params=query)
            assert summary.status_code == 200, summary.text
            rows = summary.json()["rows"]
            assert sum(r["total"] for r in rows) == sum(province_tiers(province, AS_OF).values())
            assert all(r["A"] + r["B"] + r["C"] + r["D"] == r["total"] for r in rows)
        older = client.get("/v1/tiers/summary", headers=reg, params={"as_of": OLDER}).json()
        assert older["as_of"] == OLDER.isoformat()
        assert older["rows"][0]["total"] == sum(province_tiers(province, OLDER).values())

        # the audit log, filtered by company, key and time given with another offset
        since = started.astimezone(timezone(timedelta(hours=8))).isoformat()
        audit = client.get(
            "/v1/admin/audit", headers={"X-API-Key": admin},
            params={"uscc": uscc, "since": since, "limit": 1000},
        )  # fmt: skip
        assert audit.status_code == 200, audit.text
        entries = audit.json()["entries"]
        endpoints = {(e["endpoint"], e["role"], e["status"]) for e in entries}
        assert endpoints == {
            ("GET /v1/companies/{uscc}", "regulator", 200),
            ("GET /v1/companies/{uscc}", "public", 200),
            ("POST /v1/companies:batch", "regulator", 200),
            ("GET /v1/companies/{uscc}/history", "regulator", 200),
            ("GET /v1/companies/{uscc}/records", "regulator", 200),
        }
        assert {e["purpose"] for e in entries if e["role"] == "regulator"} == {"storage test"}
        for e in entries:
            at = datetime.fromisoformat(e["at"])
            assert at.utcoffset() == timedelta(0) and at >= started
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert client.get(
            "/v1/admin/audit", headers={"X-API-Key": admin}, params={"since": later}
        ).json() == {"entries": []}

        # a refusal on a path naming no company is on record too, without a company
        unsaid = client.post("/v1/companies:batch", headers={"X-API-Key": regulator},
                             json={"usccs": [uscc]})  # fmt: skip
        assert unsaid.status_code == 400 and unsaid.json()["code"] == "purpose_required"
        # a purpose of control characters alone is no purpose
        nul = client.get(f"/v1/companies/{uscc}", headers={**reg, "X-Purpose": "%00\t"})
        assert nul.status_code == 400 and nul.json()["code"] == "purpose_required"
        # an audit row the database refuses makes the service not ready until it is seen to:
        # it is quarantined with its reason, shown to admins and acknowledged at the command line
        audit_writer = client.app.state.service.audit  # type: ignore[attr-defined]
        quarantine = audit_writer.quarantine
        assert quarantine.directory == settings.audit_quarantine_dir
        before = len(quarantine.entries())
        mark = f"refused by the database {secrets.token_hex(4)}"
        audit_writer.log(Caller(5, "regulator", None, "t"), None, uscc, mark, 200)
        audit_writer.flush()
        unready = client.get("/readyz")
        assert unready.status_code == 503 and unready.json()["audit_refused"] == 1
        shown = client.get("/v1/admin/audit/refused", headers={"X-API-Key": admin})
        assert shown.status_code == 200 and shown.json()["open"] == 1, shown.text
        entry = shown.json()["entries"][before]
        assert (entry["row"]["purpose"], entry["row"]["uscc"]) == (mark, uscc)
        assert entry["acknowledged"] is False
        assert "endpoint" in entry["reason"].lower()
        assert client.get("/v1/admin/audit/refused", headers=reg).status_code == 403
        # a restarted service (a new quarantine object over the same files) is unready too
        assert AuditQuarantine(settings.audit_quarantine_dir).open_count() == 1
        cli = CliRunner()
        env = {"CREDSUP_DATA_DIR": str(province)}
        listed = cli.invoke(app, ["audit", "refused", "--json"], env=env)
        assert listed.exit_code == 1 and json.loads(listed.stdout)["open"] == 1, listed.output
        unsigned = cli.invoke(app, ["audit", "acknowledge", "--by", " ", "--note", "x"], env=env)
        assert unsigned.exit_code == 2 and "--by" in unsigned.output
        done = cli.invoke(
            app, ["audit", "acknowledge", "--by", "ops", "--note", "test row"], env=env
        )
        assert done.exit_code == 0 and "acknowledged 1 " in done.stdout, done.output
        assert client.get("/readyz").status_code == 200
        assert cli.invoke(app, ["audit", "refused"], env=env).exit_code == 0
        assert quarantine.acknowledgements()[-1]["by"] == "ops"

    with engine.connect() as con:  # the writer flushed at shutdown
        logged = con.execute(
            sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.uscc == uscc)
        ).scalar_one()
    assert logged == len(entries) + 1  # and the read refused for want of a purpose
    with engine.connect() as con:
        refused = con.execute(
            sa.select(audit_log.c.uscc, audit_log.c.status).where(
                audit_log.c.endpoint == "POST /v1/companies:batch", audit_log.c.at >= started,
                audit_log.c.status == 400,
            )
        ).all()  # fmt: skip
    assert [tuple(r) for r in refused] == [(None, 400)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_load_never_picks_tiers_by_file_age_nor_rewrites_what_was_published(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, province: Path
) -> None:
    """Two models' tiers for one date: without a version the load is refused (the newest file
    need not be the champion's); once version 1 is published for the date, version 2 is refused
    unless it knowingly replaces it, and version 1 loads again freely."""
    data = tmp_path / "data"
    (data / "results").mkdir(parents=True)
    for kind in ("scores", "features"):
        (data / "results" / kind).symlink_to(province / "results" / kind)
    day = f"as_of={AS_OF.isoformat()}"
    (original,) = (province / "results" / "tiers" / day).glob("*.parquet")
    tiers = data / "results" / "tiers" / day
    tiers.mkdir(parents=True)
    first = pq.read_table(original)
    version = str(first.column("model_version")[0])
    other = str(int(version) + 1)
    pq.write_table(first, tiers / f"credit-tier-v{version}.parquet")
    second = first.set_column(
        first.schema.get_field_index("model_version"), "model_version",
        pa.array([other] * first.num_rows, pa.string()),
    )  # fmt: skip
    pq.write_table(second, tiers / f"credit-tier-v{other}.parquet")  # the newest file

    (tmp_path / "db").mkdir()
    url = fresh_url(backend, request, tmp_path / "db")
    upgrade(url)
    engine = make_engine(url)
    store = Store(province / "store", memory_limit="1GB", threads=2)

    def published() -> set[str]:
        with engine.connect() as con:
            rows = con.execute(
                sa.select(company_history.c.model_version).distinct()
                .where(company_history.c.as_of == AS_OF)
            ).scalars()  # fmt: skip
            return {str(v) for v in rows if v is not None}

    try:
        with pytest.raises(AmbiguousLoad, match="2 tier files"):
            load_results(engine, store, data, AS_OF)
        with pytest.raises(NothingToLoad, match="credit-tier-v99"):
            load_results(engine, store, data, AS_OF, "credit-tier-v99")
        assert published() == set()
        load_results(engine, store, data, AS_OF, f"credit-tier-v{version}")
        assert published() == {version}
        with pytest.raises(AmbiguousLoad, match="would rewrite"):
            load_results(engine, store, data, AS_OF, f"credit-tier-v{other}")
        assert published() == {version}
        load_results(engine, store, data, AS_OF, f"credit-tier-v{version}")  # again: fine
        load_results(engine, store, data, AS_OF, f"credit-tier-v{other}", replace=True)
        assert published() == {other}
        with engine.connect() as con:
            served = con.execute(sa.select(companies.c.full_doc).limit(50)).scalars().all()
        assert {json.loads(d)["tier"]["model_version"] for d in served
                if json.loads(d).get("tier")} == {other}  # fmt: skip
    finally:
        engine.dispose()

    # two loads of one date by two models at once (two operators): both once passed the check
    # and the later silently replaced the other's tiers; now one loads and the other is refused
    (tmp_path / "db2").mkdir()
    url = fresh_url(backend, request, tmp_path / "db2")
    upgrade(url)
    engine = make_engine(url)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def load(v: str) -> None:
        start.wait()
        try:
            load_results(engine, store, data, AS_OF, f"credit-tier-v{v}")
            outcomes[v] = "loaded"
        except AmbiguousLoad:
            outcomes[v] = "refused"

    try:
        threads = [threading.Thread(target=load, args=(v,)) for v in (version, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["loaded", "refused"], outcomes
        (winner,) = [v for v, o in outcomes.items() if o == "loaded"]
        assert published() == {winner}
    finally:
        engine.dispose()


def test_only_a_database_that_is_away_is_503() -> None:
    import sqlite3

    import psycopg

    from serving.errors import _unreachable

    def wrapped(orig: Exception) -> sa.exc.DBAPIError:
        return sa.exc.OperationalError("SELECT 1", {}, orig)

    assert _unreachable(wrapped(sqlite3.OperationalError("database is locked")))
    assert _unreachable(wrapped(psycopg.OperationalError("connection refused")))
    assert not _unreachable(wrapped(sqlite3.OperationalError("no such table: companies")))
    assert not _unreachable(
        wrapped(sqlite3.OperationalError("attempt to write a readonly database"))
    )
    assert not _unreachable(ValueError("a bug"))


def test_serve_without_a_database_says_so_in_one_line(tmp_path: Path) -> None:
    """`credsup serve` migrates before it starts the workers: a database it cannot reach is an
    error naming it (exit 3, as uvicorn's failed start was), not a traceback."""
    away = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
    res = CliRunner().invoke(
        app, ["serve", "--port", "18999"],
        env={"CREDSUP_DATA_DIR": str(tmp_path), "DATABASE_URL": away},
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "127.0.0.1:9/nowhere cannot be migrated" in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_serve_on_a_port_in_use_says_so_before_anything_starts(tmp_path: Path) -> None:
    """A port another server holds: one line naming it and how to choose another (exit 2),
    before the database is migrated; it said "serving on …" first, then uvicorn's error and exit
    3, the code of DuckDB running out of memory."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = CliRunner().invoke(
            app, ["serve", "--port", str(port)], env={"CREDSUP_DATA_DIR": str(tmp_path)}
        )
    said = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"cannot serve on 127.0.0.1:{port}" in said and "CREDSUP_API_PORT" in said
    assert "serving on" not in said and "Traceback" not in said
    assert not (tmp_path / "serving.db").exists() and not list(tmp_path.iterdir())


def test_concurrent_reads_enter_the_audit_log_whole_or_not_at_all() -> None:
    """Admission and queueing are one step: 40 reads of 70 companies at once against a limit
    of 1,000 lines queue 14 reads whole and refuse the rest whole (no read half logged, no
    backlog past the limit)."""
    writer = AuditWriter(sa.create_engine("sqlite://"), max_backlog=1000)  # not started
    caller = Caller(key_id=1, role="public", department=None, name="many readers")
    start = threading.Barrier(8)
    admitted: list[bool] = []

    def read(i: int) -> None:
        if i < 8:
            start.wait()
        try:
            writer.log_companies(caller, "GET /v1/public/lists", [f"{i}-{k}" for k in range(70)],
                                 None)  # fmt: skip
            admitted.append(True)
        except AuditUnavailable:
            admitted.append(False)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 1000 // 70 and writer.backlog == 70 * sum(admitted)


def test_a_public_key_that_asks_too_fast_is_told_when_to_come_back(
    database: tuple[str, Engine, list[Loaded]],
    province: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One public key could fill the audit log's queue for everyone (a line per company read):
    beyond its rate (bursts of 5 at 1 a second here) it gets 429 with Retry-After; a regulator
    key at the same time is not limited."""
    url, engine, _ = database
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=province, DATABASE_URL=url, duckdb_memory_limit="1GB",
                        public_requests_per_second=1)  # fmt: skip
    public = {"X-API-Key": create_key(engine, "public", None, "a scraper")}
    regulator = {"X-API-Key": create_key(engine, "regulator", None, "t"), "X-Purpose": "rate"}
    with engine.connect() as con:
        uscc = con.execute(sa.select(companies.c.uscc).limit(1)).scalar_one()
    with TestClient(create_app(settings)) as client:
        codes = [client.get(f"/v1/companies/{uscc}", headers=public).status_code
                 for _ in range(8)]  # fmt: skip
        assert codes[:5] == [200] * 5 and 429 in codes[5:], codes
        limited = client.get(f"/v1/companies/{uscc}", headers=public)
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 2
        assert all(client.get(f"/v1/companies/{uscc}", headers=regulator).status_code == 200
                   for _ in range(8))  # fmt: skip


def test_the_rate_limiter_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.wait(7, now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait(7, now=100.0) == pytest.approx(0.5)  # a token every half second
    assert limiter.wait(8, now=100.0) == 0.0  # keys have buckets of their own
    assert limiter.wait(7, now=100.5) == 0.0
    assert limiter.wait(7, now=100.6) == pytest.approx(0.4)
    assert [limiter.wait(7, now=200.0) for _ in range(4)][-1] > 0  # refilled to the burst only


def test_a_full_rate_table_gives_a_slot_up_and_never_mixes_keys() -> None:
    """Keys share a fixed table: a slot whose bucket has filled again is taken by the next key;
    when every slot a key may use is still refilling, the one looked at longest ago gives way
    (its key starts again from a full bucket). A key never spends another key's tokens."""
    limiter = RateLimiter(rate=1.0, burst=2, slots=4)
    for key in (1, 2, 3, 4):
        assert limiter.wait(key, now=100.0 + key / 10) == 0.0  # one token left each
    assert limiter.wait(1, now=100.5) == 0.0 and limiter.wait(1, now=100.5) > 0  # 1 is empty
    # a fifth key: key 2 was looked at longest ago (100.2) and gives its slot up
    assert [limiter.wait(5, now=100.6) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limiter.wait(1, now=100.6) == pytest.approx(0.5)  # key 1 kept its (empty) bucket
    assert limiter.wait(3, now=100.6) == 0.0 and limiter.wait(3, now=100.6) > 0  # 3 kept its one
    assert limiter.wait(2, now=100.6) == 0.0  # key 2 starts again from a full bucket
    # long after, every bucket is full again: any number of new keys find a slot
    assert all(limiter.wait(key, now=500.0) == 0.0 for key in range(10, 40))
    with pytest.raises(ValueError, match="positive"):
        limiter.wait(0)


def test_the_workers_of_a_server_share_one_rate_table(tmp_path: Path) -> None:
    """`credsup serve --workers N` gives its workers one table of buckets: processes that map
    it take tokens from the same buckets, under the file's lock, so two of them asking at once
    for one key are granted exactly its burst between them (each would grant it alone)."""
    table = create_table(tmp_path / "run" / "rates-8000")
    ask = (  # both ready, then both go: they ask for longer than the burst lasts
        "import sys; from pathlib import Path; from serving.limits import RateLimiter\n"
        "limiter = RateLimiter(1.0, 20_000, Path(sys.argv[1]))\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "print(sum(limiter.wait(9, now=1000.0) == 0.0 for _ in range(40_000)))"
    )
    workers = [subprocess.Popen([sys.executable, "-c", ask, str(table)], cwd=REPO, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for _ in range(2)]  # fmt: skip
    assert all(worker.stdout and worker.stdout.readline() == "ready\n" for worker in workers)
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    granted = [int(worker.communicate(timeout=120)[0]) for worker in workers]
    assert sum(granted) == 20_000 and min(granted) > 0, granted  # both asked while it lasted
    here = RateLimiter(1.0, 20_000, table)  # and this process sees the same, spent bucket
    assert here.wait(9, now=1000.0) == pytest.approx(1.0)
    assert here.wait(10, now=1000.0) == 0.0
    here.close()
    (tmp_path / "empty").touch()
    with pytest.raises(ValueError, match="not a rate table"):
        RateLimiter(1.0, 5, tmp_path / "empty")


def test_a_second_load_on_sqlite_waits_for_the_first(tmp_path: Path, province: Path) -> None:
    """On SQLite a load takes the file's write lock; a second load failed ("database is
    locked") once the connection's busy timeout passed, however soon the first would finish.
    It now waits for it, as loads take turns on PostgreSQL. Here the connection waits 1 s and
    another writer holds the lock for 3 s."""
    import sqlite3

    db = tmp_path / "serving.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    engine = sa.create_engine(url, connect_args={"timeout": 1})
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another load's write lock
    released = threading.Event()

    def release_later() -> None:
        released.wait(3)
        holder.execute("COMMIT")

    thread = threading.Thread(target=release_later)
    thread.start()
    try:
        started = time.monotonic()
        loaded = load_results(engine, Store(province / "store"), province, AS_OF)
        assert loaded.companies > 0 and time.monotonic() - started >= 2.5  # it waited
        with engine.connect() as con:  # the pool's connections wait as they did before
            assert con.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 1000
    finally:
        released.set()
        thread.join()
        holder.close()
        engine.dispose()


def test_rows_the_quarantine_could_not_take_are_filed_once_it_can(tmp_path: Path) -> None:
    """A refused audit row the quarantine could not take either (its folder not writable) kept
    the service unready until a restart: nothing could acknowledge it. It is now offered to
    the quarantine again, and once the cause is mended it is filed and acknowledged as any."""
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    upgrade(url)
    engine = make_engine(url)
    blocked = tmp_path / "audit"
    blocked.write_text("a file where the quarantine's folder should be")
    writer = AuditWriter(engine, quarantine=AuditQuarantine(blocked))  # not started
    caller = Caller(key_id=3, role="public", department=None, name="unfiled")
    try:
        writer.log(caller, None, "91110000600037341L", "x", 200)  # type: ignore[arg-type]
        writer.flush()  # the database refuses the row (no endpoint), the quarantine too
        assert (writer.unfiled, writer.open_refused) == (1, 1)
        assert writer.file_unfiled() == 1  # still blocked
        blocked.unlink()  # the cause mended
        assert writer.file_unfiled() == 0
        assert writer.unfiled == 0 and writer.open_refused == 1
        (entry,) = writer.quarantine.entries()  # type: ignore[union-attr]
        assert entry["row"]["endpoint"] is None
        writer.quarantine.acknowledge("ops", "folder restored")  # type: ignore[union-attr]
        assert writer.open_refused == 0
    finally:
        engine.dispose()


def test_serve_on_a_port_in_use_leaves_the_running_servers_metrics(tmp_path: Path) -> None:
    """With several workers `credsup serve` empties its metrics folder (per port) at start; it
    did so before binding, so a second start on a port in use wiped the running server's
    counts. It binds first now."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kept = tmp_path / "metrics" / str(port) / "counter_1.db"
        kept.parent.mkdir(parents=True)
        kept.write_bytes(b"the running server's counts")
        res = CliRunner().invoke(
            app, ["serve", "--port", str(port), "--workers", "2"],
            env={"CREDSUP_DATA_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": None,
                 "DATABASE_URL": None, "CREDSUP_DATABASE_URL": None,
                 "MLFLOW_TRACKING_URI": None, "CREDSUP_MODEL_RELOAD_SECONDS": None},
        )  # fmt: skip
    assert res.exit_code != 0, res.output
    assert kept.read_bytes() == b"the running server's counts"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_load_in_parts_writes_what_one_piece_writes_and_a_failed_part_undoes_the_others(
    backend: str,
    request: pytest.FixtureRequest,
    province: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A load streams the companies `LOAD_PART` at a time (in one piece, 1 M companies took
    12.6 GB). The parts write the rows one piece writes, and a fault in a later part leaves
    the tables as they were, the parts already written included (one transaction)."""
    import serving.load

    store = Store(province / "store", memory_limit="1GB", threads=2)

    def tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
        with engine.connect() as con:
            return {
                t.name: [dict(r) for r in con.execute(
                    sa.select(t).order_by(*t.primary_key.columns)).mappings()]
                for t in (companies, company_history)
            }  # fmt: skip

    engines = []
    try:
        for part in (None, 7):
            (tmp_path / str(part)).mkdir()
            url = fresh_url(backend, request, tmp_path / str(part))
            upgrade(url)
            engines.append(make_engine(url))
            if part is not None:
                monkeypatch.setattr(serving.load, "LOAD_PART", part)
            for day in (OLDER, AS_OF):
                load_results(engines[-1], store, province, day)
        whole, parts = (tables(e) for e in engines)
        assert len(whole["companies"]) > 7 * 5  # many parts
        assert parts == whole

        # the same date again, failing in its third part: the first two parts' rows (written,
        # not committed) and the history deleted before them are back as they were
        documents = serving.load._documents
        calls = {"n": 0}

        def failing(row: dict[str, Any], as_of: date) -> Any:
            calls["n"] += 1
            if calls["n"] > 2 * 7:
                raise RuntimeError("disk full")
            return documents({**row, "name": "改过的名称有限公司"}, as_of)

        monkeypatch.setattr(serving.load, "_documents", failing)
        with pytest.raises(RuntimeError, match="disk full"):
            load_results(engines[-1], store, province, AS_OF)
        assert calls["n"] == 2 * 7 + 1
        assert tables(engines[-1]) == whole
    finally:
        for e in engines:
            e.dispose()


def test_a_load_reads_results_files_lacking_columns_or_with_a_nan_score(
    province: Path, tmp_path: Path
) -> None:
    """As the frame-at-once load did: a NaN score is no evaluation (a company with one and no
    tier is not loaded), a scores file without `score` holds no evaluations, and a tiers file
    without `model_version` holds no published versions to protect (the streamed query named
    columns the files lacked, and refused such files)."""
    import shutil

    data = tmp_path / "province"
    shutil.copytree(province, data)
    day = f"as_of={AS_OF}"
    (score_file,) = (data / "results" / "scores" / day).glob("*.parquet")
    (tier_file,) = (data / "results" / "tiers" / day).glob("*.parquet")
    scores, tiers = pq.read_table(score_file), pq.read_table(tier_file)
    untiered = sorted(
        set(scores.column("uscc").to_pylist()) - set(tiers.column("uscc").to_pylist())
    )
    assert untiered, "the province has companies with an evaluation and no tier"
    nan = [
        math.nan if u == untiered[0] else s
        for u, s in zip(
            scores.column("uscc").to_pylist(), scores.column("score").to_pylist(), strict=True
        )
    ]
    pq.write_table(scores.set_column(scores.schema.get_field_index("score"), "score",
                                     pa.array(nan, pa.float64())), score_file)  # fmt: skip
    pq.write_table(tiers.drop_columns(["model_version"]), tier_file)
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    upgrade(url)
    engine = make_engine(url)
    store = Store(data / "store", memory_limit="1GB", threads=2)
    try:
        loaded = load_results(engine, store, data, AS_OF)
        assert loaded.companies == scores.num_rows - 1
        with engine.connect() as con:
            codes = set(con.execute(sa.select(companies.c.uscc)).scalars())
        assert untiered[0] not in codes and untiered[1:] and set(untiered[1:]) <= codes
        pq.write_table(scores.drop_columns(["score"]), score_file)
        assert load_results(engine, store, data, AS_OF).companies == tiers.num_rows
    finally:
        engine.dispose()


def test_a_load_holds_sqlite_s_write_lock_for_the_copy_only(
    province: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one write lock for the whole file. A load builds the documents (DuckDB, JSON)
    into temporary tables first and takes the lock for the copy only: a writer with a 1 s
    timeout (an audit flush, a re-score) gets through while the documents are built (it waited
    for all of it, 89 s at 1 M companies). The load's result is unchanged."""
    import serving.load

    url = f"sqlite:///{tmp_path / 'serving.db'}"
    upgrade(url)
    engine = make_engine(url)
    other = sa.create_engine(url, connect_args={"timeout": 1})
    store = Store(province / "store", memory_limit="1GB", threads=2)
    documents = serving.load._documents
    wrote: list[int] = []

    def meanwhile(row: dict[str, Any], as_of: date) -> Any:
        if not wrote:
            with other.begin() as con:  # raises "database is locked" after 1 s if held
                con.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
                con.exec_driver_sql("INSERT INTO probe VALUES (1)")
            wrote.append(1)
        return documents(row, as_of)

    try:
        load_results(engine, store, province, OLDER)
        monkeypatch.setattr(serving.load, "_documents", meanwhile)
        loaded = load_results(engine, store, province, AS_OF)
        assert wrote == [1]
        with engine.connect() as con:
            assert con.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 1
            served = con.execute(sa.select(sa.func.count()).select_from(companies)
                                 .where(companies.c.as_of == AS_OF)).scalar_one()  # fmt: skip
            temporary = con.execute(sa.text(
                "SELECT count(*) FROM sqlite_temp_master WHERE name LIKE 'staged_%'")
            ).scalar_one()  # fmt: skip
        assert served == loaded.companies > 0 and temporary == 0
    finally:
        other.dispose()
        engine.dispose()


def test_db_upgrade_keys_revoke_and_demo_answer_in_json_for_scripts(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CREDSUP_DATA_DIR": str(tmp_path), "DATABASE_URL": None, "CREDSUP_DATABASE_URL": None}

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    upgraded = run("db", "upgrade", "--json")
    assert upgraded.exit_code == 0, upgraded.output
    assert json.loads(upgraded.stdout) == {
        "database": f"sqlite:///{tmp_path / 'serving.db'}", "revision": head,
    }  # fmt: skip
    demo = run("keys", "demo", "--json")
    assert demo.exit_code == 0, demo.output
    shown = json.loads(demo.stdout)
    assert shown["uscc"] is None  # no company loaded yet: the requests show an example code
    assert shown["requests"][0].startswith(f"curl -s -H 'X-API-Key: {shown['regulator']}'")
    roles = {
        row["prefix"]: row["role"]
        for row in json.loads(run("keys", "list", "--json").stdout)["keys"]
    }
    assert roles == {shown["regulator"][:10]: "regulator", shown["public"][:10]: "public"}
    revoked = run("keys", "revoke", shown["public"], "--json")
    assert revoked.exit_code == 0 and json.loads(revoked.stdout) == {
        "prefix": shown["public"][:10], "revoked": 1,
    }  # fmt: skip
    again = run("keys", "revoke", shown["public"], "--json")  # nothing left to revoke: exit 1
    assert again.exit_code == 1 and json.loads(again.stdout)["revoked"] == 0
    assert shown["public"][10:] not in again.output


def test_moments_are_read_back_in_utc_with_their_zone_on_either_database(
    database: tuple[str, Engine, list[Loaded]],
) -> None:
    # PostgreSQL gave lifecycle steps as `…+00:00` and SQLite the same moment without a zone
    from serving.db import lifecycle_log
    from serving.lifecycle import steps

    _, engine, _ = database
    china = timezone(timedelta(hours=8))
    moments = [
        datetime(2026, 12, 5, 10, 26, 59, 637327, tzinfo=UTC),
        datetime(2026, 12, 5, 18, 26, 59, 637327, tzinfo=china),  # the same moment
        datetime(2026, 12, 5, 10, 26, 59, 637327),  # no zone: taken as UTC
    ]
    case_id = 2_000_000_000  # apart from the cases of other tests; rolled back (append-only)
    with engine.connect() as con:
        for moment in moments:
            con.execute(lifecycle_log.insert().values(
                at=moment, case_type="objection", case_id=case_id, uscc="91110000600037341L",
                action="filed", actor=None, detail="{}",
            ))  # fmt: skip
        shown = [s["at"] for s in steps(con, "objection", [case_id])[case_id]]
        con.rollback()
    assert shown == ["2026-12-05T10:26:59.637327+00:00"] * 3
