"""Point-in-time feature builder: all features as of one date (issue: features).

Goal: all features as of one date for 1 M companies with 30 M records in at most 20 s and 4 GiB
peak memory on 2 cores. The baseline is what one would write first: pandas reads the records
Parquet files of the store, applies the counting rules of `features.builder` (recorded and
happened by as_of, publicity expiry from the catalogue, windows, repairs and withdrawals from the
events, open listings via attributes.ref, objections, the entity version in force) and computes
each feature with a groupby per spec. Both results are compared feature by feature, so the ratio
compares equal work. Medians of several runs, because these machines are noisy.

Data: one simulation cannot give 30 M records for 1 M companies (a company's history is limited
by its age: 1 M companies x 12 years give ~19 M records, x 26 years ~22 M). The store holds two
runs over the same companies: `--years` (seed `--seed`: entities and records) plus `--extra-years`
(seed + 1: records only), whose companies are mapped one-to-one onto the first run's and whose
record ids (and references to them) get the prefix SIM2-. 1 M companies x (12 + 4) years give
30.75 M records. The store is built once through ingestion (`ingest_table`, in slices) under
`--workdir` and reused when it is already there.

Every measured build runs in a fresh spawned process (`build_features(store, as_of)`, the store
with the given memory_limit and threads, DuckDB's progress bar off), so its peak RSS (ru_maxrss
of that process when the build returns) excludes the set-up; the store's files are in the page
cache. The profile (each CTE on its own, then DuckDB's operator profile) and the check run in
processes of their own and are not timed.

    .venv/bin/python benchmarks/features.py --workdir var/bench-features           # full run
    .venv/bin/python benchmarks/features.py --companies 100000 --workdir var/bench-features
    .venv/bin/python benchmarks/features.py --memory-limit 4GB --runs 5 --no-profile --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

# Run as `python benchmarks/features.py`, this file's folder comes first on sys.path and the file
# itself would shadow the `features` package: drop the folder (`-m benchmarks.features` needs
# nothing).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from features.builder import (  # noqa: E402
    DECAY_STEPS,
    DECAY_TAIL,
    LIST_CATEGORIES,
    build_features,
    features_sql,
)
from features.specs import SPECS, EntitySpec, FeatureSpec, FlagSpec, Spec, spec_version  # noqa: E402
from records import publicity  # noqa: E402
from records.catalogue import Catalogue, default_catalogue  # noqa: E402
from records.ingest import ingest_table  # noqa: E402
from records.schema import TABLES  # noqa: E402
from records.settings import Settings  # noqa: E402
from records.simulate import SimulationConfig, simulate  # noqa: E402
from records.spans import Span  # noqa: E402
from records.store import Store  # noqa: E402
from records.uscc import entity_type_of_code  # noqa: E402

GIB = 2**30
GOAL_SECONDS = 20.0
GOAL_PEAK_GIB = 4.0
END = date(2026, 6, 30)
"""Last simulated day, also the default as-of date and the ingestion day."""

Say = Callable[..., None]


# ---- helpers run in fresh processes -----------------------------------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `fn(*args)` in a new spawned interpreter (nothing inherited from this process)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _idle_child() -> dict[str, Any]:
    """The floor: an interpreter with this script's imports and nothing else."""
    return {"peak_rss_bytes": _peak_rss_bytes()}


def _duckdb_child(root: str, as_of: date, memory_limit: str, threads: int) -> dict[str, Any]:
    """One measured build: `build_features` for every company registered by `as_of`."""
    store = Store(Path(root), memory_limit=memory_limit, threads=threads)
    started = time.perf_counter()
    table = build_features(store, as_of)
    seconds = time.perf_counter() - started
    peak = _peak_rss_bytes()
    return {
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "rows": table.num_rows,
        "columns": table.num_columns,
    }


def _pandas_child(
    root: str, as_of: date, companies: list[str] | None, save: str | None
) -> dict[str, Any]:
    """One measured baseline run; saves its result (after measuring) for the comparison."""
    started = time.perf_counter()
    result, records_read = pandas_features(Store(Path(root)), as_of, companies)
    seconds = time.perf_counter() - started
    peak = _peak_rss_bytes()
    if save:
        result.reset_index().to_parquet(save, index=False)
    return {
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "rows": len(result),
        "records_read": records_read,
    }


