"""The header on every page: the active model, its health and latency, the switcher, the theme."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import OpenLive, engines
from tests.ui.conftest import shot


async def test_the_header_shows_the_active_model_and_switching_persists(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await page.goto(f"{studio.url}/models")
    header = page.locator("#active-model")
    await expect(header.locator(".active-name")).to_have_text(re.compile(r"\S"))
    await expect(header.locator(".dot")).to_have_attribute("data-status", "healthy")
    await expect(header.locator(".latency")).to_have_text(re.compile(r"\d+(\.\d+)? ms"))

    await page.get_by_text("Switch model").click()
    menu = page.locator(".switcher-menu")
    groups = menu.locator(".switcher-label")
    await expect(groups.first).to_contain_text("local")  # local engines first
    target = menu.locator('[data-model="lmstudio/gemma-2-2b-it"]')
    await expect(target.locator(".dot")).to_have_class(re.compile("dot-healthy"))
    await target.click()
    await expect(header.locator(".active-name")).to_have_attribute("data-model", "lmstudio/gemma-2-2b-it")
    await expect(menu).to_be_hidden()
    await shot(page, "header-switcher")

    await page.reload()
    await expect(page.locator("#active-model .active-name")).to_have_attribute(
        "data-model", "lmstudio/gemma-2-2b-it"
    )
    assert studio.studio.registry.active_model == "lmstudio/gemma-2-2b-it"


async def test_the_health_dot_refreshes_every_30_seconds_without_a_reload(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    await studio.studio.registry.set_active_model("ollama/llama3.2:latest")
    await page.clock.install()
    await page.goto(f"{studio.url}/chat")
    dot = page.locator("#active-model .dot")
    await expect(dot).to_have_attribute("data-status", "healthy")
    ollama.stop()  # the engine goes away
    await studio.studio.registry.health.check_all()
    await page.clock.run_for(30_000)
    await expect(dot).to_have_attribute("data-status", "offline")
    await expect(page.locator("#active-model .latency")).to_have_text("offline")


async def test_dark_theme_persists_across_reloads(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    await page.goto(f"{studio.url}/models")
    html = page.locator("html")
    await expect(html).to_have_attribute("data-theme", "light")
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(html).to_have_attribute("data-theme", "dark")
    await page.reload()
    await expect(html).to_have_attribute("data-theme", "dark")
    await shot(page, "theme-dark-models")


async def test_with_no_model_every_page_points_to_onboarding(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    await page.goto(studio.url)
    assert page.url.endswith("/onboarding")
    await page.goto(f"{studio.url}/chat")
    banner = page.locator("#no-model-banner .banner")
    await expect(banner).to_contain_text("No model is set up yet")
    await expect(banner.get_by_role("link")).to_have_attribute("href", "/onboarding")
