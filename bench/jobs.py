"""Video jobs benchmark: 1,000 durable video jobs through mmstudio's job worker against a fake OpenAI
videos API that finishes each in 2 s, and a restart with 100 jobs running. One run, one machine.

    python bench/jobs.py [--jobs 1000] [--concurrency 16] [--seconds 2] [--restart-jobs 100] [--quick]

- **Upstream**: this file run as ``upstream`` (its own process): a raw asyncio HTTP/1.1 keep-alive server
  speaking OpenAI's videos API (``POST /v1/videos`` multipart or JSON → a Video object ``queued``;
  ``GET /v1/videos/{id}`` → ``in_progress`` with its progress until `--seconds` after the create, then
  ``completed``, with an ``openai-poll-after-ms`` header; ``GET /v1/videos/{id}/content`` → a small real
  MP4, encoded once at start with PyAV). It counts creates and polls per video at ``GET /stats``;
  ``POST /control`` holds every video in progress (the restart part) and marks the moment after which
  it records each video's first poll. ``bench/fast_upstream.py`` serves chat.
- **mmstudio**: ``mmstudio serve`` on a fresh data directory (SQLite), ``detect_local: false``, Sora through
  ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` on the upstream, ``videos.concurrency`` and
  ``videos.per_provider.openai`` = `--concurrency`, ``videos.poll_interval_s`` unset (so the worker polls
  as often as the vendor's header asks), the chat upstream as an ``openai_compat`` endpoint.
- **Probe**: this file run as ``probe`` (its own process, so the bench's own work never delays it):
  ``/healthz`` every 10 ms and a chat completion every 50 ms, each timed, while idle and while the jobs run.

Measured:

1. wall time from the first ``POST /api/videos`` to the last job's ``finishedAt``, against the ideal
   jobs / concurrency x seconds;
2. polls per job (the upstream's count) against what the poll interval allows: seconds / interval + 2;
   and creates per job (exactly one);
3. event-loop blocking, from inside: the server's ``mmstudio_event_loop_lag_seconds`` histogram (how
   late its 10 ms timer fires) read from ``/metrics`` before and after the jobs: no tick late by more
   than 20 ms; and, as a client sees it, the ``/healthz`` round trip's maximum while jobs run less its
   idle median (this adds the probe's own scheduling on the shared cores, so it carries no target);
4. chat p50 / p99 idle and while jobs run;
5. the server's RSS at 0, ¼, ½, ¾ and all jobs complete, after a warm-up of 2 x `--concurrency` jobs
   (every worker slot used twice, so the worker's tasks, the thread pool and the connection pools have
   reached the size the run needs before the baseline is read);
6. restart: `--restart-jobs` jobs all ``running`` (accepted upstream, held in progress), SIGKILL the
   server, start it again on the same data (default 30 s leases: the new server sees the killed one is
   gone and takes its jobs over at once): the time from the end of start-up (``/healthz`` says ready)
   until the upstream has seen a poll of every one of them (from launch too), and that no job was
   submitted again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from images import free_port, pct, rss_mb, wait_for  # noqa: E402  (the bench's shared helpers)

UPSTREAM_MODEL = "sora-2"
VIDEO_MODEL = "openai/sora-2"
CHAT_MODEL = "bench-model"
KEY = "sk-bench-jobs-0123456789abcdef"
SIZE = "720x1280"

# -- the videos upstream ------------------------------------------------------------------------------


def _mp4() -> bytes:
    """A real H.264 MP4 (72x128, 1 s at 4 fps), encoded once with PyAV as tests/fakes/videos.py does."""
    import io

    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 72, 128, "yuv420p"
        for index in range(4):
            pixels = np.full((128, 72, 3), (40 + index * 3, 120, 200 - index * 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


_PART = re.compile(rb'name="([^"]+)"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)\r\n--', re.DOTALL)


def _fields(headers: dict[bytes, bytes], body: bytes) -> dict[str, str]:
    """The create's text fields, from multipart (what the adapter sends) or JSON."""
    if headers.get(b"content-type", b"").startswith(b"multipart/"):
        return {m.group(1).decode(): m.group(2).decode("utf-8", "replace") for m in _PART.finditer(body)}
    with contextlib.suppress(ValueError):
        data = json.loads(body or b"{}")
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def _take_request(buf: bytes) -> tuple[bytes, dict[bytes, bytes], bytes, int] | None:
    """The first whole request in `buf` (content-length or chunked body): request line, headers, body,
    and where it ends; None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    pos = end + 4
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                if len(buf) < eol + 4:
                    return None
                pos = eol + 4
                break
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
    else:
        length = int(headers.get(b"content-length", b"0"))
        if len(buf) < pos + length:
            return None
        body = buf[pos : pos + length]
        pos += length
    return lines[0], headers, body, pos


def serve_upstream(port: int, seconds: float, poll_ms: int) -> None:
    mp4 = _mp4()
    created: dict[str, float] = {}  # video id -> monotonic time of its create
    fields: dict[str, dict[str, str]] = {}
    polls: Counter[str] = Counter()
    since_mark: dict[str, float] = {}  # video id -> seconds after the mark of its first poll since
    state: dict[str, Any] = {"creates": 0, "contents": 0, "hold": False, "mark": None}
    ids = itertools.count(1)
    models = json.dumps(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
                for m in (
                    "sora-2",
                    "sora-2-pro",
                )
            ],
        }
    ).encode()

    def response(status: str, payload: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
        head = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(payload)}\r\n{extra}\r\n"
        return head.encode() + payload

    def not_found(video_id: str) -> bytes:
        error = {"error": {"message": f"Video {video_id} not found", "type": "invalid_request_error"}}
        return response("404 Not Found", json.dumps(error).encode())

    def video(video_id: str) -> dict[str, Any]:
        elapsed = time.monotonic() - created[video_id]
        done = not state["hold"] and elapsed >= seconds
        form = fields[video_id]
        born = int(time.time() - elapsed)
        return {
            "id": video_id,
            "object": "video",
            "status": "completed" if done else ("in_progress" if elapsed > 0.05 else "queued"),
            "progress": 100 if done else int(min(99.0, 100.0 * elapsed / seconds)),
            "model": form.get("model", UPSTREAM_MODEL),
            "seconds": form.get("seconds", "4"),
            "size": form.get("size", SIZE),
            "prompt": form.get("prompt"),
            "created_at": born,
            "completed_at": born + int(seconds) if done else None,
            "expires_at": born + 3600,
            "error": None,
            "remixed_from_video_id": None,
        }

    def answer(line: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        method, target = line.split(b" ", 2)[:2]
        path = target.split(b"?")[0].decode()
        if method == b"GET" and path == "/v1/models":
            return response("200 OK", models)
        if method == b"POST" and path == "/v1/videos":
            video_id = f"video_{next(ids):06d}{os.urandom(4).hex()}"
            created[video_id] = time.monotonic()
            fields[video_id] = _fields(headers, body)
            state["creates"] += 1
            payload = video(video_id)
            payload["status"], payload["progress"] = "queued", 0
            return response("200 OK", json.dumps(payload).encode())
        if path.startswith("/v1/videos/"):
            rest = path.removeprefix("/v1/videos/")
            video_id, _, sub = rest.partition("/")
            if video_id not in created:
                return not_found(video_id)
            if method == b"GET" and sub == "content":
                state["contents"] += 1
                return response("200 OK", mp4, "video/mp4")
            if method == b"GET" and not sub:
                polls[video_id] += 1
                if state["mark"] is not None and video_id not in since_mark:
                    since_mark[video_id] = time.monotonic() - state["mark"]
                extra = f"openai-poll-after-ms: {poll_ms}\r\n"
                return response("200 OK", json.dumps(video(video_id)).encode(), extra=extra)
            if method == b"DELETE" and not sub:
                return response(
                    "200 OK", json.dumps({"id": video_id, "object": "video", "deleted": True}).encode()
                )
        if method == b"GET" and path == "/stats":
            stats = {
                "creates": state["creates"],
                "contents": state["contents"],
                "hold": state["hold"],
                "polls": dict(polls),
                "since_mark": since_mark,
            }
            return response("200 OK", json.dumps(stats).encode())
        if method == b"POST" and path == "/control":
            control = json.loads(body or b"{}")
            if control.get("reset"):
                for table in (created, fields, polls, since_mark):
                    table.clear()
                state.update(creates=0, contents=0, mark=None)
            if "hold" in control:
                state["hold"] = bool(control["hold"])
            if control.get("mark"):
                since_mark.clear()
                state["mark"] = time.monotonic()
            return response("200 OK", b'{"ok":true}')
        return response("404 Not Found", b'{"error":{"message":"no such route"}}')

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
                request = _take_request(self.buffer)
                if request is None:
                    return
                line, headers, body, end = request
                self.buffer = self.buffer[end:]
                self.transport.write(answer(line, headers, body))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, "127.0.0.1", port)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


# -- the probe: /healthz every 10 ms and a chat every 50 ms, in its own process ---------------------


def run_probe(base: str, out: Path) -> None:
    import httpx

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    samples: dict[str, list[float]] = {"healthz": [], "chat": []}
    errors: Counter[str] = Counter()
    chat_body = {"model": f"fast/{CHAT_MODEL}", "messages": [{"role": "user", "content": "hi"}]}

    def loop(kind: str, every: float, method: str, path: str, body: dict[str, Any] | None) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(5):  # the connection and the first answers are not counted
                client.request(method, path, json=body)
            next_at = time.perf_counter()
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.request(method, path, json=body).status_code
                except httpx.HTTPError:
                    status = 0
                if status == 200:
                    samples[kind].append((time.perf_counter() - started) * 1000)
                else:
                    errors[f"{kind} {status}"] += 1
                next_at += every
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.perf_counter()

    threads = [
        threading.Thread(target=loop, args=("healthz", 0.010, "GET", "/healthz", None)),
        threading.Thread(target=loop, args=("chat", 0.050, "POST", "/v1/chat/completions", chat_body)),
    ]
    for thread in threads:
        thread.start()
    while not stop.wait(0.2):
        pass
    for thread in threads:
        thread.join()
    out.write_text(json.dumps({**samples, "errors": dict(errors)}))


# -- processes and measuring ------------------------------------------------------------------------


def stamp(text: str) -> float:
    """An ISO time from the API as epoch seconds (UTC when it carries no zone)."""
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.tmp = Path(tempfile.mkdtemp(prefix="mmstudio-bench-jobs-"))
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("_API_KEY", "_BASE_URL", "_API_SECRET")) and not k.startswith("MMSTUDIO_")
        }
        self.video_port, self.chat_port = free_port(), free_port()
        self.upstream = f"http://127.0.0.1:{self.video_port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], extra: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        handle = open(self.tmp / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env={**self.env, **extra}, stdout=handle, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def serve(
        self, name: str, port: int, *, concurrency: int, lease_s: float | None
    ) -> subprocess.Popen[bytes]:
        """`mmstudio serve` on the data directory `name` (kept across launches) with its own config."""
        config = self.tmp / f"{name}.yaml"
        lease = f"  lease_seconds: {lease_s}\n" if lease_s is not None else ""
        config.write_text(
            "detect_local: false\n"
            "videos:\n"
            f"  concurrency: {concurrency}\n"
            f"  per_provider: {{openai: {concurrency}}}\n"
            f"{lease}"
            "endpoints:\n"
            f"  - {{name: fast, platform: openai_compat, base_url: 'http://127.0.0.1:{self.chat_port}/v1'}}\n"
        )
        extra = {
            "MMSTUDIO_DATA_DIR": str(self.tmp / name),
            "MMSTUDIO_CONFIG": str(config),
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": f"{self.upstream}/v1",
        }
        argv = [sys.executable, "-m", "mmstudio", "serve", "--port", str(port), "--log-level", "warning"]
        return self.start(argv, extra, f"{name}.log")

    def ready(self, base: str) -> None:
        wait_for(f"{base}/healthz", '"ready":true')
        wait_for(f"{base}/v1/models", f"fast/{CHAT_MODEL}")
        wait_for(f"{base}/api/videos/models", f'"id":"{VIDEO_MODEL}"')
        import httpx

        models = httpx.get(f"{base}/api/videos/models", timeout=10).json()["models"]
        sora = next(m for m in models if m["id"] == VIDEO_MODEL)
        if not sora["usable"]:
            raise RuntimeError(f"{VIDEO_MODEL} is not usable: {sora['reason']}")

    def probe(self, base: str, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        out = self.tmp / f"probe-{name}.json"
        proc = self.start(
            [sys.executable, __file__, "probe", "--base", base, "--out", str(out)], {}, "probe.log"
        )
        return proc, out

    @staticmethod
    def finish_probe(probe: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any]:
        proc, out = probe
        proc.terminate()
        proc.wait(30)
        data: dict[str, Any] = json.loads(out.read_text())
        return data

    def control(self, **fields: Any) -> None:
        import httpx

        httpx.post(f"{self.upstream}/control", json=fields, timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        import httpx

        data: dict[str, Any] = httpx.get(f"{self.upstream}/stats", timeout=30).json()
        return data

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.opts.keep_logs:
            print(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def loop_lag(client: Any) -> dict[float, float]:
    """The server's `mmstudio_event_loop_lag_seconds` histogram: cumulative count per upper bound (s)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "mmstudio_event_loop_lag_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }


