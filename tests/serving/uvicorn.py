"""`credsup serve` as a real uvicorn process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    data_dir: Path, log: Path, extra_env: dict[str, str] | None = None, *args: str
) -> tuple[subprocess.Popen[bytes], str] | None:
    """`credsup serve` on a free port; None if it exited before answering (port taken)."""
    port = free_port()
    # no CREDSUP_* setting of the caller's leaks in, except those tests/conftest.py sets
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CREDSUP_") or k == "CREDSUP_CALLER_SEEDS"}  # fmt: skip
    for name in ("DATABASE_URL", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    env["CREDSUP_DATA_DIR"] = str(data_dir)
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", "from cli.main import app; app()", "serve",
               "--host", "127.0.0.1", "--port", str(port), *args]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=data_dir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2, trust_env=False).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # poll again (bounded by the deadline)
    stop_server(process)
    pytest.fail(f"the service did not answer /healthz within {STARTUP_SECONDS} s:\n"
                f"{log.read_text(errors='replace')[-4000:]}")  # fmt: skip


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@contextmanager
def running_server(
    data_dir: Path, log: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """A served API for the block (its base URL); stopped at the end."""
    started = None
    for _ in range(3):  # another process may take the port between our probe and uvicorn's bind
        started = start_server(data_dir, log, extra_env)
        if started is not None:
            break
    if started is None:
        pytest.fail(f"the service did not start:\n{log.read_text(errors='replace')[-4000:]}")
    process, base_url = started
    try:
        yield base_url
    finally:
        stop_server(process)
