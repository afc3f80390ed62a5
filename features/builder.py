"""Point-in-time features: the specs compiled to one set-based SQL query, run by DuckDB.

A record counts for a company on date `as_of` when
- it was recorded by then (`recorded_date <= as_of`) and happened by then (`event_date <= as_of`);
- it is still within its publicity period (catalogue, by category and severity, in calendar
  months and years; a published record stops counting on `event_date + max`; categories that
  are never published, i.e. max 0, count by the feature's window alone);
- no repair or withdrawal event for it took effect by `as_of` and was recorded by `as_of`.
A listing (`listed`) is open while no counting `removed` record of the same company refers to it
(`attributes.ref`), or, for removals without a reference, none of the same list dated on or after
it. An objection is open when the latest of its `objection_opened` and `objection_closed` events
known on `as_of` (by effective day, then commit order; in one batch a closing of the same day
comes last) is an opening. Entity facts come from the entity version in force: of
those with `recorded_date <= as_of`, the newest by the department's date (`version_order`).

Why SQL text and not Ibis: the query is generated from the specs as plain ANSI-style SQL with
aggregate FILTER clauses, `arg_max` and JSON extraction, which DuckDB runs here and which
sqlglot transpiles to Spark SQL for national scale (`to_spark_sql`, checked in the tests). One
string is easy to read, log and EXPLAIN; Ibis would add a dependency and a layer without adding
anything the specs need.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import duckdb
import pyarrow as pa

from features.specs import SPECS, EntitySpec, FeatureSpec, FlagSpec, Spec, spec_version
from records.catalogue import Catalogue, default_catalogue
from records.publicity import counting_end_sql
from records.schema import version_order
from records.store import Store
from records.uscc import entity_type_sql

DECAY_STEPS = ((1, 1.0), (2, 0.6), (3, 0.3))
DECAY_TAIL = 0.15
"""Time-decay weights of negative records by age in calendar years (DOMAIN §5): ≤1 year 1,
≤2 years 0.6, ≤3 years 0.3, older 0.15. A record is at most n years old on every day up to
its date n years on (29 February + 1 year is 28 February): one dated 2025-03-31 still weighs 1
on 2026-03-31."""

LIST_CATEGORIES = (
    "abnormal_operation_list", "serious_dishonest_list", "focus_attention_list",
    "dishonest_judgment_debtor", "red_list",
)  # fmt: skip


ISO_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
"""The only form a date attribute compared by `later_than` or `period_at_most` is read in."""


APART_CATEGORIES = ("tax_declaration", "annual_report")
"""Categories aggregated each in a grouping of its own: tax returns and annual reports are about
two thirds of all records and only a few features read them, so their rows are kept out of the
grouping that evaluates every other feature's filter on each row."""

_ZERO = {"count": "0", "decayed_count": "0.0", "sum_amount": "0.0", "max_amount": "0.0",
         "sum_attribute": "0.0"}  # fmt: skip
"""What an aggregation gives a company without matching records (others: NULL)."""


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(_lit(v) for v in values)})"


def _predicate(spec: FeatureSpec) -> str:
    parts = [_in("category", spec.categories)]
    if spec.severities is not None:
        parts.append(_in("severity", spec.severities))
    if spec.window_months is not None:
        parts.append(_window(spec.window_months))
    if spec.attribute_equals is not None:
        key, value = spec.attribute_equals
        parts.append(f"{_attribute_text(spec, key)} = {_lit(value)}")
    if spec.amount_equals is not None:
        parts.append(f"amount = {float(spec.amount_equals)!r}")
    if spec.later_than is not None:
        key, grace = spec.later_than
        parts.append(f"date_diff('day', {_attribute_date(spec, key)}, event_date) > {int(grace)}")
    if spec.period_at_most is not None:
        start, end, days = spec.period_at_most
        length = f"date_diff('day', {_attribute_date(spec, start)}, {_attribute_date(spec, end)})"
        parts.append(f"NOT coalesce({length} > {int(days)}, false)")
    return " AND ".join(parts)


def _attribute_date(spec: FeatureSpec, key: str) -> str:
    """A date attribute of the spec's records; NULL unless it is an ISO `YYYY-MM-DD` date."""
    text = _attribute_text(spec, key)
    return (
        f"CASE WHEN regexp_full_match({text}, {_lit(ISO_DATE)}) THEN TRY_CAST({text} AS DATE) END"
    )


