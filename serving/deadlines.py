"""Re-dating the deadlines counted on an estimated calendar (`credsup deadlines redate`).

Deadlines are counted in working days (`records.workdays`). A count that runs into a year whose
holiday schedule is not published yet is an estimate: the statutory holidays by rule, no make-up
working weekends. Once the schedule is known (a release of the `holidays` package, or the
province's schedule file `CREDSUP_HOLIDAY_SCHEDULE`), every deadline still running is counted
again from the day it was counted from, and moved where the count now ends elsewhere:

- a spot-check plan and its tasks: from `start_date`, the plan's working days
  (`summary.working_days`, 20 by default), in `spot_check_plans.due_date` and each task's;
- an open objection: from `filed_on`, 5 working days (20 once extended), `objections.due_date`;
- a pending repair: from `applied_on`, 3 working days, `credit_repairs.due_date`;
- a notified list entry: from `proposed_on`, 5 working days, `list_entries.objection_due`.

A plan is counted again while it has a check without a result or its deadline is still marked
estimated; every task of a moved plan moves with it (a check made between the two deadlines is
late by one and not by the other). Each move is a step in `lifecycle_log` (`deadline_redated`,
from, to, what it was counted from and how many working days): a task's under `spot_check`, as
its cancellation is. A plan whose deadline stays where the estimate put it only loses its
`due_estimated` flag (`confirmed`). Closed cases keep their deadlines. Run it after a new
schedule is in force; running it again moves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from records import workdays
from serving import lifecycle
from serving.db import (
    credit_repairs,
    lifecycle_log,
    list_entries,
    objections,
    spot_check_plans,
    spot_check_tasks,
)
from serving.lists import OBJECTION_WORKING_DAYS
from serving.objections import DECISION_WORKING_DAYS as OBJECTION_DECISION_DAYS
from serving.objections import EXTENDED_WORKING_DAYS
from serving.repairs import DECISION_WORKING_DAYS as REPAIR_DECISION_DAYS

ACTION = "deadline_redated"


@dataclass(frozen=True)
class Case:
    """A kind of case whose deadline runs: its table, what the count starts from, when it is
    running, how many working days (from its row) and the column that holds the deadline."""

    case_type: str
    table: sa.Table
    counted_from: str
    running: Callable[[], sa.ColumnElement[bool]]
    working_days: Callable[[Any], int]
    due: str


CASES = (
    Case("objection", objections, "filed_on", lambda: objections.c.status == "open",
         lambda row: EXTENDED_WORKING_DAYS if row.extended else OBJECTION_DECISION_DAYS,
         "due_date"),
    Case("repair", credit_repairs, "applied_on", lambda: credit_repairs.c.status == "pending",
         lambda row: REPAIR_DECISION_DAYS, "due_date"),
    Case("list", list_entries, "proposed_on", lambda: list_entries.c.status == "notified",
         lambda row: OBJECTION_WORKING_DAYS, "objection_due"),
)  # fmt: skip
CASE_OF = {c.case_type: c for c in CASES}


@dataclass
class Move:
    case_type: str
    """`plan`, `objection`, `repair` or `list`."""
    case_id: str
    uscc: str | None
    """The company (none for a plan: its tasks' companies are in the log)."""
    counted_from: date
    working_days: int
    old: date
    new: date
    estimated: bool
    """Whether the new deadline is still an estimate."""
    tasks: int = 0
    """A plan's tasks moved with it."""


@dataclass
class Redated:
    moves: list[Move] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    """Cases counted again, by type."""
    skipped: list[str] = field(default_factory=list)
    """Plans whose count of working days was not kept (drawn before it was): left as they are."""
    confirmed: list[str] = field(default_factory=list)
    """Plans whose deadline stays where the estimate put it, now on a published calendar: only
    their `due_estimated` flag is cleared (no step per task)."""
    still_estimated: int = 0
    """Deadlines counted again that are still estimates (a schedule not yet known)."""
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "checked": self.checked,
            "moved": {t: sum(1 for m in self.moves if m.case_type == t) for t in self.checked},
            "still_estimated": self.still_estimated,
            "skipped": self.skipped,
            "confirmed": self.confirmed,
            "moves": [
                {
                    **m.__dict__,
                    "counted_from": m.counted_from.isoformat(),
                    "old": m.old.isoformat(),
                    "new": m.new.isoformat(),
                }
                for m in self.moves
            ],
        }


