"""A joint spot-check plan (双随机、一公开) of 5 departments over 1 M companies (issue: sampling).

Goal on 2 cores: the draw of a joint plan of the departments samr, fire, emergency, ecology and
health (their 11 items of the `national-default` preset, its ratios) over 1 M companies in under
5 s, over 10 M in under 60 s. What is timed ("plan") is what `create_plan` does besides the
database: `draw_plan` (companies per item and tier, joint visits, teams of inspectors),
`Drawn.canonical_list()` (the CSV bytes that are stored and compared on replay), its SHA-256 and
the snapshot's `pool_hash` and `inspector_hash`. Each step is also timed on its own.

Data (in memory, deterministic from `--seed`): N companies of province 41 (Henan) with valid,
distinct unified social credit codes (numpy), tiers A 20 % / B 60 % / C 15 % / D 5 %, regions in
162 counties of 18 cities (city sizes uneven), GB/T 4754 industries the preset's items apply to
(and some they do not), entity types (enterprise, individual business, cooperative, matching the
code's kind); prior checks this year for 2 % of companies (a department once or twice, an item
of it once: some are over the caps); 20 inspectors per department and city (area: the city),
qualified for all of their department's items, 5 % inactive; declared conflicts for 0.1 % of
companies. The `Snapshot` is built outside the timed region (its time is reported).

Baseline (same run): what one would write first. Per item, the applicable companies by
`str.startswith`, the capped ones removed with `isin`, then per tier `DataFrame.sample(frac=r)`;
per (company, department) a team of `random.sample(qualified, 2)` where the qualified list is
filtered in Python per team from the department's inspectors (area, items, declared conflicts);
the list as `to_csv` and the hashes as `to_csv` of the sorted tables. It is simpler than the
engine (no randomised rounding, no workload balancing). Run on `--baseline-companies` (100 k) and
scaled linearly to N (its cost is linear in N: the inspector pool does not grow), the ratio is
also given at the baseline's own size, where the engine is measured on the same pool.

The second plan of the year (`--second-plan` sizes, in memory): plan 1 is drawn, then plan 2 on
what `take_snapshot` would give it afterwards: plan 1's checks added to the prior ones (its
companies are over the item caps, except tier D, drawn again at 100 %; a department may come
twice) and plan 1's inspectors conflicts for its companies. Every team that comes back to a
company of plan 1 with the same department meets a conflict. The time of plan 2 is reported with
its growth exponent between the smallest and largest size and an extrapolation to N.

`--db` (default on up to 1 M companies): the end-to-end path on a temporary SQLite database
(`serving.db.upgrade`, `make_engine`), on `--db-companies` companies (default N, at most 200 k:
at 1 M, `create_plan` took 79 s here, 21 s of it reading the snapshot and 51 s storing 461 k
tasks): the companies loaded into `companies` and `company_history` (one `as_of`), the preset's
items (`save_items`), inspectors and their declared conflicts (`save_inspectors`), none of it
timed; then `create_plan` (snapshot from the database, draw, storing the plan with its snapshot
and list, and the tasks with their assignments) and `verify_plan` (replay from the stored
snapshot and compare), each timed whole and by step (the steps are the module's functions,
wrapped with timers while they run), once per `--db-plans` plan (later plans are second plans of
the year, see above: slow).

Medians of `--runs` runs. The machine may be shared: each run's CPU seconds and the load average
are reported with its wall seconds; a CPU time well below the wall time means the process waited
for a core.

    .venv/bin/python benchmarks/sampling.py                        # 1 M, 3 runs, baseline, db
    .venv/bin/python benchmarks/sampling.py --also 10000000        # and the 10 M figure
    .venv/bin/python benchmarks/sampling.py --companies 100000 --runs 2 --no-db --second-plan \
        --profile --output -
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import io
import itertools
import json
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

# Run as `python benchmarks/sampling.py`, this file's folder comes first on sys.path and
# benchmarks/features.py would shadow the `features` package: drop the folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from records import uscc as codes  # noqa: E402
from serving.db import make_engine, upgrade  # noqa: E402
from serving.spotcheck import plans  # noqa: E402
from serving.spotcheck.draw import (  # noqa: E402
    LIST_COLUMNS,
    Drawn,
    DrawParams,
    Snapshot,
    draw_plan,
    list_sha256,
)
from serving.spotcheck.items import TIERS, CheckItem, preset  # noqa: E402
from serving.spotcheck.package import audit_package  # noqa: E402

GOAL_SECONDS = {1_000_000: 5.0, 10_000_000: 60.0}
PRESET = "national-default"
DEPARTMENTS = ("samr", "fire", "emergency", "ecology", "health")
PROVINCE = "41"
CITIES = 18
COUNTIES_PER_CITY = 9  # 162 counties
INSPECTORS_PER_CITY = 20
INACTIVE_SHARE = 0.05
PRIOR_CHECK_SHARE = 0.02
CONFLICT_SHARE = 0.001
TIER_SHARES = (0.20, 0.60, 0.15, 0.05)
ENTITY_TYPES = (  # name, code kind (authority + category), share
    ("enterprise", "91", 0.55),
    ("individual_business", "92", 0.40),
    ("cooperative", "93", 0.05),
)
INDUSTRIES = {  # GB/T 4754 class: share of companies (retail, catering, services dominate)
    "A01": 0.020, "A03": 0.015, "B06": 0.003, "B10": 0.004, "C13": 0.015, "C14": 0.010,
    "C18": 0.012, "C26": 0.006, "C30": 0.012, "C33": 0.015, "C34": 0.010, "C39": 0.006,
    "D44": 0.003, "E47": 0.012, "E48": 0.015, "F51": 0.150, "F52": 0.250, "G54": 0.030,
    "G59": 0.008, "H61": 0.020, "H62": 0.100, "I65": 0.030, "K70": 0.020, "L72": 0.050,
    "M73": 0.010, "M74": 0.015, "N77": 0.005, "O80": 0.080, "O81": 0.020, "P83": 0.010,
    "Q84": 0.010, "R88": 0.005, "R89": 0.008, "R90": 0.006,
}  # fmt: skip
DB_COMPANIES = 200_000
"""Default size of the database path (at 1 M, create_plan alone takes over 60 s)."""
SECOND_PLAN_SIZES = (20_000, 40_000, 80_000)
AS_OF = date(2026, 1, 31)
"""The tier load the plans are drawn on (database path)."""
START = date(2026, 3, 2)

Say = Callable[..., None]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


def _code_version() -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of the engine's files, to tie the figures to a version."""
    root = _HERE.parent / "serving" / "spotcheck"
    return {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()[:16]
        for name in ("draw.py", "plans.py", "items.py")
    }