def _check_child(
    root: str,
    as_of: date,
    companies: list[str] | None,
    saved: str,
    memory_limit: str,
    threads: int,
) -> dict[str, Any]:
    """Unmeasured: the builder on the baseline's companies, compared with the saved baseline."""
    store = Store(Path(root), memory_limit=memory_limit, threads=threads)
    duck = build_features(store, as_of, companies)
    return compare(duck, pd.read_parquet(saved).set_index("uscc"))


def _profile_child(root: str, as_of: date, memory_limit: str, threads: int) -> dict[str, Any]:
    """Where the time goes: each CTE of the query materialised on its own, then the whole query
    with DuckDB's profiler (operator timings are summed over threads)."""
    store = Store(Path(root), memory_limit=memory_limit, threads=threads)
    sql = features_sql()
    stages: dict[str, float] = {}
    with store.connect() as con:
        started = time.perf_counter()
        con.execute(
            "CREATE TEMP TABLE points AS SELECT DISTINCT uscc, CAST(? AS DATE) AS as_of "
            "FROM entities WHERE recorded_date <= ?",
            [as_of, as_of],
        )
        stages["points (distinct companies)"] = time.perf_counter() - started
        cut = sql.rfind("SELECT p.uscc, p.as_of,")
        head = sql[:cut]
        if head.lstrip().startswith("WITH"):
            for cte in ("plain", "listed", "commits", "objections", "entity_version"):
                started = time.perf_counter()
                con.execute(f"CREATE OR REPLACE TEMP TABLE _stage AS {head} SELECT * FROM {cte}")
                stages[cte] = time.perf_counter() - started
            con.execute("DROP TABLE _stage")
        out = Path(root).parent / "profile.json"
        con.execute("SET enable_profiling = 'json'")
        con.execute(f"SET profiling_output = '{out}'")
        started = time.perf_counter()
        con.sql(sql).to_arrow_table()
        stages["whole query, profiled"] = time.perf_counter() - started
        con.execute("SET enable_profiling = 'no_output'")
    profile = json.loads(out.read_text(encoding="utf-8"))
    return {"stages": stages, **_summarise_profile(profile)}


def _summarise_profile(profile: dict[str, Any]) -> dict[str, Any]:
    """The operators that took longest, each with the part of the query it belongs to.

    Inlined CTEs (plain, listed, commits, …) show up in the main query; DuckDB's own CTEs for
    the correlated NOT EXISTS subqueries (`__duckdb_delim_*`) are named after the counting rows
    they scan (plain, list_rows, commit_rows), recognised by the categories of the scan."""
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], context: str) -> None:
        info = node.get("extra_info") or {}
        kind = str(node.get("type") or node.get("operator_type") or node.get("operator_name"))
        timing = float(node.get("timing") or node.get("operator_timing") or 0.0)
        rows = int(node.get("intermediate_rows") or node.get("operator_cardinality") or 0)
        detail = ""
        for key in ("Conditions", "Groups", "Expression", "Filters", "Function"):
            if info.get(key):
                detail = f"{key}: {info[key]}"
                break
        if info.get("Aggregates"):
            detail += f"; {str(info['Aggregates']).count(') FILTER (') or 'no'} filtered aggregates"
        found.append(
            {
                "operator": kind,
                "cte": context,
                "seconds": timing,
                "rows": rows,
                "detail": detail,
                "filters": str(info.get("Filters") or ""),
            }
        )
        children = node.get("children") or []
        for i, child in enumerate(children):
            inner = str(info.get("CTE Name", context)) if kind == "CTE" and i == 0 else context
            walk(child, inner)

    roots = profile.get("operator") or profile.get("children") or []
    for root in roots if isinstance(roots, list) else [roots]:
        walk(root, "main query")
    special = ("open_listing", "honoured_commitments", "breach_share")
    known = {
        "plain": {c for s in SPECS if isinstance(s, FeatureSpec) and s.aggregation not in special
                  for c in s.categories},
        "list_rows": set(LIST_CATEGORIES),
        "commit_rows": {"credit_commitment", "commitment_breach"},
    }  # fmt: skip
    names: dict[str, str] = {}
    for f in found:
        if f["cte"].startswith("__duckdb_delim") and "category IN (" in f["filters"]:
            scanned = set(re.findall(r"'([a-z_]+)'", f["filters"].split("category IN (")[1]))
            label = next((k for k, v in known.items() if scanned == v), f["cte"])
            names[f["cte"]] = f"{label} counting rows"
    for f in found:
        f["cte"] = names.get(f["cte"], f["cte"])
        del f["filters"]
    total = sum(f["seconds"] for f in found) or 1.0
    top = sorted(found, key=lambda f: -f["seconds"])[:12]
    by_cte: dict[str, float] = {}
    for f in found:
        by_cte[f["cte"]] = by_cte.get(f["cte"], 0.0) + f["seconds"]
    system = profile.get("system") or {}
    return {
        "operator_seconds_total": total,
        "top_operators": [
            {**f, "share": f["seconds"] / total, "detail": f["detail"][:160]} for f in top
        ],
        "seconds_by_cte": dict(sorted(by_cte.items(), key=lambda kv: -kv[1])),
        "duckdb_peak_buffer_bytes": system.get("peak_buffer_memory"),
        "duckdb_peak_temp_dir_bytes": system.get("peak_temp_dir_size"),
    }


