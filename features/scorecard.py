"""The public credit comprehensive evaluation (公共信用综合评价): a published, rule-based scorecard.

Points per dimension (default total 1000), deductions for negative records with time decay,
additions for positive ones, veto rules that cap the grade, and a grade scale (presets A–D,
Hunan's 优/良/中/差, Hebei's nine levels, or explicit cut-offs). The rules live in a versioned YAML
file (`scorecard-v1.yaml`) validated here against the feature specs: only features that can only
grow when a record is added may carry points, and the sign of the points must agree with the
feature's direction, so that adding a negative record never raises a score.

A feature that does not apply to an entity (`FeatureSpec.applies_to`: a social organisation files
no annual report with market regulation) is null for it and its rules give it no points, neither
a deduction nor an addition; its dimension is the base share plus the points of the rules that
apply, so a dimension none of whose rules applies stays at the base share, as for a company
without records.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml
from pydantic import Field, ValidationError, model_validator

from features.specs import MONOTONE_AGGREGATIONS, SPECS, FeatureSpec, Spec, by_name, spec_version
from records.catalogue import DIMENSIONS, Dimension
from records.config import StrictModel


class Grade(StrictModel):
    grade: str
    min_score: float
    level: int = Field(ge=1, le=4)
    """1 = A-like … 4 = D-like: vetoes say `grade_at_most: C` in these terms."""


SCALES: dict[str, tuple[tuple[str, float, int], ...]] = {
    "A-D": (("A", 860, 1), ("B", 700, 2), ("C", 600, 3), ("D", 0, 4)),
    "hunan": (("优", 860, 1), ("良", 700, 2), ("中", 600, 3), ("差", 0, 4)),
    "hebei-9": (
        ("A", 900, 1), ("A-", 860, 1), ("B+", 830, 2), ("B", 790, 2), ("B-", 750, 2),
        ("C+", 700, 3), ("C", 650, 3), ("C-", 600, 3), ("D", 0, 4),
    ),
}  # fmt: skip
"""Grade presets, best first: (grade, lowest score, level). The A cut-off 860 gives about 4 % A
on the simulated province, as Hebei observed in 2025 (A 4.24 %); a company without any record
scores 800 (B). Provinces set their own cut-offs in the scorecard YAML (`scale: [...]`)."""

LEVELS = {"A": 1, "B": 2, "C": 3, "D": 4}


class Rule(StrictModel):
    feature: str
    points: float
    max: float | None = Field(default=None, gt=0)


class Veto(StrictModel):
    feature: str
    grade_at_most: str = Field(pattern="^[ABCD]$")


class ScorecardConfig(StrictModel):
    version: str
    base_share: float = Field(default=0.8, ge=0, le=1)
    dimensions: dict[Dimension, float]
    rules: tuple[Rule, ...]
    vetoes: tuple[Veto, ...] = ()
    scale: str | tuple[Grade, ...] = "A-D"

    @model_validator(mode="after")
    def _consistent(self) -> ScorecardConfig:
        if set(self.dimensions) != set(DIMENSIONS):
            raise ValueError(f"dimensions must be exactly {list(DIMENSIONS)}")
        specs = by_name()
        for rule in self.rules:
            spec = specs.get(rule.feature)
            if not isinstance(spec, FeatureSpec):
                raise ValueError(f"rule {rule.feature!r}: not a record feature of the specs")
            if spec.aggregation not in MONOTONE_AGGREGATIONS:
                raise ValueError(
                    f"rule {rule.feature!r}: {spec.aggregation} is not monotone in records; "
                    "only counts, sums, maxima and open listings can carry points"
                )
            if rule.points == 0 or np.sign(rule.points) != -spec.direction:
                raise ValueError(
                    f"rule {rule.feature!r}: points {rule.points} disagree with direction "
                    f"{spec.direction} (deduct for risk-raising features, add for risk-lowering)"
                )
        for veto in self.vetoes:
            spec = specs.get(veto.feature)
            if spec is None or spec.direction != 1:
                raise ValueError(f"veto {veto.feature!r}: needs a risk-raising feature")
        if isinstance(self.scale, str) and self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; presets: {', '.join(SCALES)}")
        grades = self.grades()
        names = [g.grade for g in grades]
        if not grades or len(set(names)) != len(names):
            raise ValueError(f"scale: grade names must be given and distinct, got {names}")
        if len({g.min_score for g in grades}) != len(grades):
            raise ValueError("scale: two grades have the same lowest score")
        for better, worse in itertools.pairwise(grades):
            if worse.level < better.level:
                raise ValueError(
                    f"scale: grade {worse.grade!r} (from {worse.min_score:g}) has a better "
                    f"level ({worse.level}) than {better.grade!r} above it ({better.level})"
                )
        for veto in self.vetoes:
            if not any(g.level >= LEVELS[veto.grade_at_most] for g in grades):
                raise ValueError(
                    f"veto {veto.feature!r} caps the grade at level {veto.grade_at_most} "
                    f"({LEVELS[veto.grade_at_most]}), but no grade of the scale is at that "
                    f"level or worse (levels {sorted({g.level for g in grades})})"
                )
        return self

    @property
    def total(self) -> float:
        return float(sum(self.dimensions.values()))

    def grades(self) -> tuple[Grade, ...]:
        if isinstance(self.scale, str):
            return tuple(Grade(grade=g, min_score=m, level=lv) for g, m, lv in SCALES[self.scale])
        return tuple(sorted(self.scale, key=lambda g: -g.min_score))


def load_config(path: str | Path | None = None, scale: str | None = None) -> ScorecardConfig:
    """The packaged default, or a YAML file; `scale` overrides the grade scale preset."""
    if path is None:
        text = resources.files("features").joinpath("scorecard-v1.yaml").read_text("utf-8")
    else:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"scorecard {path}: cannot read it: {exc}") from None
    try:
        data: dict[str, Any] = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"scorecard {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"scorecard {path}: not a mapping of settings")
    if scale is not None:
        data["scale"] = scale
    try:
        return ScorecardConfig.model_validate(data)
    except ValidationError as exc:  # one line a problem, naming where, without pydantic's dump
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + ": " + e["msg"].removeprefix("Value error, ")
            if e["loc"] else e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )  # fmt: skip
        raise ValueError(f"scorecard {path or 'scorecard-v1.yaml'}: {problems}") from None


@dataclass
class Scorecard:
    """Scores and grades companies from their point-in-time features."""

    config: ScorecardConfig
    specs: tuple[Spec, ...] = SPECS

    @property
    def method_version(self) -> str:
        grades = [g.model_dump(mode="json") for g in self.config.grades()]  # presets resolved
        payload = json.dumps(
            [self.config.model_dump(mode="json"), grades, spec_version(self.specs)],
            sort_keys=True,
        )
        return "sc-" + hashlib.sha256(payload.encode()).hexdigest()[:12]

    def _dimension(self, rule: Rule) -> Dimension:
        spec = by_name(self.specs)[rule.feature]
        return spec.dimension

    def table(self) -> str:
        """The published points rules, one line each (Chinese and English feature texts)."""
        specs = by_name(self.specs)
        lines = [
            f"Public credit comprehensive evaluation {self.config.version} "
            f"(method {self.method_version}); total {self.config.total:g} points, "
            f"a company without records scores {self.config.base_share:.0%} of each dimension.",
            "A rule whose feature does not apply to a company (applies to: only the entity types "
            "named) gives it no points, neither deduction nor addition; a dimension none of "
            f"whose rules applies scores {self.config.base_share:.0%} of its points.",
            "",
            f"{'dimension':<12} {'points':>7} {'max':>6}  feature",
        ]
        for dim in DIMENSIONS:
            lines.append(f"{dim:<12} {self.config.dimensions[dim]:>7g}")
            for rule in self.config.rules:
                if self._dimension(rule) != dim:
                    continue
                spec = specs[rule.feature]
                cap = f"{rule.max:g}" if rule.max else "-"
                unit = spec.reason_en.replace("{value}", "N")
                only = (
                    f" (applies to: {', '.join(spec.applies_to)})"
                    if isinstance(spec, FeatureSpec) and spec.applies_to is not None
                    else ""
                )
                lines.append(
                    f"{'':<12} {rule.points:>+7g} {cap:>6}  {rule.feature}: per unit of «{unit}»"
                    f"{only}"
                )
        lines.append("")
        lines.append(
            "vetoes: "
            + "; ".join(
                f"{v.feature} → grade at most {v.grade_at_most}" for v in self.config.vetoes
            )
        )
        lines.append(
            "grades: " + ", ".join(f"{g.grade} ≥ {g.min_score:g}" for g in self.config.grades())
        )
        return "\n".join(lines)

    def score(self, features: pa.Table) -> pa.Table:
        """Score, grade, points per dimension, vetoes and the largest deductions of each row."""
        n = features.num_rows
        dims = {
            d: np.full(n, self.config.base_share * p) for d, p in self.config.dimensions.items()
        }
        contributions: dict[str, np.ndarray] = {}
        for rule in self.config.rules:
            # null: the feature does not apply to the company (`FeatureSpec.applies_to`), and
            # its rule gives it no points, neither deduction nor addition
            value = np.nan_to_num(
                features.column(rule.feature).to_numpy(zero_copy_only=False).astype(float)
            )
            points = rule.points * value
            if rule.max is not None:
                points = np.clip(points, -rule.max, rule.max)
            contributions[rule.feature] = points
            dims[self._dimension(rule)] += points
        for d, p in self.config.dimensions.items():
            np.clip(dims[d], 0, p, out=dims[d])
        total = np.round(sum(dims.values()), 2)
        grades = self.config.grades()
        level_of_score = np.full(n, len(grades) - 1)
        for i in reversed(range(len(grades))):
            level_of_score = np.where(total >= grades[i].min_score, i, level_of_score)
        cap = np.zeros(n, dtype=int)  # index into grades: the best grade still allowed
        vetoes: list[list[str]] = [[] for _ in range(n)]
        for veto in self.config.vetoes:
            hit = (
                np.nan_to_num(
                    features.column(veto.feature).to_numpy(zero_copy_only=False).astype(float)
                )
                > 0
            )
            worst_allowed = min(
                i for i, g in enumerate(grades) if g.level >= LEVELS[veto.grade_at_most]
            )
            cap = np.where(hit, np.maximum(cap, worst_allowed), cap)
            for row in np.flatnonzero(hit).tolist():
                vetoes[row].append(veto.feature)
        grade_index = np.maximum(level_of_score, cap)
        names = np.array([g.grade for g in grades])
        deductions = _top_deductions(contributions, 3)
        return pa.table(
            {
                "uscc": features.column("uscc"),
                "as_of": features.column("as_of"),
                "score": pa.array(total),
                "grade": pa.array(names[grade_index]),
                **{f"points_{d}": pa.array(np.round(dims[d], 2)) for d in DIMENSIONS},
                "vetoes": pa.array(vetoes, pa.list_(pa.string())),
                "top_deductions": pa.array(
                    deductions,
                    pa.list_(pa.struct([("feature", pa.string()), ("points", pa.float64())])),
                ),
            }
        )


def _top_deductions(contributions: dict[str, np.ndarray], k: int) -> list[list[dict[str, Any]]]:
    if not contributions:
        return []
    names = list(contributions)
    matrix = np.column_stack([contributions[n] for n in names])
    order = np.argsort(matrix, axis=1, kind="stable")[:, :k]
    out = []
    for row, idx in enumerate(order):
        out.append(
            [{"feature": names[j], "points": round(float(matrix[row, j]), 2)}
             for j in idx if matrix[row, j] < 0]
        )  # fmt: skip
    return out
