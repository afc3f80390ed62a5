"""Shared fixtures: a fresh store per test, and the real data sets of ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from records.store import Store

REPO = Path(__file__).resolve().parents[1]

# The tests draw plans with chosen seeds through the API and the command line, to replay and
# compare them; a deployment refuses them by default (`Settings.caller_seeds`), which
# tests/serving/test_spotcheck_package.py tests with the setting as it ships. Every process the
# tests start inherits it.
os.environ["CREDSUP_CALLER_SEEDS"] = "allow"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", memory_limit="2GB", threads=2)


def shared_data_dir() -> Path:
    return Path(os.environ.get("CREDSUP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(
            f"real data sets not found at {path} (expected ../shared/data beside the checkout, "
            "or set CREDSUP_SHARED_DATA)"
        )
    return path
