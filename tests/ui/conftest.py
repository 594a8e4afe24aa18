"""Browser tests: Playwright drives Debian's Chromium (headless) against the real app on a loopback port.

`./scripts/test` installs the `chromium` package; Playwright's own browser download cannot work here.
Each test gets a fresh browser context at 1280x800; JavaScript errors on the page fail the test.
Screenshots go to `test-artifacts/screenshots/` (see `shot`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.gateway.conftest import engines, live, lmstudio, ollama  # noqa: F401 - fixtures for browser tests

# What a page shows after a job's worker, a stream or an engine moves can take longer than Playwright's
# 5 s while the other test processes (schemathesis's 90 s run among them) hold both cores. A failure
# only takes longer to say so.
expect.set_options(timeout=15_000)

CHROMIUM = os.environ.get("MMSTUDIO_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FLAGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once per test, before the browser starts
        pytest.fail(f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium package")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport={"width": 1280, "height": 800})
    made.set_default_timeout(10_000)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    assert not errors, f"JavaScript errors on the page: {errors}"


async def shot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
