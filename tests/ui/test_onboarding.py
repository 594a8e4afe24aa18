"""Onboarding: connect Ollama, LM Studio or another server at an address, name a model, make it active."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.fakes.base import closed_port
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import OpenLive, engines
from tests.ui.conftest import shot
from tests.ui.test_models_page import NO_OVERFLOW, UNLABELLED

LATENCY = re.compile(r"Connected in \d[\d,.]* ms · serves \d+ models?")


async def choose(page: Page, platform: str) -> None:
    await page.get_by_role("radio", name=platform, exact=True).check()


async def test_onboarding_a_new_ollama_end_to_end(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    with FakeOllamaServer() as other:
        await page.goto(f"{studio.url}/onboarding")
        await choose(page, "Ollama")
        address = page.get_by_label("Server address")
        await expect(address).to_have_value("http://127.0.0.1:11434")  # the usual port
        await expect(page.get_by_label("API key")).to_be_hidden()  # Ollama takes none
        await address.fill(other.url)

        await page.get_by_role("button", name="Test connection").click()
        result = page.locator("#connection-result")
        await expect(result.locator(".ok-box")).to_have_text(LATENCY)

        await page.get_by_role("button", name="Detect models").click()
        options = page.locator("#model-options input[name=model]")
        await expect(options).to_have_count(2)
        await page.get_by_role("radio", name="gemma3:4b").check()
        await page.get_by_label("Name", exact=True).fill("My Gemma")
        await shot(page, "onboarding-ollama-ready")
        await page.get_by_role("button", name="Save and use this model").click()

        done = page.locator("#done")
        await expect(done).to_be_visible()
        await expect(done.locator("h2")).to_contain_text("My Gemma is ready")
        await expect(done).to_be_focused()
        await expect(done.get_by_role("link", name="Start chatting")).to_have_attribute("href", "/chat")
        await expect(done.get_by_role("link", name="See all models")).to_have_attribute("href", "/models")
        await expect(page.locator("#active-model .active-name")).to_have_text("My Gemma")
        await expect(page.locator("#active-model .dot")).to_have_attribute("data-status", "healthy")

        registry = studio.studio.registry
        model_id = registry.active_model
        assert model_id is not None and model_id.endswith("/gemma3:4b")
        assert [e.base_url for e in registry.registered_endpoints()] == [other.url]

        await done.get_by_role("link", name="See all models").click()
        row = page.locator(f'tr[data-model="{model_id}"]')
        await expect(row.locator(".model-name")).to_have_text("My Gemma")
        await expect(row.locator(".active-badge")).to_be_visible()
        await expect(page.locator("#endpoint-list")).to_contain_text(other.url)


async def test_onboarding_lm_studio_with_an_api_key_end_to_end(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    with FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it"], api_key="lm-secret") as other:
        await page.goto(f"{studio.url}/onboarding")
        lm = page.get_by_role("radio", name="LM Studio", exact=True)
        await expect(lm).to_be_checked()  # the first choice
        address = page.get_by_label("Server address")
        await expect(address).to_have_value("http://127.0.0.1:1234/v1")
        await address.fill(f"{other.url}/v1")

        # Without the key the server says no, and the page says so in words.
        await page.get_by_role("button", name="Test connection").click()
        failure = page.locator("#connection-result .error-box")
        await expect(failure).to_contain_text("rejected the API key (HTTP 401)")
        await expect(failure).to_contain_text("Check the API key")

        await page.get_by_label("API key").fill("lm-secret")
        await page.get_by_role("button", name="Test connection").click()
        await expect(page.locator("#connection-result .ok-box")).to_have_text(LATENCY)
        await page.get_by_role("button", name="Detect models").click()
        only = page.get_by_role("radio", name="gemma-2-2b-it")
        await expect(only).to_be_checked()  # the only model is chosen already
        await page.get_by_label("Name", exact=True).fill("My Gemma 2B")
        await page.get_by_role("button", name="Save and use this model").click()

        await expect(page.locator("#done h2")).to_contain_text("My Gemma 2B is ready")
        await expect(page.locator("#active-model .active-name")).to_have_text("My Gemma 2B")
        endpoint = studio.studio.registry.registered_endpoints()[0]
        assert endpoint.platform == "lmstudio" and endpoint.api_key == "lm-secret"

        await page.goto(f"{studio.url}/models")
        row = page.locator("tr.is-active")
        await expect(row.locator(".model-name")).to_have_text("My Gemma 2B")
        await expect(row.locator(".health .dot")).to_have_attribute("data-status", "healthy")
        await expect(page.locator("#active-model .active-name")).to_have_text("My Gemma 2B")


async def test_enter_in_the_address_lists_the_models_and_another_server_name_is_kept(
    page: Page, live: OpenLive
) -> None:
    studio = await live(engines(None, None))
    with FakeOpenAIServer(flavor="llamacpp", models=["qwen2.5-coder-7b", "phi-4"]) as other:
        await page.goto(f"{studio.url}/onboarding")
        await choose(page, "Other OpenAI-compatible server")
        address = page.get_by_label("Server address")
        await expect(address).to_have_value("http://127.0.0.1:8000/v1")
        await address.fill(f"{other.url}/v1")
        await address.press("Enter")
        await expect(page.locator("#model-options input[name=model]")).to_have_count(2)
        await page.get_by_role("radio", name="phi-4").check()
        await page.get_by_text("More options").click()
        await page.get_by_label("Server name").fill("Lab box")
        await page.get_by_role("button", name="Save and use this model").click()
        await expect(page.locator("#done-id")).to_have_text("lab-box/phi-4")
        assert studio.studio.registry.active_model == "lab-box/phi-4"

        # Add another: the form comes back empty.
        await page.get_by_role("button", name="Add another model").click()
        await expect(page.locator("#onboarding-form")).to_be_visible()
        await expect(page.get_by_role("radio", name="LM Studio", exact=True)).to_be_focused()
        await expect(page.get_by_label("Server address")).to_have_value("http://127.0.0.1:1234/v1")
        await expect(page.locator("#model-options input")).to_have_count(0)


async def test_a_failing_connection_says_why_and_what_to_do(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    await page.goto(f"{studio.url}/onboarding")
    await choose(page, "Ollama")
    address = page.get_by_label("Server address")
    refused = f"http://127.0.0.1:{closed_port()}"
    await address.fill(refused)
    await page.get_by_role("button", name="Test connection").click()
    failure = page.locator("#connection-result .error-box")
    await expect(failure).to_have_attribute("role", "alert")
    await expect(failure).to_contain_text("Could not connect to")
    await expect(failure).to_contain_text(f"Ollama at {refused}: connection refused or unreachable")
    await expect(failure.locator(".next-step")).to_contain_text("Start the Ollama app")
    await expect(failure).to_have_attribute("data-cause", "connection_refused")
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, "onboarding-failure")

    # The wrong kind of server: an LM Studio where Ollama was chosen.
    with FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it"]) as lm:
        await address.fill(f"{lm.url}/v1")
        await page.get_by_role("button", name="Detect models").click()
        await expect(failure).to_contain_text("it is not an Ollama server")
        await expect(page.locator("#model-options input")).to_have_count(0)

    # A typo the API refuses: shown in words, with an example.
    await address.fill("localhost:11434")
    await page.get_by_role("button", name="Test connection").click()
    await expect(failure).to_contain_text("must start with http:// or https://")
    await expect(failure.locator(".next-step")).to_contain_text("http://127.0.0.1:11434")

    # Saving with no model chosen lists the models first; nothing is saved on a failure.
    await address.fill(refused)
    await page.get_by_role("button", name="Save and use this model").click()
    await expect(failure).to_contain_text("connection refused")
    assert studio.studio.registry.registered_endpoints() == []


async def test_a_cloud_provider_with_a_key_can_be_chosen_and_one_without_says_what_to_set(
    page: Page, live: OpenLive
) -> None:
    with FakeOpenAIServer(flavor="openai", models=["gpt-4o"]) as cloud:
        env = {**engines(None, None), "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{cloud.url}/v1"}
        studio = await live(env)
        await page.goto(f"{studio.url}/onboarding")
        anthropic = page.get_by_role("radio", name="Anthropic", exact=True)
        await expect(anthropic).to_be_disabled()
        await expect(page.locator("#platform-hint-anthropic")).to_have_text(
            re.compile(r"Set\s+ANTHROPIC_API_KEY\s+and restart mmstudio")
        )
        await choose(page, "OpenAI")
        await expect(page.get_by_label("Server address")).to_be_hidden()
        model = page.get_by_label("Model", exact=True)
        await expect(model).to_be_visible()
        await model.select_option("openai/gpt-4o")
        await expect(page.locator("#cloud-model-hint")).to_contain_text("OPENAI_API_KEY")
        await page.get_by_role("button", name="Use this model").click()
        await expect(page.locator("#done-id")).to_have_text("openai/gpt-4o")
        await expect(page.locator("#active-model .active-name")).to_have_attribute(
            "data-model", "openai/gpt-4o"
        )
        assert studio.studio.registry.active_model == "openai/gpt-4o"
        assert studio.studio.registry.registered_endpoints() == []


async def test_keyboard_only_onboarding(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    with FakeOllamaServer(models={"llama3.2:latest": {}}) as other:
        await page.goto(f"{studio.url}/onboarding")
        lm = page.get_by_role("radio", name="LM Studio", exact=True)
        await expect(lm).to_be_checked()
        await lm.focus()
        await page.keyboard.press("ArrowDown")  # radios move with the arrow keys
        await expect(page.get_by_role("radio", name="Ollama", exact=True)).to_be_checked()
        await page.keyboard.press("Tab")
        address = page.get_by_label("Server address")
        await expect(address).to_be_focused()
        await page.keyboard.press("Control+a")
        await page.keyboard.type(other.url)
        await page.keyboard.press("Enter")  # lists the models
        await expect(page.get_by_role("radio", name="llama3.2:latest")).to_be_checked()
        await page.get_by_label("Name", exact=True).focus()
        await page.keyboard.type("Keyboard Llama")
        await page.keyboard.press("Enter")  # saves
        await expect(page.locator("#done h2")).to_contain_text("Keyboard Llama is ready")
        assert await page.evaluate(UNLABELLED) == []


async def test_onboarding_at_desktop_and_phone_width_in_both_themes(page: Page, live: OpenLive) -> None:
    with (
        FakeOpenAIServer(flavor="lmstudio", models=["gemma-2-2b-it", "qwen2.5-7b-instruct"]) as other,
        FakeOpenAIServer(flavor="openai", models=["gpt-4o"]) as cloud,
    ):
        env = {**engines(None, None), "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{cloud.url}/v1"}
        studio = await live(env)
        await page.goto(f"{studio.url}/onboarding")
        await page.get_by_label("Server address").fill(f"{other.url}/v1")
        await page.get_by_role("button", name="Detect models").click()
        await expect(page.locator("#model-options input")).to_have_count(2)
        await page.get_by_label("Name", exact=True).fill("My Gemma 2B")
        assert await page.evaluate(UNLABELLED) == []
        await page.evaluate("window.scrollTo(0, 0)")
        await shot(page, "onboarding-light")
        await page.get_by_role("button", name="Switch to dark theme").click()
        await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        await shot(page, "onboarding-dark")

        await page.set_viewport_size({"width": 390, "height": 844})
        assert await page.evaluate(NO_OVERFLOW)
        await page.evaluate("window.scrollTo(0, 0)")
        await shot(page, "onboarding-phone-dark")
        await page.get_by_role("button", name="Switch to light theme").click()
        await page.get_by_role("button", name="Save and use this model").click()
        await expect(page.locator("#done")).to_be_visible()
        await expect(page.locator("#active-model .active-name")).to_have_text("My Gemma 2B")
        assert await page.evaluate(NO_OVERFLOW)
        await shot(page, "onboarding-phone-done-light")

        await page.get_by_role("button", name="Add another model").click()
        await page.evaluate("window.scrollTo(0, 0)")
        assert await page.evaluate(NO_OVERFLOW)
        await shot(page, "onboarding-phone-light", full_page=True)


async def test_onboarding_an_image_engine_leaves_the_active_model_alone(page: Page, live: OpenLive) -> None:
    from tests.fakes.a1111_server import FakeA1111Server

    studio = await live(engines(None, None))
    with FakeA1111Server(models=["sdxl_base_1.0.safetensors"]) as a1111:
        await page.goto(f"{studio.url}/onboarding")
        await choose(page, "AUTOMATIC1111 / Forge (images)")
        address = page.get_by_label("Server address")
        await expect(address).to_have_value("http://127.0.0.1:7860")
        await address.fill(a1111.url)
        await page.get_by_role("button", name="Detect models").click()
        await expect(page.locator("#model-options input[name=model]")).to_have_count(1)
        await page.locator("#model-options input[name=model]").check()
        await page.get_by_label("Name", exact=True).fill("My SDXL")
        await page.get_by_role("button", name="Save this image model").click()
        done = page.locator("#done")
        await expect(done.locator("h2")).to_contain_text("My SDXL is ready")
        await expect(done.locator("#done-images")).to_be_visible()
        await expect(done.locator("#done-chat")).to_be_hidden()
        await expect(done.get_by_role("link", name="Make an image")).to_have_attribute("href", "/images")
        assert studio.studio.registry.active_model is None
        models = (await studio.client.get("/api/images/models")).json()["models"]
        assert any(m["name"] == "My SDXL" and m["usable"] for m in models)
