"""What the service's own small writes cost a company's read until the store is compacted
(issue: records; the store's layout).

The service stores each spot-check result, objection step, repair and listing as it happens: one
small batch, one Parquet file of a row or a few (`ingest_table`, `append_events`). A company's
read (`Store.scan`) looks at every file not sorted yet, so reads slow down as such files pile up
until `credsup compact` sorts them into a run; with `CREDSUP_AUTO_COMPACT_FILES` the service
does that itself once a table has that many.

1. A simulated province (`--companies`, 3 years, ingested, compacted; reused from `--workdir`).
2. What a records page reads (`records_on` and `registered_entity`) for `--sample` companies:
   median and p99 ms, on the compacted store (the baseline), then after each of `--steps` more
   single-row record batches written as a result is (`ingest_table` of one `spot_check` record,
   timed: the write's own latency), then after `Store.compact` of the loose files (timed).
3. With `--auto N` (default 64, the setting's): the store compacted whole again, the same
   writes with the service's `AutoCompactor` at threshold N running in the process (as `credsup
   serve` runs it), reads measured after each step once a compaction a write started is done.

    .venv/bin/python benchmarks/loose_files.py --workdir /tmp/bench-loose   # ~3 min
    .venv/bin/python benchmarks/loose_files.py --companies 20000 --steps 100,400 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import pyarrow as pa  # noqa: E402

from records.ingest import ingest_table  # noqa: E402
from records.publicity import records_on  # noqa: E402
from records.store import Store, layout  # noqa: E402
from serving.compactor import AutoCompactor  # noqa: E402
from serving.lookup import registered_entity  # noqa: E402

Say = Callable[[str], None]
DAY = date(2026, 11, 30)
VENV_BIN = Path(sys.executable).parent


def prepare(work: Path, companies: int, seed: int, say: Say) -> Path:
    data = work / "data"
    marker = work / "loose-files.json"
    wanted = {"companies": companies, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        say(f"reusing {data}")
        return data
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {"CREDSUP_DATA_DIR": str(data), "PATH": str(VENV_BIN)}
    started = time.perf_counter()
    for argv in (["simulate", "--companies", str(companies), "--years", "3", "--seed", str(seed),
                  "--out", str(work / "sim"), "--ingest", "--json"],
                 ["compact", "--json"]):  # fmt: skip
        subprocess.run([str(VENV_BIN / "credsup"), *argv], env=env, check=True,
                       capture_output=True)  # fmt: skip
    say(f"simulated, ingested and compacted {companies:,} companies in "
        f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    marker.write_text(json.dumps(wanted))
    return data


def read_page(store: Store, codes: list[str]) -> dict[str, float]:
    times = []
    for code in codes:
        t0 = time.perf_counter()
        entity = registered_entity(store, code, DAY)
        records_on(store, code, DAY, entity=entity)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-loose"))
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--steps", default="250,1000,3000",
                        help="loose files in all after each step (cumulative)")  # fmt: skip
    parser.add_argument("--auto", type=int, default=64,
                        help="then the same writes with the service's compactor at this "
                        "threshold (0: not)")  # fmt: skip
    parser.add_argument("--auto-only", action="store_true", help="only the compactor's run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    say: Say = (lambda m: print(m, file=sys.stderr)) if args.json else print
    data = prepare(args.workdir, args.companies, args.seed, say)
    store = Store(data / "store", memory_limit="4GB", threads=2)
    store.compact(full=True)  # a previous run's writes sorted away: one run
    with store.connect() as con:
        codes = [r[0] for r in con.sql("SELECT DISTINCT uscc FROM entities").fetchall()]
        template = con.sql(
            "SELECT * FROM records WHERE category = 'spot_check' LIMIT 1"
        ).to_arrow_table()
    rng = random.Random(args.seed)
    sample = rng.sample(codes, min(args.sample, len(codes)))
    keep = [c for c in template.column_names if c not in ("batch_id",)]
    template = template.select(keep)
    read_page(store, sample[:10])  # warm
    figures: dict[str, Any] = {"companies": args.companies, "sample": len(sample)}
    base = read_page(store, sample)
    figures["compacted"] = base
    say(f"compacted store: records page median {base['median_ms']} ms, p99 {base['p99_ms']} ms")
    figures["no_auto"] = None
    if not args.auto_only:
        figures["no_auto"] = run_steps(store, template, codes, sample, base, args, rng, say, None)
    figures["auto"] = None
    if args.auto:
        store.compact(["records"], full=True)
        compactor = AutoCompactor(store, args.auto, period=3600)
        compactor.start()
        say(f"again with the service's compactor (threshold {args.auto} files):")
        try:
            figures["auto"] = run_steps(store, template, codes, sample, base, args, rng, say,
                                        compactor)  # fmt: skip
        finally:
            compactor.stop()
    if args.json:
        print(json.dumps(figures, indent=1))
    return figures


def run_steps(store: Store, template: pa.Table, codes: list[str], sample: list[str],
              base: dict[str, float], args: argparse.Namespace, rng: random.Random, say: Say,
              compactor: AutoCompactor | None) -> dict[str, Any]:  # fmt: skip
    figures: dict[str, Any] = {"steps": []}
    written, writes = 0, []
    tag = "AUTO" if compactor is not None else "LOOSE"
    for target in [int(s) for s in args.steps.split(",")]:
        while written < target:
            row = template.to_pylist()[0]
            row["record_id"] = f"BENCH-{tag}-{rng.getrandbits(40):010x}-{written:06d}"
            row["uscc"] = rng.choice(codes)
            row["recorded_date"] = DAY
            row["event_date"] = DAY
            t0 = time.perf_counter()
            ingest_table(store, pa.Table.from_pylist([row], schema=template.schema), "records",
                         "samr", today=DAY)  # fmt: skip
            writes.append((time.perf_counter() - t0) * 1000)
            written += 1
        if compactor is not None:  # let a compaction the last write started finish
            deadline = time.monotonic() + 60
            while compactor.due() and time.monotonic() < deadline:
                time.sleep(0.1)
        page = read_page(store, sample)
        shape = layout(store.log(), "records")
        step = {"loose_files": shape["unsorted_files"], **page,
                "ratio_to_compacted": round(page["median_ms"] / base["median_ms"], 1),
                "write_ms_median": round(statistics.median(writes), 1),
                "write_ms_p99": round(sorted(writes)[int(len(writes) * 0.99)], 1),
                "sorted_runs": shape["sorted_runs"],
                "auto_compactions": compactor.compactions if compactor else 0}  # fmt: skip
        figures["steps"].append(step)
        say(f"{shape['unsorted_files']:,} loose files: records page median {page['median_ms']} ms "
            f"({step['ratio_to_compacted']}x), p99 {page['p99_ms']} ms; one write "
            f"{step['write_ms_median']} ms (median), p99 {step['write_ms_p99']} ms; "
            f"{shape['sorted_runs']} sorted runs")  # fmt: skip
    t0 = time.perf_counter()
    done = store.compact(["records"])
    seconds = time.perf_counter() - t0
    after = read_page(store, sample)
    figures["after_compact"] = {**after, "compact_seconds": round(seconds, 2),
                                "merged": done["tables"]["records"].get("merged")}  # fmt: skip
    say(f"compact ({done['tables']['records'].get('merged')}) {seconds:.1f} s: records page "
        f"median {after['median_ms']} ms, p99 {after['p99_ms']} ms")  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
