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


def machine_dates(source: str) -> list[int]:
    """Lines that take the machine's date or wall-clock time: `date.today()`,
    `datetime.today()`, `datetime.now()` without a time zone (`.now().date()` included), and
    `date.today` passed on uncalled (`default_factory=date.today`). `datetime.now(UTC)` and
    `datetime.now(CHINA)` name their zone and are fine."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in ("today", "now"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name not in ("date", "datetime"):
            continue
        if node.attr == "today":
            found.append(node.lineno)
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "now"
            and (
                (isinstance(node.func.value, ast.Name) and node.func.value.id == "datetime")
                or (
                    isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr == "datetime"
                )
            )
        ):
            zone = (
                node.args[0]
                if node.args
                else next((k.value for k in node.keywords if k.arg == "tz"), None)
            )
            if zone is None or (isinstance(zone, ast.Constant) and zone.value is None):
                found.append(node.lineno)
    return sorted(found)


def test_the_check_finds_every_way_of_taking_the_machine_s_date() -> None:
    source = """
import datetime as dt
from datetime import UTC, date, datetime
a = date.today()
b = datetime.now().date()
c = datetime.today()
d = dt.date.today()
e = dt.datetime.now()
f = datetime.now(tz=None)
g = field(default_factory=date.today)
ok = datetime.now(UTC).date(), datetime.now(CHINA), datetime.now(tz=UTC), dt.datetime.now(UTC)
"""
    assert machine_dates(source) == [4, 5, 6, 7, 8, 9, 10]


def test_no_product_module_takes_the_machine_s_date() -> None:
    """`date.today()` and `datetime.now().date()` are the machine's date: every product module
    asks `records.workdays.china_today()` instead."""
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for package in PRODUCT
        for path in sorted((REPO / package).rglob("*.py"))
        for line in machine_dates(path.read_text(encoding="utf-8"))
    ]
    assert not found, "the machine's date is taken at " + ", ".join(found)
