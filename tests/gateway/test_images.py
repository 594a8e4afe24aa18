"""Image generation end to end on a real uvicorn: the studio API (JSON and SSE progress), the gallery,
media bytes and thumbnails, uploads, the OpenAI images API driven by the official `openai` SDK, fallback
from a local engine to the cloud, and every row of the bad-input table."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from mmstudio.config import ImagesConfig, StudioConfig
from mmstudio.domain.media import pictures
from tests.fakes.a1111_server import A1111Reply, FakeA1111Server
from tests.fakes.images import make_image
from tests.fakes.openai_images_server import FakeOpenAIImagesServer, ImagesReply
from tests.gateway.conftest import LiveStudio, OpenLive, engines

KEY = "sk-images-gateway-0123456789abcdef"
CHECKPOINT = "sdxl_base_1.0.safetensors"


@pytest.fixture
def a1111() -> Iterator[FakeA1111Server]:
    with FakeA1111Server(models=[CHECKPOINT]) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeOpenAIImagesServer]:
    with FakeOpenAIImagesServer(api_key=KEY) as server:
        yield server


def env_for(a1111: FakeA1111Server | None, cloud: FakeOpenAIImagesServer | None) -> dict[str, str]:
    env = engines(None, None)
    if a1111 is not None:
        env["A1111_URL"] = a1111.url
    if cloud is not None:
        env |= {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{cloud.url}/v1"}
    return env


async def a1111_model(live: LiveStudio) -> str:
    models = (await live.client.get("/api/images/models")).json()["models"]
    return next(m["id"] for m in models if m["provider"] == "automatic1111")


def sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines and "data" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_generate_store_list_show_bytes_thumb_reuse_delete(
    live: OpenLive, a1111: FakeA1111Server
) -> None:
    running = await live(env_for(a1111, None))
    client = running.client
    model = await a1111_model(running)
    a1111.script(A1111Reply(seed=424242))
    made = await client.post(
        "/api/images",
        json={"prompt": "a lighthouse at dusk", "model": model, "size": "640x480", "steps": 12, "n": 2},
    )
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["modelUsed"] == model and body["fallback"] is False
    assert made.headers["x-mmstudio-model"] == model
    assert [a["outcome"] for a in body["attempts"]] == ["ok"]
    first, second = body["images"]
    assert (first["width"], first["height"]) == (640, 480)
    assert first["recipe"]["seed"] == 424242 and second["recipe"]["seed"] == 424243
    assert first["recipe"]["steps"] == 12 and first["recipe"]["prompt"] == "a lighthouse at dusk"
    (sent,) = [r.json() for r in a1111.requests if r.path.endswith("txt2img")]
    assert (sent["width"], sent["height"], sent["steps"], sent["batch_size"]) == (640, 480, 12, 2)

    listed = (await client.get("/api/images", params={"limit": 1})).json()
    assert listed["total"] == 2 and len(listed["items"]) == 1 and "recipe" not in listed["items"][0]
    shown = (await client.get(f"/api/images/{first['id']}")).json()
    assert shown["recipe"]["model_used"] == model and shown["attempts"][0]["outcome"] == "ok"
    found = (await client.get("/api/images", params={"q": "LIGHTHOUSE", "provider": "automatic1111"})).json()
    assert found["total"] == 2
    assert (await client.get("/api/images", params={"q": "submarine"})).json()["total"] == 0

    raw = await client.get(first["url"])
    assert raw.headers["content-type"] == "image/png" and raw.headers["etag"] == f'"{first["sha256"]}"'
    assert "immutable" in raw.headers["cache-control"]
    assert pictures.png_texts(raw.content)["parameters"].startswith(
        "a lighthouse at dusk\nSteps: 12, Seed: 424242"
    )
    cached = await client.get(first["url"], headers={"if-none-match": raw.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    thumb = await client.get(first["thumbUrl"])
    assert thumb.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.size == (256, 192)

    reuse = (await client.post(f"/api/images/{first['id']}/reuse")).json()
    assert reuse == {
        "prompt": "a lighthouse at dusk",
        "model": model,
        "n": 1,
        "size": "640x480",
        "seed": 424242,
        "steps": 12,
    }
    again = await client.post("/api/images", json=reuse)
    assert again.json()["images"][0]["recipe"]["seed"] == 424242

    assert (await client.delete(f"/api/images/{first['id']}")).status_code == 204
    for path in (f"/api/images/{first['id']}", first["url"], first["thumbUrl"]):
        gone = await client.get(path)
        assert gone.status_code == 404 and "message" in gone.json()
    assert (await client.get("/api/images")).json()["total"] == 2


async def test_stream_reports_plan_attempt_progress_image_done(
    live: OpenLive, a1111: FakeA1111Server
) -> None:
    running = await live(env_for(a1111, None))
    model = await a1111_model(running)
    a1111.hold()
    seen: list[tuple[str, Any]] = []
    buffer = ""
    async with running.client.stream(
        "POST", "/api/images", json={"prompt": "a fox", "model": model, "steps": 3, "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_text():
            buffer += chunk
            seen = sse(buffer)
            steps = [e for kind, e in seen if kind == "progress"]
            if steps and steps[-1]["step"] == 3:
                a1111.release()
    kinds = [kind for kind, _ in seen]
    assert kinds[:2] == ["plan", "attempt"] and kinds[-2:] == ["image", "done"], kinds
    progress = [e for kind, e in seen if kind == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3] and all(p["steps"] == 3 for p in progress)
    assert 0 < progress[0]["percent"] < progress[-1]["percent"] <= 100
    done = seen[-1][1]
    assert done["modelUsed"] == model and done["images"][0]["id"] == seen[-2][1]["id"]


async def test_local_engine_fails_the_cloud_makes_it_and_says_so(
    live: OpenLive, a1111: FakeA1111Server, cloud: FakeOpenAIImagesServer
) -> None:
    running = await live(env_for(a1111, cloud))
    model = await a1111_model(running)
    a1111.script(*[A1111Reply(status=500)] * 5)
    made = await running.client.post(
        "/api/images", json={"prompt": "a red fox in snow", "model": model, "size": "1000x1000"}
    )
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["modelUsed"].startswith("openai/") and body["fallback"] is True
    assert next(a["model"] for a in body["attempts"] if a["outcome"] == "error") == model
    assert body["sizeUsed"] == "1024x1024" and body["notes"]  # mapped, and the response says so
    assert cloud.generation_bodies()[-1]["size"] == "1024x1024"
    assert body["images"][0]["recipe"]["model_requested"] == model


async def test_refusal_is_final_by_default_with_the_vendor_reason(
    live: OpenLive, cloud: FakeOpenAIImagesServer
) -> None:
    running = await live(env_for(None, cloud))
    cloud.script(ImagesReply(refused=True))
    refused = await running.client.post(
        "/api/images", json={"prompt": "something", "model": "openai/gpt-image-1"}
    )
    assert refused.status_code == 400
    body = refused.json()
    assert body["kind"] == "content_filtered" and "safety" in body["message"].lower()
    assert len(cloud.generation_bodies()) == 1  # not retried
    assert (await running.client.get("/api/images")).json()["total"] == 0


async def test_fallback_on_refusal_when_configured(
    live: OpenLive, a1111: FakeA1111Server, cloud: FakeOpenAIImagesServer
) -> None:
    config = StudioConfig(
        images=ImagesConfig(fallback_on_refusal=True, fallback_chain=("openai/gpt-image-1-mini",))
    )
    running = await live(env_for(a1111, cloud), config=config)
    cloud.script(ImagesReply(refused=True))
    made = await running.client.post(
        "/api/images", json={"prompt": "something", "model": "openai/gpt-image-1"}
    )
    assert made.status_code == 200, made.text
    assert made.json()["modelUsed"] == "openai/gpt-image-1-mini"


@pytest.mark.parametrize(
    "reply",
    [
        ImagesReply(image_data="%%% not base64 %%%"),
        ImagesReply(image_data=base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()),
        ImagesReply(drop_after=1),
        ImagesReply(status=503, headers={"retry-after": "0"}),
    ],
    ids=["bad-base64", "not-a-whole-png", "truncated", "503"],
)
async def test_broken_upstream_answers_fall_back_and_leave_nothing_half_written(
    live: OpenLive, a1111: FakeA1111Server, cloud: FakeOpenAIImagesServer, reply: ImagesReply
) -> None:
    running = await live(env_for(a1111, cloud))  # the default chain: local engines, then the cloud
    cloud.script(*[reply] * 5)
    made = await running.client.post("/api/images", json={"prompt": "a boat", "model": "openai/gpt-image-1"})
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["modelUsed"].startswith("automatic1111/") and body["attempts"][0]["outcome"] == "error"
    assert (await running.client.get("/api/images")).json()["total"] == 1
    media = running.studio.settings.data_dir / "media"
    stored = [p for p in media.rglob("*.png") if "thumbs" not in p.parts]
    assert len(stored) == 1 and list((media / "tmp").iterdir()) == []


def _bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return pictures.PNG_SIGNATURE + chunk + end


async def test_bad_input_table(live: OpenLive, a1111: FakeA1111Server, cloud: FakeOpenAIImagesServer) -> None:
    config = StudioConfig(images=ImagesConfig(max_upload_mb=1.0))
    running = await live({**env_for(a1111, cloud), "OLLAMA_HOST": "127.0.0.1:9"}, config=config)
    client = running.client
    model = await a1111_model(running)

    async def post(body: dict[str, Any]) -> httpx.Response:
        return await client.post("/api/images", json=body)

    unknown = await post({"prompt": "x", "model": "no-such-model"})
    assert unknown.status_code == 404 and model in unknown.json()["message"]
    assert "openai/gpt-image-1" in unknown.json()["message"]
    chat = await post({"prompt": "x", "model": "openai/gpt-4o-mini"})
    assert chat.status_code == 404 and "is a chat model; image models:" in chat.json()["message"]
    for body, field, words in [
        ({"prompt": "   "}, "prompt", "prompt is required"),
        ({"prompt": "x", "n": 11}, "n", "between 1 and 10"),
        ({"prompt": "x", "model": model, "n": 9}, "n", "at most 8"),
        ({"prompt": "x" * 40_000, "model": "openai/gpt-image-1"}, "prompt", "at most 32000"),
        ({"prompt": "x", "size": "huge"}, "size", "size"),
        ({"prompt": "x", "quality": "ultra"}, "quality", "auto, low"),
        ({"prompt": "x", "surprise": 1}, None, "surprise"),
        ({"prompt": 5}, None, "prompt"),
    ]:
        answer = await post(body)
        assert answer.status_code == 400, (body, answer.text)
        assert words in answer.json()["message"], (body, answer.json())
        if field:
            assert answer.json()["field"] == field
    missing = await post({"prompt": "x", "references": ["nope"]})  # an id that names nothing: a 404
    assert missing.status_code == 404 and "no image 'nope'" in missing.json()["message"]
    assert missing.json()["field"] == "references"

    # Uploads: not an image, too big, a decompression bomb.
    for data, status in [(b"<svg onload=alert(1)>", 415), (b"\0" * 1_100_000, 413), (_bomb(), 400)]:
        answer = await client.post("/api/media", files={"file": ("x.png", data, "image/png")})
        assert answer.status_code == status, answer.text
        assert answer.json()["message"]
    assert (await client.post("/api/media", data={"file": "text"})).status_code == 400

    # A reference photo to a model without references: skipped with the reason; 400 if nothing is left.
    upload = await client.post("/api/media", files={"file": ("ref.png", make_image(64, 64), "image/png")})
    assert upload.status_code == 201 and upload.json()["kind"] == "upload"
    ref = upload.json()["id"]
    made = await post({"prompt": "x", "model": model, "references": [ref]})
    assert made.status_code == 200 and made.json()["images"][0]["recipe"]["references"] == [ref]

    for path in ("/api/images/nope", "/api/media/nope", "/api/media/nope/thumb"):
        assert (await client.get(path)).status_code == 404
    assert (await client.delete("/api/images/nope")).status_code == 404
    assert (await client.post(f"/api/images/{ref}/reuse")).status_code == 404  # an upload is not an image
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}):
        assert (await client.get("/api/images", params=params)).status_code == 400


async def test_no_image_engine_and_no_key_is_503_with_onboarding(live: OpenLive) -> None:
    running = await live(engines(None, None))
    answer = await running.client.post("/api/images", json={"prompt": "a lighthouse"})
    assert answer.status_code == 503
    body = answer.json()
    assert "Add an image model" in body["message"] and body["link"]
    v1 = await running.client.post("/v1/images/generations", json={"prompt": "a lighthouse"})
    assert v1.status_code == 503 and "Add an image model" in v1.json()["error"]["message"]


async def test_references_skip_incapable_models_and_400_when_none_is_left(
    live: OpenLive, cloud: FakeOpenAIImagesServer
) -> None:
    from tests.fakes.openai_images_local_server import FakeLocalImagesServer

    with FakeLocalImagesServer(models=["sd-turbo"]) as local:
        running = await live(env_for(None, None))
        created = await running.client.post(
            "/api/models/endpoints",
            json={"platform": "openai_images", "base_url": f"{local.url}/v1", "model": "sd-turbo"},
        )
        model_id = created.json()["models"][0]["model_id"]
        ref = (
            await running.client.post(
                "/api/media", files={"file": ("r.png", make_image(32, 32), "image/png")}
            )
        ).json()["id"]
        answer = await running.client.post(
            "/api/images", json={"prompt": "x", "model": model_id, "references": [ref]}
        )
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert (
            body["field"] == "references" and model_id in body["message"] and "reference" in body["message"]
        )
        plain = await running.client.post("/api/images", json={"prompt": "x", "model": model_id})
        assert plain.status_code == 200, plain.text


# -- the OpenAI images API, driven by the official SDK ---------------------------------------------


def sdk(live: LiveStudio) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.v1, api_key="unused", max_retries=0)


async def test_openai_sdk_generate_and_edit(
    live: OpenLive, a1111: FakeA1111Server, cloud: FakeOpenAIImagesServer
) -> None:
    running = await live(env_for(a1111, cloud))
    async with sdk(running) as client:
        result = await client.images.generate(
            model="openai/gpt-image-1", prompt="a lighthouse at dusk", n=2, size="1024x1536"
        )
        assert len(result.data) == 2 and result.created > 0
        assert result.usage is not None and result.usage.total_tokens > 0
        image = base64.b64decode(result.data[0].b64_json or "")
        with Image.open(io.BytesIO(image)) as decoded:
            assert decoded.size == (1024, 1536)
        raw = await client.images.with_raw_response.generate(model="gpt-image-1", prompt="a boat")
        assert raw.headers["x-mmstudio-model"] == "openai/gpt-image-1"

        as_url = await client.images.generate(
            model="openai/gpt-image-1", prompt="a boat", response_format="url"
        )
        fetched = await running.client.get(as_url.data[0].url or "")
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"

        one = await client.images.edit(
            model="openai/gpt-image-1",
            image=("a.png", make_image(64, 64), "image/png"),
            prompt="make it night",
        )
        assert len(one.data) == 1
        several = await client.images.edit(
            model="openai/gpt-image-1",
            image=[
                ("a.png", make_image(64, 64), "image/png"),
                ("b.jpg", make_image(48, 48, "JPEG"), "image/jpeg"),
            ],
            prompt="combine them",
            input_fidelity="high",
        )
        assert len(several.data) == 1
        edit = cloud.edits[-1]
        assert len(edit.images) == 2 and edit.values.get("input_fidelity") == "high"
        # Edits land in the gallery, their references as uploads.
        listed = (await running.client.get("/api/images", params={"limit": 100})).json()
        assert listed["total"] == 6
        latest = (await running.client.get(f"/api/images/{listed['items'][0]['id']}")).json()
        assert len(latest["recipe"]["references"]) == 2

        models = [m.id async for m in client.models.list()]
        assert "openai/gpt-image-1" in models and any(m.startswith("automatic1111/") for m in models)


async def test_openai_errors_are_in_openai_shape(live: OpenLive, cloud: FakeOpenAIImagesServer) -> None:
    running = await live(env_for(None, cloud))
    async with sdk(running) as client:
        with pytest.raises(openai.NotFoundError) as bad:
            await client.images.generate(model="no-such-model", prompt="x")
        assert "Image models available now" in str(bad.value.body)
        with pytest.raises(openai.BadRequestError):
            await client.images.generate(model="openai/gpt-image-1", prompt="x", response_format="jpeg")  # type: ignore[arg-type]
        cloud.script(ImagesReply(refused=True))
        with pytest.raises(openai.BadRequestError) as refused:
            await client.images.generate(model="openai/gpt-image-1", prompt="x")
        assert refused.value.status_code == 400
        not_multipart = await running.client.post("/v1/images/edits", json={"prompt": "x"})
        assert (
            not_multipart.status_code == 400
            and not_multipart.json()["error"]["type"] == "invalid_request_error"
        )
        no_image = await running.client.post(
            "/v1/images/edits", data={"prompt": "x"}, files={"other": ("a", b"1")}
        )
        assert no_image.status_code == 400 and "image" in no_image.json()["error"]["message"]


async def test_chat_is_not_blocked_while_an_image_is_being_made(
    live: OpenLive, a1111: FakeA1111Server
) -> None:
    running = await live(env_for(a1111, None))
    model = await a1111_model(running)
    a1111.hold()
    making = asyncio.create_task(running.client.post("/api/images", json={"prompt": "slow", "model": model}))
    health = await running.client.get("/healthz")
    assert health.status_code == 200 and not making.done()
    a1111.release()
    assert (await making).status_code == 200
