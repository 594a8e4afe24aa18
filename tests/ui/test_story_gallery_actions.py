"""Story mode's gallery cards and its way in, in the browser: each card reads, downloads (with gateway
keys on, so the key must go along) and deletes after asking, the card leaving the grid and the count
without a reload; a delete that fails shows the studio's words. The header's Stories entry (one row at
desktop width) and `/stories`: straight to the only enabled tier, a list of the enabled ones, or how to
turn story mode on. Real app; stories are imported from the legacy fixture rather than played.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, expect

from mmstudio.config import StoriesConfig, StudioConfig, TierConfig
from tests.fakes.ollama_server import FakeOllamaServer
from tests.gateway.conftest import OpenLive, engines
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED
from tests.ui.test_story_pages import NO_OVERFLOW, console_errors

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_story_v1.json"
KEY = "story-gallery-gateway-key-0123456789"


async def imported(client: httpx.AsyncClient, title: str, headers: dict[str, str] | None = None) -> Any:
    """A story in the kids gallery, from the legacy fixture under another title."""
    data = json.loads(LEGACY.read_text())
    data["title"] = title
    answer = await client.post("/api/stories/kids/import", json=data, headers=headers or {})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def header_rows(page: Page) -> set[float]:
    """The distinct top edges of the header's items: one value when it fits on one row."""
    tops: list[float] = await page.evaluate(
        """() => [...document.querySelectorAll(
                ".topbar > .brand, .topbar > .nav > a, .topbar > #active-model, .topbar > .switcher,"
                + " .topbar > #theme-toggle")].map((n) => n.getBoundingClientRect())
             .map((r) => Math.round(r.top + r.height / 2))"""
    )
    return set(tops)


async def test_gallery_cards_download_and_delete_with_gateway_keys_on(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, tmp_path: Path
) -> None:
    studio = await live({**engines(ollama, None), "MMSTUDIO_API_KEYS": KEY})
    auth = {"Authorization": f"Bearer {KEY}"}
    errors = console_errors(page)
    kept = await imported(studio.client, "The Lighthouse Keeper's Cat", auth)
    doomed = await imported(studio.client, "The Paper Boat", auth)
    await page.add_init_script(f"localStorage.setItem('mmstudio-key', '{KEY}')")
    await page.goto(f"{studio.url}/kids/gallery")
    cards = page.locator(".st-card")
    await expect(cards).to_have_count(2)
    await expect(page.locator("#st-total")).to_have_text("2 stories")
    await expect(page.locator("#key-dialog")).not_to_be_visible()  # the stored key went along
    nav = page.get_by_role("navigation", name="Studio")
    await expect(nav.get_by_role("link", name="Stories")).to_have_attribute("aria-current", "page")

    card = page.locator(f'.st-card[data-story="{kept["id"]}"]')
    actions = card.get_by_role("group", name="Actions for The Lighthouse Keeper's Cat")
    await expect(actions.get_by_role("link", name="Read The Lighthouse Keeper's Cat")).to_have_attribute(
        "href", f"/kids/read/{kept['id']}"
    )
    await expect(actions.get_by_role("link", name="Continue")).to_have_attribute(
        "href", f"/kids/story/{kept['id']}"
    )
    assert await page.evaluate(UNLABELLED) == []

    # Download JSON: fetched with the key (a plain link would be refused) and saved from a Blob.
    export = f"/api/stories/kids/stories/{kept['id']}/export.json"
    assert (await studio.client.get(export)).status_code == 401
    async with page.expect_download() as downloading:
        await actions.get_by_role("button", name="Download JSON").click()
    download = await downloading.value
    assert download.suggested_filename == "the-lighthouse-keeper-s-cat.json"
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["title"] == "The Lighthouse Keeper's Cat" and exported["scenes"]
    async with page.expect_download() as downloading:
        await actions.get_by_role("button", name="Download web page").click()
    assert (await downloading.value).suggested_filename == "the-lighthouse-keeper-s-cat.html"
    await expect(actions.get_by_role("button", name="Download JSON")).to_have_text("Download JSON")

    # Delete asks first, keeping media by default; Cancel keeps the story.
    other = page.locator(f'.st-card[data-story="{doomed["id"]}"]')
    delete = other.get_by_role("button", name="Delete The Paper Boat")
    await delete.focus()
    await page.keyboard.press("Enter")  # reachable from the keyboard
    ask = page.get_by_role("dialog", name="Delete “The Paper Boat”?")
    await expect(ask).to_be_visible()
    also = ask.get_by_label("Also delete its pictures and videos that nothing else uses")
    await expect(also).not_to_be_checked()
    await ask.get_by_role("button", name="Cancel").click()
    await expect(ask).to_be_hidden()
    await expect(cards).to_have_count(2)
    await expect(delete).to_be_focused()

    # Confirmed (with its media): the card and the count go without a reload.
    await delete.click()
    await also.check()
    async with page.expect_request(lambda r: r.method == "DELETE") as deleting:
        await ask.get_by_role("button", name="Delete story").click()
    assert (await deleting.value).url.endswith(f"/api/stories/kids/stories/{doomed['id']}?media=delete")
    await expect(ask).to_be_hidden()
    await expect(other).to_have_count(0)
    await expect(cards).to_have_count(1)
    await expect(page.locator("#st-total")).to_have_text("1 story")
    await expect(page.locator("#st-empty")).to_be_hidden()
    await expect(page.locator("#st-announce")).to_have_text("The story was deleted.")
    listed = (await studio.client.get("/api/stories/kids/stories", headers=auth)).json()
    assert [s["id"] for s in listed["items"]] == [kept["id"]] and listed["total"] == 1

    # A delete the studio refuses (the story went meanwhile): its words in the dialog, the card stays.
    gone = await studio.client.delete(f"/api/stories/kids/stories/{kept['id']}", headers=auth)
    assert gone.status_code == 200
    await card.get_by_role("button", name="Delete The Lighthouse Keeper's Cat").click()
    ask = page.get_by_role("dialog", name="Delete “The Lighthouse Keeper's Cat”?")
    await ask.get_by_role("button", name="Delete story").click()
    await expect(ask.get_by_role("alert")).to_have_text("The story could not be deleted: No such story.")
    await expect(
        ask.get_by_label("Also delete its pictures and videos that nothing else uses")
    ).not_to_be_checked()
    await expect(cards).to_have_count(1)
    await expect(page.locator("#st-total")).to_have_text("1 story")
    await ask.get_by_role("button", name="Cancel").click()
    await expect(ask).to_be_hidden()

    # At phone width, and in the dark theme, the actions fit.
    await page.set_viewport_size({"width": 390, "height": 800})
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await page.evaluate(NO_OVERFLOW)
    box = await actions.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    await shot(page, "story-gallery-actions-narrow-dark")
    assert [e for e in errors if "404" not in e] == []
    assert len(errors) == 1  # the refused delete's own 404


