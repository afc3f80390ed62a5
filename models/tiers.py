"""The supervision tier policy (企业信用风险分类): cut-offs on calibrated risk, then legal vetoes.

Cut-offs come from target shares (default A 20 %, B 60 %, C 15 %, D 5 %, weighted, so that they
describe the whole population) or are given as probability thresholds. After the model, the
vetoes of ../shared/DOMAIN.md §6 apply (serious dishonest list → D; abnormal-operation list or
dishonest judgment debtor → at least C), and a company without any history is B. Every veto or
override is returned as a reason (a veto whenever it holds, with `raised` saying whether it
moved the tier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TIERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Veto:
    feature: str
    at_least: str
    reason_zh: str
    reason_en: str


DEFAULT_VETOES = (
    Veto("on_serious_dishonest_list", "D", "列入严重违法失信名单，直接评为D类",
         "on the serious illegal and dishonest list: tier D"),
    Veto("on_abnormal_list", "C", "列入经营异常名录，至少为C类",
         "on the abnormal-operation list: tier C at least"),
    Veto("on_dishonest_debtor_list", "C", "列为失信被执行人，至少为C类",
         "a dishonest judgment debtor: tier C at least"),
)  # fmt: skip


NO_GOOD_HISTORY = {
    "code": "no_good_history",
    "zh": "仅有失信或风险记录、无良好记录，不评为A类",
    "en": "only negative records, none of good conduct: not tier A",
}


@dataclass
class TierPolicy:
    """Cut-offs on calibrated risk (`cutoffs_`: upper bounds of A, B, C) plus vetoes."""

    shares: tuple[float, float, float, float] = (0.20, 0.60, 0.15, 0.05)
    thresholds: tuple[float, float, float] | None = None
    vetoes: tuple[Veto, ...] = DEFAULT_VETOES
    cutoffs_: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), init=False)

    def fit(self, proba: np.ndarray, sample_weight: np.ndarray | None = None) -> TierPolicy:
        if self.thresholds is not None:
            t = tuple(float(x) for x in self.thresholds)
            if not t[0] <= t[1] <= t[2]:
                raise ValueError(f"thresholds must be increasing, got {t}")
            self.cutoffs_ = (t[0], t[1], t[2])
            return self
        if abs(sum(self.shares) - 1) > 1e-9 or min(self.shares) < 0:
            raise ValueError(f"shares must be non-negative and sum to 1, got {self.shares}")
        p = np.asarray(proba, dtype=float)
        if len(p) == 0 or not np.isfinite(p).all():
            raise ValueError("cut-offs need at least one probability, and only finite ones")
        w = np.ones(len(p)) if sample_weight is None else np.asarray(sample_weight, float)
        # Companies with the same probability share a tier, so a cut-off goes between two
        # distinct values: where the share of the population below it comes closest to the
        # target (a tie group larger than a tier's share cannot be split; a share of 0 leaves
        # the tier empty).
        values, group = np.unique(p, return_inverse=True)
        below = np.concatenate([[0.0], np.cumsum(np.bincount(group, weights=w)) / w.sum()])
        cut: list[float] = []
        first = 0
        for bound in np.cumsum(self.shares)[:3]:
            j = max(first, int(np.argmin(np.abs(below - bound))))  # values[:j] lie below
            first = j
            if j == 0:
                cut.append(float(np.nextafter(values[0], -np.inf)))
            elif j == len(values):
                cut.append(float(values[-1]))
            else:
                middle = float((values[j - 1] + values[j]) / 2)
                cut.append(middle if middle < values[j] else float(values[j - 1]))
        self.cutoffs_ = (cut[0], cut[1], cut[2])
        return self

    def veto_features(self) -> list[str]:
        return [v.feature for v in self.vetoes]

    def assign(
        self,
        proba: np.ndarray,
        features: dict[str, np.ndarray],
        has_history: np.ndarray,
        good_history: np.ndarray | None = None,
    ) -> tuple[list[str], list[list[dict[str, Any]]]]:
        """Tier per company and the overrides applied (veto or default), as reasons.

        `good_history`: the company has records that are not negative (on-time reports,
        declarations, passed checks ...). A company whose history is only negative records is
        not tier A: otherwise its first negative record could move it from the default B to A.
        """
        p = np.asarray(proba, dtype=float)
        level = np.searchsorted(np.asarray(self.cutoffs_), p, side="left")
        reasons: list[list[dict[str, Any]]] = [[] for _ in range(len(p))]
        no_history = ~np.asarray(has_history, dtype=bool)
        level = np.where(no_history, 1, level)
        for i in np.flatnonzero(no_history).tolist():
            reasons[i].append({"code": "no_history", "zh": "无历史信用记录，默认为B类",
                               "en": "no credit history: tier B by default"})  # fmt: skip
        if good_history is not None:
            only_negative = ~no_history & ~np.asarray(good_history, dtype=bool) & (level < 1)
            for i in np.flatnonzero(only_negative).tolist():
                reasons[i].append(NO_GOOD_HISTORY)
            level = np.where(only_negative, 1, level)
        for veto in self.vetoes:
            hit = np.nan_to_num(np.asarray(features[veto.feature], dtype=float)) > 0
            floor = TIERS.index(veto.at_least)
            for i in np.flatnonzero(hit).tolist():
                # listed whenever it holds, also when the model's tier was already that high
                reasons[i].append({"code": f"veto:{veto.feature}", "zh": veto.reason_zh,
                                   "en": veto.reason_en,
                                   "raised": bool(level[i] < floor)})  # fmt: skip
            level = np.where(hit, np.maximum(level, floor), level)
        return [TIERS[i] for i in level], reasons