def plan_items() -> tuple[CheckItem, ...]:
    return tuple(i for i in preset(PRESET).items if i.department in DEPARTMENTS and i.active)


def draw_params() -> DrawParams:
    """The joint plan as `resolve` makes it from a request naming the preset (its ratios)."""
    chosen = preset(PRESET)
    return DrawParams(
        items=tuple(sorted(plan_items(), key=lambda i: i.id)),
        department_yearly_cap=chosen.department_yearly_cap,
        inspectors_per_task=2,
    )


# ---- the synthetic pool -----------------------------------------------------------------------


_CHAR_VALUE = np.full(256, -1, np.int64)
_CHAR_VALUE[np.frombuffer(codes.CHARSET.encode(), np.uint8)] = np.arange(len(codes.CHARSET))
_CHARSET_BYTES = np.frombuffer(codes.CHARSET.encode(), np.uint8)
_ORG_CHECK = np.frombuffer(b"0123456789X", np.uint8)


def uscc_array(kinds: np.ndarray, regions: np.ndarray) -> pa.StringArray:
    """Valid, distinct codes: kind (2) + region (6) + an all-digit organisation code whose 8
    body digits are i * a + b mod 10^8 for the row number i (a bijection, so no two rows share
    a body) + its check digit + the check character. Built as bytes, returned as Arrow strings.
    """
    n = len(kinds)
    if n > 10**8:
        raise ValueError("at most 10^8 companies")
    raw = np.empty((n, 18), np.uint8)
    raw[:, :2] = np.asarray(kinds, "S2").view(np.uint8).reshape(n, 2)
    raw[:, 2:8] = np.asarray(regions, "S6").view(np.uint8).reshape(n, 6)
    body = (np.arange(n, dtype=np.int64) * 73_939_133 + 12_345_679) % 10**8
    org = np.zeros(n, np.int64)
    for pos, weight in enumerate(codes.ORG_WEIGHTS):
        digit = body // 10 ** (7 - pos) % 10
        raw[:, 8 + pos] = 48 + digit
        org += digit * weight
    check = 11 - org % 11
    raw[:, 16] = _ORG_CHECK[np.where(check == 11, 0, check)]
    total = np.zeros(n, np.int64)
    for pos, weight in enumerate(codes.CHECK_WEIGHTS):
        total += _CHAR_VALUE[raw[:, pos]] * weight
    raw[:, 17] = _CHARSET_BYTES[(31 - total % 31) % 31]
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int32)
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw.reshape(-1)))
    if not codes.valid_mask(array).all():
        raise AssertionError("generated an invalid code")
    return array


@dataclass
class Pool:
    tables: dict[str, pd.DataFrame]
    """The snapshot's tables (`SNAPSHOT_TABLES`), before `Snapshot` normalises them."""
    declared: dict[str, list[str]]
    """Inspector id → companies with a declared conflict."""
    seconds: float


