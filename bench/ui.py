"""The web UI benchmark: a long branch on the Chat page, and how late streamed tokens reach the page.

    ./scripts/bench ui        (or: .venv/bin/python bench/ui.py --help)

Starts a fake OpenAI-compatible upstream (aiohttp, in a thread of this process, on loopback) and
`mmstudio serve` (a fresh data directory, no MMSTUDIO_* settings from the environment, local engine
detection off), registers the upstream through the API as endpoint `bench` with model `ts-model` and
makes it the active model, then drives Debian's Chromium (headless, through Playwright) against both:

1. **Render**: a conversation whose active branch holds 1,000 messages (alternating user/assistant,
   Markdown of a few hundred characters, every fifth answer with a fenced code block) is imported
   through `POST /api/chat/ui/conversations/import`. Measured: a new tab opens `/chat/c/{id}`; the
   time from navigation start to the page's `mm:conversation-rendered` event (chat.js dispatches it
   once the server-rendered branch is swapped into the page; an init script takes `performance.now()`
   in the listener), after checking the page holds 1,000 `#messages > .msg`. Median of `--loads`
   tabs after one warm-up, in one browser context (so the CSS and JS may come from its cache, as on a
   second visit). Baseline: the same browser opening a static page from the bench's server holding the
   same 1,000 messages' text as pre-rendered `<article><p>` elements, to its DOMContentLoaded: the
   floor of putting that much content on a page. Also shown: both to the next frame after that point
   (requestAnimationFrame, then a task), which includes style and layout. Target: <= 1,000 ms.
2. **Token latency**: the upstream streams each answer as `--chunks` content chunks `--interval-ms`
   apart, each chunk's text being `⟨<epoch ms>⟩ ` taken with `time.time()` just before the write
   (TCP_NODELAY, no buffering). The page at `/chat` gets a prompt typed into "Message" and Enter; a
   MutationObserver (childList, characterData, subtree) records, for each stamp the first time it
   appears inside `#messages`, `performance.timeOrigin + performance.now()` minus the stamp: upstream
   write to text in the page's DOM, on the same machine's wall clock. One warm-up answer starts the
   conversation, then `--answers` answers in it, each after the previous one is `complete`; median and
   p95 over all their tokens. Baseline: a page from the bench's server reads the same kind of stream
   straight from the upstream with fetch and a ReadableStream and appends each chunk's text as a text
   node (network + browser, without mmstudio), with the same observer. Target: median <= 100 ms.

The offset between Python's and the page's clock is estimated (Playwright round trips) and printed;
it affects mmstudio and the baseline alike. Prints one markdown table; stops everything it started
(also on error or Ctrl-C) and removes its temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import html
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
from aiohttp import web

from gateway import Processes, clean_env, free_port, log_tail, percentile, say

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_DEFAULT = os.environ.get("MMSTUDIO_CHROMIUM", "/usr/bin/chromium")
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
UPSTREAM_MODEL = "ts-model"
ENDPOINT_NAME = "bench"
TITLE_ANSWER = "Benchmark conversation"

# Installed in every page before its scripts run. performance.now() counts from navigation start.
PROBE = r"""
(() => {
  const probe = (window.__bench = { delays: [], seen: new Set(), texts: 0 });
  const frame = (key) => requestAnimationFrame(() => setTimeout(() => { probe[key] = performance.now(); }));
  document.addEventListener("mm:conversation-rendered", (event) => {
    if (probe.rendered !== undefined) return;
    probe.rendered = performance.now();
    probe.detail = event.detail;
    frame("renderedFrame");
  });
  document.addEventListener("DOMContentLoaded", () => {
    probe.dcl = performance.now();
    frame("dclFrame");
  });
  const STAMP = /⟨(\d+(?:\.\d+)?)⟩/g;
  function note(text, now) {
    if (!text || text.indexOf("⟨") < 0) return;
    for (const match of text.matchAll(STAMP)) {
      if (probe.seen.has(match[1])) continue;
      probe.seen.add(match[1]);
      probe.delays.push(now - parseFloat(match[1]));
    }
  }
  const observer = new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const record of records) {
      const target = record.target.nodeType === 1 ? record.target : record.target.parentElement;
      if (!target || !target.closest("#messages")) continue;
      if (record.type === "characterData") note(record.target.data, now);
      for (const node of record.addedNodes) note(node.textContent, now);
    }
  });
  // Only on demand: while a page is parsed it would see every node (and slow the render baseline).
  const what = { childList: true, characterData: true, subtree: true };
  probe.observe = () => observer.observe(document.body, what);
})();
"""

# The token baseline: the upstream's stream read with fetch + a ReadableStream, appended as text nodes.
STREAM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>stream baseline</title></head>
<body><main><div id="messages"></div></main>
<script>
async function runStream() {
  const box = document.getElementById("messages");
  box.textContent = "";
  const article = document.createElement("article");
  const md = document.createElement("div");
  md.className = "md streaming";
  article.appendChild(md);
  box.appendChild(article);
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({model: "MODEL", stream: true, messages: [{role: "user", content: "Go"}]}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let tokens = 0;
  while (true) {
    const chunk = await reader.read();
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!frame.startsWith("data: ") || frame === "data: [DONE]") continue;
      const choice = JSON.parse(frame.slice(6)).choices[0];
      const text = choice && choice.delta && choice.delta.content;
      if (text) { md.appendChild(document.createTextNode(text)); tokens += 1; }
    }
  }
  return tokens;
}
</script></body></html>
""".replace("MODEL", UPSTREAM_MODEL)


