"""Image Studio in the browser: live progress, the fallback, reference photos, the gallery and its
lightbox (recipe, reuse, delete), the no-model state, phone width and dark theme, through the real app
and the fake AUTOMATIC1111 and OpenAI images servers.

"Visible while generating" is proven by holding the A1111 fake: each progress poll then advances one
step, and the test releases it only after it has seen the steps move on the page.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from tests.fakes.a1111_server import A1111Reply, FakeA1111Server
from tests.fakes.images import make_image
from tests.fakes.openai_images_server import FakeOpenAIImagesServer
from tests.gateway.conftest import LiveStudio, OpenLive, engines
from tests.gateway.test_images import CHECKPOINT, KEY, a1111_model, env_for
from tests.ui.conftest import shot
from tests.ui.test_models_page import UNLABELLED

NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"
HOSTILE = "a lighthouse <img src=x onerror=window.__pwned=1> at dusk"


@pytest.fixture
def a1111() -> Iterator[FakeA1111Server]:
    with FakeA1111Server(models=[CHECKPOINT]) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeOpenAIImagesServer]:
    with FakeOpenAIImagesServer(api_key=KEY) as server:
        yield server


def prompt(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Prompt what to draw")


async def pick(page: Page, name: str) -> None:
    await page.locator("#im-picker-summary").click()
    await page.get_by_role("radio", name=re.compile("^" + re.escape(name))).check()
    await expect(page.locator("#im-models")).to_be_hidden()


async def top_shot(page: Page, name: str) -> None:
    await page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    await shot(page, name)


async def test_generate_shows_live_progress_then_the_gallery_lightbox_reuse_and_delete(
    page: Page, live: OpenLive, a1111: FakeA1111Server
) -> None:
    studio = await live(env_for(a1111, None))
    model = await a1111_model(studio)
    name = model.removeprefix("automatic1111/")
    await page.goto(f"{studio.url}/images")
    await expect(page.get_by_role("heading", name="Image Studio", level=1)).to_be_visible()
    await expect(page.locator(".nav a[aria-current=page]")).to_have_text("Images")
    await expect(page.locator("#im-picker-current")).to_have_text(f"Automatic ({name} first)")
    await expect(page.locator("#im-empty")).to_have_text(
        "No images yet. Write a prompt above and press Generate."
    )
    assert await page.evaluate(UNLABELLED) == []

    # The picker: local engines first, a health dot each, cloud models without a key disabled.
    await page.locator("#im-picker-summary").click()
    groups = page.locator("#im-models .im-group-label")
    await expect(groups.first).to_have_text("AUTOMATIC1111 · local")
    local = page.locator(f'#im-models .im-model[data-model="{model}"]')
    await expect(local.locator(".dot")).to_have_attribute("data-status", "healthy")
    grok = page.locator('#im-models .im-model[data-model="xai/grok-imagine-image"]')
    await expect(grok.locator(".im-model-why")).to_have_text("set XAI_API_KEY")
    await expect(grok.locator("input")).to_be_disabled()
    await page.get_by_role("radio", name=re.compile("^" + re.escape(name))).check()
    await expect(page.locator("#im-picker-current")).to_have_text(f"{name} · AUTOMATIC1111")
    # What this engine takes: steps, a negative prompt and a seed; no quality; up to 8 at once.
    await expect(page.get_by_label("Steps")).to_be_visible()
    await expect(page.get_by_label("Negative prompt")).to_be_visible()
    await expect(page.locator("#im-quality-field")).to_be_hidden()
    await expect(page.get_by_label("Count")).to_have_attribute("max", "8")
    await expect(page.locator("#im-size option")).to_contain_text(["auto", "512x512"])

    await prompt(page).fill(HOSTILE)
    await page.get_by_label("Negative prompt").fill("fog")
    await page.get_by_label("Steps").fill("4")
    await page.get_by_label("Size").select_option("768x512")
    a1111.hold()
    await page.get_by_role("button", name="Generate").click()

    attempt = page.locator("#im-attempts .im-attempt")
    await expect(attempt.locator(".im-attempt-name")).to_have_text(name)
    await expect(attempt).to_have_attribute("data-outcome", "trying")
    await expect(page.locator("#im-status")).to_have_text(f"Trying {name} (local)…")
    percent = page.locator("#im-percent")
    await expect(percent).to_have_text(re.compile(r"^\d+% · step 1 of 4$"))
    first = int(await page.locator("#im-bar").get_attribute("data-percent") or 0)
    await expect(percent).to_have_text(re.compile(r"^\d+% · step 2 of 4$"))
    assert int(await page.locator("#im-bar").get_attribute("data-percent") or 0) > first
    await expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Generating…")).to_be_disabled()
    await top_shot(page, "images-progress")
    a1111.release()

    toast = page.locator(".toast").filter(has_text="Made with")
    await expect(toast).to_have_text(re.compile(rf"^Made with {re.escape(name)} in \d+(\.\d)? s$"))
    await expect(attempt).to_have_attribute("data-outcome", "ok")
    await expect(page.locator("#im-seed-used")).to_have_text("Seed used: 1234567890 keep it")
    cards = page.locator("#im-cards .im-card")
    await expect(cards).to_have_count(1)
    await expect(cards.locator(".im-card-model")).to_have_text(name)
    await expect(cards.locator(".im-card-prompt")).to_have_text(HOSTILE)
    await expect(cards.locator("img")).to_have_attribute("loading", "lazy")
    await expect(page.locator("#im-empty")).to_be_hidden()
    (sent,) = [json.loads(r.body) for r in a1111.requests if r.path.endswith("txt2img")]
    assert (sent["steps"], sent["negative_prompt"], sent["width"], sent["height"]) == (4, "fog", 768, 512)

    # The lightbox: the full image and the whole recipe.
    await cards.locator(".im-open").click()
    box = page.locator("#im-lightbox")
    await expect(box).to_be_visible()
    await expect(box.locator("#im-lb-prompt")).to_have_text(HOSTILE)
    recipe = box.locator("#im-recipe")
    for words in ("Model requested", model, "Provider", "automatic1111", "fog", "768\u00d7512", "1234567890"):
        await expect(recipe).to_contain_text(words)
    await expect(recipe.locator("dt", has_text="Steps").locator("+ dd")).to_have_text("4")
    await expect(box.locator("#im-lb-attempts .im-attempt")).to_contain_text("made it")
    image_id = await cards.get_attribute("data-id")
    await expect(box.get_by_role("link", name="Download")).to_have_attribute("href", f"/api/media/{image_id}")
    await expect(box.locator("#im-lb-img")).to_have_js_property("complete", True)
    assert await box.locator("#im-lb-img").evaluate("i => i.naturalWidth") == 768
    assert await page.evaluate("window.__pwned === undefined && !document.querySelector('img[src=x]')")
    await shot(page, "images-lightbox", full_page=False)

    # Reuse settings fills the form from the image's recipe.
    await box.get_by_role("button", name="Close").click()
    await prompt(page).fill("something else")
    await page.get_by_label("Steps").fill("")
    await page.get_by_label("Negative prompt").fill("")
    await cards.locator(".im-open").click()
    await box.get_by_role("button", name="Reuse settings").click()
    await expect(box).to_be_hidden()
    await expect(prompt(page)).to_have_value(HOSTILE)
    await expect(page.get_by_label("Steps")).to_have_value("4")
    await expect(page.get_by_label("Negative prompt")).to_have_value("fog")
    await expect(page.get_by_label("Seed")).to_have_value("1234567890")
    await expect(page.get_by_label("Size")).to_have_value("768x512")
    await expect(page.locator("#im-picker-current")).to_have_text(f"{name} · AUTOMATIC1111")

    # Delete asks first: Cancel keeps the image, Delete removes it.
    await cards.locator(".im-open").click()
    await box.get_by_role("button", name="Delete").click()
    confirm = page.locator("#im-confirm")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    await expect(box).to_be_visible()
    await box.get_by_role("button", name="Delete").click()
    await confirm.get_by_role("button", name="Delete image").click()
    await expect(box).to_be_hidden()
    await expect(cards).to_have_count(0)
    await expect(page.locator("#im-empty")).to_be_visible()
    await expect(page.locator(".toast").filter(has_text="Image deleted.")).to_be_visible()
    assert (await studio.client.get("/api/images")).json()["total"] == 0


async def test_the_fallback_is_named_in_the_toast_and_the_models_page_shows_the_engine(
    page: Page, live: OpenLive, a1111: FakeA1111Server, cloud: FakeOpenAIImagesServer
) -> None:
    studio = await live(env_for(a1111, cloud))
    model = await a1111_model(studio)
    name = model.removeprefix("automatic1111/")
    # A probe at start-up can time out on a loaded machine, which would leave the engine offline (its
    # model unusable) until the next round: probe again now, so the page sees the engine as it is.
    states = await studio.studio.registry.health.check_all()
    assert states["automatic1111"].status == "healthy", states["automatic1111"]
    a1111.script(*[A1111Reply(status=500)] * 5)
    await page.add_init_script("localStorage.setItem('mmstudio-theme', 'dark')")
    await page.goto(f"{studio.url}/images")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await pick(page, name)
    await prompt(page).fill("a red fox in snow")
    await prompt(page).press("Control+Enter")

    toast = page.locator(".toast").filter(has_text="Made with")
    await expect(toast).to_have_text(
        re.compile(rf"^Made with GPT Image [\w. ]+ in \d+(\.\d)? s after {re.escape(name)} failed$")
    )
    attempts = page.locator("#im-attempts .im-attempt")
    failed = attempts.first
    await expect(failed).to_have_attribute("data-outcome", "error")
    await expect(failed.locator(".im-attempt-name")).to_have_text(name)
    await expect(failed.locator('[data-role="error"]')).to_contain_text("CUDA out of memory")
    await expect(attempts.last).to_have_attribute("data-outcome", "ok")
    await expect(attempts.last).to_contain_text("cloud")
    card = page.locator("#im-cards .im-card")
    await expect(card.locator(".im-card-model")).to_have_text(re.compile(r"^GPT Image"))
    await card.locator(".im-open").click()
    tried = page.locator("#im-lb-attempts .im-attempt")
    await expect(tried.first).to_have_attribute("data-outcome", "error")
    await expect(tried.last).to_have_attribute("data-outcome", "ok")
    recipe = page.locator("#im-recipe")
    await expect(recipe.locator("dt", has_text="Model requested").locator("+ dd")).to_have_text(model)
    await expect(recipe.locator("dt", has_text="Model used").locator("+ dd")).to_have_text(
        re.compile(r"^GPT Image [\w. ]+ \(openai/gpt-image-[\w.-]+\)$")
    )
    await top_shot(page, "images-fallback-dark")

    # The models page lists the image engine like a chat engine, with its health.
    await page.goto(f"{studio.url}/models")
    engine = page.locator("details.group").filter(has=page.locator(".group-name", has_text="AUTOMATIC1111"))
    await expect(engine.locator("summary .dot")).to_have_attribute("data-status", "healthy")
    row = engine.locator(f'tr[data-model="{model}"]')
    await expect(row.locator(".modality")).to_have_text("image")
    await expect(row.locator(".health .dot")).to_have_attribute("data-status", "healthy")


async def test_reference_photos_upload_by_picker_and_drop_and_go_with_the_request(
    page: Page, live: OpenLive, a1111: FakeA1111Server
) -> None:
    studio = await live(env_for(a1111, None))
    model = await a1111_model(studio)
    await page.goto(f"{studio.url}/images")
    await pick(page, model.removeprefix("automatic1111/"))
    await expect(page.locator("#im-refs-hint")).to_have_text("optional, up to 1")

    # A file that is not an image: the server's 415 message, and no chip.
    refused = await studio.client.post("/api/media", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert refused.status_code == 415
    await page.locator("#im-file").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
    )
    error = page.locator("#im-form-error")
    await expect(error).to_contain_text(refused.json()["message"])
    await expect(page.locator("#im-refs .im-ref")).to_have_count(0)

    # Dropped onto the zone.
    png = base64.b64encode(make_image(48, 48)).decode()
    transfer = await page.evaluate_handle(
        """(b64) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
           const data = new DataTransfer();
           data.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
           return data; }""",
        png,
    )
    await page.dispatch_event("#im-drop", "drop", {"dataTransfer": transfer})
    chips = page.locator("#im-refs .im-ref")
    await expect(chips).to_have_count(1)
    await expect(chips.locator(".im-ref-name")).to_have_text("dropped.png")
    await expect(error).to_be_hidden()
    await chips.get_by_role("button", name="Remove dropped.png").click()
    await expect(chips).to_have_count(0)

    # Chosen with the file picker; the request carries it (img2img with the photo).
    await page.locator("#im-file").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": make_image(64, 64)}]
    )
    await expect(chips.locator(".im-ref-name")).to_have_text("photo.png")
    await expect(chips.locator("img")).to_have_js_property("complete", True)
    ref_id = await chips.get_attribute("data-id")
    await prompt(page).fill("the same, at night")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator(".toast").filter(has_text="Made with")).to_be_visible()
    assert [r.path for r in a1111.requests if r.path.endswith("2img")] == ["/sdapi/v1/img2img"]
    listed = (await studio.client.get("/api/images")).json()["items"]
    shown = (await studio.client.get(f"/api/images/{listed[0]['id']}")).json()
    assert shown["recipe"]["references"] == [ref_id]

    # "Use as reference" from the gallery replaces nothing: the image joins the chips.
    await page.locator("#im-cards .im-open").first.click()
    await page.get_by_role("button", name="Use as reference").click()
    await expect(chips).to_have_count(2)
    await expect(chips.last).to_have_attribute("data-id", listed[0]["id"])
    await expect(page.locator("#im-lightbox")).to_be_hidden()

    # Stop ends a generation that is still running: the page says so and is ready again.
    a1111.hold()
    await chips.first.get_by_role("button").click()
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#im-percent")).to_have_text(re.compile(r"step 1 of"))
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.locator("#im-state")).to_have_text("stopped")
    await expect(page.locator("#im-attempts .im-attempt").last).to_have_attribute("data-outcome", "stopped")
    await expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    a1111.release()


async def test_with_no_image_model_the_page_points_to_onboarding(page: Page, live: OpenLive) -> None:
    studio = await live(engines(None, None))
    await page.goto(f"{studio.url}/images")
    empty = page.locator("#im-no-model")
    await expect(empty).to_be_visible()
    await expect(empty.get_by_role("link", name="Set up an image model")).to_have_attribute(
        "href", "/onboarding"
    )
    await expect(page.locator("#im-picker-current")).to_have_text("Automatic (no image model is ready)")
    await expect(page.locator("#im-empty")).to_be_visible()
    await prompt(page).fill("a lighthouse")
    await page.get_by_role("button", name="Generate").click()
    box = page.locator("#im-error")
    await expect(box).to_contain_text("Generation failed: Add an image model")
    await expect(box.get_by_role("link", name="Set up an image model")).to_have_attribute(
        "href", "/onboarding"
    )
    await expect(page.locator("#im-state")).to_have_text("failed")
    await top_shot(page, "images-no-model")


async def make_images(studio: LiveStudio, model: str, prompt: str, count: int) -> None:
    while count > 0:
        n = min(8, count)
        made = await studio.client.post("/api/images", json={"prompt": prompt, "model": model, "n": n})
        assert made.status_code == 200, made.text
        count -= n


async def test_gallery_pages_as_it_scrolls_searches_and_fits_a_phone_in_the_dark(
    page: Page, live: OpenLive, a1111: FakeA1111Server
) -> None:
    studio = await live(env_for(a1111, None))
    model = await a1111_model(studio)
    await make_images(studio, model, "a lighthouse at dusk", 3)
    await make_images(studio, model, "a very long prompt " + "with many words " * 30, 42)
    await page.set_viewport_size({"width": 375, "height": 740})
    await page.add_init_script("localStorage.setItem('mmstudio-theme', 'dark')")
    await page.goto(f"{studio.url}/images")
    cards = page.locator("#im-cards .im-card")
    await expect(page.locator("#im-total")).to_have_text("· 45 images")
    await expect(cards).to_have_count(40)  # one page of 40
    assert await page.evaluate(NO_OVERFLOW)
    await top_shot(page, "images-phone-dark")
    await cards.last.scroll_into_view_if_needed()
    await expect(cards).to_have_count(45)  # the next page, on reaching the end
    ids = await cards.evaluate_all("(all) => all.map((c) => c.dataset.id)")
    assert len(set(ids)) == 45

    await page.get_by_role("searchbox", name="Search prompts").fill("lighthouse")
    await expect(cards).to_have_count(3)
    await expect(page.locator("#im-total")).to_have_text("· 3 images")
    await page.get_by_role("searchbox", name="Search prompts").fill("submarine")
    await expect(page.locator("#im-empty")).to_have_text("No images match “submarine”.")
    await page.get_by_role("searchbox", name="Search prompts").fill("")
    await expect(cards).to_have_count(40)

    await page.locator("#im-picker-summary").click()
    assert await page.evaluate(NO_OVERFLOW)
    await page.locator("#im-picker-summary").click()
    await cards.first.locator(".im-open").click()
    box = page.locator("#im-lightbox")
    await expect(box).to_be_visible()
    assert await box.evaluate("d => d.scrollWidth <= d.clientWidth + 1")
    assert await page.evaluate(NO_OVERFLOW)
    await shot(page, "images-phone-lightbox", full_page=False)
    await page.keyboard.press("Escape")
    await expect(box).to_be_hidden()


async def test_with_gateway_keys_thumbnails_and_the_full_image_carry_the_key(
    page: Page, live: OpenLive, a1111: FakeA1111Server
) -> None:
    gateway = "images-gateway-key-0123456789"
    studio = await live({**env_for(a1111, None), "MMSTUDIO_API_KEYS": gateway})
    auth = {"Authorization": f"Bearer {gateway}"}
    models = (await studio.client.get("/api/images/models", headers=auth)).json()["models"]
    model = next(m["id"] for m in models if m["provider"] == "automatic1111")
    made = await studio.client.post("/api/images", json={"prompt": "keyed", "model": model}, headers=auth)
    assert made.status_code == 200, made.text
    thumb = made.json()["images"][0]["thumbUrl"]
    assert (await studio.client.get(thumb)).status_code == 401  # a plain <img src> would be refused
    await page.add_init_script(f"localStorage.setItem('mmstudio-key', '{gateway}')")
    await page.goto(f"{studio.url}/images")
    card = page.locator("#im-cards .im-card img")
    await expect(card).to_have_attribute("src", re.compile(r"^blob:"))
    await expect(card).to_have_js_property("complete", True)
    assert await card.evaluate("i => i.naturalWidth") > 0
    await page.locator("#im-cards .im-open").click()
    full = page.locator("#im-lb-img")
    await expect(full).to_have_attribute("src", re.compile(r"^blob:"))
    await expect(full).to_have_js_property("complete", True)
    assert await full.evaluate("i => i.naturalWidth") == 512
    await expect(page.locator("#key-dialog")).not_to_be_visible()
