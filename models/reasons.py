"""Reason codes: the features that raise a company's risk most (exact TreeSHAP), in words."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from features.specs import by_name

DEPARTMENTS: dict[str, tuple[str, str]] = {
    "samr": ("市场监管部门", "market regulation"),
    "tax": ("税务部门", "tax"),
    "court": ("人民法院", "courts"),
    "hrss": ("人力资源社会保障部门", "human resources and social security"),
    "ndrc": ("发展改革部门", "development and reform"),
    "12315": ("12315投诉举报平台", "the 12315 complaints line"),
    "12345": ("12345政务服务热线", "the 12345 government hotline"),
    "media": ("媒体", "the media"),
    "third_party": ("第三方机构", "third parties"),
    "gov": ("人民政府", "the government"),
    "emergency": ("应急管理部门", "emergency management"),
    "fire": ("消防救援机构", "fire and rescue"),
    "ecology": ("生态环境部门", "ecology and environment"),
    "health": ("卫生健康部门", "health"),
    "education": ("教育部门", "education"),
    "transport": ("交通运输部门", "transport"),
    "housing": ("住房城乡建设部门", "housing and construction"),
    "culture": ("文化和旅游部门", "culture and tourism"),
    "mca": ("民政部门", "civil affairs"),
    "agriculture": ("农业农村部门", "agriculture"),
    "miit": ("工业和信息化部门", "industry and information technology"),
}
"""Names of the departments that send records (code → Chinese, English); unknown codes as is."""


def department_names(codes: Iterable[str], language: str) -> list[str]:
    i = 0 if language == "zh" else 1
    return [DEPARTMENTS[c][i] if c in DEPARTMENTS else c for c in codes]


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float | np.floating):
        v = float(value)
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:g}" if v.is_integer() else f"{v:.2f}"
    return str(value)


def top_reasons(
    contributions: np.ndarray,
    names: list[str],
    values: pd.DataFrame | list[dict[str, Any]],
    k: int = 3,
) -> list[list[dict[str, Any]]]:
    """For each row, the `k` features with the largest positive contributions to risk (among
    those that can be named, see below), with the spec's Chinese and English text and the
    feature's value filled in. `contributions` has one
    column per name (a trailing base-value column is ignored)."""
    specs = [by_name()[n] for n in names]
    # a reason must say something about risk: features with a declared direction, and the
    # categorical entity facts (industry, type); undirected context (amounts of tax declared,
    # days since the last check) still adds to the score but is not named as a reason
    named = np.array([s.direction != 0 or getattr(s, "categorical", False) for s in specs])
    contrib = np.where(named[None, :], contributions[:, : len(names)], 0.0)
    k = min(k, len(names))
    # the k largest per row without sorting whole rows, then ordered (ties: spec order)
    part = np.argpartition(-contrib, k - 1, axis=1)[:, :k] if k < len(names) else None
    if part is None:
        order = np.argsort(-contrib, axis=1, kind="stable")
    else:
        picked = np.take_along_axis(contrib, part, axis=1)
        sub = np.lexsort((part, -picked), axis=1)
        order = np.take_along_axis(part, sub, axis=1)
    top = np.take_along_axis(contrib, order, axis=1)
    columns: dict[int, np.ndarray] = {}
    if isinstance(values, pd.DataFrame):
        for j in np.unique(order[top > 0]).tolist():
            columns[j] = values[names[j]].to_numpy()
    out: list[list[dict[str, Any]]] = []
    for row in range(len(contrib)):
        reasons = []
        for j, c in zip(order[row].tolist(), top[row].tolist(), strict=True):
            if c <= 0:
                break
            spec = specs[j]
            raw = columns[j][row] if columns else values[row].get(names[j])
            text = _value_text(raw)
            reasons.append(
                {
                    "code": names[j],
                    "kind": "model",
                    "contribution": round(c, 4),
                    "zh": spec.reason_zh.replace("{value}", text),
                    "en": spec.reason_en.replace("{value}", text),
                }
            )
        out.append(reasons)
    return out