# --- made-up but realistic conversation content --------------------------------------------------------

WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "on",
    "that",
    "with",
    "as",
    "this",
    "it",
    "be",
    "are",
    "by",
    "from",
    "at",
    "or",
    "an",
    "model",
    "request",
    "stream",
    "token",
    "server",
    "cache",
    "branch",
    "message",
    "answer",
    "latency",
    "database",
    "query",
    "index",
    "build",
    "test",
    "deploy",
    "config",
    "router",
    "fallback",
    "timeout",
    "retry",
    "context",
    "prompt",
    "chunk",
    "page",
    "render",
    "browser",
    "layout",
    "script",
    "style",
    "function",
    "value",
    "result",
    "error",
    "status",
    "version",
    "update",
    "python",
    "rust",
    "sqlite",
    "async",
    "thread",
    "process",
    "memory",
    "worker",
    "queue",
    "event",
    "client",
    "upstream",
    "local",
    "cloud",
    "studio",
    "endpoint",
    "profile",
    "history",
    "markdown",
]
CODE_SNIPPETS = (
    "```python\nasync def fetch(client, url):\n    response = await client.get(url, timeout=10)\n"
    "    response.raise_for_status()\n    return response.json()\n```",
    "```bash\ncurl -s http://127.0.0.1:8765/v1/models | jq '.data[].id'\n```",
    "```sql\nSELECT id, title FROM conversations\nWHERE archived = 0\n"
    "ORDER BY updated_at DESC LIMIT 50;\n```",
    "```javascript\nconst total = items.reduce((sum, item) => sum + item.count, 0);\n"
    "console.log(total);\n```",
)


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(7, 16))]
    if rng.random() < 0.3:
        i = rng.randrange(len(words))
        words[i] = f"**{words[i]}**"
    if rng.random() < 0.3:
        i = rng.randrange(len(words))
        words[i] = f"`{words[i]}()`"
    return " ".join(words).capitalize() + "."


def message_text(rng: random.Random, role: str, index: int) -> str:
    if role == "user":
        return " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))
    parts = [" ".join(sentence(rng) for _ in range(rng.randint(2, 3)))]
    if rng.random() < 0.4:
        parts.append("\n".join(f"- {sentence(rng)}" for _ in range(rng.randint(2, 4))))
    if index % 10 == 1:  # every fifth answer
        parts.append(rng.choice(CODE_SNIPPETS))
    parts.append(sentence(rng))
    return "\n\n".join(parts)


