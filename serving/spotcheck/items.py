"""The check-item list (抽查事项清单) and the ratio presets, from versioned YAML files.

A preset file holds the tier ratios, the provincial cap on general items, the department's
yearly cap on inspections of one company, whether a company inspected at random this year is
left out of later random draws (`avoid_repeat_within_year`) and the check items. Items are
loaded into the serving database (`credsup plan items import`, `PUT /v1/check-items/{id}`) with
the list's own settings (`Preset.list_settings`: the yearly cap, the general-item cap and the
repeat rule, applied to every plan drawn from the list); a plan may name a preset to take its
ratios from instead of each item's own.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TIERS = ("A", "B", "C", "D")
PRESET_DIR = Path(__file__).parent / "presets"

Outcome = Literal["pass", "problem", "serious", "not_inspected"]
"""What a check of an item finds: 未发现问题, 发现问题, 发现严重问题, or 未能检查 when it could not
be made (here, light to import, for the command line's choices; the results themselves are
`plans.TaskResult`)."""

NotInspectedReason = Literal["unreachable", "deregistered", "ceased_trading", "other"]
"""Why a check could not be made: not found at the registered address (DOMAIN §8: the ground
for the abnormal-operation list), deregistered, ceased trading, other (with a note)."""


class Ratios(BaseModel):
    """Share of a tier's companies drawn for one item (0–1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    A: float = Field(ge=0, le=1)
    B: float = Field(ge=0, le=1)
    C: float = Field(ge=0, le=1)
    D: float = Field(ge=0, le=1)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.A, self.B, self.C, self.D)


class CheckItem(BaseModel):
    """One check item: who checks what, on which legal basis, how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    department: str = Field(min_length=1, max_length=64)
    name_zh: str = Field(min_length=1, max_length=128)
    name_en: str = Field(default="", max_length=128)
    legal_basis: str = Field(default="", max_length=512)
    kind: Literal["general", "key"]
    """General items carry the provincial cap on their ratio; key items (safety, quality,
    public interest) have none."""
    ratios: Ratios
    max_ratio: float | None = Field(default=None, gt=0, le=1)
    """Cap on the share of the eligible companies drawn (general items only)."""
    floor: float = Field(default=0.0, ge=0, le=1)
    """Least share of the eligible companies drawn (company information checks: 3 %)."""
    yearly_cap: int = Field(default=1, ge=1, le=12)
    """Checks of one company on this item in a calendar year (tier D and triggers exempt)."""
    a_tier: Literal["sample", "triggered_only"] | None = None
    """Whether tier A is sampled at its ratio or checked only on a trigger (default: key items
    sample A, general items leave A alone: 无事不扰)."""
    industries: tuple[str, ...] = ()
    """GB/T 4754 code prefixes the item applies to (empty: all)."""
    entity_types: tuple[str, ...] = ()
    """Entity types the item applies to (empty: all)."""
    active: bool = True

    @model_validator(mode="after")
    def _check(self) -> CheckItem:
        if self.kind == "key" and self.max_ratio is not None:
            raise ValueError(f"item {self.id}: a key item has no cap (max_ratio)")
        if self.max_ratio is not None and self.floor > self.max_ratio:
            raise ValueError(f"item {self.id}: floor {self.floor} above max_ratio {self.max_ratio}")
        return self

    @property
    def samples_tier_a(self) -> bool:
        return (self.a_tier or ("sample" if self.kind == "key" else "triggered_only")) == "sample"


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    source: str = ""
    ratios: Ratios
    general_item_cap: float | None = Field(default=None, gt=0, le=1)
    department_yearly_cap: int = Field(default=2, ge=1, le=12)
    """Inspections of one company by one department in a calendar year (DOMAIN §7: 2)."""
    avoid_repeat_within_year: bool = True
    """A company inspected at random this calendar year (by any department) is left out of the
    later random draws of the year, unless tier D (DOMAIN §7); triggered checks always go."""
    items: tuple[CheckItem, ...] = ()

    def list_settings(self) -> dict[str, object]:
        """The list-level settings kept with the items (None: not set by the file)."""
        given = self.model_fields_set
        return {
            "name": self.name,
            "general_item_cap": self.general_item_cap,
            "department_yearly_cap": (
                self.department_yearly_cap if "department_yearly_cap" in given else None
            ),
            "avoid_repeat_within_year": (
                self.avoid_repeat_within_year if "avoid_repeat_within_year" in given else None
            ),
        }

    @model_validator(mode="after")
    def _unique(self) -> Preset:
        ids = [i.id for i in self.items]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"preset {self.name}: item ids repeated: {dup}")
        return self


def load_preset_file(path: Path) -> Preset:
    """A preset from a YAML file; items inherit the preset's ratios, and a general item's cap is
    the stricter of its own and the preset's general-item cap."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a preset (a mapping with name, ratios, items)")
    items = []
    for item in raw.get("items") or []:
        if not isinstance(item, dict):
            raise ValueError(f"{path}: an item is not a mapping: {item!r}")
        item = dict(item)
        item.setdefault("ratios", raw.get("ratios"))
        cap = raw.get("general_item_cap")
        if item.get("kind") == "general" and isinstance(cap, int | float):
            own = item.get("max_ratio")
            item["max_ratio"] = min(own, cap) if isinstance(own, int | float) else cap
        items.append(item)
    try:
        return Preset.model_validate({**raw, "items": items})
    except ValidationError as exc:
        raise ValueError(f"{path}: {_problems(exc, items)}") from None


def _problems(exc: ValidationError, items: list[dict[str, Any]]) -> str:
    """A preset file's problems in one line, each after the item (by its id) and field it
    concerns: "item ZZ-GS-01 ratios.D: Input should be less than or equal to 1"."""
    problems = []
    for e in exc.errors(include_url=False):
        loc = list(e["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "items" and isinstance(loc[1], int):
            item = items[loc[1]] if loc[1] < len(items) else {}
            name = item.get("id") or f"#{loc[1] + 1}"
            where = " ".join([f"item {name}", ".".join(str(p) for p in loc[2:])]).strip()
        problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


@cache
def preset(name: str) -> Preset:
    """A packaged preset: `national-default` or `henan-2021`."""
    names = preset_names()
    if name not in names:  # a name, never a path: only the packaged files are read
        raise KeyError(f"no ratio preset {name!r}: one of {', '.join(names)}")
    return load_preset_file(PRESET_DIR / f"{name}.yaml")
