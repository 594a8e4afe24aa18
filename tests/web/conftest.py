"""Drive the real FastAPI app in-process: its lifespan runs, requests go through httpx's ASGI transport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from mmstudio.settings import Settings
from mmstudio.web.app import create_app
from tests.domain.conftest import local_env
from tests.fakes.ollama_server import FakeOllamaServer


@contextlib.asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://studio.test") as client:
            yield client


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
async def ollama_app(
    data_dir: Path, ollama: FakeOllamaServer
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on a fresh data dir with a fake Ollama detected (LM Studio at a closed port), and a client."""
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(ollama, None)}
    made = create_app(Settings.from_env(env), environ=env)
    async with app_client(made) as client:
        await client.post("/api/models/detect")
        yield made, client
