"""A small simulated province run through the batch pipeline, for the serving tests.

`build_province` runs `credsup simulate → compact → score → train → promote → tier` in-process
(CliRunner) with the environment pointing at its own data directory only (no DATABASE_URL, no
MLFLOW_TRACKING_URI of the caller's), so the results, the MLflow store and the serving database
all live under that directory.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app

AS_OF = date(2026, 6, 30)
COMPANIES = 3000
YEARS = 3
SEED = 7

runner = CliRunner()


def env_for(data_dir: Path) -> dict[str, str | None]:
    """The settings environment of a run against `data_dir` (None: unset while it runs)."""
    return {
        "CREDSUP_DATA_DIR": str(data_dir),
        "DATABASE_URL": None,
        "CREDSUP_DATABASE_URL": None,
        "MLFLOW_TRACKING_URI": None,
        "CREDSUP_MODEL_RELOAD_SECONDS": None,
    }


def credsup(data_dir: Path, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
    """Run a `credsup` command with `--json` and return its parsed output."""
    result = runner.invoke(app, [*args, "--json"], env=env_for(data_dir))
    assert result.exit_code in ok, (
        f"credsup {' '.join(args)} exited {result.exit_code}:\n{result.stdout}\n{result.stderr}"
        f"\n{result.exception!r}"
    )
    return json.loads(result.stdout)


def build_province(data_dir: Path, *older: date) -> dict[str, Any]:
    """Simulate, ingest, compact, score, train, promote and tier as of `AS_OF` (and score and
    tier as of each `older` date with the same model); returns what the commands reported."""
    sim = credsup(
        data_dir, "simulate", "--companies", str(COMPANIES), "--years", str(YEARS),
        "--seed", str(SEED), "--out", str(data_dir / "sim"), "--ingest",
    )  # fmt: skip
    # sorted by company, as `make run` leaves it: the serving tests read a compacted store, and
    # whatever they write lands beside it unsorted (both kinds of file read at once)
    compacted = credsup(data_dir, "compact")
    assert compacted["batch"] is not None, compacted
    trained = credsup(data_dir, "train", "--no-plots")
    promoted = credsup(data_dir, "promote", "latest")
    assert promoted["promoted"], promoted
    tiers = {}
    for day in (AS_OF, *older):
        credsup(data_dir, "score", "--as-of", day.isoformat())
        tiers[day] = credsup(data_dir, "tier", "--as-of", day.isoformat())
    return {"simulate": sim, "train": trained, "tiers": tiers}
