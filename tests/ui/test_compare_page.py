"""The compare page: 2 to 4 models answer one prompt side by side, a vote, and the leaderboard.

Streaming is proven by gates, not timing: each fake holds the rest of its answer until the test has
seen both columns show their first words at the same moment.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from playwright.async_api import Locator, Page, expect

from mmstudio.config import Routing, StudioConfig
from tests.fakes.base import Reply
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.test_compare import HeldLMStudio, HeldOllama, event_gate
from tests.ui.conftest import shot

LLAMA = "ollama/llama3.2:latest"
GEMMA3 = "ollama/gemma3:4b"
GEMMA = "lmstudio/gemma-2-2b-it"


@pytest.fixture
def ollama() -> Iterator[HeldOllama]:
    with HeldOllama() as server:
        yield server


@pytest.fixture
def lmstudio() -> Iterator[HeldLMStudio]:
    with HeldLMStudio(flavor="lmstudio", models=["gemma-2-2b-it"]) as server:
        yield server


async def choose(page: Page, *models: str) -> None:
    """Tick exactly `models` in the picker (once it has loaded)."""
    boxes = page.locator('#cmp-models input[name="models"]')
    await expect(boxes.first).to_be_attached()
    for index in range(await boxes.count()):
        box = boxes.nth(index)
        wanted = await box.get_attribute("value") in models
        if await box.is_checked() != wanted:
            await box.set_checked(wanted)


def column(page: Page, model: str) -> Locator:
    return page.locator(f'#cmp-sides .cmp-side[data-model="{model}"]')


def board_row(page: Page, model: str) -> Locator:
    return page.locator(f'#cmp-leaderboard tr[data-model="{model}"]')


async def full_shot(page: Page, name: str) -> None:
    """A full-page screenshot from the top (the sticky top bar would float mid-page otherwise)."""
    await page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    await shot(page, name)


async def test_two_models_stream_side_by_side_and_a_vote_updates_the_leaderboard(
    page: Page, live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    both_seen = threading.Event()
    ollama.script(Reply(chunks=["**Llama** says", " hello"], usage=(4, 2)))
    ollama.hold(" hello", event_gate(both_seen))
    lmstudio.script(Reply(chunks=["Gemma says", " bonjour"], usage=(4, 3)))
    lmstudio.hold(" bonjour", event_gate(both_seen))

    await page.goto(f"{studio.url}/compare")
    await expect(page.get_by_role("heading", name="Compare", level=1)).to_be_visible()
    picker = page.locator("#cmp-models")
    await expect(picker.locator(".cmp-group-label").first).to_contain_text("local")
    await expect(picker.locator(f'input[value="{LLAMA}"] ~ .dot')).to_have_attribute("data-status", "healthy")
    await choose(page, LLAMA, GEMMA)
    await expect(page.locator("#cmp-count")).to_have_text("2 models chosen.")
    prompt = page.get_by_label("Prompt")
    await prompt.fill("Say hello")
    await prompt.press("Shift+Enter")  # a new line, not a run
    await prompt.type("politely")
    await expect(page.locator("#cmp-arena")).to_be_hidden()
    await prompt.press("Enter")

    llama, gemma = column(page, LLAMA), column(page, GEMMA)
    # Both columns show their first words while both models are still answering: side by side, live.
    await expect(llama.locator(".cmp-text")).to_have_text("**Llama** says")
    await expect(gemma.locator(".cmp-text")).to_have_text("Gemma says")
    await expect(llama).to_have_attribute("data-status", "streaming")
    await expect(gemma).to_have_attribute("data-status", "streaming")
    await expect(llama.locator(".cmp-status")).to_have_text("streaming")
    await expect(page.locator("#cmp-vote")).to_be_hidden()
    left, right = await llama.bounding_box(), await gemma.bounding_box()
    assert left and right and left["y"] == right["y"] and left["x"] != right["x"]
    await expect(llama.get_by_role("heading", level=3)).to_have_text("llama3.2:latest")
    await full_shot(page, "compare-streaming")
    both_seen.set()

    await expect(llama).to_have_attribute("data-status", "done")
    await expect(gemma).to_have_attribute("data-status", "done")
    await expect(llama.locator(".cmp-status")).to_have_text("done")
    # Finished answers are rendered Markdown; the latency and token count are shown.
    await expect(llama.locator(".cmp-text .md strong")).to_have_text("Llama")
    await expect(llama.locator(".cmp-text")).to_have_text("Llama says hello")
    await expect(gemma.locator(".cmp-text")).to_have_text("Gemma says bonjour")
    await expect(llama.locator(".cmp-meta")).to_have_text(
        re.compile(r"^[\d.,]+ m?s · first token .* · 2 tokens$")
    )
    await expect(gemma.locator(".cmp-meta")).to_contain_text("3 tokens")
    (asked,) = ollama.requests_to("/api/chat")
    assert asked.json()["messages"] == [{"role": "user", "content": "Say hello\npolitely"}]

    vote = page.locator("#cmp-vote")
    await expect(vote).to_be_visible()
    await expect(page.locator("#cmp-leaderboard")).to_contain_text("No votes yet")
    buttons = vote.get_by_role("button")
    # Sides follow the picker's order (local engines by provider): LM Studio's model is A.
    await expect(buttons).to_have_text(
        ["Agemma-2-2b-it is better", "Bllama3.2:latest is better", "Tie", "Both bad"]
    )
    await vote.get_by_role("button", name="llama3.2:latest is better").click()
    await expect(page.locator("#cmp-vote-status")).to_have_text(
        "Vote recorded: llama3.2:latest is better. The leaderboard is updated."
    )
    await expect(vote.get_by_role("button", name="llama3.2:latest is better")).to_have_attribute(
        "aria-pressed", "true"
    )
    winner, loser = board_row(page, LLAMA), board_row(page, GEMMA)
    await expect(winner.locator('[data-col="rank"]')).to_have_text("1")
    await expect(winner.locator('[data-col="wins"]')).to_have_text("1")
    await expect(winner.locator('[data-col="votes"]')).to_have_text("1")
    await expect(loser.locator('[data-col="rank"]')).to_have_text("2")
    await expect(loser.locator('[data-col="losses"]')).to_have_text("1")
    await expect(page.locator("#cmp-leaderboard caption")).to_contain_text("1 vote;")
    board = await studio.studio.compare.leaderboard()
    assert board.total_votes == 1 and board.standings[0].model == LLAMA
    recent = page.locator("#cmp-runs .cmp-run").first
    await expect(recent).to_contain_text("Say hello")
    await expect(recent).to_contain_text("llama3.2:latest won")
    await full_shot(page, "compare-light")

    # The run's address opens it again, answers rendered and the vote shown.
    assert "?run=" in page.url
    await page.reload()
    await expect(column(page, LLAMA).locator(".cmp-text .md strong")).to_have_text("Llama")
    await expect(column(page, GEMMA)).to_have_attribute("data-status", "done")
    await expect(page.locator("#cmp-vote-status")).to_contain_text("Your vote: llama3.2:latest is better")
    await expect(
        page.locator("#cmp-vote").get_by_role("button", name="llama3.2:latest is better")
    ).to_have_attribute("aria-pressed", "true")


async def test_a_failing_side_shows_its_error_while_the_other_finishes(
    page: Page, live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio), config=StudioConfig(routing=Routing(retries=0)))
    ollama.script(Reply(status=500, error_body={"error": "model requires more system memory"}))
    await page.add_init_script("localStorage.setItem('mmstudio-theme', 'dark')")
    await page.goto(f"{studio.url}/compare")
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await choose(page, LLAMA, GEMMA)
    await page.get_by_label("Prompt").fill("Explain recursion in one line")
    await page.get_by_role("button", name="Run", exact=True).click()

    failed, fine = column(page, LLAMA), column(page, GEMMA)
    await expect(failed).to_have_attribute("data-status", "error")
    await expect(failed.locator(".cmp-status")).to_have_text("error")
    error = failed.locator(".cmp-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("Could not answer:")
    await expect(error).to_contain_text("model requires more system memory")
    await expect(fine).to_have_attribute("data-status", "done")
    await expect(fine.locator(".cmp-text")).to_have_text("Hello from the fake.")
    await expect(fine.locator(".cmp-error")).to_be_hidden()
    await expect(page.get_by_role("button", name="Run", exact=True)).to_be_enabled()

    await page.locator("#cmp-vote").get_by_role("button", name="Both bad").click()
    await expect(page.locator("#cmp-vote-status")).to_contain_text("Vote recorded: both bad")
    for model in (LLAMA, GEMMA):
        await expect(board_row(page, model).locator('[data-col="votes"]')).to_have_text("1")
    await expect(page.locator("#cmp-runs .cmp-run").first).to_contain_text("Both bad")
    await full_shot(page, "compare-dark")


async def test_one_model_is_refused_with_the_rule(
    page: Page, live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await page.goto(f"{studio.url}/compare")
    await choose(page, LLAMA)
    count = page.locator("#cmp-count")
    await expect(count).to_have_text("1 model chosen: choose at least one more.")
    await expect(count).to_have_attribute("data-valid", "false")
    prompt = page.get_by_label("Prompt")
    await prompt.fill("Hi")
    await prompt.press("Enter")
    alert = page.get_by_role("alert").filter(has_text="Choose")
    await expect(alert).to_have_text("Choose at least one more model: a comparison needs 2 to 4 models.")
    await expect(page.locator("#cmp-arena")).to_be_hidden()

    await choose(page)
    await page.get_by_role("button", name="Run", exact=True).click()
    await expect(alert).to_contain_text("Choose at least 2 models")
    await expect(page.locator('#cmp-models input[name="models"]').first).to_be_focused()

    await choose(page, LLAMA, GEMMA3)
    await expect(count).to_have_attribute("data-valid", "true")
    await expect(alert).to_be_hidden()  # the rule is met: the explanation goes
    await prompt.fill("   ")
    await prompt.press("Enter")
    await expect(page.get_by_role("alert").filter(has_text="prompt")).to_have_text(
        "Write a prompt for the models to answer."
    )
    await expect(prompt).to_be_focused()
    await expect(page.locator("#cmp-arena")).to_be_hidden()
    assert not ollama.requests_to("/api/chat") and not lmstudio.requests_to("/v1/chat/completions")
    assert (await studio.studio.compare.list_runs()).total == 0


async def test_at_phone_width_columns_stack_without_overflow(
    page: Page, live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    code = "```python\nprint('a long line of code that scrolls inside its own box, not the page')\n```"
    lmstudio.script(Reply(text=f"Here is a list:\n\n- one\n- two\n\n{code}"))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{studio.url}/compare")
    await choose(page, LLAMA, GEMMA3, GEMMA)
    await expect(page.locator("#cmp-count")).to_have_text("3 models chosen.")
    await page.get_by_label("Prompt").fill("Give me a short list")
    await page.get_by_role("button", name="Run", exact=True).click()
    sides = page.locator("#cmp-sides .cmp-side")
    await expect(sides).to_have_count(3)
    for index in range(3):
        await expect(sides.nth(index)).to_have_attribute("data-status", "done")
    await expect(column(page, GEMMA).locator(".md li")).to_have_text(["one", "two"])
    boxes = [await sides.nth(i).bounding_box() for i in range(3)]
    assert all(b is not None for b in boxes)
    xs = {round(b["x"]) for b in boxes if b}
    ys = [b["y"] for b in boxes if b]
    assert len(xs) == 1 and ys == sorted(ys) and len(set(ys)) == 3  # one column, top to bottom
    await expect(page.locator("#cmp-vote")).to_be_visible()
    await page.locator("#cmp-vote").get_by_role("button", name="Tie").click()
    await expect(page.locator("#cmp-leaderboard tbody tr")).to_have_count(3)
    votes = board_row(page, GEMMA).locator('[data-col="votes"]')
    await expect(votes).to_have_text("1")
    wrap = page.locator("#cmp-leaderboard .cmp-table-wrap")
    assert await wrap.evaluate("e => e.scrollWidth <= e.clientWidth")  # the table fits: no hidden column

    async def overflow() -> int:
        return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))

    assert await overflow() <= 0
    await full_shot(page, "compare-phone-light")
    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await overflow() <= 0
    await full_shot(page, "compare-phone-dark")


async def test_the_event_stream_reader_survives_chunks_split_anywhere(
    page: Page, live: OpenLive, ollama: HeldOllama, lmstudio: HeldLMStudio
) -> None:
    studio = await live(engines(ollama, lmstudio))
    await page.goto(f"{studio.url}/compare")
    failures = await page.evaluate(
        """async () => {
          const { SseParser, readSse } = window.mm;
          const text = 'event: run\\ndata: {"id":"r1"}\\n\\n: keep-alive\\r\\n\\r\\n'
            + 'event: delta\\r\\ndata: line one\\r\\ndata: line two é🙂\\r\\n\\r\\n'
            + 'data: bare\\rdata:tight\\r\\revent: done\\ndata: {}\\n\\n';
          const expected = JSON.stringify([
            ['run', '{"id":"r1"}'], ['delta', 'line one\\nline two é🙂'],
            ['message', 'bare\\ntight'], ['done', '{}'],
          ]);
          const failures = [];
          for (let i = 0; i <= text.length; i++) {
            for (let j = i; j <= text.length; j++) {
              const got = [];
              const parser = new SseParser((name, data) => got.push([name, data]));
              parser.push(text.slice(0, i)); parser.push(text.slice(i, j));
              parser.push(text.slice(j)); parser.end();
              if (JSON.stringify(got) !== expected) failures.push(['text', i, j, got]);
            }
          }
          const bytes = new TextEncoder().encode(text);
          for (let i = 0; i <= bytes.length; i++) {
            const body = new ReadableStream({
              start(c) { c.enqueue(bytes.slice(0, i)); c.enqueue(bytes.slice(i)); c.close(); },
            });
            const got = [];
            await readSse(body, (name, data) => got.push([name, data]));
            if (JSON.stringify(got) !== expected) failures.push(['bytes', i, got]);
          }
          const cut = [];
          const parser = new SseParser((name, data) => cut.push([name, data]));
          parser.push('event: delta\\ndata: last words'); parser.end();
          if (JSON.stringify(cut) !== JSON.stringify([['delta', 'last words']])) failures.push(['cut', cut]);
          return failures.slice(0, 5);
        }"""
    )
    assert failures == []
