"""A province's monthly job end to end, as an operator runs it, at the scale of a province.

Each stage is one `credsup` process with `CREDSUP_DATA_DIR` set to a fresh directory under
`--workdir`, timed from start to exit with its own peak resident memory (`os.wait4`: that
process's, which starts as a copy of the benchmark's own, about 12 MiB):

1. `simulate` N companies over `--years` years (the test province: not part of the job);
2. `ingest` the entities and then the records (a first load: `--history`, dated the
   simulation's last day), then `compact` them (sorted by company);
3. `score`: the public credit evaluation of every company as of that day;
4. `train` the risk model on the past spot checks (and register it), `promote` it;
5. `tier` every active company with 3 reasons and the records behind them;
6. `load` the evaluation and the tiers into the serving database (SQLite in the directory;
   an inherited `DATABASE_URL` is ignored);
7. `plan items import`, `plan inspectors demo`, `plan create` (a joint plan of 5 departments
   over the tiers loaded), `lists derive` (the credit lists the records call for).

Baseline (same run): the same job on `--small` companies (default N / 10), its seconds scaled
linearly to N. The ratio large / scaled small is 1.0 for a stage whose time grows in
proportion to the province, above 1 where it grows faster (less: fixed costs dominate the
small run). Memory is given for both sizes; DuckDB's limit is `CREDSUP_DUCKDB_MEMORY_LIMIT`
(default 6 GB) in every stage.

Medians of `--runs` runs per size. The machine may be shared: each stage's CPU seconds are
given with its wall seconds.

    .venv/bin/python -m benchmarks.monthly --companies 1000000 --runs 1
    .venv/bin/python -m benchmarks.monthly --companies 2000000 --small 200000 --runs 1 \\
        --output benchmarks/results-monthly-2026-12-05.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from records.settings import Settings

AS_OF = "2026-06-30"
CREDSUP = str(Path(sys.executable).parent / "credsup")


def stages(data: Path, companies: int, years: int) -> list[tuple[str, list[str]]]:
    sim = data / "simulated"
    return [
        ("simulate", ["simulate", "--companies", str(companies), "--years", str(years),
                      "--seed", "7", "--end", AS_OF, "--out", str(sim)]),
        ("ingest entities", ["ingest", str(sim / "entities.parquet"), "--kind", "entities",
                             "--source", "simulator", "--history", "--today", AS_OF,
                            "--json"]),
        ("ingest records", ["ingest", str(sim / "records.parquet"), "--kind", "records",
                            "--source", "simulator", "--history", "--today", AS_OF,
                            "--json"]),
        ("compact", ["compact", "--json"]),
        ("score", ["score", "--as-of", AS_OF]),
        ("train", ["train", "--truth", str(sim / "truth"), "--no-plots"]),
        ("promote", ["promote", "latest"]),
        ("tier", ["tier", "--as-of", AS_OF]),
        ("load", ["load", "--as-of", AS_OF]),
        ("plan items", ["plan", "items", "import", "--preset", "national-default"]),
        ("plan inspectors", ["plan", "inspectors", "demo"]),
        ("plan create", ["plan", "create", "--name", "monthly joint plan", "--departments",
                         "samr,fire,emergency,ecology,health", "--snapshot", AS_OF]),
        ("lists derive", ["lists", "derive", "--as-of", AS_OF]),
    ]  # fmt: skip


def run_stage(args: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """One process: wall and CPU seconds, peak resident memory, exit code."""
    started = time.perf_counter()
    with log.open("w") as out, log.with_suffix(".err").open("w") as errors:
        proc = subprocess.Popen([CREDSUP, *args], env=env, stdout=out, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_gib": round(usage.ru_maxrss / 2**20, 2),  # kilobytes on Linux
        "exit": proc.returncode,
    }


def run_job(workdir: Path, companies: int, years: int) -> dict[str, Any]:
    data = workdir / f"province-{companies}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {**os.environ, "CREDSUP_DATA_DIR": str(data)}
    # the stages' own stores: an inherited tracking or serving URL would take precedence
    for name in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "CREDSUP_DATABASE_URL"):
        env.pop(name, None)
    figures: dict[str, Any] = {}
    for name, args in stages(data, companies, years):
        figures[name] = result = run_stage(args, env, data / f"{name.replace(' ', '-')}.log")
        # `promote` exits 1 when the candidate is not better: not the case for a first model
        print(f"  {companies:>10,} {name:<16} {result['seconds']:>8.1f} s "
              f"{result['peak_gib']:>6.2f} GiB  exit {result['exit']}",
              file=sys.stderr)  # fmt: skip
        if result["exit"] != 0:
            raise SystemExit(f"stage {name} failed (exit {result['exit']}): see {data}")
    ingested = json.loads((data / "ingest-records.log").read_text(encoding="utf-8"))
    figures["_records"] = ingested["stored"]
    size = sum(f.stat().st_size for f in (data / "store").rglob("*") if f.is_file())
    figures["_store_gib"] = round(size / 2**30, 2)
    return figures


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in runs[0]:
        if name.startswith("_"):
            out[name] = runs[-1][name]
            continue
        out[name] = {
            k: statistics.median(r[name][k] for r in runs)
            for k in ("seconds", "cpu_seconds", "peak_gib")
        }
    job = [v for k, v in out.items() if not k.startswith("_") and k != "simulate"]
    out["_job_seconds"] = round(sum(v["seconds"] for v in job), 1)
    out["_job_peak_gib"] = max(v["peak_gib"] for v in job)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, help="baseline size (default N / 10)")
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--small-runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-monthly"))
    parser.add_argument("--output", help="write the figures as JSON here ('-': stdout)")
    parser.add_argument("--keep", action="store_true", help="keep the provinces built")
    args = parser.parse_args(argv)
    small = args.small or max(args.companies // 10, 1000)
    sizes = {"small": (small, args.small_runs), "large": (args.companies, args.runs)}
    results: dict[str, Any] = {
        "date": date.today().isoformat(), "cores": os.cpu_count(), "years": args.years,
        "memory_limit": Settings().duckdb_memory_limit,  # as the stages read it (.env too)
        "database": "sqlite",
    }  # fmt: skip
    for label, (n, runs) in sizes.items():
        measured = [run_job(args.workdir, n, args.years) for _ in range(runs)]
        results[label] = {"companies": n, "runs": runs, **medians(measured)}
        if not args.keep:
            shutil.rmtree(args.workdir / f"province-{n}", ignore_errors=True)
    scale = args.companies / small
    large, base = results["large"], results["small"]
    print(f"\nmonthly job, {args.years} years of records, medians; baseline: {small:,} companies "
          f"scaled ×{scale:g}")  # fmt: skip
    print(f"{'stage':<18}{'N s':>9}{'CPU s':>9}{'GiB':>7}{'small s':>9}{'GiB':>7}{'ratio':>7}")
    for name in (k for k in large if not k.startswith("_") and isinstance(large[k], dict)):
        a, b = large[name], base[name]
        ratio = a["seconds"] / (b["seconds"] * scale) if b["seconds"] else float("nan")
        large[name]["ratio_to_linear"] = round(ratio, 2)
        print(f"{name:<18}{a['seconds']:>9.1f}{a['cpu_seconds']:>9.1f}{a['peak_gib']:>7.2f}"
              f"{b['seconds']:>9.1f}{b['peak_gib']:>7.2f}{ratio:>7.2f}")  # fmt: skip
    ratio = large["_job_seconds"] / (base["_job_seconds"] * scale)
    results["job_ratio_to_linear"] = round(ratio, 2)
    print(f"{'job (no simulate)':<18}{large['_job_seconds']:>9.1f}{'':>9}"
          f"{large['_job_peak_gib']:>7.2f}{base['_job_seconds']:>9.1f}"
          f"{base['_job_peak_gib']:>7.2f}{ratio:>7.2f}")  # fmt: skip
    print(
        f"store on disk: {large['_store_gib']} GiB ({args.companies:,} companies, "
        f"{large['_records']:,} records)"
    )
    if args.output == "-":
        print(json.dumps(results))
    elif args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
