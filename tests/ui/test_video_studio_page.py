"""The Video Studio page in the browser: a project created and reopened from the URL with its model
still chosen (grouped by provider, priced, its health shown), the controls map as the API words it, the
camera pad in step with the sliders, a prompt generated into a clip whose progress comes from its job's
events then its poster, the seed redrawn after Generate unless locked (the lock kept per project), clips
reordered, deleted and restored with the buttons and keys, and an export with its download link,
through the real app and the fake Sora server. Frames, dragging, trimming and playback:
test_video_studio_timeline.py."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect

from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, VideoReply
from tests.fakes.videos import make_mp4
from tests.gateway.conftest import OpenLive
from tests.gateway.test_video_studio import BASE, FAST, KEY, _upload, env_for
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")


@pytest.fixture
def sora() -> Iterator[FakeOpenAIVideosServer]:
    with FakeOpenAIVideosServer(api_key=KEY) as server:
        yield server


async def test_a_project_keeps_its_model_and_generates_a_clip_with_progress_then_its_poster(
    page: Page, live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    studio = await live(env_for(sora), config=FAST)
    await page.goto(f"{studio.url}/video-studio")
    await expect(page.get_by_role("heading", name="Video Studio", level=1)).to_be_visible()
    await expect(page.get_by_role("link", name="Video", exact=True)).to_have_attribute("aria-current", "page")

    await page.get_by_label("New project name").fill("Fox <b>trip</b>")
    await page.get_by_role("button", name="Create project").click()
    await expect(page.locator("#vs-work")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/video-studio\?project=vp_"))
    pid = page.url.split("project=")[1]
    assert pid.startswith("vp_")
    await expect(page.get_by_label("Project", exact=True)).to_have_value(pid)
    chosen = page.locator("#vs-project option:checked")
    await expect(chosen).to_have_text("Fox <b>trip</b>")  # text, never markup

    sora_option = page.locator('#vs-model option[value="openai/sora-2"]')
    await expect(sora_option).to_contain_text("$")  # priced per second
    await expect(page.locator('#vs-model optgroup[label^="openai"]')).to_have_count(1)  # by provider
    await expect(sora_option).to_contain_text("ready")
    await page.get_by_label("Model", exact=True).select_option("openai/sora-2")
    await expect(page.locator('.vs-how[data-control="camera"]')).not_to_be_empty()
    await page.reload()
    await expect(page.get_by_label("Model", exact=True)).to_have_value("openai/sora-2")
    server = (await studio.client.get(f"{BASE}/{pid}")).json()
    assert server["nextShot"]["model"] == "openai/sora-2" and server["selectedModel"]["usable"] is True
    # Each control's badge says what the API says, whatever the words.
    for control, how in server["controls"].items():
        badge = page.locator(f'.vs-how[data-control="{control}"]')
        if await badge.count():
            await expect(badge).to_have_text(how)
            await expect(badge).to_have_attribute("data-how", how)

    # A refused value shows the server's message next to its field.
    await page.get_by_label("Duration (seconds)").fill("7")
    await expect(page.locator("#vs-err-duration_s")).to_contain_text("seconds")
    await page.get_by_label("Duration (seconds)").fill("4")
    await expect(page.locator("#vs-err-duration_s")).to_be_hidden()

    await page.get_by_label("Prompt", exact=True).fill("a fox in the snow")
    await page.get_by_label("Pan x").fill("0.8")
    await expect(page.locator("#vs-pan_x-out")).to_have_text("0.80")
    pad = page.get_by_role("slider", name="Camera pan pad")  # the pad follows the sliders
    await expect(pad).to_have_attribute("aria-valuetext", "pan x 0.80 right, pan y 0.00")
    await pad.press("ArrowUp")  # and moves them: up is pan up
    await expect(page.locator("#vs-pan_y-out")).to_have_text("0.05")
    await expect(pad).to_have_attribute("aria-valuetext", "pan x 0.80 right, pan y 0.05 up")
    seed_box = page.get_by_label("Seed (-1: random)")
    async with page.expect_response(
        lambda r: r.request.method == "PATCH" and "seed" in (r.request.post_data or "")
    ):
        await page.get_by_role("button", name="Random").click()  # the dice: a random seed, stored
    await expect(seed_box).not_to_have_value("-1")
    seed = await seed_box.input_value()
    async with page.expect_response(
        lambda r: r.request.method == "PATCH" and "loop" in (r.request.post_data or "")
    ):
        await page.locator("#vs-loop").check()
    await expect(page.get_by_role("button", name="Lock seed")).to_have_attribute("aria-pressed", "false")

    # Generate: the clip's progress comes from its job's events, then one reload brings its poster.
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    sora.script(VideoReply(steps=60))  # long enough to see it running
    await page.get_by_role("button", name="Generate").click()
    clip = page.locator("#vs-timeline > li").first
    await expect(clip).to_be_visible()
    await expect(clip.get_by_role("progressbar", name="Progress of clip 1")).to_be_visible()
    await expect(clip.locator(".vs-percent")).to_have_text(re.compile(r"^[1-9]\d? %$"))
    await expect(seed_box).not_to_have_value(seed)  # unlocked: the next shot gets a new seed
    await expect(clip.locator(".vs-thumb img")).to_be_visible(timeout=15_000)  # the poster once complete
    await expect(clip.locator(".vs-state")).to_have_text("complete")
    await expect(clip.get_by_role("progressbar")).to_have_count(0)
    await expect(clip.locator(".vs-loop")).to_have_text("loop")  # made with Loop on
    done = (await studio.client.get(f"{BASE}/{pid}")).json()
    assert done["clips"][0]["settings"]["prompt"] == "a fox in the snow"
    assert done["clips"][0]["settings"]["camera"]["pan"] == {"x": 0.8, "y": 0.05} and sora.submissions == 1
    assert done["clips"][0]["settings"]["seed"] == int(seed)
    job_id = done["clips"][0]["jobId"]
    assert any(r.endswith(f"/api/jobs/{job_id}/events") for r in requests), requests
    polls = [r for r in requests if r == f"GET {studio.url}{BASE}/{pid}"]
    assert len(polls) <= 3, polls  # after Generate and after the job's end, no polling
    await expect(clip.locator(".vs-thumb img")).to_have_attribute("src", done["clips"][0]["posterUrl"])
    await expect(page.locator("#vs-video")).to_have_attribute("src", done["clips"][0]["videoUrl"])

    # Locked, the seed stays for the next Generate; the lock is kept for this project.
    await page.get_by_role("button", name="Lock seed").click()
    await page.reload()
    lock = page.get_by_role("button", name="Lock seed")
    await expect(lock).to_have_attribute("aria-pressed", "true")
    kept = await seed_box.input_value()
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#vs-timeline > li")).to_have_count(2)
    await expect(page.locator("#vs-timeline > li").nth(1).locator(".vs-state")).to_have_text("complete")
    await expect(seed_box).to_have_value(kept)
    second = (await studio.client.get(f"{BASE}/{pid}")).json()["clips"][1]
    assert second["settings"]["seed"] == int(kept) and sora.submissions == 2

    assert await page.evaluate(UNLABELLED) == []
    await shot(page, "video-studio")
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert await page.evaluate(UNLABELLED) == []
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await shot(page, "video-studio-narrow-dark")


async def test_clips_reorder_delete_undo_and_export_to_a_download(page: Page, live: OpenLive) -> None:
    studio = await live(env_for(None), config=FAST)
    pid = (await studio.client.post(BASE, json={"name": "cut"})).json()["id"]
    clip_ids = []
    for i in range(2):
        asset = await _upload(
            studio, make_mp4(64, 36, seconds=2, fps=4, color=(60 * i, 90, 90)), f"c{i}.mp4", "video/mp4"
        )
        added = await studio.client.post(f"{BASE}/{pid}/clips", json={"asset_id": asset})
        clip_ids.append(added.json()["id"])
    a, b = clip_ids

    async def order() -> list[str]:
        return [c["id"] for c in (await studio.client.get(f"{BASE}/{pid}")).json()["clips"]]

    await page.goto(f"{studio.url}/video-studio?project={pid}")
    items = page.locator("#vs-timeline > li")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_have_attribute("data-clip", a)
    await expect(items.nth(0).locator(".vs-thumb img")).to_be_visible()  # the upload's poster
    assert await page.evaluate(UNLABELLED) == []

    await page.get_by_role("button", name="Select clip 1").click()  # its actions show below the track
    await page.get_by_role("button", name="Move clip 1 right").click()
    await expect(items.nth(0)).to_have_attribute("data-clip", b)
    assert await order() == [b, a]
    await page.get_by_role("button", name="Move clip 2 left").click()
    await expect(items.nth(0)).to_have_attribute("data-clip", a)
    assert await order() == [a, b]

    await page.get_by_role("button", name="Delete clip 1").click()
    await expect(items).to_have_count(1)
    await expect(items.nth(0)).to_have_attribute("data-clip", b)
    assert await order() == [b]
    await page.get_by_role("button", name="Undo delete").click()
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_have_attribute("data-clip", a)
    assert await order() == [a, b]

    # Keyboard: select with the arrows, Delete removes the selected clip.
    await page.get_by_role("button", name="Select clip 1").click()
    await expect(items.nth(0)).to_have_class("vs-clip selected")
    await expect(items.nth(0)).to_have_attribute("aria-current", "true")
    await page.keyboard.press("ArrowRight")
    await expect(items.nth(1)).to_have_class("vs-clip selected")
    await expect(items.nth(0)).not_to_have_attribute("aria-current", "true")
    await page.keyboard.press("Delete")
    await expect(items).to_have_count(1)
    assert await order() == [a]
    await page.get_by_role("button", name="Undo delete").click()
    await expect(items).to_have_count(2)

    # A trim is stored on the clip.
    await page.get_by_role("button", name="Select clip 2").click()
    await page.get_by_label("Trim in (s) of clip 2").fill("0.5")
    await page.get_by_label("Trim in (s) of clip 2").press("Tab")
    await expect(items.nth(1).locator(".vs-clip-head")).to_contain_text("1.5 s")
    clips = (await studio.client.get(f"{BASE}/{pid}")).json()["clips"]
    assert clips[1]["trimInS"] == 0.5

    await page.get_by_role("button", name="Export film").click()
    link = page.get_by_role("link", name="Download film")
    await expect(link).to_be_visible(timeout=15_000)
    href = await link.get_attribute("href")
    assert href is not None and href.startswith("/api/media/")
    film = await studio.client.get(href)
    assert film.status_code == 200 and film.headers["content-type"] == "video/mp4"
    await expect(page.locator("#vs-export-state")).to_have_text("complete")


async def test_a_failed_clip_is_retried_only_after_asking(
    page: Page, live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    studio = await live(env_for(sora), config=FAST)
    pid = (await studio.client.post(BASE, json={"name": "p"})).json()["id"]
    await studio.client.patch(f"{BASE}/{pid}", json={"model": "openai/sora-2", "prompt": "an owl"})
    sora.script(VideoReply(outcome="failed", error_message="The render farm melted."))
    await page.goto(f"{studio.url}/video-studio?project={pid}")
    await page.get_by_role("button", name="Generate").click()
    clip = page.locator("#vs-timeline > li").first
    panel = page.locator("#vs-clip-panel")  # the selected clip's details
    await expect(panel.locator(".vs-clip-error")).to_contain_text("The render farm melted.")
    await panel.get_by_role("button", name="Retry clip 1").click()
    dialog = page.locator("#vs-retry-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("billed")
    await dialog.get_by_role("button", name="Keep it as it is").click()
    await expect(dialog).to_be_hidden()
    assert sora.submissions == 1  # declining sends nothing
    await panel.get_by_role("button", name="Retry clip 1").click()
    await dialog.get_by_role("button", name="Submit again").click()
    await expect(clip.locator(".vs-state")).to_have_text("complete")
    await expect(clip.locator(".vs-thumb img")).to_be_visible()
    assert sora.submissions == 2


async def test_an_unusable_model_stays_selected_with_its_reason(page: Page, live: OpenLive) -> None:
    studio = await live(env_for(None), config=FAST)
    pid = (await studio.client.post(BASE, json={"name": "p"})).json()["id"]
    chosen = await studio.client.patch(f"{BASE}/{pid}", json={"model": "openai/sora-2", "prompt": "a fox"})
    assert chosen.status_code == 200, chosen.text
    await page.goto(f"{studio.url}/video-studio?project={pid}")
    await expect(page.get_by_label("Model", exact=True)).to_have_value("openai/sora-2")
    await expect(page.locator("#vs-model-info")).to_contain_text("OPENAI_API_KEY")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#vs-generate-error")).to_contain_text("cannot be used now")
    await expect(page.locator("#vs-timeline > li")).to_have_count(0)
