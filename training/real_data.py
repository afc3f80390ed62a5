"""Figures on the real data sets of ../shared/data: a Boston back-test and a BDCI 2020 CV.

Both functions read a `Store` into which the data sets were ingested with the packaged mappings
(`ingest_boston`, `ingest_bdci`), and return plain dicts of figures for tests, a CLI or a
notebook to print.

- `boston_backtest`: train the risk model on the inspections before a split date, rank the later
  inspections by the predicted probability of a severe violation (features as of the day before
  each inspection) and measure how many of the later severe violations the top 20 % finds,
  against 20 % for inspecting in random order.
- `bdci_cross_validation`: stratified K-fold AUC, F1, precision and recall of the illegal
  fund-raising label from features built as of one date after all records, without the model
  seeing the company id or anything derived from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.metrics import (
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold

from features.builder import build_features
from features.specs import SPECS, FeatureSpec, Spec
from models.risk import RiskModel, categorical_columns, model_columns
from records import uscc
from records.catalogue import Dimension
from records.ingest import ingest_file
from records.mapping import load_mapping
from records.store import Store
from training.dataset import training_frame

BOSTON_FILE = Path("boston-restaurant-inspections") / "AllViolations.csv"
BDCI_DIR = Path("bdci2020-illegal-fundraising")
BDCI_TABLES = (
    ("annual_report_info.csv", "bdci-annual-report"),
    ("tax_info.csv", "bdci-tax"),
    ("news_info.csv", "bdci-news"),
    ("other_info.csv", "bdci-other"),
)

BOSTON_SPLIT = date(2013, 1, 1)
"""Train on 2006–2012 (25,150 inspections; 2006 has only 6), hold out 2013 – June 2015."""

TOP_FRACTION = 0.20

ID_DERIVED_COLUMNS = ("region", "entity_type", "individual_business")
"""Feature columns that come from the company code, which BDCI derives from the id string.

`region` is characters 3–8 of the code and `entity_type` (hence `individual_business`) its first
two. For BDCI the code is `records.uscc.derive(id)`: a stand-in kind "91" and region "110000"
followed by a SHA-256 hash of the id, so these columns are constant and carry nothing of the id,
but they are derived from it and are withheld anyway (set to missing where the model reads them;
`region` is not a model column at all), so that no future change to the derivation (e.g. a region
taken from the id) can reach the model. No other column reads the code but for whom a feature
applies to (`FeatureSpec.applies_to`, by the entity type): every code here is of kind 91, an
enterprise, to which every feature applies alike; the code itself (`uscc`) and `as_of` are never
model inputs.
"""


def _bdci_extra(name: str, category: str, aggregation: Any, **kw: Any) -> FeatureSpec:
    dimension: Dimension = "social" if category in ("news", "third_party_signal") else "operations"
    return FeatureSpec(name, dimension, (category,), aggregation, 0, name, name, **kw)


def _signal(name: str) -> FeatureSpec:
    return _bdci_extra(name, "third_party_signal", "latest_amount", attribute_equals=("name", name))


BDCI_EXTRA_SPECS: tuple[Spec, ...] = (
    _bdci_extra("annual_reports_all", "annual_report", "count"),
    _bdci_extra("annual_report_employees_sum", "annual_report", "sum_attribute",
                attribute="employees"),
    _bdci_extra("annual_report_fund_sum", "annual_report", "sum_attribute",
                attribute="fund_amount"),
    _bdci_extra("tax_declarations_all", "tax_declaration", "count"),
    _bdci_extra("tax_amount_all", "tax_declaration", "sum_amount"),
    _bdci_extra("news_12m", "news", "count"),
    _bdci_extra("neutral_news_12m", "news", "count", severities=("neutral",)),
    _signal("court_judgment_count"),
    _signal("trademark_count"),
    _signal("patent_count"),
)  # fmt: skip
"""Extra point-in-time features over the same stored BDCI records, for the `extended` figure.

