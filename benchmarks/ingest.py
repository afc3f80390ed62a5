"""Ingestion throughput and simulator speed (issue: foundation).

Goals: ingest at least 1 M rows/s on 2 cores (10 M simulated records), and simulate 1 M companies
× 5 years in under 5 minutes. The baseline is what one would write first: pandas reads the CSV,
validates row by row (the same rules, with `records.uscc.validate`), and appends the valid rows
to Parquet. Medians of several runs, because these machines are noisy. Each ingestion runs in
its own process, so that its peak memory is its own; `--one-piece` also ingests each file in one
piece (the whole file in memory, as before files were read in parts) for comparison.

    .venv/bin/python benchmarks/ingest.py                    # the full run (several minutes)
    .venv/bin/python benchmarks/ingest.py --records 1000000 --sim-companies 100000 --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from records import uscc
from records.catalogue import default_catalogue
from records.ingest import ROWS_AT_ONCE
from records.simulate import SimulationConfig, simulate


def _as_text(table: pa.Table) -> pa.Table:
    return pa.table({c: table.column(c).cast(pa.string()) for c in table.column_names})


def _ingest_once(path: Path, store_dir: Path, rows_at_once: int) -> tuple[float, float]:
    """One ingestion in its own process: (seconds, peak resident memory in GiB)."""
    code = (
        "import json, time\n"
        "from datetime import date\n"
        "from pathlib import Path\n"
        "from records.ingest import ingest_file\n"
        "from records.store import Store\n"
        "started = time.perf_counter()\n"
        f"result = ingest_file(Store(Path({str(store_dir)!r})), Path({str(path)!r}), 'records', "
        f"'bench', today=date(2026, 11, 22), rows_at_once={rows_at_once})\n"
        "print(json.dumps({'seconds': time.perf_counter() - started, "
        "'quarantined': result.quarantined}))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=Path(__file__).parents[1]
    )
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"ingestion of {path} failed (status {status})")
    done = json.loads(out)
    assert done["quarantined"] == 0, done
    shutil.rmtree(store_dir)
    return float(done["seconds"]), usage.ru_maxrss / 2**20


def _ingest_runs(
    path: Path, runs: int, work: Path, rows_at_once: int
) -> tuple[list[float], list[float]]:
    times, peaks = [], []
    for i in range(runs):
        seconds, peak = _ingest_once(path, work / f"store-{path.suffix[1:]}-{i}", rows_at_once)
        times.append(seconds)
        peaks.append(peak)
    return times, peaks


def _baseline(csv_path: Path, rows: int, work: Path) -> float:
    """pandas read → row-by-row validation → append valid rows to Parquet; returns seconds."""
    cat = default_catalogue()
    today = date(2026, 11, 22)
    started = time.perf_counter()
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, nrows=rows)

    def valid(row: pd.Series) -> bool:
        try:
            uscc.validate(row["uscc"])
            category = cat[row["category"]]
            event = datetime.strptime(row["event_date"], "%Y-%m-%d").date()
            recorded = datetime.strptime(row["recorded_date"], "%Y-%m-%d").date()
            if event > today or recorded > today or recorded < event:
                return False
            if row["severity"] and row["severity"] not in category.severities:
                return False
            if row["amount"] and float(row["amount"]) < 0 and not category.negative_amount_allowed:
                return False
            return isinstance(json.loads(row["attributes"] or "{}"), dict)
        except (ValueError, KeyError):
            return False

    keep = df[df.apply(valid, axis=1)]
    out = work / "baseline.parquet"
    keep.to_parquet(out, index=False)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=500_000)
    parser.add_argument("--sim-companies", type=int, default=1_000_000)
    parser.add_argument("--sim-runs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--one-piece",
        action="store_true",
        help="also ingest each file in one piece (rows_at_once = --records), as before 2026-12-05",
    )
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="credsup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    sim_times = []
    for run in range(args.sim_runs):
        started = time.perf_counter()
        sim = simulate(SimulationConfig(companies=args.sim_companies, years=args.years, seed=run))
        sim_times.append(time.perf_counter() - started)
    sim_records = sim.records.num_rows
    say(
        f"simulate {args.sim_companies:,} companies x {args.years} years: "
        f"median {statistics.median(sim_times):.1f} s ({sim_records:,} records; goal < 300 s)"
    )

    if sim_records < args.records:
        parser.error(f"the simulation made {sim_records:,} records; raise --sim-companies")
    # a random sample in the simulation's order (records are grouped by category)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(sim_records, size=args.records, replace=False))
    records = sim.records.take(pa.array(pick))
    del sim
    text = _as_text(records)
    parquet_path, csv_path = work / "records.parquet", work / "records.csv"
    pq.write_table(records, parquet_path)
    pacsv.write_csv(text, csv_path)
    del records, text
    say(
        f"{args.records:,} simulated records sampled from that run: "
        f"CSV {csv_path.stat().st_size / 1e9:.2f} GB, "
        f"Parquet {parquet_path.stat().st_size / 1e9:.2f} GB"
    )

    figures: dict[str, Any] = {
        "records": args.records,
        "simulate_companies": args.sim_companies,
        "simulate_years": args.years,
        "simulate_seconds_median": round(statistics.median(sim_times), 2),
        "simulate_records": sim_records,
    }
    figures["rows_at_once"] = ROWS_AT_ONCE
    ways = [("", ROWS_AT_ONCE)] + ([("_one_piece", args.records)] if args.one_piece else [])
    for label, path in (("parquet", parquet_path), ("csv", csv_path)):
        for way, rows_at_once in ways:
            times, peaks = _ingest_runs(path, args.runs, work, rows_at_once)
            median = statistics.median(times)
            figures[f"ingest_{label}{way}_seconds"] = [round(t, 2) for t in times]
            figures[f"ingest_{label}{way}_rows_per_s_median"] = round(args.records / median)
            figures[f"ingest_{label}{way}_peak_gib_median"] = round(statistics.median(peaks), 2)
            say(
                f"ingest {label}{way.replace('_', ' ')} ({rows_at_once:,} rows at once): runs "
                f"{', '.join(f'{t:.1f}' for t in times)} s; median "
                f"{args.records / median / 1e6:.2f} M rows/s (goal >= 1 M rows/s); peak "
                f"{statistics.median(peaks):.2f} GiB"
            )

    base_rows = min(args.baseline_rows, args.records)
    base_times = [_baseline(csv_path, base_rows, work) for _ in range(max(1, args.runs - 1))]
    base_rate = base_rows / statistics.median(base_times)
    figures["baseline_rows"] = base_rows
    figures["baseline_rows_per_s_median"] = round(base_rate)
    for label in ("parquet", "csv"):
        figures[f"ratio_{label}_vs_baseline"] = round(
            figures[f"ingest_{label}_rows_per_s_median"] / base_rate, 1
        )
    say(
        f"baseline pandas read-validate-append on {base_rows:,} CSV rows: "
        f"{base_rate / 1e3:.0f} k rows/s; ours is {figures['ratio_csv_vs_baseline']}x (CSV) "
        f"and {figures['ratio_parquet_vs_baseline']}x (Parquet)"
    )
    figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    say(f"peak RSS of this process (simulation, baseline): {figures['peak_rss_gb']} GB")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
