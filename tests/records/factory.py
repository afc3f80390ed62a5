"""Canonical record rows for tests: valid ones, and the defects ingestion must catch."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from records import uscc
from records.catalogue import default_catalogue
from records.schema import ENTITY_COLUMNS, RECORD_COLUMNS

TODAY = date(2026, 11, 22)


def valid_rows(n: int, seed: int = 0, prefix: str = "R") -> list[dict[str, Any]]:
    """`n` valid canonical rows over the whole catalogue (text values, as in a CSV)."""
    rng = np.random.default_rng(seed)
    cat = default_catalogue()
    categories = [c for c in cat.categories if c.code != "registration"]
    codes = uscc.generate_many(rng, ["91"] * 200 + ["92"] * 100, ["410102"] * 300)
    rows = []
    for i in range(n):
        c = categories[i % len(categories)]
        event = TODAY - timedelta(days=int(rng.integers(30, 2000)))
        severity = c.severities[int(rng.integers(len(c.severities)))] if c.severities else ""
        amount = "" if c.amount == "none" else f"{rng.integers(0, 100_000)}.5"
        attributes: dict[str, Any] = {"k": int(rng.integers(100))}
        for name in c.required_attributes:
            attributes[name] = f"signal_{i % 3}"
        rows.append(
            {
                "record_id": f"{prefix}{i:07d}",
                "uscc": codes[int(rng.integers(len(codes)))],
                "category": c.code,
                "event_date": event.isoformat(),
                "recorded_date": (event + timedelta(days=int(rng.integers(0, 20)))).isoformat(),
                "source_dept": "samr",
                "severity": severity,
                "amount": amount,
                "attributes": json.dumps(attributes, ensure_ascii=False),
            }
        )
    return rows


def penalty(record_id: str, **changes: str) -> dict[str, Any]:
    row = {
        "record_id": record_id,
        "uscc": "91110000600037341L",
        "category": "admin_penalty",
        "event_date": "2024-01-05",
        "recorded_date": "2024-01-10",
        "source_dept": "samr",
        "severity": "general",
        "amount": "5000",
        "attributes": "{}",
    }
    row.update(changes)
    return row


def _bad_uscc(row: dict[str, Any], i: int) -> str:
    code = row["uscc"]
    pos = i % 18
    others = [c for c in uscc.CHARSET if c != code[pos]]
    return str(code[:pos] + others[i % len(others)] + code[pos + 1 :])


DEFECTS = (
    "invalid_uscc", "unknown_category", "invalid_date", "future_date", "severity_not_allowed",
    "negative_amount", "invalid_attributes", "missing_field", "recorded_before_event",
    "record_id_conflict",
)  # fmt: skip


def defective(row: dict[str, Any], defect: str, i: int) -> dict[str, Any]:
    """A copy of a valid row carrying one defect."""
    bad = dict(row)
    if defect == "invalid_uscc":
        bad["uscc"] = _bad_uscc(row, i)
    elif defect == "unknown_category":
        bad["category"] = ["penalty", "admin-penalty", "行政处罚", "unknown"][i % 4]
    elif defect == "invalid_date":
        bad["event_date"] = ["2024-13-01", "2024-02-30", "yesterday", "0201-01-01"][i % 4]
    elif defect == "future_date":
        bad["event_date"] = (TODAY + timedelta(days=1 + i)).isoformat()
        bad["recorded_date"] = (TODAY + timedelta(days=2 + i)).isoformat()
    elif defect == "severity_not_allowed":
        bad.update(category="admin_penalty", severity=["huge", "pass", "A"][i % 3], amount="10")
    elif defect == "negative_amount":
        bad.update(category="admin_penalty", severity="general", amount=f"-{i + 1}")
    elif defect == "invalid_attributes":
        bad["attributes"] = ["[1, 2]", "{not json", '"text"'][i % 3]
    elif defect == "missing_field":
        bad["record_id"] = ""
    elif defect == "recorded_before_event":
        bad["recorded_date"] = (
            date.fromisoformat(row["event_date"]) - timedelta(days=1 + i % 9)
        ).isoformat()
    elif defect == "record_id_conflict":
        pass  # the caller gives it the record_id of a stored record with other content
    else:
        raise ValueError(defect)
    return bad


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(RECORD_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_entities_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Entity rows as a CSV of the canonical columns and `recorded_date` (missing ones empty)."""
    columns = [*ENTITY_COLUMNS, "recorded_date"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in columns})
    return path
