"""The evaluation report of a risk model: ranking, calibration, tiers, plans and stability.

All figures are weighted by the examples' inverse inclusion probabilities, so that they describe
the whole population rather than the inspected part.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.tiers import TIERS

NATIONAL_DEFAULT_RATES = {"A": 0.03, "B": 0.10, "C": 0.40, "D": 1.00}
"""Spot-check ratios by tier, ../shared/DOMAIN.md §7 (national-default preset)."""


def calibration_error(
    label: np.ndarray, proba: np.ndarray, weight: np.ndarray, bins: int = 10
) -> float:
    """Expected calibration error: weighted mean |observed − predicted| over equal-count bins."""
    order = np.argsort(proba, kind="stable")
    total = weight.sum()
    error = 0.0
    for part in np.array_split(order, bins):
        if len(part) == 0:
            continue
        w = weight[part]
        observed = float(np.average(label[part], weights=w))
        predicted = float(np.average(proba[part], weights=w))
        error += w.sum() / total * abs(observed - predicted)
    return float(error)


def tier_table(label: np.ndarray, tiers: list[str], weight: np.ndarray) -> list[dict[str, Any]]:
    """Per tier: examples, weighted companies, weighted problem rate."""
    t = np.asarray(tiers)
    rows = []
    for tier in TIERS:
        mask = t == tier
        w = weight[mask]
        rows.append(
            {
                "tier": tier,
                "examples": int(mask.sum()),
                "weighted": round(float(w.sum()), 1),
                "problem_rate": round(float(np.average(label[mask], weights=w)), 4)
                if mask.any()
                else None,
            }
        )
    return rows


def plan_hit_rate(
    label: np.ndarray,
    tiers: list[str],
    weight: np.ndarray,
    rates: dict[str, float] = NATIONAL_DEFAULT_RATES,
) -> dict[str, float]:
    """Expected share of inspections finding a problem: a tier-weighted plan against a uniform
    random plan with the same budget (the same expected number of inspections)."""
    t = np.asarray(tiers)
    draw = np.array([rates[x] for x in t]) * weight  # expected inspections each example stands for
    tiered = float((draw * label).sum() / draw.sum())
    uniform = float(np.average(label, weights=weight))
    return {
        "tiered": round(tiered, 4),
        "uniform": round(uniform, 4),
        "lift": round(tiered / uniform, 3) if uniform else float("nan"),
    }


def psi(before: list[str], after: list[str], eps: float = 1e-4) -> float:
    """Population stability index of the tier distribution between two runs."""
    b = np.array([np.mean(np.asarray(before) == x) for x in TIERS]) + eps
    a = np.array([np.mean(np.asarray(after) == x) for x in TIERS]) + eps
    return float(((a - b) * np.log(a / b)).sum())


def transitions(before: list[str], after: list[str]) -> dict[str, dict[str, int]]:
    """How many companies moved from each tier to each tier (same companies, same order)."""
    out = {x: {y: 0 for y in TIERS} for x in TIERS}
    for x, y in zip(before, after, strict=True):
        out[x][y] += 1
    return out


def report(label: Any, proba: Any, weight: Any, tiers: list[str]) -> dict[str, Any]:
    """AUC, PR-AUC, Brier score, calibration error, tier table and plan hit rates."""
    y = np.asarray(label, dtype=float)
    p = np.asarray(proba, dtype=float)
    w = np.asarray(weight, dtype=float)
    return {
        "examples": len(y),
        "auc": round(float(roc_auc_score(y, p, sample_weight=w)), 4),
        "pr_auc": round(float(average_precision_score(y, p, sample_weight=w)), 4),
        "brier": round(float(brier_score_loss(y, p, sample_weight=w)), 4),
        "calibration_error": round(calibration_error(y, p, w), 4),
        "tiers": tier_table(y, tiers, w),
        "plan": plan_hit_rate(y, tiers, w),
    }
