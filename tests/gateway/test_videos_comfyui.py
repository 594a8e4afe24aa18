"""ComfyUI as the studio's local video engine, end to end on a real uvicorn with the job worker: its Wan
workflows listed as local video models (usable, or with the files to download), the default before any
cloud model, a text-to-video job through `/api/videos` with the seed ComfyUI drew in the recipe, the
official `openai` SDK selecting ComfyUI by model id, image-to-video from an uploaded still, a cancel that
interrupts ComfyUI, and a restart that resumes polling the prompt instead of queueing it again."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import av
import openai
import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.comfyui_video_server import FakeComfyUIVideoServer
from tests.fakes.images import make_image
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.gateway.test_videos import wait_done

FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))
GROK_KEY = "xai-videos-comfy-0123456789abcdef"


@pytest.fixture
def comfy() -> Iterator[FakeComfyUIVideoServer]:
    with FakeComfyUIVideoServer() as server:
        yield server


def env_for(comfy: FakeComfyUIVideoServer) -> dict[str, str]:
    return {**engines(None, None), "COMFYUI_URL": comfy.url}


async def models(running: LiveStudio) -> dict[str, dict[str, Any]]:
    answer = await running.client.get("/api/videos/models")
    assert answer.status_code == 200
    return {m["id"]: m for m in answer.json()["models"]}


async def wait_state(running: LiveStudio, job_id: str, state: str) -> None:
    async with asyncio.timeout(10):
        while (await running.client.get(f"/api/jobs/{job_id}")).json()["state"] != state:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_comfyui_workflows_are_local_video_models_and_the_default(
    live: OpenLive, comfy: FakeComfyUIVideoServer
) -> None:
    from tests.fakes.xai_video_server import FakeXAIVideoServer

    with FakeXAIVideoServer(api_key=GROK_KEY) as grok:
        env = {**env_for(comfy), "XAI_API_KEY": GROK_KEY, "XAI_BASE_URL": f"{grok.url}/v1"}
        running = await live(env, config=FAST)
        listed = await models(running)
        t2v, i2v = listed["comfyui/wan-t2v"], listed["comfyui/wan-i2v"]
        assert list(listed)[:2] == ["comfyui/wan-t2v", "comfyui/wan-i2v"]  # local first
        assert t2v["kind"] == "local" and t2v["usable"] and t2v["default"] and t2v["reason"] is None
        assert t2v["name"].startswith("Wan 2.1") and t2v["capabilities"]["seed"]
        assert (
            i2v["usable"] and i2v["capabilities"]["imageToVideo"] and not i2v["capabilities"]["textToVideo"]
        )
        assert (
            listed["xai/grok-imagine-video"]["kind"] == "cloud"
            and not listed["xai/grok-imagine-video"]["default"]
        )

        made = await running.client.post("/api/videos", json={"prompt": "a fox", "duration_s": 2})
        assert made.status_code == 202, made.text
        # Local first, then one model per keyed vendor; the i2v workflow needs an image, so it is left out.
        assert made.json()["plan"] == ["comfyui/wan-t2v", "xai/grok-imagine-video"]
        done = await wait_done(running, made.json()["id"])
        assert done["job"]["state"] == "complete" and done["job"]["model"] == "comfyui/wan-t2v", done["job"]
        assert grok.submissions == 0 and comfy.submissions == 1

        v1 = (await running.client.get("/v1/models")).json()["data"]
        assert {"comfyui/wan-t2v", "comfyui/wan-i2v"} <= {m["id"] for m in v1}
        one = await running.client.get("/v1/models/comfyui/wan-t2v")
        assert one.status_code == 200 and one.json()["owned_by"] == "comfyui"


async def test_a_text_to_video_job_keeps_the_seed_comfyui_drew(
    live: OpenLive, comfy: FakeComfyUIVideoServer
) -> None:
    running = await live(env_for(comfy), config=FAST)
    body = {"prompt": "a lighthouse at dusk", "model": "comfyui/wan-t2v", "duration_s": 2, "seed": -1}
    made = await running.client.post("/api/videos", json=body)
    assert made.status_code == 202, made.text
    done = await wait_done(running, made.json()["id"])
    job = done["job"]
    assert job["state"] == "complete", job
    progress = [e["progress"] for kind, e in done["events"] if kind == "job" and e["progress"] is not None]
    assert progress == sorted(progress) and progress[-1] == 100
    (graph,) = comfy.submitted()
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
    drawn = sampler["inputs"]["seed"]
    assert isinstance(drawn, int) and drawn >= 0  # -1 asks for a random seed: the adapter drew this one
    asset = await running.studio.media.get(job["outputs"][0]["id"])
    assert asset is not None and asset.recipe is not None
    assert asset.recipe.seed == drawn and asset.recipe.model_used == "comfyui/wan-t2v"  # not -1

    media = await running.client.get(job["outputs"][0]["url"])
    (served,) = comfy.video_files().values()
    assert media.headers["content-type"] == "video/mp4" and media.content == served
    with av.open(io.BytesIO(media.content)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (832, 480)
    poster = await running.client.get(job["outputs"][0]["posterUrl"])
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/webp"
    assert comfy.submissions == 1


# The SDK warns that OpenAI shuts its own Sora endpoints down; mmstudio's keep working for every model.
@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
async def test_the_openai_sdk_selects_comfyui_by_model(live: OpenLive, comfy: FakeComfyUIVideoServer) -> None:
    running = await live(env_for(comfy), config=FAST)
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client:
        created = await client.videos.create(model="comfyui/wan-t2v", prompt="a fox in the snow", seconds="4")
        assert created.status == "queued"
        done = await wait_done(running, created.id)
        assert done["job"]["state"] == "complete", done["job"]
        video = await client.videos.retrieve(created.id)
        assert video.status == "completed" and video.model == "comfyui/wan-t2v" and video.progress == 100
        data = (await client.videos.download_content(created.id)).read()
        (served,) = comfy.video_files().values()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(served).hexdigest()
    assert comfy.submissions == 1


async def test_image_to_video_from_an_uploaded_still(live: OpenLive, comfy: FakeComfyUIVideoServer) -> None:
    running = await live(env_for(comfy), config=FAST)
    without = await running.client.post(
        "/api/videos", json={"prompt": "it moves", "model": "comfyui/wan-i2v"}
    )
    assert without.status_code == 400 and without.json()["field"] == "start_image", without.text
    still = await running.client.post(
        "/api/media", files={"file": ("still.png", make_image(64, 48), "image/png")}
    )
    start = still.json()["id"]
    made = await running.client.post(
        "/api/videos", json={"prompt": "the still comes alive", "start_image": start, "duration_s": 1}
    )
    assert made.status_code == 202, made.text
    assert made.json()["plan"] == ["comfyui/wan-i2v"]  # with a start image: the workflow that takes one
    done = await wait_done(running, made.json()["id"])
    assert done["job"]["state"] == "complete", done["job"]
    assert [r.path for r in comfy.requests if r.path == "/upload/image"] == ["/upload/image"]
    (graph,) = comfy.submitted()
    assert any(n["class_type"] == "WanImageToVideo" for n in graph.values())
    asset = await running.studio.media.get(done["job"]["outputs"][0]["id"])
    assert asset is not None and asset.recipe is not None and asset.recipe.references == (start,)


async def test_a_missing_model_file_says_what_to_download(live: OpenLive) -> None:
    with FakeComfyUIVideoServer(clip_visions=[]) as comfy:
        running = await live(env_for(comfy), config=FAST)
        listed = await models(running)
        assert listed["comfyui/wan-t2v"]["usable"]
        i2v = listed["comfyui/wan-i2v"]
        assert not i2v["usable"] and "clip_vision_h.safetensors in models/clip_vision" in i2v["reason"]
        v1 = {m["id"] for m in (await running.client.get("/v1/models")).json()["data"]}
        assert "comfyui/wan-t2v" in v1 and "comfyui/wan-i2v" not in v1
        still = await running.client.post(
            "/api/media", files={"file": ("still.png", make_image(64, 48), "image/png")}
        )
        answer = await running.client.post(
            "/api/videos",
            json={"prompt": "x", "model": "comfyui/wan-i2v", "start_image": still.json()["id"]},
        )
        assert answer.status_code == 503 and "clip_vision_h.safetensors" in answer.json()["message"]
        assert comfy.submissions == 0


async def test_an_offline_comfyui_is_listed_with_the_reason(live: OpenLive) -> None:
    env = engines(None, None)  # COMFYUI_URL: a closed port
    running = await live(env, config=FAST)
    listed = await models(running)
    t2v = listed["comfyui/wan-t2v"]
    assert not t2v["usable"] and not t2v["default"] and t2v["reason"].endswith("start it")
    assert t2v["reason"].count(f"http://{env['COMFYUI_URL']}") == 1  # where it is, said once
    answer = await running.client.post("/api/videos", json={"prompt": "a fox", "model": "comfyui/wan-t2v"})
    assert answer.status_code == 503 and answer.json()["skipped"][0]["model"] == "comfyui/wan-t2v"
    assert "start it" in answer.json()["message"]


async def test_cancel_interrupts_comfyui(live: OpenLive, comfy: FakeComfyUIVideoServer) -> None:
    running = await live(env_for(comfy), config=FAST)
    comfy.hold(after_step=1)
    made = await running.client.post("/api/videos", json={"prompt": "a fox", "model": "comfyui/wan-t2v"})
    job_id = made.json()["id"]
    await wait_state(running, job_id, "running")
    cancelled = await running.client.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    done = await wait_done(running, job_id)
    assert done["job"]["state"] == "cancelled" and "the vendor stopped it" in done["job"]["error"]
    assert comfy.interrupts or any(r.path == "/queue" and r.method == "POST" for r in comfy.requests)
    assert comfy.video_files() == {}


async def test_a_restart_resumes_polling_the_prompt(live: OpenLive, comfy: FakeComfyUIVideoServer) -> None:
    first = await live(env_for(comfy), config=FAST)
    comfy.hold(after_step=1)
    made = await first.client.post("/api/videos", json={"prompt": "a fox", "model": "comfyui/wan-t2v"})
    job_id = made.json()["id"]
    await wait_state(first, job_id, "running")
    await first.studio.worker.stop()  # the shutdown: its lease goes back, ComfyUI keeps the prompt
    comfy.release()  # ComfyUI finishes it while we are down
    second = await live(env_for(comfy), config=FAST)
    done = await wait_done(second, job_id)
    assert done["job"]["state"] == "complete" and done["job"]["attemptCount"] == 2, done["job"]
    assert comfy.submissions == 1  # polled by its prompt id, never queued again


async def test_a_create_whose_answer_was_cut_is_found_not_queued_again(
    live: OpenLive, comfy: FakeComfyUIVideoServer
) -> None:
    running = await live(
        env_for(comfy), config=StudioConfig(videos=FAST.videos.model_copy(update={"retry_backoff_s": 0.01}))
    )
    comfy.fail("/prompt", "accept_then_drop")  # ComfyUI queued it; the answer with its id was cut
    body = {"prompt": "a fox", "model": "comfyui/wan-t2v", "duration_s": 1}
    made = await running.client.post("/api/videos", json=body)
    done = await wait_done(running, made.json()["id"])
    job = done["job"]
    assert job["state"] == "complete", job
    assert comfy.submissions == 1  # the retry asked ComfyUI for the prompt id it had stored first
    assert [a["outcome"] for a in job["attempts"]] == ["error", "submitted"]
    assert "dropped the connection" in job["attempts"][0]["error"]


async def test_a_worker_killed_after_comfyui_accepted_resumes_by_the_stored_prompt_id(
    live: OpenLive, comfy: FakeComfyUIVideoServer
) -> None:
    config = StudioConfig(videos=FAST.videos.model_copy(update={"lease_seconds": 0.5}))
    first = await live(env_for(comfy), config=config)
    comfy.hold_answers()
    made = await first.client.post("/api/videos", json={"prompt": "a fox", "model": "comfyui/wan-t2v"})
    job_id = made.json()["id"]
    assert await asyncio.to_thread(comfy.answer_held.wait, 10)  # ComfyUI has queued it
    await first.studio.worker.stop(release=False)  # killed mid-call: no answer, the lease left to expire
    comfy.holding_answers = False
    stored = (await first.client.get(f"/api/jobs/{job_id}")).json()
    assert stored["state"] == "submitting" and stored["upstreamHandle"] is None

    second = await live(env_for(comfy), config=config)
    done = await wait_done(second, job_id)
    job = done["job"]
    assert job["state"] == "complete", job
    assert comfy.submissions == 1  # found under the prompt id stored before the call, never queued again
    assert job["attempts"][-1]["outcome"] == "submitted" and job["attempts"][-1]["found"] is True
