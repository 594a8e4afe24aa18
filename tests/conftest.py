"""Shared fixtures: fake upstreams, a real PostgreSQL and Redis, settings for a fresh data directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.servers import postgres_server, redis_server

# pytest-xdist's workers start with COLUMNS=80 in their environment, and rich fixes a console's width
# when it is made (the CLI's consoles are made at import). Each CLI test sets the width it wants.
os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def blank_postgres_database(admin_url: str) -> str:
    """Create a blank database of its own on the session's PostgreSQL server; return its URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def pg_fetch(database_url: str, sql: str) -> list[dict[str, object]]:
    """The rows `sql` reads from the database at `database_url` (a SQLAlchemy asyncpg URL)."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [dict(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    yield await blank_postgres_database(postgres_admin_url)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One redis-server for the session; tests that count keys take `fresh_redis_url` instead."""
    with redis_server() as url:
        yield url


@pytest.fixture
def fresh_redis_url(redis_url: str) -> str:
    """The session's Redis, emptied (FLUSHALL) before this test."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    return redis_url
