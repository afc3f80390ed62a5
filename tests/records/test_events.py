from __future__ import annotations

import fcntl
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from records.events import append_events
from records.ingest import ingest_file
from records.store import Store
from tests.records.factory import TODAY, penalty, valid_rows, write_csv

REPO = Path(__file__).resolve().parents[2]


def test_events_are_appended_never_rewriting_records(store: Store, tmp_path: Path) -> None:
    rows = valid_rows(3, prefix="V")
    ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "samr", today=TODAY)
    before = store.read("records").sort_by("record_id")
    events = [
        {"event_id": "e1", "record_id": "V0000000", "event_type": "objection_opened",
         "effective_date": "2026-01-02", "attributes": {"by": "company"}},
        {"event_id": "e2", "record_id": "V0000001", "event_type": "repair",
         "effective_date": date(2026, 3, 1), "recorded_date": "2026-03-04"},
        {"record_id": "nope", "event_type": "repair", "effective_date": "2026-03-01"},
        {"record_id": "V0000002", "event_type": "delete", "effective_date": "2026-03-01"},
        {"record_id": "V0000002", "event_type": "withdrawal", "effective_date": "2027-03-01"},
    ]  # fmt: skip
    result = append_events(store, events, today=TODAY)
    assert result.stored == 2
    reasons = [r["reason"] for r in result.rejected]
    assert reasons[0] == "record_id 'nope' is not a stored record"
    assert "is not one of withdrawal" in reasons[1]
    assert "dates after today" in reasons[2]
    stored = {e["event_id"]: e for e in store.read("events").to_pylist()}
    assert stored["e1"]["recorded_date"] == TODAY
    assert stored["e2"]["effective_date"] == date(2026, 3, 1)
    assert store.read("records").sort_by("record_id").equals(before)
    again = append_events(store, events[:2], today=TODAY)
    assert (again.stored, again.already_stored) == (0, 2)


@pytest.mark.parametrize(
    ("fix", "problem"),
    [
        ({"severity": "Serious"}, "severity 'Serious' is not one of admin_penalty's"),
        ({"severity": None}, "admin_penalty requires a severity"),
        ({"amount": -7}, "amount -7 is negative"),
        ({"amount": float("nan")}, "amount nan is not a finite number"),
        ({"amount": float("inf")}, "amount inf is not a finite number"),
        ({"amount": "5000"}, "amount '5000' is not a number"),
        ({"attributes": ["fine"]}, "attributes must be a JSON object"),
    ],
)
def test_corrections_are_checked_against_the_catalogue(
    store: Store, tmp_path: Path, fix: dict[str, Any], problem: str
) -> None:
    rows = [penalty("P1"), penalty("N1", category="news", severity="negative", amount="")]
    ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "samr", today=TODAY)
    event = {"record_id": "P1", "event_type": "correction", "effective_date": "2026-01-02"}
    result = append_events(store, [{**event, "attributes": fix}], today=TODAY)
    assert result.stored == 0
    assert len(result.rejected) == 1 and problem in result.rejected[0]["reason"]
    news = append_events(
        store, [{**event, "record_id": "N1", "attributes": {"amount": 5}}], today=TODAY
    )
    assert news.stored == 0 and "news takes no amount" in news.rejected[0]["reason"]
    fine = append_events(
        store, [{**event, "attributes": {"severity": "serious", "amount": 9000}}], today=TODAY
    )
    assert (fine.stored, fine.rejected) == (1, [])
    assert store.read("events").num_rows == 1


@pytest.mark.parametrize("severity", ["removed", "listed"])
def test_a_listing_is_not_ended_or_made_by_correcting_its_severity(
    store: Store, tmp_path: Path, severity: str
) -> None:
    """A later listing corrected to `removed` read as a removal of every earlier listing of the
    list: the company left the abnormal-operation list (and its veto) while an earlier listing
    stood. A listing ends by a removal record naming it; a wrong one is withdrawn."""
    rows = [
        penalty(f"L{i}", category="abnormal_operation_list", severity="listed", amount="",
                event_date=day, recorded_date=day)
        for i, day in ((1, "2025-01-01"), (2, "2025-06-01"))
    ]  # fmt: skip
    ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "samr", today=TODAY)
    fix = {"record_id": "L2", "event_type": "correction", "effective_date": "2025-07-01",
           "attributes": {"severity": severity}}  # fmt: skip
    result = append_events(store, [fix], today=TODAY)
    assert result.stored == 0
    assert (
        "may not restate the severity of abnormal_operation_list records"
        in (result.rejected[0]["reason"])
    )
    # other corrections of a listing are taken
    other = {**fix, "attributes": {"attributes": {"reason": "unreachable"}}}
    assert append_events(store, [other], today=TODAY).stored == 1


@pytest.mark.parametrize("ref", [None, "L1"])
def test_a_removal_is_not_pointed_at_another_listing_by_a_correction(
    store: Store, tmp_path: Path, ref: str | None
) -> None:
    """Correcting a removal's `ref` away (a JSON merge patch with null deletes it) made it end
    every earlier listing of the list: the company left the serious dishonest list."""
    rows = [
        penalty("L1", category="serious_dishonest_list", severity="listed", amount="",
                event_date="2024-01-01", recorded_date="2024-01-01"),
        penalty("L2", category="serious_dishonest_list", severity="listed", amount="",
                event_date="2024-01-11", recorded_date="2024-01-11"),
        penalty("R2", category="serious_dishonest_list", severity="removed", amount="",
                event_date="2024-02-01", recorded_date="2024-02-01", attributes='{"ref": "L2"}'),
    ]  # fmt: skip
    ingest_file(store, write_csv(tmp_path / "a.csv", rows), "records", "samr", today=TODAY)
    fix = {"record_id": "R2", "event_type": "correction", "effective_date": "2024-03-01",
           "attributes": {"attributes": {"ref": ref}}}  # fmt: skip
    result = append_events(store, [fix], today=TODAY)
    assert result.stored == 0 and "which listing" in result.rejected[0]["reason"]


APPEND_ONE = """
import contextlib, sys
from datetime import date
from records.events import append_events
from records.store import Store

begin = Store.begin

@contextlib.contextmanager
def begin_said(self, kind, **info):
    print("at the lock", flush=True)  # the test holds the lock until all three are here
    with begin(self, kind, **info) as batch:
        yield batch

Store.begin = begin_said
event = {"event_id": "obj-1", "record_id": "E1", "event_type": "objection_opened",
         "effective_date": "2026-01-02"}
result = append_events(Store(sys.argv[1]), [event], today=date(2026, 11, 22))
print(result.stored, result.already_stored, flush=True)
"""


def test_one_event_id_is_stored_once_when_processes_append_it_at_once(
    store: Store, tmp_path: Path
) -> None:
    """Three processes append event obj-1 together. Each reads what is stored and writes under
    the store's lock; the reads must happen under it too, or all three store obj-1. The test
    holds the lock until all three are waiting for it, so the race is certain, not likely."""
    ingest_file(
        store, write_csv(tmp_path / "a.csv", [penalty("E1")]), "records", "samr", today=TODAY
    )
    with open(store.root / "_lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", APPEND_ONE, str(store.root)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "at the lock"
        fcntl.flock(lock, fcntl.LOCK_UN)
    outcomes = sorted(writer.communicate(timeout=120)[0].strip() for writer in writers)
    assert [w.returncode for w in writers] == [0, 0, 0]
    assert outcomes == ["0 1", "0 1", "1 0"]
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM events WHERE event_id = 'obj-1'").fetchall() == [
            (1,)
        ]
