"""The service sorts its own small writes (`CREDSUP_AUTO_COMPACT_FILES`): results posted through
the API each store a small file; once the records have that many files not sorted yet, a thread
of the service compacts them into a run, every result still read; with the setting at 0 it
never does. Only the record store is involved: one database backend is enough here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from records.settings import Settings
from records.store import layout
from records.workdays import china_today
from serving.app import create_app
from serving.auth import create_key
from serving.db import spot_check_tasks
from serving.spotcheck.demo import load_demo_inspectors
from serving.spotcheck.plans import PlanRequest, create_plan, import_preset_items
from tests.serving.databases import Loaded, loaded_copy
from tests.serving.pipeline import AS_OF


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, province: Path
) -> Iterator[Loaded]:
    with loaded_copy("sqlite", request, tmp_path_factory, province, "autocompact") as loaded:
        import_preset_items(loaded.engine, "national-default")
        load_demo_inspectors(loaded.engine, per_city=6)
        yield loaded


def _unsorted(world: Loaded) -> int:
    return layout(world.store.log(), "records")["unsorted_files"]


def test_the_service_compacts_its_own_results_once_there_are_enough(
    world: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    today = china_today()
    plan = create_plan(world.engine, PlanRequest.model_validate({
        "name": "auto compaction", "departments": ["samr"], "items": ["SC-GS-01"],
        "snapshot_date": AS_OF, "start_date": today - timedelta(days=3), "record_past": True,
    }), today=today)  # fmt: skip
    with world.engine.connect() as con:
        tasks = con.execute(sa.select(spot_check_tasks.c.id, spot_check_tasks.c.uscc)
                            .where(spot_check_tasks.c.plan_id == plan.plan_id)
                            .order_by(spot_check_tasks.c.id).limit(7)).all()  # fmt: skip
    assert len(tasks) == 7
    world.store.compact()  # start from a store with nothing loose
    assert _unsorted(world) == 0
    key = create_key(world.engine, "regulator", None, "auto compaction")
    headers = {"X-API-Key": key, "X-Purpose": "results"}
    body = {"result": "pass", "check_date": today.isoformat()}

    off = Settings(data_dir=world.data_dir, DATABASE_URL=world.url, duckdb_memory_limit="1GB",
                   auto_compact_files=0)  # fmt: skip
    with TestClient(create_app(off), raise_server_exceptions=False) as client:
        assert client.app.state.service.compactor is None  # type: ignore[attr-defined]
        for task_id, _ in tasks[:3]:
            posted = client.post(f"/v1/spot-check-tasks/{task_id}/result", json=body,
                                 headers=headers)  # fmt: skip
            assert posted.status_code == 201, posted.text
        time.sleep(1)
    assert _unsorted(world) == 3  # nothing compacts them

    on = off.model_copy(update={"auto_compact_files": 5})
    with TestClient(create_app(on), raise_server_exceptions=False) as client:
        compactor = client.app.state.service.compactor  # type: ignore[attr-defined]
        posted = client.post(f"/v1/spot-check-tasks/{tasks[3][0]}/result", json=body,
                             headers=headers)  # fmt: skip
        assert posted.status_code == 201
        time.sleep(1)
        assert _unsorted(world) == 4 and compactor.compactions == 0  # below the threshold
        posted = client.post(f"/v1/spot-check-tasks/{tasks[4][0]}/result", json=body,
                             headers=headers)  # fmt: skip
        assert posted.status_code == 201
        deadline = time.monotonic() + 20  # woken by the commit, not by the 60 s timer
        while _unsorted(world) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _unsorted(world) == 0 and compactor.compactions == 1
        assert compactor.failures == 0 and compactor.last_error is None
        metrics = client.get("/metrics").text
        assert "credsup_store_auto_compactions_total" in metrics
        # every result is still read, on the company's records page too
        for task_id, uscc in tasks[:5]:
            page = client.get(f"/v1/companies/{uscc}/records", headers=headers)
            assert page.status_code == 200, page.text
            ids = [r["record_id"] for r in page.json()["records"]]
            ours = [i for i in ids if i.startswith(f"{plan.plan_id}-T")]
            assert [int(i.split("-T")[1].split("-")[0]) for i in ours] == [task_id], ids
    last = world.store.log()[-1]
    assert last["kind"] == "compaction" and len(last["replaces"]["records"]) == 5
