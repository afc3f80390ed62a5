"""The records behind a company's features: evidence for deductions and reason codes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from features.builder import (
    FIXES_CTE,
    UNDONE_CTE,
    _counting,
    _in,
    _lit,
    _predicate,
    _windows,
    open_listings_sql,
)
from features.specs import SPECS, FeatureSpec, Spec
from records.catalogue import Catalogue, default_catalogue
from records.store import Store

_LARGEST, _LATEST = 1, 2
_BY_LARGEST = ("worst_value", "max_amount")
_BY_LATEST = ("latest_value", "latest_amount")


def _value(spec: FeatureSpec) -> str:
    """The value a worst value or a largest amount is the largest of, per record."""
    if spec.aggregation == "max_amount":
        return "r.amount"
    cases = " ".join(f"WHEN {_lit(k)} THEN {v}" for k, v in spec.values)
    return f"CASE r.severity {cases} END"


def evidence_sql(
    feature_names: Iterable[str],
    specs: tuple[Spec, ...] = SPECS,
    catalogue: Catalogue | None = None,
    per_feature: int = 5,
) -> str:
    """Over views `wanted(uscc, as_of, feature)` and `points(uscc, as_of)`: per wanted feature,
    the number of counting records behind its value, the latest one's date, the departments
    that sent them and the latest `per_feature` record ids.

    The records behind a value are those it is read from: for a count, a sum or a days-since,
    every record matching the filter; for a worst value or a largest amount, the records that
    have it (the D grade, not the A grade given since); for a latest value or amount, the latest
    record alone (as the builder picks it: latest event date, then largest record id)."""
    cat = catalogue or default_catalogue()
    index = {s.name: s for s in specs if isinstance(s, FeatureSpec)}
    chosen = [index[n] for n in dict.fromkeys(feature_names) if n in index]
    if not chosen:
        return (
            "SELECT uscc, as_of, feature, CAST([] AS VARCHAR[]) AS records, 0 AS matched, "
            "CAST(NULL AS DATE) AS latest, CAST([] AS VARCHAR[]) AS departments "
            "FROM wanted WHERE false"
        )
    # a list flag's evidence is the listings still open (not every listing in its publicity
    # period: a removed one is no basis for a veto); other features', the records they count
    listed = [s for s in chosen if s.aggregation == "open_listing"]
    counted = [s for s in chosen if s.aggregation != "open_listing"]
    ctes, sources = [UNDONE_CTE, FIXES_CTE], []
    if counted:
        categories = sorted({c for s in counted for c in s.categories})
        ctes.append(f"rows AS ({_counting(categories, cat, '', _windows(counted))})")
        matching = """
            SELECT w.uscc, w.as_of, w.feature, r.record_id, r.event_date, r.source_dept{extra}
            FROM wanted w JOIN rows r ON r.uscc = w.uscc AND r.as_of = w.as_of
            WHERE CASE w.feature {cases} ELSE false END"""

        def filters(specs: list[FeatureSpec]) -> str:
            return " ".join(f"WHEN {_lit(s.name)} THEN ({_predicate(s)})" for s in specs)

        # counts, sums, days-since: every matching record (no window over them: most rows)
        every = [s for s in counted if s.aggregation not in _BY_LARGEST + _BY_LATEST]
        if every:
            sources.append(matching.format(extra="", cases=filters(every)))
        # worst values, largest amounts, latest values: only the records the value is read from
        picked = [s for s in counted if s.aggregation in _BY_LARGEST + _BY_LATEST]
        if picked:
            picks = " ".join(
                f"WHEN {_lit(s.name)} THEN {_LATEST if s.aggregation in _BY_LATEST else _LARGEST}"
                for s in picked
            )
            values = " ".join(
                f"WHEN {_lit(s.name)} THEN {_value(s)}"
                for s in picked
                if s.aggregation in _BY_LARGEST
            )
            value = f"CAST(CASE w.feature {values} END AS DOUBLE)" if values else "NULL::DOUBLE"
            extra = f", CASE w.feature {picks} END AS pick, {value} AS value"
            sources.append(f"""
        SELECT uscc, as_of, feature, record_id, event_date, source_dept FROM (
            {matching.format(extra=extra, cases=filters(picked))}
        )
        WINDOW by_point AS (PARTITION BY uscc, as_of, feature)
        QUALIFY CASE pick
            WHEN {_LARGEST} THEN value = max(value) OVER by_point
            ELSE row_number() OVER (by_point ORDER BY event_date DESC, record_id DESC) = 1
            END""")
    if listed:
        cases = " ".join(
            f"WHEN {_lit(s.name)} THEN {_in('o.category', s.categories)}" for s in listed
        )
        ctes.append(open_listings_sql(cat))
        sources.append(f"""
        SELECT w.uscc, w.as_of, w.feature, o.record_id, o.event_date, o.source_dept
        FROM wanted w JOIN open_listings o ON o.uscc = w.uscc AND o.as_of = w.as_of
        WHERE CASE w.feature {cases} ELSE false END""")
    with_ = ",\n    ".join(ctes)
    return f"""
    WITH {with_},
    matched AS ({" UNION ALL ".join(sources)}
    )
    SELECT uscc, as_of, feature,
        list(record_id ORDER BY event_date DESC, record_id)[1:{per_feature}] AS records,
        count(*) AS matched, max(event_date) AS latest,
        list(DISTINCT source_dept ORDER BY source_dept) FILTER (WHERE source_dept IS NOT NULL)
            AS departments
    FROM matched GROUP BY uscc, as_of, feature
    """


Key = tuple[str, date, str]


COMPANIES_AT_ONCE = 100_000
"""Companies per evidence query. Its joins grow with the records of the companies it covers: a
province at once (1 M companies, 3 reasons each) ran out of DuckDB's 6 GB; in parts each query
reads the records again, which costs less than the joins save."""


def feature_evidence(
    store: Store,
    wanted: pa.Table,
    specs: tuple[Spec, ...] = SPECS,
    companies_at_once: int | None = None,
) -> dict[Key, dict[str, Any]]:
    """For rows `(uscc, as_of, feature)`: the records behind that feature at that date, as
    `{records, matched, latest, departments}` keyed by the row (absent when none count). The
    companies are taken `companies_at_once` (default `COMPANIES_AT_ONCE`) at a time."""
    at_once = companies_at_once or COMPANIES_AT_ONCE
    schema = pa.schema([("uscc", pa.string()), ("as_of", pa.date32()), ("feature", pa.string())])
    wanted = wanted.select(["uscc", "as_of", "feature"]).cast(schema)
    if wanted.num_rows == 0:
        return {}
    # once per row: a feature asked for twice (a veto and a model reason on one listing) must
    # not count its records twice
    wanted = wanted.group_by(["uscc", "as_of", "feature"], use_threads=False).aggregate([])
    companies = pc.unique(wanted.column("uscc"))
    found: dict[Key, dict[str, Any]] = {}
    with store.connect() as con:
        for start in range(0, len(companies), at_once):
            some = wanted.filter(pc.is_in(wanted.column("uscc"), companies.slice(start, at_once)))
            con.register("wanted", some)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE points AS SELECT DISTINCT uscc, as_of FROM wanted"
            )
            sql = evidence_sql(set(some.column("feature").to_pylist()), specs)
            for r in con.sql(sql).to_arrow_table().to_pylist():
                found[r["uscc"], r["as_of"], r["feature"]] = {
                    "records": r["records"],
                    "matched": r["matched"],
                    "latest": r["latest"],
                    "departments": r["departments"] or [],
                }
            con.unregister("wanted")
    return found


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
    found = feature_evidence(store, pa.Table.from_pylist(wanted, schema=schema), specs)
    evidence = [
        [{**d, "records": found.get((u, a, d["feature"]), {}).get("records", [])} for d in ds or []]
        for u, a, ds in zip(
            scores.column("uscc").to_pylist(),
            scores.column("as_of").to_pylist(),
            scores.column("top_deductions").to_pylist(),
            strict=True,
        )
    ]
    item = pa.struct(
        [("feature", pa.string()), ("points", pa.float64()), ("records", pa.list_(pa.string()))]
    )
    index = scores.schema.get_field_index("top_deductions")
    return scores.set_column(index, "top_deductions", pa.array(evidence, pa.list_(item)))
