"""Single-company look-ups, the hot path of the API.

SQLite answers a primary-key read in microseconds, so the look-up runs on the event loop. On
PostgreSQL a synchronous read would block the loop for several network round trips (begin,
pre-ping, query, rollback), so look-ups go through a small pool of psycopg async connections in
autocommit mode (measured: 877 → 2,614 requests/s at 32 clients on 1 M companies).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from serving.db import companies

_SQL = {
    True: "SELECT full_doc FROM companies WHERE uscc = %s",
    False: "SELECT public_doc FROM companies WHERE uscc = %s",
}
FULL_DOC = sa.select(companies.c.full_doc).where(companies.c.uscc == sa.bindparam("u"))
PUBLIC_DOC = sa.select(companies.c.public_doc).where(companies.c.uscc == sa.bindparam("u"))


class Lookup:
    def __init__(self, engine: Engine, url: str, size: int = 8) -> None:
        self.engine = engine
        self.url = url
        self.size = size
        self._pool: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None

    @property
    def asynchronous(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conninfo = make_url(self.url).set(drivername="postgresql")
        return await psycopg.AsyncConnection.connect(
            conninfo.render_as_string(hide_password=False), autocommit=True
        )

    async def open(self) -> None:
        if not self.asynchronous:
            return
        self._pool = asyncio.Queue()
        for _ in range(self.size):
            self._pool.put_nowait(await self._connect())

    async def close(self) -> None:
        if self._pool is None:
            return
        while not self._pool.empty():
            await self._pool.get_nowait().close()

    async def company(self, uscc: str, full: bool) -> str | None:
        if self._pool is None:
            with self.engine.connect() as db:
                doc = db.execute(FULL_DOC if full else PUBLIC_DOC, {"u": uscc}).scalar()
            return None if doc is None else str(doc)
        con = await self._pool.get()
        try:
            for attempt in (1, 2):
                try:
                    cursor = await con.execute(_SQL[full], (uscc,))
                    row = await cursor.fetchone()
                    break
                except psycopg.OperationalError:
                    if attempt == 2 or not (con.broken or con.closed):
                        raise  # a statement refused (a timeout) on a healthy connection
                    # the server ended the connection (a restart, a failover, a terminated
                    # backend): it is replaced and the read tried once more on the new one, so
                    # a database that is back costs no request (each pooled connection fails
                    # once); if it cannot be reached, the read fails (503)
                    with contextlib.suppress(Exception):
                        await con.close()
                    con = await self._connect()
        finally:
            self._pool.put_nowait(con)
        return None if row is None else str(row[0])