def redate(engine: Engine, *, dry_run: bool = False, actor: int | None = None) -> Redated:
    """Count every running deadline again on the calendar in force; move (and log) those that
    end elsewhere. One transaction: all of them move, or none."""
    out = Redated(dry_run=dry_run)
    with engine.begin() as con:
        _plans(con, out)
        for case in CASES:
            _cases(con, out, case)
        if dry_run:
            con.rollback()
            return out
        for move in out.moves:
            _apply(con, move, actor)
        if out.confirmed:
            con.execute(spot_check_plans.update().where(spot_check_plans.c.id.in_(out.confirmed))
                        .values(due_estimated=False))  # fmt: skip
    return out


def _recount(out: Redated, start: date, n: int) -> tuple[date, bool]:
    new = workdays.add_working_days(start, n)
    estimated = workdays.deadline_estimated(start, new)
    out.still_estimated += estimated
    return new, estimated


def _plans(con: Connection, out: Redated) -> None:
    p, t = spot_check_plans.c, spot_check_tasks.c
    open_plans = sa.select(t.plan_id).where(t.result.is_(None), t.cancelled_at.is_(None))
    rows = con.execute(
        sa.select(p.id, p.start_date, p.due_date, p.due_estimated, p.summary)
        .where(sa.or_(p.due_estimated.is_(True), p.id.in_(open_plans)))
        .order_by(p.seq)
    ).all()  # fmt: skip
    out.checked["plan"] = len(rows)
    for row in rows:
        n = json.loads(row.summary).get("working_days")
        if n is None:
            out.skipped.append(row.id)
            continue
        new, estimated = _recount(out, row.start_date, int(n))
        if new == row.due_date:
            if row.due_estimated and not estimated:  # the estimate was right: no longer one
                out.confirmed.append(row.id)
            continue
        tasks = con.execute(
            sa.select(sa.func.count()).select_from(spot_check_tasks).where(t.plan_id == row.id)
        ).scalar_one()
        out.moves.append(Move("plan", row.id, None, row.start_date, int(n), row.due_date, new,
                              estimated, int(tasks)))  # fmt: skip


def _cases(con: Connection, out: Redated, case: Case) -> None:
    table = case.table
    rows = con.execute(sa.select(table).where(case.running()).order_by(table.c.id)).all()
    out.checked[case.case_type] = len(rows)
    for row in rows:
        start, old = getattr(row, case.counted_from), getattr(row, case.due)
        if old is None:
            continue
        n = case.working_days(row)
        new, estimated = _recount(out, start, n)
        if new != old:
            out.moves.append(Move(case.case_type, str(row.id), row.uscc, start, n, old, new,
                                  estimated))  # fmt: skip


def _detail(move: Move) -> dict[str, Any]:
    return {"from": move.old, "to": move.new, "counted_from": move.counted_from,
            "working_days": move.working_days, "estimated": move.estimated,
            "schedule": workdays.schedule_path() or "holidays package"}  # fmt: skip


def _apply(con: Connection, move: Move, actor: int | None) -> None:
    if move.case_type == "plan":
        p, t = spot_check_plans.c, spot_check_tasks.c
        con.execute(spot_check_plans.update().where(p.id == move.case_id)
                    .values(due_date=move.new, due_estimated=move.estimated))  # fmt: skip
        tasks = con.execute(sa.select(t.id, t.uscc).where(t.plan_id == move.case_id)).all()
        con.execute(spot_check_tasks.update().where(t.plan_id == move.case_id)
                    .values(due_date=move.new))  # fmt: skip
        detail = {**_detail(move), "plan_id": move.case_id}
        rows = [lifecycle.step("spot_check", int(r.id), r.uscc, ACTION, actor, detail)
                for r in tasks]  # fmt: skip
        for start in range(0, len(rows), 5000):
            con.execute(lifecycle_log.insert(), rows[start : start + 5000])
        return
    case = CASE_OF[move.case_type]
    con.execute(case.table.update().where(case.table.c.id == int(move.case_id))
                .values({case.due: move.new}))  # fmt: skip
    assert move.uscc is not None
    lifecycle.log(con, move.case_type, int(move.case_id), move.uscc, ACTION, actor, _detail(move))
