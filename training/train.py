"""Train a tier model from the store and evaluate it: the work behind `credsup train`.

1. Examples: every stored spot check, features as of the day before it, weighted by the inverse
   of its inclusion probability (`training.dataset`).
2. Split by time: train on earlier checks, validate on the latest `validation_days`.
3. Fit the calibrated risk model on the earlier checks (its latest 20 % calibrate).
4. Fit the tier cut-offs on the population: every active company's risk as of the last check
   date, so that the target shares describe the companies that will be tiered.
5. Evaluate on the validation checks (`training.evaluate.report`); compare the tiers of the
   population with those of the previous model (PSI, transitions; not when it was trained on
   another feature spec, and the report says so); on simulated data, read the hidden truth of
   the validation checks and repeat the tier and plan figures against it.

What could not be used is said, not skipped in silence: spot checks whose stored inclusion
probability is no probability (weighted 1, counted in the report), a truth folder that is not
there (`MissingTruth`, before any work).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.builder import build_features
from features.specs import spec_version
from models.bundle import TierModel
from models.risk import OneLabelCalibration, RiskModel
from models.tiers import TIERS, TierPolicy
from records.store import Store
from training.ceiling import cross_fitted_truth_ranking
from training.dataset import (
    MIN_VALIDATION_CHECKS,
    MIN_VALIDATION_EACH_LABEL,
    Label,
    time_split,
    training_frame,
    triggered_left_out,
)
from training.evaluate import plan_hit_rate, psi, report, tier_table, transitions


@dataclass(frozen=True)
class TrainConfig:
    label: Label = "problem"
    validation_days: int = 183
    shares: tuple[float, float, float, float] = (0.20, 0.60, 0.15, 0.05)
    thresholds: tuple[float, float, float] | None = None
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 50
    calibration_fraction: float = 0.2
    seed: int = 0
    until: date | None = None
    """Use only checks made by this day, as if training then (features are point in time, so
    this is the model one would have had on that day: for backtests)."""

    def params(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else str(v) if isinstance(v, date) else v
            for k, v in asdict(self).items()
        }


@dataclass
class TrainOutcome:
    model: TierModel
    report: dict[str, Any]
    validation: pd.DataFrame
    """Validation checks: record_id, uscc, check_date, as_of, label, weight, features."""
    population: pd.DataFrame
    """The population snapshot the cut-offs were fitted on: uscc, as_of, probability, tier."""


class NotEnoughData(ValueError):
    pass


class MissingTruth(FileNotFoundError):
    """The hidden-truth folder asked for, or the file it needs, is not there."""


TRUTH_CHECKS = "spot_checks.parquet"
"""The file of a truth folder (`credsup simulate --out SIM` writes SIM/truth) every report needs."""


def check_truth_dir(truth_dir: Path) -> None:
    """Refuse a truth folder that is not there or lacks `TRUTH_CHECKS`, naming what is missing."""
    if not truth_dir.is_dir():
        raise MissingTruth(
            f"truth folder {truth_dir} does not exist (the `truth` folder that "
            "`credsup simulate --out SIM` writes: SIM/truth)"
        )
    if not (truth_dir / TRUTH_CHECKS).is_file():
        hint = (
            f"; did you mean {truth_dir / 'truth'}?"
            if (truth_dir / "truth" / TRUTH_CHECKS).is_file()
            else ""
        )
        raise MissingTruth(f"truth folder {truth_dir} has no {TRUTH_CHECKS}{hint}")


def _check(frame: pd.DataFrame, what: str) -> None:
    if len(frame) == 0:
        raise NotEnoughData(f"no {what} spot checks in the store")
    if frame["label"].nunique() < 2:
        raise NotEnoughData(f"{what} spot checks carry only one label ({frame['label'].iloc[0]})")


def population_snapshot(store: Store, as_of: date) -> pd.DataFrame:
    """Features of every company registered by `as_of` and active on that day."""
    feats = build_features(store, as_of).to_pandas()
    active: pd.DataFrame = feats[feats["active"].fillna(0) > 0].reset_index(drop=True)
    return active


def _period_column(truth: pa.Schema, day: date) -> str | None:
    """The truth column `propensity_<Y>` of the simulated year that contains `day`."""
    meta = truth.metadata or {}
    end_text = meta.get(b"end")
    if end_text is None:
        return None
    end = date.fromisoformat(end_text.decode())
    year = day.year if (day.month, day.day) <= (end.month, end.day) else day.year + 1
    name = f"propensity_{year}"
    return name if name in truth.names else None


def truth_report(
    truth_dir: Path,
    validation: pd.DataFrame,
    tiers: list[str],
    population: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    *,
    label: Label,
) -> dict[str, Any] | None:
    """On simulated data: the tier and plan figures against the hidden truth (`MissingTruth`
    without a truth folder; None when it knows none of the validation checks).

    The truth is a probability that a check finds a problem, so it only measures a model of
    label 'problem'; for another label the report is `{"label": ..., "skipped": why}` and no
    figures (the truth of 'serious' findings is not kept, and 'problem' figures would mislead).

    - `checks`: each validation check's true problem probability in place of its outcome, and
      the same for tiers made by ranking on the truth itself (the best any model could do).
    - `population`: every company of the snapshot with its true propensity in that year: what a
      tier-weighted plan drawn from the whole population would find against a uniform one.
      With the snapshot's `features` (rows in the order of `population`), also the information
      ceiling: tiers ranked by a model of these features fitted on the truth itself
      (`training.ceiling`), the best any model of the records could do.
    """
    check_truth_dir(truth_dir)
    path = truth_dir / TRUTH_CHECKS
    if label != "problem":
        return {
            "label": label,
            "skipped": (
                f"the hidden truth gives only the probability that a check finds a problem "
                f"(label 'problem'), not the label {label!r} this model was trained on"
            ),
        }
    truth = pq.read_table(path, columns=["record_id", "true_problem_probability"]).to_pandas()
    p = validation[["record_id"]].merge(truth, on="record_id", how="left")
    known = p["true_problem_probability"].notna().to_numpy()
    if not known.any():
        return None
    y = p["true_problem_probability"].to_numpy()[known]
    w = validation["weight"].to_numpy()[known]
    t = [x for x, k in zip(tiers, known, strict=True) if k]
    out: dict[str, Any] = {
        "checks": int(known.sum()),
        "tiers": tier_table(y, t, w),
        "plan": plan_hit_rate(y, t, w),
        "oracle_plan": plan_hit_rate(y, _tiers_like(y, t, w), w),
    }
    companies = truth_dir / "companies.parquet"
    if population is not None and companies.exists() and len(population):
        schema = pq.read_schema(companies)
        day = _day(population["as_of"].iloc[0])
        column = _period_column(schema, day)
        if column is not None:
            props = pq.read_table(companies, columns=["uscc", column]).to_pandas()
            rows = population[["uscc", "tier"]].reset_index(drop=True)
            rows["row"] = np.arange(len(rows))
            joined = rows.merge(props, on="uscc", how="inner")
            yp = joined[column].to_numpy(float)
            tp = joined["tier"].tolist()
            ones = np.ones(len(yp))
            out["population"] = {
                "truth_column": column,
                "companies": len(joined),
                "tiers": tier_table(yp, tp, ones),
                "plan": plan_hit_rate(yp, tp, ones),
                "oracle_plan": plan_hit_rate(yp, _tiers_like(yp, tp, ones), ones),
            }
            if features is not None and len(joined) >= 1000:
                if len(features) != len(population):
                    raise ValueError("features and population must have the same rows")
                own = features.iloc[joined["row"].to_numpy()].reset_index(drop=True)
                ranking = cross_fitted_truth_ranking(own, yp)
                out["population"]["information_plan"] = plan_hit_rate(
                    yp, _tiers_like(ranking, tp, ones), ones
                )
    return out


def _tiers_like(score: np.ndarray, tiers: list[str], weight: np.ndarray) -> list[str]:
    """Tiers by ranking on `score`, with the same weighted shares as `tiers`."""
    t = np.asarray(tiers)
    shares = np.array([weight[t == x].sum() for x in TIERS]) / weight.sum()
    order = np.argsort(score, kind="stable")
    cum = np.cumsum(weight[order]) / weight.sum()
    level = np.searchsorted(np.cumsum(shares)[:3], cum, side="left")
    out = np.empty(len(score), dtype=object)
    out[order] = np.asarray(TIERS)[np.minimum(level, 3)]
    return [str(x) for x in out]


def train(
    store: Store,
    config: TrainConfig = TrainConfig(),
    truth_dir: Path | None = None,
    previous: TierModel | None = None,
    previous_version: str | None = None,
) -> TrainOutcome:
    """Train and evaluate (see the module docstring); `previous` is the champion to compare the
    population's tiers with (`previous_version` names it in the report)."""
    if truth_dir is not None:
        check_truth_dir(truth_dir)
    table = training_frame(store, config.label, until=config.until)
    frame = table.to_pandas()
    _check(frame, "stored")
    early_t, late_t = time_split(table, config.validation_days)
    early, late = early_t.to_pandas(), late_t.to_pandas()
    _check(early, "training")
    _check(late, "validation")

    try:
        risk = RiskModel(
            n_estimators=config.n_estimators,
            learning_rate=config.learning_rate,
            num_leaves=config.num_leaves,
            min_child_samples=config.min_child_samples,
            calibration_fraction=config.calibration_fraction,
            random_state=config.seed,
        ).fit(early, early["label"], sample_weight=early["weight"])
    except OneLabelCalibration as exc:
        raise NotEnoughData(str(exc)) from None

    snapshot_day: date = frame["check_date"].max()
    if isinstance(snapshot_day, pd.Timestamp):
        snapshot_day = snapshot_day.date()
    population = population_snapshot(store, snapshot_day)
    policy = TierPolicy(shares=config.shares, thresholds=config.thresholds)
    policy.fit(risk.predict_proba(population)[:, 1])
    model = TierModel(
        risk=risk,
        policy=policy,
        spec_version=spec_version(),
        label=config.label,
        trained_from=_day(early["check_date"].min()),
        trained_until=_day(early["check_date"].max()),
    )

    scored = model.score(late, reasons=0)
    tiers = scored["tier"].tolist()
    result = report(late["label"], scored["probability"], late["weight"], tiers)
    result["training_examples"] = len(early)
    # weighted 1 as unknown (`training.dataset`): say how many, and which, so they can be fixed
    invalid = frame.loc[frame["inclusion_prob_invalid"].astype(bool), "record_id"]
    result["invalid_inclusion_prob"] = len(invalid)
    if len(invalid):
        result["invalid_inclusion_prob_records"] = invalid.head(5).tolist()
    # checks not drawn at random (triggered by a complaint, a referral): left out of the
    # examples, which describe the population through the random draws' weights
    result["triggered_left_out"] = triggered_left_out(table)
    result["validation_from"] = str(_day(late["check_date"].min()))
    result["validation_until"] = str(_day(late["check_date"].max()))
    # the window reaches back beyond `validation_days` when those days held too few checks; a
    # store with too few in all validates on what it has, and says so
    window_start = _day(frame["check_date"].max()) - timedelta(days=config.validation_days - 1)
    result["validation_days"] = config.validation_days
    result["validation_extended"] = _day(late["check_date"].min()) < window_start
    result["validation_short"] = _short(late)
    result["training_short"] = _short(early)  # a model of a handful of checks is no model
    result["model_tiers"] = tier_table(
        late["label"].to_numpy(float), scored["model_tier"].tolist(), late["weight"].to_numpy(float)
    )
    pop = model.score(population, reasons=0)
    counts = pop["tier"].value_counts()
    model_counts = pop["model_tier"].value_counts()
    result["population"] = {
        "as_of": str(snapshot_day),
        "companies": len(pop),
        "shares": {t: round(float(counts.get(t, 0)) / max(len(pop), 1), 4) for t in TIERS},
        # before vetoes and defaults: what the cut-offs achieve against the target shares (a
        # group of companies with one probability is never split between two tiers)
        "model_shares": {
            t: round(float(model_counts.get(t, 0)) / max(len(pop), 1), 4) for t in TIERS
        },
        "target_shares": None
        if config.thresholds
        else dict(zip(TIERS, config.shares, strict=True)),
        "cutoffs": [round(c, 6) for c in policy.cutoffs_],
    }
    if previous is not None and previous.spec_version == model.spec_version:
        before = previous.score(population, reasons=0)["tier"].tolist()
        result["stability"] = {
            "psi": round(psi(before, pop["tier"].tolist()), 5),
            "transitions": transitions(before, pop["tier"].tolist()),
            "changed_share": round(float(np.mean(np.asarray(before) != pop["tier"].to_numpy())), 4),
        }
    elif previous is not None:  # its model reads other features: it cannot score these rows
        champion = f"champion v{previous_version}" if previous_version else "the champion"
        result["stability_skipped"] = (
            f"stability against the champion not computed: {champion} uses feature spec "
            f"{previous.spec_version}, this model {model.spec_version}"
        )
    else:
        result["stability_skipped"] = (
            "stability not computed: there is no champion yet to compare the tiers with"
        )
    if truth_dir is not None:
        truth = truth_report(truth_dir, late, tiers, pop, features=population, label=config.label)
        if truth is not None and "skipped" in truth:
            result["truth_skipped"] = truth["skipped"]
        elif truth is not None:
            result["truth"] = truth
    model.metrics = {k: result[k] for k in ("auc", "pr_auc", "brier", "calibration_error")}
    population_out = pop[["uscc", "as_of", "probability", "tier"]]
    return TrainOutcome(model=model, report=result, validation=late, population=population_out)


def _short(frame: pd.DataFrame) -> bool:
    """Fewer checks than `MIN_VALIDATION_CHECKS`, or fewer than `MIN_VALIDATION_EACH_LABEL` of
    either label: figures (or a model) of so few are not to be relied on."""
    positives = int(frame["label"].astype(bool).sum())
    return bool(
        len(frame) < MIN_VALIDATION_CHECKS
        or min(positives, len(frame) - positives) < MIN_VALIDATION_EACH_LABEL
    )


def _day(value: Any) -> date:
    day: date = value.date() if isinstance(value, pd.Timestamp) else value
    return day
