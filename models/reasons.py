"""Reason codes: the features that raise a company's risk most (exact TreeSHAP), in words.

`contributions` computes the TreeSHAP values that LightGBM's `pred_contrib` gives, about 25 times
faster for the production model (300 trees of 7 leaves). LightGBM runs the TreeSHAP recursion for
every row and tree: O(leaves x depth^2) floating-point steps with divisions, some 130 µs per row
and core for that model. But the path-dependent TreeSHAP values of one tree depend on a row only
through the direction the row takes at each of the tree's splits (also the splits it never
reaches): a tree with s splits has at most 2^s patterns of directions. So the values are worked
out once per tree and pattern (LightGBM's own recursion, vectorised over the patterns), and a row
then costs one comparison per split and one table look-up per tree and feature. Trees too large
for tables (see `MAX_TABLE_ENTRIES`) and kinds of model it does not cover are left to LightGBM.

`top_reasons` turns contributions into reasons: it finds each row's largest by a few passes of
`argmax` rather than `argpartition` and writes each distinct value's text once (the reasons are
the same as before, ties included).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
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


MISSING = "-"
"""`_value_text` of a missing value; a reason says it in words (`MISSING_TEXTS`)."""
MISSING_TEXTS = ("（无）", "(none)")
"""A reason's value when the company has none (no e-commerce rating: the missing value is what
raises the risk), in Chinese and English; "-" read as a dash."""


def _value_texts(value: Any) -> tuple[str, str]:
    """A number's text in a reason, Chinese and English (the same but for a missing value)."""
    text = _value_text(value)
    return MISSING_TEXTS if text == MISSING else (text, text)


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, float | np.floating):
        v = float(value)
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:g}" if v.is_integer() else f"{v:.2f}"
    return str(value)


def _round4(values: np.ndarray) -> list[float]:
    """`[round(v, 4) for v in values]`, vectorised: the same numbers. Python rounds the exact
    binary value half to even and returns the double nearest the decimal result, which
    `rint(v * 1e4) / 1e4` also does unless `v * 1e4` was rounded across a half: those few values
    (within 1e-6 of a half, or huge, or not finite) are rounded by Python."""
    scaled = values * 1e4
    out: list[float] = (np.rint(scaled) / 1e4).tolist()
    with np.errstate(invalid="ignore"):  # inf and NaN: Python's
        near_half = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= 1e-6
    for i in np.flatnonzero(near_half | ~(np.abs(scaled) < 2.0**50)).tolist():
        out[i] = round(float(values[i]), 4)
    return out


ENTITY_TYPE_NAMES = {
    "enterprise": ("企业", "enterprise"),
    "individual_business": ("个体工商户", "individual business"),
    "cooperative": ("农民专业合作社", "farmers' cooperative"),
    "social_organisation": ("社会组织", "social organisation"),
    "public_institution": ("事业单位", "public institution"),
    "other": ("其他", "other"),
}
"""Entity types (records.schema.ENTITY_TYPES) as a reason names them."""

INDUSTRY_SECTIONS = {
    "A": ("农、林、牧、渔业", "agriculture, forestry, animal husbandry and fishery"),
    "B": ("采矿业", "mining"),
    "C": ("制造业", "manufacturing"),
    "D": ("电力、热力、燃气及水生产和供应业", "electricity, heat, gas and water supply"),
    "E": ("建筑业", "construction"),
    "F": ("批发和零售业", "wholesale and retail trade"),
    "G": ("交通运输、仓储和邮政业", "transport, storage and post"),
    "H": ("住宿和餐饮业", "accommodation and catering"),
    "I": ("信息传输、软件和信息技术服务业", "information transmission, software and IT services"),
    "J": ("金融业", "finance"),
    "K": ("房地产业", "real estate"),
    "L": ("租赁和商务服务业", "leasing and business services"),
    "M": ("科学研究和技术服务业", "scientific research and technical services"),
    "N": ("水利、环境和公共设施管理业", "water, environment and public facilities management"),
    "O": ("居民服务、修理和其他服务业", "residents' services, repair and other services"),
    "P": ("教育", "education"),
    "Q": ("卫生和社会工作", "health and social work"),
    "R": ("文化、体育和娱乐业", "culture, sports and entertainment"),
    "S": ("公共管理、社会保障和社会组织", "public administration and social organisations"),
    "T": ("国际组织", "international organisations"),
}
"""GB/T 4754-2017 sections, by the letter an industry code starts with."""


