"""A company's records page and public page, read from the record store, before and after
`credsup compact` (issue: records; the store's layout).

Both pages read the store for one company (its records, their events, its registration). In
ingestion order the Parquet files' statistics prune nothing, so every read scans every file;
sorted by company (`credsup compact`), a read touches the row group that holds the company.

1. A simulated province (`--companies`, default 200,000, 4 years, ingested; reused from
   `--workdir` when there), copied once and compacted (`credsup compact`, timed).
2. In the process: what the records page reads from the store (`records_on` and
   `registered_entity`) for `--sample` companies, three ways: the code before compaction and
   the shared database (a new DuckDB database per read, ingestion-order files: the baseline),
   a shared database on ingestion-order files, and a shared database on compacted files.
   Median and p99 milliseconds per page.
3. Over HTTP: `credsup serve` (uvicorn, one worker, SQLite) on each copy; `GET
   /v1/companies/{uscc}/records` and `GET /v1/public/companies/{uscc}` with a regulator key at
   `--concurrency` clients (the load client of benchmarks/api.py), `--repeats` runs of
   `--seconds`; medians of the per-run figures.

    .venv/bin/python benchmarks/records_page.py --workdir /tmp/bench-records      # ~5 min
    .venv/bin/python benchmarks/records_page.py --companies 20000 --seconds 3 --repeats 2
    .venv/bin/python benchmarks/records_page.py --json > benchmarks/results-records-page.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# as in benchmarks/api.py: this folder off the path (benchmarks/features.py would shadow the
# package), the repository's root on it (the load client comes from benchmarks/api.py)
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import duckdb  # noqa: E402
import httpx  # noqa: E402

from benchmarks.api import VENV_BIN, Request, measure, start_server  # noqa: E402
from records.publicity import records_on  # noqa: E402
from records.store import Store  # noqa: E402
from serving.lookup import registered_entity  # noqa: E402

Say = Callable[[str], None]
DAY = date(2026, 11, 30)


class PerReadStore(Store):
    """The store as read before compaction existed: a new DuckDB database for every read."""

    def connect(self) -> duckdb.DuckDBPyConnection:
        return self._open()


def credsup(data_dir: Path, *argv: str) -> str:
    env = {**os.environ, "CREDSUP_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    run = subprocess.run([str(VENV_BIN / "credsup"), *argv], env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"credsup {' '.join(argv)} failed:\n{run.stdout}\n{run.stderr}")
    return run.stdout


def prepare(work: Path, companies: int, seed: int, say: Say) -> dict[str, Any]:
    """The ingestion-order data directory and its compacted copy (reused when there)."""
    marker = work / "records-page.json"
    wanted = {"companies": companies, "seed": seed}
    if marker.exists():
        done: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("wanted") == wanted:
            say(f"{work}: reusing the simulated province and its compacted copy")
            return done
    shutil.rmtree(work / "unsorted", ignore_errors=True)
    shutil.rmtree(work / "sorted", ignore_errors=True)
    started = time.perf_counter()
    credsup(work / "unsorted", "simulate", "--companies", str(companies), "--years", "4",
            "--seed", str(seed), "--out", str(work / "unsorted" / "sim"), "--ingest")  # fmt: skip
    simulate_s = time.perf_counter() - started
    shutil.copytree(work / "unsorted", work / "sorted")
    started = time.perf_counter()
    compacted = json.loads(credsup(work / "sorted", "compact", "--json"))
    compact_s = time.perf_counter() - started
    rows = compacted["tables"]["records"]["rows"]
    say(f"simulated and ingested {companies:,} companies in {simulate_s:.1f} s; compacted "
        f"{rows:,} records in {compact_s:.1f} s ({compacted['seconds']} s in the store, "
        f"{rows / compacted['seconds']:,.0f} rows/s)")  # fmt: skip
    done = {"wanted": wanted, "records": rows, "compact_seconds": compacted["seconds"],
            "compact_command_seconds": round(compact_s, 2), "compaction": compacted}  # fmt: skip
    marker.write_text(json.dumps(done), encoding="utf-8")
    return done


def sample_codes(store: Store, n: int, seed: int) -> list[str]:
    with store.connect() as con:
        codes = sorted(c for (c,) in con.execute("SELECT DISTINCT uscc FROM records").fetchall())
    return random.Random(seed).sample(codes, min(n, len(codes)))


def in_process(work: Path, codes: list[str], say: Say) -> dict[str, Any]:
    ways = {
        "new database per read, ingestion order (before)": PerReadStore(
            work / "unsorted" / "store"
        ),
        "shared database, ingestion order": Store(work / "unsorted" / "store"),
        "shared database, compacted": Store(work / "sorted" / "store"),
    }
    out: dict[str, Any] = {}
    pages: dict[str, list[Any]] = {}
    for label, store in ways.items():
        records_on(store, codes[0], DAY)  # the shared database opened, footers read
        times, got = [], []
        for code in codes:
            t0 = time.perf_counter()
            entity = registered_entity(store, code, DAY)
            rows = records_on(store, code, DAY)
            times.append(time.perf_counter() - t0)
            got.append((entity, rows))
        pages[label] = got
        ms = sorted(t * 1e3 for t in times)
        out[label] = {
            "median_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
            "pages": len(ms),
        }
        say(f"  {label}: median {out[label]['median_ms']} ms, p99 {out[label]['p99_ms']} ms "
            f"({len(ms)} companies)")  # fmt: skip
    first = next(iter(pages.values()))
    out["same_pages"] = all(p == first for p in pages.values())
    if not out["same_pages"]:
        say("  ! the three ways read different pages")
    return out


def over_http(work: Path, codes: list[str], args: argparse.Namespace, say: Say) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layout in ("unsorted", "sorted"):
        data_dir = work / layout
        keys = json.loads(credsup(data_dir, "keys", "demo", "--json"))
        env = {**os.environ, "CREDSUP_DATA_DIR": str(data_dir)}
        env.pop("DATABASE_URL", None)
        server = start_server([str(VENV_BIN / "credsup"), "serve", "--port", "{port}"], env,
                              "/healthz", work / f"serve-{layout}.log")  # fmt: skip
        try:
            headers = {"X-API-Key": keys["regulator"], "X-Purpose": "benchmark"}
            for page, template in (("records", "/v1/companies/{}/records"),
                                   ("public", "/v1/public/companies/{}")):  # fmt: skip
                paths = [template.format(c) for c in codes]
                probe = httpx.get(f"http://127.0.0.1:{server.port}{paths[0]}", headers=headers,
                                  timeout=60)  # fmt: skip
                if probe.status_code != 200:
                    raise RuntimeError(f"{paths[0]} answered {probe.status_code}: {probe.text}")
                pick = random.Random(args.seed)

                def next_request(
                    paths: list[str] = paths,
                    pick: random.Random = pick,
                    headers: dict[str, str] = headers,
                ) -> Request:
                    return Request("GET", paths[pick.randrange(len(paths))], headers)

                out[f"{page} page, {layout}"] = measure(f"{page} page, {layout}", server,
                                                        next_request, args, say)  # fmt: skip
        finally:
            server.stop()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--sample", type=int, default=200, help="companies read in the process")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured HTTP run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="kept and reused")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.client = "raw"

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-records-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"companies": args.companies, "day": DAY.isoformat()}
    result["data"] = prepare(work, args.companies, args.seed, say)
    codes = sample_codes(Store(work / "unsorted" / "store"), args.sample, args.seed)
    say(f"what the records page reads from the store, {len(codes)} companies:")
    result["in_process"] = in_process(work, codes, say)
    base = result["in_process"]["new database per read, ingestion order (before)"]["median_ms"]
    now = result["in_process"]["shared database, compacted"]["median_ms"]
    result["in_process"]["ratio_before_to_compacted"] = round(base / now, 1)
    say(f"  compacted and shared: {base / now:.1f}x faster than before")
    if not args.no_http:
        say(f"over HTTP, {args.concurrency} clients, {args.repeats} x {args.seconds} s:")
        http = over_http(work, codes, args, say)
        result["http"] = http
        for page in ("records", "public"):
            a = http[f"{page} page, unsorted"]
            b = http[f"{page} page, sorted"]
            ratio = b["requests_per_s_median"] / a["requests_per_s_median"]
            result["http"][f"{page}_ratio"] = round(ratio, 1)
            say(f"  {page} page: {a['requests_per_s_median']:,.1f} -> "
                f"{b['requests_per_s_median']:,.1f} req/s ({ratio:.1f}x), p99 {a['p99_ms_median']}"
                f" -> {b['p99_ms_median']} ms")  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