The project's SPECS read little of BDCI as of 2020: tax declarations end in 2016 and count only
over 12 months, annual reports count only by timeliness (which the data does not give), news
expires after a year, and the court/trademark/patent counts are third-party signals that no spec
names. These read the same records over all time (news still expires by the catalogue's
publicity rule). Direction 0: no monotone constraint is claimed.
"""


# ---- ingestion ----------------------------------------------------------------------------------


def ingest_boston(store: Store, data_dir: Path, today: date) -> None:
    """Ingest AllViolations.csv: restaurants as entities first, then inspections as spot checks."""
    path = data_dir / BOSTON_FILE
    ingest_file(store, path, "entities", "boston", "boston-entities", today, history=True)
    ingest_file(store, path, "records", "boston", "boston-inspections", today, history=True)


def ingest_bdci(store: Store, data_dir: Path, today: date) -> None:
    """Ingest the BDCI 2020 tables: companies (without their label) first, then the records."""
    base = data_dir / BDCI_DIR
    ingest_file(
        store, base / "entprise_info.csv", "entities", "bdci", "bdci-entities", today, history=True
    )
    for name, mapping in BDCI_TABLES:
        ingest_file(store, base / name, "records", "bdci", mapping, today, history=True)


# ---- ranking figures ----------------------------------------------------------------------------


def top_share(label: Any, score: Any, fraction: float = TOP_FRACTION) -> float:
    """Share of all positives that fall in the top `fraction` of rows ranked by `score`.

    Rows tied with the score at the cut are taken in random order: each contributes its group's
    positive rate for the places left, so ties neither help nor hurt. Random order gives
    `fraction` in expectation.
    """
    y = np.asarray(label, dtype=float)
    s = np.asarray(score, dtype=float)
    if y.sum() == 0:
        return float("nan")
    k = fraction * len(y)
    cut = np.sort(s)[::-1][max(int(np.ceil(k)) - 1, 0)]
    above, tied = s > cut, s == cut
    found = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float(found / y.sum())


def _ranking(label: Any, score: Any, weight: Any = None) -> dict[str, float]:
    share = top_share(label, score)
    return {
        "top20_share": round(share, 4),
        "lift": round(share / TOP_FRACTION, 3),
        "auc": round(float(roc_auc_score(label, score, sample_weight=weight)), 4),
    }


# ---- Boston -------------------------------------------------------------------------------------


def boston_backtest(
    store: Store,
    split_date: date = BOSTON_SPLIT,
    model: RiskModel | None = None,
    baseline: str = "spot_check_serious_3y",
) -> dict[str, Any]:
    """Back-test of risk-ranked inspection on the Boston inspections (label: a severe violation).

    Method: every stored inspection is an example with features as of the day before it
    (`training.dataset.training_frame`, label `serious` = at least one *** violation; the data has
    no inclusion probabilities, so all weights are 1). `model` (default `RiskModel()` with its
    default hyper-parameters, not tuned on the held-out period) is fitted on the inspections
    before `split_date`, in time order (the latest 20 % calibrate). The held-out inspections on
    or after `split_date` are ranked by predicted probability; their features are also as of the
    day before each one, so a held-out inspection may use the results of earlier held-out
    inspections, as a plan drawn that day could.

    Figures for the held-out inspections: their number, the base rate of severe violations, the
    share of all severe-violation inspections found in the top 20 % of the ranking (random order:
    20 %; the best possible is min(1, 0.2 / base rate)), the lift (share / 0.2) and AUC; the same
    for `baseline`, an honest rule without a model: ranking by one feature (default: the number
    of inspections with a severe violation in the last three years).

    `plan_as_of_split` is the same comparison for a plan drawn once: restaurants with a held-out
    inspection, ranked by features as of the day before `split_date`, against whether their first
    held-out inspection found a severe violation.
    """
    frame = training_frame(store, "serious").to_pandas()
    if frame.empty:
        raise ValueError("no spot checks in the store: ingest the Boston inspections first")
    early = frame["check_date"] < split_date
    train, test = frame[early], frame[~early]
    if train.empty or test.empty or train["label"].nunique() < 2:
        raise ValueError(f"split {split_date} leaves no training or no held-out inspections")
    fitted = (model if model is not None else RiskModel()).fit(
        train, train["label"], sample_weight=train["weight"]
    )
    y = test["label"].to_numpy(dtype=float)
    w = test["weight"].to_numpy(dtype=float)
    proba = fitted.predict_proba(test)[:, 1]
    base_rate = float(np.average(y, weights=w))

    # a plan drawn once, the day before the split: each restaurant's first held-out inspection
    first = test.drop_duplicates("uscc", keep="first")
    day_before = split_date - timedelta(days=1)
    plan = build_features(store, day_before, companies=first["uscc"].tolist()).to_pandas()
    plan = plan.merge(first[["uscc", "label"]], on="uscc", validate="one_to_one")
    plan_proba = fitted.predict_proba(plan)[:, 1]

    return {
        "split_date": split_date.isoformat(),
        "train_inspections": len(train),
        "train_period": [str(train["check_date"].min()), str(train["check_date"].max())],
        "train_base_rate": round(float(train["label"].mean()), 4),
        "held_out_inspections": len(test),
        "held_out_period": [str(test["check_date"].min()), str(test["check_date"].max())],
        "held_out_restaurants": int(test["uscc"].nunique()),
        "base_rate": round(base_rate, 4),
        "random_top20_share": TOP_FRACTION,
        "best_possible_top20_share": round(min(1.0, TOP_FRACTION / base_rate), 4),
        "model": _ranking(y, proba, w),
        "baseline": {
            "rule": f"rank by {baseline}",
            **_ranking(y, test[baseline].to_numpy(float), w),
        },
        "plan_as_of_split": {
            "as_of": day_before.isoformat(),
            "restaurants": len(plan),
            "base_rate": round(float(plan["label"].mean()), 4),
            "model": _ranking(plan["label"], plan_proba),
            "baseline": _ranking(plan["label"], plan[baseline].to_numpy(float)),
        },
    }


# ---- BDCI 2020 ----------------------------------------------------------------------------------


def bdci_labels(labels_path: Path) -> pd.DataFrame:
    """entprise_info.csv as (uscc, label): the code derived from `id` exactly as the
    bdci-entities mapping derives it (same namespace, kind and region), so rows join to the
    stored entities and records. The id itself is dropped."""
    derive = load_mapping("bdci-entities").derive
    if derive is None:
        raise ValueError("the bdci-entities mapping no longer derives codes from the id")
    raw = pd.read_csv(labels_path, dtype={"id": str, "label": int})
    codes = [
        uscc.derive(i.strip(), derive.namespace, derive.kind, derive.region) for i in raw["id"]
    ]
    return pd.DataFrame({"uscc": codes, "label": raw["label"].to_numpy()})


def latest_date(store: Store) -> date:
    """The latest event or recorded date of any stored record or entity."""
    with store.connect() as con:
        rows = con.execute(
            """SELECT max(d) FROM (
                SELECT greatest(max(event_date), max(recorded_date)) AS d FROM records
                UNION ALL SELECT max(recorded_date) FROM entities)"""
        ).fetchall()
    if not rows or rows[0][0] is None:
        raise ValueError("the store holds no records")
    day: date = rows[0][0]
    return day


def _best_f1_threshold(label: np.ndarray, score: np.ndarray) -> float:
    """The score threshold (predict positive when score ≥ threshold) that maximises F1."""
    precision, recall, thresholds = precision_recall_curve(label, score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _fit_predict(
    feature_set: str, X: pd.DataFrame, y: np.ndarray, X_new: pd.DataFrame, seed: int
) -> np.ndarray:
    """Fit on (X, y) and return probabilities for X_new."""
    if feature_set == "specs":
        model = RiskModel(random_state=seed).fit(X, y)
        return np.asarray(model.predict_proba(X_new)[:, 1], dtype=float)
    defaults = RiskModel()
    params = {
        "objective": "binary",
        "learning_rate": defaults.learning_rate,
        "num_leaves": defaults.num_leaves,
        "min_child_samples": defaults.min_child_samples,
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=defaults.n_estimators)
    return np.asarray(booster.predict(X_new), dtype=float)


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; each part's rows are shuffled (the label file has no time order, and
    RiskModel calibrates on the last rows it is given, which must then be a random subset)."""
    rng = np.random.default_rng(seed)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    return [(rng.permutation(tr), rng.permutation(te)) for tr, te in split]


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values)), 4)}