# ---- set-up: simulate and ingest once, cached under the work folder ---------------------------


def _onto(records: pa.Table, their_entities: pa.Table, our_entities: pa.Table) -> pa.Table:
    """A second run's records moved onto the first run's companies (one-to-one by position),
    with record ids (and references to them) prefixed SIM2- so they never collide."""
    theirs, ours = pc.unique(their_entities["uscc"]), pc.unique(our_entities["uscc"])
    if len(theirs) != len(ours):
        raise ValueError(f"runs differ in companies: {len(theirs)} vs {len(ours)}")
    uscc = ours.take(pc.index_in(records["uscc"], value_set=theirs))
    record_id = pc.replace_substring_regex(records["record_id"], "^SIM-", "SIM2-")
    attributes = pc.replace_substring(records["attributes"], '"SIM-', '"SIM2-')
    names = records.column_names
    records = records.set_column(names.index("uscc"), "uscc", uscc)
    records = records.set_column(names.index("record_id"), "record_id", record_id)
    return records.set_column(names.index("attributes"), "attributes", attributes)


def _setup_child(
    root: str, companies: int, years: int, extra_years: int, seed: int, slice_rows: int
) -> dict[str, Any]:
    started = time.perf_counter()
    sim = simulate(SimulationConfig(companies=companies, years=years, seed=seed, end=END))
    entities, records = sim.entities, sim.records
    del sim
    if extra_years:
        extra = simulate(
            SimulationConfig(companies=companies, years=extra_years, seed=seed + 1, end=END)
        )
        records = pa.concat_tables([records, _onto(extra.records, extra.entities, entities)])
        del extra
    simulate_seconds = time.perf_counter() - started
    store = Store(Path(root))
    started = time.perf_counter()
    quarantined = ingest_table(
        store, entities, "entities", "bench", today=END, history=True
    ).quarantined
    for offset in range(0, records.num_rows, slice_rows):
        part = records.slice(offset, slice_rows)
        quarantined += ingest_table(
            store, part, "records", "bench", today=END, history=True
        ).quarantined
    return {
        "companies": companies,
        "years": years,
        "extra_years": extra_years,
        "seed": seed,
        "entity_versions": entities.num_rows,
        "records": records.num_rows,
        "quarantined": quarantined,
        "simulate_seconds": round(simulate_seconds, 1),
        "ingest_seconds": round(time.perf_counter() - started, 1),
        "store_bytes": sum(p.stat().st_size for p in Path(root).rglob("*.parquet")),
    }


def prepare_store(work: Path, args: argparse.Namespace, say: Say) -> tuple[Path, dict[str, Any]]:
    """The store for these settings, built once (in a child process) and then reused."""
    extra = f"+{args.extra_years}y" if args.extra_years else ""
    root = work / f"store-{args.companies}c-{args.years}y{extra}-s{args.seed}"
    marker = work / f"{root.name}.json"
    if marker.exists() and root.exists():
        info: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        say(f"reusing the store in {root}")
        return root, info
    shutil.rmtree(root, ignore_errors=True)
    say(f"building the store in {root} (simulate and ingest; once)")
    info = _in_child(
        _setup_child,
        str(root),
        args.companies,
        args.years,
        args.extra_years,
        args.seed,
        args.ingest_slice,
    )
    if info["quarantined"]:
        raise RuntimeError(f"ingestion quarantined {info['quarantined']:,} rows")
    marker.write_text(json.dumps(info), encoding="utf-8")
    return root, info


