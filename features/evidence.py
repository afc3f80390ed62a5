"""The records behind a company's features: evidence for deductions and reason codes."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from features.builder import UNDONE_CTE, _counting, _lit, _predicate
from features.specs import SPECS, FeatureSpec, Spec
from records.catalogue import Catalogue, default_catalogue
from records.store import Store


def evidence_sql(
    feature_names: Iterable[str],
    specs: tuple[Spec, ...] = SPECS,
    catalogue: Catalogue | None = None,
    per_feature: int = 5,
) -> str:
    """Over views `wanted(uscc, as_of, feature)` and `points(uscc, as_of)`: the latest
    `per_feature` counting records matching each wanted feature's filter."""
    cat = catalogue or default_catalogue()
    index = {s.name: s for s in specs if isinstance(s, FeatureSpec)}
    chosen = [index[n] for n in dict.fromkeys(feature_names) if n in index]
    if not chosen:
        return (
            "SELECT uscc, as_of, feature, CAST([] AS VARCHAR[]) AS records FROM wanted WHERE false"
        )
    categories = sorted({c for s in chosen for c in s.categories})
    cases = " ".join(f"WHEN {_lit(s.name)} THEN ({_predicate(s)})" for s in chosen)
    return f"""
    WITH {UNDONE_CTE},
    rows AS ({_counting(categories, cat)}),
    matched AS (
        SELECT w.uscc, w.as_of, w.feature, r.record_id, r.event_date
        FROM wanted w JOIN rows r ON r.uscc = w.uscc AND r.as_of = w.as_of
        WHERE CASE w.feature {cases} ELSE false END
    )
    SELECT uscc, as_of, feature,
        list(record_id ORDER BY event_date DESC, record_id)[1:{per_feature}] AS records
    FROM matched GROUP BY uscc, as_of, feature
    """


def with_evidence(store: Store, scores: pa.Table, specs: tuple[Spec, ...] = SPECS) -> pa.Table:
    """Add to scored rows the record ids behind each of their top deductions."""
    wanted = [
        {"uscc": u, "as_of": a, "feature": d["feature"]}
        for u, a, ds in zip(
            scores.column("uscc").to_pylist(),
            scores.column("as_of").to_pylist(),
            scores.column("top_deductions").to_pylist(),
            strict=True,
        )
        for d in ds or []
    ]
    schema = pa.schema([("uscc", pa.string()), ("as_of", pa.date32()), ("feature", pa.string())])
    wanted_table = pa.Table.from_pylist(wanted, schema=schema)
    with store.connect() as con:
        con.register("wanted", wanted_table)
        con.execute("CREATE TEMP TABLE points AS SELECT DISTINCT uscc, as_of FROM wanted")
        sql = evidence_sql({w["feature"] for w in wanted}, specs)
        found = {
            (r["uscc"], r["as_of"], r["feature"]): r["records"]
            for r in con.sql(sql).to_arrow_table().to_pylist()
        }
    evidence = [
        [{**d, "records": found.get((u, a, d["feature"]), [])} for d in ds or []]
        for u, a, ds in zip(
            scores.column("uscc").to_pylist(),
            scores.column("as_of").to_pylist(),
            scores.column("top_deductions").to_pylist(),
            strict=True,
        )
    ]  # fmt: skip
    item = pa.struct(
        [("feature", pa.string()), ("points", pa.float64()), ("records", pa.list_(pa.string()))]
    )
    index = scores.schema.get_field_index("top_deductions")
    return scores.set_column(index, "top_deductions", pa.array(evidence, pa.list_(item)))
