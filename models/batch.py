"""Batch tiering and point-in-time predictions with a registered tier model.

`tier_companies` scores every company registered and active on an as-of date; `predict_points`
scores arbitrary (uscc, as_of) pairs, each with features as of its own date (a backtest). Both
return one row per company and date with probability, raw score, the model's tier, the final
tier, the reasons as JSON text (Chinese and English, overrides first, evidence filled in) and the
model and spec versions, ready to be stored (`features.results.Results`, kind `tiers`).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.builder import build_features, build_features_at
from models.bundle import TierModel, with_evidence
from records import uscc as codes
from records.store import Store


class BadPoints(ValueError):
    pass


def _finish(scored: pd.DataFrame, model: TierModel, name: str, version: str) -> pa.Table:
    out = scored.copy()
    if "reasons" in out:
        out["reasons"] = [
            json.dumps(r, ensure_ascii=False, default=str) if isinstance(r, list) else None
            for r in out["reasons"]
        ]
    out["model_name"] = name
    out["model_version"] = version
    out["spec_version"] = model.spec_version
    table = pa.Table.from_pandas(out, preserve_index=False)
    return table.set_column(
        table.schema.get_field_index("as_of"), "as_of", table.column("as_of").cast(pa.date32())
    )


def tier_companies(
    store: Store,
    model: TierModel,
    as_of: date,
    name: str,
    version: str,
    reasons: int = 3,
    evidence: bool = True,
) -> pa.Table:
    """Every active company as of `as_of`, tiered."""
    return tier_features(store, model, build_features(store, as_of), name, version, reasons,
                         evidence)  # fmt: skip


def tier_features(
    store: Store,
    model: TierModel,
    features: pa.Table,
    name: str,
    version: str,
    reasons: int = 3,
    evidence: bool = True,
) -> pa.Table:
    """The active companies among built features, tiered (the batch, or one company re-scored:
    the same code gives the same bits)."""
    model.check_spec()
    feats = features.to_pandas()
    feats = feats[feats["active"].fillna(0) > 0].reset_index(drop=True)
    scored = model.score(feats, reasons=reasons)
    if reasons and evidence and len(scored):
        scored = with_evidence(store, scored)
    return _finish(scored, model, name, version)


def read_points(table: pa.Table) -> pa.Table:
    """Validate a points table: columns uscc and as_of, every code valid, every date a date."""
    missing = [c for c in ("uscc", "as_of") if c not in table.column_names]
    if missing:
        raise BadPoints(f"points need columns uscc and as_of; missing: {', '.join(missing)}")
    text = table.column("uscc").cast(pa.string())
    bad = []
    for i, code in enumerate(text.to_pylist()):
        try:
            codes.validate(code)
        except codes.InvalidUSCC as exc:
            bad.append(f"row {i + 1}: {code!r}: {exc.message}")
        if len(bad) >= 5:
            break
    if bad:
        raise BadPoints("invalid unified social credit codes: " + "; ".join(bad))
    try:
        as_of = table.column("as_of").cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            as_of = pa.compute.strptime(table.column("as_of").cast(pa.string()), "%Y-%m-%d", "s")
            as_of = as_of.cast(pa.date32())
        except pa.ArrowInvalid as exc:
            raise BadPoints(f"as_of must be dates YYYY-MM-DD: {exc}") from None
    compact = pa.array([codes.compact(c) for c in text.to_pylist()], pa.string())
    return pa.table({"uscc": compact, "as_of": as_of})


def predict_points(
    store: Store,
    model: TierModel,
    points: pa.Table,
    name: str,
    version: str,
    reasons: int = 3,
    evidence: bool = True,
) -> pa.Table:
    """Each distinct (uscc, as_of) pair scored once with features as of its own date. Codes
    without an entity registered by that date are returned with status `unknown` and no score
    (natural persons and codes the store has never seen are not scored)."""
    model.check_spec()
    points = read_points(points)
    if points.num_rows == 0:
        raise BadPoints("no points to score: the file has no rows")
    points = points.group_by(["uscc", "as_of"], use_threads=False).aggregate([])  # once each
    with store.connect() as con:
        con.register("pts", points)
        known = con.sql(
            "SELECT p.uscc, p.as_of, EXISTS (SELECT 1 FROM entities e WHERE e.uscc = p.uscc "
            "AND e.recorded_date <= p.as_of) AS known FROM pts p"
        ).to_arrow_table()
    feats = build_features_at(store, known.filter(known.column("known"))).to_pandas()
    scored = model.score(feats, reasons=reasons)  # no known point: no rows, the same columns
    if reasons and evidence and len(scored):
        scored = with_evidence(store, scored)
    scored["status"] = "scored"
    unknown = known.filter(pa.compute.invert(known.column("known"))).to_pandas()
    rows: list[Any] = [scored]
    if len(unknown):
        rows.append(unknown[["uscc", "as_of"]].assign(status="unknown"))
    result = pd.concat(rows, ignore_index=True) if len(unknown) else scored
    if len(result):
        result["as_of"] = pd.to_datetime(result["as_of"]).dt.date
    order: Any = np.lexsort((result["as_of"].astype(str), result["uscc"])) if len(result) else []
    return _finish(result.iloc[order].reset_index(drop=True), model, name, version)
