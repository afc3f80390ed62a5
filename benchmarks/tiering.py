"""Tier plus reason codes for 1 M companies (issue: tiering).

Goals on 2 cores: tiering (`TierModel.score(features, reasons=0)`) at least 50,000 companies/s;
tiering with full reason codes (`reasons=3`: overrides, then the three features that raise the
company's risk most, in Chinese and English) at least 20,000 companies/s. The baselines, measured
in the same run and interleaved with it (every run times everything once, so that each figure
and its baselines see the same load): what one would write first,
`shap.TreeExplainer(booster).shap_values(rows)`, on the production model and on a deep 200-tree
model (num_leaves 31, max_depth 19: about 1,200 rows/s was measured with such a model), and the
straightforward pipeline (LightGBM's `pred_contrib`, then the reasons row by row: what
`TierModel.score` did before). Medians of several runs, because these machines are noisy; ratios
are medians of the ratios within each run.

Where the time goes. TreeSHAP (LightGBM's `pred_contrib`: path-dependent, exact) walks every
tree for every row and, at each leaf, unwinds the path to it once per feature on it:
O(trees x leaves x depth^2) floating-point steps with divisions per row, against O(trees x depth)
for a prediction. For the production model (300 trees of 7 leaves at depth 3.4 on average) that
is about 130 µs per row and core, close to 90 % of the straightforward pipeline (its breakdown is
printed; writing the reasons row by row is most of the rest, about 13 µs a row); for the deep
model (200 trees of 31 leaves, depth 7.6 on average and up to 19) about 1 ms.
`shap.TreeExplainer` adds nothing to that and takes nothing away: for a LightGBM booster
(path-dependent, no background data) `shap_values` merely calls `booster.predict(X,
pred_contrib=True)` (shap/explainers/_tree.py, "shortcut using the C++ version of Tree SHAP"), so
it runs at LightGBM's speed and returns LightGBM's numbers (checked here: bit for bit). shap's own
Python work is building the explainer (it parses the model; 0.02-0.3 s, not counted in its
rows/s).

What changed (models/reasons.py, used by `TierModel.score`): `contributions` gives the values of
`pred_contrib` (to ~1e-15; reasons, rounded contributions and tiers identical, checked here on a
sample against the straightforward pipeline) from tables. A tree's TreeSHAP values depend on a row
only through the direction the row takes at each split (also the splits it never reaches), so a
tree with s splits has at most 2^s patterns: the values are worked out once per tree and pattern
(LightGBM's recursion, vectorised over the patterns; 0.3-0.5 s per model, then cached), and a row
costs one comparison per split and one look-up per tree and feature, in numpy, in blocks of rows on
2 threads: 10-25 times faster than `pred_contrib` (the load varies). Trees too large for tables
(the deep model's 30 splits would need 2^30 patterns) stay with LightGBM: the trick pays because
the production trees are small, a modelling choice made before this benchmark. `top_reasons` writes
each distinct value's text once, and finds each row's largest contributions by four passes of
`argmax` instead of `argpartition` (3 µs a row for 63 columns; rows where `argpartition`'s choice
matters, a positive tie at the third place, still go its way). What remains: the tabulated TreeSHAP
(about 40%), reason selection and text (a third) and the tier policy (a sixth). Python's cyclic
garbage collector, set off by the million lists the reasons and the tier policy build, takes about
a third of the CPU time of a score with reasons (10-11 s instead of 14-16 s a million with it
disabled); it is left alone, because switching it off is a process-wide setting. Tiering without
reasons is mostly LightGBM's prediction (about 5 µs a row, on one core here).

Data: a province of `--train-companies` companies over `--years` simulated years (seed
`--seed` + 1) is ingested and a tier model trained on it with the default `TrainConfig` (what
production uses); the deep model is trained on the same examples. Then `--companies` companies
(seed `--seed`, the same years) are simulated, ingested, and their features as of the last
simulated day built with `features.builder.build_features`: real features of 1 M companies, not
resampled rows. Every company of the feature table is tiered (deregistered ones too). The set-up
runs in a spawned process and is cached under `--workdir` when given.

    .venv/bin/python benchmarks/tiering.py                                          # full run
    .venv/bin/python benchmarks/tiering.py --companies 100000 --train-companies 50000 --runs 2
    .venv/bin/python benchmarks/tiering.py --workdir var/bench-tiering --json > results.json
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pickle
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

# Run as `python benchmarks/tiering.py`, this file's folder comes first on sys.path and
# benchmarks/features.py would shadow the `features` package: drop the folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from features.builder import build_features  # noqa: E402
from features.specs import by_name, spec_version  # noqa: E402
from models.bundle import GOOD_HISTORY_FEATURES, TierModel, _overrides, has_history  # noqa: E402
from models.reasons import _category_texts, _value_texts, contributions, top_reasons  # noqa: E402
from models.risk import categorical_columns, model_columns  # noqa: E402
from models.tiers import TIERS  # noqa: E402
from records.ingest import ingest_table  # noqa: E402
from records.simulate import SimulationConfig, simulate  # noqa: E402
from records.store import Store  # noqa: E402
from training.dataset import time_split, training_frame  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

GOAL_TIERING = 50_000
GOAL_REASONS = 20_000
END = date(2026, 6, 30)
"""Last simulated day, the as-of date and the ingestion day."""
DEEP_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "num_leaves": 31,
    "max_depth": 19,
    "min_child_samples": 20,
    "learning_rate": 0.05,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
DEEP_TREES = 200
REASONS = 3

Say = Callable[..., None]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # Linux: KiB


# ---- set-up: simulate, ingest, train, build features (a spawned process, cached) --------------


def _tree_shape(booster: Any) -> dict[str, Any]:
    trees = booster.trees_to_dataframe()
    leaves = trees[trees["left_child"].isna()].groupby("tree_index")
    return {
        "trees": int(booster.num_trees()),
        "leaves_mean": round(float(leaves.size().mean()), 1),
        "leaf_depth_mean": round(
            float((trees[trees["left_child"].isna()]["node_depth"] - 1).mean()), 2
        ),
        "depth_max": int(trees["node_depth"].max() - 1),
    }


def _ingest(store: Store, companies: int, years: int, seed: int, slice_rows: int) -> int:
    sim = simulate(SimulationConfig(companies=companies, years=years, seed=seed, end=END))
    entities, records = sim.entities, sim.records
    del sim
    quarantined = ingest_table(
        store, entities, "entities", "bench", today=END, history=True
    ).quarantined
    for offset in range(0, records.num_rows, slice_rows):
        part = records.slice(offset, slice_rows)
        quarantined += ingest_table(
            store, part, "records", "bench", today=END, history=True
        ).quarantined
    if quarantined:
        raise RuntimeError(f"ingestion quarantined {quarantined:,} rows")
    return int(records.num_rows)


def _setup_child(work: str, args: dict[str, Any]) -> dict[str, Any]:
    root = Path(work)
    info: dict[str, Any] = {}
    started = time.perf_counter()
    train_store = Store(root / "train-store")
    info["train_records"] = _ingest(
        train_store, args["train_companies"], args["years"], args["seed"] + 1, args["ingest_slice"]
    )
    outcome = train(train_store, TrainConfig())
    model = outcome.model
    (root / "model.pkl").write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    info["train_examples"] = outcome.report["training_examples"]
    info["train_auc"] = outcome.report.get("auc")
    info["model"] = {**_tree_shape(model.risk.booster_), **model.risk.get_params()}
    # the deep model: the same training examples (the earlier checks), no constraints
    early, _late = time_split(training_frame(train_store), TrainConfig().validation_days)
    frame = early.to_pandas()
    rows = model.risk._frame(frame)
    data = lgb.Dataset(
        rows, frame["label"], weight=frame["weight"], categorical_feature=categorical_columns()
    )
    deep = lgb.train(DEEP_PARAMS, data, num_boost_round=DEEP_TREES)
    (root / "deep-model.txt").write_text(deep.model_to_string())
    info["deep_model"] = {**_tree_shape(deep), **DEEP_PARAMS}
    info["train_seconds"] = round(time.perf_counter() - started, 1)
    del train_store, frame, rows, data

    started = time.perf_counter()
    store = Store(root / "store")
    info["records"] = _ingest(
        store, args["companies"], args["years"], args["seed"], args["ingest_slice"]
    )
    info["ingest_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    table = build_features(store, END)
    info["features_seconds"] = round(time.perf_counter() - started, 1)
    pq.write_table(table, root / "features.parquet")
    info["feature_rows"] = table.num_rows
    info["setup_peak_rss_gib"] = round(_peak_rss_gib(), 2)
    shutil.rmtree(root / "store", ignore_errors=True)
    shutil.rmtree(root / "train-store", ignore_errors=True)
    return info


def prepare(work: Path, args: argparse.Namespace, say: Say) -> tuple[Path, dict[str, Any]]:
    key = (
        f"tiering-{args.companies}c-{args.train_companies}t-{args.years}y-s{args.seed}-"
        f"{spec_version()}"
    )
    root = work / key
    marker = work / f"{key}.json"
    if marker.exists() and (root / "features.parquet").exists():
        say(f"reusing the set-up in {root}")
        info: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        return root, info
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    say(f"setting up in {root}: simulate, ingest, train, build features (once)")
    settings = {
        "companies": args.companies,
        "train_companies": args.train_companies,
        "years": args.years,
        "seed": args.seed,
        "ingest_slice": args.ingest_slice,
    }
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        info = pool.submit(_setup_child, str(root), settings).result()
    marker.write_text(json.dumps(info), encoding="utf-8")
    return root, info


# ---- the straightforward pipeline (the baseline and the check) --------------------------------


def reasons_row_by_row(
    contrib: np.ndarray, names: list[str], values: pd.DataFrame, k: int
) -> list[list[dict[str, Any]]]:
    """The reasons as first written: sort each row, then one text per reason."""
    specs = [by_name()[n] for n in names]
    named = np.array([s.direction != 0 or getattr(s, "categorical", False) for s in specs])
    masked = np.where(named[None, :], contrib[:, : len(names)], 0.0)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    columns = {j: values[names[j]].to_numpy() for j in range(len(names))}
    out: list[list[dict[str, Any]]] = []
    for row in range(len(masked)):
        reasons = []
        for j in order[row].tolist():
            c = round(float(masked[row, j]), 4)
            if c <= 0:  # reported to 4 decimals: 0.0 is no reason
                break
            value = columns[j][row]
            zh, en = _category_texts(names[j], value) if type(value) is str else _value_texts(value)
            reasons.append(
                {
                    "code": names[j],
                    "kind": "model",
                    "contribution": c,
                    "zh": specs[j].reason_zh.replace("{value}", zh),
                    "en": specs[j].reason_en.replace("{value}", en),
                }
            )
        out.append(reasons)
    return out


def straightforward(
    model: TierModel, frame: pd.DataFrame, k: int, steps: dict[str, float] | None = None
) -> pd.DataFrame:
    """Tiers with reasons from LightGBM's `pred_contrib` and row-by-row texts (`steps`: the
    seconds of each step)."""
    laps = _Laps(steps)
    rows = model.risk._frame(frame)
    laps("input frame (RiskModel._frame)")
    contrib = np.asarray(model.risk.booster_.predict(rows, pred_contrib=True), dtype=float)
    laps("TreeSHAP contributions (LightGBM pred_contrib)")
    raw = contrib.sum(axis=1)
    proba = model.risk.calibrate(raw)
    columns = {c: frame[c].to_numpy() for c in model.policy.veto_features() if c in frame}
    tiers, overrides = model.policy.assign(
        proba, columns, has_history(frame), has_history(frame, GOOD_HISTORY_FEATURES)
    )
    laps("calibration + tier policy")
    names = model_columns()
    top = reasons_row_by_row(contrib, names, frame[names], k)
    laps("reason selection + text (row by row)")
    out = pd.DataFrame(
        {
            "raw_score": raw,
            "tier": tiers,
            "reasons": [_overrides(o) + r for o, r in zip(overrides, top, strict=True)],
        }
    )
    laps("overrides + reasons per company")
    return out


class _Laps:
    """Seconds since the previous call, under a step's name (nothing when `steps` is None)."""

    def __init__(self, steps: dict[str, float] | None) -> None:
        self.steps = steps
        self.clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.steps is not None:
            self.steps[name] = now - self.clock
        self.clock = now


