"""mmstudio benchmarks: one command, a table of measurements against baselines measured in the same run.

./scripts/bench              # everything
./scripts/bench normalize    # stream normalization only
./scripts/bench startup      # `mmstudio serve` start-up only
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = 1000
REPEATS = 60


# --- stream normalization ---------------------------------------------------------------------------


def openai_stream() -> list[str]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = [
        json.dumps(
            {
                **head,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ],
            }
        )
    ]
    out += [
        json.dumps({**head, "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]})
        for i in range(CHUNKS - 4)
    ]
    out.append(json.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(
        json.dumps(
            {
                **head,
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": 996, "total_tokens": 1001},
            }
        )
    )
    out.append("[DONE]")
    return out


def ollama_stream() -> list[str]:
    out = [
        json.dumps(
            {
                "model": "m",
                "created_at": "2026-11-21T10:00:00.000000Z",
                "message": {"role": "assistant", "content": f" w{i}"},
                "done": False,
            }
        )
        for i in range(CHUNKS - 1)
    ]
    out.append(
        json.dumps(
            {
                "model": "m",
                "created_at": "2026-11-21T10:00:01Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "total_duration": 1,
                "load_duration": 1,
                "prompt_eval_count": 5,
                "prompt_eval_duration": 1,
                "eval_count": 999,
                "eval_duration": 1,
            }
        )
    )
    return out


def anthropic_stream() -> list[str]:
    out = [
        json.dumps(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "m",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                },
            }
        ),
        json.dumps(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        ),
    ]
    out += [
        json.dumps(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f" w{i}"}}
        )
        for i in range(CHUNKS - 5)
    ]
    out += [
        json.dumps({"type": "content_block_stop", "index": 0}),
        json.dumps(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 995},
            }
        ),
        json.dumps({"type": "message_stop"}),
    ]
    return out


def gemini_stream() -> list[str]:
    def chunk(text: str, final: bool = False) -> str:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        body: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-test", "responseId": "r1"}
        if final:
            candidate["finishReason"] = "STOP"
            body["usageMetadata"] = {
                "promptTokenCount": 5,
                "candidatesTokenCount": 999,
                "totalTokenCount": 1004,
            }
        return json.dumps(body)

    return [chunk(f" w{i}") for i in range(CHUNKS - 1)] + [chunk(" end", final=True)]


STREAMS: dict[str, Callable[[], list[str]]] = {
    "openai_compat": openai_stream,
    "ollama": ollama_stream,
    "anthropic": anthropic_stream,
    "gemini": gemini_stream,
}


def cpu_ms(work: Callable[[], object]) -> float:
    """Median CPU milliseconds of `work` over REPEATS runs (after one warm-up)."""
    work()
    samples = []
    for _ in range(REPEATS):
        start = time.process_time_ns()
        work()
        samples.append((time.process_time_ns() - start) / 1e6)
    return statistics.median(samples)


def bench_normalize() -> list[list[str]]:
    import importlib

    rows = []
    for protocol, make in STREAMS.items():
        payloads = make()
        module = importlib.import_module(f"mmstudio.providers.{protocol}")

        def normalize(module: Any = module, payloads: list[str] = payloads) -> int:
            normalizer = module.StreamNormalizer()
            count = 0
            for payload in payloads:
                count += len(normalizer.feed(payload))
            count += len(normalizer.finish())
            return count

        def baseline(payloads: list[str] = payloads) -> None:
            for payload in payloads:
                if payload != "[DONE]":
                    json.loads(payload)

        events = normalize()
        assert events >= CHUNKS - 10, f"{protocol}: only {events} events from {CHUNKS} chunks"
        ours, floor = cpu_ms(normalize), cpu_ms(baseline)
        rows.append(
            [
                protocol,
                f"{ours:.2f}",
                f"{floor:.2f}",
                f"{ours / floor:.2f}x",
                "< 5 ms",
                "yes" if ours < 5 else "NO",
            ]
        )
    return rows


# --- start-up -------------------------------------------------------------------------------------------

BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def healthz(request): return JSONResponse({"status": "ok"})
uvicorn.run(Starlette(routes=[Route("/healthz", healthz)]), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def time_to_healthz(argv: Iterable[str], port: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 30:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                time.sleep(0.01)
        raise RuntimeError(f"{argv} did not answer /healthz within 30 s")
    finally:
        proc.terminate()
        proc.wait(30)


def bench_startup(runs: int = 3) -> list[list[str]]:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # accepts and never answers: a black-holed engine
    closed = free_port()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scenarios = {
                "engines closed": {
                    "OLLAMA_HOST": f"127.0.0.1:{closed}",
                    "LMSTUDIO_BASE_URL": f"127.0.0.1:{closed}",
                },
                "engines black-holed": {
                    "OLLAMA_HOST": f"127.0.0.1:{hole.getsockname()[1]}",
                    "LMSTUDIO_BASE_URL": f"127.0.0.1:{hole.getsockname()[1]}",
                },
            }
            baseline_samples = []
            for _ in range(runs):
                port = free_port()
                baseline_samples.append(
                    time_to_healthz([sys.executable, "-c", BARE_APP, str(port)], port, dict(os.environ))
                )
            baseline = statistics.median(baseline_samples)
            for name, extra in scenarios.items():
                samples = []
                for run in range(runs):
                    port = free_port()
                    env = {
                        **os.environ,
                        **extra,
                        "MMSTUDIO_DATA_DIR": f"{tmp}/{name}-{run}",
                        "MMSTUDIO_CONFIG": "",
                    }
                    samples.append(
                        time_to_healthz(
                            [
                                sys.executable,
                                "-m",
                                "mmstudio",
                                "serve",
                                "--port",
                                str(port),
                                "--log-level",
                                "warning",
                            ],
                            port,
                            env,
                        )
                    )
                ours = statistics.median(samples)
                rows.append(
                    [
                        name,
                        f"{ours * 1000:.0f}",
                        f"{baseline * 1000:.0f}",
                        f"{ours / baseline:.2f}x",
                        "< 1500 ms",
                        "yes" if ours < 1.5 else "NO",
                    ]
                )
    finally:
        hole.close()
    return rows


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="*", choices=["normalize", "startup", []], default=[])
    which = set(parser.parse_args().which or ["normalize", "startup"])
    print(f"mmstudio benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    if "normalize" in which:
        print(
            table(
                f"Normalizing a {CHUNKS}-chunk stream (CPU ms, median of {REPEATS}; baseline: json.loads)",
                ["adapter", "ms CPU", "baseline ms", "ratio", "target", "met"],
                bench_normalize(),
            )
        )
    if "startup" in which:
        print(
            table(
                "`mmstudio serve` launch to first /healthz 200 (ms, median of 3; baseline: bare uvicorn app)",
                ["scenario", "mmstudio ms", "baseline ms", "ratio", "target", "met"],
                bench_startup(),
            )
        )


if __name__ == "__main__":
    main()
