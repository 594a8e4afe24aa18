"""The studio's routing API: POST /api/chat with {messages, modelId, providerId, stream}."""

from __future__ import annotations

import json
from typing import Any

from mmstudio.config import Routing, StudioConfig
from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import OpenLive, engines

LLAMA = "ollama/llama3.2:latest"
GEMMA = "lmstudio/gemma-2-2b-it"
HI = [{"role": "user", "content": "Hi"}]


def events_of(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_provider_and_model_ids_select_the_model(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    response = await studio.client.post(
        "/api/chat", json={"messages": HI, "providerId": "ollama", "modelId": "llama3.2:latest"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": "Hello from the fake.", "toolCalls": []}
    assert body["modelUsed"] == LLAMA and body["providerUsed"] == "ollama" and body["latencyMs"] > 0
    assert body["attempts"] == [
        {
            "model": LLAMA,
            "provider": "ollama",
            "outcome": "ok",
            "error": None,
            "kind": None,
            "latencyMs": body["attempts"][0]["latencyMs"],
        }
    ]
    assert response.headers["x-mmstudio-model"] == LLAMA
    # modelId alone takes a full id, a name or an alias
    response = await studio.client.post("/api/chat", json={"messages": HI, "modelId": LLAMA})
    assert response.json()["modelUsed"] == LLAMA


async def test_without_a_model_the_configured_default_answers(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio), config=StudioConfig(default_model=GEMMA))
    response = await studio.client.post("/api/chat", json={"messages": HI})
    assert response.json()["modelUsed"] == GEMMA


async def test_an_unknown_combination_lists_the_supported_models(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    response = await studio.client.post("/api/chat", json={"messages": HI, "providerId": "y", "modelId": "x"})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "Model not found"
    assert body["message"] == 'Model "x" from provider "y" is not supported'
    assert {"providerId": "ollama", "modelId": "llama3.2:latest", "name": "llama3.2:latest"} in body[
        "supportedModels"
    ]
    response = await studio.client.post("/api/chat", json={"messages": HI, "providerId": "ollama"})
    assert response.status_code == 400 and "modelId is required" in response.json()["message"]


async def test_fallback_is_reported_with_every_attempt(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    config = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))
    studio = await live(engines(ollama, lmstudio), config=config)
    ollama.script(Reply(status=500, error_body={"error": "out of memory"}))
    body = (await studio.client.post("/api/chat", json={"messages": HI, "modelId": LLAMA})).json()
    assert body["modelUsed"] == GEMMA and body["fallback"] is True
    first, second = body["attempts"]
    assert first["model"] == LLAMA and first["outcome"] == "error" and "out of memory" in first["error"]
    assert second == {**second, "model": GEMMA, "outcome": "ok", "error": None}


async def test_streaming_events_name_the_model_and_a_mid_answer_switch(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    config = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))
    studio = await live(engines(ollama, lmstudio), config=config)
    ollama.script(Reply(chunks=["One, ", "two, ", "three"], drop_after=2))
    lmstudio.script(Reply(chunks=["three."]))
    async with studio.client.stream(
        "POST", "/api/chat", json={"messages": HI, "modelId": LLAMA, "stream": True}
    ) as response:
        events = events_of((await response.aread()).decode())
    names = [name for name, _ in events]
    assert names[0] == "start" and events[0][1]["modelUsed"] == LLAMA
    assert "model" in names and events[names.index("model")][1]["modelUsed"] == GEMMA
    assert "".join(data["text"] for name, data in events if name == "delta") == "One, two, three."
    done = events[-1]
    assert done[0] == "done" and done[1]["modelUsed"] == GEMMA and len(done[1]["attempts"]) == 2


async def test_a_stream_with_nobody_left_ends_with_an_error_event(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=StudioConfig(routing=Routing(retries=0)))
    ollama.script(Reply(chunks=["One, ", "two, ", "three"], drop_after=2))
    async with studio.client.stream(
        "POST", "/api/chat", json={"messages": HI, "modelId": LLAMA, "stream": True, "fallbacks": False}
    ) as response:
        events = events_of((await response.aread()).decode())
    assert events[-1][0] == "error" and "cut off" in events[-1][1]["message"]
    assert not any(name == "done" for name, _ in events)


async def test_a_success_counts_a_session_and_sets_last_used(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    for _ in range(3):
        await studio.client.post("/api/chat", json={"messages": HI, "modelId": LLAMA})
    await studio.studio.router.drain()
    models = {m["id"]: m for m in (await studio.client.get("/api/models")).json()["models"]}
    assert models[LLAMA]["sessions"] == 3 and models[LLAMA]["last_used"]


async def test_every_request_leaves_one_metrics_record(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    config = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))
    studio = await live(engines(ollama, lmstudio), config=config)
    await studio.client.post("/api/chat", json={"messages": HI, "modelId": LLAMA})
    ollama.script(Reply(status=500))
    await studio.client.post("/v1/chat/completions", json={"model": LLAMA, "messages": HI})
    async with studio.client.stream(
        "POST", "/v1/chat/completions", json={"model": LLAMA, "messages": HI, "stream": True}
    ) as response:
        await response.aread()
    await studio.client.post("/v1/chat/completions", json={"model": "nobody/x", "messages": HI})
    summary = (await studio.client.get("/api/metrics", params={"since": "1h", "bucket": "1m"})).json()
    totals = summary["totals"]
    assert totals["requests"] == 4 and totals["ok"] == 3 and totals["errors"] == 1
    assert totals["fallbacks"] == 1 and totals["input_tokens"] == 15 and totals["output_tokens"] == 21
    by_model = {m["model"]: m["totals"] for m in summary["models"]}
    assert by_model[LLAMA]["requests"] == 2 and by_model[GEMMA]["fallbacks"] == 1
    assert by_model[LLAMA]["ttft_mean_ms"] is not None  # the streamed one
    text = (await studio.client.get("/metrics")).text
    assert 'mmstudio_requests_total{model="ollama/llama3.2:latest",outcome="ok"' in text
    assert 'mmstudio_fallbacks_total{model="lmstudio/gemma-2-2b-it"} 1.0' in text
