"""Today is China's date whatever the machine's time zone.

Records, as-of dates, publicity periods and deadlines are dated in China Standard Time (UTC+8).
A server whose clock runs in UTC (or anywhere else) once took its own date for today: from 00:00
to 08:00 in China a record dated today was quarantined as dated in the future, and a publicity
period ran a day long. The machine's zone is set here to UTC-12 and to UTC+14: at any hour one
of them has a date other than China's.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from records.ingest import ingest_table
from records.store import Store
from records.workdays import china_today
from tests.records.factory import penalty

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("records", "features", "models", "training", "serving", "cli")


@pytest.fixture(params=["WEST12", "EAST-14"])  # POSIX zones: UTC-12 and UTC+14
def machine_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_today_is_the_date_in_china(machine_zone: str) -> None:
    china = (datetime.now(UTC) + timedelta(hours=8)).date()
    assert china_today() in (china, china + timedelta(days=1))  # the clock may pass midnight


def test_a_record_of_today_in_china_is_ingested_and_one_of_tomorrow_is_not(
    store: Store, machine_zone: str
) -> None:
    today = china_today()
    rows = [
        penalty("TODAY", event_date=today.isoformat(), recorded_date=""),
        penalty("TOMORROW", event_date=(today + timedelta(days=1)).isoformat(), recorded_date=""),
    ]
    result = ingest_table(store, pa.Table.from_pylist(rows), "records", "samr")
    assert (result.stored, result.quarantined) == (1, 1)
    with store.connect() as con:
        stored = con.sql("SELECT record_id, recorded_date FROM records").fetchall()
        reason = con.sql("SELECT reason, message FROM quarantine").fetchall()
    # a record without its recorded date is recorded today, China's today
    assert stored == [("TODAY", today)]
    assert reason[0][0] == "future_date" and f"after today ({today})" in reason[0][1]


def test_no_product_module_takes_the_machine_s_date() -> None:
    """`date.today()` and `datetime.now().date()` are the machine's date: every product module
    asks `records.workdays.china_today()` instead."""
    found = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "today"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("date", "datetime")
                ):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, "the machine's date is taken at " + ", ".join(found)
