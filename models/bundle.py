"""The tier model: what scores companies, in one object and one MLflow artifact.

A `TierModel` bundles the calibrated risk model, its tier policy (cut-offs and vetoes), the
feature-spec version it was trained on and the facts of its training (label, period, metrics).
`score` turns point-in-time feature rows into probability, raw score, the model's tier, the final
tier after vetoes and defaults, and reasons: overrides first, then the features that raise the
company's risk most (exact TreeSHAP from LightGBM's `pred_contrib`), in Chinese and English.
`with_evidence` fills the records behind each reason in from the store (how many, the latest
date, which departments).

`TierModelPyfunc` is the MLflow pyfunc flavour: the bundle is pickled as one artifact next to a
readable `manifest.json` (cut-offs, vetoes, spec version), and `predict` takes feature rows.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.pyfunc.model import PythonModel

from features.evidence import feature_evidence
from features.specs import SPECS, FeatureSpec, spec_version
from models.reasons import contributions, department_names, top_reasons
from models.risk import RiskModel, model_columns
from models.tiers import TIERS, TierPolicy
from records.store import Store

HISTORY_FEATURES = tuple(s.name for s in SPECS if isinstance(s, FeatureSpec) and s.categories)
"""A company has history when any feature read from its records is set (not null, not 0) at the
as-of date: counts, open listings, latest grades and signals, amounts (every such feature is
null or 0 without a counting record)."""

GOOD_HISTORY_FEATURES = tuple(
    s.name
    for s in SPECS
    if isinstance(s, FeatureSpec)
    and s.categories
    and s.aggregation in ("count", "open_listing", "honoured_commitments")
    and s.direction <= 0
)
"""Records that are not negative (`validate_specs` makes sure no such count reads negative
records), the red list among them: a company with none of them has only negative history."""

BUNDLE_FILE = "tier_model.pkl"
MANIFEST_FILE = "manifest.json"

REASON = pa.struct(
    [
        ("code", pa.string()),
        ("kind", pa.string()),  # veto | default | model
        ("contribution", pa.float64()),
        ("zh", pa.string()),
        ("en", pa.string()),
    ]
)


class SpecMismatch(RuntimeError):
    """The model was trained on features of another spec version than this code computes."""


def has_history(features: pd.DataFrame, names: tuple[str, ...] = HISTORY_FEATURES) -> np.ndarray:
    found = np.zeros(len(features), dtype=bool)
    for c in names:  # column by column: no copy of the whole frame
        if c in features.columns:
            column = pd.to_numeric(features[c], errors="coerce")
            found |= column.to_numpy(dtype=float, na_value=0.0) != 0
    return found


@dataclass
class TierModel:
    risk: RiskModel
    policy: TierPolicy
    spec_version: str
    label: str = "problem"
    trained_from: date | None = None
    trained_until: date | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    # ---- scoring ------------------------------------------------------------------------------

    def check_spec(self) -> None:
        if self.spec_version != spec_version():
            raise SpecMismatch(
                f"model trained on feature spec {self.spec_version}, this code computes "
                f"{spec_version()}: retrain before using it"
            )

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.risk.predict_proba(features)[:, 1], dtype=float)

    def score(self, features: pd.DataFrame | pa.Table, reasons: int = 3) -> pd.DataFrame:
        """One row per feature row: uscc, as_of, probability, raw_score, model_tier, tier and
        (when `reasons` > 0) the reasons, overrides first. Contributions of all features plus the
        base value equal raw_score; the reasons list the `reasons` largest positive ones."""
        frame = features.to_pandas() if isinstance(features, pa.Table) else features
        rows = self.risk._frame(frame)
        if len(rows) == 0:
            raw = np.zeros(0)
        else:
            # one path for the score whether reasons are asked for or not, so that a tier never
            # depends on it (the contributions' sum differs from it in the last bits)
            raw = np.asarray(self.risk.booster_.predict(rows, raw_score=True), float)
        if reasons > 0:
            contrib = (
                contributions(self.risk.booster_, rows)  # = pred_contrib, tabulated
                if len(rows)
                else np.zeros((0, len(rows.columns) + 1))
            )
        proba = self.risk.calibrate(raw)
        level = np.searchsorted(np.asarray(self.policy.cutoffs_), proba, side="left")
        columns = {c: frame[c].to_numpy() for c in self.policy.veto_features() if c in frame}
        tiers, overrides = self.policy.assign(
            proba, columns, has_history(frame), has_history(frame, GOOD_HISTORY_FEATURES)
        )
        out = pd.DataFrame(
            {
                "uscc": frame["uscc"].to_numpy() if "uscc" in frame else None,
                "as_of": frame["as_of"].to_numpy() if "as_of" in frame else None,
                "probability": proba,
                "raw_score": raw,
                "model_tier": np.asarray(TIERS)[level],
                "tier": tiers,
            }
        )
        if reasons > 0:
            names = model_columns()
            top = top_reasons(contrib, names, frame[names], k=reasons)
            out["reasons"] = [  # type: ignore[assignment]
                _overrides(over) + model if over else model
                for over, model in zip(overrides, top, strict=True)
            ]
        return out

    # ---- artifact -----------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return {
            "spec_version": self.spec_version,
            "label": self.label,
            "trained_from": str(self.trained_from) if self.trained_from else None,
            "trained_until": str(self.trained_until) if self.trained_until else None,
            "cutoffs": list(self.policy.cutoffs_),
            "shares": list(self.policy.shares),
            "thresholds": list(self.policy.thresholds) if self.policy.thresholds else None,
            "vetoes": [
                {"feature": v.feature, "at_least": v.at_least, "zh": v.reason_zh, "en": v.reason_en}
                for v in self.policy.vetoes
            ],
            "calibrated": self.risk.calibrator_ is not None,
            "params": self.risk.get_params(),
            "metrics": self.metrics,
        }

    def save(self, directory: Path) -> dict[str, str]:
        """Write the pickle and the manifest into `directory`; returns MLflow's artifacts map."""
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / BUNDLE_FILE, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        (directory / MANIFEST_FILE).write_text(
            json.dumps(self.manifest(), ensure_ascii=False, indent=2, default=str)
        )
        return {"bundle": str(directory / BUNDLE_FILE), "manifest": str(directory / MANIFEST_FILE)}

    @staticmethod
    def load(path: Path) -> TierModel:
        with open(path, "rb") as f:
            model = pickle.load(f)
        if not isinstance(model, TierModel):
            raise TypeError(f"{path} does not hold a TierModel")
        return model


