"""Tests of the Ollama adapter against the fake Ollama server over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContextTooLong,
    InvalidRequest,
    MidStreamError,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import (
    ChatRequest,
    EndpointConfig,
    ImagePart,
    Message,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from mmstudio.providers.ollama import OllamaAdapter, StreamNormalizer
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import FakeServer, Reply, closed_port
from tests.fakes.ollama_server import FakeOllamaServer

MODEL = "llama3.2:latest"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


class NotOllama(FakeServer):
    """Answers every path with HTTP 200 and an error body, as LM Studio does."""

    name = "not-ollama"

    def routes(self) -> list[Route]:
        return [Route("/{path:path}", self._any, methods=["GET", "POST"])]

    async def _any(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse(
            {"error": f"Unexpected endpoint or method. ({request.method} {request.url.path})"}
        )


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllamaServer]:
    fake = FakeOllamaServer()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as http:
        yield http


def make_adapter(
    client: httpx.AsyncClient, base_url: str, *, timeout: float = 3.0, api_key: str | None = None
) -> OllamaAdapter:
    config = EndpointConfig(base_url=base_url, provider="ollama", timeout=timeout, api_key=api_key)
    return OllamaAdapter(config, client)


@pytest.fixture
def adapter(server: FakeOllamaServer, client: httpx.AsyncClient) -> OllamaAdapter:
    server.reset()
    return make_adapter(client, server.url)


def ask(text: str = "Hi", **fields: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=(Message.text("user", text),), **fields)


async def collect(
    adapter: OllamaAdapter, request: ChatRequest, into: list[StreamEvent] | None = None
) -> list[StreamEvent]:
    events = [] if into is None else into
    async for event in adapter.stream(request):
        events.append(event)
    return events


def last_chat_body(server: FakeOllamaServer) -> dict[str, object]:
    body = server.requests_to("/api/chat")[-1].json()
    assert isinstance(body, dict)
    return body


# --- chat ---------------------------------------------------------------------------------------


async def test_chat_sends_ollama_body_and_parses_the_answer(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(text="A red square.", usage=(11, 4)))
    request = ChatRequest(
        model=MODEL,
        messages=(
            Message.text("system", "Be brief."),
            Message("user", (TextPart("What is this?"), ImagePart(data=PNG))),
        ),
        tools=(WEATHER,),
        temperature=0.2,
        top_p=0.9,
        seed=7,
        stop=("END",),
        max_tokens=64,
        json_mode=True,
        extra={"keep_alive": "5m", "options": {"num_ctx": 8192}},
    )

    response = await adapter.chat(request)

    assert response.text == "A red square."
    assert response.finish_reason == "stop"
    assert response.usage == Usage(11, 4)
    assert response.model == MODEL
    assert response.tool_calls == ()
    body = last_chat_body(server)
    assert body["stream"] is False
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is this?", "images": [base64.b64encode(PNG).decode()]},
    ]
    assert body["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "num_predict": 64,
        "num_ctx": 8192,
    }
    assert body["format"] == "json"
    assert body["keep_alive"] == "5m"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]


async def test_chat_without_options_sends_a_minimal_body(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    await adapter.chat(ask("Hello"))
    body = last_chat_body(server)
    assert body == {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "stream": False}


async def test_image_given_only_as_url_is_refused_before_any_request(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    request = ChatRequest(
        model=MODEL, messages=(Message("user", (ImagePart(url="https://x.test/cat.png"),)),)
    )
    with pytest.raises(InvalidRequest, match="inline image data"):
        await adapter.chat(request)
    with pytest.raises(InvalidRequest):
        await collect(adapter, request)
    assert server.requests_to("/api/chat") == []


async def test_image_as_data_url_is_sent_as_base64(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    data_url = ImagePart(data=PNG).as_data_url()
    await adapter.chat(ChatRequest(model=MODEL, messages=(Message("user", (ImagePart(url=data_url),)),)))
    messages = last_chat_body(server)["messages"]
    assert messages == [{"role": "user", "content": "", "images": [base64.b64encode(PNG).decode()]}]


async def test_chat_returns_tool_calls_and_sends_results_back(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(
        Reply(
            text="",
            tool_calls=[
                {"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
            ],
        ),
        Reply(text="Sunny in Paris, snow in Oslo."),
    )
    first = ask("Weather in Paris and Oslo?", tools=(WEATHER,))

    response = await adapter.chat(first)

    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="call_w1", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"}),
    )
    follow_up = ChatRequest(
        model=MODEL,
        tools=(WEATHER,),
        messages=(
            *first.messages,
            Message("assistant", response.tool_calls),
            Message(
                "tool",
                (
                    ToolResultPart("call_w1", "get_weather", "sunny, 21 C"),
                    ToolResultPart("call_1", "get_weather", "snow, -3 C"),
                ),
            ),
        ),
    )
    second = await adapter.chat(follow_up)

    assert second.text == "Sunny in Paris, snow in Oslo."
    assert last_chat_body(server)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_w1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            ],
        },
        {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather", "tool_call_id": "call_w1"},
        {"role": "tool", "content": "snow, -3 C", "tool_name": "get_weather", "tool_call_id": "call_1"},
    ]


async def test_tool_choice_none_offers_no_tools(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    await adapter.chat(ask(tools=(WEATHER,), tool_choice="none"))
    assert "tools" not in last_chat_body(server)


# --- streaming ----------------------------------------------------------------------------------


async def test_stream_yields_text_usage_and_one_finish(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(chunks=["Hel", "lo", " world"], usage=(9, 3)))

    events = await collect(adapter, ask())

    assert [e.type for e in events] == ["text", "text", "text", "usage", "finish"]
    assert "".join(e.text for e in events) == "Hello world"
    assert events[3].usage == Usage(9, 3)
    assert events[4].finish_reason == "stop"
    assert last_chat_body(server)["stream"] is True


async def test_stream_reports_length_when_cut_by_num_predict(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(text="one two", finish_reason="length"))
    events = await collect(adapter, ask(max_tokens=2))
    assert events[-1].finish_reason == "length"
    assert [e.type for e in events].count("finish") == 1


async def test_stream_tool_calls_become_deltas_with_json_arguments(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(
        Reply(
            text="",
            tool_calls=[
                {"id": "call_abc", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_time", "arguments": {}},
            ],
        )
    )

    events = await collect(adapter, ask(tools=(WEATHER,)))

    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert [(c.index, c.id, c.name) for c in calls if c] == [
        (0, "call_abc", "get_weather"),
        (1, "call_1", "get_time"),
    ]
    assert [json.loads(c.arguments) for c in calls if c] == [{"city": "Paris"}, {}]
    assert events[-1].type == "finish"
    assert events[-1].finish_reason == "tool_calls"


async def test_stream_can_be_abandoned_early(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    server.script(Reply(chunks=["a", "b", "c"]))
    stream = adapter.stream(ask())
    assert isinstance(stream, AsyncGenerator)
    async for event in stream:
        assert event.text == "a"
        break
    await stream.aclose()
    assert (await adapter.chat(ask())).text == "Hello from the fake."


# --- models, health -----------------------------------------------------------------------------


async def test_list_models_fills_capabilities_from_show(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    models = {m.id: m for m in await adapter.list_models()}

    assert set(models) == {"llama3.2:latest", "gemma3:4b"}
    llama, gemma = models["llama3.2:latest"], models["gemma3:4b"]
    assert llama.capabilities is not None and gemma.capabilities is not None
    assert (llama.capabilities.tools, llama.capabilities.vision) == (True, False)
    assert (gemma.capabilities.tools, gemma.capabilities.vision) == (False, True)
    assert llama.capabilities.context_length == 131072
    assert llama.details["family"] == "llama"
    assert llama.details["parameter_size"] == "3.2B"
    assert llama.details["quantization_level"] == "Q4_K_M"
    assert llama.details["size"] == 2019393189
    shown = sorted(r.json()["model"] for r in server.requests_to("/api/show"))
    assert shown == ["gemma3:4b", "llama3.2:latest"]


async def test_list_models_keeps_a_model_whose_show_fails(client: httpx.AsyncClient) -> None:
    models = {
        "broken:latest": {"capabilities": ["completion", "tools", "vision"], "show_status": 500},
        "qwen3:8b": {"family": "qwen3", "capabilities": ["completion", "tools"], "context_length": 40960},
    }
    with FakeOllamaServer(models=models) as fake:
        listed = {m.id: m for m in await make_adapter(client, fake.url).list_models()}

    assert set(listed) == {"broken:latest", "qwen3:8b"}
    assert listed["broken:latest"].capabilities == OllamaAdapter.default_capabilities
    qwen = listed["qwen3:8b"].capabilities
    assert qwen is not None and qwen.tools and not qwen.vision and qwen.context_length == 40960


async def test_list_models_fails_when_tags_fails(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    server.route_errors["/api/tags"] = 500
    try:
        with pytest.raises(ProviderUnavailable):
            await adapter.list_models()
    finally:
        del server.route_errors["/api/tags"]


async def test_loaded_models_follow_api_ps(client: httpx.AsyncClient) -> None:
    models = {"llama3.2:latest": {"loaded": True}, "phi4:14b": {}}
    with FakeOllamaServer(models=models) as fake:
        adapter = make_adapter(client, fake.url)
        assert await adapter.loaded_models() == ["llama3.2:latest"]
        await adapter.chat(ChatRequest(model="phi4:14b", messages=(Message.text("user", "hi"),)))
        assert await adapter.loaded_models() == ["llama3.2:latest", "phi4:14b"]


async def test_version_and_probe(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    assert await adapter.version() == "0.12.3"
    result = await adapter.probe()
    assert result.ok
    assert result.version == "0.12.3"
    assert result.latency_ms > 0
    assert result.error is None


async def test_probe_on_a_closed_port_reports_instead_of_raising(client: httpx.AsyncClient) -> None:
    result = await make_adapter(client, f"http://127.0.0.1:{closed_port()}").probe()
    assert not result.ok
    assert result.error and "refused" in result.error
    assert result.version is None


async def test_probe_and_listing_reject_a_server_that_is_not_ollama(client: httpx.AsyncClient) -> None:
    with NotOllama() as other:
        adapter = make_adapter(client, other.url)
        result = await adapter.probe()
        assert not result.ok and result.error and "not an Ollama server" in result.error
        with pytest.raises(ProviderProtocolError, match="not an Ollama server"):
            await adapter.list_models()


async def test_wrong_base_url_is_not_mistaken_for_an_unknown_model(
    server: FakeOllamaServer, client: httpx.AsyncClient
) -> None:
    adapter = make_adapter(client, server.url + "/v1")
    with pytest.raises(ProviderProtocolError, match="no such endpoint") as caught:
        await adapter.chat(ask())
    assert caught.value.status == 404
    with pytest.raises(ProviderProtocolError, match="no such endpoint"):
        await adapter.list_models()


async def test_probe_fails_when_version_errors(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    server.route_errors["/api/version"] = 503
    try:
        result = await adapter.probe()
    finally:
        del server.route_errors["/api/version"]
    assert not result.ok and result.error and "503" in result.error


# --- errors -------------------------------------------------------------------------------------


async def test_unknown_model_is_upstream_model_not_found(adapter: OllamaAdapter) -> None:
    request = ChatRequest(model="nope:7b", messages=(Message.text("user", "hi"),))
    with pytest.raises(UpstreamModelNotFound, match="model 'nope:7b' not found") as caught:
        await adapter.chat(request)
    assert caught.value.status == 404 and caught.value.provider == "ollama"
    with pytest.raises(UpstreamModelNotFound):
        await collect(adapter, request)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "model 'ghost' not found, try pulling it first"}, UpstreamModelNotFound),
        (400, {"error": "invalid options: num_predict"}, BadRequest),
        (400, {"error": "the input length exceeds the context length"}, ContextTooLong),
        (500, {"error": "llama runner process has terminated: exit status 2"}, ProviderUnavailable),
        (503, None, ProviderUnavailable),
        (429, None, ProviderRateLimited),
    ],
)
async def test_error_statuses_map_to_our_tree(
    server: FakeOllamaServer, adapter: OllamaAdapter, status: int, body: object, expected: type[Exception]
) -> None:
    server.script(Reply(status=status, error_body=body), Reply(status=status, error_body=body))
    with pytest.raises(expected) as caught:
        await adapter.chat(ask())
    assert getattr(caught.value, "status", None) == status
    if isinstance(body, dict):
        assert body["error"] in str(caught.value)
    with pytest.raises(expected):
        await collect(adapter, ask())


async def test_rate_limit_keeps_retry_after(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    server.script(Reply(status=429, headers={"retry-after": "12"}))
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.chat(ask())
    assert caught.value.retry_after == 12.0


async def test_secrets_are_redacted_from_error_messages(
    server: FakeOllamaServer, client: httpx.AsyncClient
) -> None:
    server.reset()
    secret = "sk-proxy-0123456789abcdef"
    server.script(Reply(status=401, error_body={"error": f"bad key {secret}"}))
    with pytest.raises(AuthenticationError) as caught:
        await make_adapter(client, server.url, api_key=secret).chat(ask())
    assert secret not in str(caught.value) and "bad key" in str(caught.value)


async def test_malformed_json_is_a_protocol_error(server: FakeOllamaServer, adapter: OllamaAdapter) -> None:
    server.script(Reply(raw=b"{not json"), Reply(raw=b"{not json\n"))
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await adapter.chat(ask())
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await collect(adapter, ask())


async def test_a_200_that_is_not_ollama_is_a_protocol_error(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    not_ollama = b'{"object": "chat.completion", "choices": []}'
    server.script(Reply(raw=not_ollama), Reply(raw=not_ollama + b"\n"))
    with pytest.raises(ProviderProtocolError, match="not an Ollama server"):
        await adapter.chat(ask())
    with pytest.raises(ProviderProtocolError, match="not an Ollama server"):
        await collect(adapter, ask())


async def test_in_band_error_before_any_text_raises_the_mapped_error(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(stream_error_after=0, stream_error="llama runner process has terminated"))
    events: list[StreamEvent] = []
    with pytest.raises(ProviderUnavailable, match="llama runner process has terminated") as caught:
        await collect(adapter, ask(), events)
    assert not isinstance(caught.value, MidStreamError)
    assert events == []


async def test_in_band_error_after_text_is_a_mid_stream_error(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(chunks=["Once", " upon", " a time"], stream_error_after=2))
    events: list[StreamEvent] = []
    with pytest.raises(MidStreamError) as caught:
        await collect(adapter, ask(), events)
    assert caught.value.partial_text == "Once upon"
    assert isinstance(caught.value.__cause__, ProviderUnavailable)
    assert [e.type for e in events] == ["text", "text"]


async def test_in_band_error_in_a_non_stream_chat_is_raised(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(raw=b'{"error": "an error was encountered while running the model"}'))
    with pytest.raises(ProviderUnavailable, match="while running the model"):
        await adapter.chat(ask())


async def test_stream_ending_without_done_line_raises(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    line = {
        "model": MODEL,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Hi"},
        "done": False,
    }
    server.script(Reply(raw=json.dumps(line).encode() + b"\n"), Reply(raw=b""))
    with pytest.raises(MidStreamError, match="without its final done line") as caught:
        await collect(adapter, ask())
    assert caught.value.partial_text == "Hi"
    with pytest.raises(ProviderProtocolError, match="without its final done line"):
        await collect(adapter, ask())


async def test_dropped_connection_mid_stream_keeps_partial_text(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(chunks=["Hello", " there", " friend"], drop_after=2))
    with pytest.raises(MidStreamError) as caught:
        await collect(adapter, ask())
    assert caught.value.partial_text == "Hello there"
    assert isinstance(caught.value.__cause__, ProviderConnectionError)


async def test_dropped_connection_in_a_non_stream_chat(
    server: FakeOllamaServer, adapter: OllamaAdapter
) -> None:
    server.script(Reply(drop_after=0))
    with pytest.raises(ProviderConnectionError, match="dropped"):
        await adapter.chat(ask())


async def test_slow_server_times_out(server: FakeOllamaServer, client: httpx.AsyncClient) -> None:
    server.reset()
    server.script(Reply(delay=1.0), Reply(delay=1.0))
    slow = make_adapter(client, server.url, timeout=0.3)
    with pytest.raises(ProviderTimeout):
        await slow.chat(ask())
    with pytest.raises(ProviderTimeout):
        await collect(slow, ask())


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    adapter = make_adapter(client, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.chat(ask())
    with pytest.raises(ProviderConnectionError):
        await collect(adapter, ask())
    with pytest.raises(ProviderConnectionError):
        await adapter.list_models()


# --- the normalizer on its own ----------------------------------------------------------------


def test_normalizer_ignores_blank_lines_and_lines_after_done() -> None:
    normalizer = StreamNormalizer()
    assert normalizer.feed("") == []
    assert normalizer.feed('{"message":{"role":"assistant","content":"x"},"done":false}')[0].text == "x"
    final = normalizer.feed('{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}')
    assert [e.type for e in final] == ["finish"]  # no counts, no usage event
    assert normalizer.feed('{"message":{"role":"assistant","content":"late"},"done":false}') == []
    assert normalizer.finish() == []


def test_normalizer_refuses_to_finish_without_done() -> None:
    normalizer = StreamNormalizer()
    normalizer.feed('{"message":{"role":"assistant","content":"x"},"done":false}')
    with pytest.raises(ProviderProtocolError):
        normalizer.finish()


def test_normalizer_tolerates_padding_around_a_line() -> None:
    events = StreamNormalizer().feed(' {"message":{"role":"assistant","content":"x"},"done":false}\r ')
    assert [e.text for e in events] == ["x"]


@pytest.mark.parametrize(
    "line",
    [
        "[1, 2]",
        '{"id": "x"}',
        '{"message": "text", "done": false}',
        '{"message": {"content": 5}, "done": false}',
        '{"message": {"content": "a"}, "done": false} trailing',
        '{"message": {"content": "a"',
    ],
)
def test_normalizer_rejects_lines_that_are_not_ollama(line: str) -> None:
    with pytest.raises(ProviderProtocolError):
        StreamNormalizer().feed(line)