def _attribute_text(spec: FeatureSpec, key: str) -> str:
    """An attribute of the spec's records as text; only the spec's categories' rows are parsed
    (a projection evaluates every part of an AND)."""
    only = f"CASE WHEN {_in('category', spec.categories)} THEN attributes END"
    return f"json_extract_string({only}, {_lit('$.' + key)})"


def _window(months: int) -> str:
    """The record is in the last `months` calendar months on `as_of` (a column of `_counting`)."""
    return f"within_{int(months)}m"


def _decay() -> str:
    steps = " ".join(
        f"WHEN as_of <= event_date + INTERVAL {n} YEAR THEN {w}" for n, w in DECAY_STEPS
    )
    return f"CAST(CASE {steps} ELSE {DECAY_TAIL} END AS DOUBLE)"  # literals alone are DECIMAL


EXACT_BELOW = "1e16"
"""Terms smaller than this are added exactly (DECIMAL(38, 10): 10^12 of them stay below its
10^28); larger ones, which no amount or count is, as doubles."""


def _sum(value: str, where: str) -> str:
    """The sum of `value` over the rows `where` holds (0.0 over none), the same bits whatever the
    order DuckDB's threads add the rows in: a double sum differed in the last bits from run to
    run (1,024 companies of 1 M in one feature). Terms below `EXACT_BELOW` are added exactly,
    rounded to 10 decimals, and the total is the nearest double; terms of that size or more are
    added as doubles (in an order that may vary) and then to it, so nothing overflows or is
    left out."""
    small = f"CASE WHEN abs({value}) < {EXACT_BELOW} THEN CAST({value} AS DECIMAL(38, 10)) END"
    large = f"CASE WHEN abs({value}) >= {EXACT_BELOW} THEN {value} END"
    return (
        f"coalesce(CAST(sum({small}) FILTER (WHERE {where}) AS DOUBLE), 0.0) "
        f"+ coalesce(sum({large}) FILTER (WHERE {where}), 0.0)"
    )


def _aggregate(spec: FeatureSpec) -> str:
    f = _predicate(spec)
    a = spec.aggregation
    if a == "count":
        return f"count(*) FILTER (WHERE {f})"
    if a == "decayed_count":
        return _sum(_decay(), f)
    if a == "sum_amount":
        return _sum("amount", f)
    if a == "max_amount":
        return f"coalesce(max(amount) FILTER (WHERE {f}), 0.0)"
    if a == "sum_attribute":
        value = f"TRY_CAST(json_extract_string(CASE WHEN {f} THEN attributes END, {_lit('$.' + str(spec.attribute))}) AS DOUBLE)"
        # a count in an attribute: negative, NaN or infinite values are not counts and do not count
        return _sum(f"CASE WHEN isfinite({value}) AND {value} >= 0 THEN {value} END", f)
    # the value wrapped in a struct: arg_max skips rows whose value is NULL, and the latest
    # record's own value is wanted even when it is NULL (as Spark's max_by gives it)
    if a == "latest_amount":
        return f"(arg_max(struct_pack(v := amount), struct_pack(d := event_date, r := record_id)) FILTER (WHERE {f})).v"
    if a == "latest_value":
        cases = " ".join(f"WHEN {_lit(k)} THEN {v}" for k, v in spec.values)
        return (
            f"(arg_max(struct_pack(v := CAST(CASE severity {cases} END AS DOUBLE)), "
            f"struct_pack(d := event_date, r := record_id)) FILTER (WHERE {f})).v"
        )
    if a == "worst_value":
        cases = " ".join(f"WHEN {_lit(k)} THEN {v}" for k, v in spec.values)
        return f"max(CAST(CASE severity {cases} END AS DOUBLE)) FILTER (WHERE {f})"
    if a == "days_since_last":
        return f"date_diff('day', max(event_date) FILTER (WHERE {f}), any_value(as_of))"
    raise ValueError(f"{spec.name}: {a} is not a plain aggregation")


UNDONE_CTE = """undone AS (  -- records repaired or withdrawn, and from when (both dates reached)
        SELECT record_id, min(greatest(effective_date, recorded_date)) AS undone_on
        FROM events WHERE event_type IN ('repair', 'withdrawal') GROUP BY record_id
    )"""
