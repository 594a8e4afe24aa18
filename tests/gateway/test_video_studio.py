"""The Video Studio API on a live studio: projects keep their next-shot settings and the chosen model
across a restart, Generate makes a video job and its clip at once (against the fake OpenAI videos API),
clips are trimmed, reordered, duplicated, deleted and restored, and every bad input is a 400 naming the
field with the project unchanged."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mmstudio.config import StudioConfig, VideosConfig
from mmstudio.settings import Settings
from tests.fakes.images import make_image
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer
from tests.fakes.videos import make_mp4
from tests.gateway.conftest import LiveStudio, OpenLive, engines, serve
from tests.gateway.test_videos import wait_done

KEY = "sk-video-studio-0123456789abcdef"
FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))
BASE = "/api/video-studio/projects"


@pytest.fixture
def sora() -> Any:
    with FakeOpenAIVideosServer(api_key=KEY) as server:
        yield server


def env_for(sora: FakeOpenAIVideosServer | None, **extra: str) -> dict[str, str]:
    env = engines(None, None) | extra
    if sora is not None:
        env |= {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": f"{sora.url}/v1"}
    return env


async def _upload(running: LiveStudio, data: bytes, name: str, mime: str) -> str:
    answer = await running.client.post("/api/media", files={"file": (name, data, mime)})
    assert answer.status_code in (200, 201), answer.text
    asset_id: str = answer.json()["id"]
    return asset_id


async def _clip_done(running: LiveStudio, project_id: str, clip_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            clips = (await running.client.get(f"{BASE}/{project_id}")).json()["clips"]
            clip = next(c for c in clips if c["id"] == clip_id)
            if clip["state"] in ("complete", "failed", "cancelled") and (
                clip["assetId"] or clip["state"] != "complete"
            ):
                return clip
            await asyncio.sleep(0.02)


async def test_the_chosen_model_and_settings_outlive_a_restart(
    sora: FakeOpenAIVideosServer, data_dir: Path
) -> None:
    env = {**env_for(sora), "MMSTUDIO_DATA_DIR": str(data_dir)}
    settings = replace(Settings.from_env(env), config=FAST)
    async with serve(settings, env) as first:
        made = await first.client.post(BASE, json={"name": "Trip", "aspect_ratio": "9:16"})
        assert made.status_code == 201, made.text
        project = made.json()
        assert (
            project["id"].startswith("vp_") and project["nextShot"]["model"] is None
        )  # only Sora: never a default
        assert project["nextShot"]["durationS"] == 4 and project["nextShot"]["interpolate"] is True
        patched = await first.client.patch(
            f"{BASE}/{project['id']}",
            json={"model": "openai/sora-2", "pan_x": -0.5, "zoom": 0.2, "seed": 42, "prompt": "a fox"},
        )
        assert patched.status_code == 200, patched.text
        shot = patched.json()["nextShot"]
        assert shot["model"] == "openai/sora-2" and shot["camera"] == {
            "pan": {"x": -0.5, "y": 0.0},
            "zoom": 0.2,
            "tilt": 0.0,
            "roll": 0.0,
        }
        assert patched.json()["controls"]["camera"] == "via prompt"
        assert patched.json()["selectedModel"]["usable"] is True
    keyless = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}  # the key removed
    async with serve(replace(Settings.from_env(keyless), config=FAST), keyless) as second:
        again = (await second.client.get(f"{BASE}/{project['id']}")).json()
        assert (
            again["nextShot"]["model"] == "openai/sora-2" and again["nextShot"]["seed"] == 42
        )  # still chosen
        assert (
            again["selectedModel"]["usable"] is False and "OPENAI_API_KEY" in again["selectedModel"]["reason"]
        )
        refused = await second.client.post(f"{BASE}/{project['id']}/generate")
        assert refused.status_code == 400 and "cannot be used now" in refused.json()["message"]
        assert [p["id"] for p in (await second.client.get(BASE)).json()["items"]] == [project["id"]]


async def test_runway_keyed_is_the_default_model(live: OpenLive) -> None:
    running = await live(env_for(None, RUNWAYML_API_SECRET="key_runway_0123456789"), config=FAST)
    made = (await running.client.post(BASE, json={"name": "p"})).json()
    assert made["nextShot"]["model"] == "runway/gen3a_turbo"


async def test_generate_puts_the_clip_on_the_timeline_at_once_and_it_completes(
    live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    running = await live(env_for(sora), config=FAST)
    project = (await running.client.post(BASE, json={"name": "p"})).json()
    pid = project["id"]
    await running.client.patch(
        f"{BASE}/{pid}", json={"model": "openai/sora-2", "prompt": "a fox", "pan_x": 0.8}
    )
    made = await running.client.post(f"{BASE}/{pid}/generate")
    assert made.status_code == 202, made.text
    clip, job = made.json()["clip"], made.json()["job"]
    assert clip["jobId"] == job["id"] and job["plan"] == ["openai/sora-2"]  # the chosen model, no fallback
    assert job["request"]["prompt"] == "a fox. Camera: strong pan right."
    listed = (await running.client.get(f"{BASE}/{pid}")).json()
    assert [c["id"] for c in listed["clips"]] == [clip["id"]] and listed["selectedClipId"] == clip["id"]
    done = await _clip_done(running, pid, clip["id"])
    assert (
        done["state"] == "complete"
        and done["assetId"]
        and done["videoUrl"] == f"/api/media/{done['assetId']}"
    )
    assert done["settings"]["camera"]["pan"]["x"] == 0.8 and sora.submissions == 1


async def test_clips_are_trimmed_reordered_duplicated_deleted_and_undone(live: OpenLive) -> None:
    running = await live(env_for(None), config=FAST)
    pid = (await running.client.post(BASE, json={"name": "p"})).json()["id"]
    videos = [
        await _upload(running, make_mp4(seconds=4, fps=4, color=(10 * i, 90, 90)), f"c{i}.mp4", "video/mp4")
        for i in range(3)
    ]
    clips = []
    for asset in videos:
        added = await running.client.post(f"{BASE}/{pid}/clips", json={"asset_id": asset})
        assert added.status_code == 201, added.text
        clips.append(added.json()["id"])
    a, b, c = clips
    trimmed = await running.client.patch(f"{BASE}/{pid}/clips/{b}", json={"trim_in_s": 0.5, "trim_out_s": 3})
    assert trimmed.status_code == 200 and (trimmed.json()["trimInS"], trimmed.json()["trimOutS"]) == (0.5, 3)
    order = await running.client.put(f"{BASE}/{pid}/order", json={"clip_ids": [c, a, b]})
    assert [x["id"] for x in order.json()["clips"]] == [c, a, b]
    copy = (await running.client.post(f"{BASE}/{pid}/clips/{b}/duplicate")).json()
    assert copy["trimInS"] == 0.5 and copy["assetId"] == videos[1]
    assert (await running.client.delete(f"{BASE}/{pid}/clips/{a}")).json()["deleted"] is True
    view = (await running.client.get(f"{BASE}/{pid}")).json()
    assert [x["id"] for x in view["clips"]] == [c, b, copy["id"]]
    undone = await running.client.post(f"{BASE}/{pid}/clips/undo")
    assert undone.status_code == 200 and undone.json()["id"] == a
    view = (await running.client.get(f"{BASE}/{pid}")).json()
    assert [x["id"] for x in view["clips"]] == [c, a, b, copy["id"]] and view["clips"][0]["durationS"] == 4.0
    poster = await running.client.get(view["clips"][0]["posterUrl"])  # an uploaded video's first frame
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/webp"
    selected = await running.client.patch(f"{BASE}/{pid}", json={"selected_clip_id": a, "playhead_s": 2.5})
    assert selected.json()["selectedClipId"] == a and selected.json()["playheadS"] == 2.5


async def test_bad_input_is_a_400_naming_the_field_and_the_project_is_unchanged(
    live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    running = await live(env_for(sora), config=FAST)
    pid = (await running.client.post(BASE, json={"name": "p"})).json()["id"]
    await running.client.patch(f"{BASE}/{pid}", json={"model": "openai/sora-2", "prompt": "keep me"})
    before = (await running.client.get(f"{BASE}/{pid}")).json()
    video = await _upload(running, make_mp4(seconds=4, fps=4), "v.mp4", "video/mp4")
    image = await _upload(running, make_image(32, 32), "i.png", "image/png")
    clip = (await running.client.post(f"{BASE}/{pid}/clips", json={"asset_id": video})).json()["id"]
    before = (await running.client.get(f"{BASE}/{pid}")).json()
    deleted_image = await _upload(running, make_image(16, 16), "gone.png", "image/png")
    await running.studio.media.delete(deleted_image)  # gone from the gallery
    cases: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("PATCH", "", {"pan_x": 1.5}, "pan_x", "1"),
        ("PATCH", "", {"stability": -0.1}, "stability", "0"),
        ("PATCH", "", {"seed": -2}, "seed", "-1"),
        ("PATCH", "", {"duration_s": 7}, "duration_s", "seconds"),
        ("PATCH", "", {"end_frame": image}, "end_frame", "end frame"),
        ("PATCH", "", {"loop": True, "end_frame": image}, "loop", "no end frame"),  # a loop ends on its start
        ("PATCH", "", {"start_frame": deleted_image}, "start_frame", "no image"),
        ("PATCH", "", {"start_frame": video}, "start_frame", "not an image"),
        ("PATCH", "", {"model": "no-such-model"}, "model", "openai/sora-2"),
        ("PATCH", "", {"aspect_ratio": "5:1"}, "aspect_ratio", "16:9"),
        ("PATCH", "", {"warp": 1}, "warp", "Extra inputs"),
        ("PUT", "/order", {"clip_ids": [clip, "clip_nope"]}, "clip_ids", "unknown"),
        ("PATCH", f"/clips/{clip}", {"trim_in_s": 5}, "trim_in_s", "4"),
        ("PATCH", f"/clips/{clip}", {"trim_in_s": 1, "trim_out_s": 9}, "trim_out_s", "4"),
        ("POST", "/clips", {"asset_id": image}, "asset_id", "not a video"),
        ("POST", "", {"name": ""}, "name", "character"),
    ]
    for method, path, body, field, says in cases:
        url = f"{BASE}/{pid}{path}" if not (method == "POST" and path == "") else BASE
        answer = await running.client.request(method, url, json=body)
        error = answer.json()
        named_nothing = (
            body in ({"start_frame": deleted_image}, {"model": "no-such-model"}) or says == "unknown"
        )
        assert answer.status_code == (404 if named_nothing else 400), (body, error)
        assert error.get("field") == field or field in error["message"], (body, error)
        assert says in error["message"], (body, error)
    after = (await running.client.get(f"{BASE}/{pid}")).json()
    assert {k: v for k, v in after.items() if k != "updatedAt"} == {
        k: v for k, v in before.items() if k != "updatedAt"
    }
    assert (await running.client.get(f"{BASE}/vp_nope")).status_code == 404
    empty = (await running.client.post(BASE, json={"name": "empty"})).json()["id"]
    no_prompt = await running.client.post(f"{BASE}/{empty}/generate")
    assert no_prompt.status_code == 400 and no_prompt.json()["field"] in ("model", "prompt")


async def test_two_tabs_changing_fields_at_once_keep_each_change(live: OpenLive) -> None:
    running = await live(env_for(None), config=FAST)
    pid = (await running.client.post(BASE, json={"name": "p"})).json()["id"]
    changes = [{"pan_x": 0.5}, {"zoom": -0.25}, {"prompt": "two tabs"}, {"seed": 9}, {"loop": True}]
    answers = await asyncio.gather(*(running.client.patch(f"{BASE}/{pid}", json=c) for c in changes))
    assert all(a.status_code == 200 for a in answers)
    shot = (await running.client.get(f"{BASE}/{pid}")).json()["nextShot"]
    assert (
        shot["camera"]["pan"]["x"],
        shot["camera"]["zoom"],
        shot["prompt"],
        shot["seed"],
        shot["loop"],
    ) == (
        0.5,
        -0.25,
        "two tabs",
        9,
        True,
    )


async def test_export_renders_the_timeline_with_its_trims_into_one_film(live: OpenLive) -> None:
    import io

    import av
    from PIL import Image

    running = await live(env_for(None), config=FAST)
    pid = (await running.client.post(BASE, json={"name": "film", "resolution": "480p"})).json()["id"]
    empty = await running.client.post(f"{BASE}/{pid}/export")
    assert empty.status_code == 400 and "no clips" in empty.json()["message"]
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for i, colour in enumerate(colours):
        asset = await _upload(
            running, make_mp4(64, 36, seconds=2, fps=4, color=colour), f"{i}.mp4", "video/mp4"
        )
        await running.client.post(f"{BASE}/{pid}/clips", json={"asset_id": asset})
    clips = (await running.client.get(f"{BASE}/{pid}")).json()["clips"]
    await running.client.patch(f"{BASE}/{pid}/clips/{clips[1]['id']}", json={"trim_in_s": 1.0})
    made = await running.client.post(f"{BASE}/{pid}/export", json={"fps": 4})
    assert made.status_code == 202 and made.json()["kind"] == "export", made.text
    job = (await wait_done(running, made.json()["id"]))["job"]  # its event stream to the end
    assert job["state"] == "complete" and job["progress"] == 100, job
    film = await running.client.get(job["outputs"][0]["url"])
    assert film.status_code == 200 and film.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(film.content)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (854, 480)
        frames = [f.to_image() for f in container.decode(stream)]
    assert len(frames) == 8 + 4 + 8  # 2 s, 1 s (trimmed), 2 s at 4 fps
    middle = [frames[4], frames[10], frames[16]]
    for frame, (r, g, b) in zip(middle, colours, strict=True):
        got = frame.getpixel((427, 240))
        assert abs(got[0] - r) < 30 and abs(got[1] - g) < 30 and abs(got[2] - b) < 60, (got, (r, g, b))
    chained = await running.client.post(f"{BASE}/{pid}/clips/{clips[2]['id']}/last-frame")
    assert chained.status_code == 200, chained.text
    still = chained.json()["nextShot"]["startFrame"]
    picture = Image.open(io.BytesIO((await running.client.get(f"/api/media/{still}")).content))
    assert picture.size == (64, 36) and picture.getpixel((32, 18))[2] > 150  # the blue clip's last frame


async def test_a_cancelled_export_stops_its_render_and_stores_nothing(live: OpenLive) -> None:
    running = await live(env_for(None), config=FAST)
    pid = (await running.client.post(BASE, json={"name": "long", "resolution": "1080p"})).json()["id"]
    asset = await _upload(running, make_mp4(64, 36, seconds=4, fps=4), "a.mp4", "video/mp4")
    for _ in range(3):
        await running.client.post(f"{BASE}/{pid}/clips", json={"asset_id": asset})
    media = running.studio.media
    before = [a.id for a in (await media.rows.list(kind="video", limit=100, offset=0)).items]
    assert len(before) == 1
    job_id = (await running.client.post(f"{BASE}/{pid}/export", json={"fps": 60})).json()["id"]  # 720 frames
    async with running.client.stream("GET", f"/api/jobs/{job_id}/events") as events:
        async for line in events.aiter_lines():
            if '"state":"running"' in line.replace(" ", ""):
                break
    cancelled = await running.client.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    job = (await wait_done(running, job_id))["job"]
    assert job["state"] == "cancelled" and job["outputs"] == [], job
    assert job["error"] == "cancelled; the render was stopped and nothing was stored"
    assert [a.id for a in (await media.rows.list(kind="video", limit=100, offset=0)).items] == before
    assert not list(media.files.tmp.glob("*.part"))  # the render's file is gone


async def test_a_failed_clip_shows_why_and_a_paid_retry_needs_confirm(
    live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    from tests.fakes.openai_videos_server import VideoReply

    running = await live(env_for(sora), config=FAST)
    pid = (await running.client.post(BASE, json={"name": "p"})).json()["id"]
    await running.client.patch(f"{BASE}/{pid}", json={"model": "openai/sora-2", "prompt": "a fox"})
    sora.script(VideoReply(outcome="failed", error_message="The render farm melted."))
    clip = (await running.client.post(f"{BASE}/{pid}/generate")).json()["clip"]
    failed = await _clip_done(running, pid, clip["id"])
    assert failed["state"] == "failed" and "The render farm melted." in failed["error"]
    asked = await running.client.post(f"{BASE}/{pid}/clips/{clip['id']}/retry")
    assert (
        asked.status_code == 400
        and asked.json()["field"] == "confirm"
        and "billed" in asked.json()["message"]
    )
    assert sora.submissions == 1  # nothing sent without the confirmation
    again = await running.client.post(f"{BASE}/{pid}/clips/{clip['id']}/retry", json={"confirm": True})
    assert again.status_code == 202 and again.json()["clip"]["jobId"] != failed["jobId"]
    done = await _clip_done(running, pid, clip["id"])
    assert done["state"] == "complete" and done["assetId"] and sora.submissions == 2
    view = (await running.client.get(f"{BASE}/{pid}")).json()
    assert [c["id"] for c in view["clips"]] == [clip["id"]]  # in its place, not a second clip