async def test_the_stories_entry_goes_to_the_only_tier_and_keeps_the_header_on_one_row(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    await studio.studio.registry.set_active_model("ollama/llama3.2:latest")  # its name in the header too
    errors = console_errors(page)
    answer = await studio.client.get("/stories", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/kids/"
    for path in ("/models", "/kids/gallery"):
        await page.goto(f"{studio.url}{path}")
        stories = page.get_by_role("navigation", name="Studio").get_by_role("link", name="Stories")
        await expect(stories).to_be_visible()
        await expect(page.locator("#active-model .active-name")).to_have_text("llama3.2:latest")
        assert len(await header_rows(page)) == 1, path  # 1280 px wide: one row
    await expect(stories).to_have_attribute("aria-current", "page")
    await page.goto(f"{studio.url}/models")
    await expect(stories).not_to_have_attribute("aria-current", "page")
    await stories.click()
    await expect(page).to_have_url(f"{studio.url}/kids/")
    await expect(page.get_by_role("heading", name="Kids stories", level=1)).to_be_visible()
    await expect(stories).to_have_attribute("aria-current", "page")
    assert errors == []


def two_tiers() -> StudioConfig:
    base = StoriesConfig().tiers
    return StudioConfig(
        stories=StoriesConfig(
            tiers={
                **base,
                "teens": TierConfig(name="Teens"),
                "vault": TierConfig(name="Secret", enabled=False),
            }
        )
    )


async def test_stories_lists_the_enabled_tiers_only(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=two_tiers())
    errors = console_errors(page)
    await imported(studio.client, "The Paper Boat")
    await page.goto(f"{studio.url}/stories")
    await expect(page.get_by_role("heading", name="Stories", level=1)).to_be_visible()
    tiers = page.get_by_role("list", name="Story tiers")
    await expect(tiers.get_by_role("heading", level=2)).to_have_text(["Kids", "Teens"])
    await expect(tiers.get_by_role("link", name="Kids", exact=True)).to_have_attribute("href", "/kids/")
    await expect(tiers.get_by_role("link", name="Teens", exact=True)).to_have_attribute("href", "/teens/")
    await expect(page.locator('.st-tier-card[data-tier="kids"] .st-tier-count')).to_have_text("1 story")
    await expect(page.locator('.st-tier-card[data-tier="teens"] .st-tier-count')).to_have_text("0 stories")
    body = await page.content()
    for hint in ("nsfw", "Adults", "vault", "Secret"):
        assert hint not in body, hint
    nav = page.get_by_role("navigation", name="Studio")
    await expect(nav.get_by_role("link", name="Stories")).to_have_attribute("aria-current", "page")
    assert await page.evaluate(UNLABELLED) == []
    assert len(await header_rows(page)) == 1
    await page.set_viewport_size({"width": 390, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "story-tiers-narrow")
    await tiers.get_by_role("link", name="Teens", exact=True).click()
    await expect(page.get_by_role("heading", name="Teens stories", level=1)).to_be_visible()
    assert errors == []


async def test_stories_says_how_to_turn_story_mode_on(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    off = StudioConfig(stories=StoriesConfig(tiers={"kids": TierConfig(name="Kids", enabled=False)}))
    studio = await live(engines(ollama, None), config=off)
    errors = console_errors(page)
    answer = await page.goto(f"{studio.url}/stories")
    assert answer is not None and answer.status == 200
    await expect(page.get_by_role("heading", name="Story mode is off", level=2)).to_be_visible()
    await expect(page.locator("#st-off")).to_contain_text("stories.tiers.<name>.enabled: true")
    body = await page.content()
    assert "kids" not in body.lower()
    assert await page.evaluate(NO_OVERFLOW)
    assert errors == []
