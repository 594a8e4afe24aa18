"""GeminiAdapter against the fake Gemini API over real HTTP."""

from __future__ import annotations

import base64
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
from mmstudio.providers.base import (
    ChatRequest,
    EndpointConfig,
    ImagePart,
    Message,
    ProviderAdapter,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolResultPart,
    ToolSpec,
)
from mmstudio.providers.gemini import GeminiAdapter, StreamNormalizer, clean_schema
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import Reply, closed_port
from tests.fakes.gemini_server import FakeGeminiServer, GeminiReply, google_error_body

KEY = "AIzaFAKE-gemini-key-0123456789abcdef"
MODELS = ["gemini-test", "gemini-pro-test", "gemini-flash-test", "text-embedding-test", "gemini-lite-test"]
PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGeminiServer]:
    fake = FakeGeminiServer(models=MODELS, api_key=KEY, max_page_size=2)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def fresh(server: FakeGeminiServer) -> None:
    server.reset()
    server.default = Reply()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(client: httpx.AsyncClient, base_url: str, *, key: str = KEY, timeout: float = 5.0) -> GeminiAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="gemini", timeout=timeout)
    return GeminiAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeGeminiServer) -> GeminiAdapter:
    return make(client, server.base_url)


def ask(text: str = "Hi", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model="gemini-test", messages=(Message.text("user", text),), **kwargs)


async def collect(adapter: GeminiAdapter, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in adapter.stream(request)]


def only_post(server: FakeGeminiServer) -> Any:
    posts = [r for r in server.requests if r.method == "POST"]
    assert len(posts) == 1
    return posts[0]


# --- chat and request translation ---------------------------------------------------------


async def test_adapter_satisfies_the_protocol(adapter: GeminiAdapter) -> None:
    assert isinstance(adapter, ProviderAdapter)
    assert adapter.protocol == "gemini"
    caps = adapter.default_capabilities
    assert (caps.streaming, caps.tools, caps.vision, caps.json_mode) == (True, True, True, True)


async def test_chat_translates_the_request_and_parses_the_answer(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    weather = ToolSpec(
        name="get_weather",
        description="Weather for a city",
        parameters={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string"},
                # A property may be *named* like a dropped keyword: it must survive.
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
                "days": {"type": "array", "items": {"type": "object", "additionalProperties": False}},
            },
            "required": ["city"],
        },
    )
    request = ChatRequest(
        model="gemini-test",
        messages=(
            Message.text("system", "Be brief."),
            Message("user", (TextPart("What is this?"), ImagePart(data=PNG, media_type="image/png"))),
            Message.text("assistant", "A picture."),
            Message(
                "user",
                (
                    ImagePart(url="https://example.com/cat.jpg", media_type="image/jpeg"),
                    ImagePart(url="data:image/webp;base64,QUJD"),
                    TextPart("And these?"),
                ),
            ),
        ),
        tools=(weather,),
        tool_choice="auto",
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop=("END",),
        seed=7,
        json_mode=True,
        extra={"generationConfig": {"topK": 3}, "safetySettings": [{"category": "X", "threshold": "OFF"}]},
    )
    response = await adapter.chat(request)

    assert response.text == "Hello from the fake."
    assert response.finish_reason == "stop"
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (
        5,
        7,
    )
    assert response.id is not None and response.id.startswith("fake-resp-")
    assert response.model == "gemini-test"
    assert response.tool_calls == ()

    sent = only_post(server)
    assert sent.path == "/v1beta/models/gemini-test:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert "authorization" not in sent.headers
    body = sent.json()
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
    ]
    assert body["contents"][1]["parts"] == [{"text": "A picture."}]
    assert body["contents"][2]["parts"] == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
        {"inlineData": {"mimeType": "image/webp", "data": "QUJD"}},
        {"text": "And these?"},
    ]
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 64,
        "seed": 7,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "topK": 3,
    }
    assert body["safetySettings"] == [{"category": "X", "threshold": "OFF"}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "additionalProperties": {"type": "object"},
                            "days": {"type": "array", "items": {"type": "object"}},
                        },
                        "required": ["city"],
                    },
                }
            ]
        }
    ]