def bdci_cross_validation(
    store: Store,
    labels_path: Path,
    folds: int = 5,
    seed: int = 0,
    as_of: date | None = None,
    feature_set: Literal["specs", "extended"] = "specs",
    inner_folds: int = 3,
) -> dict[str, Any]:
    """Stratified K-fold CV of the BDCI 2020 illegal fund-raising label, without the id string.

    Rows: one per company of entprise_info.csv (`bdci_labels`: the id only becomes the derived
    code, the join key). Features: `build_features(store, as_of)` with `as_of` the day after the
    latest stored date (default), so every record is known and the windows end there. The model
    sees only the model's feature columns (`models.risk.model_columns`): never `uscc` or `as_of`,
    and those of `ID_DERIVED_COLUMNS` it reads are set to missing. The id's first 16 hex
    characters cluster companies with very different positive rates (README); nothing of the id
    reaches the model, so folds can be plain stratified ones.

    `feature_set`:
    - `specs` (the project's model): `RiskModel()` with default hyper-parameters on the SPECS
      columns, monotone constraints and Platt calibration on a random 20 % of each training part.
    - `extended`: SPECS plus `BDCI_EXTRA_SPECS` (all-time counts of the same stored records),
      with a plain LightGBM of RiskModel's default hyper-parameters and no constraints, since
      RiskModel reads exactly the SPECS columns.

    Per outer fold: AUC of the held-out part, and F1, precision and recall of hard predictions
    at a threshold chosen on the training part only: the threshold that maximises F1 on
    out-of-fold predictions of an inner `inner_folds`-fold CV within the training part. Reported
    as mean and standard deviation over the outer folds, with each fold's threshold.
    """
    labels = bdci_labels(labels_path)
    day = as_of if as_of is not None else latest_date(store) + timedelta(days=1)
    specs = SPECS if feature_set == "specs" else SPECS + BDCI_EXTRA_SPECS
    features = build_features(store, day, companies=labels["uscc"].tolist(), specs=specs)
    frame = labels.merge(features.to_pandas(), on="uscc", how="left", validate="one_to_one")
    X = frame[model_columns(specs)].copy()
    withheld = [c for c in ID_DERIVED_COLUMNS if c in X.columns]
    for c in withheld:
        X[c] = None  # derived from the id (see ID_DERIVED_COLUMNS)
    if feature_set == "extended":  # plain LightGBM: numeric columns only
        X = X.drop(columns=[*categorical_columns(specs), *withheld], errors="ignore").astype(float)
    y = frame["label"].to_numpy(dtype=int)

    per_fold: list[dict[str, float]] = []
    for k, (train, test) in enumerate(_folds(y, folds, seed)):
        oof = np.zeros(len(train))
        for inner_train, inner_test in _folds(y[train], inner_folds, seed + 1 + k):
            oof[inner_test] = _fit_predict(
                feature_set, X.iloc[train[inner_train]], y[train[inner_train]],
                X.iloc[train[inner_test]], seed,
            )  # fmt: skip
        threshold = _best_f1_threshold(y[train], oof)
        proba = _fit_predict(feature_set, X.iloc[train], y[train], X.iloc[test], seed)
        hard = (proba >= threshold).astype(int)
        per_fold.append(
            {
                "auc": float(roc_auc_score(y[test], proba)),
                "f1": float(f1_score(y[test], hard, zero_division=0)),
                "precision": float(precision_score(y[test], hard, zero_division=0)),
                "recall": float(recall_score(y[test], hard, zero_division=0)),
                "threshold": threshold,
                "flagged_share": float(hard.mean()),
            }
        )
    informative = [c for c in X.columns if X[c].nunique(dropna=False) > 1]
    return {
        "feature_set": feature_set,
        "model": "RiskModel" if feature_set == "specs" else "LightGBM (RiskModel defaults)",
        "as_of": day.isoformat(),
        "companies": len(frame),
        "positives": int(y.sum()),
        "positive_rate": round(float(y.mean()), 4),
        "companies_with_any_feature": int((X[informative].fillna(0) != 0).any(axis=1).sum()),
        "informative_columns": informative,
        "withheld_columns": withheld,
        "folds": folds,
        "threshold_rule": (
            f"max F1 on {inner_folds}-fold out-of-fold predictions of the training part"
        ),
        **{m: _mean_sd([f[m] for f in per_fold]) for m in ("auc", "f1", "precision", "recall")},
        "thresholds": [round(f["threshold"], 4) for f in per_fold],
        "flagged_share": _mean_sd([f["flagged_share"] for f in per_fold]),
    }