def _category_texts(feature: str, value: str) -> tuple[str, str]:
    """A categorical value as a reason says it, in Chinese and English (the code itself where
    no name is known)."""
    if feature == "entity_type":
        return ENTITY_TYPE_NAMES.get(value, (value, value))
    if feature == "industry" and value[:1] in INDUSTRY_SECTIONS:
        zh, en = INDUSTRY_SECTIONS[value[:1]]
        return f"{value}（{zh}）", f"{value} ({en})"
    return value, value


def _phrases(
    column: np.ndarray, zh: str, en: str, feature: str = ""
) -> tuple[list[str], list[str]]:
    """The spec's Chinese and English reason with each value of `column` filled in, as
    `_value_text` writes it (categories by name, `_category_texts`); worked out once per
    distinct value (numbers: per bit pattern)."""
    kind, size = column.dtype.kind, column.dtype.itemsize
    if kind in "biu" or (kind == "f" and size in (2, 4, 8)):
        keys = column.view(f"u{size}") if kind == "f" else column
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        texts = [_value_texts(column[i]) for i in first.tolist()]
        zhs = [zh.replace("{value}", t) for t, _ in texts]
        ens = [en.replace("{value}", t) for _, t in texts]
        at = inverse.ravel().tolist()
        return [zhs[i] for i in at], [ens[i] for i in at]
    known: dict[str, tuple[str, str]] = {}
    out_zh, out_en = [], []
    for value in column:
        text = value if type(value) is str else _value_text(value)
        pair = known.get(text)
        if pair is None:
            text_zh, text_en = (
                _category_texts(feature, text) if type(value) is str else _value_texts(value)
            )
            pair = known[text] = (zh.replace("{value}", text_zh), en.replace("{value}", text_en))
        out_zh.append(pair[0])
        out_en.append(pair[1])
    return out_zh, out_en


def _by_partition(masked: np.ndarray, k: int) -> np.ndarray:
    """The columns of each row's k largest values, largest first, ties in column order."""
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(masked, part, axis=1)
    return np.take_along_axis(part, np.lexsort((part, -picked), axis=1), axis=1)


