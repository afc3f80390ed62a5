"""A draw's audit package (DOMAIN §7, "anyone can re-run it and get the identical list"): the
package replays offline with its own `verify.py` and its own copy of the sampling design, in a
process that reads no service; every kind of tampering is named by the check it breaks; the API
and the command line export it to those who manage plans only, with a purpose, and log every
company whose tier it holds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from cli.main import app
from records.settings import Settings
from serving.app import create_app
from serving.auth import create_key
from serving.db import audit_log, spot_check_plans
from serving.spotcheck.demo import load_demo_inspectors
from serving.spotcheck.package import audit_package
from serving.spotcheck.plans import (
    PlanCreated,
    PlanRequest,
    create_plan,
    import_preset_items,
    public_notice,
)
from tests.serving.databases import BACKENDS, Loaded, loaded_copy
from tests.serving.pipeline import AS_OF, env_for

START = date(2026, 7, 6)
ENDPOINT = "GET /v1/spot-check-plans/{plan_id}/audit-package"


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[tuple[Loaded, PlanCreated]]:
    """The province in a fresh database with the national-default items, simulated inspectors
    and one joint plan drawn with a seed of the service's."""
    with loaded_copy(request.param, request, tmp_path_factory, province, "package") as loaded:
        import_preset_items(loaded.engine, "national-default")
        load_demo_inspectors(loaded.engine, per_city=6)
        plan = create_plan(
            loaded.engine,
            PlanRequest.model_validate({
                "name": "审计包 joint plan", "departments": ["samr", "fire", "ecology"],
                "snapshot_date": AS_OF, "start_date": START,
                "triggered": [],
            }),
            today=START,
        )  # fmt: skip
        assert plan.tasks > 50
        yield loaded, plan


