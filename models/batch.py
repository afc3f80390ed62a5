"""Batch tiering and point-in-time predictions with a registered tier model.

`tier_companies` scores every company registered and active on an as-of date; `predict_points`
scores arbitrary (uscc, as_of) pairs, each with features as of its own date (a backtest), and
lists the points of companies not registered or not active on their date with a status and no
score, as the batch leaves them out. Both return one row per company and date with probability,
raw score, the model's tier, the final tier, the reasons as JSON text (Chinese and English,
overrides first, evidence filled in) and the model and spec versions, ready to be stored
(`features.results.Results`, kind `tiers`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.builder import build_features, build_features_at
from models.bundle import TierModel, with_evidence
from records import uscc as codes
from records.clock import CHINA_STANDARD_TIME, china_today
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
    active = features.filter(pc.fill_null(pc.greater(features.column("active"), 0), False))
    parts = [
        _finish(scored, model, name, version)
        for scored in _scored_parts(store, model, active, reasons, evidence)
    ]
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


PART = 100_000
"""Companies scored, explained and backed with evidence at once. The work per company does not
depend on the others (cut-offs are the model's), so a province is taken in parts: the reasons as
Python objects and the evidence query's joins grow with the companies at hand (1 M companies at
once ran out of DuckDB's 6 GB in the evidence query, at 10 GB for the process)."""


def _scored_parts(
    store: Store,
    model: TierModel,
    features: pa.Table | pd.DataFrame,
    reasons: int,
    evidence: bool,
    part: int | None = None,
) -> Iterator[pd.DataFrame]:
    """`model.score` (and the evidence) of the feature rows, `part` (default `PART`) rows at a
    time, in order; one empty frame for no rows."""
    part = part or PART
    for start in range(0, max(len(features), 1), part):
        rows = (
            features.slice(start, part).to_pandas()
            if isinstance(features, pa.Table)
            else features.iloc[start : start + part].reset_index(drop=True)
        )
        scored = model.score(rows, reasons=reasons)
        if reasons and evidence and len(scored):
            scored = with_evidence(store, scored)
        yield scored


SHOWN = 5
"""Rows named in a message about bad points (the file may have many more)."""


def _named(what: str, problems: list[str], total: int) -> str:
    more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
    return f"{what}: " + "; ".join(problems) + more


def _dates(column: pa.ChunkedArray) -> tuple[pa.Array, list[int]]:
    """The as-of dates (null where empty) and the indices of values that are not dates."""
    values = column.combine_chunks()
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    if pa.types.is_null(kind):
        return pa.nulls(len(values), pa.date32()), []
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        # dated as ingestion dates records: 2026-06-29 20:00 UTC is 30 June in China
        china = values.cast(pa.timestamp(kind.unit, CHINA_STANDARD_TIME))
        return pc.local_timestamp(china).cast(pa.date32()), []
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return values.cast(pa.date32()), []  # a naive time stamp: its own date
    try:
        text = values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(values), pa.date32()), list(range(len(values)))
    text = pc.utf8_trim_whitespace(text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    return parsed.cast(pa.date32()), np.flatnonzero(bad.to_numpy(zero_copy_only=False)).tolist()


def read_points(table: pa.Table, today: date | None = None) -> pa.Table:
    """Validate a points table: columns uscc and as_of, every row with a code and a date, every
    code valid, every date a date (`YYYY-MM-DD`, a date, or a time stamp: one with a time zone is
    dated in China Standard Time) and not after `today` (default: today in China; the records
    of later days are not known yet). Rows are named 1 = the first row (after a CSV's header)."""
    missing = [c for c in ("uscc", "as_of") if c not in table.column_names]
    if missing:
        raise BadPoints(f"points need columns uscc and as_of; missing: {', '.join(missing)}")
    text = table.column("uscc").cast(pa.string()).to_pylist()
    as_of, not_dates = _dates(table.column("as_of"))
    unparsed = set(not_dates)
    empty: list[str] = []
    for i, (code, no_day) in enumerate(zip(text, as_of.is_null().to_pylist(), strict=True)):
        if code is None or not code.strip():
            empty.append(f"row {i + 1}: uscc is empty")
        if no_day and i not in unparsed:
            empty.append(f"row {i + 1}: as_of is empty")
    bad = []
    for i, code in enumerate(text):
        if code is None or not code.strip():
            continue
        try:
            codes.validate(code)
        except codes.InvalidUSCC as exc:
            bad.append(f"row {i + 1}: {code!r}: {exc.message}")
            if len(bad) >= SHOWN:
                break
    original = table.column("as_of").combine_chunks()
    dates = [f"row {i + 1}: {original[i].as_py()!r}" for i in not_dates[:SHOWN]]
    today = today or china_today()
    later = np.flatnonzero(
        pc.fill_null(pc.greater(as_of, pa.scalar(today, pa.date32())), False).to_numpy(
            zero_copy_only=False
        )
    ).tolist()
    future = [f"row {i + 1}: {as_of[i].as_py()}" for i in later[:SHOWN]]
    unknown = f"as_of after today ({today}): the records of those days are not known yet"
    problems = [
        _named("rows without a code or a date", empty[:SHOWN], len(empty)) if empty else "",
        "invalid unified social credit codes: " + "; ".join(bad) if bad else "",
        _named("as_of must be dates YYYY-MM-DD", dates, len(not_dates)) if dates else "",
        _named(unknown, future, len(later)) if future else "",
    ]
    if any(problems):
        raise BadPoints(". ".join(p for p in problems if p))
    compact = pa.array([codes.compact(c) for c in text], pa.string())
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
    without an entity registered by that date are returned with status `unknown`, companies
    registered but not active on that date (suspended, revoked, deregistered as known then) with
    status `inactive`, both with no score or tier (natural persons and codes the store has never
    seen are not scored; `credsup tier` leaves inactive companies out)."""
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
    active = (feats["active"].fillna(0) > 0).to_numpy()  # as `tier_features` selects
    # no active point: no rows, the same columns
    parts = _scored_parts(store, model, feats[active], reasons, evidence)
    scored = pd.concat(list(parts), ignore_index=True)
    scored["status"] = "scored"
    inactive = feats.loc[~active, ["uscc", "as_of"]].assign(status="inactive")
    unknown = known.filter(pc.invert(known.column("known"))).to_pandas()
    unknown = unknown[["uscc", "as_of"]].assign(status="unknown")
    others = [rows for rows in (inactive, unknown) if len(rows)]
    result = pd.concat([scored, *others], ignore_index=True) if others else scored
    if len(result):
        result["as_of"] = pd.to_datetime(result["as_of"]).dt.date
    order: Any = np.lexsort((result["as_of"].astype(str), result["uscc"])) if len(result) else []
    return _finish(result.iloc[order].reset_index(drop=True), model, name, version)
