"""Tests of the OpenAI-compatible adapter against the fake OpenAI server over real HTTP."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContentFiltered,
    ContextTooLong,
    InvalidRequest,
    MidStreamError,
    ProviderConnectionError,
    ProviderError,
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
    ToolCallDelta,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from mmstudio.providers.openai_compat import OpenAICompatAdapter, StreamNormalizer
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import Reply, closed_port
from tests.fakes.openai_server import FakeOpenAIServer

MODEL = "gpt-test"
KEY = "sk-test-SECRET-1234567890"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

FakeFactory = Callable[..., FakeOpenAIServer]
# Loading the CA bundle dominates a client's construction; the fresh client per test shares it.
TLS = ssl.create_default_context()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, FakeOpenAIServer]]:
    """One fake per flavor for the whole module; `fake` resets it for each test."""
    started: dict[str, FakeOpenAIServer] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def fake(servers: dict[str, FakeOpenAIServer]) -> FakeFactory:
    def get(
        flavor: str = "openai", *, api_key: str | None = None, models: list[str] | None = None
    ) -> FakeOpenAIServer:
        server = servers.get(flavor)
        if server is None:
            server = servers[flavor] = FakeOpenAIServer(flavor=flavor)
            server.start()
        server.reset()
        server.default = Reply()
        server.api_key = api_key
        server.models = list(models) if models is not None else [MODEL]
        server.models_reply = None
        server.native_models = {}
        return server

    return get


@pytest.fixture
def server(fake: FakeFactory) -> FakeOpenAIServer:
    return fake()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(verify=TLS) as http:
        yield http


def make_adapter(client: httpx.AsyncClient, base_url: str, **settings: Any) -> OpenAICompatAdapter:
    values: dict[str, Any] = {"provider": "openai", "timeout": 3.0, **settings}
    return OpenAICompatAdapter(EndpointConfig(base_url=base_url, **values), client)


@pytest.fixture
def adapter(server: FakeOpenAIServer, client: httpx.AsyncClient) -> OpenAICompatAdapter:
    return make_adapter(client, f"{server.url}/v1", api_key=KEY)


def ask(text: str = "Hi", **fields: Any) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", MODEL), messages=(Message.text("user", text),), **fields)


async def collect(
    adapter: OpenAICompatAdapter, request: ChatRequest, into: list[StreamEvent]
) -> list[StreamEvent]:
    async for event in adapter.stream(request):
        into.append(event)
    return into


def chat_bodies(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [r.json() for r in server.requests_to("/v1/chat/completions")]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if e.type == "text")


# --- chat ----------------------------------------------------------------------------------------


async def test_chat_sends_the_openai_body_and_parses_the_answer(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(text="A red square.", usage=(11, 4)))
    request = ChatRequest(
        model=MODEL,
        messages=(Message.text("system", "Be brief."), Message.text("user", "What is this?")),
        tools=(WEATHER,),
        tool_choice="get_weather",
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop=("END",),
        seed=7,
        json_mode=True,
        extra={"user": "u-1", "presence_penalty": 0.5},
    )

    response = await adapter.chat(request)

    assert response.text == "A red square."
    assert response.finish_reason == "stop"
    assert response.usage == Usage(11, 4)
    assert response.model == MODEL
    assert response.id is not None and response.id.startswith("chatcmpl-")
    recorded = server.requests_to("/v1/chat/completions")[-1]
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.json() == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": dict(WEATHER.parameters),
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 7,
        "stop": ["END"],
        "response_format": {"type": "json_object"},
        "user": "u-1",
        "presence_penalty": 0.5,
        "stream": False,
    }


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
async def test_tool_choice_keywords_are_sent_as_strings(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter, choice: str
) -> None:
    await adapter.chat(ask(tools=(WEATHER,), tool_choice=choice))
    assert chat_bodies(server)[-1]["tool_choice"] == choice


async def test_no_auth_header_without_a_key(server: FakeOpenAIServer, client: httpx.AsyncClient) -> None:
    adapter = make_adapter(client, f"{server.url}/v1")
    await adapter.chat(ask())
    assert "authorization" not in server.requests_to("/v1/chat/completions")[-1].headers


async def test_image_input_is_sent_as_image_url_parts(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    message = Message(
        "user",
        (
            TextPart("Compare these."),
            ImagePart(data=PNG, media_type="image/png"),
            ImagePart(url="https://x.test/a.jpg"),
        ),
    )
    await adapter.chat(ChatRequest(model=MODEL, messages=(message,)))

    content = chat_bodies(server)[-1]["messages"][0]["content"]
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert content == [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
    ]


async def test_image_without_data_or_url_is_an_invalid_request(adapter: OpenAICompatAdapter) -> None:
    message = Message("user", (TextPart("?"), ImagePart()))
    with pytest.raises(InvalidRequest):
        await adapter.chat(ChatRequest(model=MODEL, messages=(message,)))


async def test_a_request_without_messages_is_refused(adapter: OpenAICompatAdapter) -> None:
    with pytest.raises(InvalidRequest):
        await adapter.chat(ChatRequest(model=MODEL, messages=()))


# --- tool calls ------------------------------------------------------------------------------


async def test_tool_call_round_trip(server: FakeOpenAIServer, adapter: OpenAICompatAdapter) -> None:
    call = {"id": "call_abc", "name": "get_weather", "arguments": {"city": "Paris"}}
    server.script(Reply(text="", tool_calls=[call]), Reply(text="It is sunny in Paris."))
    first = await adapter.chat(ask("Weather in Paris?", tools=(WEATHER,)))

    assert first.tool_calls == (ToolCall(id="call_abc", name="get_weather", arguments={"city": "Paris"}),)
    assert first.finish_reason == "tool_calls"
    assert first.text == ""

    follow_up = ChatRequest(
        model=MODEL,
        messages=(
            Message.text("user", "Weather in Paris?"),
            Message("assistant", first.tool_calls),
            Message(
                "tool",
                (ToolResultPart(tool_call_id="call_abc", name="get_weather", content='{"sky":"sunny"}'),),
            ),
        ),
        tools=(WEATHER,),
    )
    second = await adapter.chat(follow_up)

    assert second.text == "It is sunny in Paris."
    messages = chat_bodies(server)[-1]["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "call_abc", "content": '{"sky":"sunny"}'}


async def test_each_tool_result_becomes_its_own_tool_message(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    results = Message(
        "tool",
        (
            ToolResultPart(tool_call_id="call_1", name="a", content="one"),
            ToolResultPart(tool_call_id="call_2", name="b", content="two"),
        ),
    )
    await adapter.chat(ChatRequest(model=MODEL, messages=(Message.text("user", "go"), results)))
    assert chat_bodies(server)[-1]["messages"][1:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": "two"},
    ]


async def test_streamed_tool_call_fragments_reassemble(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    arguments = {"city": "Paris", "unit": "celsius", "days": 3}
    server.script(
        Reply(text="", tool_calls=[{"id": "call_xyz", "name": "get_weather", "arguments": arguments}])
    )

    events = await collect(adapter, ask(tools=(WEATHER,)), [])

    deltas = [e.tool_call for e in events if e.type == "tool_call"]
    assert len(deltas) > 2  # the arguments came in several fragments
    assert deltas[0] == ToolCallDelta(index=0, id="call_xyz", name="get_weather", arguments="")
    assert all(d is not None and d.index == 0 and d.id is None and d.name is None for d in deltas[1:])
    assert json.loads("".join(d.arguments for d in deltas if d is not None)) == arguments
    assert events[-1] == StreamEvent("finish", finish_reason="tool_calls")


async def test_invalid_tool_arguments_are_a_protocol_error(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(text="", tool_calls=[{"id": "c1", "name": "get_weather", "arguments": '{"city": '}]))
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await adapter.chat(ask())


# --- streaming ---------------------------------------------------------------------------------


async def test_stream_yields_text_then_one_usage_then_finish(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(chunks=["Hel", "lo", " world"], usage=(9, 3)))

    events = await collect(adapter, ask(), [])

    assert [e.text for e in events if e.type == "text"] == ["Hel", "lo", " world"]
    assert [e.type for e in events][-2:] == ["usage", "finish"]
    assert [e.usage for e in events if e.type == "usage"] == [Usage(9, 3)]
    assert events[-1].finish_reason == "stop"
    body = chat_bodies(server)[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_still_finishes(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(text="short answer", usage=None, finish_reason="length"))
    events = await collect(adapter, ask(), [])
    assert [e.type for e in events] == ["text", "text", "finish"]
    assert events[-1].finish_reason == "length"


@pytest.mark.parametrize("flavor", ["xai", "lmstudio", "ollama_v1", "llamacpp"])
async def test_other_flavors_stream_and_chat(
    fake: FakeFactory, client: httpx.AsyncClient, flavor: str
) -> None:
    server = fake(flavor)
    adapter = make_adapter(client, f"{server.url}/v1", provider=flavor)
    server.script(Reply(text="one two", usage=(2, 2)), Reply(text="three"))

    events = await collect(adapter, ask(), [])
    response = await adapter.chat(ask())

    assert text_of(events) == "one two"
    assert events[-1].type == "finish"
    assert response.text == "three"


async def test_closing_a_stream_early_frees_the_connection(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(chunks=["a", "b", "c"]), Reply(text="next"))
    stream = adapter.stream(ask())
    async for event in stream:
        assert event.text == "a"
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await adapter.chat(ask())).text == "next"


# --- models and health ------------------------------------------------------------------------


async def test_list_models(fake: FakeFactory, client: httpx.AsyncClient) -> None:
    server = fake(models=["gpt-test", "gpt-other"])
    models = await make_adapter(client, f"{server.url}/v1").list_models()
    assert [m.id for m in models] == ["gpt-test", "gpt-other"]
    assert all(m.owned_by == "system" and m.capabilities is None for m in models)


async def test_lmstudio_models_get_capabilities_from_the_native_api(
    fake: FakeFactory, client: httpx.AsyncClient
) -> None:
    server = fake("lmstudio", models=["qwen2-vl-7b", "llama-3.2-3b"])
    server.native_models = {"qwen2-vl-7b": {"type": "vlm", "max_context_length": 32768}}
    adapter = make_adapter(client, f"{server.url}/v1", provider="lmstudio", quirks=frozenset({"lmstudio"}))

    models = {m.id: m for m in await adapter.list_models()}

    vision = models["qwen2-vl-7b"].capabilities
    text_only = models["llama-3.2-3b"].capabilities
    assert vision is not None and vision.vision and vision.context_length == 32768
    assert text_only is not None and not text_only.vision and text_only.context_length == 4096
    assert models["qwen2-vl-7b"].details["arch"] == "llama"
    assert len(server.requests_to("/api/v0/models")) == 1


async def test_lmstudio_quirk_survives_a_missing_native_api(
    fake: FakeFactory, client: httpx.AsyncClient
) -> None:
    server = fake("openai")  # answers /api/v0/models with a 404
    adapter = make_adapter(client, f"{server.url}/v1", quirks=frozenset({"lmstudio"}))
    models = await adapter.list_models()
    assert [(m.id, m.capabilities) for m in models] == [(MODEL, None)]
    assert len(server.requests_to("/api/v0/models")) == 1


async def test_probe_ok(server: FakeOpenAIServer, adapter: OpenAICompatAdapter) -> None:
    result = await adapter.probe()
    assert result.ok and result.error is None
    assert result.latency_ms > 0
    assert server.requests_to("/v1/models")


async def test_probe_on_a_closed_port_reports_without_raising(client: httpx.AsyncClient) -> None:
    adapter = make_adapter(client, f"http://127.0.0.1:{closed_port()}/v1")
    result = await adapter.probe()
    assert not result.ok
    assert result.error and "refused" in result.error


async def test_probe_and_list_models_report_a_failing_server(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.models_reply = Reply(status=503)
    result = await adapter.probe()
    assert not result.ok and result.error and "overloaded" in result.error
    with pytest.raises(ProviderUnavailable):
        await adapter.list_models()


async def test_probe_reports_a_bad_key(fake: FakeFactory, client: httpx.AsyncClient) -> None:
    server = fake(api_key="sk-the-right-one-000000")
    result = await make_adapter(client, f"{server.url}/v1", api_key=KEY).probe()
    assert not result.ok
    assert result.error and KEY not in result.error


# --- errors ------------------------------------------------------------------------------------


def context_body(server: FakeOpenAIServer) -> dict[str, Any]:
    message = (
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."
    )
    return server.error_payload(400, message, code="context_length_exceeded")


ERROR_CASES: list[tuple[str, Callable[[FakeOpenAIServer], Reply], type[ProviderError]]] = [
    ("401", lambda s: Reply(status=401), AuthenticationError),
    ("403", lambda s: Reply(status=403), AuthenticationError),
    ("429", lambda s: Reply(status=429, headers={"retry-after": "7"}), ProviderRateLimited),
    ("400-context", lambda s: Reply(status=400, error_body=context_body(s)), ContextTooLong),
    ("400-other", lambda s: Reply(status=400), BadRequest),
    ("404", lambda s: Reply(status=404), UpstreamModelNotFound),
    ("500", lambda s: Reply(status=500), ProviderUnavailable),
    ("503", lambda s: Reply(status=503), ProviderUnavailable),
    (
        "content-policy",
        lambda s: Reply(
            status=400, error_body=s.error_payload(400, "Rejected.", code="content_policy_violation")
        ),
        ContentFiltered,
    ),
]


@pytest.mark.parametrize(
    ("reply", "expected"), [(r, e) for _, r, e in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
@pytest.mark.parametrize("mode", ["chat", "stream"])
async def test_http_errors_map_to_our_exceptions(
    server: FakeOpenAIServer,
    adapter: OpenAICompatAdapter,
    reply: Callable[[FakeOpenAIServer], Reply],
    expected: type[ProviderError],
    mode: str,
) -> None:
    server.script(reply(server))
    with pytest.raises(expected) as caught:
        if mode == "chat":
            await adapter.chat(ask())
        else:
            await collect(adapter, ask(), [])
    assert not isinstance(caught.value, MidStreamError)  # nothing was yielded before the failure
    assert caught.value.provider == "openai"


async def test_rate_limit_reads_retry_after_headers(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(
        Reply(status=429, headers={"retry-after": "7"}),
        Reply(status=429, headers={"retry-after-ms": "1500", "retry-after": "9"}),
    )
    with pytest.raises(ProviderRateLimited) as seconds:
        await adapter.chat(ask())
    with pytest.raises(ProviderRateLimited) as millis:
        await adapter.chat(ask())
    assert seconds.value.retry_after == 7.0
    assert millis.value.retry_after == 1.5
    assert seconds.value.status == 429


async def test_unknown_model_is_upstream_model_not_found(adapter: OpenAICompatAdapter) -> None:
    with pytest.raises(UpstreamModelNotFound, match="gpt-missing"):
        await adapter.chat(ask(model="gpt-missing"))


async def test_error_messages_carry_the_request_id(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(status=500, headers={"x-request-id": "req_trace_me"}))
    with pytest.raises(ProviderUnavailable, match="req_trace_me"):
        await adapter.chat(ask())


async def test_xai_bad_key_400_is_an_authentication_error(
    fake: FakeFactory, client: httpx.AsyncClient
) -> None:
    server = fake("xai", api_key="xai-the-right-one-000000")
    adapter = make_adapter(client, f"{server.url}/v1", provider="xai", api_key=KEY, quirks=frozenset({"xai"}))
    with pytest.raises(AuthenticationError) as caught:
        await adapter.chat(ask())
    assert caught.value.status == 400
    assert "Incorrect API key" in caught.value.message
    assert KEY not in caught.value.message


async def test_xai_errors_in_their_own_shape(fake: FakeFactory, client: httpx.AsyncClient) -> None:
    server = fake("xai")
    adapter = make_adapter(client, f"{server.url}/v1", provider="xai")
    too_long = "This model's maximum prompt length is 131072 but the request contains 140000 tokens."
    server.script(Reply(status=400, error_body=server.error_payload(400, too_long)), Reply(status=429))
    with pytest.raises(ContextTooLong, match="maximum prompt length"):
        await adapter.chat(ask())
    with pytest.raises(ProviderRateLimited, match="Too many requests"):
        await adapter.chat(ask())
    with pytest.raises(UpstreamModelNotFound):
        await adapter.chat(ask(model="grok-nope"))


async def test_llamacpp_errors_in_their_own_shape(fake: FakeFactory, client: httpx.AsyncClient) -> None:
    server = fake("llamacpp")
    adapter = make_adapter(client, f"{server.url}/v1", provider="llamacpp")
    too_long = "the request exceeds the available context size, try increasing it"
    body = server.error_payload(400, too_long, type="exceed_context_size_error")
    server.script(Reply(status=400, error_body=body), Reply(status=503))
    with pytest.raises(ContextTooLong):
        await adapter.chat(ask())
    with pytest.raises(ProviderUnavailable):
        await adapter.chat(ask())


@pytest.mark.parametrize("mode", ["chat", "stream", "models"])
async def test_lmstudio_unexpected_endpoint_200_is_a_protocol_error(
    fake: FakeFactory, client: httpx.AsyncClient, mode: str
) -> None:
    server = fake("lmstudio")
    adapter = make_adapter(client, server.url, provider="lmstudio")  # forgot the /v1
    with pytest.raises(ProviderProtocolError, match="Unexpected endpoint") as caught:
        if mode == "chat":
            await adapter.chat(ask())
        elif mode == "stream":
            await collect(adapter, ask(), [])
        else:
            await adapter.list_models()
    assert "/v1" in caught.value.message
    assert not isinstance(caught.value, MidStreamError)


@pytest.mark.parametrize("mode", ["chat", "stream"])
async def test_a_200_error_body_about_the_model_is_model_not_found(
    fake: FakeFactory, client: httpx.AsyncClient, mode: str
) -> None:
    server = fake("lmstudio")
    adapter = make_adapter(client, f"{server.url}/v1", provider="lmstudio")
    server.script(Reply(status=200, error_body={"error": "Model 'qwen-7b' is not loaded. Load it first."}))
    with pytest.raises(UpstreamModelNotFound, match="not loaded"):
        if mode == "chat":
            await adapter.chat(ask())
        else:
            await collect(adapter, ask(), [])


async def test_malformed_json_body_is_a_protocol_error(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(raw=b"<html>502 from a proxy</html>"), Reply(raw=b'{"choices": [{"message": '))
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await adapter.chat(ask())
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await adapter.chat(ask())


async def test_a_completion_without_choices_is_a_protocol_error(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(raw=b'{"id": "x", "object": "chat.completion", "choices": []}'))
    with pytest.raises(ProviderProtocolError, match="without choices"):
        await adapter.chat(ask())


@pytest.mark.parametrize("mode", ["chat", "stream"])
async def test_timeout(server: FakeOpenAIServer, client: httpx.AsyncClient, mode: str) -> None:
    adapter = make_adapter(client, f"{server.url}/v1", timeout=0.3)
    server.script(Reply(delay=3.0))
    with pytest.raises(ProviderTimeout):
        if mode == "chat":
            await adapter.chat(ask())
        else:
            await collect(adapter, ask(), [])


@pytest.mark.parametrize("mode", ["chat", "stream", "models"])
async def test_connection_refused(client: httpx.AsyncClient, mode: str) -> None:
    adapter = make_adapter(client, f"http://127.0.0.1:{closed_port()}/v1", api_key=KEY)
    with pytest.raises(ProviderConnectionError) as caught:
        if mode == "chat":
            await adapter.chat(ask())
        elif mode == "stream":
            await collect(adapter, ask(), [])
        else:
            await adapter.list_models()
    assert KEY not in str(caught.value)


async def test_dropped_connection_on_a_plain_reply(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(text="a long enough answer to cut in half", drop_after=0))
    with pytest.raises(ProviderConnectionError):
        await adapter.chat(ask())


async def test_mid_stream_drop_keeps_the_partial_text(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(chunks=["Hello", " there", " friend"], drop_after=3))  # role chunk + 2 texts
    events: list[StreamEvent] = []
    with pytest.raises(MidStreamError) as caught:
        await collect(adapter, ask(), events)
    assert text_of(events) == "Hello there"
    assert caught.value.partial_text == "Hello there"
    assert caught.value.retryable


async def test_in_band_error_chunk_mid_stream(server: FakeOpenAIServer, adapter: OpenAICompatAdapter) -> None:
    server.script(Reply(chunks=["Hello", " there", " friend"], stream_error_after=2))
    with pytest.raises(MidStreamError, match="had an error") as caught:
        await collect(adapter, ask(), [])
    assert caught.value.partial_text == "Hello"


async def test_in_band_error_before_any_text_is_the_mapped_error(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    rate = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    server.script(Reply(stream_error_after=1), Reply(stream_error_after=0, stream_error=rate))
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(adapter, ask(), [])
    assert not isinstance(caught.value, MidStreamError)
    with pytest.raises(ProviderRateLimited):
        await collect(adapter, ask(), [])


def sse(*chunks: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n" for c in chunks
    )


def delta_chunk(content: str | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


async def test_a_stream_cut_without_done_raises(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(raw=sse(delta_chunk("Hel"), delta_chunk("lo"))), Reply(raw=sse(delta_chunk(""))))
    events: list[StreamEvent] = []
    with pytest.raises(MidStreamError, match="before it finished") as caught:
        await collect(adapter, ask(), events)
    assert caught.value.partial_text == "Hello"
    with pytest.raises(ProviderProtocolError, match="before it finished") as nothing:
        await collect(adapter, ask(), [])
    assert not isinstance(nothing.value, MidStreamError)


async def test_a_finished_stream_without_done_is_accepted(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter
) -> None:
    server.script(Reply(raw=sse(delta_chunk("Hi"), delta_chunk(None, "stop"))))
    events = await collect(adapter, ask(), [])
    assert events == [StreamEvent("text", "Hi"), StreamEvent("finish", finish_reason="stop")]


@pytest.mark.parametrize("mode", ["chat", "stream"])
async def test_content_filter_without_content_raises(
    server: FakeOpenAIServer, adapter: OpenAICompatAdapter, mode: str
) -> None:
    server.script(Reply(text="", finish_reason="content_filter"))
    with pytest.raises(ContentFiltered):
        if mode == "chat":
            await adapter.chat(ask())
        else:
            await collect(adapter, ask(), [])


async def test_the_api_key_never_appears_in_errors(fake: FakeFactory, client: httpx.AsyncClient) -> None:
    server = fake(api_key="sk-the-right-one-000000")
    adapter = make_adapter(client, f"{server.url}/v1", api_key=KEY)
    caught: list[ProviderError] = []

    async def failing(call: Callable[[], Any]) -> None:
        with pytest.raises(ProviderError) as info:
            await call()
        caught.append(info.value)

    await failing(lambda: adapter.chat(ask()))  # 401 echoing the key masked, as OpenAI does
    server.api_key = None
    echo = f"something broke for key {KEY} (starts {KEY[:12]})"
    server.script(
        Reply(status=500, error_body={"error": {"message": echo, "type": "server_error"}}),
        Reply(status=200, error_body={"error": echo}),
        Reply(raw=f"<html>{echo}</html>".encode()),
        Reply(chunks=["a", "b"], stream_error_after=2, stream_error={"message": echo}),
    )
    await failing(lambda: adapter.chat(ask()))
    await failing(lambda: adapter.chat(ask()))
    await failing(lambda: adapter.chat(ask()))
    await failing(lambda: collect(adapter, ask(), []))

    assert [type(e) for e in caught] == [
        AuthenticationError,
        ProviderUnavailable,
        ProviderProtocolError,
        ProviderProtocolError,
        MidStreamError,
    ]
    for error in caught:
        assert KEY not in str(error) and KEY[:12] not in str(error)
        assert "SECRET" not in str(error)


# --- the normalizer on its own -----------------------------------------------------------------


def test_normalizer_holds_usage_until_done() -> None:
    normalizer = StreamNormalizer()
    events = [
        *normalizer.feed(json.dumps(delta_chunk("a"))),
        *normalizer.feed(json.dumps(delta_chunk(None, "stop"))),
    ]
    events += normalizer.feed(
        json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    )
    events += normalizer.feed("[DONE]")
    events += normalizer.feed("[DONE]")  # anything after [DONE] is ignored
    events += normalizer.finish()
    assert events == [
        StreamEvent("text", "a"),
        StreamEvent("usage", usage=Usage(3, 1)),
        StreamEvent("finish", finish_reason="stop"),
    ]


def test_normalizer_tolerates_tool_calls_without_index_and_stop_reason() -> None:
    normalizer = StreamNormalizer()
    first = {"id": "call_1", "function": {"name": "f", "arguments": '{"a":'}}
    rest = {"function": {"arguments": " 1}"}}
    events = normalizer.feed(json.dumps({"choices": [{"delta": {"tool_calls": [first]}}]}))
    events += normalizer.feed(
        json.dumps({"choices": [{"delta": {"tool_calls": [rest]}, "finish_reason": "stop"}]})
    )
    events += normalizer.finish()
    assert [e.tool_call for e in events[:2]] == [
        ToolCallDelta(0, "call_1", "f", '{"a":'),
        ToolCallDelta(0, None, None, " 1}"),
    ]
    assert events[-1].finish_reason == "tool_calls"


def test_normalizer_refuses_garbage_and_truncation() -> None:
    with pytest.raises(ProviderProtocolError):
        StreamNormalizer().feed("{not json")
    with pytest.raises(ProviderProtocolError):
        StreamNormalizer().feed("[1, 2]")
    truncated = StreamNormalizer()
    truncated.feed(json.dumps(delta_chunk("partial")))
    with pytest.raises(ProviderProtocolError):
        truncated.finish()


# --- the transport seam -------------------------------------------------------------------------


async def test_any_other_httpx_client_is_used_through_httpx(server: FakeOpenAIServer) -> None:
    # `make_http_client()`'s client is reached directly on aiohttp; any other httpx client (a test's
    # MockTransport, a proxy-aware client) still works through httpx's API, with the same mapping.
    async with httpx.AsyncClient() as plain:
        adapter = make_adapter(plain, f"{server.url}/v1", api_key=KEY)
        server.script(Reply(text="Plain."), Reply(text="Streamed.", usage=(3, 2)), Reply(status=429))
        assert (await adapter.chat(ask())).text == "Plain."
        events = await collect(adapter, ask(), [])
        assert text_of(events) == "Streamed." and events[-1].finish_reason == "stop"
        with pytest.raises(ProviderRateLimited):
            await adapter.chat(ask())
        refused = make_adapter(plain, f"http://127.0.0.1:{closed_port()}/v1")
        with pytest.raises(ProviderConnectionError):
            await refused.chat(ask())
    assert chat_bodies(server)[1]["stream"] is True
    assert server.requests_to("/v1/chat/completions")[0].headers["authorization"] == f"Bearer {KEY}"