def _unpack(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
    (root,) = list(into.iterdir())
    return root


def _run_verify(root: Path, *args: str) -> tuple[int, dict[str, Any] | str]:
    """The package's verify.py as an auditor runs it: its own process, isolated mode (no
    PYTHONPATH, no user site), from a directory outside the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CREDSUP_"))}
    done = subprocess.run(
        [sys.executable, "-I", str(root / "verify.py"), *args],
        capture_output=True, text=True, cwd=root.parent, env=env, check=False, timeout=300,
    )  # fmt: skip
    if "--json" in args and done.returncode in (0, 1):
        return done.returncode, json.loads(done.stdout)
    return done.returncode, done.stdout + done.stderr


def _failed(report: dict[str, Any] | str) -> set[str]:
    assert isinstance(report, dict)
    return {name for name, c in report["checks"].items() if not c["passed"]}


def test_the_package_replays_offline_and_every_tampering_is_named(
    world: tuple[Loaded, PlanCreated], tmp_path: Path
) -> None:
    loaded, plan = world
    made = audit_package(loaded.engine, plan.plan_id, exported_by="test")
    root = _unpack(made.data, tmp_path / "pristine")
    assert root.name == f"{plan.plan_id}-audit"
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    notice = public_notice(loaded.engine, plan.plan_id, today=START)
    # the package's hashes are those the public notice shows; the seed matches its commitment
    for key in ("pool_hash", "inspector_hash", "list_sha256"):
        assert manifest["hashes"][key] == notice[key] == getattr(plan, key)
    assert manifest["seed"]["value"] == plan.seed and manifest["seed"]["source"] == "service"
    assert manifest["seed"]["sha256"] == notice["seed_sha256"] and notice["seed"] is None
    assert manifest["companies_in_pool"] == len(made.companies) == len(set(made.companies))
    assert manifest["tasks"] == plan.tasks
    for part in ("README.txt", "requirements.txt", "params.json", "list.csv",
                 "code/serving/spotcheck/draw.py", "code/serving/spotcheck/items.py",
                 "snapshot/companies.csv", "snapshot/inspectors.csv"):  # fmt: skip
        assert (root / part).is_file(), part
    assert set(manifest["files"]) == {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
    } - {"manifest.json"}
    requirements = (root / "requirements.txt").read_text().splitlines()
    assert {r.split("==")[0] for r in requirements} == {"numpy", "pandas", "pyarrow", "pydantic",
                                                        "PyYAML"}  # fmt: skip
    (tmp_path / "notice.json").write_text(json.dumps(notice), encoding="utf-8")

    code, report = _run_verify(root, "--json", "--notice", str(tmp_path / "notice.json"))
    assert code == 0, report
    assert isinstance(report, dict) and report["identical"] and not _failed(report)
    assert set(report["checks"]) == {"files", "pool_hash", "inspector_hash", "seed_commitment",
                                     "replay", "notice"}  # fmt: skip
    assert f"{plan.tasks} tasks" in report["checks"]["replay"]["detail"]
    code, text = _run_verify(root)  # the report in words
    assert code == 0 and "identical" in str(text) and "FAIL" not in str(text)

    def tampered(name: str) -> Path:
        copy = tmp_path / name / root.name
        shutil.copytree(root, copy)
        return copy

    # a company moved to another tier in the snapshot
    copy = tampered("tier")
    companies = (copy / "snapshot/companies.csv").read_text(encoding="utf-8").splitlines()
    assert companies[0] == '"uscc","tier","region","industry","entity_type"'
    row = companies[1].split('","')
    row[1] = "D" if row[1] != "D" else "A"
    companies[1] = '","'.join(row)
    (copy / "snapshot/companies.csv").write_text("\n".join(companies) + "\n", encoding="utf-8")
    code, report = _run_verify(copy, "--json")
    assert code == 1 and {"files", "pool_hash"} <= _failed(report)
    assert "snapshot/companies.csv" in report["checks"]["files"]["detail"]  # type: ignore[index]

    # another seed (the manifest is not among the hashed files: its seed meets the commitment)
    copy = tampered("seed")
    changed = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    changed["seed"]["value"] = str(int(changed["seed"]["value"]) + 1)
    (copy / "manifest.json").write_text(json.dumps(changed), encoding="utf-8")
    code, report = _run_verify(copy, "--json")
    assert code == 1 and _failed(report) == {"seed_commitment", "replay"}

    # a task left out of the list
    copy = tampered("list")
    lines = (copy / "list.csv").read_bytes().splitlines(keepends=True)
    (copy / "list.csv").write_bytes(b"".join(lines[:-1]))
    code, report = _run_verify(copy, "--json")
    assert code == 1 and _failed(report) == {"files", "replay"}

    # the package's own copy of the draw is what runs: another stream gives another list
    copy = tampered("code")
    source = (copy / "code/serving/spotcheck/draw.py").read_text(encoding="utf-8")
    assert source.count("np.random.PCG64(seed)") == 1
    (copy / "code/serving/spotcheck/draw.py").write_text(
        source.replace("np.random.PCG64(seed)", "np.random.PCG64(seed + 1)"), encoding="utf-8"
    )
    code, report = _run_verify(copy, "--json")
    assert code == 1 and _failed(report) == {"files", "replay"}

    # a package that is not the draw the public was told of
    other = {**notice, "list_sha256": "0" * 64}
    (tmp_path / "other.json").write_text(json.dumps(other), encoding="utf-8")
    code, report = _run_verify(root, "--json", "--notice", str(tmp_path / "other.json"))
    assert code == 1 and _failed(report) == {"notice"}
    assert "list_sha256" in report["checks"]["notice"]["detail"]  # type: ignore[index]

    # what cannot be read is exit 2 with what is wrong
    copy = tampered("manifest")
    (copy / "manifest.json").write_text("{not json", encoding="utf-8")
    code, text = _run_verify(copy)
    assert code == 2 and "manifest.json" in str(text)
    copy = tampered("missing")
    (copy / "snapshot/inspectors.csv").unlink()
    code, text = _run_verify(copy)
    assert code == 2 and "snapshot/inspectors.csv is missing" in str(text)


def _logged(loaded: Loaded, endpoint: str) -> list[tuple[str | None, int, str | None]]:
    with loaded.engine.connect() as con:
        return [
            (r.uscc, r.status, r.purpose)
            for r in con.execute(
                sa.select(audit_log.c.uscc, audit_log.c.status, audit_log.c.purpose)
                .where(audit_log.c.endpoint == endpoint)
            )
        ]  # fmt: skip


def test_the_api_gives_it_to_those_who_manage_plans_and_logs_every_pooled_company(
    world: tuple[Loaded, PlanCreated], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded, plan = world
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(data_dir=loaded.data_dir, DATABASE_URL=loaded.url,
                        duckdb_memory_limit="1GB")  # fmt: skip
    keys = {role: create_key(loaded.engine, role, "samr" if role == "department" else None,
                             f"package {role}")
            for role in ("regulator", "department", "analyst", "public")}  # fmt: skip
    url = f"/v1/spot-check-plans/{plan.plan_id}/audit-package"
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for role in ("department", "analyst", "public"):
            refused = client.get(url, headers={"X-API-Key": keys[role], "X-Purpose": "look"})
            assert refused.status_code == 403, (role, refused.text)
        without = client.get(url, headers={"X-API-Key": keys["regulator"]})
        assert without.status_code == 400 and "purpose" in without.text.lower()
        reg = {"X-API-Key": keys["regulator"], "X-Purpose": "audit of the draw by the audit office"}
        missing = client.get("/v1/spot-check-plans/SJ-2026-999/audit-package", headers=reg)
        assert missing.status_code == 404
        got = client.get(url, headers=reg)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/zip"
        assert f'filename="{plan.plan_id}-audit.zip"' in got.headers["content-disposition"]
        client.app.state.service.audit.flush()  # type: ignore[attr-defined]
    root = _unpack(got.content, tmp_path / "api")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["exported_by"] == "regulator package regulator"
    code, report = _run_verify(root, "--json")
    assert code == 0 and isinstance(report, dict) and report["identical"]

    lines = _logged(loaded, ENDPOINT)
    read = [(u, p) for u, s, p in lines if s == 200]
    pooled = set(audit_package(loaded.engine, plan.plan_id, "test").companies)
    assert len(read) == len(pooled) and {u for u, _ in read} == pooled  # each company once
    assert all(p == f"{plan.plan_id}: audit of the draw by the audit office" for _, p in read)
    assert (None, 404, "SJ-2026-999: audit of the draw by the audit office") in lines


def _cli(loaded: Loaded, *args: str) -> Result:
    env = {**env_for(loaded.data_dir), "DATABASE_URL": loaded.url}
    return CliRunner().invoke(app, list(args), env=env)


def test_the_command_line_exports_and_verifies_a_package(
    world: tuple[Loaded, PlanCreated], tmp_path: Path
) -> None:
    loaded, plan = world
    zipped = tmp_path / "plan.zip"
    before = len(_logged(loaded, "credsup plan audit-package"))
    refused = _cli(loaded, "plan", "audit-package", plan.plan_id, "--out", str(zipped))
    assert refused.exit_code == 2 and not zipped.exists()
    made = _cli(loaded, "plan", "audit-package", plan.plan_id, "--out", str(zipped),
                "--purpose", "annual audit")  # fmt: skip
    assert made.exit_code == 0, made.output
    logged = _logged(loaded, "credsup plan audit-package")
    refusals = [(u, s) for u, s, _ in logged[before:] if s != 200]
    assert refusals == [(None, 400)]  # the refusal without a purpose, as the API's 400
    read = [u for u, s, p in logged[before:] if s == 200 and p and "annual audit" in p]
    assert (
        len(read)
        == len(set(read))
        == json.loads(zipfile.ZipFile(zipped).read(f"{plan.plan_id}-audit/manifest.json"))[
            "companies_in_pool"
        ]
    )

    checked = _cli(loaded, "plan", "verify-package", str(zipped), "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["identical"] is True
    words = _cli(loaded, "plan", "verify-package", str(zipped))
    assert words.exit_code == 0 and "identical" in words.stdout

    # a zip whose list was altered: exit 1, the failed checks named
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/list.csv"):
                data = data.replace(b"\n", b"\r\n", 1)
            dst.writestr(info, data)
    failed = _cli(loaded, "plan", "verify-package", str(bad), "--json")
    assert failed.exit_code == 1
    assert {n for n, c in json.loads(failed.stdout)["checks"].items()
            if not c["passed"]} == {"files", "replay"}  # fmt: skip

    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("not a zip")
    assert _cli(loaded, "plan", "verify-package", str(not_zip)).exit_code == 2
    unknown = _cli(loaded, "plan", "audit-package", "SJ-2026-999", "--out", str(tmp_path / "x"),
                   "--purpose", "annual audit")  # fmt: skip
    assert unknown.exit_code == 2 and not (tmp_path / "x").exists()


def test_a_deployment_draws_its_own_seeds_unless_it_allows_chosen_ones(
    world: tuple[Loaded, PlanCreated], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As shipped (`Settings.caller_seeds` "refuse"), the API and the command line refuse a
    chosen seed, naming the setting, and store nothing; without one the service draws it. With
    "allow" a chosen seed is taken and the notice says it was the caller's."""
    loaded, _ = world
    monkeypatch.delenv("CREDSUP_CALLER_SEEDS")  # the tests' conftest allows them
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert Settings().caller_seeds == "refuse"

    def plans_named(prefix: str) -> int:
        with loaded.engine.connect() as con:
            return int(con.execute(
                sa.select(sa.func.count()).select_from(spot_check_plans)
                .where(spot_check_plans.c.name.like(f"{prefix}%"))
            ).scalar_one())  # fmt: skip

    settings = Settings(data_dir=loaded.data_dir, DATABASE_URL=loaded.url,
                        duckdb_memory_limit="1GB")  # fmt: skip
    key = create_key(loaded.engine, "regulator", None, "seed policy")
    body = {"departments": ["samr"], "items": ["SC-GS-01"], "snapshot_date": AS_OF.isoformat(),
            "start_date": "2026-09-07", "record_past": True}  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = {"X-API-Key": key}
        chosen = client.post("/v1/spot-check-plans", headers=headers,
                             json={**body, "name": "seed api chosen", "seed": 11})  # fmt: skip
        assert chosen.status_code == 422, chosen.text
        assert chosen.json()["code"] == "caller_seed"
        assert "CREDSUP_CALLER_SEEDS" in chosen.json()["message"]
        assert plans_named("seed api") == 0
        drawn = client.post("/v1/spot-check-plans", headers=headers,
                            json={**body, "name": "seed api service"})  # fmt: skip
        assert drawn.status_code == 201, drawn.text
        assert drawn.json()["summary"]["seed"]["source"] == "service"

    args = ["plan", "create", "--departments", "samr", "--items", "SC-GS-01", "--snapshot",
            AS_OF.isoformat(), "--start", "2026-09-14", "--record-past", "--seed", "11",
            "--json"]  # fmt: skip
    env = {**env_for(loaded.data_dir), "DATABASE_URL": loaded.url}
    refused = CliRunner().invoke(app, [*args, "--name", "seed cli refused"],
                                 env={**env, "CREDSUP_CALLER_SEEDS": None})  # fmt: skip
    assert refused.exit_code == 2 and "CREDSUP_CALLER_SEEDS" in refused.stdout
    assert plans_named("seed cli") == 0
    allowed = CliRunner().invoke(app, [*args, "--name", "seed cli allowed"],
                                 env={**env, "CREDSUP_CALLER_SEEDS": "allow"})  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    made = json.loads(allowed.stdout)
    assert made["seed"] == "11" and made["summary"]["seed"]["source"] == "caller"
    assert public_notice(loaded.engine, made["plan_id"])["seed_source"] == "caller"
