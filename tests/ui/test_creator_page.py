"""Creator Studio in the browser: live progress, the fallback, the file tree with highlighted code,
copy, zip, history, errors, stop, phone width and dark theme, through the real app and fake engines.

"Visible while generating" is proven by gates, not timing: a fake holds the rest of its answer until
the test has seen the progress it expects; a page that only showed things at the end never opens it.
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from mmstudio.config import CodegenConfig, ModelConfig, RateLimit, Routing, StudioConfig
from tests.fakes.base import Reply
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.gateway.test_compare import HeldLMStudio, HeldOllama, event_gate
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED

GEMMA = "ollama/gemma2:2b"
CLOUD = "openai/gpt-4o"
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"

APP = """import { Counter } from "./components/Counter";

export default function App() {
  return <Counter start={0} />;
}
"""
# A string a careless page would run: it must show as text and never execute.
COUNTER = """import { useState } from "react";

const banner = "</code></pre><script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>";

export function Counter({ start }: { start: number }) {
  const [count, setCount] = useState(start);
  return <button onClick={() => setCount(count + 1)}>{count}</button>;
}
"""
FIRST = f"File: src/App.tsx\n```tsx\n{APP}```\n\n"
SECOND = f"File: src/components/Counter.tsx\n```tsx\n{COUNTER}```\n"


def config(**codegen: object) -> StudioConfig:
    return StudioConfig(
        models=(ModelConfig(id=GEMMA, name="My Gemma 2B"), ModelConfig(id=CLOUD, name="Cloud GPT-4o")),
        routing=Routing(retries=0),
        codegen=CodegenConfig(**codegen),  # type: ignore[arg-type]
    )


@pytest.fixture
def ollama() -> Iterator[HeldOllama]:
    with HeldOllama(models={"gemma2:2b": {"family": "gemma2", "parameter_size": "2.6B"}}) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[HeldLMStudio]:
    with HeldLMStudio(flavor="openai", models=["gpt-4o"]) as server:
        yield server


async def open_local(live: OpenLive, ollama: HeldOllama, **codegen: object) -> LiveStudio:
    studio = await live(engines(ollama, None), config=config(**codegen))
    answer = await studio.client.put("/api/models/active", json={"model": GEMMA})
    assert answer.status_code == 200, answer.text
    return studio


async def fill(
    page: Page, name: str, description: str, framework: str = "react", target: str = "component"
) -> None:
    await page.get_by_label("Project name").fill(name)
    await page.get_by_label("Description").fill(description)
    await page.get_by_label("Framework").select_option(framework)
    await page.get_by_label("Target type").select_option(target)


async def top_shot(page: Page, name: str) -> None:
    """A full-page screenshot from the top (the sticky top bar would float mid-page otherwise)."""
    await page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    await shot(page, name)


async def test_a_local_model_writes_two_files_shown_as_a_tree_with_copy_zip_and_history(
    page: Page, context: BrowserContext, live: OpenLive, ollama: HeldOllama
) -> None:
    studio = await open_local(live, ollama)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=studio.url)
    seen = threading.Event()
    ollama.script(Reply(chunks=[FIRST, SECOND], usage=(40, 120)))
    ollama.hold(SECOND, event_gate(seen))

    await page.goto(f"{studio.url}/creator-studio")
    await expect(page.get_by_role("heading", name="Creator Studio", level=1)).to_be_visible()
    await expect(page.locator(".nav a[aria-current=page]")).to_have_text("Creator")
    await expect(page.locator("#active-model .active-name")).to_have_text("My Gemma 2B")
    await expect(page.locator("#active-model .dot")).to_have_attribute("data-status", "healthy")
    model = page.get_by_role("combobox", name="Model optional")
    await expect(model.locator("option").first).to_have_text("Active model (My Gemma 2B)")
    await expect(model).to_have_value("")
    await expect(page.locator("#cr-history")).to_contain_text("No projects yet")
    await fill(page, "counter-app", "A counter button that counts clicks.")
    await expect(page.locator("#cr-target-hint")).to_contain_text("One reusable component")
    await page.get_by_role("button", name="Generate").click()

    # While the model is still writing: who is trying, the first file, the running counts, the raw text.
    progress = page.locator("#cr-progress")
    attempt = progress.locator(".cr-attempt")
    await expect(attempt).to_have_count(1)
    await expect(attempt).to_have_attribute("data-outcome", "trying")
    await expect(attempt.locator(".cr-attempt-name")).to_have_text("My Gemma 2B")
    await expect(attempt).to_contain_text("local")
    await expect(page.locator("#cr-status")).to_have_text(
        re.compile(r"^Trying My Gemma 2B \(local, up to \d+ s\)…$")
    )
    await expect(page.locator("#cr-state")).to_have_text("generating")
    await expect(page.locator("#cr-counts")).to_have_attribute("data-files", "1")
    await expect(page.locator("#cr-counts")).to_have_text(f"{len(FIRST)} characters · 1 file received")
    await expect(page.locator("#cr-raw")).to_be_hidden()  # folded until asked for
    await page.get_by_text("Model output").click()
    await expect(page.locator("#cr-raw")).to_have_text(FIRST)
    result = page.locator("#cr-result")
    await expect(result.locator(".cr-file-link")).to_have_text(["App.tsx"])
    await expect(result.locator(".cr-file:not([hidden]) code")).to_have_text(APP)
    await expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Generating…")).to_be_disabled()
    await top_shot(page, "creator-streaming")
    seen.set()

    toast = page.locator(".toast").filter(has_text="Generated with")
    await expect(toast).to_have_text(re.compile(r"^Generated with My Gemma 2B in \d+ ms$"))
    await expect(page.locator("#cr-state")).to_have_text("done")
    await expect(page.locator("#cr-progress-title")).to_have_text("Generated counter-app")
    await expect(attempt).to_have_attribute("data-outcome", "ok")
    await expect(page.locator("#cr-counts")).to_have_attribute("data-files", "2")
    await expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    await expect(page.get_by_role("button", name="Generate")).to_be_enabled()

    # The stored project, rendered by the server: a tree of folders and files, highlighted code.
    project = result.locator('.cr-project[data-rendered="true"]')
    await expect(project).to_have_attribute("data-status", "complete")
    await expect(project.locator("h2")).to_have_text("counter-app")
    await expect(project.locator(".cr-model-used")).to_have_text("My Gemma 2B")
    await expect(project.locator(".cr-dir-name")).to_have_text(["src", "components"])
    await expect(project.locator(".cr-file-link")).to_have_text(["Counter.tsx", "App.tsx"])
    shown = project.locator(".cr-file:not([hidden])")
    await expect(shown).to_have_count(1)
    await expect(shown).to_have_attribute("data-path", "src/App.tsx")
    await expect(shown.locator("code")).to_have_text(APP)
    assert await shown.locator("code span[class]").count() > 5  # Pygments' tokens
    await project.get_by_role("button", name="Counter.tsx", exact=True).click()
    await expect(shown).to_have_attribute("data-path", "src/components/Counter.tsx")
    await expect(shown.locator("code")).to_have_text(COUNTER)
    await expect(shown.locator("code .s, code .s2, code .s1").first).to_be_visible()
    assert await page.evaluate("window.__pwned === undefined && !document.querySelector('#cr-result img')")

    # Folders fold and unfold.
    components = project.locator("summary").filter(has_text="components")
    await components.click()
    await expect(project.get_by_role("button", name="Counter.tsx", exact=True)).to_be_hidden()
    await components.click()
    await expect(project.get_by_role("button", name="Counter.tsx", exact=True)).to_be_visible()

    # Copy gives the file exactly as written.
    await shown.get_by_role("button", name="Copy src/components/Counter.tsx").click()
    await expect(shown.locator(".cr-copy")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == COUNTER

    # The zip is fetched through the API helper (the gateway key would go along) and saved.
    async with page.expect_download() as download_info:
        await project.get_by_role("button", name="Download .zip").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".zip")
    data = Path(await download.path()).read_bytes()  # noqa: ASYNC240 - a small file the browser saved
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        contents = {
            name.split("/", 1)[1] if name.startswith("counter-app/") else name: archive.read(name).decode()
            for name in archive.namelist()
        }
    assert contents == {"src/App.tsx": APP, "src/components/Counter.tsx": COUNTER}

    item = page.locator("#cr-history .cr-history-item").first
    await expect(item).to_contain_text("counter-app")
    await expect(item.locator(".cr-h-what")).to_have_text("React · Component · 2 files")
    await expect(item.locator('[data-role="status"]')).to_have_text("complete")
    await expect(item.locator(".cr-h-model")).to_have_text("My Gemma 2B")
    await expect(item.locator(".cr-h-meta")).to_contain_text(re.compile(r"\d ms"))
    await expect(item).to_have_class(re.compile("is-current"))
    await top_shot(page, "creator-light")

    # After a reload the project opens from the history, by keyboard.
    await page.goto(f"{studio.url}/creator-studio")
    await expect(page.locator("#cr-result")).to_be_hidden()
    opener = page.get_by_role("button", name="Open counter-app")
    await opener.focus()
    await page.keyboard.press("Enter")
    reopened = page.locator('#cr-result .cr-project[data-rendered="true"]')
    await expect(reopened.locator("h2")).to_be_focused()
    await expect(reopened.locator(".cr-file:not([hidden])")).to_have_attribute("data-path", "src/App.tsx")
    await reopened.get_by_role("button", name="App.tsx", exact=True).focus()
    await page.keyboard.press("ArrowUp")
    await expect(reopened.get_by_role("button", name="Counter.tsx", exact=True)).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(reopened.locator(".cr-file:not([hidden])")).to_have_attribute(
        "data-path", "src/components/Counter.tsx"
    )
    assert "?project=" in page.url
    await page.reload()  # the address opens it too
    await expect(page.locator('#cr-result .cr-project[data-rendered="true"] h2')).to_have_text("counter-app")

    # Deleting asks first; "Cancel" keeps it.
    answers = [False, True]
    page.on("dialog", lambda dialog: dialog.accept() if answers.pop(0) else dialog.dismiss())
    delete = page.get_by_role("button", name="Delete counter-app")
    await delete.click()
    await expect(page.locator("#cr-history .cr-history-item")).to_have_count(1)
    await delete.click()
    await expect(page.locator("#cr-history")).to_contain_text("No projects yet")
    await expect(page.locator("#cr-result")).to_be_hidden()
    assert (await studio.studio.codegen.list_projects()).total == 0


async def test_a_failing_local_model_falls_back_to_the_cloud_and_the_page_shows_it(
    page: Page, live: OpenLive, ollama: HeldOllama, cloud: HeldLMStudio
) -> None:
    env = {**engines(ollama, None), "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{cloud.url}/v1"}
    studio = await live(env, config=config(fallback_chain=(CLOUD,)))
    await studio.studio.registry.set_active_model(GEMMA)
    ollama.script(Reply(status=500, error_body={"error": "model requires more system memory"}))
    seen = threading.Event()
    cloud.script(Reply(chunks=[FIRST, SECOND]))
    cloud.hold(SECOND, event_gate(seen))

    await page.add_init_script("localStorage.setItem('mmstudio-theme', 'dark')")
    await page.goto(f"{studio.url}/creator-studio")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await fill(page, "api-demo", "A counter app.", framework="react", target="page")
    await page.get_by_label("Description").press("Control+Enter")  # submits, like the button

    attempts = page.locator("#cr-progress .cr-attempt")
    await expect(attempts).to_have_count(2)
    failed, fallback = attempts.nth(0), attempts.nth(1)
    await expect(failed).to_have_attribute("data-outcome", "error")
    await expect(failed.locator(".cr-attempt-name")).to_have_text("My Gemma 2B")
    await expect(failed.locator('[data-role="error"]')).to_contain_text("model requires more system memory")
    await expect(fallback).to_have_attribute("data-outcome", "trying")
    await expect(fallback.locator(".cr-attempt-name")).to_have_text("Cloud GPT-4o")
    await expect(fallback).to_contain_text("cloud")
    await expect(page.locator("#cr-status")).to_contain_text("Falling back: trying Cloud GPT-4o (cloud")
    await expect(page.locator("#cr-plan")).to_have_text("Order: My Gemma 2B (local) → Cloud GPT-4o (cloud)")
    await expect(page.locator("#cr-result .cr-file-link")).to_have_text(["App.tsx"])
    await top_shot(page, "creator-fallback-dark")
    seen.set()

    toast = page.locator(".toast").filter(has_text="Generated with")
    await expect(toast).to_have_text(
        re.compile(r"^Generated with Cloud GPT-4o in \d+ ms \(after My Gemma 2B failed\)$")
    )
    await expect(fallback).to_have_attribute("data-outcome", "ok")
    project = page.locator('#cr-result .cr-project[data-rendered="true"]')
    await expect(project.locator(".cr-model-used")).to_have_text("Cloud GPT-4o")
    tried = project.locator(".cr-tried .cr-attempt")
    await expect(tried).to_have_count(2)
    await expect(tried.nth(0)).to_contain_text("model requires more system memory")
    await expect(tried.nth(1)).to_contain_text("answered")
    item = page.locator("#cr-history .cr-history-item").first
    await expect(item.locator(".cr-h-model")).to_have_text("Cloud GPT-4o")
    await expect(item.locator(".cr-h-what")).to_have_text("React · Page · 2 files")
    await top_shot(page, "creator-dark")


async def test_bad_input_is_stopped_by_the_form_then_by_the_server_and_no_model_points_to_onboarding(
    page: Page, live: OpenLive
) -> None:
    studio = await live(engines(None, None))
    await page.goto(f"{studio.url}/creator-studio")
    generate = page.get_by_role("button", name="Generate")
    name = page.get_by_label("Project name")
    # Every control has a label, and Tab walks the form in reading order.
    assert await page.evaluate(UNLABELLED) == []
    await name.focus()
    order = []
    for _ in range(5):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id"))
    assert order == ["cr-model", "cr-description", "cr-framework", "cr-target", "cr-generate"]

    # Required fields: the browser's own check, nothing is sent.
    await generate.click()
    await expect(name).to_be_focused()
    assert await name.evaluate("e => !e.validity.valid && e.validationMessage.length > 0")
    await name.fill("   ")
    await page.get_by_label("Description").fill("Something")
    await generate.click()
    assert await name.evaluate("e => e.validationMessage") == "Write something here, not only spaces."
    await expect(page.locator("#cr-progress")).to_be_hidden()

    # A value only the server can refuse (the form's list is bypassed): its 400 is shown in words.
    await name.fill("cobol-app")
    await page.evaluate(
        "() => { const s = document.getElementById('cr-framework');"
        " s.add(new Option('COBOL', 'cobol')); s.value = 'cobol'; }"
    )
    await generate.click()
    alert = page.locator("#cr-form-error")
    await expect(alert).to_contain_text("Unknown framework 'cobol'; allowed: react, vue, svelte")
    await expect(page.locator("#cr-progress")).to_be_hidden()

    # No model at all: what to do, and the link to do it.
    await page.get_by_label("Framework").select_option("python-cli")
    await generate.click()
    await expect(alert).to_contain_text("Register a model first")
    link = alert.get_by_role("link", name="Set up a model")
    await expect(link).to_have_attribute("href", "/onboarding")
    await expect(page.locator("#no-model-banner .banner")).to_be_visible()
    await top_shot(page, "creator-no-model")
    assert (await studio.studio.codegen.list_projects()).total == 0
    await link.click()
    await expect(page).to_have_url(re.compile(r"/onboarding$"))

    # An address naming a project that does not exist says so, and the page stays usable.
    unknown = "00000000-0000-0000-0000-000000000000"
    await page.goto(f"{studio.url}/creator-studio?project={unknown}")
    await expect(page.locator(".toast.error")).to_contain_text(
        f"No Creator Studio project with id '{unknown}'"
    )
    await expect(page.locator("#cr-result")).to_be_hidden()
    await expect(page).to_have_url(re.compile(r"/creator-studio$"))


async def test_when_every_model_fails_the_page_lists_each_attempt_and_then_the_rate_limit(
    page: Page, live: OpenLive, ollama: HeldOllama
) -> None:
    studio = await open_local(live, ollama, rate_limit=RateLimit(rpm=1))
    ollama.script(Reply(status=500, error_body={"error": "model requires more system memory"}))
    await page.goto(f"{studio.url}/creator-studio")
    await fill(page, "doomed", "Anything.", framework="fastapi", target="api")
    await page.get_by_role("button", name="Generate").click()
    box = page.locator("#cr-error")
    await expect(box).to_be_visible()
    await expect(box).to_contain_text("Generation failed:")
    await expect(box).to_contain_text("No cloud model to fall back to: set OPENAI_API_KEY")
    attempt = page.locator("#cr-attempts .cr-attempt")
    await expect(attempt).to_have_attribute("data-outcome", "error")
    await expect(attempt).to_contain_text("My Gemma 2B")
    await expect(attempt).to_contain_text("model requires more system memory")
    await expect(page.locator("#cr-state")).to_have_text("failed")
    await expect(page.locator("#cr-progress-title")).to_have_text("Could not generate doomed")
    await expect(page.locator(".toast.error")).to_have_text(
        "“doomed” could not be generated: see why under Progress."
    )
    await expect(page.locator("#cr-result")).to_be_hidden()  # no file came: nothing to browse
    await top_shot(page, "creator-failed")
    item = page.locator("#cr-history .cr-history-item").first
    await expect(item.locator('[data-role="status"]')).to_have_text("failed")
    await expect(item.locator(".cr-h-what")).to_have_text("FastAPI · API")
    await item.get_by_role("button", name="Open doomed").click()
    project = page.locator('#cr-result .cr-project[data-rendered="true"]')
    await expect(project).to_have_attribute("data-status", "failed")
    await expect(project.locator(".cr-project-error")).to_contain_text(
        "Generation failed: Ollama returned HTTP 500"
    )
    await expect(project.locator(".cr-tried .cr-attempt")).to_contain_text(
        "model requires more system memory"
    )
    await expect(project.get_by_role("button", name="Download .zip")).to_have_count(0)
    await expect(page.locator("#cr-progress")).to_be_hidden()

    # One generation a minute: the second is refused before anything starts, and says how long to wait.
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#cr-form-error")).to_contain_text(re.compile(r"Too many requests, wait \d+ s"))
    assert (await studio.studio.codegen.list_projects()).total == 1


async def test_stop_leaves_the_generation_running_and_it_lands_in_history(
    page: Page, live: OpenLive, ollama: HeldOllama
) -> None:
    studio = await open_local(live, ollama)
    release = threading.Event()
    ollama.script(Reply(chunks=[FIRST, SECOND]))
    ollama.hold(SECOND, event_gate(release))
    await page.goto(f"{studio.url}/creator-studio")
    await fill(page, "stopped-app", "Anything.")
    await page.get_by_label("Project name").press("Enter")  # Enter in a field submits
    await expect(page.locator("#cr-counts")).to_have_attribute("data-files", "1")
    item = page.locator("#cr-history .cr-history-item").first
    await expect(item.locator('[data-role="status"]')).to_have_text("generating")
    await page.keyboard.press("Escape")  # Esc stops listening, like the Stop button
    await expect(page.locator("#cr-state")).to_have_text("stopped listening")
    await expect(page.locator("#cr-status")).to_contain_text("it appears in History")
    await expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    release.set()
    # The studio finishes it without the page; the history says so when it is done.
    await expect(item.locator('[data-role="status"]')).to_have_text("complete")
    await expect(item.locator(".cr-h-what")).to_have_text("React · Component · 2 files")
    stored = await studio.studio.codegen.list_projects()
    assert stored.total == 1 and stored.items[0].status == "complete"


async def test_phone_width_and_dark_theme_do_not_overflow(
    page: Page, live: OpenLive, ollama: HeldOllama
) -> None:
    studio = await open_local(live, ollama)
    wide = "const x = " + '"' + "a very long line of generated code " * 12 + '";\n'
    path = "src/a-rather-long-folder-name/another-long-folder/AndAVeryLongComponentFileName.tsx"
    ollama.script(Reply(chunks=[FIRST, f"File: {path}\n```tsx\n{wide}```\n"]))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{studio.url}/creator-studio")
    await expect(page.locator("#cr-history")).to_contain_text("No projects yet")
    assert await page.evaluate(NO_OVERFLOW)
    await top_shot(page, "creator-phone-empty")
    await fill(page, "a-project-with-a-rather-long-name-that-should-wrap-nicely", "Long lines everywhere.")
    await page.get_by_role("button", name="Generate").click()
    project = page.locator('#cr-result .cr-project[data-rendered="true"]')
    await expect(project.locator(".cr-file-link")).to_have_count(2)
    await project.get_by_role("button", name="AndAVeryLongComponentFileName.tsx", exact=True).click()
    code = project.locator(".cr-file:not([hidden]) .cr-code")
    assert await code.evaluate("e => e.scrollWidth > e.clientWidth")  # the code scrolls in its own box
    assert await page.evaluate(NO_OVERFLOW)
    await top_shot(page, "creator-phone-light")
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.get_by_text("Model output").first.click()
    assert await page.evaluate(NO_OVERFLOW)
    await top_shot(page, "creator-phone-dark")
    await page.set_viewport_size({"width": 1280, "height": 800})
    assert await page.evaluate(NO_OVERFLOW)


async def test_with_gateway_keys_on_the_page_and_its_zip_carry_the_key(
    page: Page, live: OpenLive, ollama: HeldOllama
) -> None:
    key = "creator-gateway-key-0123456789"
    studio = await live({**engines(ollama, None), "MMSTUDIO_API_KEYS": key}, config=config())
    await studio.studio.registry.set_active_model(GEMMA)
    ollama.script(Reply(chunks=[FIRST, SECOND]))
    await page.add_init_script(f"localStorage.setItem('mmstudio-key', '{key}')")
    await page.goto(f"{studio.url}/creator-studio")
    await expect(page.locator("#active-model .active-name")).to_have_text("My Gemma 2B")
    # The stored key goes with the page's first requests too: no key dialog on load.
    await expect(page.locator("#key-dialog")).not_to_be_visible()
    await fill(page, "keyed", "A counter.")
    await page.get_by_role("button", name="Generate").click()
    project = page.locator('#cr-result .cr-project[data-rendered="true"]')
    await expect(project.locator(".cr-file-link")).to_have_count(2)
    await expect(page.locator("#cr-history .cr-history-item")).to_have_count(1)
    zip_url = await project.get_by_role("button", name="Download .zip").get_attribute("data-zip")
    assert zip_url and (await studio.client.get(zip_url)).status_code == 401  # a plain link would fail
    async with page.expect_download() as download_info:
        await project.get_by_role("button", name="Download .zip").click()
    download = await download_info.value
    data = Path(await download.path()).read_bytes()  # noqa: ASYNC240 - a small file the browser saved
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.namelist()) == 2