def lag_between(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Ticks between two readings: how many, how many late by more than 20 ms, and the bucket the
    latest one landed in (its upper bound in ms: the largest lag is at most that)."""
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    total = delta[math.inf]
    largest = min((le for le, n in delta.items() if n >= total), default=math.inf)
    below = max((le for le in delta if le < largest), default=0.0)
    return {"ticks": total, "late": total - delta[0.02], "largest": largest, "below": below}


def video_body(i: int) -> dict[str, Any]:
    return {
        "prompt": f"bench video {i}",
        "model": VIDEO_MODEL,
        "duration_s": 4,
        "resolution": SIZE,
        "fallbacks": False,
    }


def all_jobs(client: Any, total: int) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    while len(jobs) < total:
        page = client.get("/api/jobs", params={"kind": "video", "limit": 100, "offset": len(jobs)}).json()
        if not page["items"]:
            break
        jobs.extend(page["items"])
    return jobs


def run(opts: argparse.Namespace) -> str:
    import httpx

    bench = Bench(opts)
    say = print
    r: dict[str, Any] = {}
    try:
        bench.start(
            [
                sys.executable,
                __file__,
                "upstream",
                "--port",
                str(bench.video_port),
                "--seconds",
                str(opts.seconds),
                "--poll-ms",
                str(opts.poll_ms),
            ],
            {},
            "upstream.log",
        )
        bench.start(
            [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(bench.chat_port)],
            {},
            "chat.log",
        )
        wait_for(f"{bench.upstream}/v1/models", UPSTREAM_MODEL)
        wait_for(f"http://127.0.0.1:{bench.chat_port}/v1/models", CHAT_MODEL)

        # -- 1 to 5: many jobs at the set concurrency ------------------------------------------------
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = bench.serve("main", port, concurrency=opts.concurrency, lease_s=None)
        bench.ready(base)
        with httpx.Client(base_url=base, timeout=60) as studio:
            warm_n = 2 * opts.concurrency
            say(f"==> warm-up: {warm_n} jobs end to end (every worker slot used twice)")
            warm = [studio.post("/api/videos", json=video_body(-1 - i)) for i in range(warm_n)]
            assert all(w.status_code == 202 for w in warm), warm[0].text
            deadline = time.monotonic() + 120
            while any(studio.get(f"/api/jobs/{w.json()['id']}").json()["state"] != "complete" for w in warm):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {warm_n} warm-up jobs did not complete within 120 s")
                time.sleep(0.2)
            bench.control(reset=True)

            say(f"==> idle: /healthz every 10 ms and chat every 50 ms for {opts.idle_seconds:.0f} s")
            probe = bench.probe(base, "idle")
            lag_start = loop_lag(studio)
            time.sleep(opts.idle_seconds)
            r["idle"] = bench.finish_probe(probe)
            r["lag_idle"] = lag_between(lag_start, loop_lag(studio))

            say(f"==> {opts.jobs:,} jobs of {opts.seconds:g} s at concurrency {opts.concurrency}")
            marks = [round(opts.jobs * k / 4) for k in range(1, 5)]
            rss: list[tuple[int, float]] = [(0, rss_mb(server.pid))]
            done_at: list[float] = []
            stop_monitor = threading.Event()

            before = studio.get("/api/jobs/summary").json()["states"]
            ended_before = before["complete"] + before["failed"] + before["cancelled"]  # the warm-up
            lag_start = loop_lag(studio)

            def monitor() -> None:
                pending = list(marks)
                with httpx.Client(base_url=base, timeout=60) as own:
                    while not stop_monitor.is_set() and pending:
                        states = own.get("/api/jobs/summary").json()["states"]
                        finished = states["complete"] + states["failed"] + states["cancelled"] - ended_before
                        while pending and finished >= pending[0]:
                            rss.append((pending.pop(0), rss_mb(server.pid)))
                        if not pending:
                            done_at.append(time.time())
                        time.sleep(0.1)

            probe = bench.probe(base, "busy")
            time.sleep(1.0)  # the probe is connected and measuring before the first job
            watcher = threading.Thread(target=monitor)
            first_create = time.time()
            watcher.start()
            ids = []
            try:
                for i in range(opts.jobs):
                    made = studio.post("/api/videos", json=video_body(i))
                    assert made.status_code == 202, made.text
                    ids.append(made.json()["id"])
                r["created_in"] = time.time() - first_create
                watcher.join(opts.jobs / opts.concurrency * opts.seconds * 3 + 120)
            finally:
                stop_monitor.set()
                watcher.join()
                r["busy"] = bench.finish_probe(probe)
                r["lag_busy"] = lag_between(lag_start, loop_lag(studio))
            if not done_at:
                raise RuntimeError("the jobs did not all end in time")
            r["rss"] = rss
            jobs = [j for j in all_jobs(studio, opts.jobs + warm_n) if j["id"] in set(ids)]
            r["states"] = Counter(j["state"] for j in jobs)
            complete = [j for j in jobs if j["state"] == "complete"]
            last = max(stamp(j["finishedAt"]) for j in complete) if complete else done_at[0]
            r["wall"] = last - first_create
            r["observed"] = done_at[0] - first_create
            r["job_s"] = [stamp(j["finishedAt"]) - stamp(j["submittedAt"]) for j in complete]
            r["queue_s"] = [stamp(j["submittedAt"]) - stamp(j["createdAt"]) for j in complete]
            r["upstream"] = bench.stats()
        server.terminate()
        server.wait(30)

        # -- 6: restart with jobs running ----------------------------------------------------------
        say(f"==> restart: {opts.restart_jobs} running jobs, SIGKILL, start again")
        bench.control(reset=True, hold=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = bench.serve("restart", port, concurrency=opts.restart_jobs, lease_s=None)
        bench.ready(base)
        with httpx.Client(base_url=base, timeout=60) as studio:
            ids = []
            for i in range(opts.restart_jobs):
                made = studio.post("/api/videos", json=video_body(i))
                assert made.status_code == 202, made.text
                ids.append(made.json()["id"])
            deadline = time.monotonic() + 120
            while studio.get("/api/jobs/summary").json()["states"]["running"] < opts.restart_jobs:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {opts.restart_jobs} jobs were not all running within 120 s")
                time.sleep(0.1)
            time.sleep(1.0)  # each has been polled at least once by this server
        r["restart_creates_before"] = bench.stats()["creates"]
        server.send_signal(signal.SIGKILL)
        server.wait()
        killed = time.monotonic()
        bench.control(mark=True)
        launched = time.monotonic()
        server = bench.serve("restart", port, concurrency=opts.restart_jobs, lease_s=None)
        healthy: float | None = None  # launch → the first /healthz 200
        ready: float | None = None  # launch → /healthz says ready (migrated, registry loaded)
        deadline = launched + 60
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            if ready is None:
                with contextlib.suppress(httpx.HTTPError):
                    health = httpx.get(f"{base}/healthz", timeout=1)
                    if health.status_code == 200 and healthy is None:
                        healthy = time.monotonic() - launched
                    if health.status_code == 200 and '"ready":true' in health.text:
                        ready = time.monotonic() - launched
            seen = bench.stats()["since_mark"]
            if len(seen) >= opts.restart_jobs:
                break
            time.sleep(0.02)
        r["restart_launch_gap"] = launched - killed
        r["restart_healthz"] = healthy
        r["restart_ready"] = ready
        r["restart_seen"] = seen
        r["restart_creates_after"] = bench.stats()["creates"]
        bench.control(hold=False)  # let them finish: each still once submitted
        with httpx.Client(base_url=base, timeout=60) as studio:
            bench.ready(base)
            deadline = time.monotonic() + 120
            while True:
                states = studio.get("/api/jobs/summary").json()["states"]
                if states["complete"] + states["failed"] + states["cancelled"] >= opts.restart_jobs:
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            jobs = all_jobs(studio, opts.restart_jobs)
            r["restart_states"] = Counter(j["state"] for j in jobs)
            r["restart_attempts"] = Counter(j["attemptCount"] for j in jobs)
        r["restart_creates_final"] = bench.stats()["creates"]
        return report(opts, r)
    finally:
        bench.close()


def report(opts: argparse.Namespace, r: dict[str, Any]) -> str:
    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def spread(samples: list[float]) -> str:
        return f"{pct(samples, 0.5):.2f} / {pct(samples, 0.99):.2f} / {max(samples):.2f}"

    ideal = opts.jobs / opts.concurrency * opts.seconds
    ratio = r["wall"] / ideal
    interval = opts.poll_ms / 1000
    limit = int(opts.seconds / interval + 2)
    upstream = r["upstream"]
    polls = list(upstream["polls"].values()) or [0]
    creates = upstream["creates"]
    failed = opts.jobs - r["states"].get("complete", 0)
    idle, busy = r["idle"], r["busy"]
    health_idle, health_busy = idle["healthz"], busy["healthz"]
    blocked = max(health_busy) - pct(health_idle, 0.5)
    lag_idle, lag_busy = r["lag_idle"], r["lag_busy"]

    def lags(lag: dict[str, Any]) -> str:
        bound = (
            "over 5 s"
            if lag["largest"] == math.inf
            else f"{lag['below'] * 1000:g}-{lag['largest'] * 1000:g} ms"
        )
        return f"{lag['late']:,.0f} of {lag['ticks']:,.0f}, largest {bound}"

    chat_idle, chat_busy = idle["chat"], busy["chat"]
    p50_ratio = pct(chat_busy, 0.5) / pct(chat_idle, 0.5)
    p99_added = pct(chat_busy, 0.99) - pct(chat_idle, 0.99)
    rss = r["rss"]
    growth = rss[-1][1] / rss[0][1] - 1
    seen = r["restart_seen"]
    n = opts.restart_jobs
    resumed = max(seen.values()) if len(seen) >= n else None
    after_ready = resumed - (r["restart_ready"] or 0) if resumed is not None else None
    restart_creates = r["restart_creates_after"]
    job_s = r["job_s"] or [0.0]
    lines = [
        f"### Jobs ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.2f} at the end)",
        "",
        "| measurement | mmstudio | baseline | ratio / difference | target | met |",
        "|---|---|---|---|---|---|",
        f"| wall time, first create → last of {opts.jobs:,} jobs complete ({opts.seconds:g} s each, "
        f"concurrency {opts.concurrency}) | {r['wall']:.1f} s | {ideal:.1f} s (ideal: {opts.jobs:,} / "
        f"{opts.concurrency} x {opts.seconds:g} s) | {ratio:.3f}x | ≤ 1.10x | "
        f"{yes(ratio <= 1.10 and not failed)} |",
        f"| polls per job, max / mean (upstream's count) | {max(polls)} / {statistics.fmean(polls):.2f} | "
        f"{limit} ({opts.seconds:g} s / {interval:g} s `openai-poll-after-ms` + 2) | | ≤ {limit} | "
        f"{yes(max(polls) <= limit)} |",
        f"| creates (paid submissions) | {creates:,} | {opts.jobs:,} jobs | | one per job | "
        f"{yes(creates == opts.jobs)} |",
        f"| event-loop lag in the server (its 10 ms timer), ticks late by > 20 ms / largest, while jobs run "
        f"| {lags(lag_busy)} | {lags(lag_idle)} (idle) | | loop never blocked > 20 ms | "
        f"{yes(lag_busy['late'] == 0)} |",
        f"| `/healthz` round trip every 10 ms from the probe, p50 / p99 / max, while jobs run | "
        f"{spread(health_busy)} ms | {spread(health_idle)} ms (idle) | max - idle p50 = {blocked:.2f} ms | "
        "(a client's view: adds the probe's own scheduling on the shared cores) | |",
        f"| chat p50 / p99 / max (one every 50 ms) while jobs run | {spread(chat_busy)} ms | "
        f"{spread(chat_idle)} ms (idle) | p50 {p50_ratio:.2f}x, p99 {p99_added:+.2f} ms | p50 ≤ 1.25x, "
        f"p99 ≤ +20 ms | {yes(p50_ratio <= 1.25 and p99_added <= 20)} |",
        f"| RSS at {' / '.join(f'{k:,}' for k, _ in rss)} complete | "
        f"{' → '.join(f'{mb:.0f}' for _, mb in rss)} MB | {rss[0][1]:.0f} MB (before the first job) | "
        f"{growth * 100:+.1f}% | ≤ +10% | {yes(growth <= 0.10)} |",
        f"| restart: {n} running jobs, SIGKILL, start-up done (`/healthz` ready) → every one polled again | "
        + (f"{after_ready:.2f} s" if after_ready is not None else f"only {len(seen)} of {n} in 60 s")
        + f" | launch → `/healthz` 200: {r['restart_healthz'] or 0:.2f} s, → ready: "
        f"{r['restart_ready'] or 0:.2f} s | "
        + (f"launch → all polled: {resumed:.2f} s" if resumed is not None else "")
        + " | ≤ 3 s after start-up | "
        f"{yes(after_ready is not None and after_ready <= 3)} |",
        f"| restart: creates before → after the restart | {r['restart_creates_before']} → "
        f"{restart_creates} | {n} jobs | | no job submitted again | "
        f"{yes(r['restart_creates_before'] == restart_creates == n)} |",
        "",
        f"{opts.jobs:,} jobs: {dict(r['states'])}; created in {r['created_in']:.1f} s; each job submitted → "
        f"complete p50 {pct(job_s, 0.5):.2f} s, max {max(job_s):.2f} s; created → submitted p50 "
        f"{pct(r['queue_s'] or [0.0], 0.5):.1f} s; the bench saw all done {r['observed']:.1f} s after "
        f"the first create; polls per job: {dict(sorted(Counter(polls).items()))}; MP4 downloads "
        f"{upstream['contents']:,}. "
        f"Probe samples idle / busy: /healthz {len(health_idle):,} / {len(health_busy):,}, chat "
        f"{len(chat_idle):,} / {len(chat_busy):,}; probe errors {idle['errors'] or 'none'} / "
        f"{busy['errors'] or 'none'}. Restart: launched {r['restart_launch_gap'] * 1000:.0f} ms after the "
        f"kill (30 s leases, taken over at once, concurrency {n}); first poll of a resumed job "
        + (f"{min(seen.values()):.2f} s" if seen else "never")
        + f" after launch; after the hold was lifted: {dict(r['restart_states'])}, attempts per job "
        f"{dict(r['restart_attempts'])}, creates {r['restart_creates_final']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "upstream", "probe"])
    parser.add_argument("--port", type=int, default=0, help="upstream: its port")
    parser.add_argument("--base", default="", help="probe: mmstudio's URL")
    parser.add_argument("--out", type=Path, default=Path("probe.json"), help="probe: where its samples go")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the upstream takes per video")
    parser.add_argument("--poll-ms", type=int, default=500, help="the upstream's openai-poll-after-ms")
    parser.add_argument("--restart-jobs", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="the idle probe's duration")
    parser.add_argument("--quick", action="store_true", help="100 jobs, 20 for the restart, 5 s idle")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with the servers' logs")
    opts = parser.parse_args()
    if opts.mode == "upstream":
        serve_upstream(opts.port, opts.seconds, opts.poll_ms)
        return
    if opts.mode == "probe":
        run_probe(opts.base, opts.out)
        return
    if opts.quick:
        opts.jobs, opts.restart_jobs, opts.idle_seconds = 100, 20, 5.0
    print(run(opts))


if __name__ == "__main__":
    main()
