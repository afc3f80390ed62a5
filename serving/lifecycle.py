"""The append-only trail of credit repairs, objections and list entries (`lifecycle_log`).

Every step of a case (applied, filed, notified, listed, decided, …) is one row: when, which case
(`case_type` repair / objection / list and its id), which company, what, who, and the detail as
JSON. Database triggers refuse updates and deletes, so the trail is the history of each case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from serving.db import lifecycle_log


def step(case_type: str, case_id: int, uscc: str, action: str, actor: int | None,
         detail: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One step as a `lifecycle_log` row (for inserting many at once)."""
    return {
        "at": datetime.now(UTC), "case_type": case_type, "case_id": case_id, "uscc": uscc,
        "action": action, "actor": actor,
        "detail": json.dumps(detail, ensure_ascii=False, default=str),
    }  # fmt: skip


def log(con: Connection, case_type: str, case_id: int, uscc: str, action: str,
        actor: int | None, detail: dict[str, Any]) -> None:  # fmt: skip
    """Append one step in the caller's transaction."""
    con.execute(lifecycle_log.insert().values(**step(case_type, case_id, uscc, action, actor,
                                                     detail)))  # fmt: skip


def steps(con: Connection, case_type: str, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The steps of these cases in the order they were taken (`at`, `action`, `actor`,
    `detail`), by case id; queried in chunks of 900 ids (SQLite's parameter limit)."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    t = lifecycle_log.c
    for start in range(0, len(ids), 900):
        rows = con.execute(
            sa.select(t.case_id, t.at, t.action, t.actor, t.detail)
            .where(t.case_type == case_type, t.case_id.in_(ids[start : start + 900]))
            .order_by(t.id)
        ).all()  # fmt: skip
        for case_id, at, action, actor, detail in rows:
            out[case_id].append({"at": at.isoformat(), "action": action, "actor": actor,
                                 "detail": json.loads(detail)})  # fmt: skip
    return out
