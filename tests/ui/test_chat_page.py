"""Chat Studio in the browser: streaming, stop, branches, model selection, reload mid-answer, tools."""

from __future__ import annotations

import re
from pathlib import Path

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


async def test_agent_tool_calls_show_inline_and_collapsed(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    await studio.studio.registry.set_active_model(LLAMA)
    ollama.script(
        Reply(tool_calls=[{"id": "c1", "name": "calculator", "arguments": {"expression": "17*23"}}]),
        Reply(text="17 x 23 is **391**."),
    )
    await page.goto(f"{studio.url}/chat")
    await page.get_by_label("Routing").select_option("agent")
    await send(page, "What is 17*23?")
    await answered(page, "391")
    answer = page.locator(".msg-assistant").last
    call = answer.locator("details.tool-call")
    result = answer.locator("details.tool-result")
    await expect(call).to_contain_text("calculator")
    await expect(result).to_contain_text("Result of calculator")
    await expect(result.locator("pre")).to_be_hidden()  # collapsed until opened
    await result.locator("summary").click()
    await expect(result.locator("pre")).to_contain_text("391")
    await expect(page.get_by_label("Routing")).to_have_value("agent")  # the new conversation kept it
    await shot(page, "chat-tools")


async def test_documents_upload_for_tools_and_data_and_the_answer_cites_them(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(text="Noted."), Reply(text="The tea is Darjeeling [1]."))
    await page.goto(f"{studio.url}/chat")
    await page.get_by_label("Routing").select_option("tools+data")
    await send(page, "I will upload notes")
    await answered(page, "Noted.")
    upload = page.get_by_label("Upload document")
    await expect(page.locator("#upload-label")).to_be_visible()
    await upload.set_input_files(
        files=[
            {
                "name": "notes.md",
                "mimeType": "text/markdown",
                "buffer": b"# Tea\n\nThe house tea is Darjeeling.",
            }
        ]
    )
    await expect(page.locator(".toast.ok")).to_contain_text("Indexed notes.md")
    await expect(page.locator("#documents")).to_contain_text("notes.md")
    await send(page, "Which tea is the house tea?")
    await answered(page, "Darjeeling")
    await expect(page.locator(".msg-assistant").last.locator(".citations")).to_contain_text("notes.md")
    sent = ollama.requests_to("/api/chat")[-1].json()
    assert "Darjeeling" in str(sent["messages"])


async def test_conversation_list_search_pin_archive_delete_and_export(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(text="About apples"), Reply(text="About pears"))
    await page.goto(f"{studio.url}/chat")
    await send(page, "Tell me about apples")
    await answered(page, "About apples")
    await page.get_by_role("button", name="+ New chat").click()
    await send(page, "Tell me about pears")
    await answered(page, "About pears")
    items = page.locator(".conversation-item")
    await expect(items).to_have_count(2)
    await expect(items.first).to_contain_text("pears")  # newest first

    await page.get_by_label("Search conversations").fill("apples")
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("apples")
    await page.get_by_label("Search conversations").fill("")
    await expect(items).to_have_count(2)

    apples = items.filter(has_text="apples")
    await apples.hover()
    await apples.get_by_role("button", name="Pin").click()
    await expect(items.first).to_contain_text("apples")  # pinned first
    await expect(items.first.locator(".pin")).to_be_visible()

    pears = items.filter(has_text="pears")
    await pears.hover()
    await pears.get_by_role("button", name="Archive").click()
    await expect(items).to_have_count(1)
    await page.get_by_label("Archived").check()
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("pears")
    await page.get_by_label("Archived").uncheck()

    await items.first.locator(".conversation-link").click()
    await page.locator("summary", has_text="Export").click()
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Markdown (this branch)").click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".md")
    text = Path(await download.path()).read_text()  # noqa: ASYNC240 - a small file the browser saved
    assert "Tell me about apples" in text and "About apples" in text

    page.once("dialog", lambda dialog: dialog.accept())
    apples = items.filter(has_text="apples")
    await apples.hover()
    await apples.get_by_role("button", name="Delete").click()
    await expect(page.locator(".toast.ok")).to_contain_text("deleted")
    await expect(items).to_have_count(0)
    assert (await studio.client.get("/api/chat/ui/conversations")).json()["total"] == 0  # pears is archived


async def test_phone_width_and_dark_theme(page: Page, live: OpenLive, ollama: FakeOllamaServer) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(
        Reply(
            text="Small screens work too.\n\n```js\n"
            "console.log('a fairly long line of code that must scroll');\n```"
        )
    )
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{studio.url}/chat")
    await send(page, "Hi from a phone")
    await answered(page, "Small screens")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await expect(page.locator("#chat-side")).to_be_hidden()
    await page.get_by_role("button", name="Show conversations").click()
    await expect(page.locator("#chat-side")).to_be_visible()
    await shot(page, "chat-phone-sidebar", full_page=False)
    await page.locator(".conversation-link").first.click()
    await expect(page.locator("#chat-side")).to_be_hidden()
    await shot(page, "chat-phone", full_page=False)
    await page.get_by_role("button", name="Switch to dark theme").click()
    await page.set_viewport_size({"width": 1280, "height": 800})
    await shot(page, "chat-dark", full_page=False)


async def test_a_prompt_profile_made_in_the_page_shapes_the_answer(
    page: Page, live: OpenLive, ollama: FakeOllamaServer
) -> None:
    studio = await live(engines(ollama, None), config=FIRST_WORDS)
    ollama.script(Reply(text="Arr, hello."))
    await page.goto(f"{studio.url}/chat")
    await page.get_by_label("Prompt profile", exact=True).select_option("__new__")
    dialog = page.locator("#profile-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Create profile").click()  # no name yet
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Name").fill("Pirate")
    await dialog.get_by_label("System prompt", exact=True).fill("Always talk like a pirate.")
    await dialog.get_by_role("spinbutton", name="Temperature").fill("0.3")
    await dialog.get_by_role("button", name="Create profile").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_label("Prompt profile", exact=True)).to_have_value(
        re.compile(r"^[0-9a-f-]{36}$")
    )
    await send(page, "Hello")
    await answered(page, "Arr")
    sent = ollama.requests_to("/api/chat")[-1].json()
    assert sent["messages"][0] == {"role": "system", "content": "Always talk like a pirate."}
    assert sent["options"]["temperature"] == 0.3
    await page.reload()
    selected = page.get_by_label("Prompt profile", exact=True)
    await expect(selected.locator("option:checked")).to_have_text("Pirate")
