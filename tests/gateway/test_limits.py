"""Rate limits through the gateway: exact under concurrency, 429 with Retry-After and a message
naming the limit, in-process and shared by two `mmstudio serve` processes through Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from mmstudio.config import Limits, RateLimit, StudioConfig
from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.process import serve_process

LLAMA = "ollama/llama3.2:latest"
CHAT = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "fallbacks": False}


async def fire(
    client: httpx.AsyncClient, count: int, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post("/v1/chat/completions", json=CHAT, headers=headers or {}) for _ in range(count))
    )


async def test_500_concurrent_requests_against_100_per_minute_admit_exactly_100(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    config = StudioConfig(limits=Limits(per_key=RateLimit(rpm=100)))
    studio = await live(engines(ollama, None), config=config)
    responses = await fire(studio.client, 500)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100 and statuses.count(429) == 400
    assert len(ollama.requests_to("/api/chat")) == 100
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "100 requests per minute" in error["message"] and "Retry in" in error["message"]


async def test_a_model_limit_sends_requests_to_the_fallback_then_refuses(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    config = StudioConfig(
        fallback_chain=("ollama/gemma3:4b",),
        limits=Limits(models={LLAMA: RateLimit(rpm=2)}),
    )
    studio = await live(engines(ollama, None), config=config)
    body = {**CHAT, "fallbacks": True}
    used = [
        (await studio.client.post("/v1/chat/completions", json=body)).headers["x-mmstudio-model"]
        for _ in range(4)
    ]
    assert used == [LLAMA, LLAMA, "ollama/gemma3:4b", "ollama/gemma3:4b"]
    pinned = await studio.client.post(
        "/api/chat", json={"messages": CHAT["messages"], "modelId": LLAMA, "fallbacks": False}
    )
    assert pinned.status_code == 429 and "model 'ollama/llama3.2:latest'" in pinned.json()["message"]
    assert "retry-after" in pinned.headers


async def test_tokens_per_minute_for_a_key(live: OpenLive, ollama: FakeOllamaServer) -> None:
    config = StudioConfig(limits=Limits(per_key=RateLimit(tpm=20)))  # the fake answers with 12 tokens
    studio = await live(engines(ollama, None), config=config)
    assert (await studio.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    await studio.studio.router.drain()  # tokens are counted just after the answer
    assert (await studio.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    await studio.studio.router.drain()
    refused = await studio.client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429 and "20 tokens per minute" in refused.json()["error"]["message"]


async def test_each_gateway_key_has_its_own_limit(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None), config=StudioConfig(limits=Limits(per_key=RateLimit(rpm=3))))
    created = []
    for name, rpm in (("ci", None), ("batch", 5)):
        response = await studio.client.post(
            "/api/admin/keys",
            json={"name": name, "rpm": rpm},
            headers={"Authorization": f"Bearer {created[0]}"} if created else {},
        )
        assert response.status_code == 201, response.text
        created.append(response.json()["key"])
    ci, batch = ({"Authorization": f"Bearer {key}"} for key in created)
    assert [r.status_code for r in await fire(studio.client, 5, ci)].count(200) == 3
    assert [r.status_code for r in await fire(studio.client, 7, batch)].count(200) == 5  # its own rpm


@pytest.mark.redis
def test_two_processes_share_one_limit_through_redis(
    tmp_path: Path, fresh_redis_url: str, ollama: FakeOllamaServer
) -> None:
    config = tmp_path / "mmstudio.yaml"
    config.write_text(yaml.safe_dump({"limits": {"per_key": {"rpm": 100}}}))
    common = {
        "MMSTUDIO_REDIS_URL": fresh_redis_url,
        "MMSTUDIO_CONFIG": str(config),
        "OLLAMA_HOST": ollama.url,
        "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
    }
    with (
        serve_process({**common, "MMSTUDIO_DATA_DIR": str(tmp_path / "a")}, tmp_path, "a") as first,
        serve_process({**common, "MMSTUDIO_DATA_DIR": str(tmp_path / "b")}, tmp_path, "b") as second,
    ):

        async def run() -> list[int]:
            async with (
                httpx.AsyncClient(base_url=first.url, timeout=60) as a,
                httpx.AsyncClient(base_url=second.url, timeout=60) as b,
            ):
                for client in (a, b):  # both have found the Ollama model
                    await client.post("/api/models/detect")
                responses = await asyncio.gather(fire(a, 250), fire(b, 250))
            return [r.status_code for group in responses for r in group]

        statuses = asyncio.run(run())
    assert statuses.count(200) == 100 and statuses.count(429) == 400
