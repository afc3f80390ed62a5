"""The figures `credsup train` logs: ROC curve, calibration, SHAP beeswarm and the tier table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from models.bundle import TierModel
from models.risk import categorical_columns, model_columns


def roc_plot(
    label: np.ndarray, proba: np.ndarray, weight: np.ndarray, auc: float, path: Path
) -> None:
    fpr, tpr, _ = roc_curve(label, proba, sample_weight=weight)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"model (weighted AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC, validation checks"
    )
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def calibration_plot(
    label: np.ndarray, proba: np.ndarray, weight: np.ndarray, path: Path, bins: int = 10
) -> None:
    order = np.argsort(proba, kind="stable")
    predicted, observed = [], []
    for part in np.array_split(order, bins):
        if len(part):
            predicted.append(np.average(proba[part], weights=weight[part]))
            observed.append(np.average(label[part], weights=weight[part]))
    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(max(predicted), max(observed)) * 1.05
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ax.plot(predicted, observed, "o-", label="model (equal-count bins)")
    ax.set(xlabel="predicted problem probability", ylabel="observed problem rate (weighted)",
           title="Calibration, validation checks")  # fmt: skip
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def tier_plot(report: dict[str, Any], path: Path) -> None:
    rows = report["tiers"]
    tiers = [r["tier"] for r in rows]
    rates = [r["problem_rate"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(5, 4))
    bars = ax.bar(tiers, rates, color=["#2e7d32", "#1565c0", "#ef6c00", "#c62828"])
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(f"{(r['problem_rate'] or 0):.1%}\n{r['examples']} checks",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set(xlabel="tier", ylabel="weighted problem rate", title="Problem rate by tier, validation")
    ax.set_ylim(0, max(rates) * 1.3 + 1e-9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def shap_explanation(model: TierModel, rows: pd.DataFrame) -> Any:
    """A shap.Explanation from LightGBM's exact contributions (categories as their codes)."""
    import shap

    frame = model.risk._frame(rows)
    contrib = np.asarray(model.risk.booster_.predict(frame, pred_contrib=True), dtype=float)
    data = frame.copy()
    for c in categorical_columns():
        data[c] = data[c].cat.codes.astype(float)
    return shap.Explanation(
        values=contrib[:, :-1],
        base_values=contrib[:, -1],
        data=data.to_numpy(dtype=float),
        feature_names=model_columns(),
    )


def beeswarm_plot(model: TierModel, rows: pd.DataFrame, path: Path, max_rows: int = 3000) -> None:
    import shap

    sample = rows.sample(min(len(rows), max_rows), random_state=0) if len(rows) else rows
    shap.plots.beeswarm(shap_explanation(model, sample), max_display=15, show=False)
    fig = plt.gcf()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def training_plots(
    model: TierModel, validation: pd.DataFrame, report: dict[str, Any], directory: Path
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    label = validation["label"].to_numpy(float)
    weight = validation["weight"].to_numpy(float)
    proba = model.predict_proba(validation)
    paths = [
        directory / n for n in ("roc.png", "calibration.png", "shap_beeswarm.png", "tiers.png")
    ]
    roc_plot(label, proba, weight, report["auc"], paths[0])
    calibration_plot(label, proba, weight, paths[1])
    beeswarm_plot(model, validation, paths[2])
    tier_plot(report, paths[3])
    return paths