def boston_heterogeneity(data_dir: Path, min_gap_days: int = 60, nodes: int = 10) -> dict[str, Any]:
    """How unequal the real inspection history is: a random-effects logit of "the inspection
    found a severe violation" with one effect per restaurant and one per restaurant and year,
    fitted by maximum likelihood (Gauss-Hermite quadrature, `nodes` points per effect).

    Only routine inspections count: one that follows the restaurant's previous inspection within
    `min_gap_days` is a re-inspection of a failure and would make the yearly effect look larger.
    The standard deviations are on the log-odds scale, comparable with the simulated province's
    `propensity_<Y>` (`simulated_heterogeneity`).
    """
    from scipy.optimize import minimize
    from scipy.special import expit, logsumexp

    raw = pd.read_csv(data_dir / BOSTON_FILE, parse_dates=["date"])
    raw = raw.sort_values(["restaurant_id", "date"], kind="stable")
    gap = raw.groupby("restaurant_id")["date"].diff().dt.days
    routine = raw[gap.isna() | (gap > min_gap_days)].copy()
    routine["severe"] = (routine["***"] > 0).astype(int)
    routine["year"] = routine["date"].dt.year
    cells = routine.groupby(["restaurant_id", "year"])["severe"].agg(["sum", "count"])
    restaurant = pd.factorize(cells.index.get_level_values(0))[0]
    k, n = cells["sum"].to_numpy(float), cells["count"].to_numpy(float)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    log_w = np.log(w / np.sqrt(2 * np.pi))
    restaurants = int(restaurant.max()) + 1

    def negative_log_likelihood(theta: np.ndarray) -> float:
        mu, sd_restaurant, sd_year = theta[0], np.exp(theta[1]), np.exp(theta[2])
        eta = mu + sd_restaurant * x[None, :, None] + sd_year * x[None, None, :]
        ll = k[:, None, None] * np.log(expit(eta)) + (n - k)[:, None, None] * np.log(expit(-eta))
        per_cell = logsumexp(ll + log_w[None, None, :], axis=2)  # the year effect integrated out
        per_restaurant = np.zeros((restaurants, nodes))
        np.add.at(per_restaurant, restaurant, per_cell)
        return float(-logsumexp(per_restaurant + log_w[None, :], axis=1).sum())

    fit = minimize(
        negative_log_likelihood, np.array([0.0, -0.2, -1.0]), method="Nelder-Mead",
        options={"maxiter": 600, "xatol": 1e-4, "fatol": 1e-3},
    )  # fmt: skip
    mu, sd_restaurant, sd_year = float(fit.x[0]), float(np.exp(fit.x[1])), float(np.exp(fit.x[2]))
    return {
        "routine_inspections": len(routine),
        "restaurants": restaurants,
        "severe_rate": round(float(routine["severe"].mean()), 4),
        "mean_logit": round(mu, 3),
        "sd_restaurant": round(sd_restaurant, 3),
        "sd_year": round(sd_year, 3),
        "sd_total": round(float(np.hypot(sd_restaurant, sd_year)), 3),
        "converged": bool(fit.success),
    }


def simulated_heterogeneity(truth_companies: Path, column: str) -> dict[str, float]:
    """The same spread for a simulated province: log-odds of its companies' `propensity_<Y>`
    (the chance an inspection that year finds a problem) and of their persistent part."""
    truth = pq.read_table(truth_companies, columns=["base_propensity", column]).to_pandas()

    def logit(p: pd.Series) -> np.ndarray:
        q = np.clip(p.to_numpy(float), 1e-9, 1 - 1e-9)
        return np.asarray(np.log(q / (1 - q)))

    year, base = logit(truth[column]), logit(truth["base_propensity"])
    return {
        "companies": len(truth),
        "mean_rate": round(float(truth[column].mean()), 4),
        "mean_logit": round(float(year.mean()), 3),
        "sd_persistent": round(float(base.std()), 3),
        "sd_total": round(float(year.std()), 3),
    }


__all__ = [
    "BDCI_EXTRA_SPECS",
    "ID_DERIVED_COLUMNS",
    "bdci_cross_validation",
    "bdci_labels",
    "boston_backtest",
    "boston_heterogeneity",
    "ingest_bdci",
    "ingest_boston",
    "latest_date",
    "simulated_heterogeneity",
    "top_share",
]