"""The CTE `_counting` needs: the first day each repaired or withdrawn record stops counting."""

FIXES_CTE = """fixes AS (  -- the latest correction in force at each point, per corrected record
        SELECT p.uscc, p.as_of, e.record_id,
            arg_max(e.attributes, struct_pack(s := greatest(e.effective_date, e.recorded_date),
                                              b := e.batch_id, i := e.event_id)) AS fix
        FROM events e
        JOIN records r ON r.record_id = e.record_id
        JOIN points p ON p.uscc = r.uscc
        WHERE e.event_type = 'correction' AND greatest(e.effective_date, e.recorded_date) <= p.as_of
        GROUP BY p.uscc, p.as_of, e.record_id
    )"""
"""The CTE `_counting` needs over `points`: each correction replaces severity, amount and
attributes (overlaid as a JSON merge patch) from the day it is in force; the latest wins (by that
day, then commit order)."""

CORRECTED_COLUMNS = """CASE WHEN f.fix IS NULL THEN r.severity
                    ELSE coalesce(json_extract_string(f.fix, '$.severity'), r.severity)
                    END AS severity,
               CASE WHEN f.fix IS NULL OR NOT coalesce(json_exists(f.fix, '$.amount'), false)
                    THEN r.amount
                    ELSE TRY_CAST(json_extract_string(f.fix, '$.amount') AS DOUBLE)
                    END AS amount,
               CASE WHEN f.fix IS NULL OR coalesce(json_type(f.fix, '$.attributes'), '') <> 'OBJECT'
                    THEN r.attributes
                    ELSE CAST(json_merge_patch(coalesce(r.attributes, '{}'),
                                               json_extract(f.fix, '$.attributes')) AS VARCHAR)
                    END AS attributes"""
"""A record's severity, amount and attributes in their corrected form (needs `fixes` as f)."""


def _counting(
    categories: Iterable[str] | None,
    catalogue: Catalogue,
    extra: str = "",
    windows: Iterable[int] = (),
) -> str:
    """Records counting at each point (see the module docstring), in their corrected form, with
    a flag `within_<n>m` per window of n calendar months: `as_of` is before the record's date
    plus n months (the day a publicity period of n months would end). `extra` adds conditions
    on `r` and `p`."""
    where = f"AND {_in('r.category', categories)}" if categories is not None else ""
    flags = "".join(f",\n                   p.as_of < r.event_date + INTERVAL {int(n)} MONTH "
                    f"AS {_window(n)}" for n in sorted(set(windows)))  # fmt: skip
    return f"""
        SELECT * FROM (
            SELECT p.uscc, p.as_of, r.record_id, r.category, r.event_date, r.source_dept,
                   {CORRECTED_COLUMNS}{flags}
            FROM points p
            JOIN records r ON r.uscc = p.uscc
            LEFT JOIN undone u ON u.record_id = r.record_id
            LEFT JOIN fixes f ON f.uscc = p.uscc AND f.as_of = p.as_of AND f.record_id = r.record_id
            WHERE r.recorded_date <= p.as_of AND r.event_date <= p.as_of {where} {extra}
              AND (u.undone_on IS NULL OR u.undone_on > p.as_of)
        ) WHERE coalesce(as_of < {counting_end_sql(catalogue)}, true)
    """


def open_listings_sql(catalogue: Catalogue | None = None) -> str:
    """CTEs `list_rows`, `removals` and `open_listings` (after `undone` and `fixes`, over
    `points`): the listings counting at each point that no counting removal has ended (one
    naming it in `ref`, or a later one of the list without a reference), in corrected form.
    The features' list flags and the published lists both read them."""
    cat = catalogue or default_catalogue()
    return f"""list_rows AS ({_counting(LIST_CATEGORIES, cat)}),
    removals AS (
        SELECT uscc, as_of, category, json_extract_string(attributes, '$.ref') AS ref, event_date
        FROM list_rows WHERE severity = 'removed'
    ),
    open_listings AS (
        SELECT l.uscc, l.as_of, l.category, l.severity, l.record_id, l.event_date, l.source_dept,
               l.attributes
        FROM list_rows l
        WHERE l.severity = 'listed'
          AND NOT EXISTS (SELECT 1 FROM removals x WHERE x.uscc = l.uscc AND x.as_of = l.as_of
                          AND x.ref = l.record_id)
          AND NOT EXISTS (SELECT 1 FROM removals x WHERE x.uscc = l.uscc AND x.as_of = l.as_of
                          AND x.category = l.category AND x.ref IS NULL AND x.event_date >= l.event_date)
    )"""


