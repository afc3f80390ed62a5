"""The risk model: LightGBM with monotone constraints from the feature specs, calibrated.

`RiskModel` follows scikit-learn's conventions: `__init__` stores its arguments, `fit` validates
and learns (`booster_`, `calibrator_`, `feature_names_`, `categories_`), returns self. Input rows
must be in time order when `calibration_fraction` is used: the latest rows calibrate.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from features.specs import SPECS, EntitySpec, FeatureSpec, Spec, monotone_constraints


def model_columns(specs: tuple[Spec, ...] = SPECS) -> list[str]:
    """The feature columns a model reads, in spec order."""
    return [s.name for s in specs if getattr(s, "in_model", True)]


def model_fills(specs: tuple[Spec, ...] = SPECS) -> dict[str, float]:
    """Values the model reads in place of nulls (`FeatureSpec.model_missing`)."""
    return {
        s.name: s.model_missing
        for s in specs
        if isinstance(s, FeatureSpec) and s.model_missing is not None
    }


def categorical_columns(specs: tuple[Spec, ...] = SPECS) -> list[str]:
    return [s.name for s in specs if isinstance(s, EntitySpec) and s.categorical and s.in_model]


class OneLabelCalibration(ValueError):
    """The rows kept for calibration carry only one label: Platt scaling cannot be fitted."""


class RiskModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Probability that an inspection finds a problem, from point-in-time features."""

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        calibration_fraction: float = 0.2,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    # ---- input --------------------------------------------------------------------------------

    def _frame(self, X: pd.DataFrame, learn: bool = False) -> pd.DataFrame:
        names = model_columns()
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(
                f"missing feature columns: {missing[:5]}{' …' if len(missing) > 5 else ''}"
            )
        frame = X[names].copy()
        cats = categorical_columns()
        if learn:
            self.categories_ = {c: sorted(frame[c].dropna().astype(str).unique()) for c in cats}
        for c in cats:
            text = frame[c].astype("string")
            known = text.where(text.isin(self.categories_[c]))  # unseen levels → missing
            frame[c] = pd.Categorical(known, categories=self.categories_[c])
        fills = model_fills()
        for c in names:
            if c not in cats:
                frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
                if c in fills:
                    frame[c] = frame[c].fillna(fills[c])
        return frame

    # ---- learning -----------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any, sample_weight: Any = None) -> RiskModel:
        labels = np.asarray(y, dtype=float)
        if len(labels) != len(X):
            raise ValueError(f"{len(X)} rows but {len(labels)} labels")
        if not set(np.unique(labels)) <= {0.0, 1.0} or len(np.unique(labels)) < 2:
            raise ValueError("labels must be 0/1 and contain both classes")
        weights = (
            np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, float)
        )
        if (weights <= 0).any():
            raise ValueError("sample weights must be positive")
        frame = self._frame(X, learn=True)
        self.feature_names_ = list(frame.columns)
        n_cal = int(len(frame) * self.calibration_fraction)
        fit_rows = slice(0, len(frame) - n_cal) if n_cal >= 20 else slice(0, len(frame))
        if n_cal >= 20 and len(np.unique(labels[len(frame) - n_cal :])) < 2:
            raise OneLabelCalibration(
                f"the latest {n_cal} rows, which calibrate the model, carry only label "
                f"{int(labels[-1])}: use more checks or a smaller calibration_fraction"
            )
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "monotone_constraints": monotone_constraints(self.feature_names_),
            "monotone_constraints_method": "advanced",
            # high-cardinality categories (about 160 districts) overfit without these
            "min_data_per_group": 200,
            "cat_smooth": 50.0,
            "cat_l2": 10.0,
            "max_cat_threshold": 16,
            "seed": self.random_state,
            "deterministic": True,
            "num_threads": 2,
            "verbose": -1,
        }
        data = lgb.Dataset(
            frame.iloc[fit_rows], labels[fit_rows], weight=weights[fit_rows],
            categorical_feature=categorical_columns(), free_raw_data=False,
        )  # fmt: skip
        self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        self.classes_ = np.array([0, 1])
        if n_cal >= 20:
            # Platt scaling on the latest rows: strictly increasing, so the model's ranking and
            # hence the tiers are kept, and no two companies tie on a calibration step
            cal = slice(len(frame) - n_cal, len(frame))
            raw = np.asarray(self.booster_.predict(frame.iloc[cal], raw_score=True)).reshape(-1, 1)
            self.calibrator_: LogisticRegression | None = LogisticRegression(C=1e6).fit(
                raw, labels[cal], sample_weight=weights[cal]
            )
            if float(self.calibrator_.coef_[0, 0]) <= 0:
                # the latest rows rank against the model: a falling calibration would turn every
                # feature's direction round (risk falling with penalties); keep the model's own
                warnings.warn(
                    "calibration rows rank against the model (Platt slope "
                    f"{float(self.calibrator_.coef_[0, 0]):.3g} <= 0): probabilities left "
                    "uncalibrated",
                    stacklevel=2,
                )
                self.calibrator_ = None
        else:
            self.calibrator_ = None
        return self

    # ---- prediction ---------------------------------------------------------------------------

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from the booster's log-odds."""
        raw = np.asarray(raw, dtype=float)
        if self.calibrator_ is None:
            return np.asarray(1.0 / (1.0 + np.exp(-raw)), dtype=float)
        coef = float(self.calibrator_.coef_[0, 0])
        intercept = float(self.calibrator_.intercept_[0])
        return np.asarray(1.0 / (1.0 + np.exp(-(coef * raw + intercept))), dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.calibrate(self.raw_score(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's log-odds (before calibration)."""
        return np.asarray(self.booster_.predict(self._frame(X), raw_score=True), dtype=float)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP values (LightGBM's pred_contrib): one column per feature plus the base
        value last; each row sums to `raw_score`."""
        return np.asarray(self.booster_.predict(self._frame(X), pred_contrib=True), dtype=float)