async def test_same_role_turns_are_merged_and_tool_choice_by_name(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    request = ChatRequest(
        model="gemini-test",
        messages=(Message.text("user", "one"), Message.text("user", "two"), Message.text("assistant", "")),
        tools=(ToolSpec(name="now", description="The time"),),
        tool_choice="now",
    )
    await adapter.chat(request)
    body = only_post(server).json()
    # The empty assistant turn is dropped: Gemini rejects empty text parts.
    assert body["contents"] == [{"role": "user", "parts": [{"text": "one"}, {"text": "two"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}}
    # No properties: Gemini rejects an empty OBJECT schema, so `parameters` is left out.
    assert body["tools"] == [{"functionDeclarations": [{"name": "now", "description": "The time"}]}]
    assert "generationConfig" not in body and "systemInstruction" not in body


@pytest.mark.parametrize(("choice", "mode"), [("none", "NONE"), ("required", "ANY")])
async def test_tool_choice_modes(
    adapter: GeminiAdapter, server: FakeGeminiServer, choice: str, mode: str
) -> None:
    await adapter.chat(ask(tools=(ToolSpec(name="now"),), tool_choice=choice))
    assert only_post(server).json()["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_clean_schema_keeps_property_names() -> None:
    schema = {"type": "object", "properties": {"$schema": {"type": "string", "$comment": "x"}}, "$id": "y"}
    assert clean_schema(schema) == {"type": "object", "properties": {"$schema": {"type": "string"}}}


async def test_max_tokens_finish_is_length(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(Reply(finish_reason="MAX_TOKENS"), Reply(finish_reason="MAX_TOKENS"))
    assert (await adapter.chat(ask())).finish_reason == "length"
    assert (await collect(adapter, ask()))[-1].finish_reason == "length"


# --- streaming ---------------------------------------------------------------------------


async def test_stream_text_usage_and_finish(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(Reply(chunks=["Hel", "lo ", "there"], usage=(11, 3)))
    events = await collect(adapter, ask())

    assert [e.type for e in events] == ["text", "text", "text", "usage", "finish"]
    assert "".join(e.text for e in events if e.type == "text") == "Hello there"
    usage = events[-2].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (11, 3)
    assert events[-1].finish_reason == "stop"
    sent = only_post(server)
    assert sent.path == "/v1beta/models/gemini-test:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json()["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


async def test_stream_tool_calls(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(
        Reply(
            text="Checking.",
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris", "units": {"temp": "C"}}},
                {"id": "fc-7", "name": "get_time", "arguments": {}},
            ],
        )
    )
    events = await collect(adapter, ask())
    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert [e.type for e in events] == ["text", "tool_call", "tool_call", "usage", "finish"]
    assert calls[0] is not None and calls[1] is not None
    assert (calls[0].index, calls[0].id, calls[0].name) == (0, "call_0", "get_weather")
    assert json.loads(calls[0].arguments) == {"city": "Paris", "units": {"temp": "C"}}
    assert (calls[1].index, calls[1].id, calls[1].name, json.loads(calls[1].arguments)) == (
        1,
        "fc-7",
        "get_time",
        {},
    )
    assert events[-1].finish_reason == "tool_calls"


async def test_tool_calls_and_results_round_trip(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(
        Reply(
            text="",
            tool_calls=[
                {"name": "get_weather", "arguments": {"city": "Paris"}, "thought_signature": "c2lnLTE="},
                {"id": "fc-7", "name": "get_time", "arguments": {}},
            ],
        ),
        Reply(text="It is 21 degrees."),
    )
    first = await adapter.chat(ask("Weather?"))
    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    assert first.tool_calls == (
        ToolCall(id="call_0", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="fc-7", name="get_time", arguments={}),
    )

    history = (
        Message.text("user", "Weather?"),
        Message("assistant", first.tool_calls),
        Message(
            "tool",
            (
                ToolResultPart(tool_call_id="call_0", name="get_weather", content='{"temp": 21}'),
                ToolResultPart(tool_call_id="fc-7", name="get_time", content="noon"),
            ),
        ),
        Message("tool", (ToolResultPart(tool_call_id="x", name="oops", content="boom", is_error=True),)),
    )
    second = await adapter.chat(ChatRequest(model="gemini-test", messages=history))
    assert second.text == "It is 21 degrees."

    contents = server.requests[-1].json()["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    # The generated id goes nowhere; the real one round-trips; the thoughtSignature is replayed.
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="},
        {"functionCall": {"name": "get_time", "args": {}, "id": "fc-7"}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"result": "noon"}, "id": "fc-7"}},
        {"functionResponse": {"name": "oops", "response": {"error": "boom"}, "id": "x"}},
    ]


async def test_streamed_thought_signature_is_replayed(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    server.script(
        GeminiReply(
            text="",
            tool_calls=[{"id": "fc-1", "name": "f", "arguments": {"a": 1}, "thought_signature": "U0lH"}],
        )
    )
    events = await collect(adapter, ask())
    assert events[-1].finish_reason == "tool_calls"
    call = ToolCall(id="fc-1", name="f", arguments={"a": 1})
    await adapter.chat(
        ChatRequest(model="gemini-test", messages=(Message.text("user", "go"), Message("assistant", (call,))))
    )
    parts = server.requests[-1].json()["contents"][1]["parts"]
    assert parts == [
        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "fc-1"}, "thoughtSignature": "U0lH"}
    ]


async def test_stopping_early_closes_the_stream(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(Reply(chunks=["a", "b", "c"]), Reply(text="next"))
    stream = adapter.stream(ask())
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.text == "a"
    assert (await adapter.chat(ask())).text == "next"


# --- content filtering -------------------------------------------------------------------


async def test_safety_finish_raises_content_filtered(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    server.script(Reply(text="", finish_reason="SAFETY"), Reply(text="", finish_reason="SAFETY"))
    with pytest.raises(ContentFiltered, match="SAFETY"):
        await adapter.chat(ask())
    with pytest.raises(ContentFiltered, match="SAFETY"):
        await collect(adapter, ask())


async def test_safety_after_text_stays_content_filtered(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    server.script(Reply(chunks=["Once ", "upon ", "a time"], finish_reason="PROHIBITED_CONTENT"))
    seen: list[StreamEvent] = []
    with pytest.raises(ContentFiltered) as caught:
        async for event in adapter.stream(ask()):
            seen.append(event)
    assert not isinstance(caught.value, MidStreamError)
    assert "".join(e.text for e in seen) == "Once upon "


async def test_prompt_block_reason_raises_content_filtered(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    server.script(GeminiReply(block_reason="SAFETY"), GeminiReply(block_reason="PROHIBITED_CONTENT"))
    with pytest.raises(ContentFiltered, match="blockReason SAFETY"):
        await adapter.chat(ask())
    with pytest.raises(ContentFiltered, match="blockReason PROHIBITED_CONTENT"):
        await collect(adapter, ask())


# --- models and probe --------------------------------------------------------------------


async def test_list_models_follows_pages(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    models = await adapter.list_models()
    assert [m.id for m in models] == MODELS
    gets = server.requests_to("/v1beta/models")
    assert len(gets) == 3  # five models, two per page
    assert "pageToken" not in gets[0].query
    assert gets[1].query["pageToken"] and gets[2].query["pageToken"] != gets[1].query["pageToken"]
    assert all(g.headers["x-goog-api-key"] == KEY for g in gets)

    chat = models[0]
    assert chat.capabilities is not None
    assert (chat.capabilities.tools, chat.capabilities.vision, chat.capabilities.context_length) == (
        True,
        True,
        1048576,
    )
    assert chat.details["displayName"] == "Gemini Test"
    assert chat.details["outputTokenLimit"] == 65536
    assert "generateContent" in chat.details["supportedGenerationMethods"]
    embedding = models[3]
    assert embedding.capabilities is not None
    assert (embedding.capabilities.streaming, embedding.capabilities.tools) == (False, False)
    assert embedding.details["supportedGenerationMethods"][0] == "embedContent"


async def test_probe_ok_reports_latency(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    result = await adapter.probe()
    assert result.ok and result.error is None
    assert result.latency_ms > 0
    assert server.requests[-1].query == {"pageSize": "1"}


async def test_probe_failures_do_not_raise(client: httpx.AsyncClient, server: FakeGeminiServer) -> None:
    refused = await make(client, f"http://127.0.0.1:{closed_port()}/v1beta").probe()
    assert not refused.ok and refused.error and refused.latency_ms >= 0
    bad_key = await make(client, server.base_url, key="AIza-wrong-key-987654321").probe()
    assert not bad_key.ok and bad_key.error and "API key not valid" in bad_key.error
    assert "AIza-wrong-key-987654321" not in bad_key.error


# --- errors ------------------------------------------------------------------------------


async def call(adapter: GeminiAdapter, how: str, request: ChatRequest | None = None) -> None:
    if how == "chat":
        await adapter.chat(request or ask())
    else:
        await collect(adapter, request or ask())


BOTH = pytest.mark.parametrize("how", ["chat", "stream"])


@BOTH
async def test_bad_key_is_authentication_error(
    client: httpx.AsyncClient, server: FakeGeminiServer, how: str
) -> None:
    wrong = "AIza-wrong-key-987654321"
    with pytest.raises(AuthenticationError) as caught:
        await call(make(client, server.base_url, key=wrong), how)
    assert caught.value.status == 400
    assert not caught.value.retryable
    assert wrong not in str(caught.value) and KEY not in str(caught.value)


async def test_missing_key_is_authentication_error(
    client: httpx.AsyncClient, server: FakeGeminiServer
) -> None:
    with pytest.raises(AuthenticationError, match="PERMISSION_DENIED") as caught:
        await make(client, server.base_url, key="").chat(ask())
    assert caught.value.status == 403
    assert "x-goog-api-key" not in server.requests[-1].headers


@pytest.mark.parametrize(
    ("reply", "error", "status"),
    [
        (Reply(status=403), AuthenticationError, 403),
        (
            Reply(status=400, error_body=google_error_body(400, "Invalid value at 'contents'")),
            BadRequest,
            400,
        ),
        (
            Reply(
                status=400,
                error_body=google_error_body(
                    400,
                    "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                ),
            ),
            ContextTooLong,
            400,
        ),
        (Reply(status=500), ProviderUnavailable, 500),
        (Reply(status=503), ProviderUnavailable, 503),
        (Reply(status=504), ProviderTimeout, 504),
        (Reply(status=502, raw=b"<html><body>Bad Gateway</body></html>"), ProviderUnavailable, 502),
    ],
)
@BOTH
async def test_error_statuses_map_to_our_errors(
    adapter: GeminiAdapter,
    server: FakeGeminiServer,
    how: str,
    reply: Reply,
    error: type[ProviderError],
    status: int,
) -> None:
    server.script(reply)
    with pytest.raises(error) as caught:
        await call(adapter, how)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert caught.value.provider == "gemini"
    assert KEY not in str(caught.value)


@BOTH
async def test_unknown_model_is_not_found(adapter: GeminiAdapter, how: str) -> None:
    with pytest.raises(UpstreamModelNotFound, match="models/nope is not found"):
        await call(adapter, how, ChatRequest(model="nope", messages=(Message.text("user", "hi"),)))


@BOTH
async def test_rate_limit_reads_retry_info(
    adapter: GeminiAdapter, server: FakeGeminiServer, how: str
) -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]
    server.script(Reply(status=429, error_body=google_error_body(429, "Quota exceeded", details)))
    with pytest.raises(ProviderRateLimited) as caught:
        await call(adapter, how)
    assert caught.value.retry_after == 17.0
    assert caught.value.status == 429


async def test_rate_limit_prefers_the_retry_after_header(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    server.script(Reply(status=429, headers={"retry-after": "3"}))  # default body says 30s
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.chat(ask())
    assert caught.value.retry_after == 3.0


async def test_key_echoed_by_upstream_is_redacted(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(
        Reply(status=403, error_body=google_error_body(403, f"Consumer 'api_key:{KEY}' has been suspended."))
    )
    with pytest.raises(AuthenticationError) as caught:
        await adapter.chat(ask())
    assert KEY not in str(caught.value) and KEY[:12] not in str(caught.value)
    assert "***" in str(caught.value)


@BOTH
async def test_malformed_json_is_protocol_error(
    adapter: GeminiAdapter, server: FakeGeminiServer, how: str
) -> None:
    raw = b'{"candidates": [' if how == "chat" else b'data: {"candidates": [\r\n\r\n'
    server.script(Reply(raw=raw))
    with pytest.raises(ProviderProtocolError):
        await call(adapter, how)


async def test_stream_ending_without_finish_reason_raises(
    adapter: GeminiAdapter, server: FakeGeminiServer
) -> None:
    server.script(GeminiReply(chunks=["a", "b"], omit_finish=True))
    seen: list[StreamEvent] = []
    with pytest.raises(MidStreamError, match="finishReason") as caught:
        async for event in adapter.stream(ask()):
            seen.append(event)
    assert caught.value.partial_text == "ab"
    assert [e.type for e in seen] == ["text", "text"]

    server.script(GeminiReply(text="", omit_finish=True))  # nothing at all arrives
    with pytest.raises(ProviderProtocolError, match="finishReason"):
        await collect(adapter, ask())


async def test_drop_mid_stream_keeps_partial_text(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    server.script(Reply(chunks=["one ", "two ", "three"], drop_after=2))
    seen: list[str] = []
    with pytest.raises(MidStreamError) as caught:
        async for event in adapter.stream(ask()):
            seen.append(event.text)
    assert caught.value.partial_text == "one two " == "".join(seen)
    assert isinstance(caught.value.__cause__, ProviderConnectionError)
    assert caught.value.retryable


async def test_in_band_stream_error(adapter: GeminiAdapter, server: FakeGeminiServer) -> None:
    overloaded = google_error_body(503)
    server.script(
        Reply(chunks=["one ", "two"], stream_error_after=1, stream_error=overloaded),
        Reply(stream_error_after=0, stream_error=overloaded),
    )
    with pytest.raises(MidStreamError, match="overloaded") as caught:
        await collect(adapter, ask())
    assert (caught.value.partial_text, caught.value.status) == ("one ", 503)
    with pytest.raises(ProviderUnavailable):  # before any event: the mapped error itself
        await collect(adapter, ask())


@BOTH
async def test_timeout(client: httpx.AsyncClient, server: FakeGeminiServer, how: str) -> None:
    server.script(Reply(delay=2.0))
    start = time.perf_counter()
    with pytest.raises(ProviderTimeout):
        await call(make(client, server.base_url, timeout=0.3), how)
    assert time.perf_counter() - start < 1.5


@pytest.mark.parametrize("how", ["chat", "stream", "list_models"])
async def test_connection_refused(client: httpx.AsyncClient, how: str) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}/v1beta")
    with pytest.raises(ProviderConnectionError) as caught:
        if how == "list_models":
            await adapter.list_models()
        else:
            await call(adapter, how)
    assert KEY not in str(caught.value)


# --- the normalizer and the fake's JSON-array stream -------------------------------------


def test_normalizer_unit() -> None:
    normalizer = StreamNormalizer()
    chunk = {
        "candidates": [{"content": {"parts": [{"text": "Hi"}, {"text": "hmm", "thought": True}]}, "index": 0}]
    }
    assert normalizer.feed(json.dumps(chunk)) == [StreamEvent("text", text="Hi")]
    assert normalizer.feed("  " + json.dumps({"usageMetadata": {"promptTokenCount": 1}}) + " ") == []
    with pytest.raises(ProviderProtocolError, match="finishReason"):
        normalizer.finish()
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        normalizer.feed('{"candidates": []} trailing')
    last = {
        "candidates": [{"finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2},
    }
    events = normalizer.feed(json.dumps(last))
    assert [e.type for e in events] == ["usage", "finish"]
    assert normalizer.finish() == []


def test_normalizer_is_cheap() -> None:
    chunk = json.dumps(
        {
            "candidates": [{"content": {"parts": [{"text": "Hello world, "}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": "gemini-test",
            "responseId": "abc",
        }
    )
    final = json.dumps(
        {"candidates": [{"finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 12}}
    )
    best = float("inf")
    for _ in range(5):
        normalizer = StreamNormalizer()
        start = time.process_time()
        for _ in range(999):
            normalizer.feed(chunk)
        normalizer.feed(final)
        normalizer.finish()
        best = min(best, time.process_time() - start)
    assert best < 0.025  # the budget is 5 ms; this only catches gross regressions on a busy machine


async def test_fake_streams_a_json_array_without_alt_sse(
    client: httpx.AsyncClient, server: FakeGeminiServer
) -> None:
    response = await client.post(
        f"{server.base_url}/models/gemini-test:streamGenerateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": KEY},
    )
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) == 4
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 7
