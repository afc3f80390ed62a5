"""MLflow tracking and registry for tier models: log a training run, load versions, promote.

The tracking store follows `MLFLOW_TRACKING_URI` and defaults to a SQLite file under the data
directory (`<data_dir>/mlflow/mlflow.db`, artifacts in `<data_dir>/mlflow/artifacts`), so it works
offline. Each training run logs its parameters, metrics, the feature-spec version, plots, the
evaluation report, the validation checks (for fair comparisons later) and one pyfunc model that
bundles model, calibrator, cut-offs and vetoes, registered as a new version of `credit-tier`. The
model carries the project's packages it unpickles and imports (`MODEL_PACKAGES`, as `code_paths`)
and pins the distributions that code imports, so it loads where this project is not installed.

Promotion moves the alias `champion`. A candidate whose feature-spec version differs from the
installed code's is never promoted, not even with `force` (it could not score). A candidate trained
on another label than the champion (`problem` vs `serious`) predicts another outcome: the two
cannot be compared, so it is promoted only with `force` (changing the label is a policy decision).
Otherwise it is promoted when there is no champion, when the champion was trained on another
feature-spec version (it cannot score today's features), or when it beats the champion on the
candidate's validation checks dated after both models' training data (checks either model trained
on would favour it): higher weighted AUC and a Brier score no worse than the champion's +
`BRIER_TOLERANCE`, both models scoring the same rows. With fewer than `MIN_COMPARISON_CHECKS`
such checks, or only one outcome among them, the models cannot be compared fairly and the
candidate is not promoted. `force` promotes anyway and requires a reason. Every decision is tagged
on the version (who, when, why, both labels, the figures, the previous champion).
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sklearn.metrics import brier_score_loss, roc_auc_score

from features.specs import spec_version
from models.bundle import TierModel, TierModelPyfunc
from models.published import CHAMPION, PublishedModels
from training.train import TrainConfig, TrainOutcome

EXPERIMENT = "credit-tier"
BRIER_TOLERANCE = 0.001
MIN_COMPARISON_CHECKS = 200
"""Fewest validation checks, dated after both models' training data, that a comparison needs."""
MODEL_PACKAGES = ("records", "features", "models")
"""The project's packages the logged model unpickles and imports: `models.bundle` and what it
imports, which data flow limits to the stages before training (records → features → models)."""
SERVING_PACKAGES = (
    "lightgbm", "scikit-learn", "pandas", "numpy", "mlflow",
    "duckdb", "pyarrow", "pydantic", "pyyaml", "python-dateutil",
)  # fmt: skip
"""Distributions the logged model's code imports (the last five by `records` and `features`)."""


def pip_requirements() -> list[str]:
    """What loading the logged model needs, pinned to the installed (locked) versions."""
    return [f"{p}=={metadata.version(p)}" for p in SERVING_PACKAGES]


def model_code_paths() -> list[str]:
    """The folders of `MODEL_PACKAGES`, logged with the model (MLflow puts them on `sys.path`
    when it loads it) so that loading needs no install of this project."""
    paths = []
    for name in MODEL_PACKAGES:
        init = importlib.import_module(name).__file__
        if init is None:
            raise RuntimeError(f"package {name} has no __init__.py to locate it by")
        paths.append(str(Path(init).parent))
    return paths


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence MLflow's advice we have considered (cloudpickled wrapper, no signature)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str