# ---- the pandas baseline ----------------------------------------------------------------------


def _json_date(attributes: pd.Series, key: str) -> pd.Series:
    """A date attribute as datetimes, NaT unless it is written `YYYY-MM-DD`."""
    text = _json_text(attributes, key)
    iso = text.str.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fillna(False).astype(bool)
    return pd.to_datetime(text.where(iso), errors="coerce", format="%Y-%m-%d")


def _json_text(attributes: pd.Series, key: str) -> pd.Series:
    """`json_extract_string(attributes, '$.key')`: the value as text, None when absent/null."""

    def one(text: Any) -> str | None:
        if not isinstance(text, str):
            return None
        obj = json.loads(text)
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    return attributes.map(one).astype(object)


def _counting_end(c: pd.DataFrame, catalogue: Catalogue) -> pd.Series:
    """The day each record stops counting by its period (NaT: no end, open-ended or never
    published): calendar months first, clamped to the month's end, then days."""
    spans: list[Span] = []  # the periods with an end, by code

    def code(span: Span | None) -> int:
        if span is None or span.zero:
            return -1
        if span not in spans:
            spans.append(span)
        return spans.index(span)

    codes = np.full(len(c), -1)
    category, severity = c["category"].to_numpy(), c["severity"].to_numpy()
    for cat in catalogue.categories:
        in_cat = category == cat.code
        if not in_cat.any():
            continue
        if cat.type_severity or cat.special_domains:  # penalty types and domains: the rule
            rows = np.flatnonzero(in_cat)
            pairs = c.iloc[rows][["severity", "attributes"]].astype(object)
            keys = list(zip(pairs["severity"], pairs["attributes"], strict=True))
            code_of = {k: code(publicity.period(cat.code, k[0], k[1], None, catalogue).maximum)
                       for k in set(keys)}  # fmt: skip
            codes[rows] = [code_of[k] for k in keys]
            continue
        periods = sorted(cat.publicity.items(), key=lambda kv: kv[0] != "*")  # "*" first
        for sev, period in periods:
            codes[in_cat if sev == "*" else in_cat & (severity == sev)] = code(period.max)
    end = pd.Series(pd.NaT, index=c.index, dtype=c["event_date"].dtype)
    for i, span in enumerate(spans):
        rows = codes == i
        start = c["event_date"][rows]
        end[rows] = start + pd.DateOffset(months=span.months) + pd.Timedelta(days=span.days)
    return end


def _plain(c: pd.DataFrame, spec: FeatureSpec, day: pd.Timestamp) -> pd.Series:
    mask = c["category"].isin(spec.categories)
    if spec.severities is not None:
        mask &= c["severity"].isin(spec.severities)
    if spec.window_months is not None:
        mask &= c[f"within_{spec.window_months}m"]
    sub = c[mask]
    if spec.attribute_equals is not None:
        key, wanted = spec.attribute_equals
        sub = sub[_json_text(sub["attributes"], key) == wanted]
    if spec.amount_equals is not None:
        sub = sub[sub["amount"] == spec.amount_equals]
    if spec.later_than is not None:
        key, grace = spec.later_than
        due = _json_date(sub["attributes"], key)
        sub = sub[(pd.to_datetime(sub["event_date"]) - due).dt.days > grace]
    if spec.period_at_most is not None:
        start_key, end_key, longest = spec.period_at_most
        length = _json_date(sub["attributes"], end_key) - _json_date(sub["attributes"], start_key)
        sub = sub[~(length.dt.days > longest).fillna(False).astype(bool)]
    a = spec.aggregation
    if a == "count":
        return sub.groupby("uscc").size()
    if a == "decayed_count":
        events = pd.to_datetime(sub["event_date"])
        conditions = [day <= events + pd.DateOffset(years=n) for n, _ in DECAY_STEPS]
        weight = np.select(conditions, [w for _, w in DECAY_STEPS], DECAY_TAIL)
        return pd.Series(weight, index=sub.index).groupby(sub["uscc"]).sum()
    if a == "sum_amount":
        return sub.groupby("uscc")["amount"].sum()
    if a == "max_amount":
        return sub.groupby("uscc")["amount"].max()
    if a == "sum_attribute":
        number = pd.to_numeric(_json_text(sub["attributes"], str(spec.attribute)), errors="coerce")
        number = number.where(np.isfinite(number) & (number >= 0))  # counts only
        return number.groupby(sub["uscc"]).sum()
    if a in ("latest_amount", "latest_value"):  # the latest record's value, even when NULL
        values = sub["amount"] if a == "latest_amount" else sub["severity"].map(dict(spec.values))
        latest = (
            sub.assign(value=values.astype("float64"))
            .sort_values(["event_date", "record_id"])
            .drop_duplicates("uscc", keep="last")
        )
        return latest.set_index("uscc")["value"]
    if a == "worst_value":  # the highest value; severities without one do not count
        return sub["severity"].map(dict(spec.values)).astype("float64").groupby(sub["uscc"]).max()
    if a == "days_since_last":
        days: pd.Series = (day - sub.groupby("uscc")["event_date"].max()).dt.days
        return days
    raise ValueError(f"{spec.name}: {a} is not a plain aggregation")


