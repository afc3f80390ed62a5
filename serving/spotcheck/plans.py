"""Spot-check plans in the serving database: the two pools, drawing, storing, replaying,
results (→ `spot_check` records in the store) and deadlines.

A plan is created in one transaction that first takes the plan counter's row lock, so plans are
drawn one at a time: each sees every earlier plan's tasks (yearly caps, the repeat rule, last
inspectors), and the departments' `spot_check` records in the store known on the draw day
(yearly caps, the repeat rule), and
concurrent requests neither lose nor duplicate a task. The plan stores its seed, its resolved
parameters, the pool and inspector snapshot (compressed Parquet) with their hashes, and the list
(canonical CSV bytes) with its SHA-256; `verify_plan` replays the draw from those and compares.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import time
import zipfile
import zlib
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import Connection, Engine

from records import publicity, workdays
from records import uscc as codes
from records.clock import CHINA
from records.events import withdraw_left
from records.ingest import ingest_table
from records.schema import ENTITY_TYPES
from records.store import Store
from records.workdays import china_today
from serving import lifecycle
from serving.db import (
    check_items,
    check_list_settings,
    company_history,
    inspector_conflicts,
    inspectors,
    lifecycle_log,
    plan_counter,
    spot_check_assignments,
    spot_check_plans,
    spot_check_tasks,
)
from serving.load import mask_name
from serving.spotcheck.draw import (
    SNAPSHOT_TABLES,
    DrawParams,
    PlanError,
    PopulationFilter,
    Snapshot,
    canonical_list,
    check_population,
    draw_plan,
    list_sha256,
    params_from_json,
    params_to_json,
    seed_commitment,
)
from serving.spotcheck.export import DEPARTMENT_NAMES, department_code, known_departments
from serving.spotcheck.items import (
    TIERS,
    CheckItem,
    NotInspectedReason,
    Outcome,
    Preset,
    Ratios,
    preset,
)

PUBLICATION_WORKING_DAYS = 20
"""Results are due, and published, within 20 working days (DOMAIN §7)."""
RESULTS: tuple[str, ...] = get_args(Outcome)


# ---- requests ---------------------------------------------------------------------------------


def _valid_codes(value: list[str], field: str) -> list[str]:
    """Unified social credit codes, checked, without repeats (sorted). A refusal names the code
    (the error's location names the `field`)."""
    out = []
    for code in value:
        try:
            out.append(codes.validate(code))
        except codes.InvalidUSCC as exc:
            raise ValueError(f"{code}: {exc.message}") from None
    return sorted(set(out))


class Population(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions: list[str] = Field(default_factory=list, max_length=500)
    industries: list[str] = Field(default_factory=list, max_length=500)
    entity_types: list[str] = Field(default_factory=list, max_length=10)
    tiers: list[Literal["A", "B", "C", "D"]] = Field(default_factory=list, max_length=4)

    @field_validator("regions")
    @classmethod
    def _digits(cls, value: list[str]) -> list[str]:
        for region in value:
            if not (region.isdigit() and 1 <= len(region) <= 6):
                raise ValueError(f"region {region!r} is not a division-code prefix (1–6 digits)")
        return value

    @field_validator("entity_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in ENTITY_TYPES]
        if unknown:
            raise ValueError(
                f"unknown entity type(s) {', '.join(map(repr, unknown))} "
                f"(one of: {', '.join(ENTITY_TYPES)})"
            )
        return value


class PartialRatios(BaseModel):
    model_config = ConfigDict(extra="forbid")

    A: float | None = Field(default=None, ge=0, le=1)
    B: float | None = Field(default=None, ge=0, le=1)
    C: float | None = Field(default=None, ge=0, le=1)
    D: float | None = Field(default=None, ge=0, le=1)

    def over(self, ratios: Ratios) -> Ratios:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return Ratios.model_validate({**ratios.model_dump(), **given})


class Triggered(BaseModel):
    """A company checked on a trigger (complaint, referral) for some items only."""

    model_config = ConfigDict(extra="forbid")

    uscc: str
    items: list[str] | None = Field(default=None, min_length=1, max_length=62)
    department: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("uscc")
    @classmethod
    def _code(cls, value: str) -> str:
        return _valid_codes([value], "uscc")[0]

    @model_validator(mode="after")
    def _one_scope(self) -> Triggered:
        if (self.items is None) == (self.department is None):
            raise ValueError(f"triggered {self.uscc}: give its items or its department (one)")
        return self


class PlanRequest(BaseModel):
    """What a regulator asks for (`POST /v1/spot-check-plans`, `credsup plan create`).

    Ratios in force, by precedence: `item_ratios` for an item, else `ratios`, else the named
    `ratio_preset`'s tier ratios, else the item's own ratios.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    departments: list[str] = Field(min_length=1, max_length=20)
    items: list[str] | None = Field(default=None, max_length=62)
    """Check-item ids (default: every active item of the departments)."""
    population: Population = Field(default_factory=Population)
    ratio_preset: str | None = None
    ratios: PartialRatios | None = None
    item_ratios: dict[str, PartialRatios] = Field(default_factory=dict)
    general_item_cap: float | None = Field(default=None, gt=0, le=1)
    department_yearly_cap: int | None = Field(default=None, ge=1, le=12)
    avoid_repeat_within_year: bool | None = None
    """Leave out of the random draw the companies inspected at random earlier this calendar year
    by any department, tier D excepted (DOMAIN §7; default: the check-item list's setting, else
    the preset's, the stricter holding, else on). False draws them like the others."""
    inspectors_per_task: int = Field(default=2, ge=2, le=6)
    snapshot_date: date | None = None
    """Tiers as loaded for this day (default: the latest load on or before `start_date`)."""
    start_date: date | None = None
    """First day of the checks (default: today); results are due 20 working days later. Not
    before the draw day (today, China time) unless `record_past`."""
    record_past: bool = False
    """The plan enters checks that began before the draw day (a back-fill: a plan drawn before
    an outage, a migration, a drill): a `start_date` before today is accepted, and its tasks
    are overdue at once where their deadline has passed without a result. The plan's summary
    and notice keep the day it was drawn (`drawn_on`)."""
    allow_duplicate: bool = False
    """Draw although a plan of the same name, start day and departments exists (refused
    otherwise, `duplicate_plan`: a plan drawn twice by mistake counts against every company's
    yearly limits)."""
    working_days: int = Field(default=PUBLICATION_WORKING_DAYS, ge=1, le=250)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    triggered: list[str | Triggered] = Field(default_factory=list, max_length=10_000)
    """Companies checked on a trigger: a plain code is checked on every applicable item of the
    plan (p = 1); `{"uscc": …, "items": […]}` or `{"uscc": …, "department": …}` on those only."""

    @field_validator("triggered")
    @classmethod
    def _codes(cls, value: list[str | Triggered]) -> list[str | Triggered]:
        plain = _valid_codes([v for v in value if isinstance(v, str)], "triggered")
        named = sorted((v for v in value if not isinstance(v, str)), key=lambda v: v.uscc)
        return [*plain, *named]

    @property
    def triggered_codes(self) -> list[str]:
        """The codes triggered for every item."""
        return [v for v in self.triggered if isinstance(v, str)]

    @model_validator(mode="after")
    def _unique_departments(self) -> PlanRequest:
        self.departments = sorted(set(self.departments))
        if self.items is not None:
            self.items = sorted(set(self.items))
        return self


class Findings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minor: int = Field(default=0, ge=0, le=10_000)
    major: int = Field(default=0, ge=0, le=10_000)
    serious: int = Field(default=0, ge=0, le=10_000)
    description: str = Field(default="", max_length=4000)


class TaskResult(BaseModel):
    """The result of one task: pass (未发现问题), problem (发现问题), serious (发现严重问题), or
    not_inspected (未能检查) with its `reason` (and a `note`, required for `other`): the task
    is closed, and the record is neither a pass nor a problem."""

    model_config = ConfigDict(extra="forbid")

    result: Outcome
    check_date: date
    findings: Findings = Field(default_factory=Findings)
    reason: NotInspectedReason | None = None
    """Why the check could not be made (not_inspected only)."""
    note: str = Field(default="", max_length=1000)
    """The inspector's note on a check not made (required with reason `other`; kept with the
    task and the record, never shown to the public: free text may name people)."""

    @model_validator(mode="after")
    def _consistent(self) -> TaskResult:
        f = self.findings
        if self.result == "not_inspected":
            if f.minor + f.major + f.serious:
                raise ValueError("a check not made has no findings")
            if self.reason is None:
                raise ValueError(
                    "a check not made needs its reason: unreachable, deregistered, "
                    "ceased_trading or other"
                )
            if self.reason == "other" and not self.note.strip():
                raise ValueError("a check not made for another reason needs a note saying why")
            return self
        if self.reason is not None or self.note:
            raise ValueError("a reason and a note are for a check not made (not_inspected) only")
        if self.result == "pass" and f.minor + f.major + f.serious:
            raise ValueError("a passed check has no findings")
        if self.result == "problem" and (f.serious or not (f.minor + f.major)):
            raise ValueError("a problem has minor or major findings and no serious one")
        if self.result == "serious" and not f.serious:
            raise ValueError("a serious problem has at least one serious finding")
        return self


# ---- the pools --------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _upsert(con: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    if not rows:
        return
    stmt: Any = (
        postgresql.insert(table) if con.dialect.name == "postgresql" else sqlite.insert(table)
    )
    update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update)
    for start in range(0, len(rows), 5000):
        con.execute(stmt, rows[start : start + 5000])


def save_items(engine: Engine, items: list[CheckItem]) -> int:
    """Insert or replace check items (the list is versioned by `updated_at`)."""
    now = _now()
    rows = [
        {"id": i.id, "department": i.department, "definition": i.model_dump_json(),
         "active": i.active, "updated_at": now}
        for i in items
    ]  # fmt: skip
    with engine.begin() as con:
        _upsert(con, check_items, rows, ["id"])
    return len(rows)


LIST_SETTINGS = ("name", "general_item_cap", "department_yearly_cap", "avoid_repeat_within_year")
"""What the check-item list keeps besides its items (`check_list_settings`)."""


def save_item_list(engine: Engine, chosen: Preset) -> int:
    """Insert or replace a list's items and keep its settings (`Preset.list_settings`): the
    department's yearly cap, the general-item cap and the repeat rule apply to every plan
    drawn from the list,
    until a list file that says otherwise is imported (a setting the file leaves out is
    cleared)."""
    n = save_items(engine, list(chosen.items))
    now = _now()
    rows = [
        {"key": key, "value": json.dumps(value, ensure_ascii=False), "updated_at": now}
        for key, value in chosen.list_settings().items()
    ]
    with engine.begin() as con:
        _upsert(con, check_list_settings, rows, ["key"])
    return n


def list_settings(con: Connection) -> dict[str, Any]:
    """The check-item list's settings (`LIST_SETTINGS`; None where not set)."""
    found = {
        k: json.loads(v)
        for k, v in con.execute(sa.select(check_list_settings.c.key, check_list_settings.c.value))
    }
    return {key: found.get(key) for key in LIST_SETTINGS}


def load_items(engine: Engine, department: str | None = None) -> list[CheckItem]:
    query = sa.select(check_items.c.definition).order_by(check_items.c.id)
    if department is not None:
        query = query.where(check_items.c.department == department)
    with engine.connect() as con:
        return [CheckItem.model_validate_json(d) for (d,) in con.execute(query)]


def import_preset_items(engine: Engine, name: str) -> Preset:
    chosen = preset(name)
    save_item_list(engine, chosen)
    return chosen


class InspectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inspector_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str | None = Field(default=None, max_length=128)
    department: str = Field(min_length=1, max_length=64)
    area: str = Field(default="", pattern=r"^\d{0,6}$")
    """Division-code prefix of the area covered ('' = the whole jurisdiction)."""
    items: list[str] = Field(default_factory=list, max_length=62)
    active: bool = True
    conflicts: list[str] = Field(default_factory=list, max_length=10_000)
    """Companies the inspector has declared a conflict with (回避)."""

    @field_validator("conflicts")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        return _valid_codes(value, "conflicts")


class InspectorsRefused(ValueError):
    """Inspectors that name no known department: refused whole, one line per problem (each
    with its row or position and the inspector's id)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} inspector{'s' if len(problems) > 1 else ''} refused"
        super().__init__(f"{count}:\n" + "\n".join(f"  {p}" for p in problems))


def _area_prefix(area: str) -> str:
    """A 6-digit code of a city (…00) or a province (…0000) as the prefix it stands for:
    companies' regions are counties (410102), which no such code is a prefix of."""
    if len(area) == 6 and area.endswith("0000"):
        return area[:2]
    if len(area) == 6 and area.endswith("00"):
        return area[:4]
    return area


def vet_inspectors(
    engine: Engine, pool: list[InspectorIn], labels: list[str] | None = None
) -> tuple[list[InspectorIn], list[str]]:
    """The pool as it is stored, and warnings (one line each): the department as its code
    (`export.department_code`: a name or a code in any case), a city's or province's 6-digit
    area code as its prefix, item ids matched to the check-item list's (case aside).

    Refused (`InspectorsRefused`): a department no code or name stands for. Warned: an item not
    in the check-item list or another department's (the inspector is never drawn for it), an
    active inspector without items, an area code read as a prefix. `labels` name each
    inspector's row (default `inspectors[k]`, its place in the request)."""
    items = {i.id: i for i in load_items(engine)}
    folded: dict[str, list[str]] = {}
    for item_id in items:
        folded.setdefault(item_id.casefold(), []).append(item_id)
    known = {i.department for i in items.values()}
    problems: list[str] = []
    warnings: list[str] = []
    out: list[InspectorIn] = []
    for k, p in enumerate(pool):
        where = f"{labels[k] if labels else f'inspectors[{k}]'} ({p.inspector_id})"
        department = department_code(p.department, known)
        if department is None:
            problems.append(
                f"{where}: unknown department {p.department!r}: give a code or Chinese name of "
                f"one (known: {known_departments(known)})"
            )
            continue
        area = _area_prefix(p.area)
        if area != p.area:
            level = "province" if len(area) == 2 else "city"
            warnings.append(
                f"{where}: area {p.area} is a {level}'s code, read as the prefix {area} (the "
                "companies' regions are counties)"
            )
        chosen: list[str] = []
        for given in p.items:
            item_id = given
            if given not in items and len(folded.get(given.casefold(), [])) == 1:
                item_id = folded[given.casefold()][0]
                warnings.append(f"{where}: item {given} read as {item_id}")
            if item_id not in items:
                warnings.append(
                    f"{where}: item {given} is not in the check-item list: never drawn for it"
                )
            elif items[item_id].department != department:
                warnings.append(
                    f"{where}: item {item_id} is {items[item_id].department}'s, not "
                    f"{department}'s: never drawn for it"
                )
            chosen.append(item_id)
        if p.active and not chosen:
            warnings.append(f"{where}: no check items: never drawn")
        out.append(p.model_copy(
            update={"department": department, "area": area, "items": list(dict.fromkeys(chosen))}
        ))  # fmt: skip
    if problems:
        raise InspectorsRefused(problems)
    return out, warnings


def save_inspectors(
    engine: Engine,
    pool: list[InspectorIn],
    labels: list[str] | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    """Insert or replace inspectors, checked and normalised first (`vet_inspectors`), and add
    their declared conflicts (never removed here). With `replace` the pool is each department's
    roster: the department's inspectors absent from it become inactive (never deleted: plans
    and their replays refer to them). Returns the counts, the ids made inactive and the
    warnings."""
    pool, warnings = vet_inspectors(engine, pool, labels)
    now = _now()
    rows = [
        {"id": p.inspector_id, "name": p.name, "department": p.department, "area": p.area,
         "items": ";".join(sorted(set(p.items))), "active": p.active, "updated_at": now}
        for p in pool
    ]  # fmt: skip
    pairs = {
        (p.inspector_id, c): {"inspector_id": p.inspector_id, "uscc": c, "reason": "declared",
                              "declared_at": now}
        for p in pool for c in p.conflicts
    }  # fmt: skip
    deactivated: list[str] = []
    with engine.begin() as con:
        if replace and pool:
            absent = (
                inspectors.c.department.in_(sorted({p.department for p in pool})),
                inspectors.c.id.not_in([p.inspector_id for p in pool]),
                inspectors.c.active.is_(True),
            )
            deactivated = list(
                con.execute(sa.select(inspectors.c.id).where(*absent).order_by(inspectors.c.id))
                .scalars()
            )  # fmt: skip
            con.execute(inspectors.update().where(*absent).values(active=False, updated_at=now))
        _upsert(con, inspectors, rows, ["id"])
        _upsert(con, inspector_conflicts, list(pairs.values()), ["inspector_id", "uscc"])
    return {
        "inspectors": len(rows), "conflicts": len(pairs), "deactivated": deactivated,
        "warnings": warnings,
    }  # fmt: skip


def _as_department(given: str, known: set[str]) -> str | None:
    """A department as its code: a built-in code (any case) or Chinese name first, so that a
    name once stored as a code (an inspector posted with department 消防救援机构 before names
    were mapped) still means its department; then a code the database has."""
    mapped = department_code(given)
    if mapped is not None:
        return mapped
    return given if given in known else department_code(given, known)


def department_filter(con: Connection, given: str) -> str:
    """A department asked for in a filter, as its code: a code (any case) or a Chinese name
    (`export.department_code`) of a known department, or a department the check items,
    inspectors or tasks have. LookupError (naming the known ones) if it names none: a filter
    by a department that does not exist would answer an empty list as if it were true."""
    known = {
        d for table in (check_items, inspectors, spot_check_tasks)
        for (d,) in con.execute(sa.select(table.c.department).distinct())
    }  # fmt: skip
    code = _as_department(given, known)
    if code is None:
        codes = {d for d in known if department_code(d) in (None, d)}  # not names stored as codes
        raise LookupError(
            f"unknown department {given!r}: give a code or Chinese name of one (known: "
            f"{known_departments(codes)})"
        )
    return code


def inspector_filter(con: Connection, given: str) -> str:
    """An inspector asked for in a filter, checked to be in the pool (LookupError if not: an
    unknown id would answer an empty list as if it were true)."""
    found = con.execute(sa.select(inspectors.c.id).where(inspectors.c.id == given)).scalar()
    if found is None:
        raise LookupError(f"unknown inspector {given!r}: no inspector of the pool has that id")
    return str(found)


def inspector_pool(con: Connection, department: str | None = None) -> list[dict[str, Any]]:
    """The inspectors (of one department): id, name, department, area, items, active and how
    many declared conflicts each has."""
    declared = (
        sa.select(inspector_conflicts.c.inspector_id, sa.func.count().label("n"))
        .group_by(inspector_conflicts.c.inspector_id)
        .subquery()
    )
    query = (
        sa.select(inspectors, sa.func.coalesce(declared.c.n, 0).label("conflicts"))
        .join(declared, declared.c.inspector_id == inspectors.c.id, isouter=True)
        .order_by(inspectors.c.department, inspectors.c.id)
    )
    if department is not None:
        query = query.where(inspectors.c.department == department)
    return [
        {"inspector_id": r["id"], "name": r["name"], "department": r["department"],
         "area": r["area"], "items": [i for i in r["items"].split(";") if i],
         "active": bool(r["active"]), "conflicts": int(r["conflicts"])}
        for r in con.execute(query).mappings()
    ]  # fmt: skip


# ---- resolving a request ----------------------------------------------------------------------


def resolve(engine: Engine, request: PlanRequest) -> DrawParams:
    """The request's items with the ratios in force; refuses unknown or foreign items."""
    stored = {i.id: i for i in load_items(engine)}
    with engine.connect() as con:
        staffed = {d for (d,) in con.execute(sa.select(inspectors.c.department).distinct())}
        settings = list_settings(con)
    known = set(DEPARTMENT_NAMES) | {i.department for i in stored.values()} | staffed
    strangers = [d for d in request.departments if d not in known]
    if strangers:
        raise PlanError(
            "unknown_department",
            f"unknown department(s) {', '.join(strangers)}: no check item, inspector or "
            f"department name has that code (known: {', '.join(sorted(known))})",
        )
    if request.items is None:
        chosen = [i for i in stored.values() if i.active and i.department in request.departments]
        # every department asked for takes part: one without active items is not dropped
        idle = [d for d in request.departments if not any(i.department == d for i in chosen)]
        if idle:
            raise PlanError(
                "no_items",
                f"no active check items for {', '.join(idle)}: import a preset "
                "(`credsup plan items import --preset national-default`) or PUT /v1/check-items",
            )
    else:
        unknown = [i for i in request.items if i not in stored]
        if unknown:
            raise PlanError("unknown_item", f"unknown check items: {', '.join(unknown)}")
        chosen = [stored[i] for i in request.items]
        foreign = [i.id for i in chosen if i.department not in request.departments]
        if foreign:
            raise PlanError(
                "item_department",
                f"items {', '.join(foreign)} belong to departments not in the plan",
            )
        inactive = [i.id for i in chosen if not i.active]
        if inactive:
            raise PlanError("inactive_item", f"items no longer active: {', '.join(inactive)}")
    unknown_overrides = sorted(set(request.item_ratios) - {i.id for i in chosen})
    if unknown_overrides:
        raise PlanError(
            "unknown_item", f"item_ratios for items not in the plan: {', '.join(unknown_overrides)}"
        )
    base: Preset | None = None
    if request.ratio_preset is not None:
        try:
            base = preset(request.ratio_preset)
        except KeyError as exc:
            raise PlanError("unknown_preset", str(exc.args[0])) from None
    items = []
    for item in chosen:
        update: dict[str, Any] = {}
        ratios = item.ratios
        if base is not None:
            ratios = base.ratios
        if request.ratios is not None:
            ratios = request.ratios.over(ratios)
        if item.id in request.item_ratios:
            ratios = request.item_ratios[item.id].over(ratios)
        update["ratios"] = ratios
        # a general item's cap: the stricter of its own, the list's, the preset's and the
        # request's (a month's choice of ratios never loosens an item's own stricter cap)
        caps: dict[str, float] = {}
        if item.kind == "general":
            given = (
                ("its max_ratio", item.max_ratio),
                ("the check-item list's general_item_cap", settings["general_item_cap"]),
                (f"preset {request.ratio_preset}'s general_item_cap",
                 base.general_item_cap if base is not None else None),
                ("the request's general_item_cap", request.general_item_cap),
            )  # fmt: skip
            caps = {name: cap for name, cap in given if cap is not None}
        if caps:
            update["max_ratio"] = min(caps.values())
        merged = item.model_copy(update=update)
        if merged.max_ratio is not None and merged.floor > merged.max_ratio:
            # lowering the floor to the cap would quietly check fewer than the floor requires
            cap_from = next(name for name, cap in caps.items() if cap == merged.max_ratio)
            raise PlanError(
                "cap_below_floor",
                f"item {item.id} must cover at least {merged.floor:g} of its eligible companies "
                f"(its floor), but {cap_from} is {merged.max_ratio:g}: give a general_item_cap "
                f"of at least {merged.floor:g}, or leave {item.id} out of the plan",
            )
        items.append(CheckItem.model_validate(merged.model_dump()))
    # the list's own yearly cap applies; a preset's does not loosen it (the stricter holds);
    # a request's, given for this plan, is what the plan asks
    yearly_given = (
        settings["department_yearly_cap"], base.department_yearly_cap if base else None
    )  # fmt: skip
    yearly = [int(c) for c in yearly_given if c is not None]
    cap = request.department_yearly_cap or min(yearly, default=2)
    # the repeat rule likewise: on if the list or the preset says so (or neither says), unless
    # the request, for this plan, says otherwise
    repeat_given = (
        settings["avoid_repeat_within_year"], base.avoid_repeat_within_year if base else None
    )  # fmt: skip
    stated = [bool(v) for v in repeat_given if v is not None]
    avoid_repeat = (
        request.avoid_repeat_within_year
        if request.avoid_repeat_within_year is not None
        else any(stated) or not stated
    )
    return DrawParams(
        items=tuple(sorted(items, key=lambda i: i.id)),
        population=PopulationFilter(
            regions=tuple(request.population.regions),
            industries=tuple(request.population.industries),
            entity_types=tuple(request.population.entity_types),
            tiers=tuple(request.population.tiers),
        ),
        department_yearly_cap=cap,
        avoid_repeat_within_year=avoid_repeat,
        inspectors_per_task=request.inspectors_per_task,
        triggered=tuple(request.triggered_codes),
        triggered_items=_triggered_items(request, items),
    )


def _triggered_items(
    request: PlanRequest, items: list[CheckItem]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each company triggered for named items (or a department's items of the plan), checked
    to be items of the plan; merged per company."""
    by_company: dict[str, set[str]] = {}
    plan_items = {i.id: i for i in items}
    for entry in request.triggered:
        if isinstance(entry, str):
            continue
        if entry.items is not None:
            strangers = [i for i in entry.items if i not in plan_items]
            if strangers:
                raise PlanError(
                    "unknown_item",
                    f"triggered {entry.uscc}: items {', '.join(strangers)} are not in the plan "
                    f"(its items: {', '.join(sorted(plan_items))})",
                )
            chosen = set(entry.items)
        else:
            chosen = {i.id for i in items if i.department == entry.department}
            if not chosen:
                raise PlanError(
                    "item_department",
                    f"triggered {entry.uscc}: the plan has no item of department "
                    f"{entry.department}",
                )
        by_company.setdefault(entry.uscc, set()).update(chosen)
    return tuple((code, tuple(sorted(ids))) for code, ids in sorted(by_company.items()))


# ---- snapshots --------------------------------------------------------------------------------


def _frame(con: Connection, query: Any, columns: list[str]) -> pd.DataFrame:
    """A query's rows as a frame, fetched through the driver (SQLAlchemy's row objects cost 10 of
    the 14 s a snapshot of 1 M companies took). Only for text and number columns."""
    sql = str(query.compile(dialect=con.dialect, compile_kwargs={"literal_binds": True}))
    cursor = con.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return pd.DataFrame(rows, columns=columns)


def _typed_frame(con: Connection, query: Any, columns: list[str]) -> pd.DataFrame:
    """A query's rows as a frame with SQLAlchemy's types (dates as dates on SQLite too)."""
    return pd.DataFrame([tuple(r) for r in con.execute(query)], columns=columns)


def latest_load(con: Connection, on_or_before: date) -> date | None:
    """The latest batch load on or before the day (a one-company re-score is no pool)."""
    return con.execute(
        sa.select(sa.func.max(company_history.c.as_of)).where(
            company_history.c.as_of <= on_or_before,
            company_history.c.tier.is_not(None),
            company_history.c.source == "batch",
        )
    ).scalar_one_or_none()


def take_snapshot(
    con: Connection,
    params: DrawParams,
    snapshot_date: date,
    start_date: date,
    recorded: pd.DataFrame | None = None,
) -> tuple[Snapshot, pd.DataFrame]:
    """The pools for a plan: companies tiered on `snapshot_date`, inspections this year,
    inspectors of the plan's departments, declared conflicts and last inspectors.

    Inspections this year (the calendar year of `start_date`) are the tasks of earlier plans
    that fall in it (a task with a result in the year of its check date; an open task in every
    year its span from the plan's start to the task's due date touches, so a December plan's
    January checks count in the new year) and the `recorded` inspections
    (`store_inspections`: the departments' `spot_check` records of that year known on the draw
    day), by the record's department and check item, less the results posted through a plan
    of this database (already counted as its tasks). Of those, the inspections drawn at random
    (a task's `basis`; a record's `attributes.basis`, random when it has none, as training reads
    it), per company whatever the department, are `random_checks` (the repeat rule): a plan's
    tasks are one inspection, a department's records one per visit. A `not_inspected` result
    counts, as for the caps (the department went); a cancelled task does not (no visit).
    Last inspectors: for each company and
    department of the plan, the inspectors of that department's latest plan task at the
    company.

    Returns the snapshot and the companies' names, regions and types (for the task rows)."""
    frame = _frame(
        con,
        sa.select(
            company_history.c.uscc, company_history.c.tier, company_history.c.region,
            company_history.c.industry, company_history.c.entity_type, company_history.c.name,
        )
        .where(company_history.c.as_of == snapshot_date, company_history.c.tier.is_not(None))
        .order_by(company_history.c.uscc),
        ["uscc", "tier", "region", "industry", "entity_type", "name"],
    )  # fmt: skip
    year_start, year_end = date(start_date.year, 1, 1), date(start_date.year, 12, 31)
    task = spot_check_tasks.c
    in_year = (
        sa.select(task.uscc, task.department, task.item_id, task.plan_id, task.basis)
        .join(spot_check_plans, spot_check_plans.c.id == task.plan_id)
        .where(task.cancelled_at.is_(None))  # a cancelled check is no inspection
        .where(sa.or_(
            sa.and_(task.result.is_not(None), task.check_date.between(year_start, year_end)),
            sa.and_(task.result.is_(None), spot_check_plans.c.start_date <= year_end,
                    task.due_date >= year_start),
        ))
        .subquery()
    )  # fmt: skip
    dept_checks = _frame(
        con,
            sa.select(in_year.c.uscc, in_year.c.department,
                      sa.func.count(sa.distinct(in_year.c.plan_id)))
            .group_by(in_year.c.uscc, in_year.c.department),
        ["uscc", "department", "n"],
    )  # fmt: skip
    item_checks = _frame(
        con,
            sa.select(in_year.c.uscc, in_year.c.item_id, sa.func.count())
            .group_by(in_year.c.uscc, in_year.c.item_id),
        ["uscc", "item_id", "n"],
    )  # fmt: skip
    # the repeat rule's inspections: drawn at random, by any department, one per plan
    random_checks = _frame(
        con,
            sa.select(in_year.c.uscc, sa.func.count(sa.distinct(in_year.c.plan_id)))
            .where(in_year.c.basis == "random")
            .group_by(in_year.c.uscc),
        ["uscc", "n"],
    )  # fmt: skip
    if recorded is not None:
        # a result posted through a plan here is its task: `attributes.plan_id` one of our
        # plans, or a record id `<plan id>-T<task id>` as `post_result` writes it
        ours = set(con.execute(sa.select(spot_check_plans.c.id)).scalars())
        task_of = recorded["record_id"].str.rsplit("-T", n=1).str[0]
        recorded = recorded[~(recorded["plan_id"].isin(ours) | task_of.isin(ours))]
        visits = recorded.drop_duplicates(["uscc", "department", "visit"])
        dept_checks = _add_counts(dept_checks, visits, ["uscc", "department"])
        checked = recorded[recorded["item_id"].notna()]
        item_checks = _add_counts(
            item_checks, checked.drop_duplicates(["uscc", "item_id", "visit"]), ["uscc", "item_id"]
        )
        # a record without a `basis` is a random check, as training reads it
        basis = (
            recorded["basis"] if "basis" in recorded.columns else pd.Series(None, recorded.index)
        )
        drawn = recorded[basis.isna() | (basis == "random")]
        random_checks = _add_counts(
            random_checks, drawn.drop_duplicates(["uscc", "department", "visit"]), ["uscc"]
        )
    depts = sorted({i.department for i in params.items})
    pool = _frame(
        con,
            sa.select(inspectors.c.id, inspectors.c.department, inspectors.c.area,
                      inspectors.c["items"], inspectors.c.active)
            .where(inspectors.c.department.in_(depts)),
        ["inspector_id", "department", "area", "items", "active"],
    )  # fmt: skip
    declared = _frame(
        con,
            sa.select(inspector_conflicts.c.inspector_id, inspector_conflicts.c.uscc)
            .join(inspectors, inspectors.c.id == inspector_conflicts.c.inspector_id)
            .where(inspectors.c.department.in_(depts)),
        ["inspector_id", "uscc"],
    )  # fmt: skip
    # 回避: each department's previous inspection of the company (not another department's)
    # (a window, not a join on a grouped subquery: SQLite planned that join through the
    # department index, quadratic in the tasks: 0.3 s more per plan already)
    t = spot_check_tasks.c
    ranked = (
        sa.select(t.id, t.uscc, t.plan_seq,
                  sa.func.max(t.plan_seq).over(partition_by=(t.uscc, t.department))
                  .label("last_seq"))
        .where(t.department.in_(depts), t.cancelled_at.is_(None))
        .subquery()
    )  # fmt: skip
    last = _frame(
        con,
            sa.select(spot_check_assignments.c.inspector_id, ranked.c.uscc)
            .join(ranked, ranked.c.id == spot_check_assignments.c.task_id)
            .where(ranked.c.plan_seq == ranked.c.last_seq),
        ["inspector_id", "uscc"],
    )  # fmt: skip
    pool_ids = set(pool["inspector_id"])
    last = last[last["inspector_id"].isin(pool_ids)]
    conflicts = pd.concat([declared, last]).drop_duplicates()
    snapshot = Snapshot(
        {
            "companies": frame.drop(columns=["name"]),
            "department_checks": dept_checks,
            "item_checks": item_checks,
            "random_checks": random_checks,
            "inspectors": pool,
            "conflicts": conflicts,
        }
    )
    return snapshot, frame[["uscc", "name", "region", "entity_type"]]


def store_inspections(store: Store, year: int, known_on: date) -> pd.DataFrame:
    """The inspections in the store: `spot_check` records checked in `year` and known on
    `known_on` (recorded by then, not withdrawn by then), as (record_id, uscc, department =
    `source_dept`, item_id = `attributes.check_item`, plan_id = `attributes.plan_id`, visit,
    basis = `attributes.basis`: random, triggered or None).
    A visit is one inspection of the company by the department: its plan id, else its check day.
    Read before a plan's transaction (DuckDB over Parquet: not while holding the plan lock);
    `take_snapshot` leaves out the results posted through this database's plans."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    columns = ["record_id", "uscc", "department", "item_id", "plan_id", "visit", "basis"]
    with store.connect() as duck:
        found = duck.execute(
            """
            SELECT record_id, uscc, source_dept,
                   json_extract_string(attributes, '$.check_item'),
                   json_extract_string(attributes, '$.plan_id'), CAST(event_date AS VARCHAR),
                   json_extract_string(attributes, '$.basis')
            FROM records
            WHERE category = 'spot_check' AND event_date BETWEEN ? AND ?
              AND recorded_date <= ? AND source_dept IS NOT NULL
              AND record_id NOT IN (
                  SELECT record_id FROM events WHERE event_type = 'withdrawal'
                  AND greatest(effective_date, recorded_date) <= ?)
            """,
            [first, last, known_on, known_on],
        ).fetchall()
    frame = pd.DataFrame(found, columns=columns).drop_duplicates("record_id")
    frame["visit"] = frame["plan_id"].where(frame["plan_id"].notna(), "day " + frame["visit"])
    return frame.reset_index(drop=True)


def _add_counts(counts: pd.DataFrame, rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`counts` (keys, n) plus one for each of `rows`."""
    more = rows.groupby(keys).size().rename("n").reset_index()
    both = pd.concat([counts.astype({"n": "int64"}), more], ignore_index=True)
    summed: pd.DataFrame = both.groupby(keys)["n"].sum().reset_index()
    return summed


def snapshot_to_bytes(snapshot: Snapshot) -> bytes:
    """The snapshot as a zip of Parquet files, one per table."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in SNAPSHOT_TABLES:
            buf = io.BytesIO()
            table = pa.Table.from_pandas(snapshot.tables[name], preserve_index=False)
            pq.write_table(table, buf, compression="zstd")
            archive.writestr(f"{name}.parquet", buf.getvalue())
    return sink.getvalue()


def snapshot_from_bytes(data: bytes) -> Snapshot:
    """A stored snapshot; a table it lacks (`random_checks` before draw version 4) is empty."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        stored = set(archive.namelist())
        tables = {
            name: pq.read_table(io.BytesIO(archive.read(f"{name}.parquet"))).to_pandas()
            for name in SNAPSHOT_TABLES
            if f"{name}.parquet" in stored
        }
    return Snapshot(tables)


# ---- creating a plan --------------------------------------------------------------------------


class PlanCreated(BaseModel):
    """What `create_plan` answers (and `POST /v1/spot-check-plans`)."""

    plan_id: str
    name: str
    seed: str
    start_date: date
    due_date: date
    due_estimated: bool
    snapshot_date: date
    tasks: int
    visits: int
    pool_hash: str
    inspector_hash: str
    list_sha256: str
    summary: dict[str, Any]
    seconds: float


def refuse_caller_seed(request: PlanRequest, policy: str) -> None:
    """A seed chosen by the caller is refused unless the deployment allows it
    (`Settings.caller_seeds`): whoever chooses the seed and can read the tiers could try seeds
    for a list they like before drawing. The API and the command line apply it; `create_plan`
    itself takes any seed (simulations, tests, replays)."""
    if request.seed is not None and policy != "allow":
        raise PlanError(
            "caller_seed",
            "this service draws the seeds of its plans (CREDSUP_CALLER_SEEDS=refuse): leave out "
            "the seed. Whoever chooses a seed could try seeds against the tiers before drawing; a "
            "province that draws its seed in public sets CREDSUP_CALLER_SEEDS=allow, and the "
            "plan's notice then says the seed was the caller's",
        )


def create_plan(
    engine: Engine,
    request: PlanRequest,
    created_by: int | None = None,
    today: date | None = None,
    store: Store | None = None,
) -> PlanCreated:
    """Draw and store a plan (one transaction; plans are drawn one at a time).

    With the `store`, the yearly caps also count the departments' `spot_check` records known
    on `today` (the draw day); the counts are stored in the plan's snapshot, so records that
    arrive later leave its replay unchanged. Without it, only plan tasks count."""
    started = time.perf_counter()
    today = today or china_today()
    request = _department_codes(engine, request)
    params = resolve(engine, request)
    start = request.start_date or today
    if request.snapshot_date is not None and request.snapshot_date > start:
        raise PlanError(
            "snapshot_after_start",
            f"snapshot_date {request.snapshot_date} is after start_date {start}: a plan draws from "
            f"the tiers known when its checks begin; give a snapshot on or before {start}",
        )
    seed = request.seed if request.seed is not None else secrets.randbits(63)
    salt = secrets.token_hex(16)  # the notice commits to the seed until the checks are over
    try:
        due = workdays.add_working_days(start, request.working_days)
    except ValueError:
        raise PlanError(
            "no_calendar",
            f"a plan starting {start} is due {request.working_days} working days later, outside "
            f"the working-day calendar ({workdays.FIRST_YEAR}-01-01 to {workdays.LAST_YEAR}-12-31)"
            ": choose a start date whose deadline falls within it",
        ) from None
    if start < today and not request.record_past:
        raise PlanError("start_in_past", _start_in_past(start, due, today))
    estimated = workdays.deadline_estimated(start, due)
    recorded = store_inspections(store, start.year, today) if store is not None else None
    with engine.begin() as con:
        # the counter's row lock serialises plan creation (PostgreSQL row lock, SQLite write lock)
        con.execute(
            plan_counter.update().where(plan_counter.c.name == "plans")
            .values(n=plan_counter.c.n + 1)
        )  # fmt: skip
        seq = con.execute(
            sa.select(plan_counter.c.n).where(plan_counter.c.name == "plans")
        ).scalar_one()
        if not request.allow_duplicate:
            _refuse_duplicate(con, request, start)
        snapshot_date = request.snapshot_date or latest_load(con, start)
        if snapshot_date is None:
            raise PlanError(
                "no_tiers", f"no tiers loaded on or before {start}: run `credsup load` first"
            )
        snapshot, facts = take_snapshot(con, params, snapshot_date, start, recorded)
        if snapshot.tables["companies"].empty:
            raise PlanError("no_tiers", f"no companies with a tier loaded for {snapshot_date}")
        check_population(params, snapshot)
        drawn = draw_plan(params, snapshot, seed)
        listing = drawn.canonical_list()
        plan_id = _next_plan_id(con, start.year)
        summary = {
            "items": [asdict(s) for s in drawn.items],
            "companies_in_pool": len(snapshot.tables["companies"]),
            # DOMAIN §7: no repeat within the year unless tier D or triggered (per item:
            # `excluded_repeat`; here the companies left out of at least one item's draw)
            "repeat_rule": {
                "avoid_repeat_within_year": params.avoid_repeat_within_year,
                "companies_kept_out": drawn.excluded_repeat,
            },
            "inspectors_in_pool": int(snapshot.tables["inspectors"]["active"].sum()),
            "workload": {
                "inspectors": len(drawn.workload),
                "min": min(drawn.workload.values(), default=0),
                "max": max(drawn.workload.values(), default=0),
            },
            "drawn_with": library_versions(),
            # the count the deadline is made of: `credsup deadlines redate` counts it again
            # once the holiday schedule of an estimated year is published
            "working_days": request.working_days,
            # a back-filled plan (`record_past`) was drawn after its checks began: kept in sight
            "drawn_on": today.isoformat(),
            "back_dated": start < today,
            "seed": {
                "source": "caller" if request.seed is not None else "service",
                "salt": salt,
                "sha256": seed_commitment(seed, salt),
            },
        }
        visits = int(drawn.tasks["visit_no"].max()) if len(drawn.tasks) else 0
        con.execute(
            spot_check_plans.insert().values(
                id=plan_id, seq=seq, name=request.name, created_at=_now(), created_by=created_by,
                start_date=start, due_date=due,
                due_estimated=estimated,
                snapshot_date=snapshot_date, seed=str(seed), params=params_to_json(params),
                summary=json.dumps(summary, ensure_ascii=False), pool_hash=snapshot.pool_hash,
                inspector_hash=snapshot.inspector_hash, list_sha256=list_sha256(listing),
                list_blob=zlib.compress(listing, 6), snapshot_blob=snapshot_to_bytes(snapshot),
                tasks=len(drawn.tasks), visits=visits,
            )
        )  # fmt: skip
        _insert_tasks(con, plan_id, seq, due, drawn.tasks, facts)
    return PlanCreated(
        plan_id=plan_id, name=request.name, seed=str(seed), start_date=start, due_date=due,
        due_estimated=estimated, snapshot_date=snapshot_date,
        tasks=len(drawn.tasks), visits=visits, pool_hash=snapshot.pool_hash,
        inspector_hash=snapshot.inspector_hash, list_sha256=list_sha256(listing),
        summary=summary, seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip


def _next_plan_id(con: Connection, year: int) -> str:
    """`SJ-<year>-<n>`, n numbering the plans of the start's year from 1 (called under the plan
    lock). Ids were once numbered by one counter across years (`seq`, which still orders the
    plans): n follows the year's highest number, so no id is taken twice."""
    prefix = f"SJ-{year}-"
    taken = con.execute(
        sa.select(spot_check_plans.c.id).where(spot_check_plans.c.id.startswith(prefix))
    ).scalars()  # fmt: skip
    numbers = [int(i[len(prefix) :]) for i in taken if i[len(prefix) :].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1:05d}"


def _department_codes(engine: Engine, request: PlanRequest) -> PlanRequest:
    """The request with its departments (and triggered entries' departments) as codes: a code
    in any case or a Chinese name (`export.department_code`); one that names none is left for
    `resolve` to refuse (`unknown_department`)."""
    with engine.connect() as con:
        known = {
            d for table in (check_items, inspectors)
            for (d,) in con.execute(sa.select(table.c.department).distinct())
        }  # fmt: skip

    def code(given: str) -> str:
        return _as_department(given, known) or given

    triggered = [
        t if isinstance(t, str) or t.department is None
        else t.model_copy(update={"department": code(t.department)})
        for t in request.triggered
    ]  # fmt: skip
    departments = sorted({code(d) for d in request.departments})
    return request.model_copy(update={"departments": departments, "triggered": triggered})


def _refuse_duplicate(con: Connection, request: PlanRequest, start: date) -> None:
    """Refuse a second plan of the same name and start day for the same departments (taken
    under the plan lock: two requests at once cannot both pass)."""
    same = con.execute(
        sa.select(spot_check_plans.c.id, spot_check_plans.c.params)
        .where(spot_check_plans.c.name == request.name, spot_check_plans.c.start_date == start)
        .order_by(spot_check_plans.c.seq)
    ).all()  # fmt: skip
    for plan_id, params in same:
        departments = sorted({i["department"] for i in json.loads(params)["items"]})
        if departments == request.departments:
            raise PlanError(
                "duplicate_plan",
                f"plan {plan_id} already has the name {request.name!r}, start {start} and "
                f"departments {', '.join(departments)}: cancel its tasks (credsup plan cancel "
                f"{plan_id} --reason …) or, if a second plan is meant, set allow_duplicate "
                "(credsup plan create --allow-duplicate)",
            )


def _start_in_past(start: date, due: date, today: date) -> str:
    """Why a plan starting before its draw day is refused: a draw after the checks began did
    not select them, and its deadline is shorter than the rule's or already over."""
    if due < today:
        deadline = f"its results would be due {due}, already past: every task overdue at once"
    else:
        left = workdays.working_days_between(today, due)
        deadline = f"its results would be due {due}, {left} working days from today"
    return (
        f"start_date {start} is before today ({today}, China time): a plan is drawn before its "
        f"checks begin, and {deadline}. Start on or after {today}, or, to enter a plan whose "
        "checks already began, set record_past (credsup plan create --record-past)"
    )


def _insert_tasks(
    con: Connection, plan_id: str, seq: int, due: date, tasks: pd.DataFrame, facts: pd.DataFrame
) -> None:
    if tasks.empty:
        return
    first = (con.execute(sa.select(sa.func.max(spot_check_tasks.c.id))).scalar_one() or 0) + 1
    frame = tasks.merge(facts, on="uscc", how="left", validate="many_to_one")
    frame["id"] = np.arange(first, first + len(frame), dtype=np.int64)
    frame["plan_id"], frame["plan_seq"], frame["due_date"] = plan_id, seq, due
    frame = frame.rename(columns={"name": "company_name"})
    columns = [c.name for c in spot_check_tasks.columns if c.name in frame.columns]
    values = [_plain(frame[c]) for c in columns]
    _bulk_insert(con, spot_check_tasks, columns, list(zip(*values, strict=True)))
    members = [str(team).split(";") for team in frame["inspectors"].tolist()]
    task_ids = np.repeat(frame["id"].to_numpy(), [len(team) for team in members])
    inspector_ids = [m for team in members for m in team]
    _bulk_insert(con, spot_check_assignments, ["task_id", "inspector_id"],
                 list(zip(task_ids.tolist(), inspector_ids, strict=True)))  # fmt: skip


def _plain(values: pd.Series) -> list[Any]:
    """A column as Python values (None for missing) that both drivers take."""
    if pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_float_dtype(values.dtype):
        return values.astype(object).where(values.notna(), None).tolist()
    return [None if v is None or v is pd.NA or v != v else v for v in values.tolist()]


def _bulk_insert(
    con: Connection, table: sa.Table, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows through the driver in the connection's transaction: COPY on
    PostgreSQL, executemany on SQLite (SQLAlchemy's per-row parameter handling cost 5.7 of
    8.9 s for 92 k tasks)."""
    if not rows:
        return
    names = ", ".join(columns)
    raw: Any = con.connection.dbapi_connection
    if con.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    # SQLite keeps dates as ISO text, as SQLAlchemy's Date type writes them
    dated = [k for k, c in enumerate(columns) if isinstance(table.c[c].type, sa.Date)]
    if dated:
        rows = [
            tuple(v.isoformat() if k in dated and v is not None else v for k, v in enumerate(r))
            for r in rows
        ]
    marks = ", ".join("?" for _ in columns)
    cursor = raw.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    finally:
        cursor.close()


# ---- reading and verifying --------------------------------------------------------------------


def get_plan(con: Connection, plan_id: str) -> dict[str, Any]:
    row = con.execute(
        sa.select(spot_check_plans).where(spot_check_plans.c.id == plan_id)
    ).mappings().one_or_none()  # fmt: skip
    if row is None:
        raise LookupError(f"no spot-check plan {plan_id}")
    return dict(row)


def plan_briefs(con: Connection, today: date, limit: int = 100) -> list[dict[str, Any]]:
    """The latest plans first: id, name, dates, snapshot, counts of tasks and visits, the list's
    hash, and how many tasks are done, overdue (deadline passed without a result) and
    cancelled on `today`."""
    t = spot_check_tasks.c
    counts = (
        sa.select(
            t.plan_id,
            sa.func.count(t.result).label("done"),
            sa.func.count(t.cancelled_at).label("cancelled"),
            sa.func.sum(sa.case(
                (sa.and_(t.result.is_(None), t.cancelled_at.is_(None), t.due_date < today), 1),
                else_=0,
            )).label("overdue"),
        )
        .group_by(t.plan_id)
        .subquery()
    )  # fmt: skip
    p = spot_check_plans.c
    query = (
        sa.select(p.id, p.name, p.start_date, p.due_date, p.snapshot_date, p.tasks, p.visits,
                  p.list_sha256, counts.c.done, counts.c.overdue, counts.c.cancelled)
        .join(counts, counts.c.plan_id == p.id, isouter=True)
        .order_by(p.seq.desc())
        .limit(limit)
    )  # fmt: skip
    counted = ("done", "overdue", "cancelled")
    return [
        {"plan_id": r["id"], **{k: r[k] for k in r if k != "id" and k not in counted},
         **{k: int(r[k] or 0) for k in counted}}
        for r in con.execute(query).mappings()
    ]  # fmt: skip


def plan_tasks(
    con: Connection,
    plan_id: str,
    department: str | None = None,
    inspector: str | None = None,
) -> pd.DataFrame:
    query = sa.select(spot_check_tasks).where(spot_check_tasks.c.plan_id == plan_id)
    if department is not None:
        query = query.where(spot_check_tasks.c.department == department)
    if inspector is not None:
        query = query.where(
            spot_check_tasks.c.id.in_(
                sa.select(spot_check_assignments.c.task_id).where(
                    spot_check_assignments.c.inspector_id == inspector
                )
            )
        )
    query = query.order_by(spot_check_tasks.c.visit_no, spot_check_tasks.c.item_id)
    return _typed_frame(con, query, [c.name for c in spot_check_tasks.columns])


LIST_FIELDS = (
    "task_id", "plan_id", "visit_no", "uscc", "company_name", "region", "tier", "item_id",
    "item_name", "department", "inspectors", "inclusion_prob", "basis", "due_date",
    "due_estimated", "status", "result", "corrected", "supplemented", "objection_open",
    "check_date", "not_inspected_reason",
)  # fmt: skip
"""The columns of a plan's list as regulators fetch it: `result` as the published results show
it (its corrected form once corrected, `corrected` true; `supplemented` true once an objection
added information to it, which `corrected` does not say), and `objection_open` while an
objection to it is being decided (DOMAIN §10: the flag is visible to every consumer);
`status` done_late (逾期完成) for a check made after its deadline, and `due_estimated` when the
deadline was counted past the published holiday calendar; `not_inspected_reason` why a check
could not be made (result not_inspected; shown 未能检查（原因） in CSV and Excel)."""


def plan_list(
    con: Connection,
    plan_id: str,
    department: str | None = None,
    inspector: str | None = None,
    today: date | None = None,
    store: Store | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The plan and its list (`LIST_FIELDS`), with item names and each task's status: done,
    cancelled, overdue (deadline passed without a result) or open. With the `store`, each result
    is read through its record's events by the rule the published results follow
    (`_results_in_force`); without it, as posted."""
    today = today or china_today()
    plan = get_plan(con, plan_id)
    frame = plan_tasks(con, plan_id, department, inspector).rename(columns={"id": "task_id"})
    names = {
        i: json.loads(d)["name_zh"]
        for i, d in con.execute(sa.select(check_items.c.id, check_items.c.definition))
    }
    frame["item_name"] = frame["item_id"].map(names).fillna(frame["item_id"])
    status = np.where(frame["due_date"] < today, "overdue", "open")
    status = np.where(frame["cancelled_at"].notna(), "cancelled", status)
    late = [pd.notna(c) and pd.notna(d) and c > d
            for c, d in zip(frame["check_date"], frame["due_date"], strict=True)]  # fmt: skip
    frame["status"] = np.where(
        frame["result"].notna(), np.where(np.array(late, dtype=bool), "done_late", "done"), status
    )
    # a deadline counted past the published holiday calendar (`due_estimated`) may move
    frame["due_estimated"] = bool(plan["due_estimated"])
    frame["corrected"] = False
    frame["supplemented"] = False
    frame["objection_open"] = False
    if store is not None:
        _results_in_force(store, frame, today)
    # the reason of a check not made, while that is the result in force
    frame["not_inspected_reason"] = frame["result_reason"].where(
        frame["result"] == "not_inspected", None
    )
    return plan, frame[list(LIST_FIELDS)]


def _results_in_force(store: Store, frame: pd.DataFrame, today: date) -> None:
    """Set `result`, `corrected`, `supplemented` and `objection_open` of the tasks with a result as
    `published_results` shows them on `today` (one rule: `records.publicity`)."""
    ids = [str(r) for r in frame["record_id"].dropna().unique()]
    if not ids:
        return
    records, events = publicity.stored_with_events(store, ids, today)
    result = frame["result"].astype(object).to_numpy().copy()
    fixed = np.zeros(len(frame), bool)
    added = np.zeros(len(frame), bool)
    objected = np.zeros(len(frame), bool)
    for k, record_id in enumerate(frame["record_id"].tolist()):
        record = records.get(record_id) if isinstance(record_id, str) else None
        if record is None:
            continue
        steps = events.get(record_id, [])
        form = publicity.corrected(record, steps, today)
        result[k] = form["severity"]
        fixed[k], added[k] = publicity.amended(record, steps, today)
        objected[k] = publicity.objection_open(steps, today)
    frame["result"] = result
    frame["corrected"] = fixed
    frame["supplemented"] = added
    frame["objection_open"] = objected


class Verification(BaseModel):
    plan_id: str
    identical: bool
    """Everything below holds: the replayed list equals the stored list byte for byte and its
    hash, the stored snapshot still has its hashes, and the task rows and their inspector
    assignments match the list."""
    list_sha256: str
    replayed_sha256: str
    pool_hash_ok: bool
    inspector_hash_ok: bool
    tasks_match: bool
    assignments_match: bool
    """Each task's rows in `spot_check_assignments` are the inspectors the list names."""
    tasks: int
    seconds: float
    drawn_with: dict[str, str] = Field(default_factory=dict)
    """The numpy and pandas the plan was drawn with (none for plans drawn before they were
    kept): numpy does not promise its generators' methods give the same stream in every release,
    so a replay that differs after an upgrade is to be replayed with these versions."""
    replayed_with: dict[str, str] = Field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """The libraries a draw's stream depends on, as stored with each plan."""
    return {"numpy": np.__version__, "pandas": pd.__version__}


def verify_plan(engine: Engine, plan_id: str) -> Verification:
    """Replay the draw from the stored seed, parameters and snapshot; compare with what is
    stored (the list and the task rows)."""
    started = time.perf_counter()
    with engine.connect() as con:
        plan = get_plan(con, plan_id)
        stored_tasks = plan_tasks(con, plan_id)
        assigned = _frame(
            con,
            sa.select(spot_check_assignments.c.task_id, spot_check_assignments.c.inspector_id)
            .join(spot_check_tasks, spot_check_tasks.c.id == spot_check_assignments.c.task_id)
            .where(spot_check_tasks.c.plan_id == plan_id),
            ["task_id", "inspector_id"],
        )  # fmt: skip
    snapshot = snapshot_from_bytes(plan["snapshot_blob"])
    replayed = canonical_list(
        draw_plan(params_from_json(plan["params"]), snapshot, int(plan["seed"])).tasks
    )
    stored = zlib.decompress(plan["list_blob"])
    from_rows = canonical_list(stored_tasks.sort_values(["visit_no", "item_id"]))
    pool_ok = snapshot.pool_hash == plan["pool_hash"]
    inspector_ok = snapshot.inspector_hash == plan["inspector_hash"]
    assignments_ok = _assignments_match(stored_tasks, assigned)
    return Verification(
        plan_id=plan_id,
        identical=replayed == stored
        and from_rows == stored
        and list_sha256(stored) == plan["list_sha256"]
        and pool_ok
        and inspector_ok
        and assignments_ok,
        list_sha256=plan["list_sha256"],
        replayed_sha256=list_sha256(replayed),
        pool_hash_ok=pool_ok,
        inspector_hash_ok=inspector_ok,
        tasks_match=from_rows == stored,
        assignments_match=assignments_ok,
        tasks=int(plan["tasks"]),
        seconds=round(time.perf_counter() - started, 3),
        drawn_with=json.loads(plan["summary"]).get("drawn_with") or {},
        replayed_with=library_versions(),
    )


def _assignments_match(tasks: pd.DataFrame, assigned: pd.DataFrame) -> bool:
    """Each task's assigned inspectors are exactly those of its `inspectors` text (one row
    each, none for another task of the plan)."""
    listed = (
        tasks.assign(inspector_id=tasks["inspectors"].astype(str).str.split(";"))
        .explode("inspector_id")[["id", "inspector_id"]]
        .set_axis(["task_id", "inspector_id"], axis=1)
    )
    if len(listed) != len(assigned):
        return False
    key = ["task_id", "inspector_id"]
    both = [
        f.astype({"task_id": "int64", "inspector_id": str}).sort_values(key)[key].to_numpy()
        for f in (listed, assigned)
    ]
    return bool((both[0] == both[1]).all())


def public_notice(engine: Engine, plan_id: str, today: date | None = None) -> dict[str, Any]:
    """What is published about a plan: scope, items, ratios, counts and the hashes anyone can
    check a replay against (no company list). Until the due date the seed is only committed to
    (`seed_sha256`, with who chose it): with the seed and the tiers, which a department can read,
    the list could be rebuilt before the unannounced checks. Once the due date has passed and
    every task has its result, the seed and its salt are shown, and anyone can check them
    against the commitment and replay the draw."""
    today = today or china_today()
    with engine.connect() as con:
        plan = get_plan(con, plan_id)
        open_tasks = con.execute(
            sa.select(sa.func.count()).select_from(spot_check_tasks).where(
                spot_check_tasks.c.plan_id == plan_id, spot_check_tasks.c.result.is_(None),
                spot_check_tasks.c.cancelled_at.is_(None),
            )
        ).scalar_one()  # fmt: skip
    params = params_from_json(plan["params"], for_replay=False)
    summary = json.loads(plan["summary"])
    drawn = {s["item_id"]: s for s in summary["items"]}
    return {
        "plan_id": plan["id"],
        "name": plan["name"],
        "start_date": plan["start_date"].isoformat(),
        "due_date": plan["due_date"].isoformat(),
        "due_estimated": bool(plan["due_estimated"]),
        "tier_snapshot_date": plan["snapshot_date"].isoformat(),
        "drawn_on": _drawn_on(plan, summary),
        "departments": sorted({i.department for i in params.items}),
        "population": asdict(params.population),
        "items": [
            {
                "item_id": i.id,
                "department": i.department,
                "name_zh": i.name_zh,
                "name_en": i.name_en,
                "legal_basis": i.legal_basis,
                "kind": i.kind,
                "ratios": drawn[i.id]["ratios"],
                "eligible": drawn[i.id]["eligible"],
                "drawn": drawn[i.id]["drawn"],
                "triggered": drawn[i.id]["triggered"],
                # kept out of the random draw as inspected at random earlier this year
                "excluded_repeat": drawn[i.id].get("excluded_repeat", 0),
            }
            for i in params.items
        ],
        "avoid_repeat_within_year": params.avoid_repeat_within_year,
        "companies_kept_out_as_repeats": (summary.get("repeat_rule") or {}).get(
            "companies_kept_out", 0
        ),
        "companies_in_pool": summary["companies_in_pool"],
        "visits": int(plan["visits"]),
        "tasks": int(plan["tasks"]),
        **_seed_shown(plan, summary, today, open_tasks),
        "pool_hash": plan["pool_hash"],
        "inspector_hash": plan["inspector_hash"],
        "list_sha256": plan["list_sha256"],
    }


def _drawn_on(plan: dict[str, Any], summary: dict[str, Any]) -> str:
    """The day the plan was drawn (China time): after its start for a back-filled plan.
    Plans drawn before it was kept: the day they were stored."""
    if summary.get("drawn_on"):
        return str(summary["drawn_on"])
    created: datetime = plan["created_at"]
    if created.tzinfo is None:  # SQLite keeps the UTC time without its zone
        created = created.replace(tzinfo=UTC)
    return created.astimezone(CHINA).date().isoformat()


def _seed_shown(
    plan: dict[str, Any], summary: dict[str, Any], today: date, open_tasks: int
) -> dict[str, Any]:
    """The notice's seed fields on `today`: committed to until the checks are over (the due date
    passed and every task has its result: an overdue check is still unannounced), shown after."""
    committed = summary.get("seed") or {}  # plans drawn before the commitment have none
    revealed = today > plan["due_date"] and open_tasks == 0
    return {
        "seed": plan["seed"] if revealed else None,
        "seed_salt": committed.get("salt") if revealed else None,
        "seed_sha256": committed.get("sha256"),
        "seed_source": committed.get("source", "not recorded"),
        "seed_shown": "shown"
        if revealed
        else (f"after {plan['due_date']} once every task has its result ({open_tasks} open)"),
    }


# ---- cancelling -------------------------------------------------------------------------------


def cancel_tasks(
    engine: Engine,
    plan_id: str,
    reason: str,
    task_id: int | None = None,
    cancelled_by: int | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Call off a plan's (or one task's) checks that have no result yet, with the reason: they
    are no longer overdue, count against no yearly limit and show as cancelled in the lists.
    The draw is unchanged (the plan still verifies); who, when and why are kept on the task and
    appended to `lifecycle_log` (case_type `spot_check`; `by` names a caller without a key, the
    command line's user and host). A task with a result, or cancelled
    already, is refused (`ResultConflict`)."""
    reason = reason.strip()
    if not reason:
        raise PlanError("reason_required", "give the reason for cancelling (--reason)")
    now = _now()
    t = spot_check_tasks.c
    with engine.begin() as con:
        get_plan(con, plan_id)  # LookupError: no such plan
        query = sa.select(t.id, t.uscc, t.result, t.cancelled_at).where(t.plan_id == plan_id)
        if task_id is not None:
            query = query.where(t.id == task_id)
        rows = con.execute(query.order_by(t.id)).all()
        if task_id is not None:
            if not rows:
                raise TaskNotFound(f"plan {plan_id} has no task {task_id}")
            if rows[0].result is not None:
                raise ResultConflict(
                    f"task {task_id} has its result: a check done is not cancelled"
                )
            if rows[0].cancelled_at is not None:
                raise ResultConflict(f"task {task_id} was cancelled already")
        todo = [r for r in rows if r.result is None and r.cancelled_at is None]
        ids = [int(r.id) for r in todo]
        for start in range(0, len(ids), 900):
            con.execute(
                spot_check_tasks.update()
                .where(t.id.in_(ids[start : start + 900]), t.result.is_(None),
                       t.cancelled_at.is_(None))
                .values(cancelled_at=now, cancelled_by=cancelled_by, cancel_reason=reason)
            )  # fmt: skip
        if todo:
            con.execute(lifecycle_log.insert(), [
                lifecycle.step("spot_check", int(r.id), r.uscc, "cancelled", cancelled_by,
                               {"plan_id": plan_id, "reason": reason, "by": by})
                for r in todo
            ])  # fmt: skip
    return {
        "plan_id": plan_id, "cancelled": len(ids), "task_ids": ids, "reason": reason,
        "cancelled_at": now.isoformat(),
        "left_done": sum(1 for r in rows if r.result is not None),
    }  # fmt: skip


# ---- results ----------------------------------------------------------------------------------


class TaskNotFound(LookupError):
    pass


class ResultConflict(Exception):
    pass


def record_id_of(task: dict[str, Any]) -> str:
    return f"{task['plan_id']}-T{int(task['id']):09d}"


def post_result(
    engine: Engine,
    store: Store,
    task_id: int,
    body: TaskResult,
    posted_by: int | None = None,
    department: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Record a task's result: the task row and a `spot_check` record in the store, together.

    The row is claimed first (`result IS NULL`), the record written while the claim is held and
    the claim committed only after the record is: a second result for the task gets
    `ResultConflict`, a failed record write leaves the task open. The store commits first, so
    when the database then fails, the record is withdrawn at once (it neither counts nor is
    published); if the process died instead, the next attempt for the task finds the record and
    completes with it or withdraws it (`_write_result`): posting again always works.
    """
    today = today or china_today()
    written: list[str] = []
    try:
        with engine.begin() as con:
            task = con.execute(
                sa.select(spot_check_tasks, spot_check_plans.c.start_date)
                .join(spot_check_plans, spot_check_plans.c.id == spot_check_tasks.c.plan_id)
                .where(spot_check_tasks.c.id == task_id)
            ).mappings().one_or_none()  # fmt: skip
            if task is None:
                raise TaskNotFound(f"no spot-check task {task_id}")
            if department is not None and task["department"] != department:
                raise PermissionError(
                    f"task {task_id} belongs to department {task['department']}, not {department}"
                )
            if task["cancelled_at"] is not None:
                raise ResultConflict(
                    f"task {task_id} was cancelled ({task['cancel_reason']}): it takes no result"
                )
            if body.check_date > today:
                raise PlanError(
                    "future_date", f"check_date {body.check_date} is after today {today}"
                )
            if body.check_date < task["start_date"]:
                raise PlanError(
                    "before_plan",
                    f"check_date {body.check_date} is before the plan starts "
                    f"({task['start_date']})",
                )
            late = workdays.add_working_days(body.check_date, PUBLICATION_WORKING_DAYS) < today
            claimed = con.execute(
                spot_check_tasks.update()
                .where(spot_check_tasks.c.id == task_id, spot_check_tasks.c.result.is_(None))
                .values(
                    result=body.result, check_date=body.check_date,
                    findings=body.findings.model_dump_json(), result_at=_now(),
                    result_reason=body.reason, result_note=body.note or None,
                    result_by=posted_by, record_id=record_id_of(dict(task)), published_late=late,
                )
            ).rowcount  # fmt: skip
            if claimed != 1:
                raise ResultConflict(f"task {task_id} already has a result")
            record_id = _write_result(store, dict(task), body, today, written)
            if record_id != record_id_of(dict(task)):
                con.execute(spot_check_tasks.update().where(spot_check_tasks.c.id == task_id)
                            .values(record_id=record_id))  # fmt: skip
    except Exception:
        # the database kept the task open: the record written for it must not count either (if
        # this fails too, the next attempt for the task withdraws it)
        with contextlib.suppress(Exception):
            _withdraw(store, written, f"the result of task {task_id} was not committed", today)
        raise
    return {
        "task_id": task_id, "plan_id": task["plan_id"], "uscc": task["uscc"],
        "item_id": task["item_id"], "result": body.result,
        "check_date": body.check_date.isoformat(), "record_id": record_id,
        "published_late": late, "reason": body.reason,
    }  # fmt: skip


def _write_result(
    store: Store, task: dict[str, Any], body: TaskResult, today: date, written: list[str]
) -> str:
    """Store the record of an open task's result; returns its id (added to `written` first).

    A record of the task already in the store was left by an attempt whose database commit did
    not happen (the task is open and this attempt holds its claim). One that is not withdrawn
    and states this very result is this result's record: the retry completes with it. Any other
    is withdrawn, and the result gets a fresh id (`<plan>-T<task>-R<n>`)."""
    base = record_id_of(task)
    # `basis` and the tier at the draw: training leaves out triggered checks (selected because
    # a problem was suspected), which a probability of 1 alone does not tell from tier D's
    attributes = {
        "check_item": task["item_id"], "plan_id": task["plan_id"],
        "inclusion_prob": float(task["inclusion_prob"]), "basis": task["basis"],
        "tier": task["tier"],
        "findings_minor": body.findings.minor, "findings_major": body.findings.major,
        "findings_serious": body.findings.serious,
    }  # fmt: skip
    if body.findings.description:  # free text (may name people): kept, never public
        attributes["description"] = body.findings.description
    if body.reason is not None:  # a check not made: why (a code, public) and the note (not)
        attributes["reason"] = body.reason
        if body.note:
            attributes["note"] = body.note
    with store.connect() as con:
        left = con.sql(
            "SELECT DISTINCT record_id, uscc, event_date, source_dept, severity, attributes "
            "FROM records WHERE record_id = ? OR record_id LIKE ? ORDER BY record_id",
            params=[base, f"{base}-R%"],
        ).to_arrow_table().to_pylist()  # fmt: skip
        withdrawn = {r for (r,) in con.execute(
            "SELECT record_id FROM events WHERE event_type = 'withdrawal' "
            "AND (record_id = ? OR record_id LIKE ?)", [base, f"{base}-R%"],
        ).fetchall()}  # fmt: skip
    live = [r for r in left if r["record_id"] not in withdrawn]
    wanted = (task["uscc"], body.check_date, task["department"], body.result, attributes)
    same = next((r for r in live if (r["uscc"], r["event_date"], r["source_dept"], r["severity"],
                 json.loads(r["attributes"] or "{}")) == wanted), None)  # fmt: skip
    stale = [r["record_id"] for r in live if r is not same]
    if stale:
        refused = _withdraw(store, stale, f"superseded by the result of task {task['id']}", today)
        if refused:
            raise RuntimeError(f"records {', '.join(stale)} could not be withdrawn: {refused}")
    if same is not None:
        written.append(same["record_id"])
        return str(same["record_id"])
    ids = {r["record_id"] for r in left}
    record_id = base if not ids else f"{base}-R{len(ids) + 1}"
    written.append(record_id)
    record = pa.table(
        {
            "record_id": [record_id], "uscc": [task["uscc"]], "category": ["spot_check"],
            "event_date": [body.check_date.isoformat()],
            "recorded_date": [today.isoformat()], "source_dept": [task["department"]],
            "severity": [body.result], "amount": pa.array([None], pa.string()),
            "attributes": [json.dumps(attributes, ensure_ascii=False, sort_keys=True)],
        }
    )  # fmt: skip
    outcome = ingest_table(
        store, record, "records", task["department"], today=today,
        source_file=f"spot-check-result:{record_id}",
    )  # fmt: skip
    if outcome.stored + outcome.already_stored != 1:
        raise PlanError(
            "result_not_recorded",
            f"the result of task {task['id']} was refused as a record: {outcome.by_reason}",
        )
    return record_id


def _withdraw(store: Store, record_ids: list[str], reason: str, today: date) -> list[Any]:
    """Withdraw spot-check records no committed task names (`records.events.withdraw_left`)."""
    return withdraw_left(store, record_ids, "spot-check", reason, today)


def overdue_tasks(
    con: Connection,
    today: date,
    department: str | None = None,
    plan_id: str | None = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """Tasks without a result whose deadline has passed (cancelled ones are not overdue)."""
    query = sa.select(spot_check_tasks).where(
        spot_check_tasks.c.result.is_(None), spot_check_tasks.c.due_date < today,
        spot_check_tasks.c.cancelled_at.is_(None),
    )  # fmt: skip
    if department is not None:
        query = query.where(spot_check_tasks.c.department == department)
    if plan_id is not None:
        query = query.where(spot_check_tasks.c.plan_id == plan_id)
    query = query.order_by(spot_check_tasks.c.due_date, spot_check_tasks.c.id).limit(limit)
    return _typed_frame(con, query, [c.name for c in spot_check_tasks.columns])


def _public_since(today: date) -> date:
    """A cheap bound: no result checked before this day is public on `today` (the catalogue's
    period, 5 years; the rule decides each result)."""
    span = publicity.period("spot_check", None, None, None).public
    return date.min if span is None else span.before(today) - timedelta(days=1)


def published_results(
    con: Connection,
    store: Store,
    today: date,
    uscc: str | None = None,
    plan_id: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Results public on `today`, by the one publicity rule (`records.publicity`) applied to
    each result's record and its events: 5 years, 2 for an individual business (a natural
    person's, whose name is masked); hidden once withdrawn, repaired or no longer published;
    in its corrected form once corrected."""
    query = sa.select(
        spot_check_tasks.c.id, spot_check_tasks.c.plan_id, spot_check_tasks.c.uscc,
        spot_check_tasks.c.company_name, spot_check_tasks.c.entity_type,
        spot_check_tasks.c.item_id, spot_check_tasks.c.department, spot_check_tasks.c.result,
        spot_check_tasks.c.check_date, spot_check_tasks.c.result_at,
        spot_check_tasks.c.published_late, spot_check_tasks.c.record_id,
        spot_check_tasks.c.result_reason, check_items.c.definition,
    ).join(check_items, check_items.c.id == spot_check_tasks.c.item_id, isouter=True).where(
        spot_check_tasks.c.result.is_not(None),
        # a cheap bound: no result is public longer than the catalogue's period
        spot_check_tasks.c.check_date >= _public_since(today),
    )  # fmt: skip
    if uscc is not None:
        query = query.where(spot_check_tasks.c.uscc == uscc)
    if plan_id is not None:
        query = query.where(spot_check_tasks.c.plan_id == plan_id)
    query = query.order_by(spot_check_tasks.c.check_date.desc(), spot_check_tasks.c.id)
    out: list[dict[str, Any]] = []
    offset = 0
    while len(out) < limit:  # hidden results do not count against the limit
        page = con.execute(query.limit(limit).offset(offset)).mappings().all()
        offset += len(page)
        records, events = publicity.stored_with_events(
            store, [r["record_id"] for r in page if r["record_id"]], today
        )
        for row in page:
            shown = _published(row, records.get(row["record_id"] or ""),
                               events.get(row["record_id"] or "", []), today)  # fmt: skip
            if shown is not None and len(out) < limit:
                out.append(shown)
        if len(page) < limit:
            break
    return out


def _china_time(moment: datetime | None) -> str | None:
    """A stored moment as China time with its offset, to the second ("2026-12-05T18:29:06+08:00";
    a moment without a zone is UTC, as the database keeps it)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CHINA).replace(microsecond=0).isoformat()


def _published(
    row: Any, record: dict[str, Any] | None, events: list[dict[str, Any]], today: date
) -> dict[str, Any] | None:
    """A result as the public sees it on `today` (None: not public)."""
    if record is None:  # a result without a stored record: as the task row states it
        record = {
            "record_id": row["record_id"], "uscc": row["uscc"], "category": "spot_check",
            "event_date": row["check_date"], "recorded_date": row["check_date"],
            "severity": row["result"], "amount": None, "attributes": "{}",
        }  # fmt: skip
    if not publicity.public_on(record, events, today, row["entity_type"]):
        return None
    form = publicity.corrected(record, events, today)
    fixed, added = publicity.amended(record, events, today)
    person = row["entity_type"] == "individual_business"
    name_zh = json.loads(row["definition"])["name_zh"] if row["definition"] else row["item_id"]
    return {
        "task_id": int(row["id"]), "plan_id": row["plan_id"], "uscc": row["uscc"],
        "company_name": mask_name(row["company_name"]) if person else row["company_name"],
        "item_id": row["item_id"], "item_name": name_zh,
        "department": row["department"], "result": form["severity"],
        "not_inspected_reason": (
            row["result_reason"] if form["severity"] == "not_inspected" else None
        ),
        "corrected": fixed,
        "supplemented": added,
        "check_date": row["check_date"].isoformat(),
        "published_at": _china_time(row["result_at"]),
        "published_late": bool(row["published_late"]),
        "objection_open": publicity.objection_open(events, today),
    }  # fmt: skip


__all__ = [
    "TIERS", "Findings", "InspectorIn", "InspectorsRefused", "PlanCreated", "PlanError",
    "PlanRequest", "ResultConflict", "TaskNotFound", "TaskResult", "Triggered", "Verification",
    "cancel_tasks", "create_plan", "department_filter", "import_preset_items",
    "inspector_filter", "inspector_pool", "list_settings", "load_items", "overdue_tasks",
    "plan_briefs", "post_result", "public_notice", "published_results", "save_inspectors",
    "save_item_list", "save_items", "store_inspections", "verify_plan", "vet_inspectors",
]  # fmt: skip
