"""Repositories against real databases: encrypted keys, cascades, concurrent session counting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mmstudio.errors import InvalidRequest
from mmstudio.storage.db import session_factory
from mmstudio.storage.repositories import EndpointRepository, UsageRepository
from mmstudio.storage.secrets import SecretBox

SECRET = "sk-local-SECRET-0123456789abcdef"


async def test_endpoint_key_is_encrypted_at_rest(engine: Any, tmp_path: Path) -> None:
    box = SecretBox.from_data_dir(tmp_path)
    repo = EndpointRepository(session_factory(engine), box)
    saved = await repo.add(
        provider_id="gpu-box",
        platform="openai_compat",
        base_url="http://10.0.0.5/v1",
        api_key=SECRET,
        models=[("qwen", "My Qwen", "qwen")],
    )
    assert saved.api_key == SECRET
    assert [m.display_name for m in saved.models] == ["My Qwen"]
    async with engine.connect() as conn:
        raw = (await conn.execute(text("SELECT api_key_encrypted FROM endpoints"))).scalar_one()
    assert SECRET not in raw and raw
    # Another process with the same data directory reads it back.
    again = EndpointRepository(session_factory(engine), SecretBox.from_data_dir(tmp_path))
    assert (await again.list_all())[0].api_key == SECRET
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


async def test_adding_models_to_an_existing_endpoint_and_cascade(engine: Any, tmp_path: Path) -> None:
    repo = EndpointRepository(session_factory(engine), SecretBox.from_data_dir(tmp_path))
    first = await repo.add(
        provider_id="lab",
        platform="ollama",
        base_url="http://h:11434",
        api_key=None,
        models=[("a", "A", None)],
    )
    await repo.add(
        provider_id="lab",
        platform="ollama",
        base_url="http://h:11434",
        api_key=None,
        models=[("b", "B", None), ("a", "A renamed", None)],
    )
    (endpoint,) = await repo.list_all()
    assert endpoint.id == first.id
    assert sorted((m.upstream_model, m.display_name) for m in endpoint.models) == [
        ("a", "A renamed"),
        ("b", "B"),
    ]
    with pytest.raises(InvalidRequest, match="already used"):
        await repo.add(
            provider_id="lab",
            platform="ollama",
            base_url="http://other:11434",
            api_key=None,
            models=[("c", "C", None)],
        )
    assert await repo.delete(first.id)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM registered_models"))).scalar_one() == 0
    assert not await repo.delete(first.id)


async def test_alias_must_be_unique(engine: Any, tmp_path: Path) -> None:
    repo = EndpointRepository(session_factory(engine), SecretBox.from_data_dir(tmp_path))
    await repo.add(
        provider_id="one", platform="ollama", base_url="http://a", api_key=None, models=[("m", "M", "fast")]
    )
    with pytest.raises(InvalidRequest, match="alias"):
        await repo.add(
            provider_id="two",
            platform="ollama",
            base_url="http://b",
            api_key=None,
            models=[("n", "N", "fast")],
        )
    assert [e.provider_id for e in await repo.list_all()] == ["one"]


async def test_session_counting_is_exact_under_concurrency(engine: Any) -> None:
    usage = UsageRepository(session_factory(engine))
    await asyncio.gather(*(usage.record_session("ollama/llama3.2") for _ in range(25)))
    await usage.record_session("openai/gpt-4o")
    counts = await usage.all()
    assert counts["ollama/llama3.2"].sessions == 25
    assert counts["openai/gpt-4o"].sessions == 1
    assert counts["openai/gpt-4o"].last_used_at is not None
    assert counts["openai/gpt-4o"].last_used_at.tzinfo is not None