def _largest(contributions: np.ndarray, named: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`_by_partition` of the contributions with the columns that are not named set to 0, and
    those values. `argpartition` takes 3 µs a row for 63 columns; k + 1 passes of `argmax`
    over the named columns take a tenth of that and give the same wherever the k largest are
    determined. Where they are not (a positive value tied across the k-th place, NaN),
    `argpartition` chooses, so those rows are worked out its way."""
    n, columns = len(contributions), np.flatnonzero(named)
    if k == 0:
        return np.zeros((n, 0), dtype=np.intp), np.zeros((n, 0))
    work = contributions[:, columns]
    passes = min(k + 1, len(columns))
    every = np.arange(n)
    order = np.zeros((n, k + 1), dtype=np.intp)
    top = np.zeros((n, k + 1))
    unsure = np.isnan(work).any(axis=1)
    for i in range(passes):  # the first largest (argmax: the first column of equal ones)
        at = work.argmax(axis=1)
        order[:, i] = columns[at]
        top[:, i] = work[every, at]
        work[every, at] = -np.inf
    # below 0 or past the named columns nothing is shown, so only positive ties matter
    unsure |= (top[:, k - 1] > 0) & (top[:, k - 1] == top[:, k])
    if unsure.any():
        rows = np.flatnonzero(unsure)
        masked = np.where(named[None, :], contributions[rows], 0.0)
        order[rows, :k] = _by_partition(masked, k)
        top[rows, :k] = np.take_along_axis(masked, order[rows, :k], axis=1)
    return order[:, :k], top[:, :k]


def _without_not_applicable(
    contributions: np.ndarray,
    names: list[str],
    specs: list[Any],
    values: pd.DataFrame | list[dict[str, Any]],
) -> np.ndarray:
    """The contributions with 0 where the feature does not apply to the row's company: null in a
    feature with `applies_to` (which is 0, not null, where it applies: `validate_specs`)."""
    out = contributions
    for j, spec in enumerate(specs):
        if getattr(spec, "applies_to", None) is None:
            continue
        if isinstance(values, pd.DataFrame):
            missing = pd.isna(values[names[j]]).to_numpy(dtype=bool)
        else:
            missing = np.fromiter(
                (v is None or (isinstance(v, float) and np.isnan(v))
                 for v in (row.get(names[j]) for row in values)),
                dtype=bool, count=len(values),
            )  # fmt: skip
        if missing.any():
            if out is contributions:
                out = contributions.copy()
            out[missing, j] = 0.0
    return out


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
    # nor is a feature that does not apply to the company: its missing value's contribution is
    # the model's, not anything the company did or failed to do (a social organisation must
    # not read "0 annual reports filed on time", which it never has to file)
    contributions = _without_not_applicable(contributions, names, specs, values)
    k = min(k, len(names))
    # the k largest per row without sorting whole rows, then ordered (ties: spec order)
    if k < len(names):
        order, top = _largest(contributions[:, : len(names)], named, k)
    else:
        contrib = np.where(named[None, :], contributions[:, : len(names)], 0.0)
        order = np.argsort(-contrib, axis=1, kind="stable")
        top = np.take_along_axis(contrib, order, axis=1)
    # a row's reasons end at its first contribution that is not positive once rounded to the
    # 4 decimals it is reported with (a reason "adding 0.0" says nothing); all reasons of all
    # rows, row by row, then their texts per feature (once per distinct value)
    rounded = np.asarray(_round4(top.ravel()), dtype=float).reshape(top.shape)
    keep = np.logical_and.accumulate(rounded > 0, axis=1)
    rows, slots = np.nonzero(keep)
    feature = order[rows, slots]
    zh = np.empty(len(rows), dtype=object)
    en = np.empty(len(rows), dtype=object)
    for j in np.unique(feature).tolist():
        at = np.flatnonzero(feature == j)
        if isinstance(values, pd.DataFrame):
            column = values[names[j]].to_numpy()[rows[at]]
        else:
            picked_rows = rows[at].tolist()
            column = np.fromiter(
                (values[r].get(names[j]) for r in picked_rows), dtype=object, count=len(at)
            )
        zh[at], en[at] = _phrases(column, specs[j].reason_zh, specs[j].reason_en, names[j])
    codes = np.asarray(names, dtype=object)[feature].tolist()
    flat = [
        {"code": code, "kind": "model", "contribution": c, "zh": z, "en": e}
        for code, c, z, e in zip(
            codes, rounded[rows, slots].tolist(), zh.tolist(), en.tolist(), strict=True
        )
    ]
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    return [flat[a:b] for a, b in zip([0, *ends], ends, strict=False)]


# ---- contributions: exact TreeSHAP, tabulated per tree and pattern of split directions --------

MAX_TABLE_ENTRIES = 1 << 22
"""Largest table (trees x 2^splits of the largest tree x features of the richest tree, 8 bytes
each) that `contributions` builds; larger models are left to LightGBM's `pred_contrib`."""
CHUNK_ROWS = 8192
_ZERO = float(np.float32(1e-35))
"""LightGBM's kZeroThreshold (a float literal widened to double)."""
_MISSING_VARIANT = {("None", False): 0, ("None", True): 0, ("NaN", True): 1, ("NaN", False): 2,
                    ("Zero", True): 3, ("Zero", False): 4}  # fmt: skip
"""How a numeric split treats missing values, as a transformed copy of the feature on which
`x <= threshold` gives LightGBM's direction: 0 NaN is 0; 1/2 NaN goes left/right (NaN becomes
-inf / stays NaN); 3/4 zero (|x| <= kZeroThreshold) and NaN go left/right (become -inf/NaN)."""

Node = dict[str, Any]


def _splits(node: Node, out: list[Node]) -> list[Node]:
    if "split_index" in node:
        out.append(node)
        _splits(node["left_child"], out)
        _splits(node["right_child"], out)
    return out


def _count(node: Node) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def _tree_table(root: Node, patterns: int) -> tuple[dict[int, np.ndarray], float]:
    """One tree's TreeSHAP values per feature for every pattern of directions (bit s of a
    pattern: split s sends the row left), and the tree's expected value: LightGBM's
    `Tree::TreeSHAP` (src/io/tree.cpp, path-dependent, covers from data counts), the same steps
    with one value per pattern where it has one per row. Its `one_fraction` is 0 or 1, so its
    branches become `np.where`."""
    if "split_index" not in root:
        return {}, float(root["leaf_value"])
    pattern = np.arange(patterns)
    ones, zeros = np.ones(patterns), np.zeros(patterns)
    phi: dict[int, np.ndarray] = {}
    # a unique path: feature index, zero fraction, one fraction, permutation weight per element
    Path = tuple[list[int], list[float], list[np.ndarray], list[np.ndarray]]

    def extend(path: Path, d: int, zero: float, one: np.ndarray, feature: int) -> None:
        fi, z, o, w = path
        fi.append(feature)
        z.append(zero)
        o.append(one)
        w.append(ones if d == 0 else zeros)
        for i in range(d - 1, -1, -1):
            w[i + 1] = w[i + 1] + one * w[i] * (i + 1) / (d + 1)
            w[i] = zero * w[i] * (d - i) / (d + 1)

    def unwind(path: Path, d: int, index: int) -> None:
        fi, z, o, w = path
        one, zero, next_one = o[index], z[index], w[d]
        hot = one != 0
        for i in range(d - 1, -1, -1):
            if_hot = next_one * (d + 1) / ((i + 1) * one)
            if_cold = (w[i] * (d + 1)) / (zero * (d - i))
            next_one = np.where(hot, w[i] - if_hot * zero * (d - i) / (d + 1), next_one)
            w[i] = np.where(hot, if_hot, if_cold)
        for i in range(index, d):
            fi[i], z[i], o[i] = fi[i + 1], z[i + 1], o[i + 1]
        del fi[d], z[d], o[d], w[d]

    def unwound_sum(path: Path, d: int, index: int) -> np.ndarray:
        _fi, z, o, w = path
        one, zero, next_one = o[index], z[index], w[d]
        hot = one != 0
        total = zeros
        for i in range(d - 1, -1, -1):
            if_hot = next_one * (d + 1) / ((i + 1) * one)
            total = total + np.where(hot, if_hot, (w[i] / zero) / ((d - i) / (d + 1)))
            next_one = np.where(hot, w[i] - if_hot * zero * ((d - i) / (d + 1)), next_one)
        return total

    def recurse(
        node: Node, d: int, parent: Path, zero: float, one: np.ndarray, feature: int
    ) -> None:
        path: Path = (parent[0][:d], parent[1][:d], parent[2][:d], parent[3][:d])
        extend(path, d, zero, one, feature)
        fi, z, o, _w = path
        if "split_index" not in node:
            value = float(node["leaf_value"])
            for i in range(1, d + 1):
                share = unwound_sum(path, d, i)
                phi[fi[i]] = phi.get(fi[i], zeros) + share * (o[i] - z[i]) * value
            return
        left = ((pattern >> int(node["split_index"])) & 1).astype(float)
        count = _count(node)
        split = int(node["split_feature"])
        incoming_zero, incoming_one = 1.0, ones
        if split in fi:  # split on this feature before: undo it, redo it here
            index = fi.index(split)
            incoming_zero, incoming_one = z[index], o[index]
            unwind(path, d, index)
            d -= 1
        left_zero = _count(node["left_child"]) / count * incoming_zero
        right_zero = _count(node["right_child"]) / count * incoming_zero
        recurse(node["left_child"], d + 1, path, left_zero, incoming_one * left, split)
        recurse(node["right_child"], d + 1, path, right_zero, incoming_one * (1 - left), split)

    with np.errstate(divide="ignore", invalid="ignore"):
        recurse(root, 0, ([], [], [], []), 1.0, ones, -1)
    leaves: list[Node] = []

    def collect(node: Node) -> None:
        if "split_index" in node:
            collect(node["left_child"])
            collect(node["right_child"])
        else:
            leaves.append(node)

    collect(root)
    total, expected = float(root["internal_count"]), 0.0
    for leaf in sorted(leaves, key=lambda leaf: int(leaf["leaf_index"])):
        expected += (leaf["leaf_count"] / total) * leaf["leaf_value"]
    return phi, expected


class _PatternTables:
    """Every tree's TreeSHAP values per pattern of split directions, and how to find a row's
    pattern: a numeric split is `x <= threshold` on a transformed copy of its feature (missing
    values, see `_MISSING_VARIANT`), a categorical split a look-up by category code (NaN,
    negative and unknown codes go right)."""

    def __init__(self, model: dict[str, Any], thresholds: list[list[float]], bits: int) -> None:
        roots = [t["tree_structure"] for t in model["tree_info"]]
        self.features = int(model["max_feature_idx"]) + 1
        self.trees, self.bits = len(roots), bits
        patterns = 1 << bits
        numeric: dict[tuple[int, int], list[tuple[int, float]]] = {}
        categorical: dict[int, list[tuple[int, frozenset[int]]]] = {}
        for t, root in enumerate(roots):
            for node in _splits(root, []):
                slot = t * bits + int(node["split_index"])
                f = int(node["split_feature"])
                if node["decision_type"] == "==":
                    cats = frozenset(int(c) for c in str(node["threshold"]).split("||"))
                    categorical.setdefault(f, []).append((slot, cats))
                else:
                    how = _MISSING_VARIANT[(node["missing_type"], bool(node["default_left"]))]
                    at = thresholds[t][int(node["split_index"])]
                    numeric.setdefault((how, f), []).append((slot, at))
        self.numeric = [
            (how, f, np.array([s for s, _ in nodes]), np.array([[x] for _, x in nodes]))
            for (how, f), nodes in sorted(numeric.items())
        ]
        self.categorical = []
        for f, nodes in sorted(categorical.items()):
            width = max((max(cats) for _, cats in nodes if cats), default=0) + 2
            goes_right = np.ones((len(nodes), width), dtype=bool)  # last column: not a category
            for i, (_slot, cats) in enumerate(nodes):
                goes_right[i, sorted(cats)] = False
            self.categorical.append((f, np.array([s for s, _ in nodes]), ~goes_right))
        self.weights = (1 << np.arange(bits, dtype=np.uint32))[None, :, None]
        self.index_type = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32
        tables = [_tree_table(root, patterns) for root in roots]
        self.width = max([1, *(len(phi) for phi, _ in tables)])
        table = np.zeros((self.trees, patterns, self.width))
        owner = np.full((self.trees, self.width), -1)
        for t, (phi, _) in enumerate(tables):
            for j, f in enumerate(sorted(phi)):
                table[t, :, j] = phi[f]
                owner[t, j] = f
        self.table = table.ravel()
        self.by_feature = []
        for f in range(self.features):
            trees, column = np.nonzero(owner == f)
            if len(trees):
                where = (trees * patterns * self.width + column)[:, None]
                self.by_feature.append((f, trees, where))
        self.base = 0.0
        for _, expected in tables:  # in tree order, as LightGBM adds them
            self.base += expected

    def _chunk(self, x: np.ndarray) -> np.ndarray:
        """Contributions (features + 1, rows) of a feature-major block (features, rows)."""
        n = x.shape[1]
        left = np.zeros((self.trees * self.bits, n), dtype=bool)  # unused slots: right
        for how, f, slots, thresholds in self.numeric:
            v = x[f]
            if how == 0:
                v = np.where(np.isnan(v), 0.0, v)
            elif how == 1:
                v = np.where(np.isnan(v), -np.inf, v)
            elif how in (3, 4):
                zero = np.isnan(v) | (np.abs(v) <= _ZERO)
                v = np.where(zero, -np.inf if how == 3 else np.nan, v)
            left[slots] = v[None, :] <= thresholds
        for f, slots, goes_left in self.categorical:
            v = x[f]
            last = goes_left.shape[1] - 1
            known = (v > -1) & (v < last)  # NaN, negative and unseen codes go right
            code = np.where(known, np.trunc(np.where(known, v, 0.0)), last).astype(np.intp)
            left[slots] = goes_left[:, code]
        bits = left.reshape(self.trees, self.bits, n).view(np.uint8)
        pattern = (bits * self.weights).sum(axis=1, dtype=self.index_type).astype(np.intp)
        pattern *= self.width
        out = np.zeros((self.features + 1, n))
        for f, trees, where in self.by_feature:
            # cumsum adds the trees one after another for one row as for many (sum would add a
            # lone row pairwise): a company re-scored alone gets the batch's bits
            out[f] = np.cumsum(self.table.take(pattern[trees] + where), axis=0)[-1]
        out[self.features] = self.base
        return out

    def contributions(self, x: np.ndarray, threads: int) -> np.ndarray:
        n = x.shape[1]
        out = np.empty((n, self.features + 1))

        def run(start: int) -> None:
            out[start : start + CHUNK_ROWS] = self._chunk(x[:, start : start + CHUNK_ROWS]).T

        starts = range(0, n, CHUNK_ROWS)
        if threads > 1 and n > CHUNK_ROWS:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, starts))
        else:
            for start in starts:
                run(start)
        return out


