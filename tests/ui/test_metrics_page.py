"""The Metrics page: charts and a per-model table drawn from requests recorded through the live studio."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from mmstudio.config import Routing, StudioConfig
from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.ui.conftest import shot

LLAMA = "ollama/llama3.2:latest"
GEMMA = "lmstudio/gemma-2-2b-it"
HI = [{"role": "user", "content": "Hi"}]
# The fallback chain names gemma; no retries, so one scripted failure is one failed attempt.
CONFIG = StudioConfig(fallback_chain=(GEMMA,), routing=Routing(retries=0))

# Each chart's datasets as {label: [values per bucket]}.
DATASETS = """(name) => Object.fromEntries(
  window.mmCharts[name].data.datasets.map((d) => [d.label, d.data])
)"""

# Elements reaching past the right edge, for a failure message that says what overflows.
WIDER_THAN_THE_SCREEN = """() => Array.from(document.querySelectorAll("body *"))
  .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5
       || (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible"))
  .filter((e) => !e.parentElement.closest(".table-scroll, .nav"))
  .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + e.className
       + " right=" + Math.round(e.getBoundingClientRect().right))
  .slice(0, 12)"""


async def chat(studio: LiveStudio, model: str, *, fallbacks: bool = True, expect_status: int = 200) -> None:
    body = {"model": model, "messages": HI, "fallbacks": fallbacks}
    response = await studio.client.post("/v1/chat/completions", json=body)
    assert response.status_code == expect_status, response.text


async def record_traffic(studio: LiveStudio, ollama: FakeOllamaServer) -> None:
    """Three answers from llama, one from gemma, one fallback from llama to gemma, two failures."""
    for _ in range(3):
        await chat(studio, LLAMA)
    response = await studio.client.post("/api/chat", json={"messages": HI, "modelId": GEMMA})
    assert response.status_code == 200, response.text
    ollama.script(Reply(status=503))
    await chat(studio, LLAMA)  # answered by gemma
    ollama.script(Reply(status=500), Reply(status=500))
    await chat(studio, LLAMA, fallbacks=False, expect_status=502)
    await chat(studio, LLAMA, fallbacks=False, expect_status=502)
    await studio.studio.metrics.flush()


def row(page: Page, model: str) -> Any:
    return page.locator(f'#metrics-table tbody tr[data-model="{model}"]')


async def datasets(page: Page, chart: str) -> dict[str, list[Any]]:
    result: dict[str, list[Any]] = await page.evaluate(DATASETS, chart)
    return result


async def test_charts_and_table_show_the_recorded_requests(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio), config=CONFIG)
    await record_traffic(studio, ollama)
    await page.goto(f"{studio.url}/metrics-dashboard?range=1h")
    metrics = page.locator("#metrics-page")
    await expect(metrics).to_have_attribute("data-state", "ready")
    await expect(page.get_by_label("Time range")).to_have_value("1h")
    await expect(page.get_by_label("Bucket size")).to_have_value("1m")

    # Every chart is a canvas drawn by Chart.js from the recorded requests.
    await expect(page.locator(".chart-card canvas")).to_have_count(5)
    requests = await datasets(page, "requests")
    assert {label: sum(values) for label, values in requests.items()} == {
        LLAMA: 3,
        GEMMA: 2,
        "No model answered": 2,
    }
    labels = await page.evaluate("window.mmCharts.requests.data.labels")
    assert len(labels) in (60, 61) and all(re.fullmatch(r"\d\d:\d\d", label) for label in labels)
    errors = await datasets(page, "errors")
    assert {label: sum(values) for label, values in errors.items()} == {"No model answered": 2}
    fallbacks = await datasets(page, "fallbacks")
    assert {label: sum(values) for label, values in fallbacks.items()} == {GEMMA: 1}
    latency = await datasets(page, "latency")
    assert set(latency) == {f"{LLAMA} p50", f"{LLAMA} p95", f"{GEMMA} p50", f"{GEMMA} p95"}
    assert any(v is not None and v > 0 for v in latency[f"{LLAMA} p95"])
    assert set(await datasets(page, "tps")) == {LLAMA, GEMMA}
    await expect(page.locator('[data-chart="errors"] .chart-note')).to_be_hidden()

    # The table: one row per model that answered, and one for the requests no model answered.
    await expect(page.locator("#metrics-table tbody tr")).to_have_count(3)
    llama = row(page, LLAMA)
    await expect(llama.locator('[data-col="requests"]')).to_have_text("3")
    await expect(llama.locator('[data-col="errors"]')).to_have_text("0")
    await expect(llama.locator('[data-col="p95"]')).to_have_text(re.compile(r"\d ms$"))
    await expect(llama.locator('[data-col="cost"]')).to_have_text("$0")  # local models are free
    gemma = row(page, GEMMA)
    await expect(gemma.locator('[data-col="requests"]')).to_have_text("2")
    await expect(gemma.locator('[data-col="fallbacks"]')).to_have_text("1")
    await expect(gemma.locator('[data-col="tokens-out"]')).to_have_text("14")
    nobody = row(page, "")
    await expect(nobody.locator("th")).to_have_text("No model answered")
    await expect(nobody.locator('[data-col="error-rate"]')).to_have_text("100%")
    await expect(page.locator("#metrics-table tfoot [data-col='requests']")).to_have_text("7")
    await expect(page.locator('[data-tile="requests"]')).to_have_text("7")
    await expect(page.locator('[data-tile="error-rate"]')).to_have_text("29%")
    await expect(page.locator('[data-tile="fallbacks"]')).to_have_text("1")
    await shot(page, "metrics-light")

    # Counted for the model asked for, the failures and the fallback show against llama; the errors
    # chart offers that view, since failures that no model answered show under no model.
    hint = page.locator("#errors-hint")
    await expect(hint).to_be_visible()
    await hint.get_by_role("button", name="Count by the model asked for").click()
    await expect(metrics).to_have_attribute("data-loads", "2")
    await expect(page.get_by_label("Count each request for")).to_have_value("requested")
    await expect(hint).to_be_hidden()
    await expect(page.locator("#metrics-table tbody tr")).to_have_count(2)
    llama = row(page, LLAMA)
    await expect(llama.locator('[data-col="requests"]')).to_have_text("6")
    await expect(llama.locator('[data-col="errors"]')).to_have_text("2")
    await expect(llama.locator('[data-col="error-rate"]')).to_have_text("33%")
    await expect(llama.locator('[data-col="fallbacks"]')).to_have_text("1")
    assert {k: sum(v) for k, v in (await datasets(page, "errors")).items()} == {LLAMA: 2}
    assert {k: sum(v) for k, v in (await datasets(page, "fallbacks")).items()} == {LLAMA: 1}
    assert "by=requested" in page.url

    # A longer range picks a bucket that fits it.
    await page.get_by_label("Time range").select_option("7d")
    await expect(page.get_by_label("Bucket size")).to_have_value("6h")
    await expect(metrics).to_have_attribute("data-loads", "3")
    assert len(await page.evaluate("window.mmCharts.requests.data.labels")) in (28, 29)
    assert "range=7d" in page.url and "bucket=6h" in page.url


async def test_switching_the_theme_recolours_the_charts(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio), config=CONFIG)
    await record_traffic(studio, ollama)
    await page.goto(f"{studio.url}/metrics-dashboard")
    await expect(page.locator("#metrics-page")).to_have_attribute("data-state", "ready")
    colours = """() => {
      const c = window.mmCharts.requests;
      return {
        theme: c.$theme,
        bar: c.data.datasets[0].backgroundColor,
        ticks: c.options.scales.y.ticks.color,
        legend: c.options.plugins.legend.labels.color,
        latency: window.mmCharts.latency.data.datasets[0].borderColor,
      };
    }"""
    light = await page.evaluate(colours)
    assert light["theme"] == "light"
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = await page.evaluate(colours)
    assert dark["theme"] == "dark"
    for key in ("bar", "ticks", "legend", "latency"):
        assert dark[key] != light[key], key
    # Dark text on the dark panel would be unreadable: the legend takes the theme's light text colour.
    assert dark["legend"] == await page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--text').trim()"
    )
    await shot(page, "metrics-dark")


async def test_at_phone_width_nothing_overflows_sideways(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio), config=CONFIG)
    await record_traffic(studio, ollama)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{studio.url}/metrics-dashboard")
    await expect(page.locator("#metrics-page")).to_have_attribute("data-state", "ready")
    widths = await page.evaluate(
        "({page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,"
        " chart: document.querySelector('#chart-latency').getBoundingClientRect().width})"
    )
    assert widths["page"] <= widths["view"], await page.evaluate(WIDER_THAN_THE_SCREEN)
    assert 300 <= widths["chart"] <= widths["view"]  # the charts fill the column, no wider
    await expect(page.get_by_label("Time range")).to_be_visible()
    await shot(page, "metrics-phone")
    await page.get_by_role("button", name="Switch to dark theme").click()
    await shot(page, "metrics-phone-dark")


async def test_with_no_requests_the_page_says_how_to_make_some(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    await page.goto(f"{studio.url}/metrics-dashboard")
    await expect(page.locator("#metrics-page")).to_have_attribute("data-state", "empty")
    empty = page.locator("#metrics-empty")
    await expect(empty.get_by_role("heading")).to_have_text("No requests recorded yet")
    await expect(empty).to_contain_text("Send a chat message or call /v1/chat/completions")
    await expect(empty.get_by_role("link", name="Open Chat")).to_have_attribute("href", "/chat")
    await expect(page.locator("#metrics-body")).to_be_hidden()
    await empty.get_by_text("Call the OpenAI-compatible API").click()
    await expect(page.locator("#metrics-curl")).to_contain_text(f"{studio.url}/v1/chat/completions")
    await shot(page, "metrics-empty")


async def test_auto_refresh_shows_new_requests_without_a_reload(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    await page.clock.install()
    await page.goto(f"{studio.url}/metrics-dashboard")
    metrics = page.locator("#metrics-page")
    await expect(metrics).to_have_attribute("data-state", "empty")
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads
    await chat(studio, LLAMA)
    await page.clock.run_for(30_000)
    await expect(metrics).to_have_attribute("data-state", "ready")
    await expect(row(page, LLAMA).locator('[data-col="requests"]')).to_have_text("1")
    await chat(studio, LLAMA)
    await page.clock.run_for(30_000)
    await expect(row(page, LLAMA).locator('[data-col="requests"]')).to_have_text("2")
    assert await page.evaluate("window.sameDocument") is True  # no reload

    # Turned off, it stays put.
    await page.get_by_label("Auto-refresh every 30 s").uncheck()
    loads = await metrics.get_attribute("data-loads")
    await chat(studio, LLAMA)
    await page.clock.run_for(60_000)
    await expect(metrics).to_have_attribute("data-loads", loads or "")
    await page.get_by_role("button", name="Refresh now").click()
    await expect(row(page, LLAMA).locator('[data-col="requests"]')).to_have_text("3")


async def test_a_failing_api_is_explained_and_retried(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    await chat(studio, LLAMA)
    failures = {"left": 1}

    async def fail_once(route: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            await route.fulfill(
                status=503, json={"error": "unavailable", "message": "The metrics database is not answering."}
            )
        else:
            await route.continue_()

    await page.route("**/api/metrics?*", fail_once)
    await page.goto(f"{studio.url}/metrics-dashboard")
    error = page.locator("#metrics-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("The metrics database is not answering.")
    await expect(error).to_contain_text("mmstudio serve")
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("#metrics-page")).to_have_attribute("data-state", "ready")
    await expect(error).to_be_hidden()
    await expect(row(page, LLAMA).locator('[data-col="requests"]')).to_have_text("1")
