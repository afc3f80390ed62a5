"""Fixtures of the serving tests: fresh PostgreSQL databases and a small simulated province."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.serving.databases import OLDER, POSTGRES_URL
from tests.serving.pipeline import build_province


@pytest.fixture(scope="session")
def postgres() -> Iterator[Callable[[], str]]:
    """A factory of fresh PostgreSQL databases, all dropped when the session ends."""
    admin = sa.create_engine(
        POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with admin.connect() as con:
            con.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        where = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        message = (
            f"PostgreSQL is not reachable at {where} ({' '.join(str(exc.orig).split())}); the "
            "PostgreSQL storage tests need it (set CREDSUP_TEST_POSTGRES_URL to use another)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true: a missing PostgreSQL is a failure", pytrace=False)
        pytest.skip(message)
    created: list[str] = []

    def new_database() -> str:
        name = f"credsup_test_{secrets.token_hex(6)}"
        with admin.connect() as con:
            con.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield new_database
    finally:
        with admin.connect() as con:
            for name in created:
                con.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results as of `OLDER` and `AS_OF`, and a champion model, in a data directory.

    Tests only read it (copy it to write), so it is built once per run: under xdist, the first
    worker builds it in the run's shared temporary directory while the others wait on a lock.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the same for every worker of this run
    data_dir = root / "storage-province"
    with (root / "storage-province.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (data_dir / "complete").exists():
                shutil.rmtree(data_dir, ignore_errors=True)
                data_dir.mkdir()
                build_province(data_dir, OLDER)
                (data_dir / "complete").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return data_dir