class Registry(PublishedModels):
    """Tracking and registry of tier models: log, register, compare, promote."""

    def local_store(self) -> bool:
        """Whether tracking goes to the default SQLite file under the data directory."""
        prefix = "sqlite:///"
        if not self.uri.startswith(prefix):
            return False
        default = (self.data_dir / "mlflow" / "mlflow.db").resolve()
        return Path(self.uri.removeprefix(prefix)).resolve() == default

    def experiment_id(self) -> str:
        """The experiment's id, created on first use; its artifacts go beside the default local
        store, or where another tracking store (`MLFLOW_TRACKING_URI`) puts them."""
        found = self.client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        if not self.local_store():
            return str(self.client.create_experiment(EXPERIMENT))
        root = (self.data_dir / "mlflow" / "artifacts").resolve()
        root.mkdir(parents=True, exist_ok=True)
        return str(self.client.create_experiment(EXPERIMENT, artifact_location=root.as_uri()))

    # ---- logging ------------------------------------------------------------------------------

    def log_training(
        self, outcome: TrainOutcome, config: TrainConfig, plots: bool = True
    ) -> Registered:
        """Log one training run and register its model as a new version."""
        from training.plots import training_plots

        self._activate()
        model, report = outcome.model, outcome.report
        with (
            tempfile.TemporaryDirectory() as tmp,
            mlflow.start_run(experiment_id=self.experiment_id()) as run,
        ):
            work = Path(tmp)
            mlflow.log_params(
                {
                    **{k: json.dumps(v) if isinstance(v, list) else v
                       for k, v in config.params().items()},
                    "spec_version": model.spec_version,
                    "trained_from": str(model.trained_from),
                    "trained_until": str(model.trained_until),
                    "training_examples": report["training_examples"],
                    "validation_examples": report["examples"],
                }
            )  # fmt: skip
            mlflow.log_metrics(flat_metrics(report))
            mlflow.set_tags({"spec_version": model.spec_version, "label": model.label})
            (work / "report.json").write_text(
                json.dumps(report, ensure_ascii=False, indent=2, default=str)
            )
            mlflow.log_artifact(str(work / "report.json"), "evaluation")
            outcome.validation.to_parquet(work / "validation.parquet", index=False)
            mlflow.log_artifact(str(work / "validation.parquet"), "evaluation")
            if plots:
                for path in training_plots(model, outcome.validation, report, work / "plots"):
                    mlflow.log_artifact(str(path), "plots")
            artifacts = model.save(work / "bundle")
            with _quiet("mlflow.pyfunc", "mlflow.models.model"):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=TierModelPyfunc(),
                    artifacts=artifacts,
                    pip_requirements=pip_requirements(),
                    code_paths=model_code_paths(),
                    registered_model_name=self.name,
                    metadata={"spec_version": model.spec_version, "label": model.label},
                )
            version = str(info.registered_model_version)
            self.client.set_model_version_tag(
                self.name, version, "spec_version", model.spec_version
            )
            self.client.set_model_version_tag(self.name, version, "label", model.label)
            self.client.set_model_version_tag(
                self.name, version, "metrics", json.dumps(model.metrics)
            )
            return Registered(version=version, run_id=run.info.run_id)

    # ---- loading ------------------------------------------------------------------------------

    def versions(self) -> list[dict[str, Any]]:
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except MlflowException:
            return []
        if not found:  # no model registered under the name yet (a new store or tracking server)
            return []
        aliases: dict[str, list[str]] = {}
        for alias, v in self.client.get_registered_model(self.name).aliases.items():
            aliases.setdefault(str(v), []).append(alias)
        rows = []
        for mv in sorted(found, key=lambda m: int(m.version)):
            rows.append(
                {
                    "version": str(mv.version),
                    "aliases": aliases.get(str(mv.version), []),
                    "run_id": mv.run_id,
                    "spec_version": mv.tags.get("spec_version"),
                    "label": self._label(mv),
                    "metrics": json.loads(mv.tags.get("metrics", "{}")),
                    "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                        timespec="seconds"
                    ),
                    "promotion": mv.tags.get("promotion"),
                    "promotions": promotions(mv.tags),
                }
            )
        return rows

    def _label(self, mv: ModelVersion) -> str | None:
        """The label a version was trained on: its tag, else (versions registered before labels
        were tagged on versions) its run's tag or parameter."""
        label = mv.tags.get("label")
        if label is None and mv.run_id:
            with contextlib.suppress(MlflowException):
                data = self.client.get_run(mv.run_id).data
                label = data.tags.get("label") or data.params.get("label")
        return str(label) if label is not None else None

    def label(self, ref: str) -> str | None:
        """The label (`problem` or `serious`) a version or alias was trained on."""
        return self._label(self._version(ref))

    # ---- promotion ----------------------------------------------------------------------------

    def validation_frame(self, version: str) -> pd.DataFrame:
        mv = self._version(version)
        self._activate()
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path="evaluation/validation.parquet", dst_path=tmp
            )
            return pd.read_parquet(path)

    def trained_until(self, version: str, model: TierModel) -> date | None:
        """The last check date a version trained on: the bundle's, else the run parameter."""
        if model.trained_until is not None:
            return model.trained_until
        run_id = self._version(version).run_id
        param = self.client.get_run(run_id).data.params.get("trained_until") if run_id else None
        try:
            return date.fromisoformat(param) if param else None
        except ValueError:
            return None

    def compare(self, candidate: str, champion: str) -> dict[str, Any]:
        """Both models on the candidate's validation checks dated after both models' training
        data (a check either trained on would favour it): weighted AUC and Brier score. `fair`
        says whether there were at least `MIN_COMPARISON_CHECKS` of them with both outcomes;
        `better` is the promotion rule and needs a fair comparison."""
        models = {"candidate": self.load(candidate), "champion": self.load(champion)}
        labels = {role: m.label for role, (_, m) in models.items()}
        if labels["candidate"] != labels["champion"]:
            raise ValueError(
                f"version {candidate} was trained on label '{labels['candidate']}' and version "
                f"{champion} on label '{labels['champion']}': scored on the candidate's "
                "validation checks, the champion would be judged on an outcome it does not "
                "predict"
            )
        frame = self.validation_frame(candidate)
        until = {role: self.trained_until(v, m) for role, (v, m) in models.items()}
        known = [d for d in until.values() if d is not None]
        after = max(known) if len(known) == len(until) else None
        days = pd.to_datetime(frame["check_date"])
        window = (
            frame[(days > pd.Timestamp(after)).to_numpy()] if after is not None else frame.iloc[:0]
        )
        y = window["label"].to_numpy(float)
        w = window["weight"].to_numpy(float)
        both_outcomes = len(np.unique(y)) == 2
        window_days = pd.to_datetime(window["check_date"])
        out: dict[str, Any] = {
            "examples": len(window),
            "validation_checks": len(frame),
            "window": {
                "after": str(after) if after is not None else None,
                "from": str(window_days.min().date()) if len(window) else None,
                "until": str(window_days.max().date()) if len(window) else None,
            },
            "min_checks": MIN_COMPARISON_CHECKS,
            "fair": bool(both_outcomes and len(window) >= MIN_COMPARISON_CHECKS),
        }
        scores = {}
        for role, (version, model) in models.items():
            out[role] = {
                "version": version,
                "label": model.label,
                "trained_until": str(until[role]),
                "auc": None,
                "brier": None,
            }
            if both_outcomes:
                p = model.predict_proba(window)
                scores[role] = p
                out[role]["auc"] = round(float(roc_auc_score(y, p, sample_weight=w)), 5)
                out[role]["brier"] = round(float(brier_score_loss(y, p, sample_weight=w)), 5)
        c, ch = out["candidate"], out["champion"]
        out["better"] = bool(
            out["fair"] and c["auc"] > ch["auc"] and c["brier"] <= ch["brier"] + BRIER_TOLERANCE
        )
        if both_outcomes:
            out["auc_gain"] = auc_gain_interval(y, w, scores["candidate"], scores["champion"])
        return out

    def promote(
        self, version: str, force: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        """Set `champion` to `version` if it beats the current champion (or `force` with a
        reason); returns the decision, which is also tagged on the version."""
        if force and not (reason and reason.strip()):
            raise ValueError("--force needs a --reason, which is logged with the promotion")
        mv = self._version(version)
        version = str(mv.version)
        candidate_spec = mv.tags.get("spec_version")
        if candidate_spec != spec_version():
            raise ValueError(
                f"version {version} of {self.name} was trained on feature spec {candidate_spec}, "
                f"this code computes {spec_version()}: it could not score, so it is never "
                "promoted (not even with --force); retrain it with this code"
            )
        current = None
        with contextlib.suppress(MlflowException):
            current = str(self.client.get_model_version_by_alias(self.name, CHAMPION).version)
        label = self._label(mv)
        champion_label = self.label(current) if current is not None else None
        decision: dict[str, Any] = {
            "model": self.name, "version": version, "label": label,
            "previous_champion": current, "champion_label": champion_label,
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "by": getpass.getuser(),
        }  # fmt: skip
        if current == version:
            decision.update(promoted=False, why=f"version {version} is already champion")
            self._tag_decision(mv, decision)
            return decision
        if current is None:
            decision.update(promoted=True, why="no champion yet")
        elif label != champion_label:
            # checked before the champion's spec: even a stale champion defines what the tiers
            # mean, and a new label changes that
            decision.update(
                promoted=False,
                why=f"version {version} was trained on label '{label}', the champion (version "
                f"{current}) on label '{champion_label}': they predict different outcomes and "
                "cannot be compared; changing the label needs --force with a --reason",
            )
        else:
            champion_spec = self.client.get_model_version(self.name, current).tags.get(
                "spec_version"
            )
            if champion_spec != spec_version():
                decision.update(
                    promoted=True,
                    why=f"the champion was trained on feature spec {champion_spec}, this code "
                    f"computes {spec_version()}",
                )
            else:
                comparison = self.compare(version, current)
                decision["comparison"] = comparison
                c, ch = comparison["candidate"], comparison["champion"]
                span = comparison["window"]
                if not comparison["fair"]:
                    decision.update(
                        promoted=False,
                        why=f"the models cannot be compared fairly: {comparison['examples']} of "
                        f"the candidate's {comparison['validation_checks']} validation checks "
                        f"are dated after both models' training data (after {span['after']}; "
                        f"candidate trained until {c['trained_until']}, champion until "
                        f"{ch['trained_until']}), at least {MIN_COMPARISON_CHECKS} with both "
                        "outcomes are needed",
                    )
                else:
                    figures = (
                        f"AUC {c['auc']:.4f} vs {ch['auc']:.4f}, Brier {c['brier']:.4f} vs "
                        f"{ch['brier']:.4f} on {comparison['examples']} validation checks "
                        f"{span['from']} – {span['until']}"
                    )
                    decision.update(
                        promoted=comparison["better"],
                        why=("beats the champion: " if comparison["better"]
                             else "does not beat the champion: ") + figures,
                    )  # fmt: skip
        if not decision["promoted"] and force:
            decision.update(promoted=True, forced=True, reason=reason)
        elif reason:
            decision["reason"] = reason
        if decision["promoted"]:
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
        self._tag_decision(mv, decision)
        return decision

    def _tag_decision(self, mv: ModelVersion, decision: dict[str, Any]) -> None:
        """Every decision on a version, kept: `promotion.<n>` in order (`promotions`), and the
        latest also as `promotion`."""
        text = json.dumps(decision, ensure_ascii=False, default=str)
        earlier = promotions(mv.tags)
        name, version = self.name, str(mv.version)
        if earlier and "promotion.1" not in mv.tags:  # its one decision before they were numbered
            self.client.set_model_version_tag(name, version, "promotion.1", mv.tags["promotion"])
        n = len(earlier) + 1
        self.client.set_model_version_tag(name, version, f"promotion.{n}", text)
        self.client.set_model_version_tag(name, version, "promotion", text)


def promotions(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The promotion decisions tagged on a version, oldest first (a version promoted before
    they were numbered: its one `promotion` tag)."""
    numbered = sorted(
        (int(k.split(".", 1)[1]), v) for k, v in tags.items()
        if k.startswith("promotion.") and k.split(".", 1)[1].isdigit()
    )  # fmt: skip
    if not numbered and "promotion" in tags:
        return [json.loads(tags["promotion"])]
    return [json.loads(v) for _, v in numbered]


def auc_gain_interval(
    label: np.ndarray,
    weight: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """The candidate's weighted-AUC gain over the champion with a 90 % paired bootstrap interval
    (both models scored on the same resampled checks): how sure "better" is. Informational; the
    promotion rule itself uses the point estimates."""
    rng = np.random.default_rng(seed)
    n = len(label)
    gains = []
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        if len(np.unique(label[i])) < 2:
            continue
        gains.append(
            roc_auc_score(label[i], candidate[i], sample_weight=weight[i])
            - roc_auc_score(label[i], champion[i], sample_weight=weight[i])
        )
    estimate = roc_auc_score(label, candidate, sample_weight=weight) - roc_auc_score(
        label, champion, sample_weight=weight
    )
    low, high = np.percentile(gains, [5, 95]) if gains else (np.nan, np.nan)
    return {
        "estimate": round(float(estimate), 5),
        "p05": round(float(low), 5),
        "p95": round(float(high), 5),
        "resamples": len(gains),
    }


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report's figures as MLflow metrics (tier rates, plan lifts, truth figures)."""
    out: dict[str, float] = {
        k: float(report[k]) for k in ("auc", "pr_auc", "brier", "calibration_error")
    }

    def tiers(prefix: str, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["problem_rate"] is not None:
                out[f"{prefix}problem_rate_{r['tier']}"] = float(r["problem_rate"])

    tiers("", report["tiers"])
    out["plan_lift"] = float(report["plan"]["lift"])
    for t, share in report.get("population", {}).get("shares", {}).items():
        out[f"population_share_{t}"] = float(share)
    if "stability" in report:
        out["psi"] = float(report["stability"]["psi"])
        out["tier_changed_share"] = float(report["stability"]["changed_share"])
    truth = report.get("truth")
    if truth:
        tiers("truth_", truth["tiers"])
        out["truth_plan_lift"] = float(truth["plan"]["lift"])
        out["truth_oracle_plan_lift"] = float(truth["oracle_plan"]["lift"])
        if "population" in truth:
            pop = truth["population"]
            out["truth_population_plan_lift"] = float(pop["plan"]["lift"])
            out["truth_population_oracle_plan_lift"] = float(pop["oracle_plan"]["lift"])
            if "information_plan" in pop:
                out["truth_population_information_plan_lift"] = float(
                    pop["information_plan"]["lift"]
                )
    return {k: v for k, v in out.items() if np.isfinite(v)}
