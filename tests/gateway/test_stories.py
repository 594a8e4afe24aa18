"""Story mode through the real app on uvicorn with the job worker, against protocol-faithful fakes: a text
model (Ollama) writing each scene as JSON, streamed to the page as it is written; GPT Image illustrating
it (with the tier's moderation); in video mode Grok Imagine animating that image, a job that depends on
the image job; choices that branch the tree; the seed's image and video status routes; a broken answer
repaired once, or the scene failed with why; and every bad input of the issue answered 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mmstudio.config import StoriesConfig, StudioConfig, TierConfig, VideosConfig
from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_images_server import FakeOpenAIImagesServer
from tests.fakes.xai_video_server import FakeXAIVideoServer
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.gateway.test_videos import sse_events, wait_done

OPENAI_KEY = "sk-stories-0123456789abcdef"
XAI_KEY = "xai-stories-0123456789abcdef"
KIDS = "/api/stories/kids"


def scene_text(title: str, choices: int = 3) -> str:
    return json.dumps(
        {
            "title": title,
            "narrative": f"{title}: Mira walks into the forest and finds a glowing lantern.",
            "image_prompt": f"{title}, a girl with a lantern in a dark forest, picture-book style",
            "choices": [f"{title} choice {i}" for i in range(choices)],
        }
    )


def config(**tiers: TierConfig) -> StudioConfig:
    base = StoriesConfig().tiers
    return StudioConfig(
        videos=VideosConfig(poll_interval_s=0.01), stories=StoriesConfig(tiers={**base, **tiers})
    )


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def openai() -> Iterator[FakeOpenAIImagesServer]:
    with FakeOpenAIImagesServer(api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture
def grok() -> Iterator[FakeXAIVideoServer]:
    with FakeXAIVideoServer(api_key=XAI_KEY) as server:
        yield server


def env_for(
    ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer, grok: FakeXAIVideoServer | None
) -> dict[str, str]:
    env = {**engines(ollama, None), "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": f"{openai.url}/v1"}
    if grok is not None:
        env |= {"XAI_API_KEY": XAI_KEY, "XAI_BASE_URL": f"{grok.url}/v1"}
    return env


async def follow(
    running: LiveStudio, tier: str, scene_id: str, held: Reply | None = None
) -> list[tuple[str, Any]]:
    """The scene's events until it is written or failed; a `held` reply goes on once one part came."""
    events: list[tuple[str, Any]] = []
    async with running.client.stream("GET", f"/api/stories/{tier}/scenes/{scene_id}/events") as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            events.append(event)
            if held is not None:
                held.resume.set()
    assert events and events[-1][0] in ("scene", "error"), events
    return events


