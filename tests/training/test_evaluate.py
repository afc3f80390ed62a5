"""Evaluation figures on hand-made cases where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import calibration_error, plan_hit_rate, psi, report, transitions
from training.registry import auc_gain_interval


def test_a_perfect_ranking_and_calibration() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, 20_000) < p).astype(float)
    w = np.ones_like(p)
    assert calibration_error(y, p, w) < 0.02
    assert calibration_error(y, np.clip(p + 0.2, 0, 1), w) > 0.1
    tiers = np.where(p < 0.2, "A", np.where(p < 0.8, "B", np.where(p < 0.95, "C", "D"))).tolist()
    r = report(y, p, w, tiers)
    assert r["auc"] > 0.8 and 0 < r["brier"] < 0.25
    rates = {t["tier"]: t["problem_rate"] for t in r["tiers"]}
    assert rates["A"] < rates["B"] < rates["C"] < rates["D"]
    assert r["plan"]["tiered"] > r["plan"]["uniform"] and r["plan"]["lift"] > 1


def test_weights_describe_the_population_not_the_sample() -> None:
    y = np.array([1.0, 0.0])
    tiers = ["D", "A"]
    # the problem company was drawn with certainty, the clean one with probability 1/10
    hit = plan_hit_rate(y, tiers, np.array([1.0, 10.0]), {"A": 0.03, "B": 0.1, "C": 0.4, "D": 1.0})
    assert hit["uniform"] == pytest.approx(1 / 11, abs=1e-4)
    assert hit["tiered"] == pytest.approx(1.0 / (1.0 + 0.3), abs=1e-4)


def test_stability_of_tiers() -> None:
    before = ["A"] * 20 + ["B"] * 60 + ["C"] * 15 + ["D"] * 5
    assert psi(before, before) == pytest.approx(0.0)
    after = ["A"] * 10 + ["B"] * 60 + ["C"] * 25 + ["D"] * 5
    assert psi(before, after) > 0.05
    moved = transitions(before, after)
    assert moved["A"]["A"] == 10 and moved["A"]["B"] == 10 and moved["B"]["C"] == 10
    assert sum(sum(v.values()) for v in moved.values()) == 100


def test_auc_gain_interval_separates_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    risk = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * risk))).astype(float)
    weight = rng.uniform(1, 5, n)
    good = risk + rng.normal(scale=0.5, size=n)
    noise = rng.normal(size=n)
    gain = auc_gain_interval(label, weight, good, noise)
    assert 0 < gain["p05"] <= gain["estimate"] <= gain["p95"]
    tie = auc_gain_interval(label, weight, good, good + 1e-3 * rng.normal(size=n))
    assert tie["p05"] < 0.01 and tie["p95"] > -0.01
