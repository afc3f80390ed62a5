"""Canonical formats of records, entities, record events and quarantined rows."""

from __future__ import annotations

import pyarrow as pa

RECORD_COLUMNS = (
    "record_id", "uscc", "category", "event_date", "recorded_date",
    "source_dept", "severity", "amount", "attributes",
)  # fmt: skip
"""A department's record, as every input file is mapped to. `attributes` is a JSON object."""

RECORD_REQUIRED = ("record_id", "uscc", "category", "event_date")

ENTITY_COLUMNS = (
    "uscc", "name", "industry", "region", "entity_type",
    "registered_capital", "established_date", "status",
)  # fmt: skip
"""Registration facts of one entity; `recorded_date` may be given too (default: ingest day)."""

ENTITY_REQUIRED = ("uscc", "name")

ENTITY_TYPES = (
    "enterprise", "individual_business", "cooperative",
    "social_organisation", "public_institution", "other",
)  # fmt: skip
ENTITY_STATUSES = ("active", "suspended", "revoked", "deregistered")

EVENT_TYPES = (
    "withdrawal", "correction", "repair", "objection_opened", "objection_closed", "unpublish",
)  # fmt: skip
"""Later events that change how a record counts; stored append-only, never by rewriting it."""


def version_order(alias: str = "") -> str:
    """SQL: the order of an entity's versions, the one in force last. Of the versions known by a
    day (`recorded_date` <= day) the newest by the department's date is in force, then the one
    known later, then the later batch: a version that arrives late never displaces a newer one,
    and a back-fill of history (dated as recorded) takes its place by its date."""
    p = f"{alias}." if alias else ""
    return (
        f"struct_pack(v := coalesce({p}source_recorded_date, {p}recorded_date), "
        f"d := {p}recorded_date, b := {p}batch_id)"
    )


VERSION_ORDER = version_order()
"""`version_order()` of the `entities` table itself."""

RECORDS = pa.schema(
    [
        ("record_id", pa.string()),
        ("uscc", pa.string()),
        ("category", pa.string()),
        ("event_date", pa.date32()),
        ("recorded_date", pa.date32()),
        ("source_dept", pa.string()),
        ("severity", pa.string()),
        ("amount", pa.float64()),
        ("attributes", pa.string()),
        ("batch_id", pa.string()),
        ("source_recorded_date", pa.date32()),
    ]
)

ENTITIES = pa.schema(
    [
        ("uscc", pa.string()),
        ("name", pa.string()),
        ("industry", pa.string()),
        ("region", pa.string()),
        ("entity_type", pa.string()),
        ("registered_capital", pa.float64()),
        ("established_date", pa.date32()),
        ("status", pa.string()),
        ("recorded_date", pa.date32()),
        ("batch_id", pa.string()),
        ("source_recorded_date", pa.date32()),
    ]
)

EVENTS = pa.schema(
    [
        ("event_id", pa.string()),
        ("record_id", pa.string()),
        ("event_type", pa.string()),
        ("effective_date", pa.date32()),
        ("recorded_date", pa.date32()),
        ("attributes", pa.string()),
        ("batch_id", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    [
        ("quarantine_id", pa.string()),
        ("batch_id", pa.string()),
        ("kind", pa.string()),
        ("source_file", pa.string()),
        ("source_dept", pa.string()),
        ("row", pa.int64()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("raw", pa.string()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "records": RECORDS,
    "entities": ENTITIES,
    "events": EVENTS,
    "quarantine": QUARANTINE,
}
