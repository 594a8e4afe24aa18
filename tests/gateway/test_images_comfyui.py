"""ComfyUI as the studio's image engine, end to end on a real uvicorn: detected in the background with its
checkpoints as image models, a generation with progress from its websocket, the user's own workflow by
name, and a workflow path from a caller refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmstudio.config import ImagesConfig, StudioConfig
from mmstudio.providers.media.comfyui import load_workflow
from tests.fakes.comfyui_server import FakeComfyUIServer
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.test_images import sse

CHECKPOINTS = ["v1-5-pruned-emaonly.safetensors", "dreamshaper_8.safetensors"]


@pytest.fixture
def comfy() -> Iterator[FakeComfyUIServer]:
    with FakeComfyUIServer(checkpoints=CHECKPOINTS) as server:
        yield server


def prompts(comfy: FakeComfyUIServer) -> list[dict[str, Any]]:
    return [r.json()["prompt"] for r in comfy.requests if r.path == "/prompt"]


async def test_comfyui_is_detected_and_makes_images_with_progress(
    live: OpenLive, comfy: FakeComfyUIServer
) -> None:
    running = await live({**engines(None, None), "COMFYUI_URL": comfy.url})
    models = (await running.client.get("/api/images/models")).json()["models"]
    ids = sorted(m["id"] for m in models if m["provider"] == "comfyui")
    assert ids == [f"comfyui/{c}" for c in sorted(CHECKPOINTS)]
    assert all(m["kind"] == "local" and m["usable"] for m in models if m["provider"] == "comfyui")
    health = (await running.client.get("/api/models/health", params={"refresh": True})).json()["endpoints"]
    assert next(e for e in health if e["id"] == "comfyui")["health"]["status"] == "healthy"

    async with running.client.stream(
        "POST",
        "/api/images",
        json={
            "prompt": "a castle",
            "model": "comfyui/dreamshaper_8.safetensors",
            "steps": 4,
            "seed": 99,
            "size": "768x512",
            "negative_prompt": "blurry",
            "stream": True,
        },
    ) as response:
        text = "".join([chunk async for chunk in response.aiter_text()])
    events = sse(text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "plan" and kinds[-1] == "done", events[-1]
    steps = [e["step"] for k, e in events if k == "progress"]
    assert steps == [1, 2, 3, 4]
    done = events[-1][1]
    image = done["images"][0]
    assert (image["width"], image["height"]) == (768, 512) and image["recipe"]["seed"] == 99
    assert image["recipe"]["workflow"] == "txt2img"
    (graph,) = prompts(comfy)
    texts = {n["inputs"].get("text") for n in graph.values() if n["class_type"] == "CLIPTextEncode"}
    assert texts == {"a castle", "blurry"}
    loader = next(n for n in graph.values() if n["class_type"] == "CheckpointLoaderSimple")
    assert loader["inputs"]["ckpt_name"] == "dreamshaper_8.safetensors"


async def test_the_users_workflow_by_name_and_never_a_path(
    live: OpenLive, comfy: FakeComfyUIServer, tmp_path: Path
) -> None:
    shipped = load_workflow("txt2img")
    graph = json.loads(json.dumps(shipped.graph))
    mine = {**graph, "mmstudio": {"format": 1, "slots": {k: list(v) for k, v in shipped.slots.items()}}}
    sampler = next(k for k, n in graph.items() if n["class_type"] == "KSampler")
    mine[sampler]["inputs"]["cfg"] = 3.5  # what makes this workflow the user's
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    config = StudioConfig(images=ImagesConfig(workflows={"mine": str(path)}))
    running = await live({**engines(None, None), "COMFYUI_URL": comfy.url}, config=config)
    model = "comfyui/v1-5-pruned-emaonly.safetensors"
    made = await running.client.post(
        "/api/images", json={"prompt": "a boat", "model": model, "workflow": "mine"}
    )
    assert made.status_code == 200, made.text
    (sent,) = prompts(comfy)
    assert sent[sampler]["inputs"]["cfg"] == 3.5
    refused = await running.client.post(
        "/api/images", json={"prompt": "a boat", "model": model, "workflow": str(path)}
    )
    assert refused.status_code == 400 and refused.json()["field"] == "workflow"
    assert "txt2img, img2img, mine" in refused.json()["message"]
    assert len(prompts(comfy)) == 1
