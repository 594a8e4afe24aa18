"""Fixtures for registry and studio tests: fake local engines and a Studio wired to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mmstudio.config import StudioConfig
from mmstudio.settings import Settings
from mmstudio.studio import Studio
from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def lmstudio() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it", "qwen2.5-7b-instruct"]) as server:
        yield server


OpenStudio = Callable[..., Any]


@pytest.fixture
async def open_studio(data_dir: Path) -> AsyncIterator[OpenStudio]:
    """`await open_studio(env, config=...)` → a Studio on a fresh data dir; all are closed afterwards."""
    opened: list[Studio] = []

    async def make(env: dict[str, str], config: StudioConfig | None = None) -> Studio:
        env = {"MMSTUDIO_DATA_DIR": str(data_dir), **env}
        settings = Settings.from_env(env)
        if config is not None:
            settings = replace(settings, config=config)
        studio = await Studio.open(settings, environ=env)
        opened.append(studio)
        return studio

    yield make
    for studio in opened:
        await studio.close()


def local_env(ollama: FakeOllamaServer | None, lmstudio: FakeOpenAIServer | None) -> dict[str, str]:
    """Point the built-in engines at the fakes (or at closed ports)."""
    return {
        "OLLAMA_HOST": ollama.url if ollama else f"127.0.0.1:{closed_port()}",
        "LMSTUDIO_BASE_URL": f"{lmstudio.url}/v1" if lmstudio else f"http://127.0.0.1:{closed_port()}",
        # the built-in image engines: never whatever happens to listen on their default ports
        "COMFYUI_URL": f"127.0.0.1:{closed_port()}",
        "A1111_URL": f"127.0.0.1:{closed_port()}",
    }
