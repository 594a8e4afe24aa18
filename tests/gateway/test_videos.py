"""Videos as durable jobs, end to end on a real uvicorn with the job worker running: the official
`openai` SDK's `videos.create / retrieve / download_content / list / delete` against mmstudio (Sora's
fake upstream behind it), `/api/videos` with the job's live events, `Idempotency-Key`, a restart that
resumes the job by its handle (exactly one submission), failures with the vendor's reason, cancel, and
bad input."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import httpx
import openai
import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, VideoReply, video_bytes
from tests.gateway.conftest import LiveStudio, OpenLive, engines

KEY = "sk-videos-gateway-0123456789abcdef"
FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))


@pytest.fixture
def sora() -> Iterator[FakeOpenAIVideosServer]:
    with FakeOpenAIVideosServer(api_key=KEY) as server:
        yield server


def env_for(sora: FakeOpenAIVideosServer | None) -> dict[str, str]:
    env = engines(None, None)
    if sora is not None:
        env |= {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{sora.url}/v1"}
    return env


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """Each named server-sent event of a streamed response: (event, its JSON data)."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                yield lines["event"], json.loads(lines["data"])


async def wait_done(live: LiveStudio, job_id: str) -> dict[str, Any]:
    """The job's events until it ends (the SSE stream, not a sleep loop)."""
    async with live.client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        events = [event async for event in sse_events(response)]
    assert events and events[-1][0] in ("done", "error"), events
    return {"events": events, "job": events[-1][1]}


# The SDK warns that OpenAI shuts its own Sora endpoints down; mmstudio's keep working for every model.
@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
async def test_the_openai_sdk_makes_a_video_through_a_durable_job(
    live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    running = await live(env_for(sora), config=FAST)
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client:
        created = await client.videos.create(
            model="openai/sora-2", prompt="a fox in the snow", seconds="4", size="720x1280"
        )
        assert created.status == "queued" and created.id.startswith("job_")
        done = await wait_done(running, created.id)
        assert done["job"]["state"] == "complete", done["job"]
        video = await client.videos.retrieve(created.id)
        assert video.status == "completed" and video.progress == 100 and video.model == "openai/sora-2"
        content = await client.videos.download_content(created.id)
        data = content.read()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(video_bytes("720x1280", "4")).hexdigest()
        listed = await client.videos.list()
        assert [v.id for v in listed.data] == [created.id]
        deleted = await client.videos.delete(created.id)
        assert deleted.deleted is True
    assert sora.submissions == 1
    states = [e["state"] for kind, e in done["events"] if kind == "job"]
    assert states[0] in ("queued", "submitting", "running") and states[-1] == "complete"
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].width == 72