def conversation_texts(count: int) -> list[tuple[str, str]]:
    rng = random.Random(5)
    roles = ["user" if i % 2 == 0 else "assistant" for i in range(count)]
    return [(role, message_text(rng, role, i)) for i, role in enumerate(roles)]


def export_document(texts: list[tuple[str, str]], model: str) -> dict[str, Any]:
    """Our export format (domain/chat/export.py): a linear branch, the last message current."""
    start = datetime.datetime(2026, 11, 1, 9, 0, tzinfo=datetime.UTC)
    messages: list[dict[str, Any]] = []
    for i, (role, text) in enumerate(texts):
        when = (start + datetime.timedelta(seconds=20 * i)).isoformat()
        answer = role == "assistant"
        messages.append(
            {
                "id": f"m{i}",
                "parentId": f"m{i - 1}" if i else None,
                "role": role,
                "parts": [{"type": "text", "text": text}],
                "status": "complete",
                "model": model if answer else None,
                "provider": ENDPOINT_NAME if answer else None,
                "inputTokens": 40 + i if answer else None,
                "outputTokens": len(text) // 4 if answer else None,
                "latencyMs": 900 + i % 300 if answer else None,
                "ttftMs": 120 + i % 50 if answer else None,
                "createdAt": when,
                "updatedAt": when,
            }
        )
    return {
        "format": "mmstudio.conversation",
        "version": 1,
        "conversation": {
            "title": f"A {len(texts):,}-message branch",
            "model": model,
            "routingProfile": "direct",
            "currentLeafId": messages[-1]["id"],
            "createdAt": messages[0]["createdAt"],
        },
        "messages": messages,
    }


def static_page(texts: list[tuple[str, str]]) -> str:
    """The render baseline: the same text, pre-rendered as plain articles and paragraphs."""
    articles = []
    for role, text in texts:
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
        articles.append(f'<article class="msg msg-{role}">{paragraphs}</article>')
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>render baseline</title></head>'
        f'<body><main id="messages">{"".join(articles)}</main></body></html>'
    )


# --- the fake upstream (and the baseline pages) ----------------------------------------------------------


@dataclass
class Upstream:
    chunks: int
    interval: float  # seconds between content chunks
    static_html: str
    port: int = 0
    loop: asyncio.AbstractEventLoop | None = None
    thread: threading.Thread | None = None
    runner: web.AppRunner | None = None
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    async def models(self, request: web.Request) -> web.Response:
        model = {"id": UPSTREAM_MODEL, "object": "model", "created": 1_700_000_000, "owned_by": "bench"}
        return web.json_response({"object": "list", "data": [model]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):  # mmstudio's title request after a conversation's first answer
            return web.json_response(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": UPSTREAM_MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": TITLE_ANSWER},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
                }
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(self.chunk({"role": "assistant", "content": ""}))
        for _ in range(self.chunks):
            await asyncio.sleep(self.interval)
            # The stamp is taken right before the write; aiohttp sets TCP_NODELAY and writes at once.
            await response.write(self.chunk({"content": f"⟨{time.time() * 1000:.3f}⟩ "}))
        await response.write(self.chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 20, "completion_tokens": self.chunks, "total_tokens": 20 + self.chunks}
            tail = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time())}
            tail |= {"model": UPSTREAM_MODEL, "choices": [], "usage": usage}
            await response.write(b"data: " + json.dumps(tail).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def page(self, request: web.Request) -> web.Response:
        text = self.static_html if request.match_info["name"] == "render" else STREAM_PAGE
        return web.Response(text=text, content_type="text/html")

    async def _serve(self) -> None:
        app = web.Application(client_max_size=1 << 22)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/baseline/{name}", self.page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the main thread
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup() if self.runner else asyncio.sleep(0))
        self.loop.close()

    def start(self) -> None:
        """In its own thread and event loop, so the browser driver never delays a chunk's write."""
        self.thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self.thread.start()
        self.ready.wait(10)
        if self.error is not None or not self.port:
            raise RuntimeError(f"the fake upstream did not start: {self.error!r}")

    def stop(self) -> None:
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


# --- mmstudio ------------------------------------------------------------------------------------------


