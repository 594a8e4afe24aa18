"""AnthropicAdapter against FakeAnthropicServer over real HTTP, plus StreamNormalizer unit tests."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContentFiltered,
    ContextTooLong,
    MidStreamError,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
)
from mmstudio.providers.anthropic import AnthropicAdapter, StreamNormalizer
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
)
from mmstudio.providers.transport import make_http_client
from tests.fakes.anthropic_server import FakeAnthropicServer, sse
from tests.fakes.base import Reply, closed_port

KEY = "sk-ant-api03-Zx9Qm2Lp7Vt4Rw8Ny6Kb3Hd5"
MODEL = "claude-test"
WEATHER: dict[str, Any] = {
    "id": "toolu_01",
    "name": "get_weather",
    "arguments": {"city": "Paris", "units": "metric"},
}
CLOCK: dict[str, Any] = {
    "id": "toolu_02",
    "name": "get_time",
    "arguments": {"tz": "Europe/Paris", "nested": {"a": [1, 2]}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropicServer]:
    fake = FakeAnthropicServer(api_key=KEY, models=[MODEL])
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeAnthropicServer) -> FakeAnthropicServer:
    server.reset()
    server.default = Reply()
    server.models = [MODEL]
    return server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as http:
        yield http


def adapter_for(url: str, client: httpx.AsyncClient, **config: Any) -> AnthropicAdapter:
    settings: dict[str, Any] = {"api_key": KEY, "provider": "anthropic", **config}
    return AnthropicAdapter(EndpointConfig(base_url=url, **settings), client)


@pytest.fixture
def adapter(fake: FakeAnthropicServer, client: httpx.AsyncClient) -> AnthropicAdapter:
    return adapter_for(fake.url, client)


def ask(*messages: Message, **options: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=messages or (Message.text("user", "Hi"),), **options)


async def collect(adapter: AnthropicAdapter, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in adapter.stream(request)]


def arguments_by_index(events: list[StreamEvent]) -> dict[int, str]:
    joined: dict[int, str] = {}
    for event in events:
        if event.type == "tool_call" and event.tool_call is not None:
            joined[event.tool_call.index] = joined.get(event.tool_call.index, "") + event.tool_call.arguments
    return joined


# -- chat ----------------------------------------------------------------------------------------


async def test_chat_sends_anthropic_request_and_parses_message(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(text="Bonjour !", usage=(12, 3)))
    request = ask(
        Message.text("system", "Be brief."),
        Message.text("user", "Hi"),
        Message.text("system", "Answer in French."),
        Message.text("user", "Still there?"),
        Message.text("assistant", "Yes."),
        Message.text("assistant", "Ask away."),
        Message.text("user", "Say hello"),
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        seed=7,
        extra={"metadata": {"user_id": "u-1"}},
    )
    response = await adapter.chat(request)

    assert response.text == "Bonjour !"
    assert response.finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model == MODEL
    assert response.id is not None and response.id.startswith("msg_")

    [sent] = fake.requests_to("/v1/messages")
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    body = sent.json()
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["max_tokens"] == 4096
    assert "stream" not in body
    assert "seed" not in body  # Anthropic has no seed
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Still there?"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Yes."}, {"type": "text", "text": "Ask away."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
    ]


async def test_chat_uses_requested_max_tokens_and_json_mode_instruction(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    await adapter.chat(
        ask(
            Message.text("system", "You are terse."), Message.text("user", "x"), max_tokens=99, json_mode=True
        )
    )
    body = fake.requests[-1].json()
    assert body["max_tokens"] == 99
    assert body["system"].startswith("You are terse.\n\n")
    assert "JSON" in body["system"]


async def test_chat_tool_calls_are_parsed_dicts(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    fake.script(Reply(text="Let me check.", tool_calls=[WEATHER, CLOCK]))
    tools = (
        ToolSpec(
            "get_weather", "Current weather", {"type": "object", "properties": {"city": {"type": "string"}}}
        ),
        ToolSpec("get_time"),
    )
    response = await adapter.chat(ask(tools=tools, tool_choice="required"))

    assert response.finish_reason == "tool_calls"
    assert response.text == "Let me check."
    assert response.tool_calls == (
        ToolCall("toolu_01", "get_weather", WEATHER["arguments"]),
        ToolCall("toolu_02", "get_time", CLOCK["arguments"]),
    )
    body = fake.requests[-1].json()
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("get_time", {"type": "tool", "name": "get_time"}),
    ],
)
def test_tool_choice_translation(choice: str, expected: dict[str, str]) -> None:
    adapter = AnthropicAdapter(EndpointConfig(base_url="http://unused"), httpx.AsyncClient())
    body = adapter.build_body(ask(tools=(ToolSpec("get_time"),), tool_choice=choice), stream=False)
    assert body["tool_choice"] == expected


async def test_tool_results_go_back_as_one_user_turn(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(text="Let me check.", tool_calls=[WEATHER, CLOCK]), Reply(text="18°C at noon."))
    first = await adapter.chat(ask(Message.text("user", "Weather and time in Paris?")))
    second = await adapter.chat(
        ask(
            Message.text("user", "Weather and time in Paris?"),
            Message("assistant", (TextPart(first.text), *first.tool_calls)),
            Message("tool", (ToolResultPart("toolu_01", "get_weather", "18°C"),)),
            Message("tool", (ToolResultPart("toolu_02", "get_time", "clock broken", is_error=True),)),
        )
    )
    assert second.text == "18°C at noon."

    messages = fake.requests[-1].json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": WEATHER["arguments"]},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": CLOCK["arguments"]},
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C"},
        {"type": "tool_result", "tool_use_id": "toolu_02", "content": "clock broken", "is_error": True},
    ]


async def test_image_input_blocks(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    await adapter.chat(
        ask(
            Message(
                "user",
                (
                    TextPart("What is in these?"),
                    ImagePart(data=png, media_type="image/png"),
                    ImagePart(url="https://example.com/cat.jpg"),
                    ImagePart(url="data:image/webp;base64,UklGRg=="),
                ),
            )
        )
    )
    content = fake.requests[-1].json()["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is in these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgpmYWtl"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}},
    ]


async def test_base_url_with_v1_suffix_is_tolerated(
    fake: FakeAnthropicServer, client: httpx.AsyncClient
) -> None:
    adapter = adapter_for(fake.url + "/v1/", client)
    assert (await adapter.chat(ask())).text == "Hello from the fake."
    assert fake.requests[-1].path == "/v1/messages"


async def test_refusal_is_content_filtered(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    fake.script(Reply(text="", finish_reason="refusal"), Reply(text="", finish_reason="refusal"))
    with pytest.raises(ContentFiltered):
        await adapter.chat(ask())
    with pytest.raises(ContentFiltered):
        await collect(adapter, ask())


# -- streaming -----------------------------------------------------------------------------------


async def test_stream_text_usage_and_one_final_finish(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(chunks=["Hel", "lo", " wor", "ld", "!"], usage=(11, 5)))
    events = await collect(adapter, ask())

    assert "".join(e.text for e in events if e.type == "text") == "Hello world!"
    assert [e.type for e in events] == ["text"] * 5 + ["usage", "finish"]
    assert events[-1].finish_reason == "stop"
    usage = events[-2].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (11, 5)
    assert fake.requests[-1].json()["stream"] is True


async def test_fake_interleaves_pings_in_a_faithful_event_order(fake: FakeAnthropicServer) -> None:
    fake.script(Reply(chunks=["a", "b", "c", "d"]))
    async with make_http_client() as http:
        response = await http.post(
            fake.url + "/v1/messages",
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
            json={
                "model": MODEL,
                "max_tokens": 10,
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    names = [line[len("event: ") :] for line in response.text.splitlines() if line.startswith("event: ")]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [i for i, name in enumerate(names) if name == "content_block_delta"]
    assert any(names[i] == "ping" for i in range(deltas[0], deltas[-1]))  # a ping between deltas


async def test_stream_tool_call_fragments_reassemble(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(text="Checking.", tool_calls=[WEATHER, CLOCK]))
    events = await collect(adapter, ask(tools=(ToolSpec("get_weather"), ToolSpec("get_time"))))

    starts = [e.tool_call for e in events if e.type == "tool_call" and e.tool_call and e.tool_call.id]
    assert [(s.index, s.id, s.name) for s in starts if s] == [
        (0, "toolu_01", "get_weather"),
        (1, "toolu_02", "get_time"),
    ]
    fragments = [e for e in events if e.type == "tool_call" and e.tool_call and e.tool_call.arguments]
    assert len(fragments) > 4  # really streamed in pieces
    joined = arguments_by_index(events)
    assert {index: json.loads(text) for index, text in joined.items()} == {
        0: WEATHER["arguments"],
        1: CLOCK["arguments"],
    }
    assert "".join(e.text for e in events if e.type == "text") == "Checking."
    assert events[-1].type == "finish" and events[-1].finish_reason == "tool_calls"
    assert sum(e.type == "finish" for e in events) == 1


async def test_stream_closed_early_by_the_caller_releases_the_connection(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(chunks=["a", "b", "c"]))
    stream = adapter.stream(ask())
    first = await anext(stream)
    assert first.text == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await adapter.chat(ask())).text == "Hello from the fake."


async def test_stream_error_event_before_text_is_the_mapped_error(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(chunks=["a", "b"], stream_error_after=0))
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(adapter, ask())
    assert not isinstance(caught.value, MidStreamError)
    assert caught.value.status == 529
    assert "overloaded_error" in caught.value.message


async def test_stream_error_event_after_text_is_mid_stream_error(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(chunks=["Hel", "lo", " there"], stream_error_after=2))
    with pytest.raises(MidStreamError) as caught:
        await collect(adapter, ask())
    assert caught.value.partial_text == "Hello"
    assert isinstance(caught.value.__cause__, ProviderUnavailable)
    assert caught.value.status == 529


async def test_stream_dropped_connection_is_mid_stream_error(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(chunks=["one", " two", " three"], drop_after=2))
    with pytest.raises(MidStreamError) as caught:
        await collect(adapter, ask())
    assert caught.value.partial_text == "one two"
    assert isinstance(caught.value.__cause__, ProviderConnectionError)


def _events_without_stop(*texts: str) -> bytes:
    body = sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": MODEL,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        }
    )
    body += sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for text in texts:
        body += sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        )
    return body


async def test_stream_cleanly_closed_before_message_stop_raises(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(raw=_events_without_stop("par", "tial")), Reply(raw=_events_without_stop()))
    with pytest.raises(MidStreamError) as caught:
        await collect(adapter, ask())
    assert caught.value.partial_text == "partial"
    assert isinstance(caught.value.__cause__, ProviderProtocolError)
    with pytest.raises(ProviderProtocolError, match="message_stop"):
        await collect(adapter, ask())


async def test_stream_malformed_event_is_protocol_error(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    fake.script(Reply(raw=b"event: message_start\ndata: {not json\n\n"))
    with pytest.raises(ProviderProtocolError):
        await collect(adapter, ask())


# -- models and health ---------------------------------------------------------------------------


async def test_list_models_follows_pages(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    fake.models = [f"claude-{n}" for n in range(5)]
    adapter.page_size = 2
    models = await adapter.list_models()

    assert [m.id for m in models] == fake.models
    assert models[0].details["display_name"] == "Claude 0"
    assert models[0].owned_by == "anthropic"
    queries = [r.query for r in fake.requests_to("/v1/models")]
    assert queries == [
        {"limit": "2"},
        {"limit": "2", "after_id": "claude-1"},
        {"limit": "2", "after_id": "claude-3"},
    ]
    assert all(r.headers["x-api-key"] == KEY for r in fake.requests_to("/v1/models"))


async def test_probe_ok_reports_latency(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    result = await adapter.probe()
    assert result.ok and result.error is None
    assert result.latency_ms > 0
    assert fake.requests[-1].query == {"limit": "1"}


async def test_probe_failures_do_not_raise(fake: FakeAnthropicServer, client: httpx.AsyncClient) -> None:
    refused = await adapter_for(f"http://127.0.0.1:{closed_port()}", client).probe()
    assert not refused.ok and refused.error and refused.latency_ms >= 0
    bad_key = await adapter_for(fake.url, client, api_key="sk-ant-wrong-key-000000").probe()
    assert not bad_key.ok and "authentication_error" in (bad_key.error or "")


# -- errors --------------------------------------------------------------------------------------

STATUS_CASES = [
    (400, BadRequest),
    (401, AuthenticationError),
    (403, AuthenticationError),
    (404, UpstreamModelNotFound),
    (413, ContextTooLong),
    (500, ProviderUnavailable),
    (529, ProviderUnavailable),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(("status", "error"), STATUS_CASES, ids=[str(c[0]) for c in STATUS_CASES])
async def test_http_errors_map_to_our_tree(
    adapter: AnthropicAdapter,
    fake: FakeAnthropicServer,
    status: int,
    error: type[ProviderError],
    streaming: bool,
) -> None:
    fake.script(Reply(status=status))
    with pytest.raises(error) as caught:
        await (collect(adapter, ask()) if streaming else adapter.chat(ask()))
    assert caught.value.status == status
    assert caught.value.provider == "anthropic"


async def test_rate_limit_carries_retry_after(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    fake.script(Reply(status=429, headers={"retry-after": "7"}))
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.chat(ask())
    assert caught.value.retry_after == 7.0


async def test_prompt_too_long_is_context_too_long(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer
) -> None:
    body = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 250000 tokens > 200000 maximum",
        },
    }
    fake.script(Reply(status=400, error_body=body))
    with pytest.raises(ContextTooLong):
        await adapter.chat(ask())


async def test_fake_checks_like_the_real_api(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(UpstreamModelNotFound, match="not_found_error"):
        await adapter.chat(ChatRequest(model="claude-nope", messages=(Message.text("user", "x"),)))
    with pytest.raises(AuthenticationError, match="authentication_error"):
        await adapter_for(fake.url, client, api_key="sk-ant-wrong-key-000000").chat(ask())
    no_max = await client.post(
        fake.url + "/v1/messages",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
    )
    assert no_max.status_code == 400 and no_max.json()["error"]["type"] == "invalid_request_error"
    no_version = await client.get(fake.url + "/v1/models", headers={"x-api-key": KEY})
    assert no_version.status_code == 400


async def test_malformed_json_is_protocol_error(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    fake.script(Reply(raw=b"{not json"))
    with pytest.raises(ProviderProtocolError):
        await adapter.chat(ask())


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_error_body_with_http_200_is_still_an_error(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer, streaming: bool
) -> None:
    # Gateways in front of Anthropic sometimes answer 200 with a JSON error (no event stream).
    body = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    fake.script(Reply(raw=body.encode(), headers={"content-type": "application/json"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await (collect(adapter, ask()) if streaming else adapter.chat(ask()))
    assert caught.value.status == 529
    assert "HTTP 529" not in caught.value.message


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_slow_upstream_times_out(
    fake: FakeAnthropicServer, client: httpx.AsyncClient, streaming: bool
) -> None:
    fake.script(Reply(delay=3.0))
    adapter = adapter_for(fake.url, client, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(ProviderTimeout):
        await (collect(adapter, ask()) if streaming else adapter.chat(ask()))
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("call", ["chat", "stream", "list_models"])
async def test_connection_refused(client: httpx.AsyncClient, call: str) -> None:
    adapter = adapter_for(f"http://127.0.0.1:{closed_port()}", client)
    with pytest.raises(ProviderConnectionError):
        if call == "chat":
            await adapter.chat(ask())
        elif call == "stream":
            await collect(adapter, ask())
        else:
            await adapter.list_models()


async def test_dropped_connection_mid_body(adapter: AnthropicAdapter, fake: FakeAnthropicServer) -> None:
    fake.script(Reply(drop_after=0))
    with pytest.raises(ProviderConnectionError):
        await adapter.chat(ask())


def _echo(message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "authentication_error", "message": message}}


LEAKY_REPLIES = [
    Reply(status=401, error_body=_echo(f"invalid x-api-key: {KEY}")),
    Reply(status=401, error_body=_echo(f"invalid x-api-key: {KEY[:20]}...")),
    Reply(status=500, raw=f"<html>upstream failed for key {KEY}</html>".encode()),
    Reply(raw=f"not json {KEY}".encode()),
]
LEAKY_CASES = [(reply, streaming) for reply in LEAKY_REPLIES for streaming in (False, True)] + [
    (
        Reply(
            chunks=["a"],
            stream_error_after=1,
            stream_error={"type": "error", "error": {"type": "overloaded_error", "message": f"busy {KEY}"}},
        ),
        True,
    ),
    (
        Reply(
            chunks=[],
            stream_error_after=0,
            stream_error={"type": "error", "error": {"type": "api_error", "message": f"bad {KEY[:12]}"}},
        ),
        True,
    ),
]


@pytest.mark.parametrize(("reply", "streaming"), LEAKY_CASES)
async def test_api_key_never_in_error_messages(
    adapter: AnthropicAdapter, fake: FakeAnthropicServer, reply: Reply, streaming: bool
) -> None:
    fake.script(reply)
    with pytest.raises(ProviderError) as caught:
        await (collect(adapter, ask()) if streaming else adapter.chat(ask()))
    text = f"{caught.value} {caught.value.args!r} {caught.value.__cause__}"
    assert KEY not in text
    assert KEY[:12] not in text
    assert KEY[8:20] not in text


# -- StreamNormalizer ----------------------------------------------------------------------------


def _payloads(*events: dict[str, Any]) -> list[str]:
    return [json.dumps(e) for e in events]


START = {
    "type": "message_start",
    "message": {"usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 1}},
}


def test_normalizer_ignores_pings_and_unknown_events_anywhere() -> None:
    normalizer = StreamNormalizer()
    events: list[StreamEvent] = []
    for payload in _payloads(
        {"type": "ping"},
        START,
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "brand_new_event", "x": 1},
        {"type": "ping"},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}},
        {"type": "ping"},
        {"type": "message_stop"},
    ):
        events.extend(normalizer.feed(payload))
    assert normalizer.finish() == []
    assert [e.type for e in events] == ["text", "usage", "finish"]
    assert events[1].usage is not None and events[1].usage.input_tokens == 10  # cached tokens count
    assert events[1].usage.output_tokens == 9
    assert events[2].finish_reason == "length"


def test_normalizer_tool_without_fragments_yields_empty_object() -> None:
    normalizer = StreamNormalizer()
    events: list[StreamEvent] = []
    for payload in _payloads(
        START,
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "now", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ):
        events.extend(normalizer.feed(payload))
    assert arguments_by_index(events) == {0: "{}"}
    assert events[-1].finish_reason == "tool_calls"


def test_normalizer_finish_raises_without_message_stop() -> None:
    normalizer = StreamNormalizer()
    normalizer.feed(json.dumps(START))
    with pytest.raises(ProviderProtocolError):
        normalizer.finish()


def test_normalizer_is_cheap() -> None:
    payloads = _payloads(
        START, {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    )
    payloads += _payloads(
        *[{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}] * 995
    )
    payloads += _payloads(
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "ping"},
        {"type": "message_stop"},
    )
    assert len(payloads) == 1000
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        normalizer = StreamNormalizer()
        for payload in payloads:
            normalizer.feed(payload)
        normalizer.finish()
        best = min(best, time.process_time() - started)
    assert best < 0.025  # the target is < 5 ms; the margin absorbs slow, shared CI machines
