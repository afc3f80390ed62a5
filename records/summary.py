"""Figures about the store: counts per category and the quarantine by reason."""

from __future__ import annotations

from typing import Any

from records.store import SORT_KEYS, Store, layout


def store_summary(store: Store) -> dict[str, Any]:
    """Counts of records per category, entities, events, quarantined rows by reason, batches,
    and per department the records that arrived late (stored as known on their ingestion day:
    how many, and by how many days, the median and the most)."""
    log = store.log()
    with store.connect() as con:
        per_category = dict(
            con.execute(
                "SELECT category, count(*) FROM records GROUP BY category ORDER BY category"
            ).fetchall()
        )
        span = con.execute(
            "SELECT CAST(min(event_date) AS VARCHAR), CAST(max(event_date) AS VARCHAR), "
            "CAST(max(recorded_date) AS VARCHAR), count(DISTINCT uscc) FROM records"
        ).fetchall()[0]
        entities = con.execute(
            "SELECT count(DISTINCT uscc), count(*), "
            "count(DISTINCT uscc) FILTER (WHERE entity_type = 'individual_business') FROM entities"
        ).fetchall()[0]
        by_reason = dict(
            con.execute(
                "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason"
            ).fetchall()
        )
        events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        late = con.execute(
            """SELECT source_dept, count(*),
                count(source_recorded_date),
                CAST(quantile_disc(recorded_date - source_recorded_date, 0.5) AS INTEGER),
                max(recorded_date - source_recorded_date)
            FROM records GROUP BY source_dept HAVING count(source_recorded_date) > 0
            ORDER BY source_dept"""
        ).fetchall()
    return {
        "store": str(store.root),
        "records": sum(per_category.values()),
        "records_by_category": per_category,
        "companies_with_records": span[3],
        "first_event_date": span[0],
        "last_event_date": span[1],
        "last_recorded_date": span[2],
        "entities": entities[0],
        "entity_versions": entities[1],
        "individual_businesses": entities[2],
        "events": events,
        "quarantined": sum(by_reason.values()),
        "quarantine_by_reason": by_reason,
        "batches": sum(1 for e in log if e.get("kind") != "compaction"),
        "compactions": sum(1 for e in log if e.get("kind") == "compaction"),
        "files": {table: layout(log, table) for table in SORT_KEYS},
        "late_by_department": {
            dept: {"records": n, "late": k, "median_days_late": med, "max_days_late": most}
            for dept, n, k, med, most in late
        },
    }
