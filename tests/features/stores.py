"""Small stores for feature tests: write rows through ingestion, read them back without DuckDB,
and compare feature rows of the builder with those of the reference."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from features.builder import build_features_at
from features.specs import SPECS, Spec
from records.events import append_events
from records.ingest import ingest_table
from records.schema import ENTITY_COLUMNS, RECORD_COLUMNS, TABLES
from records.store import Store
from tests.features.reference import Reference

Row = dict[str, Any]
TODAY = date(2026, 11, 22)
ENTITY_INPUT = (*ENTITY_COLUMNS, "recorded_date")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def text_table(rows: Sequence[Row], columns: Sequence[str]) -> pa.Table:
    """Rows as an all-text Arrow table, the way a department's CSV arrives."""
    return pa.table({c: pa.array([_text(r.get(c)) for r in rows], pa.string()) for c in columns})


def add_records(store: Store, rows: Sequence[Row], today: date = TODAY) -> None:
    if not rows:
        return
    result = ingest_table(
        store, text_table(rows, RECORD_COLUMNS), "records", "samr", today=today, history=True
    )
    assert (result.stored, result.quarantined) == (len(rows), 0), result.to_dict()


def add_entities(store: Store, rows: Sequence[Row], today: date = TODAY) -> None:
    if not rows:
        return
    result = ingest_table(
        store, text_table(rows, ENTITY_INPUT), "entities", "samr", today=today, history=True
    )
    assert result.quarantined == 0, result.to_dict()


def add_events(store: Store, rows: Sequence[Row], today: date = TODAY) -> None:
    if not rows:
        return
    result = append_events(store, list(rows), today=today)
    assert not result.rejected, result.rejected


def read_table(store: Store, table: str) -> list[Row]:
    """A stored table as dicts, read from the committed Parquet files with pyarrow only."""
    names = TABLES[table].names
    parts = [pq.read_table(path).select(names) for path in store.files(table)]
    if not parts:
        return []
    return list(pa.concat_tables(parts).to_pylist())


def reference_for(store: Store, specs: tuple[Spec, ...] = SPECS) -> Reference:
    return Reference(
        read_table(store, "records"), read_table(store, "entities"), read_table(store, "events"),
        specs,
    )  # fmt: skip


def points_table(points: Iterable[tuple[str, date]]) -> pa.Table:
    pts = sorted(set(points))
    return pa.table(
        {
            "uscc": pa.array([u for u, _ in pts], pa.string()),
            "as_of": pa.array([d for _, d in pts], pa.date32()),
        }
    )


def builder_rows(
    store: Store, points: Iterable[tuple[str, date]], specs: tuple[Spec, ...] = SPECS
) -> list[Row]:
    return list(build_features_at(store, points_table(points), specs).to_pylist())


def same_value(got: Any, want: Any) -> bool:
    """Both NULL, or the same type (a float is a float, not a Decimal) and value: exact for
    integers and text, to 1e-9 relative for floats."""
    if got is None or want is None:
        return got is None and want is None
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return bool(got == want)


def differences(actual: list[Row], expected: list[Row], limit: int = 20) -> list[str]:
    """Where two lists of feature rows differ (same order, same columns), as readable lines."""
    out: list[str] = []
    if [(r["uscc"], r["as_of"]) for r in actual] != [(r["uscc"], r["as_of"]) for r in expected]:
        return ["the two sides have different (uscc, as_of) rows"]
    for got, want in zip(actual, expected, strict=True):
        if set(got) != set(want):
            out.append(f"columns differ: {sorted(set(got) ^ set(want))}")
            break
        for name, value in want.items():
            if not same_value(got[name], value):
                out.append(
                    f"{got['uscc']} {got['as_of']} {name}: builder {got[name]!r}, "
                    f"reference {value!r}"
                )
    return out[:limit]