def _overrides(over: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Policy overrides as reasons, vetoes first."""
    rows = [
        {"kind": "veto" if o["code"].startswith("veto:") else "default", "contribution": None, **o}
        for o in over
    ]
    return sorted(rows, key=lambda o: o["kind"] != "veto")


def _evidence_feature(reason: dict[str, Any]) -> str | None:
    """The feature whose records back a reason: a model reason's own, a veto's listing."""
    if reason["kind"] == "model":
        return str(reason["code"])
    if reason["kind"] == "veto":
        return str(reason["code"]).removeprefix("veto:")
    return None


def with_evidence(store: Store, scored: pd.DataFrame) -> pd.DataFrame:
    """Fill the records behind each model reason and veto into its text: how many, the latest
    date and the departments that sent them (`evidence` on each reason too)."""
    wanted = [
        {"uscc": u, "as_of": a, "feature": _evidence_feature(r)}
        for u, a, rs in zip(scored["uscc"], scored["as_of"], scored["reasons"], strict=True)
        for r in rs
        if _evidence_feature(r)
    ]
    schema = pa.schema([("uscc", pa.string()), ("as_of", pa.date32()), ("feature", pa.string())])
    found = feature_evidence(store, pa.Table.from_pylist(wanted, schema=schema))
    filled = []
    for u, a, rs in zip(scored["uscc"], scored["as_of"], scored["reasons"], strict=True):
        day = a.date() if isinstance(a, pd.Timestamp) else a
        out = []
        for r in rs:
            feature = _evidence_feature(r)
            ev = found.get((u, day, feature)) if feature else None
            if ev:
                zh_depts = "、".join(department_names(ev["departments"], "zh"))
                en_depts = ", ".join(department_names(ev["departments"], "en"))
                r = {
                    **r,
                    "zh": f"{r['zh']}（{ev['matched']}条记录，最近{ev['latest']}，"
                    f"来源：{zh_depts}）",
                    "en": f"{r['en']} ({ev['matched']} record{'s' if ev['matched'] != 1 else ''}, "
                    f"latest {ev['latest']}, "
                    f"from {en_depts})",
                    "evidence": {
                        "records": ev["records"],
                        "matched": ev["matched"],
                        "latest": str(ev["latest"]),
                        "departments": ev["departments"],
                    },
                }
            out.append(r)
        filled.append(out)
    result = scored.copy()
    result["reasons"] = filled
    return result


class TierModelPyfunc(PythonModel):
    """MLflow pyfunc flavour: feature rows in, probability, tiers and reasons out."""

    def load_context(self, context: Any) -> None:
        self.model = TierModel.load(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        scored = self.model.score(model_input, reasons=3)
        scored["reasons"] = [json.dumps(r, ensure_ascii=False) for r in scored["reasons"]]
        return scored
