"""Image generation benchmark: what mmstudio adds to an image call, the gallery, thumbnails, memory, and
chat latency while images are being made. One run, one machine, each number next to its baseline.

    python bench/images.py [--requests 60] [--generations 2000] [--gallery 10000]

- **Upstream**: this file run as ``upstream`` (its own process): a raw asyncio HTTP/1.1 keep-alive server
  answering ``GET /v1/models`` and ``POST /v1/images/generations`` in OpenAI's shape with one 2 MB PNG
  (random pixels, so incompressible), precomputed: it costs the upstream nothing per request.
  ``bench/fast_upstream.py`` serves chat for the event-loop measurement.
- **mmstudio**: ``mmstudio serve`` on a fresh data directory (SQLite), ``detect_local: false``, the image
  upstream as an ``openai_images`` endpoint and the chat upstream as an ``openai_compat`` one.

Measured:

1. added latency of ``/v1/images/generations`` (p50 over `--requests`, a new prompt each time so every
   image is decoded, checked, written with fsync and stored) over calling the upstream directly;
2. gallery first page (``GET /api/images?limit=40``) with `--gallery` stored images, against ``/healthz``
   on the same server (the round trip every request pays): the difference is the server's time;
3. a thumbnail served from cache, against ``/healthz`` the same way;
4. the server's RSS over `--generations` generations (the same prompt, so the disk holds one file);
5. chat (``/v1/chat/completions``) p50 / p99 / max while idle, and while two clients generate images
   back to back: a blocked event loop shows up as chat latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-image"
CHAT_MODEL = "bench-model"


# -- the image upstream -------------------------------------------------------------------------------


def _png_2mb() -> bytes:
    from PIL import Image

    image = Image.frombytes("RGB", (820, 820), os.urandom(820 * 820 * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def serve_upstream(port: int) -> None:
    png = _png_2mb()
    body = json.dumps(
        {"created": 1700000000, "data": [{"b64_json": base64.b64encode(png).decode()}]}, separators=(",", ":")
    ).encode()
    models = json.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "b"}]}
    ).encode()

    def response(payload: bytes) -> bytes:
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        return head.encode() + payload

    answers = {b"GET /v1/models": response(models), b"POST /v1/images/generations": response(body)}

    class Upstream(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while self.transport is not None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                method, path = head.split(b" ", 2)[:2]
                key = method + b" " + path.split(b"?")[0]
                self.transport.write(answers.get(key, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, "127.0.0.1", port)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


# -- processes and measuring ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, needle: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200 and needle in answer.text:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not show {needle!r} within {timeout:.0f} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: object, count: int) -> list[float]:
    assert callable(call)
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def fill_gallery(db: Path, count: int) -> None:
    """`count` image rows, as the media store writes them (the files are not needed to list them)."""
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        recipe = {"model_used": f"bench-img/{MODEL}", "provider": "bench-img", "prompt": f"bench image {i}"}
        rows.append(
            (
                uuid.uuid4().hex[:24],
                "image",
                "image/png",
                820,
                820,
                2_000_000,
                f"{i:064x}",
                (now - timedelta(days=1, seconds=count - i)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                json.dumps(recipe),
                "[]",
                30.0,
                f"bench-img/{MODEL}",
                "bench-img",
                f"bench image {i}",
            )
        )
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO media_assets (id, kind, mime, width, height, bytes, sha256, created_at, recipe, "
            "attempts, latency_ms, model_used, provider, prompt) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )


def run(opts: argparse.Namespace) -> str:
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="mmstudio-bench-images-"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    img_port, chat_port, mm_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], extra: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        handle = open(tmp / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env={**env, **extra}, stdout=handle, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        start([sys.executable, __file__, "upstream", "--port", str(img_port)], {}, "upstream.log")
        start(
            [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(chat_port)],
            {},
            "chat.log",
        )
        wait_for(f"http://127.0.0.1:{img_port}/v1/models", MODEL)
        wait_for(f"http://127.0.0.1:{chat_port}/v1/models", CHAT_MODEL)
        config = tmp / "mmstudio.yaml"
        config.write_text(
            "detect_local: false\n"
            "endpoints:\n"
            f"  - {{name: bench-img, platform: openai_images, base_url: 'http://127.0.0.1:{img_port}/v1'}}\n"
            f"  - {{name: fast, platform: openai_compat, base_url: 'http://127.0.0.1:{chat_port}/v1'}}\n"
        )
        data = tmp / "data"
        server = start(
            [sys.executable, "-m", "mmstudio", "serve", "--port", str(mm_port), "--log-level", "warning"],
            {"MMSTUDIO_DATA_DIR": str(data), "MMSTUDIO_CONFIG": str(config)},
            "mmstudio.log",
        )
        base = f"http://127.0.0.1:{mm_port}"
        wait_for(f"{base}/healthz", '"ready":true')
        wait_for(f"{base}/v1/models", f"bench-img/{MODEL}")
        wait_for(f"{base}/v1/models", f"fast/{CHAT_MODEL}")
        model = f"bench-img/{MODEL}"
        say = print
        results: dict[str, object] = {}

        with httpx.Client(timeout=60) as direct, httpx.Client(base_url=base, timeout=60) as studio:
            counter = iter(range(10**9))

            def upstream_call() -> None:
                body = {"model": MODEL, "prompt": f"bench {next(counter)}"}
                answer = direct.post(f"http://127.0.0.1:{img_port}/v1/images/generations", json=body)
                assert answer.status_code == 200 and answer.json()["data"][0]["b64_json"]

            def studio_call(prompt: str | None = None) -> None:
                body = {"model": model, "prompt": prompt or f"bench {next(counter)}", "fallbacks": False}
                answer = studio.post("/v1/images/generations", json=body)
                assert answer.status_code == 200, answer.text
                assert answer.json()["data"][0]["b64_json"]

            say("==> added latency of /v1/images/generations")
            timed(upstream_call, 5)
            timed(studio_call, 5)
            results["direct"] = timed(upstream_call, opts.requests)
            results["studio"] = timed(studio_call, opts.requests)

            say(f"==> gallery with {opts.gallery:,} images")
            fill_gallery(data / "mmstudio.db", opts.gallery)
            assert studio.get("/api/images", params={"limit": 40}).json()["total"] >= opts.gallery
            results["healthz"] = timed(lambda: studio.get("/healthz"), 200)
            results["gallery"] = timed(lambda: studio.get("/api/images", params={"limit": 40}), 100)
            results["search"] = timed(
                lambda: studio.get("/api/images", params={"limit": 40, "q": "image 99"}), 50
            )

            say("==> thumbnail from cache")
            first = next(
                i
                for i in studio.get("/api/images", params={"limit": 100}).json()["items"]
                if i["bytes"] != 2_000_000
            )
            assert studio.get(first["thumbUrl"]).status_code == 200  # made once
            results["thumb"] = timed(lambda: studio.get(first["thumbUrl"]), 200)

            say(f"==> memory over {opts.generations:,} generations")
            for _ in range(50):
                studio_call("the same prompt")
            rss_start = rss_mb(server.pid)
            marks = []
            for i in range(opts.generations):
                studio_call("the same prompt")
                if (i + 1) % max(1, opts.generations // 4) == 0:
                    marks.append(rss_mb(server.pid))
            results["rss"] = (rss_start, marks)

            say("==> chat latency, idle and while images are made")

            def chat() -> None:
                answer = studio.post(
                    "/v1/chat/completions",
                    json={"model": f"fast/{CHAT_MODEL}", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert answer.status_code == 200, answer.text

            timed(chat, 20)
            results["chat_idle"] = timed(chat, 300)
            stop = threading.Event()

            def generate_until_stopped() -> None:
                with httpx.Client(base_url=base, timeout=60) as own:
                    while not stop.is_set():
                        body = {"model": model, "prompt": f"load {uuid.uuid4().hex}", "fallbacks": False}
                        own.post("/v1/images/generations", json=body)

            workers = [threading.Thread(target=generate_until_stopped) for _ in range(2)]
            for worker in workers:
                worker.start()
            try:
                results["chat_busy"] = timed(chat, 300)
            finally:
                stop.set()
                for worker in workers:
                    worker.join()
        return report(opts, results)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def report(opts: argparse.Namespace, r: dict[str, object]) -> str:
    def p50(key: str) -> float:
        samples = r[key]
        assert isinstance(samples, list)
        return statistics.median(samples)

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    added = p50("studio") - p50("direct")
    gallery = p50("gallery") - p50("healthz")
    search = p50("search") - p50("healthz")
    thumb = p50("thumb") - p50("healthz")
    rss_start, marks = r["rss"]  # type: ignore[misc]
    growth = marks[-1] - rss_start
    idle, busy = r["chat_idle"], r["chat_busy"]
    assert isinstance(idle, list) and isinstance(busy, list)
    blocked = max(busy) - max(idle)

    def spread(samples: list[float]) -> str:
        return f"{pct(samples, 0.5):.2f} / {pct(samples, 0.99):.2f} / {max(samples):.2f}"

    lines = [
        f"### Images ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, Python {sys.version.split()[0]})",
        "",
        "| measurement | mmstudio | baseline | difference | target | met |",
        "|---|---|---|---|---|---|",
        f"| `/v1/images/generations`, 2 MB PNG, p50 of {opts.requests} | {p50('studio'):.2f} ms | "
        f"{p50('direct'):.2f} ms (upstream direct) | +{added:.2f} ms | ≤ 5 ms added | {yes(added <= 5)} |",
        f"| gallery first page, {opts.gallery:,} images, p50 | {p50('gallery'):.2f} ms | "
        f"{p50('healthz'):.2f} ms (`/healthz`) | {gallery:.2f} ms server | ≤ 30 ms | {yes(gallery <= 30)} |",
        f"| gallery text search, p50 | {p50('search'):.2f} ms | {p50('healthz'):.2f} ms (`/healthz`) | "
        f"{search:.2f} ms server | ≤ 30 ms | {yes(search <= 30)} |",
        f"| thumbnail from cache, p50 | {p50('thumb'):.2f} ms | {p50('healthz'):.2f} ms (`/healthz`) | "
        f"{thumb:.2f} ms server | ≤ 2 ms | {yes(thumb <= 2)} |",
        f"| RSS over {opts.generations:,} generations | {' → '.join(f'{m:.0f}' for m in marks)} MB | "
        f"{rss_start:.0f} MB (after warm-up) | {growth:+.0f} MB | flat (< 20 MB) | {yes(growth < 20)} |",
        f"| chat p50 / p99 / max while 2 clients make images | {spread(busy)} ms | {spread(idle)} ms (idle) "
        "| "
        f"max +{blocked:.2f} ms | loop never blocked > 20 ms | {yes(blocked <= 20)} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "upstream"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--generations", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=10_000)
    opts = parser.parse_args()
    if opts.mode == "upstream":
        serve_upstream(opts.port)
        return
    print(run(opts))


if __name__ == "__main__":
    main()
