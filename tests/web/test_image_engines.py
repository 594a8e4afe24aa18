"""Local image engines in the registry through the studio API: the built-in AUTOMATIC1111 detected in the
background with its checkpoints as image models and its health, registration by URL with a connection
test, and a wrong server refused with the cause."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from mmstudio.settings import Settings
from mmstudio.web.app import create_app
from tests.domain.conftest import local_env
from tests.fakes.a1111_server import FakeA1111Server
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_images_local_server import FakeLocalImagesServer
from tests.web.conftest import app_client

CHECKPOINTS = ["v1-5-pruned-emaonly.safetensors", "sdxl_base_1.0.safetensors"]


@pytest.fixture
def a1111() -> Iterator[FakeA1111Server]:
    with FakeA1111Server(models=CHECKPOINTS) as server:
        yield server


@pytest.fixture
async def client(data_dir: Path, a1111: FakeA1111Server) -> AsyncIterator[httpx.AsyncClient]:
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(None, None), "A1111_URL": a1111.url}
    app = create_app(Settings.from_env(env), environ=env)
    async with app_client(app) as client:
        await client.post("/api/models/detect")
        yield client


async def test_the_builtin_a1111_is_detected_with_its_checkpoints_as_image_models(
    client: httpx.AsyncClient,
) -> None:
    models = (await client.get("/api/models", params={"modality": "image", "kind": "local"})).json()["models"]
    # A1111 names a checkpoint by its title, "<file> [<hash>]": the name its override setting takes.
    ids = sorted(m["id"] for m in models if m["id"].startswith("automatic1111/"))
    assert [i.split("/", 1)[1].split(" [")[0] for i in ids] == sorted(CHECKPOINTS)
    one = next(m for m in models if m["id"] == ids[0])
    assert one["modality"] == "image" and one["available"] and one["capabilities"]["reference_images"]
    health = (await client.get("/api/models/health", params={"refresh": True})).json()["endpoints"]
    engine = next(e for e in health if e["id"] == "automatic1111")
    assert engine["health"]["status"] == "healthy" and engine["health"]["latency_ms"] > 0
    chat = (await client.get("/api/models", params={"modality": "chat"})).json()["models"]
    assert not any(m["id"].startswith("automatic1111/") for m in chat)


async def test_an_images_server_is_registered_by_url_after_a_connection_test(
    client: httpx.AsyncClient,
) -> None:
    with FakeLocalImagesServer(models=["sd-turbo"]) as server:
        url = f"{server.url}/v1"
        tested = await client.post(
            "/api/models/endpoints/test", json={"platform": "openai_images", "base_url": url}
        )
        assert tested.json()["ok"] is True and tested.json()["models"] == ["sd-turbo"]
        created = await client.post(
            "/api/models/endpoints",
            json={"platform": "openai_images", "base_url": url, "model": "sd-turbo", "display_name": "My SD"},
        )
        assert created.status_code == 201, created.text
        model_id = created.json()["models"][0]["model_id"]
        models = {m["id"]: m for m in (await client.get("/api/models")).json()["models"]}
        assert models[model_id]["modality"] == "image" and models[model_id]["name"] == "My SD"


async def test_a_server_that_is_not_a1111_is_refused_with_the_cause(client: httpx.AsyncClient) -> None:
    with FakeOllamaServer() as ollama:
        tested = await client.post(
            "/api/models/endpoints/test", json={"platform": "automatic1111", "base_url": ollama.url}
        )
    body = tested.json()
    assert body["ok"] is False and "AUTOMATIC1111" in body["message"], body
