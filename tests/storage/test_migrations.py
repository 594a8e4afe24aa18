"""Migrations from a blank database to head, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mmstudio.storage.db import MIGRATIONS, alembic_config, create_engine, migrate
from mmstudio.storage.tables import Base
from tests.conftest import blank_postgres_database

EXPECTED = {
    "endpoints": {"id", "provider_id", "platform", "base_url", "api_key_encrypted", "created_at"},
    "registered_models": {"id", "endpoint_id", "upstream_model", "display_name", "alias", "created_at"},
    "model_usage": {"model_id", "sessions", "last_used_at"},
    "gateway_keys": {
        "id",
        "name",
        "key_hash",
        "prefix",
        "admin",
        "rpm",
        "tpm",
        "created_at",
        "revoked_at",
        "tiers",
    },
    "prompt_profiles": {"id", "name", "system_prompt", "parameters", "memory", "created_at", "updated_at"},
    "conversations": {
        "id",
        "title",
        "model",
        "prompt_profile_id",
        "routing_profile",
        "pinned",
        "archived",
        "current_leaf_id",
        "created_at",
        "updated_at",
    },
    "messages": {
        "seq",
        "id",
        "conversation_id",
        "parent_id",
        "role",
        "parts",
        "text",
        "status",
        "error",
        "model_requested",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "ttft_ms",
        "attempts",
        "created_at",
        "updated_at",
    },
    "chat_metrics": {
        "message_id",
        "conversation_id",
        "model",
        "provider",
        "outcome",
        "fallback",
        "attempts",
        "latency_ms",
        "ttft_ms",
        "input_tokens",
        "output_tokens",
        "tokens_per_second",
        "created_at",
    },
    "memories": {"id", "content", "conversation_id", "created_at"},
    "documents": {
        "id",
        "conversation_id",
        "filename",
        "media_type",
        "kind",
        "size_bytes",
        "pages",
        "chunk_count",
        "created_at",
    },
    "document_chunks": {"id", "document_id", "idx", "page", "start", "end", "text"},
    "compare_runs": {"id", "prompt", "models", "status", "created_at"},
    "compare_answers": {
        "id",
        "run_id",
        "side",
        "model",
        "model_used",
        "text",
        "status",
        "error",
        "latency_ms",
        "ttft_ms",
        "output_tokens",
    },
    "votes": {"run_id", "winner", "created_at"},
    "codegen_projects": {
        "id",
        "name",
        "description",
        "framework",
        "target_type",
        "model_requested",
        "status",
        "model_used",
        "model_name",
        "latency_ms",
        "attempts",
        "skipped",
        "error",
        "raw_text",
        "file_count",
        "created_at",
        "finished_at",
    },
    "codegen_files": {"project_id", "position", "path", "language", "content"},
    "media_assets": {
        "id",
        "kind",
        "mime",
        "width",
        "height",
        "bytes",
        "sha256",
        "created_at",
        "recipe",
        "attempts",
        "latency_ms",
        "cost_usd",
        "parent_id",
        "tier",
        "filename",
        "model_used",
        "provider",
        "prompt",
        "duration_s",
        "fps",
    },
    "jobs": {
        "id",
        "kind",
        "state",
        "request",
        "recipe",
        "plan",
        "attempts",
        "provider",
        "model",
        "upstream_handle",
        "submitted_at",
        "progress",
        "progress_estimated",
        "depends_on",
        "priority",
        "idempotency_key",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "lease_owner",
        "lease_expires_at",
        "attempt_count",
        "cancel_requested",
        "error_kind",
        "error_message",
        "output_ids",
        "info",
    },
}
CHAT_TABLES = {
    "prompt_profiles",
    "conversations",
    "messages",
    "chat_metrics",
    "memories",
    "documents",
    "document_chunks",
    "compare_runs",
    "compare_answers",
    "votes",
    "codegen_projects",  # 0005, also gone after a downgrade to 0002
    "codegen_files",
    "media_assets",  # 0006
    "jobs",  # 0007
}
# SQLite full-text search (0003): virtual tables, their shadow tables and triggers, not in tables.py.
SQLITE_SEARCH_TABLES = {"messages_fts", "conversations_fts", "document_chunks_fts"}
SQLITE_SEARCH_TRIGGERS = {
    f"{table}_fts_{event}"
    for table in ("messages", "conversations", "document_chunks")
    for event in ("insert", "update", "delete")
}
POSTGRES_SEARCH_INDEXES = {
    ("messages", "ix_messages_fts"),
    ("conversations", "ix_conversations_fts"),
    ("document_chunks", "ix_document_chunks_fts"),
}
SEARCH_NAME = re.compile(r"^\w+_fts(_\w+)?$")


def _not_search(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ in ("table", "index") and name is not None and SEARCH_NAME.match(name))


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def _schema(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    tables = {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    fks = insp.get_foreign_keys("registered_models")
    context = MigrationContext.configure(conn, opts={"include_name": _not_search})
    diff = compare_metadata(context, Base.metadata)
    version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    chat_fks = {
        (table, fk["constrained_columns"][0], fk["referred_table"], fk["options"].get("ondelete"))
        for table in ("conversations", "messages", "chat_metrics", "documents", "document_chunks")
        for fk in insp.get_foreign_keys(table)
    }
    search_indexes = {
        (table, index["name"])
        for table in ("messages", "conversations", "document_chunks")
        for index in insp.get_indexes(table)
        if index["name"].endswith("_fts")
    }
    triggers: set[str] = set()
    if conn.dialect.name == "sqlite":
        triggers = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
    return {
        "tables": tables,
        "fks": fks,
        "chat_fks": chat_fks,
        "diff": diff,
        "version": version,
        "triggers": triggers,
        "search_indexes": search_indexes,
    }


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
    assert schema["chat_fks"] == {
        ("conversations", "prompt_profile_id", "prompt_profiles", "SET NULL"),
        ("messages", "conversation_id", "conversations", "CASCADE"),
        ("messages", "parent_id", "messages", "CASCADE"),
        ("chat_metrics", "message_id", "messages", "CASCADE"),
        ("documents", "conversation_id", "conversations", "CASCADE"),
        ("document_chunks", "document_id", "documents", "CASCADE"),
    }


async def test_sqlite_blank_to_head(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'db.sqlite'}"
    schema = await _check(url)
    _assert_head(schema)
    assert set(schema["tables"]) >= SQLITE_SEARCH_TABLES
    assert schema["triggers"] == SQLITE_SEARCH_TRIGGERS


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
    assert not {t for t in schema["tables"] if "_fts" in t}  # PostgreSQL searches with to_tsvector
    assert schema["search_indexes"] == POSTGRES_SEARCH_INDEXES


@pytest.mark.postgres
async def test_postgres_plain_url_gets_async_driver(postgres_url: str) -> None:
    engine = create_engine(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


def _downgrade_to_0002(conn: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.downgrade(config, "0002")


def _chat_migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_0003", MIGRATIONS / "versions" / "0003_chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_chat_migration_downgrades_and_upgrades_again(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}"
        if backend == "sqlite"
        else await blank_postgres_database(request.getfixturevalue("postgres_admin_url"))
    )
    engine = create_engine(url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade_to_0002)
        async with engine.connect() as conn:
            left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert version == "0002"
        assert left == set(EXPECTED) - CHAT_TABLES | {"request_metrics", "alembic_version"}
        await migrate(engine)
        async with engine.connect() as conn:
            schema = await conn.run_sync(_schema)
        _assert_head(schema)
    finally:
        await engine.dispose()


async def test_recreating_sqlite_search_indexes_existing_rows(tmp_path: Path) -> None:
    """`create_sqlite_search()` is what a later migration that rebuilds a table calls afterwards."""
    from mmstudio.domain.chat.types import NewMessage
    from mmstudio.storage.chat_repo import ChatRepository
    from mmstudio.storage.runner import open_runner

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db = open_runner(engine)  # its own connections, which must see the recreated triggers too
    try:
        await migrate(engine)
        repo = ChatRepository(db)
        conversation = await repo.create_conversation(title="Zebra facts")
        await repo.add_message(
            conversation.id, NewMessage(role="user", parts=[{"type": "text", "text": "okapi"}])
        )
        migration = _chat_migration()

        def recreate(conn: Connection) -> None:
            with Operations.context(MigrationContext.configure(conn)):
                migration.drop_sqlite_search()
                assert not {t for t in inspect(conn).get_table_names() if "_fts" in t}
                migration.create_sqlite_search()

        async with engine.begin() as conn:
            await conn.run_sync(recreate)
        assert [c.title for c in (await repo.list_conversations(q="okap")).items] == ["Zebra facts"]
        assert [c.title for c in (await repo.list_conversations(q="zebr")).items] == ["Zebra facts"]
        later = await repo.create_conversation(title="Zebra again")  # the triggers are back
        assert {c.id for c in (await repo.list_conversations(q="zebra")).items} == {conversation.id, later.id}
        async with engine.begin() as conn:
            for table in ("messages_fts", "conversations_fts", "document_chunks_fts"):
                await conn.execute(text(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"))
    finally:
        await db.close()
        await engine.dispose()


def test_unsupported_database_url_is_a_clear_error() -> None:
    from mmstudio.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed: sqlite"):
        create_engine("mysql://user@localhost/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        create_engine("not a url")
