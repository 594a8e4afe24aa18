"""Migrations from a blank database to head, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mmstudio.storage.db import alembic_config, create_engine, migrate
from mmstudio.storage.tables import Base

EXPECTED = {
    "endpoints": {"id", "provider_id", "platform", "base_url", "api_key_encrypted", "created_at"},
    "registered_models": {"id", "endpoint_id", "upstream_model", "display_name", "alias", "created_at"},
    "model_usage": {"model_id", "sessions", "last_used_at"},
    "gateway_keys": {"id", "name", "key_hash", "prefix", "admin", "rpm", "tpm", "created_at", "revoked_at"},
}


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _schema(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    tables = {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    fks = insp.get_foreign_keys("registered_models")
    diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    return {"tables": tables, "fks": fks, "diff": diff, "version": version}


async def _check(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        await migrate(engine)  # every start runs it again: must be a no-op
        async with engine.connect() as conn:
            return await conn.run_sync(_schema)
    finally:
        await engine.dispose()


def _assert_head(schema: dict[str, Any]) -> None:
    for table, columns in EXPECTED.items():
        assert schema["tables"][table] == columns
    assert schema["version"] == HEAD
    assert schema["diff"] == [], f"tables.py and the migrations disagree: {schema['diff']}"
    (fk,) = schema["fks"]
    assert fk["referred_table"] == "endpoints"
    assert fk["options"].get("ondelete") == "CASCADE"


async def test_sqlite_blank_to_head(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'db.sqlite'}"
    _assert_head(await _check(url))


async def test_sqlite_pragmas_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")  # a plain URL gets the async driver
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_blank_to_head(postgres_url: str) -> None:
    schema = await _check(postgres_url)
    _assert_head(schema)


@pytest.mark.postgres
async def test_postgres_plain_url_gets_async_driver(postgres_url: str) -> None:
    engine = create_engine(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


def test_unsupported_database_url_is_a_clear_error() -> None:
    from mmstudio.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed: sqlite"):
        create_engine("mysql://user@localhost/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        create_engine("not a url")