@dataclass
class Mmstudio:
    url: str
    model: str
    log: Path


async def start_mmstudio(procs: Processes, tmp: Path, upstream: Upstream) -> Mmstudio:
    port = free_port()
    config = tmp / "mmstudio.yaml"
    config.write_text("detect_local: false\n")  # no probing of Ollama / LM Studio ports
    env = {**clean_env(), "MMSTUDIO_DATA_DIR": str(tmp / "mmstudio-data"), "MMSTUDIO_CONFIG": str(config)}
    log = tmp / "mmstudio.log"
    argv = [sys.executable, "-m", "mmstudio", "serve", "--port", str(port), "--log-level", "warning"]
    proc = procs.start("mmstudio", argv, env, log)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mmstudio exited while starting:\n{log_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200 and (await response.json()).get("ready"):
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mmstudio was not ready within 60 s:\n{log_tail(log)}")
            await asyncio.sleep(0.1)
        endpoint = {
            "platform": "openai_compat",
            "base_url": f"http://127.0.0.1:{upstream.port}/v1",
            "name": ENDPOINT_NAME,
            "models": [{"model": UPSTREAM_MODEL, "name": "Bench model"}],
        }
        registered = await api(http, "POST", f"{url}/api/models/endpoints", endpoint)
        listed = await api(http, "GET", f"{url}/api/models")
        ids = [m.get("id") for m in listed.get("models", listed.get("data", []))]
        model = f"{ENDPOINT_NAME}/{UPSTREAM_MODEL}"
        if model not in ids:
            raise RuntimeError(f"{model} is not among mmstudio's models after registering: {registered}")
        active = await api(http, "PUT", f"{url}/api/models/active", {"model": model})
        if model not in json.dumps(active):
            raise RuntimeError(f"could not make {model} the active model: {active}")
    return Mmstudio(url, model, log)


async def api(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> dict[str, Any]:
    async with http.request(method, url, json=body) as response:
        text = await response.text()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url} answered {response.status}: {text[:500]}")
        result: dict[str, Any] = json.loads(text) if text else {}
        return result


async def import_conversation(app: Mmstudio, document: dict[str, Any]) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        made = await api(http, "POST", f"{app.url}/api/chat/ui/conversations/import", document)
        conversation_id: str = made["conversation"]["id"]
        branch = await api(http, "GET", f"{app.url}/api/chat/ui/conversations/{conversation_id}")
    if len(branch["messages"]) != len(document["messages"]):
        raise RuntimeError(f"the imported branch has {len(branch['messages'])} messages")
    return conversation_id


# --- the browser -----------------------------------------------------------------------------------------


@dataclass
class Load:
    at: float  # ms from navigation start to the measured point
    frame: float  # ms from navigation start to the next frame after it
    fetch_start: float | None = None  # the branch fragment's request (mmstudio only)
    fetch_first_byte: float | None = None
    fetch_end: float | None = None
    fetch_bytes: int | None = None


FRAGMENT_TIMING = """(id) => {
  const entry = performance.getEntriesByType("resource").find((e) => e.name.includes(
    "/api/ui/chat/conversations/" + id) && !e.name.includes("/graph"));
  return entry ? [entry.startTime, entry.responseStart, entry.responseEnd, entry.decodedBodySize] : null;
}"""


async def load_mmstudio(context: Any, url: str, conversation_id: str, expected: int) -> Load:
    page = await context.new_page()
    try:
        await page.goto(f"{url}/chat/c/{conversation_id}", wait_until="domcontentloaded")
        await page.wait_for_function("window.__bench.renderedFrame !== undefined", timeout=60_000)
        probe = await page.evaluate("[__bench.rendered, __bench.renderedFrame, __bench.detail]")
        count = await page.locator("#messages > .msg").count()
        if count != expected or probe[2].get("messages") != expected:
            raise RuntimeError(f"the page shows {count} messages (event: {probe[2]}), not {expected}")
        timing = await page.evaluate(FRAGMENT_TIMING, conversation_id)
    finally:
        await page.close()
    load = Load(probe[0], probe[1])
    if timing:
        load.fetch_start, load.fetch_first_byte, load.fetch_end, size = timing
        load.fetch_bytes = int(size)
    return load


async def load_static(context: Any, url: str, expected: int) -> Load:
    page = await context.new_page()
    try:
        await page.goto(url, wait_until="domcontentloaded")
        await page.wait_for_function("window.__bench.dclFrame !== undefined", timeout=60_000)
        probe = await page.evaluate("[__bench.dcl, __bench.dclFrame]")
        count = await page.locator("#messages > .msg").count()
        if count != expected:
            raise RuntimeError(f"the static page shows {count} messages, not {expected}")
    finally:
        await page.close()
    return Load(probe[0], probe[1])


async def clock_offset(page: Any) -> tuple[float, float]:
    """The page's clock minus Python's, in ms, from the quickest of 30 round trips (and half that trip)."""
    best: tuple[float, float] | None = None
    for _ in range(30):
        before = time.time() * 1000
        theirs = await page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time() * 1000
        trip = after - before
        if best is None or trip < best[1] * 2:
            best = (theirs - (before + after) / 2, trip / 2)
    assert best is not None
    return best


async def mmstudio_tokens(context: Any, app: Mmstudio, answers: int, chunks: int) -> list[list[float]]:
    """Delays (ms) of every token of a warm-up answer (it starts the conversation) and `answers` more."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{app.url}/chat")
        box = page.get_by_label("Message", exact=True)
        await box.wait_for()
        await page.wait_for_function("!document.getElementById('prompt').disabled")
        await page.evaluate("__bench.observe()")
        out: list[list[float]] = []
        for n in range(answers + 1):
            await page.evaluate("__bench.delays = []")
            before = await page.locator("#messages > .msg-assistant").count()
            await box.fill(f"Question {n}: stream me {chunks} stamps, please.")
            await box.press("Enter")
            answer = page.locator("#messages > .msg-assistant").nth(before)
            await answer.wait_for()
            await page.wait_for_function(
                "(n) => { const all = document.querySelectorAll('#messages > .msg-assistant');"
                " return all.length > n && all[n].dataset.status === 'complete'"
                " && !document.getElementById('send-button').disabled; }",
                arg=before,
                timeout=60_000,
            )
            delays: list[float] = await page.evaluate("__bench.delays")
            if len(delays) != chunks:
                status = await answer.get_attribute("data-status")
                raise RuntimeError(
                    f"answer {n}: {len(delays)} of {chunks} stamps reached the page ({status})"
                )
            out.append(delays)  # the first one starts the conversation: a warm-up, reported apart
        if errors:
            raise RuntimeError(f"JavaScript errors on the page: {errors}")
        return out
    finally:
        await page.close()


async def baseline_tokens(context: Any, upstream: Upstream, answers: int, chunks: int) -> list[list[float]]:
    page = await context.new_page()
    try:
        await page.goto(f"http://127.0.0.1:{upstream.port}/baseline/stream")
        await page.evaluate("__bench.observe()")
        out: list[list[float]] = []
        for n in range(answers + 1):
            await page.evaluate("__bench.delays = []")
            received = await page.evaluate("runStream()")
            delays: list[float] = await page.evaluate("__bench.delays")
            if received != chunks or len(delays) != chunks:
                raise RuntimeError(f"baseline stream {n}: {received} chunks, {len(delays)} stamps seen")
            if n:
                out.append(delays)
        return out
    finally:
        await page.close()


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class Options:
    messages: int
    loads: int
    answers: int
    chunks: int
    interval_ms: float
    chromium: str
    keep_logs: Path | None = None


@dataclass
class Results:
    mm_loads: list[Load]
    static_loads: list[Load]
    mm_tokens: list[list[float]]
    base_tokens: list[list[float]]
    warm_up: list[float]  # mmstudio's first answer, in a new conversation
    offset: tuple[float, float]
    browser_version: str


async def measure(opts: Options, procs: Processes, tmp: Path, upstream: Upstream) -> Results:
    from playwright.async_api import async_playwright

    say("starting mmstudio and registering the fake upstream")
    app = await start_mmstudio(procs, tmp, upstream)
    texts = conversation_texts(opts.messages)
    started = time.monotonic()
    conversation_id = await import_conversation(app, export_document(texts, app.model))
    say(f"imported a {opts.messages:,}-message conversation in {time.monotonic() - started:.1f} s")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=opts.chromium, args=FLAGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            await context.add_init_script(PROBE)
            context.set_default_timeout(30_000)
            static_url = f"http://127.0.0.1:{upstream.port}/baseline/render"

            say(f"render: {opts.loads} loads each after a warm-up (mmstudio, static page, interleaved)")
            await load_mmstudio(context, app.url, conversation_id, opts.messages)
            await load_static(context, static_url, opts.messages)
            mm_loads: list[Load] = []
            static_loads: list[Load] = []
            for _ in range(opts.loads):
                mm_loads.append(await load_mmstudio(context, app.url, conversation_id, opts.messages))
                static_loads.append(await load_static(context, static_url, opts.messages))
            say(
                f"  mmstudio {statistics.median(x.at for x in mm_loads):.0f} ms, "
                f"static {statistics.median(x.at for x in static_loads):.0f} ms"
            )

            say(
                f"tokens: {opts.answers} answers of {opts.chunks} chunks "
                f"{opts.interval_ms:g} ms apart, each way (after a warm-up)"
            )
            warm_up, *mm_tokens = await mmstudio_tokens(context, app, opts.answers, opts.chunks)
            base_tokens = await baseline_tokens(context, upstream, opts.answers, opts.chunks)
            say(
                f"  mmstudio {statistics.median(flat(mm_tokens)):.1f} ms, "
                f"baseline {statistics.median(flat(base_tokens)):.1f} ms"
            )
            page = await context.new_page()
            offset = await clock_offset(page)
            await page.close()
            version = browser.version
            await context.close()
        finally:
            await browser.close()
    return Results(mm_loads, static_loads, mm_tokens, base_tokens, warm_up, offset, version)


def run(opts: Options) -> str:
    procs = Processes()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    load = os.getloadavg()[0]
    texts = conversation_texts(opts.messages)
    upstream = Upstream(opts.chunks, opts.interval_ms / 1000, static_page(texts))
    with tempfile.TemporaryDirectory(prefix="mmstudio-bench-ui-") as name:
        tmp = Path(name)
        try:
            upstream.start()
            results = asyncio.run(measure(opts, procs, tmp, upstream))
            return report(results, opts, texts, time.monotonic() - started, load)
        except Exception:
            for log in sorted(tmp.glob("*.log")):
                say(f"--- last lines of {log.name} ---\n{log_tail(log)}")
            raise
        finally:
            procs.stop_all()
            upstream.stop()
            if opts.keep_logs is not None:
                opts.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*.log"):
                    (opts.keep_logs / log.name).write_bytes(log.read_bytes())


def flat(lists: list[list[float]]) -> list[float]:
    return [x for one in lists for x in one]


def yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def report(r: Results, opts: Options, texts: list[tuple[str, str]], elapsed: float, load: float) -> str:
    med = statistics.median
    mm_at, st_at = med(x.at for x in r.mm_loads), med(x.at for x in r.static_loads)
    mm_frame, st_frame = med(x.frame for x in r.mm_loads), med(x.frame for x in r.static_loads)
    mm_tok, base_tok = flat(r.mm_tokens), flat(r.base_tokens)
    tok50, base50 = med(mm_tok), med(base_tok)
    tok95, base95 = percentile(mm_tok, 95), percentile(base_tok, 95)
    n, chars = len(texts), sum(len(t) for _, t in texts)
    rows = [
        f"| {n:,}-message branch: navigation start → on the page (median of {opts.loads}) "
        f"| {mm_at:,.0f} ms | {st_at:,.0f} ms | {mm_at / st_at:.1f}x | ≤ 1,000 ms | {yes(mm_at <= 1000)} |",
        f"| … → the next frame (style, layout) | {mm_frame:,.0f} ms | {st_frame:,.0f} ms "
        f"| {mm_frame / st_frame:.1f}x | - | |",
        f"| streamed token: upstream write → in the page, median ({len(mm_tok)} tokens) "
        f"| {tok50:.1f} ms | {base50:.1f} ms | {tok50 / base50:.1f}x | ≤ 100 ms | {yes(tok50 <= 100)} |",
        f"| streamed token, p95 | {tok95:.1f} ms | {base95:.1f} ms | {tok95 / base95:.1f}x | - | |",
    ]
    fetched = [x for x in r.mm_loads if x.fetch_end is not None]
    notes = [
        f"Web UI benchmark, {datetime.date.today()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, Chromium {r.browser_version} (headless); total {elapsed:.0f} s; "
        f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after.",
        "",
        "| measure | mmstudio | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Render: {n:,} messages, {chars:,} characters of Markdown; baseline: a static page of "
        f"`<article><p>` elements to DOMContentLoaded. Each load is a new tab in one browser context; "
        f"mmstudio {', '.join(f'{x.at:,.0f}' for x in r.mm_loads)} ms, static "
        f"{', '.join(f'{x.at:,.0f}' for x in r.static_loads)} ms.",
    ]
    if fetched:
        start = med(x.fetch_start or 0 for x in fetched)
        first = med(x.fetch_first_byte or 0 for x in fetched)
        end = med(x.fetch_end or 0 for x in fetched)
        size = med(x.fetch_bytes or 0 for x in fetched)
        notes.append(
            f"Where mmstudio's time goes (medians, ms from navigation start): the branch fragment "
            f"(`/api/ui/chat/conversations/{{id}}`, {size / 1e6:.2f} MB of HTML) is requested at "
            f"{start:,.0f}, its first byte arrives at {first:,.0f} (server: {first - start:,.0f}), its last "
            f"at {end:,.0f}; swapping it in and the script's follow-up take {mm_at - end:,.0f}."
        )
    per_answer = ", ".join(f"{med(a):.1f}" for a in r.mm_tokens)
    notes.append(
        f"Tokens: {opts.answers} answers (after a warm-up one) of {opts.chunks} chunks "
        f"{opts.interval_ms:g} ms apart; mmstudio median per answer: {per_answer} ms (the warm-up answer, "
        f"which started the conversation: {med(r.warm_up):.1f} ms); "
        f"mmstudio max {max(mm_tok):.1f} ms, baseline max {max(base_tok):.1f} ms. Page clock minus "
        f"Python's: {r.offset[0]:+.2f} ms (± {r.offset[1]:.2f}), not corrected (it shifts both columns)."
    )
    return "\n".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000, help="messages on the long branch")
    parser.add_argument("--loads", type=int, default=5, help="page loads per target (after a warm-up)")
    parser.add_argument(
        "--answers", type=int, default=5, help="streamed answers per target (after a warm-up)"
    )
    parser.add_argument("--chunks", type=int, default=40, help="content chunks per answer")
    parser.add_argument("--interval-ms", type=float, default=50, help="upstream pause between chunks")
    parser.add_argument(
        "--chromium",
        default=CHROMIUM_DEFAULT,
        help="Chromium binary (default: $MMSTUDIO_CHROMIUM or /usr/bin/chromium)",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy mmstudio's log to this directory")
    args = parser.parse_args()
    if not os.access(args.chromium, os.X_OK):
        sys.exit(f"Chromium not found at {args.chromium}: apt-get install chromium (or pass --chromium)")
    try:
        import playwright.async_api  # noqa: F401 - only checks that it is installed
    except ImportError:
        sys.exit(
            "Playwright is missing: ./scripts/bench installs the dev dependencies (or pip install playwright)"
        )
    opts = Options(
        messages=args.messages,
        loads=max(1, args.loads),
        answers=max(1, args.answers),
        chunks=max(1, args.chunks),
        interval_ms=args.interval_ms,
        chromium=args.chromium,
        keep_logs=args.keep_logs,
    )
    print(run(opts))


if __name__ == "__main__":
    main()
