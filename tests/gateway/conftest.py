"""The whole app served by a real uvicorn on a loopback port, wired to fake upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mmstudio.config import StudioConfig
from mmstudio.settings import Settings
from mmstudio.studio import Studio
from mmstudio.web.app import create_app
from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer


@dataclass
class LiveStudio:
    url: str
    studio: Studio
    client: httpx.AsyncClient
    stack: contextlib.AsyncExitStack

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


@contextlib.asynccontextmanager
async def serve(settings: Settings, env: dict[str, str]) -> AsyncIterator[LiveStudio]:
    app = create_app(settings, environ=env)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=2, access_log=False, ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
                await asyncio.sleep(0.01)
            await app.state.ready.wait()
        studio = app.state.studio
        assert studio is not None, app.state.startup_error
        async with (
            contextlib.AsyncExitStack() as stack,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        ):
            yield LiveStudio(f"http://127.0.0.1:{port}", studio, client, stack)
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def lmstudio() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it"]) as server:
        yield server


OpenLive = Callable[..., Any]


@pytest.fixture
async def live(data_dir: Path) -> AsyncIterator[OpenLive]:
    """`await live(env, config=...)` → a LiveStudio served by uvicorn (closed after the test)."""
    stack = contextlib.AsyncExitStack()

    async def make(
        env: dict[str, str], config: StudioConfig | None = None, detect: bool = True, **overrides: Any
    ) -> LiveStudio:
        full = {"MMSTUDIO_DATA_DIR": str(data_dir), **env}
        settings = Settings.from_env(full)
        if config is not None:
            settings = replace(settings, config=config)
        if overrides:
            settings = replace(settings, **overrides)
        running = await stack.enter_async_context(serve(settings, full))
        if detect:
            await running.studio.registry.detect()
        return running

    async with stack:
        yield make


def engines(ollama: FakeOllamaServer | None, lmstudio: FakeOpenAIServer | None) -> dict[str, str]:
    return {
        "OLLAMA_HOST": ollama.url if ollama else f"127.0.0.1:{closed_port()}",
        "LMSTUDIO_BASE_URL": f"{lmstudio.url}/v1" if lmstudio else f"http://127.0.0.1:{closed_port()}",
        # the built-in image engines: never whatever happens to listen on their default ports
        "COMFYUI_URL": f"127.0.0.1:{closed_port()}",
        "A1111_URL": f"127.0.0.1:{closed_port()}",
    }
