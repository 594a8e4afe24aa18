"""Where a repository's units of work run: on the async engine, or on threads with sync SQLite connections.

A unit of work is a plain function of a sync SQLAlchemy `Connection`, so a repository writes its SQL
once and a `Runner` decides where it runs:

- `AsyncRunner` (PostgreSQL, in-memory SQLite): `AsyncConnection.run_sync` on the app's async engine.
- `SQLiteThreads` (an SQLite file): sync `sqlite3` connections, each confined to one thread: one
  writer thread, so the process's writes queue in order instead of sleeping in SQLite's busy handler,
  and a few reader threads, so a slow search never holds up the next write. A unit costs one hop to a
  thread and back (a few tens of µs) instead of the several thread hops per statement that SQLAlchemy's
  asyncio layer and aiosqlite add (0.75 ms for one UPDATE and its commit, measured; bench/README.md).

`write` runs its unit in one transaction, committed when it returns and rolled back if it raises; on
SQLite it starts with `BEGIN IMMEDIATE`, so what the unit reads before it writes is still true when it
commits. Other connections to the same file (the async engine's, another process's) are ordinary
concurrent writers: WAL and the same busy_timeout as the async engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from mmstudio.storage.db import SQLITE_CONNECT_ARGS, sqlite_pragmas

T = TypeVar("T")
Work = Callable[[Connection], T]

READERS = 2  # reads run alongside the writer; SQLite's WAL lets them, and sqlite3 releases the GIL


class Runner(Protocol):
    """Runs units of work for repositories; `dialect` is "sqlite" or "postgresql"."""

    dialect: str

    async def read(self, work: Work[T]) -> T:
        """Run `work` outside any write transaction (it must not write)."""
        ...

    async def write(self, work: Work[T]) -> T:
        """Run `work` in one transaction: committed when it returns, rolled back if it raises."""
        ...

    async def close(self) -> None:
        """Stop accepting work and release what the runner opened (not the app's engine)."""
        ...


class AsyncRunner:
    """Units of work on the app's async engine, through `run_sync` (one greenlet switch per statement)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def read(self, work: Work[T]) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def write(self, work: Work[T]) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def close(self) -> None:
        pass  # the engine is its owner's to dispose


class SQLiteThreads:
    """Units of work on sync connections to one SQLite file: one writer thread, `readers` reader
    threads, each with a connection of its own that no other thread touches."""

    dialect = "sqlite"

    def __init__(self, url: str, *, readers: int = READERS) -> None:
        # NullPool: each thread opens its connection on first use and keeps it until close().
        self.engine: Engine = create_engine(
            make_url(url).set(drivername="sqlite"), poolclass=NullPool, connect_args=dict(SQLITE_CONNECT_ARGS)
        )
        event.listen(self.engine, "connect", sqlite_pragmas)
        self._writer = _Threads(self.engine, _write, "mmstudio-sqlite-write", 1)
        self._readers = _Threads(self.engine, _read, "mmstudio-sqlite-read", readers)

    async def read(self, work: Work[T]) -> T:
        return await self._readers.run(work)

    async def write(self, work: Work[T]) -> T:
        return await self._writer.run(work)

    async def close(self) -> None:
        """Work already handed in still runs (an answer's final write, say); then the threads end."""
        await asyncio.gather(self._writer.close(), self._readers.close())
        self.engine.dispose()


def _read(conn: Connection, work: Work[T]) -> T:
    try:
        return work(conn)
    finally:
        conn.rollback()  # ends SQLAlchemy's implicit transaction; sqlite3 began none for SELECTs


def _write(conn: Connection, work: Work[T]) -> T:
    with conn.begin():
        # sqlite3 would BEGIN (deferred) only at the first INSERT/UPDATE/DELETE, after the unit's
        # checks had read outside the transaction. IMMEDIATE takes the write lock now (waiting out
        # other writers through busy_timeout), so the checks hold until the commit. Sent to the
        # driver directly: SQLAlchemy's statement machinery costs more than the BEGIN itself.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE")
        return work(conn)


class _Threads:
    """Threads taking units of work from one queue, each on its own connection; the awaiting coroutine
    gets the result or the exception. A unit handed in always runs, even if its caller is cancelled
    meanwhile (as a statement already sent to a server would). Leaner than `run_in_executor` (20-35 µs
    less per unit, measured: no concurrent.futures Future to chain), which counts at eight per send."""

    def __init__(self, engine: Engine, run: Callable[[Connection, Work[Any]], Any], name: str, count: int):
        self._engine = engine
        self._run = run
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True) for n in range(count)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    async def run(self, work: Work[T]) -> T:
        if self._closed:
            raise RuntimeError("the database runner is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, work))
        return await future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)  # after the work already queued
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _serve(self) -> None:
        conn: Connection | None = None
        try:
            while (item := self._queue.get()) is not None:
                loop, future, work = item
                try:
                    if conn is None or conn.invalidated:
                        if conn is not None:
                            conn.close()
                        conn = self._engine.connect()
                    outcome: tuple[Any, BaseException | None] = (self._run(conn, work), None)
                except BaseException as exc:  # the caller's to handle, whatever it is
                    outcome = (None, exc)
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                    loop.call_soon_threadsafe(_settle, future, *outcome)
        finally:
            if conn is not None:
                conn.close()


_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Work[Any]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the unit ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def open_runner(engine: AsyncEngine) -> Runner:
    """`SQLiteThreads` for an SQLite file; the async engine itself for PostgreSQL and in-memory SQLite
    (a second connection to `:memory:` would be another, empty database)."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return SQLiteThreads(url.render_as_string(hide_password=False))
    return AsyncRunner(engine)
