"""The OpenAI-compatible adapter against a real llama.cpp server (llama-cpp-python) and a tiny GGUF."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mmstudio.errors import ContextTooLong, ProviderError
from mmstudio.providers.base import (
    ChatRequest,
    ChatResponse,
    EndpointConfig,
    Message,
    StreamEvent,
)
from mmstudio.providers.openai_compat import OpenAICompatAdapter
from mmstudio.providers.transport import make_http_client
from tests.integration.llamacpp_server import LlamaCppServer

pytestmark = [pytest.mark.llamacpp, pytest.mark.timeout(60)]

MAX_TOKENS = 8


def _config(server: LlamaCppServer) -> EndpointConfig:
    return EndpointConfig(
        base_url=server.base_url,
        provider="llamacpp",
        quirks=frozenset({"llamacpp"}),
        timeout=30.0,
        connect_timeout=2.0,
    )


def _request(**changes: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": "tiny",
        "messages": (
            Message.text("system", "You are a tiny test model."),
            Message.text("user", "Say something."),
        ),
        "max_tokens": MAX_TOKENS,
        "temperature": 0.8,
        "seed": 7,
    }
    values.update(changes)
    return ChatRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as http:
        yield http


@pytest.fixture
def adapter(llamacpp: LlamaCppServer, client: httpx.AsyncClient) -> OpenAICompatAdapter:
    return OpenAICompatAdapter(_config(llamacpp), client)


async def test_server_speaks_openai_chat(llamacpp: LlamaCppServer, client: httpx.AsyncClient) -> None:
    """The raw wire format the adapter relies on (section 1 of PROTOCOLS.md), without the adapter."""
    response = await client.post(
        f"{llamacpp.base_url}/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": MAX_TOKENS,
        },
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in {"stop", "length"}
    assert body["usage"]["prompt_tokens"] > 0


async def test_list_models_includes_alias(adapter: OpenAICompatAdapter) -> None:
    models = await adapter.list_models()
    assert "tiny" in [m.id for m in models]


async def test_chat_returns_structured_response(adapter: OpenAICompatAdapter) -> None:
    response = await adapter.chat(_request())
    assert isinstance(response, ChatResponse)
    assert response.model  # llama-cpp-python echoes the alias
    assert response.finish_reason in {"stop", "length"}
    assert isinstance(response.text, str)
    assert response.tool_calls == ()
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= MAX_TOKENS
    # The tiny model never samples EOS, so it always runs out of tokens with some words.
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == MAX_TOKENS
    assert response.text.strip()


async def test_stream_yields_text_then_one_finish(adapter: OpenAICompatAdapter) -> None:
    events: list[StreamEvent] = [event async for event in adapter.stream(_request())]
    assert events, "no events"
    kinds = [e.type for e in events]
    assert kinds[-1] == "finish", kinds
    assert kinds.count("finish") == 1, kinds
    assert "error" not in kinds
    assert "tool_call" not in kinds
    assert kinds[0] == "text", kinds
    finish = events[-1]
    assert finish.finish_reason == "length"
    text_events = [e for e in events if e.type == "text"]
    assert all(isinstance(e.text, str) for e in text_events)
    text = "".join(e.text for e in text_events)
    assert text.strip()
    assert 1 <= len(text_events) <= MAX_TOKENS + 1  # at most one delta per generated token
    usage = [e.usage for e in events if e.type == "usage"]
    assert len(usage) <= 1
    if usage:
        assert usage[0] is not None
        assert usage[0].input_tokens > 0
        assert 0 < usage[0].output_tokens <= MAX_TOKENS


async def test_stream_and_chat_agree_on_greedy_output(adapter: OpenAICompatAdapter) -> None:
    """With temperature 0 the same prompt yields the same text whether streamed or not."""
    request = _request(temperature=0.0)
    response = await adapter.chat(request)
    streamed = "".join([e.text async for e in adapter.stream(request) if e.type == "text"])
    assert streamed == response.text


async def test_stop_sequence_finishes_with_stop(adapter: OpenAICompatAdapter) -> None:
    """Every generated word has a vowel, so a vowel stop list ends generation with ``stop``."""
    vowels = ("a", "e", "i", "o", "u")
    request = _request(temperature=0.0, stop=vowels)
    response = await adapter.chat(request)
    assert response.finish_reason == "stop"
    assert not any(v in response.text for v in vowels)
    events = [e async for e in adapter.stream(request)]
    assert events[-1].type == "finish"
    assert events[-1].finish_reason == "stop"
    assert "".join(e.text for e in events if e.type == "text") == response.text


async def test_context_overflow_maps_to_context_too_long(adapter: OpenAICompatAdapter) -> None:
    """llama-cpp-python answers 400 ``context_length_exceeded`` when the prompt exceeds n_ctx."""
    request = _request(messages=(Message.text("user", "the water " * 300),))
    with pytest.raises(ContextTooLong) as caught:
        await adapter.chat(request)
    assert caught.value.status == 400
    assert not caught.value.retryable


async def test_stream_context_overflow_raises(adapter: OpenAICompatAdapter) -> None:
    """Streaming, llama-cpp-python sends HTTP 200 and an empty event stream (the error is only in
    its log); the adapter must raise rather than report a clean, empty answer."""
    request = _request(messages=(Message.text("user", "the water " * 300),))
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError):
        async for event in adapter.stream(request):
            events.append(event)
    assert [e for e in events if e.type == "finish"] == []


async def test_probe_ok(adapter: OpenAICompatAdapter) -> None:
    result = await adapter.probe()
    assert result.ok, result.error
    assert result.latency_ms > 0
    assert result.error is None


async def test_probe_reports_stopped_server(llamacpp_own: LlamaCppServer, client: httpx.AsyncClient) -> None:
    adapter = OpenAICompatAdapter(_config(llamacpp_own), client)
    before = await adapter.probe()
    assert before.ok, before.error
    llamacpp_own.stop()
    assert not llamacpp_own.running
    after = await adapter.probe()
    assert not after.ok
    assert after.error
    assert after.latency_ms >= 0
