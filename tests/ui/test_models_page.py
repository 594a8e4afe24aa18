"""The models dashboard: models by endpoint with badges, health and usage; detect, make active, remove."""

from __future__ import annotations

import re

from playwright.async_api import Dialog, Page, expect

from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import OpenLive, engines
from tests.ui.conftest import shot

NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter((e) => e.offsetParent !== null)
    .filter((e) => !e.labels.length && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
    .map((e) => e.outerHTML)"""


async def test_the_dashboard_shows_every_model_with_badges_health_and_usage(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    ollama.models["llama3.2:latest"]["context_length"] = 131072
    studio = await live(engines(ollama, lmstudio))
    registry = studio.studio.registry
    await registry.health.check_all()
    await registry.record_session("ollama/llama3.2:latest")
    await registry.record_session("ollama/llama3.2:latest")
    await page.goto(f"{studio.url}/models")

    groups = page.locator("details.group")
    await expect(groups.first).to_have_attribute("data-kind", "local")  # local engines first
    kinds = await groups.evaluate_all("(all) => all.map((g) => g.dataset.kind)")
    assert kinds == sorted(kinds, key=lambda k: k != "local"), kinds

    llama = page.locator('tr[data-model="ollama/llama3.2:latest"]')
    await expect(llama.locator(".model-name")).to_have_text("llama3.2:latest")
    await expect(llama.locator(".caps")).to_contain_text("tools")
    await expect(llama.locator(".caps")).to_contain_text("streaming")
    await expect(llama.locator(".caps")).to_contain_text("128k context")
    await expect(llama.locator(".health .dot")).to_have_attribute("data-status", "healthy")
    await expect(llama.locator(".health .latency")).to_have_text(re.compile(r"\d+(\.\d+)? ms"))
    await expect(llama.locator(".sessions")).to_have_text("2")
    await expect(llama.locator(".last-used")).to_have_text("just now")
    unused = page.locator('tr[data-model="lmstudio/gemma-2-2b-it"]')
    await expect(unused.locator(".sessions")).to_have_text("0")
    await expect(unused.locator(".last-used")).to_have_text("never")

    # Cloud providers without a key are folded and say which variable enables them.
    openai = page.locator('details.group[data-endpoint="cloud:openai"]')
    await expect(openai).not_to_have_attribute("open", "")
    await expect(openai.locator(".group-head")).to_contain_text("Set OPENAI_API_KEY to enable")
    await openai.locator(".group-head").click()
    gpt = openai.locator('tr[data-model="openai/gpt-4o"]')
    await expect(gpt.locator(".health")).to_have_text("set OPENAI_API_KEY")
    await expect(gpt.locator(".price")).to_contain_text("per 1M tokens")
    await expect(gpt.locator("button.make-active")).to_have_count(0)
    await openai.locator(".group-head").click()

    assert await page.evaluate(UNLABELLED) == []
    await shot(page, "models-light", full_page=False)
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await shot(page, "models-dark", full_page=False)


async def test_filters_narrow_the_list(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await page.goto(f"{studio.url}/models")
    await expect(page.locator('tr[data-model="ollama/gemma3:4b"]')).to_be_visible()

    await page.get_by_label("Where").select_option("cloud")
    await expect(page.locator('details.group[data-kind="local"]')).to_have_count(0)
    await expect(page.locator('details.group[data-endpoint="cloud:openai"]')).to_have_attribute("open", "")

    await page.get_by_label("Where").select_option("local")
    await page.get_by_label("Search").fill("gemma")
    rows = page.locator("tr[data-model]")
    await expect(rows).to_have_count(2)
    await expect(page.locator('tr[data-model="ollama/gemma3:4b"]')).to_be_visible()
    await expect(page.locator('tr[data-model="lmstudio/gemma-2-2b-it"]')).to_be_visible()

    await page.get_by_label("Search").fill("nothing-like-this")
    await expect(page.locator("#model-list")).to_contain_text("No models match these filters.")


async def test_detect_shows_a_busy_state_then_the_new_models(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await page.goto(f"{studio.url}/models")
    await expect(page.locator('tr[data-model="lmstudio/gemma-2-2b-it"]')).to_be_visible()
    await expect(page.locator('tr[data-model="lmstudio/qwen2.5-7b-instruct"]')).to_have_count(0)

    lmstudio.models.append("qwen2.5-7b-instruct")  # loaded in LM Studio after start-up
    lmstudio.models_reply = Reply(delay=1.0)  # slow enough to see the busy state
    detect = page.locator("#detect-models")
    await detect.click()
    await expect(detect).to_be_disabled()
    await expect(detect).to_contain_text("Detecting…")
    await expect(detect.locator(".spinner")).to_be_visible()

    await expect(detect).to_be_enabled()
    await expect(detect).to_contain_text("Detect models")
    result = page.locator("#detect-result")
    await expect(result.locator('li[data-endpoint="lmstudio"]')).to_contain_text("2 models")
    await expect(result.locator('li[data-endpoint="ollama"]')).to_contain_text("llama3.2:latest")
    await expect(page.locator('tr[data-model="lmstudio/qwen2.5-7b-instruct"]')).to_be_visible()
    await shot(page, "models-detected", full_page=False)

    await result.get_by_role("button", name="Hide the detection results").click()
    await expect(result).to_be_empty()


async def test_detect_says_which_engine_is_not_answering(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    await page.goto(f"{studio.url}/models")
    ollama_group = page.locator('details.group[data-endpoint="ollama"]')
    await expect(ollama_group).to_contain_text("Ollama is not answering")
    await expect(ollama_group).to_contain_text("press Detect models")
    await page.locator("#detect-models").click()
    failed = page.locator('#detect-result li[data-endpoint="ollama"]')
    await expect(failed).to_have_class(re.compile("failed"))
    await expect(failed).to_contain_text(re.compile("connect|refused|reach", re.IGNORECASE))
    await expect(page.locator("#endpoint-list")).to_contain_text("No endpoints registered yet")


async def test_make_active_updates_the_list_and_the_header(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await studio.studio.registry.set_active_model("ollama/gemma3:4b")
    await page.goto(f"{studio.url}/models")
    await expect(page.locator('tr[data-model="ollama/gemma3:4b"] .active-badge')).to_be_visible()
    row = page.locator('tr[data-model="lmstudio/gemma-2-2b-it"]')
    await row.get_by_role("button", name="Make gemma-2-2b-it active").click()
    await expect(row.locator(".active-badge")).to_have_text("Active")
    await expect(row).to_have_class(re.compile("is-active"))
    await expect(page.locator("#active-model .active-name")).to_have_attribute(
        "data-model", "lmstudio/gemma-2-2b-it"
    )
    await expect(page.locator(".toast.ok")).to_contain_text("gemma-2-2b-it is now the active model")
    assert studio.studio.registry.active_model == "lmstudio/gemma-2-2b-it"
    # Only one model is active; embedding or image models have no button.
    await expect(page.locator(".active-badge")).to_have_count(1)


async def test_remove_an_endpoint_after_confirming(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None))
    with FakeOllamaServer() as other:
        created = await studio.client.post(
            "/api/models/endpoints",
            json={
                "platform": "ollama",
                "base_url": other.url,
                "name": "gpu-box",
                "models": [{"model": "gemma3:4b", "name": "Box Gemma"}],
            },
        )
        assert created.status_code == 201, created.text
        await studio.studio.registry.set_active_model("gpu-box/gemma3:4b")
        await page.goto(f"{studio.url}/models")
        endpoint_row = page.locator("#endpoint-list tr[data-endpoint]")
        await expect(endpoint_row).to_have_count(1)
        await expect(endpoint_row).to_contain_text("gpu-box")
        await expect(endpoint_row).to_contain_text("Box Gemma")
        await expect(endpoint_row).to_contain_text(other.url)
        await expect(page.locator('tr[data-model="gpu-box/gemma3:4b"] .active-badge')).to_be_visible()
        await expect(page.locator("#active-model .active-name")).to_have_text("Box Gemma")

        await shot(page, "models-registered-endpoint")
        answers: list[bool] = [False, True]
        messages: list[str] = []

        async def answer(dialog: Dialog) -> None:
            messages.append(dialog.message)
            await (dialog.accept() if answers.pop(0) else dialog.dismiss())

        page.on("dialog", answer)
        remove = endpoint_row.get_by_role("button", name="Remove gpu-box")
        await remove.click()  # cancelled: nothing happens
        await expect(endpoint_row).to_have_count(1)
        assert len(studio.studio.registry.registered_endpoints()) == 1

        await remove.click()
        await expect(page.locator("#endpoint-list tr[data-endpoint]")).to_have_count(0)
        await expect(page.locator("#endpoint-list")).to_contain_text("No endpoints registered yet")
        await expect(page.locator('tr[data-model="gpu-box/gemma3:4b"]')).to_have_count(0)
        await expect(page.locator(".toast.ok")).to_contain_text("was removed")
        # The active model went with it: the header falls back to another model.
        await expect(page.locator("#active-model .active-name")).not_to_have_text("Box Gemma")
        assert "gpu-box" in messages[0] and "nothing is deleted on the server" in messages[0]
        assert studio.studio.registry.registered_endpoints() == []


async def test_phone_width_has_no_horizontal_overflow(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{studio.url}/models")
    await expect(page.locator('tr[data-model="ollama/llama3.2:latest"]')).to_be_visible()
    await page.locator('details.group[data-endpoint="cloud:openai"] > summary').click()
    await expect(page.locator('tr[data-model="openai/gpt-4o"]')).to_be_visible()
    assert await page.evaluate(NO_OVERFLOW)
    await page.locator('details.group[data-endpoint="cloud:openai"] > summary').click()
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, "models-phone-light", full_page=False)
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "models-phone-dark", full_page=False)
