"""Story mode's pages in the browser: a story started on a tier's home, its first scene shown while it is
written, illustrated and animated, a choice, a branch from an earlier scene, the gallery and the reader;
the home without video mode, the same 404 page for a switched-off and an unknown tier, a picture whose
file is gone and a scene the model could not write, both shown failed with a Retry that mends them, and
the gallery paged with More; a character made with a photo that memory mode sends as a reference, a
story downloaded, imported again and deleted with its pictures. Real app, fake Ollama, GPT Image and
Grok Imagine servers.

"Shown while written" is proven by holding the text model's reply mid-scene: the test releases it only
after the page shows the first words of the narrative.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from mmstudio.web.ui import story_pages
from tests.fakes.base import Reply
from tests.fakes.images import make_image
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_images_server import FakeOpenAIImagesServer, ImagesReply
from tests.fakes.xai_video_server import FakeXAIVideoServer
from tests.gateway.conftest import OpenLive
from tests.gateway.test_stories import OPENAI_KEY, XAI_KEY, config, env_for, follow, scene_text
from tests.gateway.test_videos import wait_done
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED

NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"
VIDEO_LINE = "Generate short video clips for each scene"


@pytest.fixture
def openai() -> Iterator[FakeOpenAIImagesServer]:
    with FakeOpenAIImagesServer(api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture
def grok() -> Iterator[FakeXAIVideoServer]:
    with FakeXAIVideoServer(api_key=XAI_KEY) as server:
        yield server


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", seen)
    return errors


async def test_a_story_is_played_with_video_branched_found_in_the_gallery_and_read(
    page: Page,
    live: OpenLive,
    ollama: FakeOllamaServer,
    openai: FakeOpenAIImagesServer,
    grok: FakeXAIVideoServer,
) -> None:
    studio = await live(env_for(ollama, openai, grok), config=config())
    errors = console_errors(page)
    # A character with a reference photo, for memory mode
    photo = await studio.client.post(
        "/api/stories/kids/photos", files={"file": ("mira.png", make_image(64, 64), "image/png")}
    )
    made = await studio.client.post(
        "/api/stories/kids/characters",
        json={"name": "Mira", "description": "a girl with a green coat", "photo_ids": [photo.json()["id"]]},
    )
    assert made.status_code == 201, made.text
    await page.goto(f"{studio.url}/kids/")
    await expect(page.get_by_role("heading", name="Kids stories", level=1)).to_be_visible()
    image_model = page.get_by_label("Image model")
    await expect(image_model).to_be_enabled()
    await expect(
        image_model.locator('optgroup[label="OpenAI"] > option[value="openai/gpt-image-1"]')
    ).to_have_count(1)
    await image_model.select_option("openai/gpt-image-1")
    await expect(page.get_by_label("Memory mode")).not_to_be_checked()
    await expect(page.locator("#st-cast")).to_contain_text("Kids has 1 character (Mira).")
    await page.get_by_label("Memory mode").check()
    video_toggle = page.get_by_label(VIDEO_LINE)
    await expect(video_toggle).to_be_visible()
    assert await page.evaluate(UNLABELLED) == []
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "story-home-narrow")
    await page.set_viewport_size({"width": 1280, "height": 800})

    openai.script(ImagesReply(delay=1.0))  # the first picture takes a second: its wait is seen
    lantern = Reply(text=scene_text("The Lantern"), hold_after=8)  # mid-narrative until released
    ollama.script(lantern, Reply(text=scene_text("The River")), Reply(text=scene_text("The Cave")))
    await page.get_by_label("Premise").fill("A girl finds a magic lantern")
    await video_toggle.check()
    await page.get_by_role("button", name="Start").click()
    await expect(page).to_have_url(re.compile(r"/kids/story/st_[\w-]+/scene/sc_[\w-]+$"))
    story_id = page.url.split("/story/")[1].split("/")[0]
    first_url = page.url

    narrative = page.locator("#st-narrative")
    await expect(narrative).to_have_text("The Lantern: Mira walks")  # what is written so far
    await expect(page.locator("#st-choices")).to_be_hidden()
    lantern.resume.set()
    await expect(narrative).to_have_text(
        "The Lantern: Mira walks into the forest and finds a glowing lantern."
    )
    await expect(page.get_by_role("heading", name="The Lantern", level=1)).to_be_visible()
    await expect(page.locator("#st-media .st-image")).to_have_text("Generating image...")
    await expect(page.locator("#st-media .st-video")).to_have_text("Generating video...")
    picture = page.locator("#st-media .st-image img")
    await expect(picture).to_be_visible()
    await expect(picture).to_have_attribute("alt", re.compile(r"^The Lantern, a girl with a lantern"))
    first_id = first_url.rsplit("/", 1)[1]
    image = (await studio.client.get(f"/kids/story/image/{first_id}")).json()
    await expect(picture).to_have_attribute("src", image["url"])
    clip = page.locator("#st-media .st-video video")
    await expect(clip).to_be_visible(timeout=15_000)
    for name in ("controls", "playsinline"):
        await expect(clip).to_have_attribute(name, "")
    await expect(clip).to_have_attribute("preload", "metadata")
    video = (await studio.client.get(f"/kids/story/video/{first_id}")).json()
    await expect(clip).to_have_attribute("src", video["url"])
    # memory mode: Mira's description went to the text model and her photo to GPT Image
    system = ollama.requests_to("/api/chat")[0].json()["messages"][0]["content"]
    assert "- Mira: a girl with a green coat" in system
    assert openai.edits and openai.edits[0].images  # the reference made it an edit, with the photo
    assert await page.evaluate(UNLABELLED) == []
    await shot(page, "story-scene")
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await shot(page, "story-scene-narrow-dark")
    await page.set_viewport_size({"width": 1280, "height": 800})

    # Choose: the next scene, with the path back to the first.
    await page.get_by_role("button", name="The Lantern choice 0").click()
    await expect(page.get_by_role("heading", name="The River", level=1)).to_be_visible()
    await expect(page.get_by_text("You chose: The Lantern choice 0")).to_be_visible()
    await expect(page.get_by_role("button", name="The River choice 1")).to_be_visible()  # written
    path = page.get_by_role("navigation", name="Story path")
    await expect(path.get_by_role("link")).to_have_text(["1. The Lantern"])
    await expect(path.locator('[aria-current="page"]')).to_have_text("2. The River")

    # Back to the first scene: its taken path is listed, and another choice is a branch.
    await path.get_by_role("link", name="1. The Lantern").click()
    await expect(page).to_have_url(first_url)
    await expect(page.get_by_role("link", name="Continue: The Lantern choice 0")).to_be_visible()
    await page.get_by_label("Your own").fill("Hide in a cave")
    await page.get_by_label("Your own").press("Enter")
    await expect(page.get_by_role("heading", name="The Cave", level=1)).to_be_visible()
    await expect(page.get_by_role("button", name="The Cave choice 0")).to_be_visible()
    tree = (await studio.client.get(f"/api/stories/kids/stories/{story_id}")).json()
    assert tree["memoryMode"] is True and tree["videoMode"] is True
    assert tree["scenes"][0]["id"] == first_id
    assert [s["title"] for s in tree["scenes"]] == ["The Lantern", "The River", "The Cave"]
    assert [s["parentId"] for s in tree["scenes"]] == [None, first_id, first_id]
    cave_id = tree["scenes"][2]["id"]
    assert tree["currentSceneId"] == cave_id and tree["hasVideo"] is True

    # The gallery: the story's card with its cover and the video badge; search and sort.
    await page.goto(f"{studio.url}/kids/gallery")
    card = page.locator(f'.st-card[data-story="{story_id}"]')
    await expect(card.get_by_role("link", name="The Lantern", exact=True)).to_be_visible()
    await expect(card).to_contain_text("A girl finds a magic lantern")
    await expect(card).to_contain_text("3 scenes")
    await expect(card.locator(".st-video-badge")).to_have_text("Video")
    await expect(card.locator(".st-cover img")).to_have_attribute("src", tree["coverUrl"])
    assert await page.evaluate(UNLABELLED) == []
    await page.get_by_label("Search").fill("no such story")
    await expect(page.locator(".st-card")).to_have_count(0)
    await page.get_by_label("Search").fill("lantern")
    await expect(page.locator(".st-card")).to_have_count(1)
    await page.get_by_label("Sort by").select_option("title")
    await expect(card).to_be_visible()
    await expect(page.get_by_role("button", name="More")).to_be_hidden()  # one story: one page
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "story-gallery-narrow")
    await page.set_viewport_size({"width": 1280, "height": 800})

    # The reader: the path to where the reader left off, each scene with its picture and clip.
    await card.get_by_role("link", name="The Lantern", exact=True).click()
    await expect(page).to_have_url(f"{studio.url}/kids/read/{story_id}")
    scenes = page.locator(".st-read-scene")
    await expect(scenes.locator("h2")).to_have_text(["1. The Lantern", "2. The Cave"])
    for i in range(2):
        await expect(scenes.nth(i).locator(".st-image img")).to_be_visible(timeout=15_000)
        await expect(scenes.nth(i).locator(".st-video video")).to_be_visible(timeout=15_000)
    await expect(scenes.nth(1)).to_contain_text("You chose: Hide in a cave")
    await page.goto(f"{studio.url}/kids/read/{story_id}?scene={tree['scenes'][1]['id']}")
    await expect(scenes.locator("h2")).to_have_text(["1. The Lantern", "2. The River"])
    await shot(page, "story-reader")
    assert errors == []


async def test_no_video_toggle_a_plain_404_and_failures_retried_and_the_gallery_paged(
    page: Page,
    live: OpenLive,
    ollama: FakeOllamaServer,
    openai: FakeOpenAIImagesServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = await live(env_for(ollama, openai, None), config=config())
    errors = console_errors(page)
    await page.goto(f"{studio.url}/kids/")
    await expect(page.get_by_label("Image model")).to_be_enabled()
    await expect(page.get_by_text(VIDEO_LINE)).to_be_hidden()
    await expect(page.locator("#st-video")).to_be_hidden()

    # A switched-off tier and one that does not exist: the same plain page.
    bodies = []
    for path in ("/nsfw/", "/pirates/", "/nsfw/gallery", "/pirates/read/st_none", "/kids/read/st_none"):
        answer = await page.goto(f"{studio.url}{path}")
        assert answer is not None and answer.status == 404, path
        assert "text/html" in answer.headers["content-type"]
        await expect(page.get_by_role("heading", name="Not found", level=1)).to_be_visible()
        bodies.append(await answer.text())
    assert bodies[0] == bodies[1] and "nsfw" not in bodies[0].lower() and "Adults" not in bodies[0]
    assert len(errors) == len(bodies) and all("404" in e for e in errors)  # the pages' own status
    errors.clear()

    # A picture whose file is gone from the media store: failed with why, and Retry makes it again.
    ollama.script(Reply(text=scene_text("The Fox")))
    made = (await studio.client.post("/api/stories/kids/stories", json={"premise": "a fox"})).json()
    scene_id = made["scene"]["id"]
    written = (await follow(studio, "kids", scene_id))[-1][1]["scene"]
    assert (await wait_done(studio, written["imageJobId"]))["job"]["state"] == "complete"
    state = (await studio.client.get(f"/kids/story/image/{scene_id}")).json()
    asset = await studio.studio.media.get(state["url"].rsplit("/", 1)[1])
    assert asset is not None
    (await studio.studio.media.read_path(asset)).unlink()

    await page.goto(f"{studio.url}/kids/story/{made['story']['id']}")
    await expect(page).to_have_url(re.compile(rf"/scene/{scene_id}$"))  # the current scene
    box = page.locator("#st-media .st-image")
    await expect(box).to_contain_text("missing from the media store")
    await expect(box.locator("img")).to_have_count(0)  # never a broken picture
    await expect(page.locator("#st-media video")).to_have_count(0)  # not in video mode: no player
    assert await page.evaluate(UNLABELLED) == []
    openai.script(ImagesReply(delay=1.0))
    await box.get_by_role("button", name="Retry").click()
    await expect(box).to_have_text("Generating image...")
    await expect(box.locator("img")).to_be_visible()
    await expect(box.get_by_role("button", name="Retry")).to_have_count(0)
    assert len(openai.generation_bodies()) == 2

    # A scene the text model could not write: why, and Retry writes it again.
    ollama.script(Reply(text="nope"), Reply(text="still nope"))
    await page.goto(f"{studio.url}/kids/")
    await page.get_by_label("Premise").fill("a bear")
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#st-error")).to_contain_text("answered twice without a usable scene")
    await expect(page.locator("#st-choices")).to_be_hidden()
    ollama.script(Reply(text=scene_text("The Bear")))
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_role("heading", name="The Bear", level=1)).to_be_visible()
    await expect(page.get_by_role("button", name="The Bear choice 2")).to_be_visible()
    await expect(page.locator("#st-error")).to_be_hidden()

    # The gallery pages with More (one story a page here).
    monkeypatch.setattr(story_pages, "GALLERY_PAGE", 1)
    await page.goto(f"{studio.url}/kids/gallery")
    await expect(page.locator(".st-card")).to_have_count(1)
    await expect(page.locator("#st-total")).to_have_text("2 stories")
    await page.get_by_role("button", name="More").click()
    await expect(page.locator(".st-card")).to_have_count(2)
    titles = sorted(await page.locator(".st-card h2").all_inner_texts())
    assert titles == ["The Bear", "The Fox"]
    await expect(page.get_by_role("button", name="More")).to_be_hidden()
    assert errors == []


async def test_a_character_with_a_photo_goes_along_and_a_story_is_downloaded_imported_and_deleted(
    page: Page,
    live: OpenLive,
    ollama: FakeOllamaServer,
    openai: FakeOpenAIImagesServer,
    tmp_path: Path,
) -> None:
    studio = await live(env_for(ollama, openai, None), config=config())
    errors = console_errors(page)
    await page.goto(f"{studio.url}/kids/characters")
    await expect(page.get_by_role("heading", name="Kids characters", level=1)).to_be_visible()
    nav = page.get_by_role("navigation", name="Kids stories")
    await expect(nav.get_by_role("link", name="Characters")).to_have_attribute("aria-current", "page")
    await expect(page.locator("#st-char-lede")).to_have_text(
        "With memory mode on, each description goes to the text model and each photo to the image"
        " models that take reference images."
    )
    await expect(page.get_by_text("No characters yet.")).to_be_visible()
    name = page.get_by_label("Name", exact=True)

    # The studio's 400 shows next to its field.
    await name.fill("   ")
    await page.get_by_role("button", name="Create character").click()
    await expect(page.locator("#st-char-name-error")).to_have_text("Name must be 1 to 80 characters.")
    await expect(name).to_have_attribute("aria-invalid", "true")

    # A character with a photo (uploaded when picked), then edited: only what changed is sent.
    photo_bytes = make_image(96, 96, color=(200, 60, 20))
    await page.get_by_label("Photos").set_input_files(
        files=[{"name": "pip.png", "mimeType": "image/png", "buffer": photo_bytes}]
    )
    await expect(page.get_by_role("img", name="Photo 1", exact=True)).to_be_visible()
    await name.fill("Pip")
    await page.get_by_label("Description").fill("a small red fox with one white ear")
    await page.get_by_role("button", name="Create character").click()
    pip = page.locator(".st-char").filter(has_text="Pip")
    await expect(pip.get_by_role("heading", name="Pip", level=2)).to_be_visible()
    await expect(pip.get_by_role("img", name="Pip, photo 1")).to_be_visible()
    await expect(page.locator("#st-char-total")).to_have_text("1 character")
    await expect(name).to_have_value("")  # the form is ready for the next one
    await pip.get_by_role("button", name="Edit Pip").click()
    await expect(page.get_by_role("heading", name="Edit Pip", level=2)).to_be_visible()
    await expect(page.get_by_role("img", name="Photo 1", exact=True)).to_be_visible()
    await page.get_by_label("Description").fill("a small red fox with one white ear and a blue scarf")
    async with page.expect_request(lambda r: r.method == "PATCH") as patched:
        await page.get_by_role("button", name="Save changes").click()
    assert (await patched.value).post_data_json == {
        "description": "a small red fox with one white ear and a blue scarf"
    }
    await expect(pip).to_contain_text("and a blue scarf")
    (character,) = (await studio.client.get("/api/stories/kids/characters")).json()["items"]
    assert character["name"] == "Pip" and len(character["photos"]) == 1

    # Another one, deleted after the dialog asks (Cancel first keeps it).
    await name.fill("Owl")
    await page.get_by_role("button", name="Create character").click()
    await expect(page.locator(".st-char")).to_have_count(2)
    assert await page.evaluate(UNLABELLED) == []
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "story-characters-narrow")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.get_by_role("button", name="Delete Owl").click()
    ask = page.get_by_role("dialog", name="Delete Owl?")
    await ask.get_by_role("button", name="Cancel").click()
    await expect(ask).to_be_hidden()
    await expect(page.locator(".st-char")).to_have_count(2)
    await page.get_by_role("button", name="Delete Owl").click()
    await ask.get_by_role("button", name="Delete character").click()
    await expect(page.locator(".st-char")).to_have_count(1)
    await expect(page.locator("#st-char-total")).to_have_text("1 character")

    # The home says who memory mode brings along; a story with it on sends Pip's photo to GPT Image.
    await nav.get_by_role("link", name="New story").click()
    await expect(page.locator("#st-cast")).to_contain_text("Kids has 1 character (Pip).")
    await expect(page.locator("#st-cast").get_by_role("link", name="Manage characters")).to_have_attribute(
        "href", "/kids/characters"
    )
    await page.get_by_label("Image model").select_option("openai/gpt-image-1")
    await page.get_by_label("Memory mode").check()
    assert await page.evaluate(UNLABELLED) == []
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await page.set_viewport_size({"width": 1280, "height": 800})
    ollama.script(Reply(text=scene_text("Pip Finds a Den")))
    await page.get_by_label("Premise").fill("Pip looks for a home")
    await page.get_by_role("button", name="Start").click()
    await expect(page.get_by_role("heading", name="Pip Finds a Den", level=1)).to_be_visible()
    await expect(page.locator("#st-media .st-image img")).to_be_visible()
    story_id = page.url.split("/story/")[1].split("/")[0]
    text = ollama.requests_to("/api/chat")[-1].json()["messages"][0]["content"]
    assert "- Pip: a small red fox with one white ear and a blue scarf" in text
    (edit,) = openai.edits  # the reference photo made it an edit request
    asset = await studio.studio.media.get(character["photos"][0]["id"])
    assert asset is not None
    assert edit.images == [(await studio.studio.media.read_path(asset)).read_bytes()]
    first = (await studio.client.get(f"/api/stories/kids/stories/{story_id}")).json()["scenes"][0]
    picture_url = (await studio.client.get(f"/kids/story/image/{first['id']}")).json()["url"]

    # The reader downloads the story as JSON and as a web page.
    await page.get_by_role("link", name="Read this path").click()
    await expect(page.locator(".st-read-scene h2")).to_have_text(["1. Pip Finds a Den"])
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download JSON").click()
    download = await downloading.value
    assert download.suggested_filename == "pip-finds-a-den.json"
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["title"] == "Pip Finds a Den" and len(exported["scenes"]) == 1
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download web page").click()
    assert (await downloading.value).suggested_filename == "pip-finds-a-den.html"
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await page.set_viewport_size({"width": 1280, "height": 800})

    # The gallery imports it again (a file that is not a story shows why) and opens the copy.
    await nav.get_by_role("link", name="Gallery").click()
    importer = page.get_by_label("Import a story file")
    await expect(page.locator(".st-card")).to_have_count(1)
    assert await page.evaluate(UNLABELLED) == []
    await importer.set_input_files(
        files=[{"name": "broken.json", "mimeType": "application/json", "buffer": b"{nope"}]
    )
    await expect(page.locator("#st-import-error")).to_contain_text(
        "broken.json could not be imported: The story file is not valid JSON"
    )
    await importer.set_input_files(str(saved))
    await expect(page).to_have_url(re.compile(r"/kids/read/st_[\w-]+$"))
    copy_id = page.url.rsplit("/", 1)[1]
    assert copy_id != story_id
    await expect(page.get_by_role("heading", name="Pip Finds a Den", level=1)).to_be_visible()
    await expect(page.locator(".st-read-scene h2")).to_have_text(["1. Pip Finds a Den"])
    await expect(page.locator(".st-read-scene .st-image img")).to_be_visible()

    # The first story is deleted with its pictures, after the dialog asks; the copy stays.
    await page.goto(f"{studio.url}/kids/read/{story_id}")
    delete = page.get_by_role("button", name="Delete", exact=True)
    await delete.click()
    ask = page.get_by_role("dialog", name="Delete this story?")
    also = ask.get_by_label("Also delete its pictures and videos that nothing else uses")
    await expect(also).not_to_be_checked()
    assert await page.evaluate(UNLABELLED) == []
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "story-delete-narrow")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await ask.get_by_role("button", name="Cancel").click()
    await expect(ask).to_be_hidden()
    await delete.click()
    await also.check()
    async with page.expect_request(lambda r: r.method == "DELETE") as deleting:
        await ask.get_by_role("button", name="Delete story").click()
    assert (await deleting.value).url.endswith(f"/api/stories/kids/stories/{story_id}?media=delete")
    await expect(page).to_have_url(f"{studio.url}/kids/gallery")
    await expect(page.locator(".st-card")).to_have_count(1)
    await expect(page.locator(f'.st-card[data-story="{copy_id}"]')).to_be_visible()
    assert (await studio.client.get(f"/api/stories/kids/stories/{story_id}")).status_code == 404
    assert (await studio.client.get(picture_url)).status_code == 404
    assert len(errors) == 2 and all("400" in e for e in errors)  # the blank name, the broken file