# ---- measuring --------------------------------------------------------------------------------


def _breakdown(model: TierModel, frame: pd.DataFrame) -> dict[str, float]:
    """`score(frame, reasons=3)` step by step (the same calls, explicit timers)."""
    steps: dict[str, float] = {}
    laps = _Laps(steps)
    rows = model.risk._frame(frame)
    laps("input frame (RiskModel._frame)")
    raw = np.asarray(model.risk.booster_.predict(rows, raw_score=True), float)
    laps("raw score (LightGBM predict)")
    contrib = contributions(model.risk.booster_, rows)
    laps("TreeSHAP contributions (tabulated)")
    proba = model.risk.calibrate(raw)
    level = np.searchsorted(np.asarray(model.policy.cutoffs_), proba, side="left")
    columns = {c: frame[c].to_numpy() for c in model.policy.veto_features() if c in frame}
    tiers, overrides = model.policy.assign(
        proba, columns, has_history(frame), has_history(frame, GOOD_HISTORY_FEATURES)
    )
    out = pd.DataFrame(
        {
            "uscc": frame["uscc"].to_numpy(),
            "as_of": frame["as_of"].to_numpy(),
            "probability": proba,
            "raw_score": raw,
            "model_tier": np.asarray(TIERS)[level],
            "tier": tiers,
        }
    )
    laps("calibration + tier policy")
    names = model_columns()
    top = top_reasons(contrib, names, frame[names], k=REASONS)
    laps("reason selection + text (top_reasons)")
    out["reasons"] = [  # type: ignore[assignment]
        _overrides(o) + m if o else m for o, m in zip(overrides, top, strict=True)
    ]
    laps("overrides + reasons per company")
    return steps