def make_pool(n: int, seed: int) -> Pool:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    city_weight = rng.gamma(2.0, size=CITIES)  # uneven cities
    cities = rng.choice(CITIES, size=n, p=city_weight / city_weight.sum()) + 1
    counties = rng.integers(1, COUNTIES_PER_CITY + 1, size=n)
    region_code = cities * 100 + counties  # CCDD
    region_names = np.array([f"{PROVINCE}{k:04d}" for k in range(10_000)], dtype=object)
    kind_k = rng.choice(len(ENTITY_TYPES), size=n, p=[s for _, _, s in ENTITY_TYPES])
    kinds = np.array([k for _, k, _ in ENTITY_TYPES], "S2")[kind_k]
    industry_names = np.array(list(INDUSTRIES), dtype=object)
    shares = np.array(list(INDUSTRIES.values()))
    industry = industry_names[rng.choice(len(shares), size=n, p=shares / shares.sum())]
    tier = np.array(TIERS, dtype=object)[rng.choice(4, size=n, p=TIER_SHARES)]
    uscc = uscc_array(kinds, region_names[region_code].astype("S6"))
    companies = pd.DataFrame(
        {
            "uscc": pd.Series(pd.array(uscc, dtype="string")),
            "tier": tier,
            "region": region_names[region_code],
            "industry": industry,
            "entity_type": np.array([e for e, _, _ in ENTITY_TYPES], dtype=object)[kind_k],
        }
    )
    items = plan_items()
    by_dept = {d: sorted(i.id for i in items if i.department == d) for d in DEPARTMENTS}

    # prior checks this year: a department once (70 %) or twice (30 %: over the yearly cap of
    # 2), and one of its items once (over that item's cap of 1 unless tier D)
    checked = rng.choice(n, size=int(n * PRIOR_CHECK_SHARE), replace=False)
    dept_k = rng.integers(0, len(DEPARTMENTS), size=len(checked))
    dept_names = np.array(DEPARTMENTS, dtype=object)[dept_k]
    pick = rng.integers(0, 1_000, size=len(checked))
    item_pick = [
        by_dept[d][int(k) % len(by_dept[d])] for d, k in zip(dept_names, pick, strict=True)
    ]
    checked_codes = companies["uscc"].to_numpy(dtype=object)[checked]
    department_checks = pd.DataFrame(
        {"uscc": checked_codes, "department": dept_names,
         "n": np.where(rng.random(len(checked)) < 0.3, 2, 1)}
    )  # fmt: skip
    item_checks = pd.DataFrame({"uscc": checked_codes, "item_id": item_pick, "n": 1})

    # inspectors: per department and city, qualified for all of the department's items
    rows = []
    for dept in DEPARTMENTS:
        qualified = ";".join(by_dept[dept])
        for city in range(1, CITIES + 1):
            for k in range(INSPECTORS_PER_CITY):
                rows.append(
                    {"inspector_id": f"{dept}-{PROVINCE}{city:02d}-{k:03d}", "department": dept,
                     "area": f"{PROVINCE}{city:02d}", "items": qualified,
                     "active": bool(rng.random() >= INACTIVE_SHARE)}
                )  # fmt: skip
    inspectors = pd.DataFrame(rows)

    # declared conflicts: 0.1 % of companies, each with one inspector of its city
    conflicted = rng.choice(n, size=max(1, int(n * CONFLICT_SHARE)), replace=False)
    who = [
        f"{DEPARTMENTS[int(d)]}-{PROVINCE}{int(c):02d}-{int(k):03d}"
        for d, c, k in zip(
            rng.integers(0, len(DEPARTMENTS), size=len(conflicted)), cities[conflicted],
            rng.integers(0, INSPECTORS_PER_CITY, size=len(conflicted)), strict=True,
        )
    ]  # fmt: skip
    conflicts = pd.DataFrame(
        {"inspector_id": who, "uscc": companies["uscc"].to_numpy(dtype=object)[conflicted]}
    ).drop_duplicates()
    declared: dict[str, list[str]] = {}
    for inspector, code in zip(conflicts["inspector_id"], conflicts["uscc"], strict=True):
        declared.setdefault(str(inspector), []).append(str(code))
    tables = {
        "companies": companies,
        "department_checks": department_checks,
        "item_checks": item_checks,
        "inspectors": inspectors,
        "conflicts": conflicts,
    }
    return Pool(tables=tables, declared=declared, seconds=time.perf_counter() - started)


def build_snapshot(pool: Pool) -> tuple[Snapshot, float]:
    started = time.perf_counter()
    snapshot = Snapshot({k: v.copy() for k, v in pool.tables.items()})
    return snapshot, time.perf_counter() - started


# ---- the engine, timed step by step -----------------------------------------------------------


STEPS = ("draw_plan", "canonical_list", "list_sha256", "pool_hash", "inspector_hash")


def plan_once(params: DrawParams, snapshot: Snapshot, seed: int) -> tuple[dict[str, float], Any]:
    """One plan: seconds per step (`STEPS`) and what came out."""
    gc.collect()
    laps: dict[str, float] = {}
    cpu = time.process_time()
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        laps[name] = now - clock
        clock = now

    drawn = draw_plan(params, snapshot, seed)
    lap("draw_plan")
    listing = drawn.canonical_list()
    lap("canonical_list")
    digest = list_sha256(listing)
    lap("list_sha256")
    pool_hash = snapshot.pool_hash
    lap("pool_hash")
    inspector_hash = snapshot.inspector_hash
    lap("inspector_hash")
    laps["cpu"] = time.process_time() - cpu
    laps["load"] = os.getloadavg()[0]
    return laps, (drawn, len(listing), digest, pool_hash, inspector_hash)


def describe(drawn: Drawn) -> dict[str, Any]:
    tasks = drawn.tasks
    teams = tasks.drop_duplicates(["visit_no", "department"])
    load = np.array(list(drawn.workload.values()))
    return {
        "tasks": len(tasks),
        "visits": int(tasks["visit_no"].max()) if len(tasks) else 0,
        "teams": len(teams),
        "tasks_by_department": {str(k): int(v) for k, v in
                                tasks["department"].value_counts().sort_index().items()},
        "tasks_by_tier": {str(k): int(v) for k, v in
                          tasks["tier"].value_counts().sort_index().items()},
        "inspectors_used": len(load),
        "workload_min": int(load.min()) if len(load) else 0,
        "workload_max": int(load.max()) if len(load) else 0,
    }  # fmt: skip


