"""The story gallery's files: a story saved in the seed's older format (image model "dalle", no video
mode, scenes without video) imported and shown as it should be; an export as JSON that imports again and
as one self-contained HTML page; deleting a story, keeping its media by default or deleting what nothing
else uses; bad files refused with the field that is wrong."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from tests.fakes.videos import make_mp4
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.gateway.test_stories import KIDS, config

LEGACY = json.loads((Path(__file__).parent.parent / "fixtures" / "legacy_story_v1.json").read_text())


def _png_bytes(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


async def _import(running: LiveStudio, data: Any) -> dict[str, Any]:
    answer = await running.client.post(f"{KIDS}/import", content=json.dumps(data))
    assert answer.status_code == 201, answer.text
    story: dict[str, Any] = answer.json()
    return story


async def test_a_legacy_story_imports_and_reads_as_it_was(live: OpenLive) -> None:
    running = await live(engines(None, None), config=config())
    story = await _import(running, LEGACY)
    assert story["title"] == "The Lighthouse Keeper's Cat" and story["sceneCount"] == 3
    assert story["imageModel"] == "dalle" and story["modelNames"]["image"] == "DALL-E"
    assert story["videoMode"] is False and story["hasVideo"] is False
    assert story["createdAt"].startswith("2024-03-14T09:26:53")
    tree = (await running.client.get(f"{KIDS}/stories/{story['id']}")).json()
    first, boat, gull = tree["scenes"]
    assert first["parentId"] is None and boat["parentId"] == gull["parentId"] == first["id"]  # a branch
    assert boat["choice"] == "Sneak onto the boat" and first["narrative"].startswith("Every night Mittens")
    assert all(s["state"] == "written" for s in tree["scenes"])
    image = (await running.client.get(f"/kids/story/image/{first['id']}")).json()
    assert image["status"] == "complete"
    stored = (await running.client.get(image["url"])).content
    assert stored[:8] == b"\x89PNG\r\n\x1a\n"
    assert (await running.client.get(f"/kids/story/image/{gull['id']}")).json() == {
        "status": "none",
        "url": None,
    }
    assert (await running.client.get(f"/kids/story/video/{first['id']}")).json()["status"] == "none"
    assert tree["coverUrl"] and (await running.client.get(tree["coverUrl"])).status_code == 200
    gallery = (await running.client.get(f"{KIDS}/stories", params={"q": "lighthouse"})).json()
    assert gallery["total"] == 1 and gallery["items"][0]["hasVideo"] is False


async def test_export_json_imports_again_and_html_stands_alone(live: OpenLive) -> None:
    running = await live(engines(None, None), config=config())
    with_video = copy.deepcopy(LEGACY) | {
        "format": 2,
        "video_mode": True,
        "image_model": "openai/gpt-image-1",
    }
    video = make_mp4(32, 32, seconds=0.5, fps=4)
    with_video["scenes"][1]["video_url"] = "data:video/mp4;base64," + base64.b64encode(video).decode()
    story = await _import(running, with_video)
    assert story["hasVideo"] is True and story["videoMode"] is True

    exported = await running.client.get(f"{KIDS}/stories/{story['id']}/export.json")
    assert exported.status_code == 200
    assert (
        exported.headers["content-disposition"] == 'attachment; filename="the-lighthouse-keeper-s-cat.json"'
    )
    data = exported.json()
    assert data["format"] == 2 and len(data["scenes"]) == 3 and data["video_mode"] is True
    assert _png_bytes(data["scenes"][0]["image_url"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(data["scenes"][1]["video_url"].split(",", 1)[1]) == video
    assert data["scenes"][2]["image_url"] is None and data["scenes"][2]["video_url"] is None
    again = await _import(running, data)
    assert again["id"] != story["id"] and again["sceneCount"] == 3 and again["hasVideo"] is True

    page = await running.client.get(f"{KIDS}/stories/{story['id']}/export.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<h1>The Lighthouse Keeper&#39;s Cat</h1>" in html
    assert html.count('<img src="data:image/png;base64,') == 2  # pictures inside: no link out
    assert html.count("<video controls playsinline") == 1 and 'src="data:video/mp4;base64,' in html
    assert "GPT Image 1" in html and "http" not in html.split("<body>", 1)[1]  # nothing to fetch


async def test_delete_keeps_media_by_default_or_removes_what_nothing_else_uses(live: OpenLive) -> None:
    running = await live(engines(None, None), config=config())
    kept, gone = await _import(running, LEGACY), await _import(running, LEGACY)
    urls = {}
    for story in (kept, gone):
        tree = (await running.client.get(f"{KIDS}/stories/{story['id']}")).json()
        urls[story["id"]] = (await running.client.get(f"/kids/story/image/{tree['scenes'][0]['id']}")).json()[
            "url"
        ]
    answer = await running.client.delete(f"{KIDS}/stories/{kept['id']}")
    assert answer.status_code == 200 and answer.json()["mediaDeleted"] == []
    assert (await running.client.get(urls[kept["id"]])).status_code == 200  # the default keeps every file
    assert (await running.client.get(f"{KIDS}/stories/{kept['id']}")).status_code == 404

    answer = await running.client.delete(f"{KIDS}/stories/{gone['id']}", params={"media": "delete"})
    assert answer.status_code == 200 and len(answer.json()["mediaDeleted"]) == 2
    assert (await running.client.get(urls[gone["id"]])).status_code == 404
    assert (await running.client.get(urls[kept["id"]])).status_code == 200  # the same bytes, another asset
    assert (await running.client.delete(f"{KIDS}/stories/{gone['id']}")).status_code == 404
    bad = await running.client.delete(f"{KIDS}/stories/{gone['id']}", params={"media": "all"})
    assert bad.status_code == 400 and bad.json()["field"] == "media"
    assert (await running.client.get(f"{KIDS}/stories")).json()["total"] == 0


async def test_bad_story_files_are_refused_naming_the_field(live: OpenLive) -> None:
    running = await live(engines(None, None), config=config())
    broken_parent = copy.deepcopy(LEGACY)
    broken_parent["scenes"][1]["parent"] = "nope"
    not_data = copy.deepcopy(LEGACY)
    not_data["scenes"][0]["image_url"] = "https://example.com/cat.png"
    no_text = copy.deepcopy(LEGACY)
    del no_text["scenes"][2]["text"]
    cases: list[tuple[Any, str]] = [
        ({**LEGACY, "format": 3}, "format"),
        ({**LEGACY, "scenes": []}, "scenes"),
        ({**LEGACY, "premise": ""}, "story.premise"),
        (broken_parent, "scenes[1].parent"),
        (not_data, "scenes[0].image_url"),
        (no_text, "scenes[2].text"),
        ([1, 2], "body"),
    ]
    for data, field in cases:
        answer = await running.client.post(f"{KIDS}/import", content=json.dumps(data))
        assert answer.status_code == 400 and answer.json()["field"] == field, (field, answer.text)
    fake_picture = copy.deepcopy(LEGACY)
    fake_picture["scenes"][1]["image_url"] = (
        "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    )
    refused = await running.client.post(f"{KIDS}/import", content=json.dumps(fake_picture))
    assert refused.status_code in (400, 415) and "Traceback" not in refused.text  # checked like any upload
    garbage = await running.client.post(f"{KIDS}/import", content=b"{nope")
    assert garbage.status_code == 400 and garbage.json()["field"] == "body"
    assert (await running.client.get(f"{KIDS}/stories")).json()["total"] == 0  # nothing half-imported
    assert (
        await running.client.post("/api/stories/nsfw/import", content=json.dumps(LEGACY))
    ).status_code == 404


async def test_without_auto_save_a_story_joins_the_gallery_when_saved(live: OpenLive) -> None:
    from mmstudio.config import StoriesConfig, StudioConfig
    from tests.fakes.base import Reply
    from tests.fakes.ollama_server import FakeOllamaServer
    from tests.fakes.openai_images_server import FakeOpenAIImagesServer
    from tests.gateway.test_stories import env_for, follow, scene_text

    with (
        FakeOllamaServer() as ollama,
        FakeOpenAIImagesServer(api_key="sk-stories-0123456789abcdef") as openai,
    ):
        manual = StudioConfig(stories=StoriesConfig(auto_save=False))
        running = await live(env_for(ollama, openai, None), config=manual)
        ollama.script(Reply(text=scene_text("Unsaved")))
        made = (await running.client.post(f"{KIDS}/stories", json={"premise": "a kite"})).json()
        await follow(running, "kids", made["scene"]["id"])
        assert made["story"]["saved"] is False
        assert (await running.client.get(f"{KIDS}/stories")).json()["total"] == 0  # not in the gallery yet
        saved = await running.client.post(
            f"{KIDS}/stories/{made['story']['id']}/save", json={"title": "My kite"}
        )
        assert (
            saved.status_code == 200 and saved.json()["saved"] is True and saved.json()["title"] == "My kite"
        )
        page = (await running.client.get(f"{KIDS}/stories")).json()
        assert page["total"] == 1 and page["items"][0]["title"] == "My kite"
        blank = await running.client.post(f"{KIDS}/stories/{made['story']['id']}/save", json={"title": ""})
        assert blank.status_code == 400 and blank.json()["field"] == "title"
