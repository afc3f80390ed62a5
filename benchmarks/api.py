"""Tier API look-ups under load (issue: serving).

Goal on 2 cores: single-company look-ups (`GET /v1/companies/{uscc}`, regulator key, audited)
with 1 M companies loaded, at 32 concurrent clients, at least 2,000 requests/s with p99 under
25 ms, on SQLite and on PostgreSQL. The baseline is what one would run first:
`mlflow models serve` of the same registered model, answering a one-company prediction
(`POST /invocations` with that company's feature row), at the same concurrency.

Everything runs on the loopback interface and is bounded in time (defaults: well under 15 min):

1. A real data directory under `--workdir` (reused when already there): `credsup simulate`
   (`--seed-companies`, 3 years, ingested), `score`, `train --no-plots`, `promote latest`, `tier`
   and `load`, so the model, the champion alias and `--seed-companies` real serving documents
   exist.
2. 1 M `companies` rows: the real rows plus copies of their documents under new, distinct,
   valid codes (`records.uscc.generate_many`, same kind and region as the row copied), written
   by bulk insert into freshly migrated databases (`serving.db.upgrade`): SQLite with
   `executemany` in one transaction, PostgreSQL with COPY (then ANALYZE). Running the whole
   pipeline on a 1 M-company province would take far longer than the look-ups being measured;
   the documents are the same size and shape either way.
3. For each database, `credsup serve --port N` (uvicorn, `--workers`, default one) in a
   subprocess, a regulator key, a warm-up, then `--repeats` runs of `--seconds` each. The load
   generator is a small asyncio client in this process (uvloop, raw HTTP/1.1 with keep-alive,
   one connection per client, garbage collection frozen during runs), so that it does not take
   the CPU the server needs: about 0.05 ms of CPU per request, where httpx.AsyncClient
   (`--client httpx`) takes about 2.5 ms and saturates a core at ~400 requests/s. Latencies
   are measured by the client; CPU (client, server process group, PostgreSQL, everything else;
   100 % = one core) comes from /proc, so a run disturbed by other work shows it. When the
   server has stopped, the audit log must hold one row per look-up answered.
4. The baseline the same way, with as many uvicorn workers as ours.

Figures are medians over the repeats (p50 and p99 are computed per run, then the median taken).
With `--workers 2` uvicorn's workers share one listening socket and the 32 keep-alive connections
all land on one of them, so it measures the same as one worker.

    .venv/bin/python benchmarks/api.py                                    # full run (~4 min)
    .venv/bin/python benchmarks/api.py --companies 100000 --seconds 5 --repeats 2
    .venv/bin/python benchmarks/api.py --databases sqlite --no-baseline --workdir var/bench-api
    .venv/bin/python benchmarks/api.py --json > benchmarks/results-api.json
    .venv/bin/python benchmarks/api.py --role department --department ecology   # a department
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

# Run as `python benchmarks/api.py`, this file's folder comes first on sys.path and
# benchmarks/features.py would shadow the `features` package: drop the folder (`-m benchmarks.api`
# needs nothing).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import uvloop  # noqa: E402

from features.builder import build_features, spec_version  # noqa: E402
from records import uscc as codes  # noqa: E402
from records.store import Store  # noqa: E402
from serving.auth import create_key  # noqa: E402
from serving.db import audit_log, make_engine, upgrade  # noqa: E402

GOAL_RPS = 2_000.0
GOAL_P99_MS = 25.0
AS_OF = date(2026, 6, 30)
"""Last simulated day: the as-of date of the evaluation and tiers loaded."""
VENV_BIN = Path(sys.executable).parent
COLUMNS = ("uscc", "region", "industry", "entity_type", "as_of", "tier", "grade", "full_doc",
           "public_doc")  # fmt: skip
CHUNK = 50_000

Say = Callable[..., None]
Row = tuple[str, ...]


# ---- the data directory: the real pipeline on a small province --------------------------------


def prepare_data_dir(data_dir: Path, companies: int, seed: int, say: Say) -> dict[str, Any]:
    """Run the pipeline once (skipped when `data_dir` already holds its result)."""
    marker = data_dir / "bench-api-pipeline.json"
    wanted = {
        "companies": companies, "seed": seed, "as_of": AS_OF.isoformat(),
        "spec_version": spec_version(),  # a model of another spec would not load
    }  # fmt: skip
    if marker.exists():
        done: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("wanted") == wanted:
            say(f"data directory {data_dir}: reusing the pipeline's results")
            return done
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = {**os.environ, "CREDSUP_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    day = AS_OF.isoformat()
    steps = [
        ["simulate", "--companies", str(companies), "--years", "3", "--seed", str(seed),
         "--out", str(data_dir / "sim"), "--ingest"],
        ["score", "--as-of", day],
        ["train", "--no-plots"],
        ["promote", "latest"],
        ["tier", "--as-of", day],
        ["load", "--as-of", day],
    ]  # fmt: skip
    seconds: dict[str, float] = {}
    for step in steps:
        started = time.perf_counter()
        run = subprocess.run(
            [str(VENV_BIN / "credsup"), *step], env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if run.returncode != 0:
            raise RuntimeError(f"credsup {' '.join(step)} failed:\n{run.stdout}\n{run.stderr}")
        seconds[step[0]] = round(time.perf_counter() - started, 1)
        say(f"  credsup {' '.join(step)}: {seconds[step[0]]} s")
    done = {"wanted": wanted, "seconds": seconds}
    marker.write_text(json.dumps(done), encoding="utf-8")
    return done


def source_rows(data_dir: Path) -> list[Row]:
    """The serving rows `credsup load` wrote (SQLite in the data directory)."""
    with contextlib.closing(sqlite3.connect(data_dir / "serving.db")) as con:
        rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM companies ORDER BY uscc").fetchall()
    return [tuple(r) for r in rows]


def model_version(data_dir: Path) -> str:
    """The champion's version number (the same model that tiered the loaded companies)."""
    from models.published import CHAMPION, MODEL_NAME, PublishedModels

    found = PublishedModels(data_dir).client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    return str(found.version)


