"""The composition root and Python API: `Studio.open(settings)` wires storage, adapters and the registry.

async with await Studio.open(Settings.from_env()) as studio:
    async for event in studio.stream_chat("ollama/llama3.2", [Message.text("user", "Hi")]):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mmstudio.domain.registry import ModelRegistry, Resolved
from mmstudio.domain.types import Endpoint
from mmstudio.errors import InvalidRequest
from mmstudio.providers import create_adapter
from mmstudio.providers.base import (
    ChatRequest,
    ChatResponse,
    EndpointConfig,
    Message,
    ProviderAdapter,
    StreamEvent,
)
from mmstudio.settings import Settings
from mmstudio.storage.db import create_engine, migrate, session_factory
from mmstudio.storage.repositories import EndpointRepository, UsageRepository
from mmstudio.storage.secrets import SecretBox

log = logging.getLogger(__name__)

QUIRKS = {"lmstudio": frozenset({"lmstudio"}), "xai": frozenset({"xai"})}


@dataclass(frozen=True)
class ChatResult:
    response: ChatResponse
    resolved: Resolved


class Studio:
    def __init__(
        self, settings: Settings, engine: Any, client: httpx.AsyncClient, registry: ModelRegistry
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.registry = registry
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(cls, settings: Settings, *, environ: dict[str, str] | None = None) -> Studio:
        """Migrate the database and load the registry. No network: call `start_background()` for that."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate(engine)
        except Exception:
            await engine.dispose()
            raise
        sessions = session_factory(engine)
        env = dict(os.environ if environ is None else environ)
        box = SecretBox.from_data_dir(settings.data_dir, env.get("MMSTUDIO_SECRET_KEY"))
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50), follow_redirects=False
        )
        timeouts = settings.config.timeouts

        def factory(endpoint: Endpoint) -> ProviderAdapter:
            config = EndpointConfig(
                base_url=endpoint.base_url,
                api_key=endpoint.api_key,
                provider=endpoint.provider_id,
                quirks=QUIRKS.get(endpoint.flavor, frozenset()),
                timeout=timeouts.local if endpoint.kind == "local" else timeouts.cloud,
            )
            return create_adapter(endpoint.protocol, config, client)

        registry = ModelRegistry(
            config=settings.config,
            cloud=settings.cloud,
            ollama_url=settings.ollama_url,
            lmstudio_url=settings.lmstudio_url,
            endpoint_store=EndpointRepository(sessions, box),
            usage_store=UsageRepository(sessions),
            adapter_factory=factory,
            environ=env,
        )
        studio = cls(settings, engine, client, registry)
        # [wiring: rate limiter] (studio.limiter)
        # [wiring: metrics] (studio.metrics)
        # [wiring: gateway keys] (studio.keys)
        try:
            await registry.load()
        except Exception:
            await studio.close()
            raise
        return studio

    def start_background(self) -> None:
        """Detection and the health monitor, in the background: start-up never waits for an engine."""
        self._spawn(self.registry.detect(), "mmstudio-detect")
        self.registry.health.start()
        # [start: metrics]

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await self.registry.health.stop()
        # [close: metrics] (flush everything before the engine is disposed)
        # [close: rate limiter]
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()
        await self.engine.dispose()

    async def __aenter__(self) -> Studio:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- chat (direct: the selected model answers; the router adds fallback on top) ---------

    def _request(
        self, resolved: Resolved, messages: Sequence[Message], **params: Any
    ) -> tuple[ProviderAdapter, ChatRequest]:
        if not messages:
            raise InvalidRequest("at least one message is needed", field="messages")
        entry = resolved.entry
        if entry.modality not in ("chat", "code"):
            raise InvalidRequest(
                f"{entry.id} is a {entry.modality} model; choose a chat model", field="model"
            )
        endpoint = resolved.endpoint
        if not endpoint.enabled:
            raise InvalidRequest(
                f"{entry.id} is unavailable: set {endpoint.key_env} to enable it", field="model"
            )
        request = ChatRequest(model=entry.upstream, messages=tuple(messages), **params)
        return self.registry.adapter(endpoint), request

    async def chat(self, model: str, messages: Sequence[Message], **params: Any) -> ChatResult:
        resolved = await self.registry.resolve_fresh(model)
        adapter, request = self._request(resolved, messages, **params)
        response = await adapter.chat(request)
        await self.registry.record_session(resolved.entry.id)
        return ChatResult(response, resolved)

    async def stream_chat(
        self, model: str, messages: Sequence[Message], **params: Any
    ) -> AsyncIterator[StreamEvent]:
        resolved = await self.registry.resolve_fresh(model)
        adapter, request = self._request(resolved, messages, **params)
        async for event in adapter.stream(request):
            yield event
        await self.registry.record_session(resolved.entry.id)
