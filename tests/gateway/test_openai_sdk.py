"""The gateway driven by the official `openai` SDK, unchanged, with `base_url` pointed at mmstudio."""

from __future__ import annotations

import json

import openai
import pytest

from mmstudio.config import Routing, StudioConfig
from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import LiveStudio, OpenLive, engines

LLAMA = "ollama/llama3.2:latest"
GEMMA = "lmstudio/gemma-2-2b-it"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def sdk(live: LiveStudio, key: str = "unused") -> openai.AsyncOpenAI:
    """An unchanged OpenAI client pointed at mmstudio (closed with the server)."""
    client = openai.AsyncOpenAI(base_url=live.v1, api_key=key, max_retries=0)
    live.stack.push_async_callback(client.close)
    return client


async def test_models_list_and_retrieve(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    client = sdk(studio)
    ids = [m.id async for m in client.models.list()]
    assert LLAMA in ids and "ollama/gemma3:4b" in ids
    model = await client.models.retrieve("ollama/llama3.2")  # Ollama's default tag resolves
    assert model.id == LLAMA and model.owned_by == "ollama"


async def test_chat_names_the_model_that_answered(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    raw = await sdk(studio).chat.completions.with_raw_response.create(
        model="ollama/llama3.2", messages=[{"role": "user", "content": "Hi"}], temperature=0.2
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake."
    assert completion.model == LLAMA and completion.usage is not None and completion.usage.total_tokens == 12
    assert raw.headers["x-mmstudio-model"] == LLAMA and raw.headers["x-mmstudio-attempts"] == "1"
    assert float(raw.headers["x-mmstudio-latency-ms"]) >= 0
    sent = ollama.requests_to("/api/chat")[0].json()
    assert sent["model"] == "llama3.2:latest" and sent["options"]["temperature"] == 0.2


async def test_streaming_with_usage_and_done(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    ollama.script(Reply(chunks=["Once ", "upon ", "a time."], usage=(9, 3)))
    stream = await sdk(studio).chat.completions.create(
        model=LLAMA,
        messages=[{"role": "user", "content": "A story"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Once upon a time."
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 3)
    # The raw stream ends with [DONE].
    async with studio.client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": LLAMA, "messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as response:
        body = (await response.aread()).decode()
    assert body.rstrip().endswith("data: [DONE]") and response.headers["x-mmstudio-model"] == LLAMA


async def test_tools_round_trip(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    ollama.script(
        Reply(text="", tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}])
    )
    client = sdk(studio)
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = await client.chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "12 C, rain"},
    ]
    ollama.script(Reply(text="It is 12 C and raining in Oslo."))
    second = await client.chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert second.choices[0].message.content == "It is 12 C and raining in Oslo."
    sent = ollama.requests_to("/api/chat")[-1].json()
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][2]["role"] == "tool" and sent["messages"][2]["content"] == "12 C, rain"


async def test_streamed_tool_calls(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    ollama.script(
        Reply(text="", tool_calls=[{"id": "call_9", "name": "get_weather", "arguments": {"city": "Rome"}}])
    )
    stream = await sdk(studio).chat.completions.create(
        model=LLAMA,
        messages=[{"role": "user", "content": "Rome?"}],
        tools=[WEATHER_TOOL],
        stream=True,  # type: ignore[list-item]
    )
    name, arguments = "", ""
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
    assert name == "get_weather" and json.loads(arguments) == {"city": "Rome"}


async def test_errors_arrive_as_the_sdks_exceptions(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None), config=StudioConfig(routing=Routing(retries=0)))
    client = sdk(studio)
    with pytest.raises(openai.NotFoundError) as bad_model:
        await client.chat.completions.create(model="ollama/nope", messages=[{"role": "user", "content": "x"}])
    assert bad_model.value.code == "model_not_found" and LLAMA in bad_model.value.message
    with pytest.raises(openai.BadRequestError) as no_messages:
        await client.chat.completions.create(model=LLAMA, messages=[])
    assert "messages" in no_messages.value.message
    ollama.script(Reply(status=500))
    with pytest.raises(openai.InternalServerError) as upstream:
        await client.chat.completions.create(
            model=LLAMA, messages=[{"role": "user", "content": "x"}], extra_body={"fallbacks": False}
        )
    assert upstream.value.status_code == 502 and upstream.value.code == "unavailable"
    ollama.script(Reply(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(
            model=LLAMA,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mmstudio-fallbacks": "off"},
        )
    assert limited.value.response.headers["retry-after"] == "7"


async def test_fallback_is_invisible_to_the_client(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    config = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))
    studio = await live(engines(ollama, lmstudio), config=config)
    ollama.script(Reply(status=503))
    lmstudio.script(Reply(text="Answered by the fallback."))
    raw = await sdk(studio).chat.completions.with_raw_response.create(
        model=LLAMA, messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.parse().choices[0].message.content == "Answered by the fallback."
    assert raw.headers["x-mmstudio-model"] == GEMMA and raw.headers["x-mmstudio-attempts"] == "2"


async def test_mid_stream_failover_reads_as_one_stream(
    live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    config = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))
    studio = await live(engines(ollama, lmstudio), config=config)
    ollama.script(Reply(chunks=["Roses ", "are ", "red, ", "violets"], drop_after=3))
    lmstudio.script(Reply(chunks=[" violets are blue."]))
    stream = await sdk(studio).chat.completions.create(
        model=LLAMA, messages=[{"role": "user", "content": "A poem"}], stream=True
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Roses are red, violets are blue."
    assert chunks[0].model == LLAMA and chunks[-1].model == GEMMA  # each chunk names its model


async def test_a_truncated_stream_raises_in_the_client_and_never_sends_done(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=StudioConfig(routing=Routing(retries=0)))
    ollama.script(Reply(chunks=["Half ", "an ", "answer"], drop_after=2))
    stream = await sdk(studio).chat.completions.create(
        model=LLAMA, messages=[{"role": "user", "content": "x"}], stream=True, extra_body={"fallbacks": False}
    )
    received = ""
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            received += chunk.choices[0].delta.content or ""
    assert received == "Half an " and "cut off" in info.value.message
    ollama.script(Reply(chunks=["Half ", "an ", "answer"], drop_after=2))
    async with studio.client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": LLAMA,
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "fallbacks": False,
        },
    ) as response:
        body = (await response.aread()).decode()
    assert "[DONE]" not in body and '"code":"mid_stream_error"' in body
