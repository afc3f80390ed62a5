"""Reason codes: the features that raise a company's risk most (exact TreeSHAP), in words."""

from __future__ import annotations

from typing import Any

import numpy as np

from features.specs import by_name


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return (
            f"{value:,.0f}"
            if abs(value) >= 100
            else f"{value:g}"
            if value.is_integer()
            else f"{value:.2f}"
        )
    return str(value)


def top_reasons(
    contributions: np.ndarray, names: list[str], values: list[dict[str, Any]], k: int = 3
) -> list[list[dict[str, Any]]]:
    """For each row, the `k` features with the largest positive contributions to risk, with the
    spec's Chinese and English text and the feature's value filled in."""
    specs = by_name()
    out = []
    for row, contrib in enumerate(contributions[:, : len(names)]):
        order = np.argsort(-contrib, kind="stable")[:k]
        reasons = []
        for j in order.tolist():
            if contrib[j] <= 0:
                break
            spec = specs[names[j]]
            text = _value_text(values[row].get(names[j]))
            reasons.append(
                {
                    "code": names[j],
                    "contribution": round(float(contrib[j]), 4),
                    "zh": spec.reason_zh.replace("{value}", text),
                    "en": spec.reason_en.replace("{value}", text),
                }
            )
        out.append(reasons)
    return out
