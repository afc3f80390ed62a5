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
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

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
