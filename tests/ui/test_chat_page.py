"""Chat Studio in the browser: streaming, stop, branches, model selection, reload mid-answer, tools."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from mmstudio.config import ChatConfig, StudioConfig
from tests.fakes.base import Reply
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import OpenLive, engines
from tests.ui.conftest import shot

LLAMA = "ollama/llama3.2:latest"
GEMMA = "lmstudio/gemma-2-2b-it"
FIRST_WORDS = StudioConfig(chat=ChatConfig(titles="first_message"))


async def test_a_message_streams_and_the_answer_shows_markdown_model_latency_and_speed(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    await studio.studio.registry.set_active_model(LLAMA)
    answer = "Here is **bold** and code:\n\n```python\nprint('hi')\n```\n"
    ollama.script(Reply(chunks=[answer[:10], answer[10:30], answer[30:]], usage=(12, 40)))
    await page.goto(f"{studio.url}/chat")
    await page.get_by_label("Message").fill("Show me some code")
    await page.get_by_label("Message").press("Enter")
    last = page.locator("#messages > .msg-assistant").last
    await expect(last).to_have_attribute("data-status", "complete")
    await expect(last.locator(".md strong")).to_have_text("bold")
    await expect(last.locator(".code .highlight")).to_contain_text("print")
    await expect(last.locator(".model-used")).to_have_text("llama3.2:latest")
    await expect(last.locator(".latency-ms")).to_have_text(re.compile(r"ms$"))
    await expect(last.locator(".tps")).to_have_text(re.compile(r"tok/s$"))
    user = page.locator("#messages > .msg-user").last
    await expect(user).to_contain_text("Show me some code")
    assert re.search(r"/chat/c/[\w-]+$", page.url)
    await expect(page.locator(".conversation-item.current")).to_contain_text("Show me some code")
    await shot(page, "chat-answer")


def words(n: int) -> list[str]:
    return [f"w{i} " for i in range(n)]


async def send(page: Page, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_label("Message").press("Enter")


async def answered(page: Page, text: str) -> None:
    """The last answer is finished (stored, rendered) and says `text`."""
    last = page.locator("#messages > .msg-assistant").last
    await expect(last).to_have_attribute("data-status", "complete")
    await expect(last.locator(".model-used")).not_to_be_empty()
    await expect(last).to_contain_text(text)
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()


async def test_stop_keeps_the_partial_answer_marked_stopped(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(chunks=words(300), chunk_delay=0.03))
    await page.goto(f"{studio.url}/chat")
    await send(page, "Count for me")
    answer = page.locator("#messages > .msg-assistant").last
    await expect(answer.locator(".streaming")).to_contain_text("w3 ")
    stop = page.get_by_role("button", name="Stop")
    await expect(stop).to_be_visible()
    await stop.click()
    await expect(answer).to_have_attribute("data-status", "interrupted")
    await expect(answer.locator(".msg-note")).to_contain_text("Stopped")
    await expect(answer.locator(".md").first).to_contain_text("w0 w1 w2 w3")
    await expect(stop).to_be_hidden()
    stored = (
        await studio.client.get(f"/api/chat/ui/messages/{await answer.get_attribute('data-id')}")
    ).json()
    assert stored["message"]["status"] == "interrupted" and "w299" not in stored["message"]["text"]


async def test_escape_stops_and_shift_enter_adds_a_line(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(chunks=words(300), chunk_delay=0.03))
    await page.goto(f"{studio.url}/chat")
    box = page.get_by_label("Message")
    await box.fill("line one")
    await box.press("Shift+Enter")
    await box.type("line two")
    assert await box.input_value() == "line one\nline two"
    await box.press("Enter")
    answer = page.locator("#messages > .msg-assistant").last
    await expect(answer.locator(".streaming")).to_contain_text("w2 ")
    await page.keyboard.press("Escape")
    await expect(answer).to_have_attribute("data-status", "interrupted")
    await expect(page.locator("#messages > .msg-user").last).to_contain_text("line one\nline two")


async def test_edit_makes_a_branch_and_versions_and_the_tree_switch_between_them(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(text="Answer one"), Reply(text="Answer two"), Reply(text="Answer three"))
    await page.goto(f"{studio.url}/chat")
    await send(page, "First question")
    await answered(page, "Answer one")
    await send(page, "Follow-up")
    await answered(page, "Answer two")

    first_user = page.locator(".msg-user").first
    await first_user.hover()
    await first_user.get_by_role("button", name="Edit").click()
    editor = page.get_by_label("Edit message")
    await editor.fill("First question, rephrased")
    await editor.press("Enter")
    await answered(page, "Answer three")
    await expect(page.locator(".msg")).to_have_count(2)  # the new branch: edited question, its answer
    edited = page.locator(".msg-user").first
    await expect(edited).to_contain_text("rephrased")
    await expect(edited.locator(".sib-pos")).to_have_text("2/2")
    await shot(page, "chat-branch")

    await edited.get_by_role("button", name="Previous version").click()
    await expect(page.locator(".msg-user").first).to_contain_text("First question")
    await expect(page.locator(".msg-user").first.locator(".sib-pos")).to_have_text("1/2")
    await expect(page.locator(".msg")).to_have_count(4)  # back on the first branch, follow-up included
    await answered(page, "Answer two")

    await page.get_by_role("button", name="Tree").click()
    nodes = page.locator("#graph-panel [data-node]")
    await expect(nodes).to_have_count(6)
    await expect(page.locator("#graph-panel .node.active")).to_have_count(4)
    await shot(page, "chat-tree")
    await page.locator("#graph-panel .node-assistant", has_text="Answer three").click()
    await answered(page, "Answer three")
    await expect(page.locator(".msg")).to_have_count(2)
    await expect(page.locator("#graph-panel .node.active")).to_have_count(2)


async def test_regenerate_with_another_model_and_the_model_choice_persists_after_reload(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio), config=FIRST_WORDS)
    await studio.studio.registry.set_active_model(LLAMA)
    ollama.script(Reply(text="From llama"))
    lmstudio.script(Reply(text="From gemma"), Reply(text="Gemma again"))
    await page.goto(f"{studio.url}/chat")
    await send(page, "Hello")
    await answered(page, "From llama")
    answer = page.locator(".msg-assistant").last
    await answer.hover()
    await answer.get_by_role("button", name="Regenerate").click()
    await page.get_by_label("Regenerate with").select_option(GEMMA)
    await page.locator(".regen-form").get_by_role("button", name="Regenerate").click()
    await answered(page, "From gemma")
    again = page.locator(".msg-assistant").last
    await expect(again.locator(".model-used")).to_have_text("gemma-2-2b-it")
    await expect(again.locator(".sib-pos")).to_have_text("2/2")

    await page.get_by_label("Model", exact=True).select_option(GEMMA)
    await expect(page.locator(".toast.ok")).to_contain_text("now uses")
    await page.reload()
    await expect(page.get_by_label("Model", exact=True)).to_have_value(GEMMA)
    await send(page, "And now?")
    await answered(page, "Gemma again")
    await expect(page.locator(".msg-assistant").last.locator(".model-used")).to_have_text("gemma-2-2b-it")


async def test_reloading_mid_answer_loses_nothing(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(chunks=words(120), chunk_delay=0.03))
    await page.goto(f"{studio.url}/chat")
    await send(page, "A long answer please")
    await expect(page.locator(".msg-assistant .streaming")).to_contain_text("w5 ")
    await page.reload()
    answer = page.locator(".msg-assistant").last
    await expect(page.locator(".msg-user").last).to_contain_text("A long answer please")
    await expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    await expect(answer.locator(".md")).to_contain_text("w0 w1 w2")
    await expect(answer.locator(".md")).to_contain_text("w119")


async def test_a_fallback_answer_says_so_and_a_dead_engine_is_explained(
    page: Page, live: OpenLive, ollama: FakeOllamaServer, lmstudio: FakeOpenAIServer
) -> None:
    studio = await live(engines(ollama, lmstudio), config=FIRST_WORDS)
    await studio.studio.registry.set_active_model(LLAMA)
    ollama.script(Reply(status=500), Reply(status=500), Reply(status=500), Reply(status=500))
    lmstudio.script(Reply(text="Gemma stepped in"))
    await page.goto(f"{studio.url}/chat")
    await send(page, "Anyone?")
    await answered(page, "Gemma stepped in")
    answer = page.locator(".msg-assistant").last
    await expect(answer.locator(".fallback")).to_contain_text("llama3.2:latest failed")
    await shot(page, "chat-fallback")

    ollama.stop()
    lmstudio.stop()
    await studio.studio.registry.health.check_all()
    await send(page, "Still there?")
    failed = page.locator(".msg-assistant").last
    await expect(failed).to_have_attribute("data-status", "error")
    await expect(failed.locator(".msg-error")).to_contain_text("is not answering — is it running?")
    assert "Traceback" not in await page.content()
    await shot(page, "chat-error")
