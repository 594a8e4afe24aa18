"""Units of work on SQLite's own threads: transactions, other writers to the same file, closing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from mmstudio.storage.db import create_engine, migrate
from mmstudio.storage.runner import AsyncRunner, SQLiteThreads, open_runner


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[SQLiteThreads]:
    runner = open_runner(engine)
    assert isinstance(runner, SQLiteThreads)
    yield runner
    await runner.close()


def count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one())


def bump(conn: Connection) -> int:
    conn.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
    return count(conn)


def runner_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mmstudio-sqlite")]


async def test_open_runner_uses_threads_only_for_an_sqlite_file(engine: AsyncEngine) -> None:
    memory = create_engine("sqlite:///:memory:")
    try:
        assert isinstance(open_runner(memory), AsyncRunner)  # another connection: another database
    finally:
        await memory.dispose()
    runner = open_runner(engine)
    try:
        assert isinstance(runner, SQLiteThreads) and runner.dialect == "sqlite"
    finally:
        await runner.close()


async def test_connections_get_the_same_pragmas_as_the_async_engine(db: SQLiteThreads) -> None:
    def pragmas(conn: Connection) -> tuple[Any, ...]:
        return tuple(
            conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        )

    expected = ("wal", 1, 1, 30000)  # synchronous 1 is NORMAL
    assert await db.read(pragmas) == expected
    assert await db.write(pragmas) == expected


async def test_a_write_commits_whole_or_not_at_all(db: SQLiteThreads, engine: AsyncEngine) -> None:
    assert await db.write(bump) == 1

    def bump_then_fail(conn: Connection) -> None:
        bump(conn)
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await db.write(bump_then_fail)
    assert await db.read(count) == 1
    async with engine.connect() as conn:  # committed for everyone else too
        assert (await conn.execute(text("SELECT n FROM counter"))).scalar_one() == 1


async def test_a_write_holds_the_write_lock_from_its_first_read(db: SQLiteThreads) -> None:
    # Read, pause, write back: without BEGIN IMMEDIATE, concurrent units could both read the same n.
    def read_then_write(conn: Connection) -> None:
        n = count(conn)
        time.sleep(0.002)
        conn.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})

    other = SQLiteThreads(str(db.engine.url))  # a second writer thread on its own connection
    try:
        await asyncio.gather(*(r.write(read_then_write) for _ in range(10) for r in (db, other)))
    finally:
        await other.close()
    assert await db.read(count) == 20


async def test_waits_out_another_connections_write_transaction(
    db: SQLiteThreads, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:  # aiosqlite holds the write lock ...
        await conn.execute(text("UPDATE counter SET n = 100 WHERE id = 1"))
        waiting = asyncio.create_task(db.write(bump))
        assert await db.read(count) == 0  # ... readers do not wait (WAL) and see the last commit
        await asyncio.sleep(0.2)
        assert not waiting.done()
    assert await waiting == 101  # busy_timeout: it waited for the commit, then wrote


async def test_async_and_threaded_writers_interleave_without_losing_updates(
    db: SQLiteThreads, engine: AsyncEngine
) -> None:
    async def async_bump() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))

    await asyncio.gather(*(f() for _ in range(25) for f in (async_bump, lambda: db.write(bump))))
    assert await db.read(count) == 50


async def test_a_slow_read_does_not_hold_up_writes(db: SQLiteThreads) -> None:
    release = threading.Event()

    def slow_read(conn: Connection) -> int:
        n = count(conn)
        release.wait(5)
        return n

    reading = asyncio.create_task(db.read(slow_read))
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(db.write(bump), 2) == 1
    release.set()
    assert await reading == 0


async def test_a_cancelled_caller_leaves_the_runner_working(db: SQLiteThreads) -> None:
    started, release = threading.Event(), threading.Event()

    def blocking(conn: Connection) -> int:
        started.set()
        release.wait(5)
        return bump(conn)

    task = asyncio.create_task(db.write(blocking))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await db.write(bump) == 2  # the unit it had begun still ran to its commit


async def test_close_finishes_queued_work_then_ends_its_threads(engine: AsyncEngine) -> None:
    before = runner_threads()
    db = SQLiteThreads(str(engine.url))
    assert len(runner_threads()) == len(before) + 3  # one writer, two readers
    writes = [asyncio.create_task(db.write(bump)) for _ in range(5)]
    await asyncio.sleep(0)  # handed in
    await db.close()
    assert sorted([await w for w in writes]) == [1, 2, 3, 4, 5]
    assert runner_threads() == before
    with pytest.raises(RuntimeError, match="closed"):
        await db.read(count)
    await db.close()  # twice is fine