async def test_api_videos_idempotency_progress_and_the_stored_recipe(
    live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    running = await live(env_for(sora), config=FAST)
    sora.script(VideoReply(steps=4))
    body = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration_s": 8, "resolution": "1280x720"}
    headers = {"Idempotency-Key": "film-1"}
    first = await running.client.post("/api/videos", json=body, headers=headers)
    again = await running.client.post("/api/videos", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    done = await wait_done(running, first.json()["id"])
    job = done["job"]
    assert job["state"] == "complete" and job["model"] == "openai/sora-2" and len(job["outputs"]) == 1
    progress = [e["progress"] for kind, e in done["events"] if kind == "job" and e["progress"] is not None]
    assert progress == sorted(progress)
    asset = await running.client.get(f"/api/images/{job['outputs'][0]['id']}")
    assert asset.status_code == 404  # a video is not a gallery image
    media = await running.client.get(job["outputs"][0]["url"])
    assert media.headers["content-type"] == "video/mp4" and media.content == video_bytes("1280x720", "8")
    poster = await running.client.get(job["outputs"][0]["posterUrl"])
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/webp"
    assert sora.submissions == 1 and sora.creates[0].values["seconds"] == "8"
    listed = (await running.client.get("/api/jobs", params={"kind": "video", "state": "complete"})).json()
    assert listed["total"] == 1


async def test_a_restart_resumes_the_job_and_never_submits_it_again(
    live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    first = await live(env_for(sora), config=FAST)
    sora.script(VideoReply(steps=10**6))  # never finishes while the first server runs
    made = await first.client.post("/api/videos", json={"prompt": "a fox", "model": "openai/sora-2"})
    job_id = made.json()["id"]
    async with asyncio.timeout(10):
        while (await first.client.get(f"/api/jobs/{job_id}")).json()["state"] != "running":  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await first.studio.worker.stop()  # the shutdown: leases go back
    for upstream_job in sora.jobs.values():  # the vendor finishes it while we are down
        upstream_job.plan = replace(upstream_job.plan, steps=upstream_job.polls + 1)
    second = await live(env_for(sora), config=FAST)
    done = await wait_done(second, job_id)
    assert done["job"]["state"] == "complete" and done["job"]["attemptCount"] == 2
    assert sora.submissions == 1


async def test_a_vendor_refusal_and_bad_input(live: OpenLive, sora: FakeOpenAIVideosServer) -> None:
    running = await live(env_for(sora), config=FAST)
    sora.script(VideoReply(steps=2, outcome="failed", refused=True))
    made = await running.client.post("/api/videos", json={"prompt": "something", "model": "openai/sora-2"})
    done = await wait_done(running, made.json()["id"])
    assert done["job"]["state"] == "failed" and done["job"]["errorKind"] == "content_filtered"
    assert "refused" in done["job"]["error"] and sora.submissions == 1
    for body, field, words in [
        ({"prompt": "x", "model": "no-such-model"}, None, "Unknown video model"),
        ({"prompt": "x", "model": "openai/gpt-4o"}, None, "Unknown video model"),
        ({"prompt": " ", "model": "openai/sora-2"}, "prompt", "prompt is required"),
        ({"prompt": "x", "model": "openai/sora-2", "duration_s": 5}, "duration_s", "allowed: 4, 8, 12"),
        ({"prompt": "x", "model": "openai/sora-2", "start_image": "nope"}, "start_image", "no image"),
        ({"prompt": "x", "model": "openai/sora-2", "after_job": "job_nope"}, "after_job", "no job"),
        ({"prompt": "x", "model": "runway/gen3a_turbo"}, None, "RUNWAYML_API_SECRET"),
    ]:
        answer = await running.client.post("/api/videos", json=body)
        # An id or model that names nothing is a 404; a model that is there but not set up, a 503.
        named_nothing = words in ("Unknown video model", "no image", "no job")
        expected = 404 if named_nothing else 503 if words == "RUNWAYML_API_SECRET" else 400
        assert answer.status_code == expected, (body, answer.text)
        assert words in answer.json()["message"], (body, answer.json())
        if field:
            assert answer.json()["field"] == field
    for path in ("/api/jobs/job_nope", "/api/jobs/job_nope/events", "/v1/videos/job_nope"):
        assert (await running.client.get(path)).status_code == 404
    assert (await running.client.post("/api/jobs/job_nope/cancel")).status_code == 404
    retry = await running.client.post(f"/api/jobs/{made.json()['id']}/retry")
    assert retry.status_code == 202 and retry.json()["id"] != made.json()["id"]


async def test_no_video_model_is_503_with_onboarding(live: OpenLive) -> None:
    running = await live(env_for(None), config=FAST)
    answer = await running.client.post("/api/videos", json={"prompt": "a fox"})
    assert answer.status_code == 503 and "Add a video model" in answer.json()["message"]


async def an_endless_video(running: LiveStudio, sora: FakeOpenAIVideosServer) -> str:
    """A Sora job that is `running` (accepted upstream) and never finishes by itself."""
    sora.script(VideoReply(steps=10**6))
    made = await running.client.post("/api/videos", json={"prompt": "a fox", "model": "openai/sora-2"})
    job_id: str = made.json()["id"]
    async with asyncio.timeout(10):
        while (await running.client.get(f"/api/jobs/{job_id}")).json()["state"] != "running":  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return job_id


async def test_cancel_a_running_video_upstream(live: OpenLive, sora: FakeOpenAIVideosServer) -> None:
    config = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))
    running = await live(env_for(sora), config=config)
    job_id = await an_endless_video(running, sora)
    cancelled = await running.client.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelRequested"]
    done = await wait_done(running, job_id)
    assert done["job"]["state"] == "cancelled" and "the vendor stopped it" in done["job"]["error"]
    assert any(r.method == "DELETE" for r in sora.requests)


async def test_the_cli_cancels_a_job_another_process_is_running(
    live: OpenLive, sora: FakeOpenAIVideosServer, data_dir: Path
) -> None:
    """`mmstudio jobs cancel ID` (its own studio on the same data) while the server's worker runs the
    job: the CLI says the cancel was asked, the worker's next heartbeat sees it and stops the video
    upstream (OpenAI DELETE), and the job ends cancelled."""
    from typer.testing import CliRunner

    from mmstudio.cli import app

    config = StudioConfig(videos=VideosConfig(poll_interval_s=0.01, lease_seconds=0.6))
    running = await live(env_for(sora), config=config)
    job_id = await an_endless_video(running, sora)
    env = {**env_for(sora), "MMSTUDIO_DATA_DIR": str(data_dir)}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["jobs", "cancel", job_id], env=env)
    assert result.exit_code == 0 and f"{job_id}: cancel requested" in result.output, result.output
    done = await wait_done(running, job_id)
    assert done["job"]["state"] == "cancelled" and "the vendor stopped it" in done["job"]["error"]
    handle = done["job"]["upstreamHandle"]
    assert [r.path for r in sora.requests if r.method == "DELETE"] == [f"/v1/videos/{handle}"]
    again = await asyncio.to_thread(CliRunner().invoke, app, ["jobs", "cancel", job_id], env=env)
    assert again.exit_code == 0 and f"{job_id}: cancelled" in again.output


