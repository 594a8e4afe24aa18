"""Images as durable jobs, end to end on a real uvicorn with the job worker running: `POST
/api/images/jobs` with the engine's progress on the job, a video made `after_job` that starts from the
image the job stored (Runway's fake receives exactly those bytes), a failed image failing the video that
waits for it (nothing submitted, nothing paid), `Idempotency-Key`, and bad input answered 400 before
anything is stored."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.a1111_server import A1111Reply, FakeA1111Server
from tests.fakes.runway_server import FakeRunwayServer
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.gateway.test_images import a1111_model
from tests.gateway.test_videos import wait_done

RUNWAY_KEY = "key_runway_image_jobs_0123456789"
FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))


@pytest.fixture
def a1111() -> Iterator[FakeA1111Server]:
    with FakeA1111Server(models=["sdxl_base_1.0.safetensors"]) as server:
        yield server


@pytest.fixture
def runway() -> Iterator[FakeRunwayServer]:
    with FakeRunwayServer(api_key=RUNWAY_KEY) as server:
        yield server


async def studio_for(live: OpenLive, a1111: FakeA1111Server, runway: FakeRunwayServer) -> LiveStudio:
    env = engines(None, None) | {
        "A1111_URL": a1111.url,
        "RUNWAYML_API_SECRET": RUNWAY_KEY,
        "RUNWAY_BASE_URL": f"{runway.url}/v1",
    }
    return await live(env, config=FAST)


async def test_an_image_job_reports_progress_and_its_video_starts_from_that_image(
    live: OpenLive, a1111: FakeA1111Server, runway: FakeRunwayServer
) -> None:
    running = await studio_for(live, a1111, runway)
    model = await a1111_model(running)
    a1111.hold()  # each progress poll is one sampling step until released
    image = await running.client.post(
        "/api/images/jobs",
        json={"prompt": "a red fox in snow", "model": model, "steps": 6, "size": "512x512"},
    )
    assert image.status_code == 202, image.text
    made = image.json()
    assert made["kind"] == "image" and made["state"] == "queued" and made["plan"][0] == model
    video = await running.client.post(
        "/api/videos", json={"prompt": "the fox runs off", "after_job": made["id"], "duration_s": 5}
    )
    assert video.status_code == 202, video.text
    assert video.json()["dependsOn"] == made["id"] and video.json()["plan"][0].startswith("runway/")

    seen: list[dict[str, object]] = []
    async with running.client.stream("GET", f"/api/jobs/{made['id']}/events") as events:
        async for line in events.aiter_lines():
            if not line.startswith("data: "):
                continue
            job = json.loads(line[6:])
            seen.append(job)
            if job["progress"] and job["state"] == "running":
                a1111.release()  # the engine finishes once the job showed it moving
            if job["state"] in ("complete", "failed", "cancelled"):
                break
    image_job = seen[-1]
    assert image_job["state"] == "complete", image_job
    progress = [j["progress"] for j in seen if j["state"] == "running" and j["progress"]]
    assert progress and progress == sorted(progress) and max(progress) < 100
    assert image_job["progress"] == 100 and image_job["model"] == model
    assert image_job["attempts"] and image_job["attempts"][-1]["model"] == model
    (output,) = image_job["outputs"]
    stored = (await running.client.get(output["url"])).content
    recipe = (await running.client.get(f"/api/images/{output['id']}")).json()
    assert recipe["recipe"]["steps"] == 6 and recipe["recipe"]["model_used"] == model

    done = await wait_done(running, video.json()["id"])
    assert done["job"]["state"] == "complete", done["job"]
    assert runway.submissions == 1
    (sent,) = runway.create_bodies()
    header, _, data = sent["promptImage"].partition(",")
    assert header == "data:image/png;base64"
    assert hashlib.sha256(base64.b64decode(data)).hexdigest() == hashlib.sha256(stored).hexdigest()
    submitted = next(a for a in done["job"]["attempts"] if a["outcome"] == "submitted")
    assert submitted["startImage"] == output["id"]


async def test_a_failed_image_fails_the_video_waiting_for_it_and_nothing_is_submitted(
    live: OpenLive, a1111: FakeA1111Server, runway: FakeRunwayServer
) -> None:
    running = await studio_for(live, a1111, runway)
    model = await a1111_model(running)
    a1111.script(
        *[A1111Reply(status=500, error_body={"error": "OutOfMemoryError", "detail": "CUDA OOM"})] * 3
    )
    image = await running.client.post(
        "/api/images/jobs", json={"prompt": "a castle", "model": model, "fallbacks": False}
    )
    video = await running.client.post(
        "/api/videos", json={"prompt": "it crumbles", "after_job": image.json()["id"]}
    )
    image_done = await wait_done(running, image.json()["id"])
    assert image_done["job"]["state"] == "failed"
    assert image_done["job"]["attempts"] and all(a["model"] == model for a in image_done["job"]["attempts"])
    video_done = await wait_done(running, video.json()["id"])
    assert video_done["job"]["state"] == "failed"
    assert video_done["job"]["error"].startswith("the image it waits for failed: ")
    assert runway.submissions == 0


async def test_idempotency_and_bad_input_are_answered_before_anything_is_stored(
    live: OpenLive, a1111: FakeA1111Server, runway: FakeRunwayServer
) -> None:
    running = await studio_for(live, a1111, runway)
    model = await a1111_model(running)
    body = {"prompt": "a lighthouse", "model": model}
    first = await running.client.post("/api/images/jobs", json=body, headers={"Idempotency-Key": "still-1"})
    again = await running.client.post("/api/images/jobs", json=body, headers={"Idempotency-Key": "still-1"})
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    await wait_done(running, first.json()["id"])
    assert len([r for r in a1111.requests if r.path.endswith("txt2img")]) == 1

    before = (await running.client.get("/api/jobs")).json()["total"]
    for bad, field, says in (
        ({"prompt": " ", "model": model}, "prompt", "prompt is required"),
        ({"prompt": "x", "model": model, "n": 11}, "n", "between 1 and 10"),
        ({"prompt": "x", "model": "no-such-model"}, None, "Image models available now"),
        ({"prompt": "x", "model": model, "references": ["med_nope"]}, "references", "no image 'med_nope'"),
        ({"prompt": "x", "model": model, "after_job": "job_nope"}, "after_job", "no job 'job_nope'"),
        ({"prompt": "x", "model": model, "stream": True}, "stream", "stream"),
        ({"prompt": "x", "model": model, "quality": "ultra"}, "quality", "auto, low, medium, high"),
    ):
        answer = await running.client.post("/api/images/jobs", json=bad)
        named_nothing = any(word in says for word in ("no image", "no job", "available now"))  # a 404
        assert answer.status_code == (404 if named_nothing else 400), (bad, answer.text)
        error = answer.json()
        assert says in error["message"], (bad, error)
        assert error.get("field") == field, (bad, error)
        if field is None:  # an unknown model: the answer lists the ones to pick from
            assert error["available"] == [model], error
    assert (await running.client.get("/api/jobs")).json()["total"] == before
