"""How much of the hidden truth the records reveal: the best ranking any model of these features
could make, for the evaluation report on simulated data.

The plan lift of a model sits between two bounds. The oracle ranks on the truth itself, which
no model can see. The information ceiling is a model that *is* allowed to learn from the truth:
a LightGBM regression of the true log-odds on the same point-in-time features, cross-fitted on
two halves so that every company is ranked by a model that never saw its own truth. What the
production model misses against that ceiling is a modelling shortfall; what the ceiling misses
against the oracle is risk the records do not reveal.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.risk import RiskModel


def cross_fitted_truth_ranking(
    features: pd.DataFrame, truth_probability: np.ndarray, folds: int = 2, seed: int = 0
) -> np.ndarray:
    """Each company's predicted true log-odds from a model fitted on the other folds' truth.

    No monotone constraints: the ceiling bounds any model of these features, not only ours.
    """
    p = np.clip(np.asarray(truth_probability, dtype=float), 1e-6, 1 - 1e-6)
    if len(p) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(p)} truth values")
    if len(p) < 10 * folds:
        raise ValueError(f"too few companies for {folds}-fold cross-fitting: {len(p)}")
    target = np.log(p / (1 - p))
    frame = RiskModel()._frame(features, learn=True)
    fold = np.random.default_rng(seed).integers(0, folds, len(p))
    params = {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 50,
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
    }
    out = np.empty(len(p))
    for k in range(folds):
        fit = fold != k
        booster = lgb.train(params, lgb.Dataset(frame[fit], target[fit]), num_boost_round=400)
        out[~fit] = booster.predict(frame[~fit])
    return out


def logit_normal_plan_lift(
    mean_logit: float,
    sd: float,
    shares: tuple[float, float, float, float] = (0.20, 0.60, 0.15, 0.05),
    rates: tuple[float, float, float, float] = (0.03, 0.10, 0.40, 1.00),
    nodes: int = 200_001,
) -> float:
    """The oracle's plan lift in a world whose true log-odds are normal(mean_logit, sd): tiers by
    the truth itself with `shares`, inspected at `rates`, against a uniform plan of equal size.

    Computed on a fine grid of quantiles, so it is deterministic.
    """
    q = (np.arange(nodes) + 0.5) / nodes
    from scipy.special import expit, ndtri

    p = expit(mean_logit + sd * ndtri(q))  # ascending: tier A first
    edges = np.cumsum(shares)[:3]
    ratio = np.asarray(rates)[np.searchsorted(edges, q, side="right")]
    return float((ratio * p).sum() / ratio.sum() / p.mean())