def measure(n: int, runs: int, seed: int, say: Say, profile: bool = False) -> dict[str, Any]:
    """Build the pool of n companies, then time `runs` plans (seeds seed, seed + 1, ...; the
    first seed is drawn twice at the end to check the list is reproduced byte for byte)."""
    params = draw_params()
    pool = make_pool(n, seed)
    snapshot, snapshot_seconds = build_snapshot(pool)
    rss_pool = _peak_rss_gib()
    say(
        f"{n:,} companies: pool generated in {pool.seconds:.1f} s, Snapshot built in "
        f"{snapshot_seconds:.1f} s (not timed); {len(pool.tables['department_checks']):,} prior "
        f"checks, {int(pool.tables['inspectors']['active'].sum()):,} active inspectors of "
        f"{len(pool.tables['inspectors']):,}, {len(pool.tables['conflicts']):,} declared conflicts"
    )
    laps: list[dict[str, float]] = []
    outcome: Any = None
    for run in range(runs):
        steps, out = plan_once(params, snapshot, seed + run)
        laps.append(steps)
        total = sum(steps[k] for k in STEPS)
        say(
            f"  run {run + 1} of {runs}: {total:.2f} s ("
            + ", ".join(f"{k} {steps[k]:.2f}" for k in STEPS)
            + f"; CPU {steps['cpu']:.2f} s, load average {steps['load']:.1f})"
        )
        if run == 0:
            outcome = out
        del out
    _steps, again = plan_once(params, snapshot, seed)
    reproduced = again[2] == outcome[2] and again[3] == outcome[3]
    del again
    drawn, list_bytes, digest, pool_hash, _inspector_hash = outcome
    totals = [sum(lap[k] for k in STEPS) for lap in laps]
    figures: dict[str, Any] = {
        "companies": n,
        "pool_seconds": round(pool.seconds, 2),
        "snapshot_seconds": round(snapshot_seconds, 2),
        "plan_seconds": [round(t, 3) for t in totals],
        "plan_seconds_median": round(statistics.median(totals), 3),
        "plan_cpu_seconds": [round(lap["cpu"], 3) for lap in laps],
        "plan_cpu_seconds_median": round(statistics.median(lap["cpu"] for lap in laps), 3),
        "load_average_1min": [round(lap["load"], 2) for lap in laps],
        "steps_seconds_median": {
            k: round(statistics.median(lap[k] for lap in laps), 3) for k in STEPS
        },
        "list_bytes": list_bytes,
        "list_sha256": digest,
        "pool_hash": pool_hash,
        "reproduced": reproduced,
        **describe(drawn),
        "peak_rss_gib_after_pool": round(rss_pool, 2),
    }
    if profile:
        figures["profile"] = _profile(params, snapshot, seed)
    del drawn, outcome
    figures["peak_rss_gib"] = round(_peak_rss_gib(), 2)
    goal = GOAL_SECONDS.get(n)
    if goal is not None:
        figures["goal_seconds"] = goal
        figures["goal_met"] = figures["plan_seconds_median"] < goal
        figures["goal_met_cpu"] = figures["plan_cpu_seconds_median"] < goal
    return figures


def _measure_child(n: int, runs: int, seed: int) -> dict[str, Any]:
    return measure(n, runs, seed, lambda *a: print(*a, flush=True))


def measure_spawned(n: int, runs: int, seed: int) -> dict[str, Any]:
    """`measure` in a fresh process (its own peak RSS, the parent's memory out of the way)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
        return ex.submit(_measure_child, n, runs, seed).result()


def _profile(params: DrawParams, snapshot: Snapshot, seed: int, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    drawn = draw_plan(params, snapshot, seed)
    list_sha256(drawn.canonical_list())
    _ = snapshot.pool_hash, snapshot.inspector_hash
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


# ---- the second plan of the year --------------------------------------------------------------


def after_plan(pool: Pool, tasks: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The tables a later plan of the same year sees (as `take_snapshot` builds them): the
    earlier plan's checks added to the prior ones, its inspectors conflicts for its companies."""
    tables = dict(pool.tables)
    members = tasks[["uscc"]].assign(inspector_id=tasks["inspectors"].astype(str).str.split(";"))
    last = members.explode("inspector_id")[["inspector_id", "uscc"]]
    tables["conflicts"] = pd.concat([pool.tables["conflicts"], last]).drop_duplicates()
    visited = tasks.drop_duplicates(["uscc", "department"])[["uscc", "department"]].assign(n=1)
    tables["department_checks"] = (
        pd.concat([pool.tables["department_checks"], visited])
        .groupby(["uscc", "department"])["n"].sum().reset_index()
    )  # fmt: skip
    checked = tasks.groupby(["uscc", "item_id"]).size().rename("n").reset_index()
    tables["item_checks"] = (
        pd.concat([pool.tables["item_checks"], checked])
        .groupby(["uscc", "item_id"])["n"].sum().reset_index()
    )  # fmt: skip
    return tables


def second_plan(n: int, seed: int) -> dict[str, Any]:
    """Plan 1, then plan 2 of the same year on what plan 1 left (caps, last inspectors)."""
    params = draw_params()
    pool = make_pool(n, seed)
    snapshot, _ = build_snapshot(pool)
    gc.collect()
    started = time.perf_counter()
    first = draw_plan(params, snapshot, seed)
    first_seconds = time.perf_counter() - started
    tables = after_plan(pool, first.tasks)
    snapshot2 = Snapshot({k: v.copy() for k, v in tables.items()})
    gc.collect()
    started = time.perf_counter()
    second = draw_plan(params, snapshot2, seed + 1)
    second_seconds = time.perf_counter() - started
    key = ["uscc", "department"]
    teams1 = first.tasks.drop_duplicates(key)[key]
    teams2 = second.tasks.drop_duplicates(key)[key]
    again = teams2.merge(teams1, on=key, how="inner")
    return {
        "companies": n,
        "first_plan_seconds": round(first_seconds, 3),
        "first_plan_tasks": len(first.tasks),
        "conflict_pairs": len(tables["conflicts"]),
        "second_plan_seconds": round(second_seconds, 3),
        "second_plan_tasks": len(second.tasks),
        "second_plan_teams": len(teams2),
        "teams_revisited": len(again),
        "second_over_first": round(second_seconds / first_seconds, 1),
    }


