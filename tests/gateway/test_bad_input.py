"""Bad input to the gateway always gets a 4xx with a clear OpenAI-style error, never a 5xx."""

from __future__ import annotations

from typing import Any

import fastapi.routing
import pytest

from mmstudio.config import Limits, StudioConfig
from tests.fakes.ollama_server import FakeOllamaServer
from tests.gateway.conftest import OpenLive, engines

LLAMA = "ollama/llama3.2:latest"
URL = "/v1/chat/completions"


BAD_BODIES = [
    (
        b"{not json",
        400,
        "not valid JSON: Expecting property name enclosed in double quotes at character 1",
    ),
    (b"", 400, "a JSON request body is required"),
    (b'{"model": "ollama/llama3.2"}', 400, "messages"),
    (b'{"model": "ollama/llama3.2", "messages": "hi"}', 400, "messages"),
    (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
    (b'{"model": "ollama/llama3.2", "messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
    (b'{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "x"}], "n": 3}', 400, "n"),
    (
        b'{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
        400,
        "temperature",
    ),
    (
        b'{"model": "ollama/llama3.2", "messages": [{"role": "tool", "content": "x"}]}',
        400,
        "tool_call_id",
    ),
    (
        b'{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": [{"type": "image_url",'
        b' "image_url": {"url": "data:image/png;base64,@@@"}}]}]}',
        400,
        "base64",
    ),
    (
        b'{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "x"}],'
        b' "tool_choice": {"type": "function", "function": {"name": "nope"}}}',
        400,
        "not in tools",
    ),
    (
        b'{"model": "nobody/nothing", "messages": [{"role": "user", "content": "x"}]}',
        404,
        "Unknown model",
    ),
    (b"[]", 400, "body"),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_BODIES)
async def test_bad_requests_get_a_clear_openai_error(
    live: OpenLive, ollama: FakeOllamaServer, body: bytes, status: int, needle: str
) -> None:
    studio = await live(engines(ollama, None))
    response = await studio.client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert needle.lower() in error["message"].lower(), error
    assert not ollama.requests_to("/api/chat")  # nothing bad reaches the upstream


async def test_the_short_way_answers_exactly_as_fastapi_does(
    live: OpenLive, ollama: FakeOllamaServer
) -> None:
    # A JSON body that validates skips FastAPI's request handling; everything else is FastAPI's to
    # answer. A "+json" content type is JSON to FastAPI but never takes the short way, so the two
    # must agree on every body, good or bad.
    studio = await live(engines(ollama, None))
    good = b'{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "x"}], "seed": 1}'
    for body in [
        good,
        b"null",
        b'{"model": "ollama/llama3.2", "messages": []}',
        *(b for b, _, _ in BAD_BODIES),
    ]:
        answers = []
        for content_type in ("application/json", "application/json; charset=utf-8", "application/x+json"):
            response = await studio.client.post(URL, content=body, headers={"content-type": content_type})
            payload = response.json()
            if response.status_code == 200:
                payload = {k: v for k, v in payload.items() if k not in ("id", "created")}
                assert response.headers["x-mmstudio-model"] == LLAMA
            answers.append((response.status_code, payload))
        assert answers[0] == answers[1] == answers[2], body
    response = await studio.client.post(URL, content=good, headers={"content-type": "text/plain"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "body"


async def test_a_valid_request_skips_fastapis_request_handling(
    live: OpenLive, ollama: FakeOllamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The point of the short way (a CPU cost per request, see openai_api._ChatCompletionsRoute):
    # make sure a FastAPI upgrade does not quietly route every request the long way again.
    studio = await live(engines(ollama, None))
    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    body = {"model": LLAMA, "messages": [{"role": "user", "content": "x"}]}
    assert (await studio.client.post(URL, json=body)).status_code == 200
    assert solved == []
    assert (await studio.client.post(URL, json={**body, "n": 2})).status_code == 400
    assert solved == [URL]


async def test_an_oversized_body_is_refused_with_413(live: OpenLive, ollama: FakeOllamaServer) -> None:
    config = StudioConfig(limits=Limits(max_body_mb=0.01))  # 10 kB
    studio = await live(engines(ollama, None), config=config)
    big = {"model": LLAMA, "messages": [{"role": "user", "content": "x" * 20_000}]}
    response = await studio.client.post(URL, json=big)
    assert response.status_code == 413
    assert "larger than the limit of 0.01 MB" in response.json()["error"]["message"]

    async def chunks():  # no Content-Length: counted as it streams in
        yield b'{"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]}'

    response = await studio.client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    response = await studio.client.post("/api/chat", json={"messages": big["messages"]})
    assert response.status_code == 413 and response.json()["error"] == "Request too large"
    small = {"model": LLAMA, "messages": [{"role": "user", "content": "hello"}]}
    assert (await studio.client.post(URL, json=small)).status_code == 200


async def test_the_default_body_limit_is_20_mb(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    response = await studio.client.post(
        URL, content=b"x" * 21_000_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "20 MB" in response.json()["error"]["message"]


async def test_a_405_names_every_method_the_path_takes(live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None))
    for path, allowed in (
        ("/api/admin/keys", {"GET", "POST"}),  # one route per method: Starlette's own 405 named one
        ("/api/models/active", {"GET", "PUT", "DELETE"}),
        ("/api/chat/ui/memories", {"GET", "POST"}),
        ("/v1/chat/completions", {"POST"}),
        ("/api/chat/ui/conversations/import", {"POST"}),  # its own path, not a conversation's id
    ):
        answer = await studio.client.request("OPTIONS", path)
        assert answer.status_code == 405, (path, answer.text)
        named = {m.strip() for m in answer.headers["allow"].split(",")}
        assert allowed == named, (path, named)
        # and each method it names is one the path takes (not a 405 again)
        for method in named:
            taken = await studio.client.request(method, path, json={})
            assert taken.status_code != 405, (method, path)
        body = answer.json()
        message = body["error"]["message"] if path.startswith("/v1") else body["message"]
        assert message.startswith(f"OPTIONS is not allowed on {path}; allowed: "), body
        assert all(method in message for method in allowed), body