async def test_ended_jobs_and_their_videos_outlive_a_restart(
    sora: FakeOpenAIVideosServer, data_dir: Path
) -> None:
    """Retention: a complete job keeps its row and its video, a failed and a cancelled one their rows
    and reasons, across a restart (start-up prunes request metrics, never jobs). Only the user's own
    DELETE removes a video file, and even then the job's record stays."""
    from mmstudio.settings import Settings
    from tests.gateway.conftest import serve

    env = {**env_for(sora), "MMSTUDIO_DATA_DIR": str(data_dir)}
    settings = replace(Settings.from_env(env), config=FAST)
    body = {"prompt": "a fox", "model": "openai/sora-2", "fallbacks": False}
    async with serve(settings, env) as first:
        ok = (await first.client.post("/api/videos", json=body)).json()["id"]
        assert (await wait_done(first, ok))["job"]["state"] == "complete"
        sora.script(VideoReply(outcome="failed", error_message="The render farm melted."))
        bad = (await first.client.post("/api/videos", json=body)).json()["id"]
        assert (await wait_done(first, bad))["job"]["state"] == "failed"
        sora.script(VideoReply(steps=10**6))
        stopped = (await first.client.post("/api/videos", json=body)).json()["id"]
        await first.client.post(f"/api/jobs/{stopped}/cancel")
        assert (await wait_done(first, stopped))["job"]["state"] == "cancelled"
        served = (await first.client.get(f"/v1/videos/{ok}/content")).content
    async with serve(settings, env) as second:
        jobs = {j["id"]: j for j in (await second.client.get("/api/jobs")).json()["items"]}
        assert {k: jobs[k]["state"] for k in (ok, bad, stopped)} == {
            ok: "complete",
            bad: "failed",
            stopped: "cancelled",
        }
        assert "The render farm melted." in jobs[bad]["error"] and jobs[stopped]["error"]
        again = await second.client.get(f"/v1/videos/{ok}/content")
        assert again.status_code == 200 and again.content == served and served[4:8] == b"ftyp"
        deleted = await second.client.delete(f"/v1/videos/{ok}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        kept = await second.client.get(f"/api/jobs/{ok}")
        assert kept.status_code == 200 and kept.json()["state"] == "complete"
        assert (await second.client.get(f"/v1/videos/{ok}/content")).status_code == 404


async def test_runway_image_to_video_is_the_default_and_keeps_its_start_frame(live: OpenLive) -> None:
    from tests.fakes.images import make_image
    from tests.fakes.runway_server import FakeRunwayServer

    runway_key = "key_runway_gateway_0123456789"
    with FakeRunwayServer(api_key=runway_key) as runway:
        env = {**env_for(None), "RUNWAYML_API_SECRET": runway_key, "RUNWAY_BASE_URL": f"{runway.url}/v1"}
        running = await live(env, config=FAST)
        still = await running.client.post(
            "/api/media", files={"file": ("still.png", make_image(64, 64), "image/png")}
        )
        start = still.json()["id"]
        made = await running.client.post(
            "/api/videos", json={"prompt": "the fox runs", "start_image": start, "duration_s": 5}
        )
        assert made.status_code == 202, made.text
        assert made.json()["plan"][0].startswith("runway/")  # keyed Runway: the default
        done = await wait_done(running, made.json()["id"])
        assert done["job"]["state"] == "complete", done["job"]
        assert runway.submissions == 1
        (output,) = done["job"]["outputs"]
        video = await running.client.get(output["url"])
        assert video.headers["content-type"] == "video/mp4"
        alias = await running.client.post(
            "/api/videos", json={"prompt": "again", "model": "runway-gen3-alpha", "start_image": start}
        )
        assert alias.status_code == 202 and alias.json()["plan"][0] == "runway/gen3a_turbo"


async def test_video_models_are_listed_with_capabilities_and_in_v1_models_when_usable(live: OpenLive) -> None:
    from tests.fakes.runway_server import FakeRunwayServer

    runway_key = "key_runway_models_0123456789"
    with FakeRunwayServer(api_key=runway_key) as runway:
        env = {**env_for(None), "RUNWAYML_API_SECRET": runway_key, "RUNWAY_BASE_URL": f"{runway.url}/v1"}
        running = await live(env, config=FAST)
        listed = (await running.client.get("/api/videos/models")).json()["models"]
        by_id = {m["id"]: m for m in listed}
        gen3 = by_id["runway/gen3a_turbo"]
        assert gen3["usable"] and gen3["name"] == "Runway Gen-3 Alpha Turbo"
        assert gen3["capabilities"]["imageToVideo"] and 5 in gen3["capabilities"]["durations"]
        grok = by_id["xai/grok-imagine-video"]
        assert not grok["usable"] and "XAI_API_KEY" in grok["reason"] and not grok["default"]
        (default,) = [m["id"] for m in listed if m["default"]]
        assert default.startswith("runway/") and not gen3["capabilities"]["textToVideo"]
        text_only = await running.client.post(
            "/api/videos", json={"prompt": "a fox"}
        )  # Runway needs an image
        assert text_only.status_code == 400 and text_only.json()["field"] == "start_image", text_only.text
        assert "XAI_API_KEY" in text_only.json()["message"]
        named = await running.client.post(
            "/api/videos", json={"prompt": "a fox", "model": "runway/gen4_turbo"}
        )
        assert named.status_code == 400 and "makes a video from a start image" in named.json()["message"]
        v1 = (await running.client.get("/v1/models")).json()["data"]
        videos = {m["id"]: m for m in v1 if m["modality"] == "video"}
        assert set(videos) == {"runway/gen3a_turbo", "runway/gen4_turbo"}
        assert videos["runway/gen3a_turbo"]["owned_by"] == "runway"
        one = await running.client.get("/v1/models/runway/gen4_turbo")
        assert one.status_code == 200 and one.json()["modality"] == "video"
        missing = await running.client.get("/v1/models/runway/gen9_nope")
        assert missing.status_code == 404
