"""The information ceiling ranks by what the features reveal of the truth, and nothing more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.specs import SPECS
from models.risk import model_columns
from training.ceiling import cross_fitted_truth_ranking
from training.evaluate import plan_hit_rate
from training.train import _tiers_like


def _features(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Model columns: numeric ones random, categorical ones a constant level."""
    frame = pd.DataFrame({"uscc": [f"C{i}" for i in range(n)]})
    kinds = {s.name: s for s in SPECS}
    for name in model_columns():
        if getattr(kinds[name], "categorical", False):
            frame[name] = "x"
        else:
            frame[name] = rng.poisson(1.0, n).astype(float)
    return frame


def _lift(truth: np.ndarray, ranking: np.ndarray) -> float:
    n = len(truth)
    shares = ["A"] * int(0.2 * n) + ["B"] * int(0.6 * n) + ["C"] * int(0.15 * n)
    shares += ["D"] * (n - len(shares))
    ones = np.ones(n)
    return plan_hit_rate(truth, _tiers_like(ranking, shares, ones), ones)["lift"]


def test_revealed_risk_is_ranked_and_hidden_risk_is_not() -> None:
    rng = np.random.default_rng(3)
    features = _features(6000, rng)
    revealed = 1 / (1 + np.exp(-(-2.0 + 0.8 * features["penalties_3y"].to_numpy())))
    hidden = 1 / (1 + np.exp(-(-2.0 + 1.2 * rng.standard_normal(6000))))

    seen = cross_fitted_truth_ranking(features, revealed)
    assert np.corrcoef(seen, np.log(revealed / (1 - revealed)))[0, 1] > 0.95
    assert _lift(revealed, seen) == pytest.approx(_lift(revealed, revealed), abs=0.02)

    unseen = cross_fitted_truth_ranking(features, hidden)
    assert _lift(hidden, unseen) < 1.1 < _lift(hidden, hidden)  # no company's own truth leaks


def test_bad_input_is_refused() -> None:
    features = _features(50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="50 feature rows but 49"):
        cross_fitted_truth_ranking(features, np.full(49, 0.2))
    with pytest.raises(ValueError, match="too few companies"):
        cross_fitted_truth_ranking(features.head(10), np.full(10, 0.2))