def _horizon(specs: tuple[Spec, ...]) -> str:
    """Rows of plain categories older than every window that reads them cannot count."""
    special = ("open_listing", "honoured_commitments", "breach_share")
    widest: dict[str, int | None] = {}
    for s in specs:
        if isinstance(s, FeatureSpec) and s.aggregation not in special:
            for c in s.categories:
                w = s.window_months
                widest[c] = (
                    None
                    if w is None or (c in widest and widest[c] is None)
                    else max(w, widest.get(c) or 0)
                )
    cases = " ".join(f"WHEN {_lit(c)} THEN {w}" for c, w in sorted(widest.items()) if w is not None)
    return (
        f"AND coalesce(p.as_of < r.event_date + to_months(CASE r.category {cases} END), true)"
        if cases
        else ""
    )


def _windows(specs: Iterable[Spec]) -> set[int]:
    return {s.window_months for s in specs
            if isinstance(s, FeatureSpec) and s.window_months is not None}  # fmt: skip


ENTITY_TYPE = f"coalesce(v.entity_type, {entity_type_sql('p.uscc')})"
"""The entity type a feature's applicability (`FeatureSpec.applies_to`) is judged by: the entity
version's in force, else (no version known yet) the one the code says."""


def features_sql(specs: tuple[Spec, ...] = SPECS, catalogue: Catalogue | None = None) -> str:
    """The whole point-in-time query over views `points(uscc, as_of)`, `records`, `entities`, `events`."""
    cat = catalogue or default_catalogue()
    plain = [s for s in specs if isinstance(s, FeatureSpec) and s.aggregation not in
             ("open_listing", "honoured_commitments", "breach_share")]  # fmt: skip
    listings = [s for s in specs if isinstance(s, FeatureSpec) and s.aggregation == "open_listing"]
    commitments = [s for s in specs if isinstance(s, FeatureSpec)
                   and s.aggregation in ("honoured_commitments", "breach_share")]  # fmt: skip
    flags = [s for s in specs if isinstance(s, FlagSpec)]
    # one grouping per category kept apart, over its rows only, for the features reading it alone
    apart: dict[str, list[FeatureSpec]] = {}
    for s in plain:
        kept = set(s.categories) & set(APART_CATEGORIES)
        if kept and len(s.categories) > 1:
            raise ValueError(f"{s.name}: a feature reading {sorted(kept)} may read nothing else")
        if kept:
            apart.setdefault(s.categories[0], []).append(s)
    alias = {s.name: f"t{i}" for i, group in enumerate(apart.values()) for s in group}
    plain = [s for s in plain if s.name not in alias]
    needed = sorted({c for s in plain for c in s.categories})

    plain_cols = ",\n            ".join(f"{_aggregate(s)} AS {s.name}" for s in plain)
    list_cols = ",\n            ".join(
        f"max(CASE WHEN {_in('category', s.categories)} AND severity = 'listed' THEN 1 ELSE 0 END) AS {s.name}"
        for s in listings
    )
    commit_cols = []
    for s in commitments:
        window = _window(s.window_months) if s.window_months is not None else "true"
        if s.aggregation == "honoured_commitments":
            commit_cols.append(
                f"count(*) FILTER (WHERE category = 'credit_commitment' AND {window} AND due <= as_of "
                f"AND NOT breached) AS {s.name}"
            )
        else:
            commit_cols.append(
                f"CAST(count(*) FILTER (WHERE category = 'credit_commitment' AND {window} AND breached) AS DOUBLE) / "
                f"nullif(count(*) FILTER (WHERE category = 'credit_commitment' AND {window}), 0) AS {s.name}"
            )
    entity_exprs = {
        "age_years": "round(date_diff('day', v.established_date, p.as_of) / 365.25, 4)",
        "log_capital": "round(log10(1 + v.registered_capital), 6)",
        "industry": "v.industry",
        "region": "v.region",
        "entity_type": "v.entity_type",
        "individual_business": "CASE WHEN v.entity_type = 'individual_business' THEN 1 ELSE 0 END",
        "active": "CASE WHEN v.status = 'active' THEN 1 ELSE 0 END",
    }
    select = ["p.uscc", "p.as_of"]
    for spec in specs:
        if isinstance(spec, EntitySpec):
            select.append(f"{entity_exprs[spec.expression]} AS {spec.name}")
            continue
        if isinstance(spec, FlagSpec):
            select.append(f"coalesce(o.{spec.name}, 0) AS {spec.name}")
            continue
        s = spec
        if s in listings:
            value = f"coalesce(l.{s.name}, 0)"
        elif s.name in alias:
            t = alias[s.name]
            zero = _ZERO.get(s.aggregation)
            value = f"coalesce({t}.{s.name}, {zero})" if zero else f"{t}.{s.name}"
        elif s in commitments:
            default = "0" if s.aggregation == "honoured_commitments" else "NULL"
            value = f"coalesce(c.{s.name}, {default})"
        else:
            zero = _ZERO.get(s.aggregation)
            value = f"coalesce(a.{s.name}, {zero})" if zero else f"a.{s.name}"
        if s.applies_to is not None:  # null, not 0, where it does not apply
            value = f"CASE WHEN {_in(ENTITY_TYPE, s.applies_to)} THEN {value} END"
        select.append(f"{value} AS {s.name}")
    apart_ctes = "".join(
        f"""t{i} AS (  -- {category}, on its own (see APART_CATEGORIES)
        SELECT uscc, as_of,
            {", ".join(f"{_aggregate(s)} AS {s.name}" for s in group)}
        FROM ({_counting((category,), cat, _horizon(specs), _windows(group))}) GROUP BY uscc, as_of
    ),
    """
        for i, (category, group) in enumerate(apart.items())
    )
    apart_joins = "".join(
        f"LEFT JOIN t{i} ON t{i}.uscc = p.uscc AND t{i}.as_of = p.as_of\n    "
        for i in range(len(apart))
    )
    entity_fields = "established_date, registered_capital, industry, region, entity_type, status"
    return f"""
    WITH {UNDONE_CTE},
    {FIXES_CTE},
    plain AS ({
        f'''
        SELECT uscc, as_of,
            {plain_cols}
        FROM ({_counting(needed, cat, _horizon(specs), _windows(plain))}) GROUP BY uscc, as_of'''
        if plain
        else "SELECT uscc, as_of FROM points WHERE false"
    }
    ),
    {apart_ctes}    {open_listings_sql(cat)},
    listed AS (
        SELECT uscc, as_of,
            {list_cols}
        FROM open_listings GROUP BY uscc, as_of
    ),
    commit_rows AS ({
        _counting(("credit_commitment", "commitment_breach"), cat, "", _windows(commitments))
    }),
    commit_marked AS (
        SELECT k.*,
            coalesce(TRY_CAST(json_extract_string(k.attributes, '$.due_date') AS DATE), k.event_date) AS due,
            EXISTS (SELECT 1 FROM commit_rows b WHERE b.category = 'commitment_breach'
                    AND b.uscc = k.uscc AND b.as_of = k.as_of
                    AND json_extract_string(b.attributes, '$.ref') = k.record_id) AS breached
        FROM commit_rows k
    ),
    commits AS (
        SELECT uscc, as_of,
            {", ".join(commit_cols) if commit_cols else "0 AS _none"}
        FROM commit_marked GROUP BY uscc, as_of
    ),
    objection_state AS (  -- the latest step (by day, then commit order) decides
        SELECT p.uscc, p.as_of, e.record_id,
            arg_max(e.event_type, struct_pack(
                d := e.effective_date, b := e.batch_id,
                k := CASE WHEN e.event_type = 'objection_closed' THEN 1 ELSE 0 END,
                i := e.event_id)) AS last_step
        FROM points p
        JOIN records r ON r.uscc = p.uscc AND r.recorded_date <= p.as_of
        JOIN events e ON e.record_id = r.record_id
        WHERE e.effective_date <= p.as_of AND e.recorded_date <= p.as_of
          AND e.event_type IN ('objection_opened', 'objection_closed')
        GROUP BY p.uscc, p.as_of, e.record_id
    ),
    objections AS (
        SELECT uscc, as_of,
            {
        ", ".join(
            f"max(CASE WHEN last_step = 'objection_opened' THEN 1 ELSE 0 END) AS {s.name}"
            for s in flags
        )
        or "0 AS _none"
    }
        FROM objection_state GROUP BY uscc, as_of
    ),
    entity_version AS (
        SELECT p.uscc, p.as_of,
            arg_max(struct_pack({", ".join(f"{c} := e.{c}" for c in entity_fields.split(", "))}),
                    {version_order("e")}) AS v
        FROM points p JOIN entities e ON e.uscc = p.uscc AND e.recorded_date <= p.as_of
        GROUP BY p.uscc, p.as_of
    )
    SELECT {", ".join(select)}
    FROM points p
    LEFT JOIN plain a ON a.uscc = p.uscc AND a.as_of = p.as_of
    {apart_joins}
    LEFT JOIN listed l ON l.uscc = p.uscc AND l.as_of = p.as_of
    LEFT JOIN commits c ON c.uscc = p.uscc AND c.as_of = p.as_of
    LEFT JOIN objections o ON o.uscc = p.uscc AND o.as_of = p.as_of
    LEFT JOIN (SELECT uscc, as_of, v.* FROM entity_version) v ON v.uscc = p.uscc AND v.as_of = p.as_of
    ORDER BY p.uscc, p.as_of
    """