async def test_a_story_is_written_illustrated_animated_and_branched(
    live: OpenLive, ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer, grok: FakeXAIVideoServer
) -> None:
    running = await live(env_for(ollama, openai, grok), config=config(teens=TierConfig(name="Teens")))
    info = (await running.client.get(KIDS)).json()
    assert info["name"] == "Kids" and info["videoAllowed"] and info["videoAvailable"]
    images = {m["id"]: m for m in info["imageModels"]}
    assert images["openai/gpt-image-1"] == {
        "id": "openai/gpt-image-1",
        "name": "GPT Image 1",
        "provider": "OpenAI",
    }
    assert images["xai/grok-imagine-image"]["name"] == "Grok Imagine"  # XAI_API_KEY is set
    assert "xai/grok-imagine-video" in [m["id"] for m in info["videoModels"]]

    lantern = Reply(text=scene_text("The Lantern"), hold_after=8)  # mid-scene until the page follows
    ollama.script(lantern)
    made = await running.client.post(
        f"{KIDS}/stories",
        json={
            "premise": "A girl finds a magic lantern",
            "image_model": "openai/gpt-image-1",
            "video_mode": True,
        },
    )
    assert made.status_code == 201, made.text
    story, first = made.json()["story"], made.json()["scene"]
    assert story["premise"] == "A girl finds a magic lantern" and first["state"] == "writing"
    assert story["id"].startswith("st_") and len(story["id"]) > 20  # random, not sequential

    events = await follow(running, "kids", first["id"], lantern)
    partials = [data for kind, data in events if kind == "partial"]
    narratives = [p.get("narrative", "") for p in partials]
    assert len(partials) > 3 and narratives[-1].startswith("The Lantern: Mira walks")  # as it was written
    assert narratives == sorted(narratives, key=len)  # it only grows
    kind, written = events[-1]
    assert kind == "scene" and written["scene"]["state"] == "written"
    assert written["scene"]["choices"] == [
        "The Lantern choice 0",
        "The Lantern choice 1",
        "The Lantern choice 2",
    ]
    assert written["scene"]["modelUsed"].startswith("ollama/")
    # the text model got the tier's rules and the format
    (chat,) = [r.json() for r in ollama.requests_to("/api/chat")]
    assert chat["messages"][0]["content"].startswith("You write illustrated stories for children")
    assert "The story's premise: A girl finds a magic lantern" in chat["messages"][1]["content"]

    # the picture: an image job with the tier's moderation; then the video made from it
    image_job = written["scene"]["imageJobId"]
    done = (await wait_done(running, image_job))["job"]
    assert done["state"] == "complete"
    (output,) = done["outputs"]  # the Jobs page links a story's picture where it is served: its tier
    assert output["url"] == f"/api/stories/kids/media/{output['id']}"
    assert (await running.client.get(output["url"])).status_code == 200
    assert (await running.client.get(output["posterUrl"])).status_code == 200
    (body,) = openai.generation_bodies()
    assert body["prompt"].startswith("The Lantern, a girl with a lantern") and body["moderation"] == "auto"
    image = (await running.client.get(f"/kids/story/image/{first['id']}")).json()
    assert image["status"] == "complete" and image["url"].startswith("/api/stories/kids/media/")
    picture = await running.client.get(image["url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    elsewhere = image["url"].replace("/api/stories/kids/media/", "/api/media/")
    assert (await running.client.get(elsewhere)).status_code == 404  # a tier's media: only under it
    other_tier = image["url"].replace("/kids/", "/teens/")
    assert (await running.client.get(other_tier)).status_code == 404
    assert (await running.client.get(f"{other_tier}/thumb")).status_code == 404
    video_job = written["scene"]["videoJobId"]
    assert (await wait_done(running, video_job))["job"]["state"] == "complete"
    video = (await running.client.get(f"/kids/story/video/{first['id']}")).json()
    assert video == {"status": "complete", "url": video["url"]}
    assert (await running.client.get(video["url"])).headers["content-type"] == "video/mp4"
    (sent,) = grok.generation_bodies()
    assert sent["image"]["url"].startswith("data:image/")  # animated from the scene's image

    # choose, then go back and choose differently: a branch, both paths kept
    ollama.script(Reply(text=scene_text("The River")), Reply(text=scene_text("The Cave")))
    river = await running.client.post(f"{KIDS}/scenes/{first['id']}/choose", json={"choice": 0})
    assert river.status_code == 201, river.text
    assert river.json()["choice"] == "The Lantern choice 0" and river.json()["depth"] == 1
    await follow(running, "kids", river.json()["id"])
    cave = await running.client.post(f"{KIDS}/scenes/{first['id']}/choose", json={"text": "Hide in a cave"})
    assert cave.status_code == 201 and cave.json()["choice"] == "Hide in a cave"
    assert (await follow(running, "kids", cave.json()["id"]))[-1][0] == "scene"
    second_chat = ollama.requests_to("/api/chat")[-1].json()["messages"][1]["content"]
    assert "Scene 1: The Lantern" in second_chat and "The reader chose: Hide in a cave" in second_chat
    assert "The River" not in second_chat  # the other branch is not this path's story
    tree = (await running.client.get(f"{KIDS}/stories/{story['id']}")).json()
    assert tree["title"] == "The Lantern" and tree["sceneCount"] == 3 and tree["hasVideo"] is True
    assert tree["coverUrl"] and [s["title"] for s in tree["scenes"]] == [
        "The Lantern",
        "The River",
        "The Cave",
    ]
    assert {s["parentId"] for s in tree["scenes"][1:]} == {first["id"]}
    page = (await running.client.get(f"{KIDS}/stories", params={"q": "lantern"})).json()
    assert page["total"] == 1 and page["items"][0]["id"] == story["id"]


async def test_a_broken_answer_is_repaired_once_then_the_scene_fails_with_why(
    live: OpenLive, ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer
) -> None:
    running = await live(env_for(ollama, openai, None), config=config())
    ollama.script(Reply(text="Once upon a time..."), Reply(text=f"```json\n{scene_text('Fixed')}\n```"))
    made = (await running.client.post(f"{KIDS}/stories", json={"premise": "a fox"})).json()
    events = await follow(running, "kids", made["scene"]["id"])
    assert events[-1][0] == "scene" and events[-1][1]["scene"]["title"] == "Fixed"
    repair = ollama.requests_to("/api/chat")[-1].json()["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Once upon a time..."}
    assert repair[-1]["content"].startswith("That answer cannot be used: it is not a JSON object")

    ollama.script(Reply(text="nope"), Reply(text='{"title": "x"}'))
    again = (await running.client.post(f"{KIDS}/stories", json={"premise": "a bear"})).json()
    kind, failed = (await follow(running, "kids", again["scene"]["id"]))[-1]
    assert kind == "error" and "answered twice without a usable scene" in failed["error"]
    assert "narrative: Field required" in failed["error"] and failed["scene"]["state"] == "failed"
    stored = (await running.client.get(f"{KIDS}/stories/{again['story']['id']}")).json()
    assert stored["premise"] == "a bear"  # nothing the user wrote is lost
    ollama.script(Reply(text=scene_text("Second try")))
    retried = await running.client.post(f"{KIDS}/scenes/{again['scene']['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "writing"
    assert (await follow(running, "kids", again["scene"]["id"]))[-1][1]["scene"]["title"] == "Second try"


async def test_the_picture_starts_as_soon_as_its_prompt_is_written(
    live: OpenLive, ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer, grok: FakeXAIVideoServer
) -> None:
    running = await live(env_for(ollama, openai, grok), config=config())
    text = scene_text("Early")
    cut = text.index('"choices"') + len('"choices": [')
    held = Reply(chunks=[text[:cut], text[cut:]], hold_after=1)  # the choices wait until released
    ollama.script(held)
    made = await running.client.post(
        f"{KIDS}/stories",
        json={"premise": "a kite", "image_model": "openai/gpt-image-1", "video_mode": True},
    )
    scene_id = made.json()["scene"]["id"]
    events: list[tuple[str, Any]] = []
    picture: dict[str, Any] = {}
    async with running.client.stream("GET", f"{KIDS}/scenes/{scene_id}/events") as response:
        async for kind, data in sse_events(response):
            events.append((kind, data))
            if kind == "picture":
                picture = data["scene"]
                assert picture["state"] == "writing" and picture["imagePrompt"].startswith("Early, a girl")
                # the picture, then its video, are made while the text model still holds the choices
                assert (await wait_done(running, picture["videoJobId"]))["job"]["state"] == "complete"
                image = (await running.client.get(f"/kids/story/image/{scene_id}")).json()
                assert image["status"] == "complete"
                assert (await running.client.get(f"{KIDS}/scenes/{scene_id}")).json()["state"] == "writing"
                held.resume.set()
    kinds = [kind for kind, _ in events]
    assert kinds.index("picture") < len(kinds) - 1 and kinds[-1] == "scene", kinds
    written = events[-1][1]["scene"]
    assert written["choices"] == ["Early choice 0", "Early choice 1", "Early choice 2"]
    assert (written["imageJobId"], written["videoJobId"]) == (picture["imageJobId"], picture["videoJobId"])
    assert len(openai.generation_bodies()) == 1 and len(grok.generation_bodies()) == 1  # not made twice


async def test_a_picture_started_for_an_answer_that_is_repaired_is_made_again_from_the_repair(
    live: OpenLive, ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer
) -> None:
    running = await live(env_for(ollama, openai, None), config=config())
    offered = [m["id"] for m in (await running.client.get(KIDS)).json()["imageModels"]]
    assert "openai/gpt-image-1" in offered and not [m for m in offered if m.startswith("xai/")]  # no key
    broken = json.loads(scene_text("Broken"))
    broken["choices"] = ["only one"]  # a whole image prompt, then an answer that is not a scene
    repair = Reply(text=scene_text("Fixed"), hold_after=1)  # until the page follows
    ollama.script(Reply(text=json.dumps(broken)), repair)
    made = (await running.client.post(f"{KIDS}/stories", json={"premise": "a kite"})).json()
    events = await follow(running, "kids", made["scene"]["id"], repair)
    (early,) = [data["scene"] for kind, data in events if kind == "picture"]
    assert early["imagePrompt"].startswith("Broken, a girl")
    written = events[-1][1]["scene"]
    assert written["title"] == "Fixed" and written["imageJobId"] != early["imageJobId"]
    assert (await wait_done(running, written["imageJobId"]))["job"]["state"] == "complete"
    assert openai.generation_bodies()[-1]["prompt"].startswith("Fixed, a girl")
    dropped = (await running.client.get(f"/api/jobs/{early['imageJobId']}")).json()
    assert dropped["state"] in ("cancelled", "complete")  # cancelled, unless it was already made

    # an answer that is never a scene leaves no picture behind on the failed scene
    ollama.script(Reply(text=json.dumps(broken)), Reply(text=json.dumps(broken)))
    again = (await running.client.post(f"{KIDS}/stories", json={"premise": "a bear"})).json()
    kind, failed = (await follow(running, "kids", again["scene"]["id"]))[-1]
    assert kind == "error" and failed["scene"]["imageJobId"] is None
    assert (await running.client.get(f"/kids/story/image/{again['scene']['id']}")).json()["status"] == "none"


async def test_bad_input_and_other_tiers_are_refused(
    live: OpenLive, ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer
) -> None:
    teens = TierConfig(name="Teens", image_models=("openai/gpt-image-1",), video=False)
    running = await live(env_for(ollama, openai, None), config=config(teens=teens))
    ollama.script(Reply(text=scene_text("Kids only")))
    made = (await running.client.post(f"{KIDS}/stories", json={"premise": "a kids story"})).json()
    scene_id, story_id = made["scene"]["id"], made["story"]["id"]
    await follow(running, "kids", scene_id)

    unknown = await running.client.get("/api/stories/pirates")
    disabled = await running.client.get("/api/stories/nsfw")  # in the config, switched off
    assert unknown.status_code == disabled.status_code == 404
    assert unknown.json() == disabled.json()  # no hint that nsfw exists
    home = await running.client.get("/kids", follow_redirects=False)
    assert home.status_code == 307 and home.headers["location"] == "/kids/"
    for path in ("/pirates", "/nsfw", "/pyproject.toml"):  # no redirect that would confirm anything
        assert (await running.client.get(path, follow_redirects=False)).status_code == 404, path
    for path in (  # the kids story and scene through another tier: as if they did not exist
        f"/api/stories/teens/stories/{story_id}",
        f"/api/stories/teens/scenes/{scene_id}",
        f"/api/stories/teens/scenes/{scene_id}/events",
        f"/teens/story/image/{scene_id}",
        f"/teens/story/video/{scene_id}",
    ):
        answer = await running.client.get(path)
        assert answer.status_code == 404, (path, answer.text)
    for path in (f"/api/stories/teens/scenes/{scene_id}/choose", f"/teens/story/image/{scene_id}/retry"):
        assert (await running.client.post(path, json={"choice": 0})).status_code == 404, path

    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("/api/stories/kids/stories", {"premise": "   "}, "premise", "empty"),
        (
            "/api/stories/kids/stories",
            {"premise": "x", "text_model": "nope/nothing"},
            "model",
            "nope/nothing",
        ),
        (
            "/api/stories/kids/stories",
            {"premise": "x", "image_model": "nope/nothing"},
            "nope/nothing",
            "usable",
        ),
        (
            "/api/stories/teens/stories",
            {"premise": "x", "image_model": "xai/grok-2-image"},
            "image_model",
            "openai/gpt-image-1",
        ),
        (
            "/api/stories/teens/stories",
            {"premise": "x", "video_mode": True},
            "video_mode",
            "does not allow video",
        ),
        ("/api/stories/kids/stories", {"premise": "x", "video_mode": True}, "video_mode", "none is usable"),
        (f"/api/stories/kids/scenes/{scene_id}/choose", {"choice": 3}, "choice", "0 to 2"),
        (f"/api/stories/kids/scenes/{scene_id}/choose", {}, "choice", "either"),
    ]
    for path, body, field, says in cases:
        answer = await running.client.post(path, json=body)
        error = answer.json()
        unknown_model = error.get("error") == "Model not found"  # a 404 listing the models, not the tier's
        assert answer.status_code == 404 if unknown_model else 400 <= answer.status_code < 500, (body, error)
        assert unknown_model or answer.status_code != 404, (body, error)
        assert error.get("field") == field or field in error["message"], (body, error)
        assert says in error["message"], (body, error)
    tree = (await running.client.get(f"{KIDS}/stories/{story_id}")).json()
    assert tree["sceneCount"] == 1  # nothing was added by the refused choices
    assert (await running.client.get(f"{KIDS}/stories")).json()["total"] == 1  # nor by refused starts


async def test_no_usable_image_model_points_to_onboarding(live: OpenLive, ollama: FakeOllamaServer) -> None:
    running = await live(engines(ollama, None), config=config())
    answer = await running.client.post(f"{KIDS}/stories", json={"premise": "a fox"})
    assert answer.status_code == 503, answer.text
    assert "No image model is usable" in answer.json()["message"] and "onboarding" in answer.text


async def test_a_failed_picture_leaves_the_scene_readable_and_retry_makes_it_and_its_video(
    live: OpenLive, ollama: FakeOllamaServer, openai: FakeOpenAIImagesServer, grok: FakeXAIVideoServer
) -> None:
    from tests.fakes.openai_images_server import ImagesReply

    running = await live(env_for(ollama, openai, grok), config=config())
    ollama.script(Reply(text=scene_text("Refused")))
    openai.script(ImagesReply(refused=True))  # the safety system says no to the first picture
    made = (
        await running.client.post(
            f"{KIDS}/stories",
            json={"premise": "a storm", "image_model": "openai/gpt-image-1", "video_mode": True},
        )
    ).json()
    scene = (await follow(running, "kids", made["scene"]["id"]))[-1][1]["scene"]
    assert scene["state"] == "written" and scene["narrative"]  # the scene reads without its picture
    assert (await wait_done(running, scene["imageJobId"]))["job"]["state"] == "failed"
    assert (await wait_done(running, scene["videoJobId"]))["job"]["state"] == "failed"  # it waited on it
    image = (await running.client.get(f"/kids/story/image/{scene['id']}")).json()
    assert image["status"] == "failed" and image["url"] is None and image["error"]
    video = (await running.client.get(f"/kids/story/video/{scene['id']}")).json()
    assert video["status"] == "failed"
    assert grok.generation_bodies() == []  # nothing was paid for a video without its image

    retried = await running.client.post(f"/kids/story/video/{scene['id']}/retry")  # the image comes first
    assert retried.status_code == 200 and retried.json()["status"] in ("pending", "generating", "complete")
    again = (await running.client.get(f"{KIDS}/scenes/{scene['id']}")).json()
    assert again["imageJobId"] != scene["imageJobId"] and again["videoJobId"] != scene["videoJobId"]
    assert (await wait_done(running, again["videoJobId"]))["job"]["state"] == "complete"
    assert (await running.client.get(f"/kids/story/image/{scene['id']}")).json()["status"] == "complete"
    assert (await running.client.get(f"/kids/story/video/{scene['id']}")).json()["status"] == "complete"
    assert len(grok.generation_bodies()) == 1

    # a picture whose file went missing on disk shows as failed (with retry), never a broken link
    asset_id = (await running.client.get(f"/kids/story/image/{scene['id']}")).json()["url"].rsplit("/", 1)[-1]
    asset = await running.studio.media.get(asset_id)
    assert asset is not None
    (await running.studio.media.read_path(asset)).unlink()
    missing = (await running.client.get(f"/kids/story/image/{scene['id']}")).json()
    assert missing["status"] == "failed" and "missing" in missing["error"]