def _open_listings(c: pd.DataFrame) -> pd.DataFrame:
    rows = c[c["category"].isin(LIST_CATEGORIES)]
    removals = rows[rows["severity"] == "removed"].assign(
        ref=lambda r: _json_text(r["attributes"], "ref")
    )
    listed = rows[rows["severity"] == "listed"]
    with_ref = removals.dropna(subset=["ref"])
    by_ref = (listed["uscc"] + "|" + listed["record_id"]).isin(
        with_ref["uscc"] + "|" + with_ref["ref"]
    )
    refless = (
        removals[removals["ref"].isna()]
        .groupby(["uscc", "category"], observed=True)["event_date"]
        .max()
        .rename("removed_on")
    )
    listed = listed.join(refless, on=["uscc", "category"])
    by_date = listed["removed_on"] >= listed["event_date"]
    return listed[~by_ref.to_numpy() & ~by_date.fillna(False).to_numpy()]


def _commitments(c: pd.DataFrame, spec: FeatureSpec, day: pd.Timestamp) -> pd.Series:
    rows = c[c["category"].isin(("credit_commitment", "commitment_breach"))]
    breach = rows["category"] == "commitment_breach"
    refs = _json_text(rows.loc[breach, "attributes"], "ref")
    breached = (rows["uscc"] + "|" + rows["record_id"]).isin(
        (rows.loc[breach, "uscc"] + "|" + refs).dropna()
    )
    due = pd.to_datetime(
        _json_text(rows["attributes"], "due_date"), errors="coerce", format="ISO8601"
    )
    due = due.dt.normalize().fillna(rows["event_date"])
    window = rows[f"within_{spec.window_months}m"] if spec.window_months is not None else True
    commitment = rows["category"] == "credit_commitment"
    if spec.aggregation == "honoured_commitments":
        honoured = commitment & window & (due <= day) & ~breached
        return honoured.groupby(rows["uscc"]).sum()
    # the share of the window's commitments that were breached (as the builder)
    breaches = (commitment & window & breached).astype("float64").groupby(rows["uscc"]).sum()
    commitments = (commitment & window).astype("float64").groupby(rows["uscc"]).sum()
    return breaches / commitments.where(commitments > 0)


