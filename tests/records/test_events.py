from __future__ import annotations

from datetime import date
from pathlib import Path

from records.events import append_events
from records.ingest import ingest_file
from records.store import Store
from tests.records.factory import TODAY, valid_rows, write_csv


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