# ---- 1 M rows: the real documents under new codes ---------------------------------------------


@dataclass
class Population:
    source: list[Row]
    codes: list[str]
    """All codes, sorted (the real ones included)."""
    origin: np.ndarray
    """For each code, the index of the source row whose documents it carries."""

    def rows(self) -> Iterator[list[Row]]:
        """Chunks of rows in code order: documents copied with the code replaced."""
        for start in range(0, len(self.codes), CHUNK):
            chunk: list[Row] = []
            for code, i in zip(
                self.codes[start : start + CHUNK], self.origin[start : start + CHUNK].tolist(),
                strict=True,
            ):  # fmt: skip
                row = self.source[i]
                if code == row[0]:
                    chunk.append(row)
                    continue
                old, new = f'"uscc": "{row[0]}"', f'"uscc": "{code}"'
                chunk.append((code, *row[1:7], row[7].replace(old, new, 1),
                              row[8].replace(old, new, 1)))  # fmt: skip
            yield chunk


def make_population(source: list[Row], total: int, seed: int) -> Population:
    real = [r[0] for r in source]
    extra = max(0, total - len(real))
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(source), size=extra)
    kinds = np.array([real[i][:2] for i in range(len(real))], dtype="S2")[pick]
    regions = np.array([real[i][2:8] for i in range(len(real))], dtype="S6")[pick]
    new = codes.generate_many(rng, kinds, regions)  # distinct among themselves
    real_set = set(real)
    taken = real_set | set(new)
    bad = [j for j, c in enumerate(new) if c in real_set]
    while bad:  # a copy drew a real company's code: draw again
        again = codes.generate_many(rng, kinds[bad], regions[bad])
        still = []
        for j, c in zip(bad, again, strict=True):
            if c in taken:
                still.append(j)
            else:
                new[j] = c
                taken.add(c)
        bad = still
    everything = real[:total] + new
    origin = np.concatenate([np.arange(min(total, len(real))), pick])
    order = np.argsort(np.array(everything, dtype="S18"), kind="stable")
    return Population(source, [everything[i] for i in order.tolist()], origin[order])


def load_sqlite(path: Path, population: Population) -> str:
    url = f"sqlite:///{path.resolve()}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    upgrade(url)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        marks = ", ".join("?" * len(COLUMNS))
        with con:
            for chunk in population.rows():
                con.executemany(
                    f"INSERT INTO companies ({', '.join(COLUMNS)}) VALUES ({marks})", chunk
                )
        con.execute("ANALYZE companies")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url


