"""The registry's HTTP API, through the real app and its lifespan, against fake engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from mmstudio.settings import Settings
from mmstudio.web.app import create_app
from tests.domain.conftest import local_env
from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.web.conftest import app_client

SECRET = "sk-endpoint-SECRET-9876543210"


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def lmstudio() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it"], api_key=SECRET) as server:
        yield server


@pytest.fixture
async def client(
    data_dir: Path, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> AsyncIterator[httpx.AsyncClient]:
    env = {
        "MMSTUDIO_DATA_DIR": str(data_dir),
        **local_env(ollama, lmstudio),
        "OPENAI_API_KEY": "sk-openai-SECRET-1",
    }
    app = create_app(Settings.from_env(env), environ=env)
    async with app_client(app) as client:
        await client.post("/api/models/detect")
        yield client


async def test_healthz_and_front_door(client: httpx.AsyncClient) -> None:
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["ready"] is True
    root = await client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/chat"  # a model is ready
    assert "/api/models/endpoints" in (await client.get("/openapi.json")).json()["paths"]


async def test_list_models_with_everything_a_ui_needs(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/models")).json()
    models = {m["id"]: m for m in body["models"]}
    llama = models["ollama/llama3.2:latest"]
    assert llama["kind"] == "local" and llama["capabilities"]["tools"] and llama["modality"] == "chat"
    assert llama["health"]["status"] in ("healthy", "checking") and llama["sessions"] == 0
    gpt = models["openai/gpt-4o"]
    assert gpt["available"] and gpt["prices"]["input_per_million"] == 2.5
    claude = models["anthropic/claude-sonnet-4-5"]
    assert not claude["available"] and claude["enable_with"] == "ANTHROPIC_API_KEY"
    # LM Studio needs a key it was not given: listed as detected nothing, not an error.
    local_first = [m["kind"] for m in body["models"]]
    assert local_first.index("cloud") > local_first.index("local")
    only_local = (await client.get("/api/models", params={"kind": "local"})).json()["models"]
    assert {m["kind"] for m in only_local} == {"local"}
    images = (await client.get("/api/models", params={"modality": "image"})).json()["models"]
    assert "openai/gpt-image-1" in {m["id"] for m in images}


async def test_health_endpoint_refresh(client: httpx.AsyncClient) -> None:
    endpoints = {
        e["id"]: e
        for e in (await client.get("/api/models/health", params={"refresh": True})).json()["endpoints"]
    }
    assert endpoints["ollama"]["health"]["status"] == "healthy"
    assert endpoints["ollama"]["health"]["latency_ms"] > 0
    assert endpoints["cloud:anthropic"]["enabled"] is False


async def test_register_test_and_delete_endpoint(
    client: httpx.AsyncClient, lmstudio: FakeOpenAIServer
) -> None:
    url = f"{lmstudio.url}/v1"
    tested = (
        await client.post("/api/models/endpoints/test", json={"platform": "lmstudio", "base_url": url})
    ).json()
    assert tested["ok"] is False and tested["cause"] == "authentication"
    tested = (
        await client.post(
            "/api/models/endpoints/test", json={"platform": "lmstudio", "base_url": url, "api_key": SECRET}
        )
    ).json()
    assert tested["ok"] is True and tested["models"] == ["gemma-2-2b-it"]
    created = await client.post(
        "/api/models/endpoints",
        json={
            "platform": "lmstudio",
            "base_url": url,
            "api_key": SECRET,
            "model": "gemma-2-2b-it",
            "display_name": "My Gemma 2B",
        },
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["has_api_key"] is True and SECRET not in created.text
    assert endpoint["models"][0]["model_id"] == "lmstudio/gemma-2-2b-it"
    models = {m["id"]: m for m in (await client.get("/api/models")).json()["models"]}
    assert models["lmstudio/gemma-2-2b-it"]["name"] == "My Gemma 2B"
    assert SECRET not in (await client.get("/api/models/endpoints")).text
    assert (await client.delete(f"/api/models/endpoints/{endpoint['id']}")).status_code == 204
    assert (await client.delete(f"/api/models/endpoints/{endpoint['id']}")).status_code == 404


async def test_register_failure_says_why_and_saves_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/models/endpoints",
        json={
            "platform": "ollama",
            "base_url": f"http://127.0.0.1:{closed_port()}",
            "model": "llama3.2",
            "display_name": "X",
        },
    )
    assert response.status_code == 502  # the endpoint named did not answer: a bad gateway, not bad input
    body = response.json()
    assert body["cause"] == "connection_refused" and "Is it running?" in body["message"]
    assert (await client.get("/api/models/endpoints")).json()["endpoints"] == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"platform": "vllm", "base_url": "http://x:1/v1", "model": "m"}, "platform"),
        ({"platform": "ollama", "base_url": "http://x:1"}, "at least one model"),
        ({"platform": "ollama", "model": "m"}, "base_url"),
        ({"platform": "ollama", "base_url": "ftp://somewhere", "model": "m"}, "http://"),
        ({"platform": "ollama", "base_url": "http://[bad", "model": "m"}, "not a valid URL"),
        ({"platform": "ollama", "base_url": "http://:11434", "model": "m"}, "no host name"),
        ({"platform": "ollama", "base_url": "http://host:port", "model": "m"}, "not a valid URL"),
    ],
)
async def test_bad_registration_input_is_a_clear_4xx(
    client: httpx.AsyncClient, payload: dict[str, str], expected: str
) -> None:
    response = await client.post("/api/models/endpoints", json=payload)
    assert 400 <= response.status_code < 500
    assert expected in response.json()["message"]


async def test_malformed_json_is_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/models/endpoints", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "JSON" in response.json()["message"]


async def test_detect_reports_each_engine(client: httpx.AsyncClient) -> None:
    results = {r["provider"]: r for r in (await client.post("/api/models/detect")).json()["results"]}
    assert results["ollama"]["ok"] and "llama3.2:latest" in results["ollama"]["models"]
    assert results["lmstudio"]["ok"] is False and SECRET not in (results["lmstudio"]["error"] or "")


async def test_the_active_model_is_chosen_persisted_and_answers_requests_without_a_model(
    data_dir: Path, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(ollama, lmstudio)}
    async with app_client(create_app(Settings.from_env(env), environ=env)) as client:
        await client.post("/api/models/detect")
        before = (await client.get("/api/models/active")).json()
        assert before["source"] == "auto" and before["model"]["kind"] == "local"
        automatic = before["model"]["id"]
        other = next(m for m in ("ollama/gemma3:4b", "ollama/llama3.2:latest") if m != automatic)
        chosen = await client.put("/api/models/active", json={"model": other})
        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["source"] == "active"
        assert chosen.json()["model"]["id"] == other
        assert chosen.json()["model"]["health"]["status"] in ("healthy", "checking")
        assert (await client.get("/api/models")).json()["default_model"] == other
        unknown = await client.put("/api/models/active", json={"model": "nope/nothing"})
        assert unknown.status_code in (400, 404) and "nope/nothing" in unknown.text
        image = await client.put("/api/models/active", json={"model": "openai/gpt-image-1"})
        assert image.status_code in (400, 404)
        empty = await client.put("/api/models/active", json={"model": ""})
        assert empty.status_code == 400
    # A restart keeps the choice, and a request naming no model goes to it.
    async with app_client(create_app(Settings.from_env(env), environ=env)) as client:
        await client.post("/api/models/detect")
        assert (await client.get("/api/models/active")).json()["model"]["id"] == other
        answer = await client.post("/api/chat", json={"messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["modelUsed"] == other
        cleared = (await client.delete("/api/models/active")).json()
        assert cleared["source"] == "auto" and cleared["model"]["id"] == automatic


async def test_every_page_has_an_icon_so_no_page_logs_a_favicon_404(client: httpx.AsyncClient) -> None:
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
    page = await client.get("/chat")
    assert '<link rel="icon" href="/static/favicon.svg"' in page.text
    assert (await client.get("/static/favicon.svg")).status_code == 200
