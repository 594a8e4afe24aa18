"""The Jobs page in the browser: a running video's progress moving live, the header's badge, cancel,
retry asked first (declining submits nothing; confirming submits once), the finished video playing
inline with its poster, the filters, and a failed job with the vendor's reason, through the real app
and the fake Sora server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, VideoReply
from tests.gateway.conftest import OpenLive
from tests.gateway.test_videos import FAST, KEY, env_for
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")


@pytest.fixture
def sora() -> Iterator[FakeOpenAIVideosServer]:
    with FakeOpenAIVideosServer(api_key=KEY) as server:
        yield server


async def test_jobs_page_follows_cancels_retries_after_asking_and_plays_the_result(
    page: Page, live: OpenLive, sora: FakeOpenAIVideosServer
) -> None:
    studio = await live(env_for(sora), config=FAST)
    sora.script(VideoReply(steps=10**6))  # stays in progress until cancelled
    made = await studio.client.post("/api/videos", json={"prompt": "a fox <b>in</b> snow", "model": "sora-2"})
    job_id = made.json()["id"]

    await page.goto(f"{studio.url}/jobs")
    await expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    card = page.locator(f'li[data-job="{job_id}"]')
    await expect(card.locator(".jb-title")).to_have_text("a fox <b>in</b> snow")  # text, never markup
    await expect(card.locator(".jb-state")).to_have_text("running")
    bar = card.get_by_role("progressbar", name=f"Progress of {job_id}")
    first = float(await bar.evaluate("b => b.value"))
    await expect(bar).not_to_have_attribute("value", str(first))  # it moves without a reload
    await expect(card.locator(".jb-percent")).to_contain_text(" %")
    await expect(card.locator(".jb-meta")).to_contain_text("Sora 2")
    await expect(card.locator(".jb-meta")).to_contain_text("about $")  # priced per second
    badge = page.locator("#jobs-badge")
    await expect(badge).to_have_text("1")
    await expect(badge).to_have_attribute("aria-label", "1 job running")
    assert await page.evaluate(UNLABELLED) == []
    await shot(page, "jobs-running")

    await card.get_by_role("button", name=f"Cancel {job_id}").click()
    await expect(card.locator(".jb-state")).to_have_text("cancelled")
    await expect(card.locator(".jb-error")).to_contain_text("the vendor stopped it")
    await expect(badge).to_be_hidden()

    # Retry asks first: declining sends nothing.
    await card.get_by_role("button", name=f"Retry {job_id}").click()
    dialog = page.locator("#jb-retry-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("to openai again: a second submission, which the vendor bills again")
    await dialog.get_by_role("button", name="Keep it as it is").click()
    await expect(dialog).to_be_hidden()
    assert sora.submissions == 1
    await card.get_by_role("button", name=f"Retry {job_id}").click()
    await dialog.get_by_role("button", name="Submit again").click()
    again = page.locator("#jb-list > li").first
    await expect(again).not_to_have_attribute("data-job", job_id)
    await expect(again.locator(".jb-state")).to_have_text("complete")
    video = again.locator("video")
    await expect(video).to_have_attribute("preload", "metadata")
    await expect(video).to_have_attribute("playsinline", "")
    await expect(video).to_have_attribute("poster", f"/api/media/{(await again_output(again))}/thumb")
    handle = await video.element_handle()
    await page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=handle)  # it plays
    assert sora.submissions == 2
    await expect(again.get_by_role("link", name="Download")).to_have_attribute(
        "download", await again_output(again)
    )
    await shot(page, "jobs-done")

    # A failed job shows the vendor's reason; the state filter narrows the list.
    sora.script(VideoReply(outcome="failed", error_message="The render farm melted."))
    failed = await studio.client.post("/api/videos", json={"prompt": "an owl", "model": "sora-2"})
    failed_card = page.locator(f'li[data-job="{failed.json()["id"]}"]')
    await expect(failed_card.locator(".jb-state")).to_have_text("failed")
    await expect(failed_card.locator(".jb-error")).to_contain_text("The render farm melted.")
    await page.get_by_label("State").select_option("complete")
    await expect(page.locator("#jb-list > li")).to_have_count(1)
    await expect(page.locator("#jb-total")).to_have_text("1 of 1 jobs")
    await page.get_by_label("State").select_option("")
    await expect(page.locator("#jb-list > li")).to_have_count(3)


async def again_output(card: Locator) -> str:
    src = await card.locator("video").get_attribute("src")
    assert src is not None and src.startswith("/api/media/")
    return src.removeprefix("/api/media/")


async def test_the_jobs_page_says_when_there_are_none(page: Page, live: OpenLive) -> None:
    studio = await live(env_for(None), config=FAST)
    await page.goto(f"{studio.url}/jobs")
    await expect(page.locator("#jb-empty")).to_be_visible()
    await expect(page.locator("#jb-empty")).to_contain_text("No jobs yet")
    await expect(page.locator("#jobs-badge")).to_be_hidden()
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
