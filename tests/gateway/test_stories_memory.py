"""Memory mode, per image provider: with it on, every scene's text request carries the tier's characters
and every image request carries their reference photos (with `input_fidelity: high` where the model
takes it); with it off, no photo goes anywhere. Checked on the bytes each protocol-faithful fake received
(multipart parts, base64 in JSON, ComfyUI's upload), against the photo as the media store keeps it."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from tests.fakes.a1111_server import FakeA1111Server
from tests.fakes.base import FakeServer, Reply
from tests.fakes.comfyui_server import FakeComfyUIServer
from tests.fakes.gemini_images_server import FakeGeminiImagesServer
from tests.fakes.images import make_image
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_images_server import FakeOpenAIImagesServer
from tests.fakes.xai_images_server import FakeXAIImagesServer
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.test_stories import KIDS, config, follow, scene_text
from tests.gateway.test_videos import wait_done


@dataclass
class Engine:
    provider: str  # the image model ids' prefix
    env: dict[str, str]
    server: FakeServer
    fidelity: Callable[[], str | None] | None = None  # what input_fidelity the last request had


@pytest.fixture(params=["openai", "xai", "gemini", "automatic1111", "comfyui"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    with ExitStack() as stack:
        name = request.param
        if name == "openai":
            openai = stack.enter_context(FakeOpenAIImagesServer(api_key="sk-memory-0123456789"))
            env = {"OPENAI_API_KEY": "sk-memory-0123456789", "OPENAI_BASE_URL": f"{openai.url}/v1"}

            def fidelity() -> str | None:
                return openai.edits[-1].values.get("input_fidelity") if openai.edits else None

            yield Engine("openai", env, openai, fidelity)
        elif name == "xai":
            xai = stack.enter_context(FakeXAIImagesServer(api_key="xai-memory-0123456789"))
            yield Engine(
                "xai", {"XAI_API_KEY": "xai-memory-0123456789", "XAI_BASE_URL": f"{xai.url}/v1"}, xai
            )
        elif name == "gemini":
            gemini = stack.enter_context(FakeGeminiImagesServer(api_key="gemini-memory-0123456789"))
            env = {"GEMINI_API_KEY": "gemini-memory-0123456789", "GEMINI_BASE_URL": f"{gemini.url}/v1beta"}
            yield Engine("gemini", env, gemini)
        elif name == "automatic1111":
            a1111 = stack.enter_context(FakeA1111Server(models=["sdxl_base_1.0.safetensors"]))
            yield Engine("automatic1111", {"A1111_URL": a1111.url}, a1111)
        else:
            comfy = stack.enter_context(FakeComfyUIServer(checkpoints=["v1-5-pruned-emaonly.safetensors"]))
            yield Engine("comfyui", {"COMFYUI_URL": comfy.url}, comfy)


def carried(server: FakeServer, photo: bytes) -> bool:
    """Whether any request the engine received carried the photo, raw or in base64."""
    encoded = base64.b64encode(photo)
    return any(photo in r.body or encoded in r.body for r in server.requests)


async def test_memory_mode_sends_the_cast_and_their_photos_and_nothing_without_it(
    live: OpenLive, engine: Engine
) -> None:
    with FakeOllamaServer() as ollama:
        running = await live({**engines(ollama, None), **engine.env}, config=config())
        info = (await running.client.get(KIDS)).json()
        ours = [m["id"] for m in info["imageModels"] if m["id"].startswith(f"{engine.provider}/")]
        model = info["defaultImageModel"] if info["defaultImageModel"] in ours else ours[0]
        upload = await running.client.post(
            f"{KIDS}/photos",
            files={"file": ("pip.png", make_image(96, 96, color=(200, 60, 20)), "image/png")},
        )
        assert upload.status_code == 201, upload.text
        photo_id = upload.json()["id"]
        asset = await running.studio.media.get(photo_id)
        assert asset is not None and asset.tier == "kids"
        photo = (await running.studio.media.read_path(asset)).read_bytes()  # as stored: cleaned
        pip = await running.client.post(
            f"{KIDS}/characters",
            json={
                "name": "Pip",
                "description": "a small red fox with one white ear",
                "photo_ids": [photo_id],
            },
        )
        assert pip.status_code == 201, pip.text

        for memory in (False, True):
            engine.server.requests.clear()
            ollama.script(Reply(text=scene_text("Pip's day")))
            made = await running.client.post(
                f"{KIDS}/stories",
                json={"premise": "Pip looks for a home", "image_model": model, "memory_mode": memory},
            )
            assert made.status_code == 201, made.text
            kind, written = (await follow(running, "kids", made.json()["scene"]["id"]))[-1]
            assert kind == "scene", written
            job = (await wait_done(running, written["scene"]["imageJobId"]))["job"]
            assert job["state"] == "complete", job
            assert job["model"] == model  # the chosen engine made it
            text = ollama.requests_to("/api/chat")[-1].json()["messages"][0]["content"]
            assert ("- Pip: a small red fox with one white ear" in text) == memory
            assert carried(engine.server, photo) == memory, (engine.provider, memory)
            if engine.fidelity is not None and memory:
                assert engine.fidelity() == "high"


async def test_a_photo_or_character_of_another_tier_is_not_found(live: OpenLive) -> None:
    from mmstudio.config import TierConfig

    with FakeOllamaServer() as ollama, FakeOpenAIImagesServer(api_key="sk-memory-0123456789") as openai:
        env = {
            **engines(ollama, None),
            "OPENAI_API_KEY": "sk-memory-0123456789",
            "OPENAI_BASE_URL": f"{openai.url}/v1",
        }
        running = await live(env, config=config(teens=TierConfig(name="Teens")))
        kids_photo = (
            await running.client.post(
                f"{KIDS}/photos", files={"file": ("a.png", make_image(32, 32), "image/png")}
            )
        ).json()["id"]
        refused = await running.client.post(
            "/api/stories/teens/characters", json={"name": "Bo", "photo_ids": [kids_photo]}
        )
        assert refused.status_code == 400 and refused.json()["field"] == "photo_ids"
        made = (await running.client.post(f"{KIDS}/characters", json={"name": "Pip"})).json()
        assert (await running.client.get("/api/stories/teens/characters")).json() == {"items": []}
        for method in ("PATCH", "DELETE"):
            answer = await running.client.request(
                method,
                f"/api/stories/teens/characters/{made['id']}",
                json={"name": "x"} if method == "PATCH" else None,
            )
            assert answer.status_code == 404, (method, answer.text)
        assert (await running.client.get(f"/api/stories/teens/media/{kids_photo}")).status_code == 404
        text = await running.client.post(
            f"{KIDS}/photos", files={"file": ("notes.txt", b"hello", "text/plain")}
        )
        assert text.status_code in (400, 415) and "Traceback" not in text.text
        renamed = await running.client.patch(f"{KIDS}/characters/{made['id']}", json={"description": "brave"})
        assert renamed.status_code == 200 and renamed.json()["description"] == "brave"
        assert renamed.json()["name"] == "Pip"
        assert (await running.client.delete(f"{KIDS}/characters/{made['id']}")).status_code == 204