def _median_steps(laps: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(lap[k] for lap in laps) for k in laps[0]}


def _say_steps(say: Say, steps: dict[str, float], n: int) -> None:
    total = sum(steps.values())
    for name, seconds in steps.items():
        say(f"  {name:<46} {seconds:7.2f} s {seconds / total:6.1%} {seconds / n * 1e6:7.2f} µs/row")


def _once(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one call."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del result
    return wall, cpu


def _explainer(booster: Any, x: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """shap's TreeExplainer for the booster: seconds to build it, and whether its values are
    LightGBM's `pred_contrib` (without the expected-value column) bit for bit."""
    import shap

    started = time.perf_counter()
    explainer = shap.TreeExplainer(booster)
    built = time.perf_counter() - started
    values = np.asarray(_shap_values(explainer, x))
    direct = np.asarray(booster.predict(x, pred_contrib=True), dtype=float)
    return explainer, {
        "rows": len(x),
        "explainer_seconds": round(built, 3),
        "equals_pred_contrib": bool(np.array_equal(values, direct[:, :-1])),
    }


def _shap_values(explainer: Any, x: pd.DataFrame) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "LightGBM binary classifier ... has changed"
        return explainer.shap_values(x)


def _profile(model: TierModel, frame: pd.DataFrame, top: int = 15) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    model.score(frame, reasons=REASONS)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    begun = time.perf_counter()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1_000_000)
    parser.add_argument("--train-companies", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--naive-rows", type=int, default=50_000, help="straightforward pipeline")
    parser.add_argument("--shap-rows", type=int, default=5_000, help="shap.TreeExplainer sample")
    parser.add_argument("--ingest-slice", type=int, default=8_000_000)
    parser.add_argument("--profile", action="store_true", help="cProfile one score call")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="credsup-bench-tiering-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say: Say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    root, setup = prepare(work, args, say)
    model = TierModel.load(root / "model.pkl")
    deep = lgb.Booster(model_file=str(root / "deep-model.txt"))
    frame = pq.read_table(root / "features.parquet").to_pandas()
    n = len(frame)
    shape, deep_shape = setup["model"], setup["deep_model"]
    say(
        f"{n:,} companies ({setup['records']:,} records, {args.years} simulated years), features "
        f"as of {END}; model trained on {setup['train_examples']:,} checks of a "
        f"{args.train_companies:,}-company province: {shape['trees']} trees, "
        f"{shape['leaves_mean']} leaves, mean leaf depth {shape['leaf_depth_mean']} (AUC "
        f"{setup['train_auc']}); deep model: {deep_shape['trees']} trees, "
        f"{deep_shape['leaves_mean']} leaves, mean leaf depth {deep_shape['leaf_depth_mean']}, "
        f"max depth {deep_shape['depth_max']}"
    )
    figures: dict[str, Any] = {
        "companies": n,
        "spec_version": spec_version(),
        "as_of": END.isoformat(),
        "runs": args.runs,
        "setup": setup,
    }

    # the one-off table build, on a fresh copy of the model (tables are cached per booster)
    fresh = pickle.loads(pickle.dumps(model))
    started = time.perf_counter()
    contributions(fresh.risk.booster_, fresh.risk._frame(frame.head(1)))
    figures["table_build_seconds"] = round(time.perf_counter() - started, 3)
    del fresh

    # the check: the same tiers and reasons as pred_contrib + row-by-row reasons, on a sample
    sample = frame.sample(min(args.naive_rows, n), random_state=args.seed).reset_index(drop=True)
    ours = model.score(sample, reasons=REASONS)
    theirs = straightforward(model, sample, REASONS)
    rows = model.risk._frame(sample)
    lgb_contrib = np.asarray(model.risk.booster_.predict(rows, pred_contrib=True), dtype=float)
    differ = sum(a != b for a, b in zip(ours["reasons"], theirs["reasons"], strict=True))
    check = {
        "companies": len(sample),
        "reasons_differ": int(differ),
        "tiers_differ": int((ours["tier"] != theirs["tier"]).sum()),
        "max_abs_raw_score_diff": float(np.abs(ours["raw_score"] - theirs["raw_score"]).max()),
        "max_abs_contribution_diff": float(
            np.abs(contributions(model.risk.booster_, rows) - lgb_contrib).max()
        ),
    }
    figures["check"] = check
    say(
        f"check on {len(sample):,} companies against pred_contrib + row-by-row reasons: "
        f"{differ} differ in reasons, {check['tiers_differ']} in tier; contributions within "
        f"{check['max_abs_contribution_diff']:.1e}, raw scores within "
        f"{check['max_abs_raw_score_diff']:.1e}"
    )
    del ours, theirs, lgb_contrib
    x = model.risk._frame(sample.head(args.shap_rows))
    boosters = {"production": model.risk.booster_, "deep": deep}
    explainers, shap_info = {}, {}
    for label, booster in boosters.items():
        explainers[label], shap_info[label] = _explainer(booster, x)

    # the runs, interleaved so that every figure and its baselines see the same load
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ours_laps: list[dict[str, float]] = []
    naive_laps: list[dict[str, float]] = []

    def record(name: str, fn: Callable[[], Any]) -> None:
        w, c = _once(fn)
        wall.setdefault(name, []).append(w)
        cpu.setdefault(name, []).append(c)

    for run in range(args.runs):
        say(f"run {run + 1} of {args.runs}")
        record("tiering", lambda: model.score(frame, reasons=0))
        record("reasons", lambda: model.score(frame, reasons=REASONS))
        ours_laps.append(_breakdown(model, frame))
        laps: dict[str, float] = {}
        record("straightforward", partial(straightforward, model, sample, REASONS, laps))
        naive_laps.append(laps)
        record("pred_contrib", lambda: model.risk.booster_.predict(rows, pred_contrib=True))
        record("tabulated", lambda: contributions(model.risk.booster_, rows))
        for label, booster in boosters.items():
            record(f"shap_{label}", partial(_shap_values, explainers[label], x))
            record(f"pred_contrib_{label}", partial(booster.predict, x, pred_contrib=True))

    size = {"tiering": n, "reasons": n, "straightforward": len(sample), "pred_contrib": len(rows),
            "tabulated": len(rows)}  # fmt: skip
    size.update({f"{k}_{label}": len(x) for k in ("shap", "pred_contrib") for label in boosters})
    rate = {k: [size[k] / t for t in times] for k, times in wall.items()}
    median = {k: statistics.median(v) for k, v in rate.items()}

    def ratio(a: str, b: str) -> float:
        """Median over runs of a's rate over b's, measured in the same run."""
        return statistics.median(x / y for x, y in zip(rate[a], rate[b], strict=True))

    plain_rate, full_rate = median["tiering"], median["reasons"]
    figures.update(
        tiering_seconds=[round(t, 2) for t in wall["tiering"]],
        tiering_cpu_seconds=[round(t, 2) for t in cpu["tiering"]],
        tiering_per_s=round(plain_rate),
        reasons_seconds=[round(t, 2) for t in wall["reasons"]],
        reasons_cpu_seconds=[round(t, 2) for t in cpu["reasons"]],
        reasons_per_s=round(full_rate),
        goal_tiering_met=plain_rate >= GOAL_TIERING,
        goal_reasons_met=full_rate >= GOAL_REASONS,
    )
    say(
        f"tiering only: runs {', '.join(f'{t:.2f}' for t in wall['tiering'])} s; median "
        f"{plain_rate:,.0f} companies/s (goal >= {GOAL_TIERING:,}: "
        f"{'met' if plain_rate >= GOAL_TIERING else 'NOT met'})"
    )
    say(
        f"tiering + {REASONS} reasons: runs {', '.join(f'{t:.2f}' for t in wall['reasons'])} s "
        f"(CPU {', '.join(f'{t:.1f}' for t in cpu['reasons'])} s); median {full_rate:,.0f} "
        f"companies/s (goal >= {GOAL_REASONS:,}: "
        f"{'met' if full_rate >= GOAL_REASONS else 'NOT met'})"
    )
    steps = _median_steps(ours_laps)
    figures["breakdown_seconds"] = {k: round(v, 3) for k, v in steps.items()}
    say(f"where the time goes with reasons ({n:,} companies, medians of {args.runs} runs):")
    _say_steps(say, steps, n)

    naive_steps = _median_steps(naive_laps)
    figures.update(
        straightforward_rows=len(sample),
        straightforward_per_s=round(median["straightforward"]),
        straightforward_breakdown_seconds={k: round(v, 3) for k, v in naive_steps.items()},
        ratio_vs_straightforward=round(ratio("reasons", "straightforward"), 1),
        lightgbm_pred_contrib_per_s=round(median["pred_contrib"]),
        tabulated_contributions_per_s=round(median["tabulated"]),
        contributions_speedup=round(ratio("tabulated", "pred_contrib"), 1),
    )
    say(
        f"straightforward pipeline (pred_contrib + row-by-row reasons) on {len(sample):,}: "
        f"{median['straightforward']:,.0f} companies/s; ours is "
        f"{figures['ratio_vs_straightforward']}x; its time:"
    )
    _say_steps(say, naive_steps, len(sample))
    say(
        f"contributions alone on that sample: LightGBM pred_contrib "
        f"{median['pred_contrib']:,.0f} rows/s, tabulated {median['tabulated']:,.0f} rows/s "
        f"({figures['contributions_speedup']}x; tables built once per model in "
        f"{figures['table_build_seconds']:.2f} s)"
    )
    for label in boosters:
        result = {
            **shap_info[label],
            "shap_values_seconds": [round(t, 3) for t in wall[f"shap_{label}"]],
            "rows_per_s": round(median[f"shap_{label}"]),
            "lightgbm_pred_contrib_rows_per_s": round(median[f"pred_contrib_{label}"]),
            "ratio_reasons_vs_shap": round(ratio("reasons", f"shap_{label}"), 1),
            "ratio_tiering_vs_shap": round(ratio("tiering", f"shap_{label}"), 1),
        }
        figures[f"shap_{label}"] = result
        say(
            f"shap.TreeExplainer(booster).shap_values, {label} model, {len(x):,} rows: "
            f"{result['rows_per_s']:,} rows/s (explainer built in "
            f"{result['explainer_seconds']:.2f} s, not counted; pred_contrib directly "
            f"{result['lightgbm_pred_contrib_rows_per_s']:,} rows/s; shap's values are "
            f"pred_contrib's bit for bit: {result['equals_pred_contrib']})"
        )

    say("")
    say(f"{'median of ' + str(args.runs) + ' runs, 2 cores':<48} {'companies/s':>12} "
        f"{'vs shap, production':>20} {'vs shap, deep':>14}")  # fmt: skip
    table = [
        ("tiering only", "tiering"),
        (f"tiering + {REASONS} reasons (goal {GOAL_REASONS:,})", "reasons"),
        ("straightforward: pred_contrib + row-by-row", "straightforward"),
        ("shap.TreeExplainer, production model", "shap_production"),
        ("shap.TreeExplainer, deep model", "shap_deep"),
    ]
    for text, key in table:
        say(
            f"{text:<48} {median[key]:>12,.0f} {ratio(key, 'shap_production'):>19.1f}x "
            f"{ratio(key, 'shap_deep'):>13.1f}x"
        )
    say("")

    if args.profile:
        say(_profile(model, frame))
    figures["peak_rss_gib"] = round(_peak_rss_gib(), 2)
    figures["wall_seconds"] = round(time.perf_counter() - begun, 1)
    say(
        f"peak RSS of this process {figures['peak_rss_gib']} GiB (set-up process "
        f"{setup['setup_peak_rss_gib']} GiB); wall time {figures['wall_seconds']} s"
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, default=str))
    return figures


if __name__ == "__main__":
    main()