# ---- the baseline: what one would write first -------------------------------------------------


def straightforward(params: DrawParams, tables: dict[str, pd.DataFrame], seed: int) -> Any:
    """Per item and tier `DataFrame.sample(frac=r)`, per team `random.sample` of the qualified
    inspectors filtered in Python; the list and the hashes via `to_csv`."""
    rng = random.Random(seed)
    comp = tables["companies"]
    cap = params.department_yearly_cap
    dept_checks, item_checks = tables["department_checks"], tables["item_checks"]
    over_dept = {
        str(d): set(g.loc[g["n"] >= cap, "uscc"]) for d, g in dept_checks.groupby("department")
    }
    parts = []
    for k, item in enumerate(sorted(params.items, key=lambda i: i.id)):
        pool = comp
        if item.industries:
            pool = pool[pool["industry"].str.startswith(item.industries)]
        if item.entity_types:
            pool = pool[pool["entity_type"].isin(item.entity_types)]
        checks = item_checks[item_checks["item_id"] == item.id]
        over_item = set(checks.loc[checks["n"] >= item.yearly_cap, "uscc"])
        pool = pool[
            ~pool["uscc"].isin(over_dept.get(item.department, set()))
            & ~(pool["uscc"].isin(over_item) & (pool["tier"] != "D"))
        ]
        ratios = dict(zip(TIERS, item.ratios.as_tuple(), strict=True))
        if not item.samples_tier_a:
            ratios["A"] = 0.0
        counts = pool["tier"].value_counts()
        share = sum(ratios[t] * counts.get(t, 0) for t in TIERS) / max(len(pool), 1)
        scale = 1.0
        if item.max_ratio is not None and share > item.max_ratio:
            scale = item.max_ratio / share
        elif share and share < item.floor:
            scale = item.floor / share
        for tier, group in pool.groupby("tier"):
            r = min(1.0, ratios[str(tier)] * scale)
            drawn = group.sample(frac=r, random_state=seed * 100 + k)
            parts.append(
                drawn.assign(item_id=item.id, department=item.department, inclusion_prob=r,
                             basis="random")
            )  # fmt: skip
    tasks = pd.concat(parts).sort_values(["uscc", "item_id"]).reset_index(drop=True)
    tasks["visit_no"] = tasks.groupby("uscc", sort=True).ngroup() + 1

    active = tables["inspectors"][tables["inspectors"]["active"]]
    by_dept: dict[str, list[dict[Any, Any]]] = {}
    for row in active.to_dict("records"):
        row["item_set"] = set(str(row["items"]).split(";"))
        by_dept.setdefault(str(row["department"]), []).append(row)
    conflicts = set(zip(tables["conflicts"]["inspector_id"], tables["conflicts"]["uscc"],
                        strict=True))  # fmt: skip
    needed: dict[tuple[str, str], tuple[str, set[str]]] = {}
    columns = tasks[["uscc", "department", "item_id", "region"]]
    for uscc, dept, item_id, region in columns.itertuples(index=False):
        needed.setdefault((uscc, dept), (region, set()))[1].add(item_id)
    teams = {}
    for (uscc, dept), (region, wanted) in needed.items():
        qualified = [
            p["inspector_id"]
            for p in by_dept[dept]
            if region.startswith(p["area"])
            and wanted <= p["item_set"]
            and (p["inspector_id"], uscc) not in conflicts
        ]
        teams[(uscc, dept)] = ";".join(sorted(rng.sample(qualified, params.inspectors_per_task)))
    tasks["inspectors"] = [
        teams[key] for key in zip(tasks["uscc"], tasks["department"], strict=True)
    ]
    listing = tasks[list(LIST_COLUMNS)].to_csv(index=False).encode()
    pool_hash = hashlib.sha256()
    for name in ("companies", "department_checks", "item_checks"):
        frame = tables[name]
        pool_hash.update(frame.sort_values(list(frame.columns)).to_csv(index=False).encode())
    inspector_hash = hashlib.sha256()
    for name in ("inspectors", "conflicts"):
        frame = tables[name]
        inspector_hash.update(frame.sort_values(list(frame.columns)).to_csv(index=False).encode())
    return len(tasks), hashlib.sha256(listing).hexdigest(), pool_hash.hexdigest()


# ---- the database path ------------------------------------------------------------------------


