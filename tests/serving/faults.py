"""Injected database failures for the two-store tests (the SQL database and the record store):
a failing commit, and a failing step of the lifecycle log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from serving import lifecycle


@contextmanager
def failing_commit(engine: sa.Engine) -> Iterator[None]:
    """Every database commit fails (after the record store took its writes) while inside."""

    def fail(con: sa.Connection) -> None:
        raise RuntimeError("injected: the database commit fails")

    sa.event.listen(engine, "commit", fail)
    try:
        yield
    finally:
        sa.event.remove(engine, "commit", fail)


def failing_log(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """Logging this step fails (a database error once the case's row is written)."""
    real = lifecycle.log

    def log(con: sa.Connection, case_type: str, *args: Any) -> None:
        if args[2] == action:
            raise RuntimeError(f"injected: the database fails while logging {action}")
        real(con, case_type, *args)

    monkeypatch.setattr(lifecycle, "log", log)