_TABLES: weakref.WeakKeyDictionary[Any, tuple[int, _PatternTables | None]] = (
    weakref.WeakKeyDictionary()
)
_TABLES_LOCK = threading.Lock()


def _pattern_tables(booster: Any) -> _PatternTables | None:
    """The booster's tables, built once (None: a model they do not cover)."""
    version = booster.current_iteration() * 1_000_003 + booster.best_iteration
    with _TABLES_LOCK:
        cached = _TABLES.get(booster)
    if cached is not None and cached[0] == version:
        return cached[1]
    model = booster.dump_model()  # the trees `predict` uses (best_iteration when set)
    roots = [t["tree_structure"] for t in model["tree_info"]]
    # thresholds as the booster holds them: the dump writes +-inf as +-1e300
    thresholds = [
        [float(x) for x in line.removeprefix("threshold=").split()]
        for line in booster.model_to_string().splitlines()
        if line.startswith("threshold=")
    ]
    sizes = [len(_splits(root, [])) for root in roots]
    bits = max([1, *sizes])
    features = max([1, *(len({n["split_feature"] for n in _splits(r, [])}) for r in roots)])
    covered = (
        model.get("num_tree_per_iteration") == 1
        and not model.get("average_output")
        and '"leaf_const"' not in json.dumps(model["tree_info"][:1])  # linear trees
        and len(roots) * (1 << bits) * features <= MAX_TABLE_ENTRIES
        and [len(t) for t in thresholds] == [s for s in sizes if s]
    )
    if covered:
        it = iter(thresholds)
        thresholds = [next(it) if s else [] for s in sizes]
    tables = _PatternTables(model, thresholds, bits) if covered else None
    with _TABLES_LOCK:
        _TABLES[booster] = (version, tables)
    return tables