def _objections(known: pd.DataFrame, events: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    e = events[
        events["event_type"].isin(("objection_opened", "objection_closed"))
        & (events["effective_date"] <= day)
        & (events["recorded_date"] <= day)
    ]
    e = e.merge(known[["record_id", "uscc"]], on="record_id")
    # the latest step decides: by day, commit order, a closing last within a batch, id
    e = e.assign(k=(e["event_type"] == "objection_closed").astype("int64"))
    order = ["effective_date", "batch_id", "k", "event_id"]
    last = e.sort_values(order).groupby(["uscc", "record_id"]).tail(1)
    open_now = last["event_type"] == "objection_opened"
    return open_now.groupby(last["uscc"]).max().astype("int64")


def _read(files: Iterable[Path], table: str, **options: Any) -> pd.DataFrame:
    paths = [str(p) for p in files]
    data = pq.read_table(paths, **options) if paths else TABLES[table].empty_table()
    frame: pd.DataFrame = data.to_pandas(date_as_object=False)
    return frame


def pandas_features(
    store: Store,
    as_of: date,
    companies: list[str] | None = None,
    specs: tuple[Spec, ...] = SPECS,
    catalogue: Catalogue | None = None,
) -> tuple[pd.DataFrame, int]:
    """The same features with pandas: (one row per company indexed by uscc, records read)."""
    cat = catalogue or default_catalogue()
    day = pd.Timestamp(as_of)
    columns = ["record_id", "uscc", "category", "event_date", "recorded_date", "severity",
               "amount", "attributes"]  # fmt: skip
    rec = _read(
        store.files("records"),
        "records",
        columns=columns,
        filters=[("uscc", "in", companies)] if companies is not None else None,
        read_dictionary=["category", "severity"],
    )
    records_read = len(rec)
    events = _read(store.files("events"), "events")
    entities = _read(store.files("entities"), "entities")
    if companies is not None:
        entities = entities[entities["uscc"].isin(companies)]

    known = rec[rec["recorded_date"] <= day]
    c = known[known["event_date"] <= day]
    ends = _counting_end(c, cat)
    c = c[ends.isna() | (day < ends)]
    windows = {s.window_months for s in specs if isinstance(s, FeatureSpec)}
    for months in (m for m in windows if m is not None):
        # in the last n calendar months: before the record's date plus n months (as the builder)
        c[f"within_{months}m"] = day < c["event_date"] + pd.DateOffset(months=months)
    undone = events[
        events["event_type"].isin(("repair", "withdrawal"))
        & (events["effective_date"] <= day)
        & (events["recorded_date"] <= day)
    ]
    c = c[~c["record_id"].isin(undone["record_id"])]

    version = (
        entities[entities["recorded_date"] <= day]
        .sort_values(["uscc", "recorded_date", "batch_id"])
        .drop_duplicates("uscc", keep="last")
        .set_index("uscc")
    )
    points = pd.Index(sorted(companies if companies is not None else version.index), name="uscc")
    version = version.reindex(points)
    open_listings = _open_listings(c)
    entity_values: dict[str, pd.Series] = {
        "age_years": ((day - version["established_date"]).dt.days / 365.25).round(4),
        "log_capital": np.log10(1 + version["registered_capital"]).round(6),
        "industry": version["industry"],
        "region": version["region"],
        "entity_type": version["entity_type"],
        "individual_business": (version["entity_type"] == "individual_business").astype("int64"),
        "active": (version["status"] == "active").astype("int64"),
    }
    zero = {"count": 0, "decayed_count": 0.0, "sum_amount": 0.0, "max_amount": 0.0,
            "sum_attribute": 0.0, "open_listing": 0, "honoured_commitments": 0}  # fmt: skip
    out: dict[str, pd.Series] = {}
    for spec in specs:
        if isinstance(spec, EntitySpec):
            out[spec.name] = entity_values[spec.expression]
            continue
        if isinstance(spec, FlagSpec):
            values = _objections(known, events, day)
            out[spec.name] = values.reindex(points, fill_value=0)
            continue
        if spec.aggregation == "open_listing":
            hit = open_listings[open_listings["category"].isin(spec.categories)]["uscc"].unique()
            values = pd.Series(1, index=pd.Index(hit, name="uscc"), dtype="int64")
        elif spec.aggregation in ("honoured_commitments", "breach_share"):
            values = _commitments(c, spec, day)
        else:
            values = _plain(c, spec, day)
        filled = values.reindex(points)
        if spec.aggregation in zero:
            filled = filled.fillna(zero[spec.aggregation])
        if spec.applies_to is not None:  # null where it does not apply (the type, else the code's)
            kind = version["entity_type"].fillna(
                pd.Series(points.map(entity_type_of_code), index=points)
            )
            filled = filled.where(kind.isin(spec.applies_to))
        out[spec.name] = filled
    frame = pd.DataFrame(out, index=points)
    frame.insert(0, "as_of", day)
    return frame, records_read


def compare(duck: pa.Table, base: pd.DataFrame, specs: tuple[Spec, ...] = SPECS) -> dict[str, Any]:
    """Feature columns on which the builder and the baseline agree (floats to 1e-9 relative)."""
    codes = duck.column("uscc").to_pylist()
    base = base.reindex(pd.Index(codes, name="uscc"))
    missing = int(base["as_of"].isna().sum())
    agree, differ = [], {}
    for spec in specs:
        col = duck.column(spec.name)
        if pa.types.is_string(col.type):
            d = np.array(col.to_pylist(), dtype=object)
            b = base[spec.name].astype(object).where(base[spec.name].notna(), None).to_numpy()
            same = d == b
        else:
            d = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            b = base[spec.name].astype("float64").to_numpy()
            same = np.isclose(d, b, rtol=1e-9, atol=1e-9, equal_nan=True)
        if same.all():
            agree.append(spec.name)
        else:
            i = int(np.flatnonzero(~same)[0])
            differ[spec.name] = {
                "rows": int((~same).sum()),
                "example": {"uscc": codes[i], "duckdb": str(d[i]), "pandas": str(b[i])},
            }
    return {"companies": len(codes), "missing_in_baseline": missing, "agree": agree,
            "differ": differ}  # fmt: skip


# ---- the run ----------------------------------------------------------------------------------


def _gib(n: float) -> float:
    return n / GIB


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1_000_000)
    parser.add_argument("--years", type=int, default=12)
    parser.add_argument("--extra-years", type=int, default=4, help="second run; 0 = none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=END)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-runs", type=int, default=2)
    parser.add_argument(
        "--baseline-companies", type=int, default=0, help="a random subset; 0 = all"
    )
    parser.add_argument("--memory-limit", default=settings.duckdb_memory_limit)
    parser.add_argument("--threads", type=int, default=settings.duckdb_threads)
    parser.add_argument("--ingest-slice", type=int, default=8_000_000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="credsup-bench-features-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say: Say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    root, setup = prepare_store(work, args, say)
    records = setup["records"]
    say(
        f"store: {args.companies:,} companies, {setup['entity_versions']:,} entity versions, "
        f"{records:,} records ({args.years} + {args.extra_years} simulated years), "
        f"{setup['store_bytes'] / 1e9:.2f} GB Parquet; set-up: simulate "
        f"{setup['simulate_seconds']} s, ingest {setup['ingest_seconds']} s"
    )
    sql_hash = hashlib.sha256(features_sql().encode()).hexdigest()[:12]
    say(f"measuring features.builder (query sha256 {sql_hash}, specs {spec_version()})")
    figures: dict[str, Any] = {
        "builder_sql_sha256": sql_hash,
        "spec_version": spec_version(),
        "companies": args.companies,
        "records": records,
        "entity_versions": setup["entity_versions"],
        "simulated_years": [args.years, args.extra_years],
        "as_of": args.as_of.isoformat(),
        "memory_limit": args.memory_limit,
        "threads": args.threads,
        "setup": setup,
    }

    idle = _in_child(_idle_child)["peak_rss_bytes"]
    figures["idle_child_rss_gib"] = round(_gib(idle), 3)
    runs = []
    for i in range(args.runs):
        run = _in_child(_duckdb_child, str(root), args.as_of, args.memory_limit, args.threads)
        runs.append(run)
        say(
            f"  duckdb run {i + 1}: {run['seconds']:.2f} s, peak RSS "
            f"{_gib(run['peak_rss_bytes']):.2f} GiB ({run['rows']:,} companies x "
            f"{run['columns']} columns)"
        )
    seconds = statistics.median(r["seconds"] for r in runs)
    peak = max(r["peak_rss_bytes"] for r in runs)
    points = runs[0]["rows"]
    figures.update(
        duckdb_seconds=[round(r["seconds"], 2) for r in runs],
        duckdb_seconds_median=round(seconds, 2),
        duckdb_peak_rss_gib=[round(_gib(r["peak_rss_bytes"]), 2) for r in runs],
        duckdb_peak_rss_gib_max=round(_gib(peak), 2),
        points=points,
        duckdb_records_per_s=round(records / seconds),
        goal_seconds_met=seconds <= GOAL_SECONDS,
        goal_memory_met=_gib(peak) <= GOAL_PEAK_GIB,
    )
    say(
        f"duckdb builder, {points:,} companies as of {args.as_of}: median {seconds:.2f} s "
        f"({records / seconds / 1e6:.2f} M records/s; goal <= {GOAL_SECONDS:.0f} s: "
        f"{'met' if seconds <= GOAL_SECONDS else 'NOT met'}), peak RSS max "
        f"{_gib(peak):.2f} GiB (goal <= {GOAL_PEAK_GIB:.0f} GiB: "
        f"{'met' if _gib(peak) <= GOAL_PEAK_GIB else 'NOT met'}; memory_limit "
        f"{args.memory_limit}, threads {args.threads}; an idle interpreter with these imports: "
        f"{_gib(idle):.2f} GiB)"
    )

    if not args.no_profile:
        prof = _in_child(_profile_child, str(root), args.as_of, args.memory_limit, args.threads)
        figures["profile"] = prof
        say("profile, each CTE materialised on its own (s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in prof["stages"].items()))  # fmt: skip
        say("profile, operator time by CTE (s, summed over threads): " + ", ".join(
            f"{k} {v:.2f}" for k, v in prof["seconds_by_cte"].items()))  # fmt: skip
        say("profile, top operators:")
        for op in prof["top_operators"]:
            say(
                f"  {op['share']:6.1%} {op['seconds']:7.2f} s  {op['operator']:<18} "
                f"[{op['cte']}] {op['rows']:>12,} rows  {op['detail'][:100]}"
            )
        if prof.get("duckdb_peak_buffer_bytes") is not None:
            say(
                f"  DuckDB peak buffer memory {_gib(prof['duckdb_peak_buffer_bytes']):.2f} GiB, "
                f"spilled to disk {_gib(prof['duckdb_peak_temp_dir_bytes'] or 0):.2f} GiB"
            )

    if args.baseline_runs:
        subset: list[str] | None = None
        if 0 < args.baseline_companies < points:
            with Store(root).connect() as con:
                codes = [
                    u
                    for (u,) in con.execute(
                        "SELECT DISTINCT uscc FROM entities WHERE recorded_date <= ? ORDER BY uscc",
                        [args.as_of],
                    ).fetchall()
                ]
            pick = np.random.default_rng(args.seed).choice(
                len(codes), args.baseline_companies, replace=False
            )
            subset = sorted(codes[i] for i in pick)
        saved = work / "baseline-result.parquet"
        base_runs = []
        for i in range(args.baseline_runs):
            run = _in_child(_pandas_child, str(root), args.as_of, subset, str(saved))
            base_runs.append(run)
            say(
                f"  pandas run {i + 1}: {run['seconds']:.1f} s, peak RSS "
                f"{_gib(run['peak_rss_bytes']):.2f} GiB ({run['records_read']:,} records, "
                f"{run['rows']:,} companies)"
            )
        base_seconds = statistics.median(r["seconds"] for r in base_runs)
        base_records = base_runs[0]["records_read"]
        base_rate = base_records / base_seconds
        ratio = (records / seconds) / base_rate
        figures.update(
            baseline_companies=base_runs[0]["rows"],
            baseline_records=base_records,
            baseline_subset=subset is not None,
            baseline_seconds=[round(r["seconds"], 1) for r in base_runs],
            baseline_seconds_median=round(base_seconds, 1),
            baseline_peak_rss_gib=[round(_gib(r["peak_rss_bytes"]), 2) for r in base_runs],
            baseline_records_per_s=round(base_rate),
            ratio_vs_baseline=round(ratio, 1),
        )
        scope = f"a random subset of {len(subset):,} companies" if subset else "the same companies"
        say(
            f"baseline pandas groupby on {scope} ({base_records:,} records): median "
            f"{base_seconds:.1f} s, {base_rate / 1e6:.2f} M records/s, peak RSS "
            f"{_gib(max(r['peak_rss_bytes'] for r in base_runs)):.2f} GiB; the builder is "
            f"{ratio:.1f}x faster" + (" (records per second, same store)" if subset else "")
        )
        check = _in_child(
            _check_child, str(root), args.as_of, subset, str(saved), args.memory_limit, args.threads
        )
        figures["check"] = check
        n = len(SPECS)
        say(
            f"check on {check['companies']:,} companies: {len(check['agree'])} of {n} features "
            f"agree between the builder and the baseline"
        )
        for name, diff in check["differ"].items():
            say(f"  differs: {name}: {diff['rows']:,} companies, e.g. {diff['example']}")

    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, default=str))
    return figures


if __name__ == "__main__":
    main()