@contextlib.contextmanager
def _timed(laps: dict[str, float], names: tuple[str, ...]) -> Iterator[None]:
    """Time the named functions of `serving.spotcheck.plans` (the module's globals wrapped for
    the duration, then restored: behaviour unchanged)."""
    saved = {name: getattr(plans, name) for name in names}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                laps[name] = laps.get(name, 0.0) + time.perf_counter() - started

        return timed

    for name, fn in saved.items():
        setattr(plans, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(plans, name, fn)


CREATE_STEPS = ("resolve", "take_snapshot", "draw_plan", "snapshot_to_bytes", "_insert_tasks")
VERIFY_STEPS = ("plan_tasks", "snapshot_from_bytes", "draw_plan", "canonical_list")


def _load_database(engine: sa.Engine, pool: Pool) -> dict[str, float]:
    """The companies (one tier load), the preset's items, inspectors and declared conflicts.

    Companies go in by `executemany` of tuples on the raw SQLite connection (dates as SQLAlchemy
    stores them on SQLite, ISO text): SQLAlchemy's insert of dicts takes ~4x as long."""
    laps: dict[str, float] = {}
    started = time.perf_counter()
    comp = pool.tables["companies"]
    n = len(comp)
    grade = {"A": "AAA", "B": "AA", "C": "B", "D": "C"}
    as_of = AS_OF.isoformat()
    columns = {
        "uscc": comp["uscc"].to_numpy(dtype=object),
        "region": comp["region"].to_numpy(dtype=object),
        "industry": comp["industry"].to_numpy(dtype=object),
        "entity_type": comp["entity_type"].to_numpy(dtype=object),
        "tier": comp["tier"].to_numpy(dtype=object),
    }
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for start in range(0, n, 100_000):
            part = {k: v[start : start + 100_000].tolist() for k, v in columns.items()}
            names = [f"河南测试{i:08d}号有限公司" for i in range(start, start + len(part["tier"]))]
            cursor.executemany(
                "INSERT INTO companies (uscc, region, industry, entity_type, as_of, tier, grade, "
                "full_doc, public_doc, name) VALUES (?, ?, ?, ?, ?, ?, ?, '{}', '{}', ?)",
                list(zip(part["uscc"], part["region"], part["industry"], part["entity_type"],
                         itertools.repeat(as_of), part["tier"], map(grade.get, part["tier"]),
                         names)),
            )  # fmt: skip
            cursor.executemany(
                "INSERT INTO company_history (uscc, as_of, tier, grade, model_version, "
                "method_version, region, industry, entity_type, name, source) "
                "VALUES (?, ?, ?, ?, 'bench', 'bench', ?, ?, ?, ?, 'batch')",
                list(zip(part["uscc"], itertools.repeat(as_of), part["tier"],
                         map(grade.get, part["tier"]), part["region"], part["industry"],
                         part["entity_type"], names)),
            )  # fmt: skip
        raw.commit()
    finally:
        raw.close()
    laps["companies"] = time.perf_counter() - started
    started = time.perf_counter()
    plans.save_items(engine, list(preset(PRESET).items))
    inspectors = [
        plans.InspectorIn(
            inspector_id=str(r["inspector_id"]), department=str(r["department"]),
            area=str(r["area"]), items=str(r["items"]).split(";"), active=bool(r["active"]),
            conflicts=pool.declared.get(str(r["inspector_id"]), []),
        )
        for r in pool.tables["inspectors"].to_dict("records")
    ]  # fmt: skip
    plans.save_inspectors(engine, inspectors)
    laps["items_inspectors"] = time.perf_counter() - started
    return laps


def _audit_package(engine: Any, plan_id: str, work: Path) -> dict[str, Any]:
    """The plan's audit package (`serving.spotcheck.package`), timed, and its `verify.py` run
    as an auditor runs it (a process of its own, isolated mode), timed from unpacking on."""
    gc.collect()
    started = time.perf_counter()
    made = audit_package(engine, plan_id, exported_by="benchmark")
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    folder = work / f"package-{plan_id}"
    with zipfile.ZipFile(io.BytesIO(made.data)) as archive:
        archive.extractall(folder)
    root = folder / f"{plan_id}-audit"
    done = subprocess.run([sys.executable, "-I", str(root / "verify.py"), "--json"],
                          capture_output=True, text=True, cwd=work, check=False)  # fmt: skip
    verify_seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "audit_package_seconds": round(export_seconds, 2),
        "audit_package_bytes": len(made.data),
        "package_verify_seconds": round(verify_seconds, 2),
        "package_identical": done.returncode == 0 and json.loads(done.stdout)["identical"],
    }