def _feature_major(rows: pd.DataFrame, categories: list[list[Any]] | None) -> np.ndarray | None:
    """The rows as LightGBM reads them (categorical codes by the training categories, missing
    as NaN, |x| <= kZeroThreshold as 0), one feature per row of the result; None if a column is
    neither float64 nor categorical."""
    out = np.empty((rows.shape[1], len(rows)))
    cats = iter(categories or [])
    for i, dtype in enumerate(rows.dtypes):
        column = rows.iloc[:, i]
        if isinstance(dtype, pd.CategoricalDtype):
            levels = next(cats, None)
            if levels is None:
                return None
            if list(column.cat.categories) != list(levels):
                column = column.cat.set_categories(levels)
            codes = column.cat.codes.to_numpy()
            out[i] = np.where(codes < 0, np.nan, codes)
        elif dtype == np.float64:
            out[i] = column.to_numpy()
        else:
            return None
    if next(cats, None) is not None:
        return None
    # LightGBM keeps a dense row's values only where |x| > kZeroThreshold or x is NaN: the
    # others are read as 0
    np.copyto(out, 0.0, where=np.abs(out) <= _ZERO)
    return out


def contributions(booster: Any, rows: pd.DataFrame) -> np.ndarray:
    """TreeSHAP values of a LightGBM booster's raw score: what `booster.predict(rows,
    pred_contrib=True)` returns (one column per feature, the expected value last; equal to it
    up to floating-point rounding, about 1e-15), from tables per tree and pattern of split
    directions (see the module docstring). Models the tables do not cover, and input that is
    not float64 or categorical columns, go to LightGBM."""
    tables = _pattern_tables(booster) if len(rows) else None
    x = _feature_major(rows, booster.pandas_categorical) if tables is not None else None
    if tables is None or x is None or x.shape[0] != tables.features:
        return np.asarray(booster.predict(rows, pred_contrib=True), dtype=float)
    threads = int(booster.params.get("num_threads") or 0) or os.cpu_count() or 1
    return tables.contributions(x, threads)
