"""The two serving databases of the tests: SQLite (a file) and PostgreSQL (a fresh database).

PostgreSQL is expected at 127.0.0.1:5432 (trust auth, user postgres, database `test`, or
`CREDSUP_TEST_POSTGRES_URL`); each test session works in databases of its own
(`credsup_test_<random>`, created through `test` and dropped at the end by the `postgres`
fixture of tests/serving/conftest.py). Without a reachable server those tests skip, except under
`CI=true`, where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from records.store import Store

OLDER = date(2025, 12, 31)
POSTGRES_URL = os.environ.get(
    "CREDSUP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


def fresh_url(backend: str, request: pytest.FixtureRequest, folder: Path) -> str:
    """The URL of an empty database of this backend."""
    if backend == "sqlite":
        return f"sqlite:///{folder / f'serving-{secrets.token_hex(4)}.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres")
    return factory()


@dataclass
class Loaded:
    """A writable copy of the province loaded as of `AS_OF` into a fresh database."""

    url: str
    engine: Engine
    store: Store
    data_dir: Path


@contextmanager
def loaded_copy(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    province: Path,
    name: str,
) -> Iterator[Loaded]:
    """Copy the shared province (tests write records and events), migrate a fresh database of
    the backend and load the results as of `AS_OF`; the engine is disposed at the end."""
    from serving.db import make_engine, upgrade
    from serving.load import load_results
    from tests.serving.pipeline import AS_OF

    data_dir = tmp_path_factory.mktemp(f"{name}-{backend}")
    shutil.copytree(province, data_dir, dirs_exist_ok=True)
    url = fresh_url(backend, request, data_dir)
    upgrade(url)
    engine = make_engine(url)
    store = Store(data_dir / "store", memory_limit="1GB", threads=2)
    load_results(engine, store, data_dir, AS_OF)
    try:
        yield Loaded(url, engine, store, data_dir)
    finally:
        engine.dispose()