def measure_database(n: int, plans_count: int, seed: int, say: Say) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="credsup-bench-sampling-"))
    try:
        url = f"sqlite:///{work / 'serving.db'}"
        upgrade(url)
        engine = make_engine(url)
        pool = make_pool(n, seed)
        load = _load_database(engine, pool)
        say(
            f"database ({n:,} companies, SQLite in {work}): companies + company_history "
            f"inserted in {load['companies']:.1f} s, items and inspectors in "
            f"{load['items_inspectors']:.1f} s (not timed)"
        )
        out: dict[str, Any] = {
            "companies": n,
            "load_seconds": {k: round(v, 2) for k, v in load.items()},
            "plans": [],
        }
        for k in range(plans_count):
            request = plans.PlanRequest(
                name=f"benchmark plan {k + 1}", departments=list(DEPARTMENTS),
                ratio_preset=PRESET, seed=seed + k, start_date=START, snapshot_date=AS_OF,
            )  # fmt: skip
            gc.collect()
            create_laps: dict[str, float] = {}
            started = time.perf_counter()
            with _timed(create_laps, CREATE_STEPS):
                created = plans.create_plan(engine, request, today=START)
            create_seconds = time.perf_counter() - started
            gc.collect()
            verify_laps: dict[str, float] = {}
            started = time.perf_counter()
            with _timed(verify_laps, VERIFY_STEPS):
                verified = plans.verify_plan(engine, created.plan_id)
            verify_seconds = time.perf_counter() - started
            package = _audit_package(engine, created.plan_id, work)
            with engine.connect() as con:
                conflicts = con.execute(
                    sa.text(
                        "SELECT count(*) FROM spot_check_assignments a JOIN spot_check_tasks t "
                        "ON t.id = a.task_id WHERE t.plan_seq = :seq"
                    ),
                    {"seq": k},
                ).scalar_one()
            figures: dict[str, Any] = {
                "plan_id": created.plan_id,
                "tasks": created.tasks,
                "visits": created.visits,
                "create_seconds": round(create_seconds, 2),
                "create_steps_seconds": {
                    s: round(create_laps.get(s, 0.0), 2) for s in CREATE_STEPS
                },
                "create_other_seconds": round(create_seconds - sum(create_laps.values()), 2),
                "tasks_per_s": round(created.tasks / create_seconds),
                "insert_tasks_per_s": round(created.tasks / create_laps["_insert_tasks"]),
                "verify_seconds": round(verify_seconds, 2),
                "verify_steps_seconds": {
                    s: round(verify_laps.get(s, 0.0), 2) for s in VERIFY_STEPS
                },
                "verified_identical": verified.identical,
                "pool_hash_ok": verified.pool_hash_ok,
                "inspector_hash_ok": verified.inspector_hash_ok,
                "previous_plan_assignments": int(conflicts),
                **package,
            }
            out["plans"].append(figures)
            say(
                f"  plan {k + 1} ({created.plan_id}): {created.tasks:,} tasks, {created.visits:,} "
                f"visits; create_plan {create_seconds:.1f} s ({figures['tasks_per_s']:,} "
                f"tasks/s; " + ", ".join(f"{s} {v:.1f}" for s, v in
                                         figures["create_steps_seconds"].items())
                + f"); verify_plan {verify_seconds:.1f} s (identical: {verified.identical}; "
                + ", ".join(f"{s} {v:.1f}" for s, v in figures["verify_steps_seconds"].items())
                + f"); audit package {package['audit_package_seconds']:.1f} s, "
                f"{package['audit_package_bytes'] / 2**20:.1f} MB, replayed offline in "
                f"{package['package_verify_seconds']:.1f} s (identical: "
                f"{package['package_identical']})"
            )  # fmt: skip
        out["database_bytes"] = (work / "serving.db").stat().st_size
        engine.dispose()
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    begun = time.perf_counter()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument(
        "--also", type=int, nargs="*", default=[], help="more sizes, once each (e.g. 10000000)"
    )
    parser.add_argument("--baseline-companies", type=int, default=100_000)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--db", action=argparse.BooleanOptionalAction, default=None,
                        help="create_plan on SQLite (default: on up to 1 M companies)")  # fmt: skip
    parser.add_argument(
        "--db-companies", type=int, default=None,
        help=f"default: --companies, at most {DB_COMPANIES:,}",
    )  # fmt: skip
    parser.add_argument("--db-plans", type=int, default=1, help="plans in a row (same year)")
    parser.add_argument(
        "--second-plan", type=int, nargs="*", default=list(SECOND_PLAN_SIZES),
        help="sizes for the second plan of the year, in memory (none: skip)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile one plan")
    parser.add_argument(
        "--output", type=Path, default=_HERE / "results-sampling.json", help="'-': stdout only"
    )
    args = parser.parse_args(argv)
    say: Say = print
    items = plan_items()
    say(
        f"joint plan of {len(DEPARTMENTS)} departments ({', '.join(DEPARTMENTS)}), "
        f"{len(items)} items of {PRESET}: {', '.join(i.id for i in items)}; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"pandas {pd.__version__}"
    )
    figures: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
            "platform": platform.platform(),
        },
        "goal": "a joint plan of 5 departments over 1 M companies under 5 s on 2 cores "
        "(10 M companies under 60 s)",
        "preset": PRESET,
        "departments": list(DEPARTMENTS),
        "items": [i.id for i in items],
        "runs": args.runs,
        "seed": args.seed,
        "timed": list(STEPS),
        "engine_sha256": _code_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    say(
        "load average at start (other processes share the machine; CPU seconds are reported "
        f"with wall seconds): {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    main_figures = measure(args.companies, args.runs, args.seed, say, args.profile)
    figures["main"] = main_figures
    if args.profile:
        say(main_figures.pop("profile"))

    if not args.no_baseline:
        nb = min(args.baseline_companies, args.companies)
        say(f"baseline on {nb:,} companies (engine measured on the same pool, interleaved):")
        pool = make_pool(nb, args.seed)
        snapshot, _ = build_snapshot(pool)
        params = draw_params()
        ours_small, naive = [], []
        for run in range(args.runs):
            steps, _out = plan_once(params, snapshot, args.seed + run)
            ours_small.append(sum(steps[k] for k in STEPS))
            gc.collect()
            started = time.perf_counter()
            tasks, _digest, _hash = straightforward(params, snapshot.tables, args.seed + run)
            naive.append(time.perf_counter() - started)
            say(f"  run {run + 1}: engine {ours_small[-1]:.2f} s, baseline {naive[-1]:.2f} s "
                f"({tasks:,} tasks)")  # fmt: skip
        naive_median = statistics.median(naive)
        scaled = naive_median * args.companies / nb
        figures["baseline"] = {
            "companies": nb,
            "seconds": [round(t, 2) for t in naive],
            "seconds_median": round(naive_median, 2),
            "engine_seconds_same_pool": [round(t, 3) for t in ours_small],
            "ratio_same_pool": round(
                statistics.median(b / o for b, o in zip(naive, ours_small, strict=True)), 1
            ),
            "scaled_to": args.companies,
            "scaled_seconds": round(scaled, 1),
            "ratio_scaled": round(scaled / main_figures["plan_seconds_median"], 1),
        }
        del pool, snapshot

    for n in args.also:
        say(f"{n:,} companies, in a fresh process:")
        figures.setdefault("also", []).append(measure_spawned(n, 1, args.seed))

    if args.second_plan:
        say("the second plan of the year, in memory (plan 1's inspectors are conflicts for its "
            "companies; tier D is drawn again at 100 %):")  # fmt: skip
        rows2 = []
        for n in args.second_plan:
            row = second_plan(n, args.seed)
            rows2.append(row)
            say(
                f"  {n:>9,} companies: plan 1 {row['first_plan_seconds']:.2f} s, plan 2 "
                f"{row['second_plan_seconds']:.2f} s ({row['second_over_first']}x; "
                f"{row['conflict_pairs']:,} conflict pairs, {row['teams_revisited']:,} of "
                f"{row['second_plan_teams']:,} teams revisit a company)"
            )
        second: dict[str, Any] = {"sizes": rows2}
        if len(rows2) >= 2 and rows2[0]["second_plan_seconds"] > 0:
            lo, hi = rows2[0], rows2[-1]
            exponent = np.log(hi["second_plan_seconds"] / lo["second_plan_seconds"]) / np.log(
                hi["companies"] / lo["companies"]
            )
            second["exponent"] = round(float(exponent), 2)
            second["extrapolated_seconds_at_companies"] = round(
                hi["second_plan_seconds"] * (args.companies / hi["companies"]) ** exponent
            )
            say(
                f"  plan 2 grows as N^{exponent:.2f}: extrapolated to {args.companies:,} "
                f"companies, {second['extrapolated_seconds_at_companies']:,} s"
            )
        figures["second_plan"] = second

    use_db = args.db if args.db is not None else args.companies <= 1_000_000
    if use_db:
        db_n = args.db_companies or min(args.companies, DB_COMPANIES)
        if db_n < args.companies:
            say(
                f"database path on {db_n:,} companies, not {args.companies:,}: at 1 M, "
                "create_plan alone takes over 60 s (see the docstring)"
            )
        figures["database"] = measure_database(db_n, args.db_plans, args.seed, say)

    # the table
    say("")
    rows = [main_figures, *figures.get("also", [])]
    say(f"{'companies':>12} {'runs':>5} {'plan s (median)':>16} {'CPU s':>6} {'goal s':>7} "
        f"{'met':>4} {'tasks':>10} {'visits':>9} {'snapshot s':>11} {'peak GiB':>9}")  # fmt: skip
    for row in rows:
        say(
            f"{row['companies']:>12,} {len(row['plan_seconds']):>5} "
            f"{row['plan_seconds_median']:>16.2f} {row['plan_cpu_seconds_median']:>6.2f} "
            f"{row.get('goal_seconds', float('nan')):>7.0f} "
            f"{('yes' if row.get('goal_met') else 'no') if 'goal_met' in row else '-':>4} "
            f"{row['tasks']:>10,} {row['visits']:>9,} {row['snapshot_seconds']:>11.1f} "
            f"{row['peak_rss_gib']:>9.2f}"
        )
    steps = main_figures["steps_seconds_median"]
    say(
        f"where the time goes (median seconds, {args.companies:,} companies): "
        + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
    )
    if "baseline" in figures:
        b = figures["baseline"]
        say(
            f"baseline (per-item pandas sample + per-team random.sample): {b['seconds_median']:.1f}"
            f" s on {b['companies']:,} companies, the engine {b['ratio_same_pool']}x faster there;"
            f" scaled linearly to {b['scaled_to']:,}: {b['scaled_seconds']:.0f} s, "
            f"{b['ratio_scaled']}x the engine's median"
        )
    if "database" in figures:
        for p in figures["database"]["plans"]:
            say(
                f"create_plan on SQLite, {figures['database']['companies']:,} companies, "
                f"{p['plan_id']}: {p['create_seconds']:.1f} s ({p['tasks']:,} tasks, "
                f"{p['tasks_per_s']:,} tasks/s), verify_plan {p['verify_seconds']:.1f} s "
                f"(identical: {p['verified_identical']})"
            )
    if _code_version() != figures["engine_sha256"]:
        say("WARNING: serving/spotcheck changed while this ran: the figures mix versions")
        figures["engine_changed_during_run"] = True
    goals = [r for r in rows if "goal_met" in r]
    figures["goal_met"] = all(r["goal_met"] for r in goals) if goals else None
    figures["peak_rss_gib"] = round(_peak_rss_gib(), 2)
    figures["wall_seconds"] = round(time.perf_counter() - begun, 1)
    say(f"peak RSS of this process {figures['peak_rss_gib']} GiB; wall time "
        f"{figures['wall_seconds']} s")  # fmt: skip
    text = json.dumps(figures, indent=1, default=str)
    if str(args.output) == "-":
        print(text)
    else:
        args.output.write_text(text + "\n", encoding="utf-8")
        say(f"wrote {args.output}")
    return figures


if __name__ == "__main__":
    main()
