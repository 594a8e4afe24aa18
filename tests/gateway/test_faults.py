"""Scripted upstream faults against the whole gateway: with one healthy fallback, every one of
1,000 faulty requests succeeds, and each answer reads as if nothing had happened."""

from __future__ import annotations

import asyncio
import itertools
import json

from mmstudio.config import EndpointConfigEntry, ModelConfig, Routing, StudioConfig
from tests.fakes.base import Reply, closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import OpenLive, engines

PRIMARY = "lmstudio/gemma-2-2b-it"
DEAD = "dead/model-x"  # on an endpoint whose port refuses connections
FALLBACK = "ollama/llama3.2:latest"
ANSWER = "Hello from the fake."
REQUESTS = 1000


def faults() -> list[Reply]:
    """One of each fault the primary can show, for plain and streamed requests alike."""
    return [
        Reply(status=500),
        Reply(status=503, error_body={"error": {"message": "overloaded", "type": "server_error"}}),
        Reply(status=429, headers={"retry-after": "30"}),
        Reply(delay=1.0),  # beyond the primary's 0.15 s timeout
        Reply(raw=b"{this is not json"),
        Reply(status=200, error_body={"error": "Model unloaded (LM Studio's 200 with an error body)"}),
        Reply(chunks=["Hello ", "from ", "the fake."], drop_after=2),  # a drop after "Hello "
    ]


async def test_a_thousand_faulty_requests_all_succeed_through_the_fallback(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    config = StudioConfig(
        fallback_chain=(FALLBACK,),
        endpoints=(
            EndpointConfigEntry(
                name="dead", platform="openai_compat", base_url=f"http://127.0.0.1:{closed_port()}/v1"
            ),
        ),
        models=(ModelConfig(id=PRIMARY, timeout=0.15), ModelConfig(id=DEAD, name="Dead model")),
        # No retries and a breaker that never opens: every request meets its fault.
        routing=Routing(retries=0, breaker_failures=1000, max_retry_after=1),
    )
    studio = await live(engines(ollama, lmstudio), config=config)
    kinds = list(itertools.islice(itertools.cycle(faults()), REQUESTS))
    lmstudio.script(*kinds)
    gate = asyncio.Semaphore(16)
    outcomes: list[tuple[int, str, str]] = []

    async def one(index: int) -> None:
        model = DEAD if index % 10 == 9 else PRIMARY
        stream = index % 2 == 0
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"request {index}"}],
            "stream": stream,
        }
        async with gate:
            if not stream:
                response = await studio.client.post("/v1/chat/completions", json=body)
                text = (
                    response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else ""
                )
                outcomes.append((response.status_code, text, response.headers.get("x-mmstudio-model", "")))
                return
            async with studio.client.stream("POST", "/v1/chat/completions", json=body) as response:
                raw = (await response.aread()).decode()
            assert raw.rstrip().endswith("data: [DONE]"), raw
            text = ""
            for line in raw.splitlines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    assert "error" not in chunk, chunk
                    text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
            outcomes.append((response.status_code, text, response.headers.get("x-mmstudio-model", "")))

    await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    assert len(outcomes) == REQUESTS
    failed = [o for o in outcomes if o[0] != 200 or o[1] != ANSWER]
    assert not failed, failed[:5]
    # The primary really was tried and failed in every way, the dead endpoint refused each time.
    assert len(lmstudio.requests_to("/v1/chat/completions")) >= REQUESTS * 9 // 10 - 5
    assert {o[2] for o in outcomes} <= {FALLBACK, PRIMARY}