def _conninfo(url: str) -> str:
    return (
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def create_pg_database(admin_url: str, name: str) -> str:
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.execute(f'CREATE DATABASE "{name}"')
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin_url: str, name: str) -> None:
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_postgresql(url: str, population: Population) -> None:
    upgrade(url)
    with psycopg.connect(_conninfo(url)) as con:
        with con.cursor() as cur, cur.copy(
            f"COPY companies ({', '.join(COLUMNS)}) FROM STDIN"
        ) as copy:  # fmt: skip
            for chunk in population.rows():
                for row in chunk:
                    copy.write_row(row)
        con.commit()
        con.autocommit = True
        con.execute("VACUUM ANALYZE companies")


# ---- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        """SIGTERM to the process group we started (uvicorn shuts down gracefully, so the
        audit writer flushes); SIGKILL if it does not go."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_server(
    argv: list[str], env: dict[str, str], ready_path: str, log: Path, timeout: float = 120.0
) -> Server:
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            got = httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2)
            if got.status_code == 200:
                return server
            last = f"{got.status_code} {got.text[:1000]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(
        f"{argv[0]} not ready after {timeout} s (last answer: {last}): {log.read_text()[-3000:]}"
    )


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pgid: int) -> dict[int, tuple[bool, int]]:
    """For each live process of a process group or of PostgreSQL: (in the group, user + system
    CPU ticks), from /proc."""
    out: dict[int, tuple[bool, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                name, _, rest = f.read().partition(b" (")[2].rpartition(b")")
        except OSError:
            continue
        fields = rest.split()  # after the name: state, ppid, pgrp, …, utime (12th), stime
        in_group = int(fields[2]) == pgid
        if in_group or name == b"postgres":
            out[int(entry.name)] = (in_group, int(fields[11]) + int(fields[12]))
    return out


def cpu_seconds_between(
    before: dict[int, tuple[bool, int]], after: dict[int, tuple[bool, int]]
) -> tuple[float, float]:
    """CPU seconds of the group and of PostgreSQL between two `cpu_ticks` (processes that ended
    in between are missed, new ones count from zero)."""
    group = postgres = 0
    for pid, (in_group, ticks) in after.items():
        used = ticks - before.get(pid, (in_group, 0))[1]
        if in_group:
            group += used
        else:
            postgres += used
    return group / _TICK, postgres / _TICK


def machine_busy_seconds() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / _TICK


# ---- the load generator -----------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Run:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    machine_cpu: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1e3
        other = self.machine_cpu - self.client_cpu - self.server_cpu - self.postgres_cpu
        return {
            "requests_per_s": round(self.ok / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "max_ms": round(float(lat.max()), 2) if len(lat) else None,
            "ok": self.ok,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(self.seconds, 2),
            "server_cpu_ms_per_request": round(1e3 * self.server_cpu / max(1, self.ok), 3),
            "client_cpu_ms_per_request": round(1e3 * self.client_cpu / max(1, self.ok), 3),
            "client_cpu_pct": round(100 * self.client_cpu / self.seconds, 1),
            "server_cpu_pct": round(100 * self.server_cpu / self.seconds, 1),
            "postgres_cpu_pct": round(100 * self.postgres_cpu / self.seconds, 1),
            "machine_cpu_pct": round(100 * self.machine_cpu / self.seconds, 1),
            "other_cpu_pct": round(max(0.0, 100 * other / self.seconds), 1),
        }


Next = Callable[[], Request]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            raise RuntimeError("chunked responses are not supported by this client")
    if length is None:
        raise RuntimeError("response without content-length")
    return status, await reader.readexactly(length)


async def _raw_client(port: int, next_request: Next, deadline: float, run: Run) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host = f"Host: 127.0.0.1:{port}\r\n"
    clock = time.perf_counter
    try:
        while clock() < deadline:
            req = next_request()
            lines = [f"{req.method} {req.path} HTTP/1.1\r\n", host]
            lines += [f"{k}: {v}\r\n" for k, v in req.headers.items()]
            if req.body:
                lines.append(f"Content-Length: {len(req.body)}\r\n")
            lines.append("\r\n")
            data = "".join(lines).encode() + req.body
            started = clock()
            try:
                writer.write(data)
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                run.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            run.latencies.append(clock() - started)
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status == 200 and body:
                run.ok += 1
            else:
                run.errors += 1
    finally:
        writer.close()


async def _httpx_client(
    client: httpx.AsyncClient, next_request: Next, deadline: float, run: Run
) -> None:
    clock = time.perf_counter
    while clock() < deadline:
        req = next_request()
        started = clock()
        try:
            response = await client.request(
                req.method, req.path, headers=req.headers, content=req.body or None
            )
        except httpx.HTTPError:
            run.errors += 1
            continue
        run.latencies.append(clock() - started)
        status = response.status_code
        run.statuses[status] = run.statuses.get(status, 0) + 1
        if status == 200 and response.content:
            run.ok += 1
        else:
            run.errors += 1


async def _drive(
    kind: str, port: int, next_request: Next, concurrency: int, seconds: float, pgid: int
) -> Run:
    run = Run(seconds)
    client: httpx.AsyncClient | None = None
    if kind == "httpx":
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60,
            limits=httpx.Limits(max_connections=concurrency,
                                max_keepalive_connections=concurrency),
        )  # fmt: skip
    cpu0, ticks0, mach0 = time.process_time(), cpu_ticks(pgid), machine_busy_seconds()
    started = time.perf_counter()
    deadline = started + seconds
    tasks: list[Awaitable[None]] = [
        _httpx_client(client, next_request, deadline, run)
        if client is not None
        else _raw_client(port, next_request, deadline, run)
        for _ in range(concurrency)
    ]
    await asyncio.gather(*tasks)
    run.seconds = time.perf_counter() - started
    run.client_cpu = time.process_time() - cpu0
    run.server_cpu, run.postgres_cpu = cpu_seconds_between(ticks0, cpu_ticks(pgid))
    run.machine_cpu = machine_busy_seconds() - mach0
    if client is not None:
        await client.aclose()
    return run


def drive(
    kind: str, port: int, next_request: Next, concurrency: int, seconds: float, pgid: int
) -> Run:
    # this process holds millions of objects (codes, documents): a full collection in the middle
    # of a run would stall every client at once and show up as server latency
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_drive(kind, port, next_request, concurrency, seconds, pgid))
    finally:
        gc.enable()
        gc.unfreeze()


def measure(
    label: str, server: Server, next_request: Next, args: argparse.Namespace, say: Say
) -> dict[str, Any]:
    """Warm-up, then `repeats` runs; medians of the per-run figures."""
    pgid = server.proc.pid
    idle0, wall0 = machine_busy_seconds(), time.perf_counter()
    time.sleep(2.0)
    background = 100 * (machine_busy_seconds() - idle0) / (time.perf_counter() - wall0)
    if background > 20:
        say(f"  ! {label}: the machine is busy before the runs ({background:.0f} % CPU)")
    warm = drive(args.client, server.port, next_request, args.concurrency, args.warmup, pgid)
    runs = []
    for _ in range(args.repeats):
        runs.append(
            drive(args.client, server.port, next_request, args.concurrency, args.seconds, pgid)
        )
        s = runs[-1].summary()
        say(
            f"  {label}: {s['requests_per_s']:,.0f} req/s, p50 {s['p50_ms']} ms, p99 "
            f"{s['p99_ms']} ms, errors {s['errors']}; server CPU "
            f"{s['server_cpu_ms_per_request']:.2f} ms/request; CPU client {s['client_cpu_pct']} %, "
            f"server {s['server_cpu_pct']} %, postgres {s['postgres_cpu_pct']} %, "
            f"others {s['other_cpu_pct']} % (machine {s['machine_cpu_pct']} %)"
        )
    per_run = [r.summary() for r in runs]

    def med(key: str) -> float:
        return round(statistics.median(float(r[key]) for r in per_run), 3)

    return {
        "background_cpu_pct": round(background, 1),
        "requests_per_s_median": med("requests_per_s"),
        "p50_ms_median": med("p50_ms"),
        "p99_ms_median": med("p99_ms"),
        "errors": sum(r.errors for r in runs),
        "server_cpu_ms_per_request_median": med("server_cpu_ms_per_request"),
        "client_cpu_ms_per_request_median": med("client_cpu_ms_per_request"),
        "client_cpu_pct_median": med("client_cpu_pct"),
        "server_cpu_pct_median": med("server_cpu_pct"),
        "postgres_cpu_pct_median": med("postgres_cpu_pct"),
        "other_cpu_pct_median": med("other_cpu_pct"),
        "machine_cpu_pct_median": med("machine_cpu_pct"),
        "answered": warm.ok + sum(r.ok for r in runs),
        "runs": per_run,
    }


# ---- the two sides ----------------------------------------------------------------------------


def bench_database(
    kind: str, url: str, data_dir: Path, population: Population, args: argparse.Namespace,
    work: Path, say: Say,
) -> dict[str, Any]:  # fmt: skip
    engine = make_engine(url)
    department = args.department if args.role == "department" else None
    key = create_key(engine, args.role, department, "bench")
    env = {**os.environ, "CREDSUP_DATA_DIR": str(data_dir), "DATABASE_URL": url}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = start_server(
        [str(VENV_BIN / "credsup"), "serve", "--port", "{port}", "--workers", str(args.workers)],
        env, "/readyz", work / f"serve-{kind}.log",
    )  # fmt: skip
    try:
        headers = {"X-API-Key": key, "X-Purpose": "benchmark"}
        with engine.connect() as con:
            before = int(
                con.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
            )
        probe = random.Random(1).choice(population.codes)
        got = httpx.get(
            f"http://127.0.0.1:{server.port}/v1/companies/{probe}", headers=headers, timeout=10
        )  # fmt: skip
        if got.status_code != 200 or got.json()["uscc"] != probe:
            raise RuntimeError(f"look-up of {probe} answered {got.status_code}: {got.text[:300]}")
        pick = random.Random(args.seed)
        sample = pick.sample(population.codes, min(len(population.codes), 200_000))
        paths = [f"/v1/companies/{c}" for c in sample]
        n = len(paths)

        def next_request() -> Request:
            return Request("GET", paths[pick.randrange(n)], headers)

        result = measure(kind, server, next_request, args, say)
        result["answered"] += 1  # the probe
    finally:
        server.stop()
    with engine.connect() as con:
        audited = int(con.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one())
    engine.dispose()
    result["audit_rows"] = audited - before
    if result["audit_rows"] != result["answered"]:
        say(f"  ! {kind}: {result['answered']:,} look-ups answered but "
            f"{result['audit_rows']:,} audit rows written")  # fmt: skip
    return result


def feature_bodies(data_dir: Path, source: list[Row], n: int, seed: int) -> list[bytes]:
    """`dataframe_split` request bodies, one company's feature row each."""
    picked = random.Random(seed).sample([r[0] for r in source], min(n, len(source)))
    frame = build_features(Store(data_dir / "store"), AS_OF, picked).to_pandas()
    out = []
    for i in range(len(frame)):
        split = json.loads(frame.iloc[[i]].to_json(orient="split", date_format="iso", index=False))
        out.append(json.dumps({"dataframe_split": split}).encode())
    return out


def bench_mlflow(
    data_dir: Path, version: str, source: list[Row], args: argparse.Namespace, work: Path,
    say: Say,
) -> dict[str, Any]:  # fmt: skip
    from models.published import tracking_uri

    bodies = feature_bodies(data_dir, source, 500, args.seed)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(data_dir),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    server = start_server(
        [str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/credit-tier/{version}",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}", "-w", str(args.workers)],
        env, "/ping", work / "mlflow-serve.log",
    )  # fmt: skip
    try:
        # same model: the prediction for a company equals the probability it was served with
        first = json.loads(bodies[0])
        code = first["dataframe_split"]["data"][0][0]
        got = httpx.post(
            f"http://127.0.0.1:{server.port}/invocations", content=bodies[0], timeout=30,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        if got.status_code != 200:
            raise RuntimeError(f"mlflow answered {got.status_code}: {got.text[:300]}")
        predicted = got.json()["predictions"][0]
        served = json.loads(next(r[7] for r in source if r[0] == code))
        same = served["tier"] is not None and abs(
            served["tier"]["probability"] - predicted["probability"]
        ) < 1e-6  # fmt: skip
        pick = random.Random(args.seed)
        headers = {"Content-Type": "application/json"}
        n = len(bodies)

        def next_request() -> Request:
            return Request("POST", "/invocations", headers, bodies[pick.randrange(n)])

        result = measure("mlflow", server, next_request, args, say)
    finally:
        server.stop()
    result["same_probability_as_served"] = same
    result["body_bytes_median"] = int(statistics.median(len(b) for b in bodies))
    return result


# ---- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1_000_000)
    parser.add_argument("--seed-companies", type=int, default=20_000,
                        help="companies simulated and put through the real pipeline")  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (both servers)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a database to connect to while creating and dropping ours",
    )
    parser.add_argument("--pg-database", default="credsup_bench")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="kept, and its data directory reused (default: a temporary one)",
    )
    parser.add_argument(
        "--role",
        choices=("regulator", "department"),
        default="regulator",
        help="whose key looks up: a department's view withholds evidence per reason",
    )
    parser.add_argument("--department", default="ecology", help="with --role department")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if unknown := set(databases) - {"sqlite", "postgresql"}:
        parser.error(f"unknown databases: {', '.join(sorted(unknown))}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="credsup-bench-api-"))
    work.mkdir(parents=True, exist_ok=True)
    say: Say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    began = time.perf_counter()

    data_dir = (work / "data").resolve()
    say(f"pipeline on {args.seed_companies:,} simulated companies in {data_dir}")
    pipeline = prepare_data_dir(data_dir, args.seed_companies, args.seed, say)
    source = source_rows(data_dir)
    version = model_version(data_dir)
    started = time.perf_counter()
    population = make_population(source, args.companies, args.seed)
    build_seconds = time.perf_counter() - started
    doc_bytes = statistics.median(len(r[7].encode()) for r in source)
    say(
        f"{len(population.codes):,} companies: {len(source):,} real rows, the rest copies under "
        f"new codes ({build_seconds:.1f} s; full_doc median {doc_bytes:.0f} bytes)"
    )
    figures: dict[str, Any] = {
        "companies": len(population.codes),
        "real_rows": len(source),
        "seed_companies": args.seed_companies,
        "pipeline_seconds": pipeline["seconds"],
        "model_version": version,
        "full_doc_bytes_median": doc_bytes,
        "concurrency": args.concurrency,
        "role": args.role,
        "department": args.department if args.role == "department" else None,
        "workers": args.workers,
        "client": args.client,
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "cores": os.cpu_count(),
        "goal": {"requests_per_s": GOAL_RPS, "p99_ms": GOAL_P99_MS},
    }

    for kind in databases:
        started = time.perf_counter()
        if kind == "sqlite":
            url = load_sqlite(work / "bench-serving.db", population)
        else:
            url = create_pg_database(args.pg_url, args.pg_database)
            load_postgresql(url, population)
        load_seconds = time.perf_counter() - started
        say(f"{kind}: {len(population.codes):,} rows loaded in {load_seconds:.1f} s")
        try:
            result = bench_database(kind, url, data_dir, population, args, work, say)
        finally:
            if kind == "postgresql":
                drop_pg_database(args.pg_url, args.pg_database)
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{work / 'bench-serving.db'}{suffix}").unlink(missing_ok=True)
        result["load_seconds"] = round(load_seconds, 1)
        result["goal_met"] = (
            result["requests_per_s_median"] >= GOAL_RPS and result["p99_ms_median"] < GOAL_P99_MS
        )
        figures[kind] = result
        say(
            f"{kind}: median {result['requests_per_s_median']:,.0f} req/s, p50 "
            f"{result['p50_ms_median']} ms, p99 {result['p99_ms_median']} ms "
            f"(goal >= {GOAL_RPS:,.0f} req/s and p99 < {GOAL_P99_MS:.0f} ms: "
            f"{'met' if result['goal_met'] else 'NOT met'}); {result['errors']} errors; "
            f"{result['audit_rows']:,} audit rows for {result['answered']:,} look-ups"
        )

    if not args.no_baseline:
        base = bench_mlflow(data_dir, version, source, args, work, say)
        figures["mlflow"] = base
        say(
            f"baseline mlflow models serve (model version {version}): median "
            f"{base['requests_per_s_median']:,.0f} req/s, p50 {base['p50_ms_median']} ms, p99 "
            f"{base['p99_ms_median']} ms; same probability as served: "
            f"{base['same_probability_as_served']}"
        )
        for kind in databases:
            ours = figures[kind]
            ratio = ours["requests_per_s_median"] / base["requests_per_s_median"]
            p99 = base["p99_ms_median"] / ours["p99_ms_median"]
            figures[f"ratio_{kind}_vs_mlflow"] = round(ratio, 1)
            figures[f"p99_ratio_mlflow_over_{kind}"] = round(p99, 1)
            say(f"{kind}: {ratio:.1f}x the requests/s of mlflow models serve, p99 {p99:.1f}x lower")

    figures["total_seconds"] = round(time.perf_counter() - began, 1)
    say(f"total {figures['total_seconds']} s")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
