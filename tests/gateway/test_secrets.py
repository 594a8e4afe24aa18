"""Provider secrets never appear in responses, logs, errors, metrics or the database.

A real `mmstudio serve` process (debug logging) is driven through every route that could leak:
chat that succeeds, upstream errors that echo the key in full, streams that fail in-band,
registering an endpoint with its own key, model lists, metrics. Then every response, the whole
server log and every file of the data directory are searched for each secret.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fakes.base import Reply, closed_port
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.process import serve_process

OPENAI_KEY = "sk-proj-SECRETopenaiKEY0123456789abcdef"
ENDPOINT_KEY = "llm-SECRETendpointKEY9876543210zyxw"
GATEWAY_KEY = "mms-SECRETgatewayKEY-5555555555555"


def _leaks(text: str) -> list[str]:
    found = []
    for secret in (OPENAI_KEY, ENDPOINT_KEY, GATEWAY_KEY):
        # The whole key, and any 16-character run of it (vendors echo keys partly).
        pieces = {secret[i : i + 16] for i in range(0, len(secret) - 15)}
        found += [f"{secret[:8]}…: {piece!r}" for piece in pieces if piece in text]
    return found


def test_no_secret_leaves_the_process(tmp_path: Path) -> None:
    echo = f"Invalid request for key {OPENAI_KEY} (Bearer {OPENAI_KEY})"
    with (
        FakeOpenAIServer(flavor="openai", models=["gpt-4o"], api_key=OPENAI_KEY) as openai_fake,
        FakeOpenAIServer(flavor="llamacpp", models=["qwen"], api_key=ENDPOINT_KEY) as box,
    ):
        env = {
            "MMSTUDIO_DATA_DIR": str(tmp_path / "data"),
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": f"{openai_fake.url}/v1",
            "MMSTUDIO_API_KEYS": GATEWAY_KEY,
            "OLLAMA_HOST": f"127.0.0.1:{closed_port()}",
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
            "MMSTUDIO_LOG_LEVEL": "debug",
        }
        seen: list[str] = []
        with serve_process(env, tmp_path) as server:
            auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
            with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:

                def call(method: str, path: str, **kwargs: object) -> httpx.Response:
                    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
                    seen.append(
                        f"{method} {path} {response.status_code} {dict(response.headers)} {response.text}"
                    )
                    return response

                chat = {
                    "model": "openai/gpt-4o",
                    "messages": [{"role": "user", "content": "hi"}],
                    "fallbacks": False,
                }
                assert call("POST", "/v1/chat/completions", json=chat).status_code == 200
                # Retries are on (2 by default): each failure is scripted for every attempt.
                openai_fake.script(
                    Reply(
                        status=400, error_body={"error": {"message": echo, "type": "invalid_request_error"}}
                    ),
                    *[Reply(status=500, error_body={"error": {"message": echo, "type": "server_error"}})] * 3,
                    *[Reply(chunks=["a", "b", "c"], stream_error_after=2, stream_error={"message": echo})]
                    * 3,
                )
                assert call("POST", "/v1/chat/completions", json=chat).status_code == 400
                assert (
                    call(
                        "POST",
                        "/api/chat",
                        json={"messages": chat["messages"], "modelId": "openai/gpt-4o", "fallbacks": False},
                    ).status_code
                    == 502
                )
                streamed = call("POST", "/v1/chat/completions", json={**chat, "stream": True})
                assert "mid_stream_error" in streamed.text
                # A wrong key upstream (the vendor echoes part of it)
                register = {
                    "platform": "openai_compat",
                    "base_url": f"{box.url}/v1",
                    "api_key": ENDPOINT_KEY,
                    "name": "box",
                    "model": "qwen",
                    "display_name": "Box Qwen",
                }
                assert (
                    call(
                        "POST",
                        "/api/models/endpoints/test",
                        json={k: register[k] for k in ("platform", "base_url", "api_key")},
                    ).status_code
                    == 200
                )
                assert call("POST", "/api/models/endpoints", json=register).status_code in (200, 201)
                wrong = {
                    "platform": "openai_compat",
                    "base_url": f"{box.url}/v1",
                    "api_key": ENDPOINT_KEY + "x",
                }
                refused = call("POST", "/api/models/endpoints/test", json=wrong).json()
                assert refused["ok"] is False and refused["cause"] == "authentication"
                box_chat = {
                    "model": "box/qwen",
                    "messages": [{"role": "user", "content": "hi"}],
                    "fallbacks": False,
                }
                assert call("POST", "/v1/chat/completions", json=box_chat).status_code == 200
                for path in (
                    "/v1/models",
                    "/api/models",
                    "/api/models/endpoints",
                    "/api/models/health",
                    "/metrics",
                    "/api/metrics",
                    "/api/admin/keys",
                    "/openapi.json",
                ):
                    assert call("GET", path).status_code == 200, path
            log = server.log()
        assert "DEBUG" in log or "debug" in log.lower()
    leaks = _leaks("\n".join(seen))
    assert not leaks, f"responses leak: {leaks}"
    assert not _leaks(log), f"the server log leaks: {_leaks(log)}"
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file() and path.name != "secret.key":
            text = path.read_bytes().decode("latin-1")
            assert not _leaks(text), f"{path} leaks: {_leaks(text)}"