def to_spark_sql(sql: str) -> str:
    """The same query in Spark SQL (for national scale), via sqlglot."""
    import sqlglot

    return str(sqlglot.transpile(sql, read="duckdb", write="spark")[0])


POINTS_AT_ONCE = 500_000
"""Points (company and date) whose features one query builds. The query's joins and groupings
grow with the points: 2 M companies at once ran out of DuckDB's 6 GB. In parts, each reads the
records again."""


def build_features_at(
    store: Store,
    points: pa.Table,
    specs: tuple[Spec, ...] = SPECS,
    catalogue: Catalogue | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    points_at_once: int | None = None,
) -> pa.Table:
    """Features for each (uscc, as_of) pair of `points`: one row per distinct pair, ordered by
    code and date, built `points_at_once` (default `POINTS_AT_ONCE`) pairs at a time."""
    points = points.select(["uscc", "as_of"]).cast(
        pa.schema([("uscc", pa.string()), ("as_of", pa.date32())])
    )
    at_once = points_at_once or POINTS_AT_ONCE
    own = con is None
    con = con or store.connect()
    try:
        con.register("points_input", points)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE all_points AS SELECT uscc, as_of, "
            "row_number() OVER (ORDER BY uscc, as_of) AS n "
            "FROM (SELECT DISTINCT uscc, as_of FROM points_input)"
        )
        (total,) = con.execute("SELECT count(*) FROM all_points").fetchone() or (0,)
        sql = features_sql(specs, catalogue)
        parts = []
        # each point's features read its own company's rows only, and the query orders by
        # (uscc, as_of): consecutive slices of the ordered points give the one query's table
        for start in range(0, max(total, 1), at_once):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE points AS SELECT uscc, as_of FROM all_points "
                f"WHERE n > {start} AND n <= {start + at_once}"
            )
            parts.append(con.sql(sql).to_arrow_table())
        con.execute("DROP TABLE all_points")
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    finally:
        if own:
            con.close()


def build_features(
    store: Store,
    as_of: date,
    companies: Iterable[str] | None = None,
    specs: tuple[Spec, ...] = SPECS,
    catalogue: Catalogue | None = None,
) -> pa.Table:
    """Features of every company registered by `as_of` (or of `companies`), as of that date."""
    with store.connect() as con:
        if companies is None:
            codes = con.execute(
                "SELECT DISTINCT uscc FROM entities WHERE recorded_date <= ? ORDER BY uscc", [as_of]
            ).fetchall()
            uscc = [c for (c,) in codes]
        else:
            uscc = sorted(set(companies))
        points = pa.table({"uscc": pa.array(uscc, pa.string()),
                           "as_of": pa.array([as_of] * len(uscc), pa.date32())})  # fmt: skip
        return build_features_at(store, points, specs, catalogue, con)


__all__ = [
    "build_features", "build_features_at", "features_sql", "open_listings_sql", "spec_version",
    "to_spark_sql",
]  # fmt: skip
