"""A minimal, very fast OpenAI-compatible upstream for the gateway benchmark, run as its own process.

    python bench/fast_upstream.py --port 9000 [--token-delay-ms 0]

A raw asyncio.Protocol HTTP/1.1 server (uvloop when installed) with keep-alive and pipelining, so
that it is never the bottleneck of what it measures: about 10x the request rate of a FastAPI app
on the same core. It answers:

- `GET /v1/models`: one model, `bench-model`;
- `POST /v1/chat/completions`: a `chat.completion` with usage, or with `"stream": true` an SSE
  stream of `chat.completion.chunk`s (a role+content chunk, more content chunks, a finish chunk, a
  usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`), exactly in OpenAI's
  wire shapes. With `--token-delay-ms N` the chunks after the first are written N ms apart (in
  HTTP chunked encoding), so a gateway that buffers a stream shows up in time to first token.

Anything else is a 404 in OpenAI's error shape. The request body is parsed only as far as
`stream` and `stream_options` (a byte search, not a JSON parse: the point is to be cheap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import cast

MODEL = "bench-model"
WORDS = ("Hello", " from", " the", " fast", " upstream", ".")
USAGE = {"prompt_tokens": 9, "completion_tokens": len(WORDS), "total_tokens": 9 + len(WORDS)}

_MODELS = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"}]}
).encode()


def _completion(counter: int) -> bytes:
    return json.dumps(
        {
            "id": f"chatcmpl-bench{counter}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
            "system_fingerprint": None,
        },
        separators=(",", ":"),
    ).encode()


def _events(counter: int, include_usage: bool) -> list[bytes]:
    """The SSE events of one streamed answer, each `data: {...}\\n\\n`."""
    head = {
        "id": f"chatcmpl-bench{counter}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": None,
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, str], finish: str | None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    bodies = [chunk({"role": "assistant", "content": WORDS[0]}, None)]
    bodies += [chunk({"content": word}, None) for word in WORDS[1:]]
    bodies.append(chunk({}, "stop"))
    if include_usage:
        bodies.append({**head, "choices": [], "usage": USAGE})
    events = [b"data: " + json.dumps(b, separators=(",", ":")).encode() + b"\n\n" for b in bodies]
    events.append(b"data: [DONE]\n\n")
    return events


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: bytes, content_type: bytes, body: bytes, keep_alive: bool) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: ",
            content_type,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nx-request-id: req_bench\r\n",
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


_NOT_FOUND = json.dumps(
    {"error": {"message": "Unknown path", "type": "invalid_request_error", "param": None, "code": None}}
).encode()


class UpstreamProtocol(asyncio.Protocol):
    counter = 0

    def __init__(self, token_delay: float) -> None:
        self.token_delay = token_delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming = False  # a delayed stream is being written: later requests wait for it
        self.backlog = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.streaming:
            self.backlog += data
            return
        self.buffer += data
        self._drain()

    def _drain(self) -> None:
        # Every complete request in the buffer is answered in order (HTTP/1.1 pipelining).
        while self.transport is not None and not self.streaming:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            length = 0
            keep_alive = True
            for line in header_lines:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    keep_alive = False
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(request_line, body, keep_alive)
            if not keep_alive and not self.streaming and self.transport is not None:
                self.transport.close()
                return

    def _answer(self, request_line: str, body: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        UpstreamProtocol.counter += 1
        if method == "GET" and path == "/v1/models":
            self.transport.write(_response(b"200 OK", b"application/json", _MODELS, keep_alive))
        elif method == "POST" and path == "/v1/chat/completions":
            compact = body.replace(b" ", b"")
            if b'"stream":true' not in compact:
                payload = _completion(self.counter)
                self.transport.write(_response(b"200 OK", b"application/json", payload, keep_alive))
            else:
                include_usage = b'"include_usage":true' in compact
                self._stream(_events(self.counter, include_usage), keep_alive)
        else:
            self.transport.write(_response(b"404 Not Found", b"application/json", _NOT_FOUND, keep_alive))

    def _stream(self, events: list[bytes], keep_alive: bool) -> None:
        assert self.transport is not None
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nx-request-id: req_bench\r\n"
            + (b"" if keep_alive else b"connection: close\r\n")
            + b"\r\n"
        )
        if self.token_delay <= 0:
            self.transport.write(head + b"".join(_chunked(e) for e in events) + b"0\r\n\r\n")
            return
        self.transport.write(head + _chunked(events[0]))
        self.streaming = True
        loop = asyncio.get_running_loop()
        rest = events[1:]

        def step(index: int) -> None:
            if self.transport is None:
                return
            if index < len(rest):
                self.transport.write(_chunked(rest[index]))
                loop.call_later(self.token_delay, step, index + 1)
                return
            self.transport.write(b"0\r\n\r\n")
            self.streaming = False
            if not keep_alive:
                self.transport.close()
                return
            self.buffer += self.backlog
            self.backlog = b""
            self._drain()

        loop.call_later(self.token_delay, step, 0)


async def serve(host: str, port: int, token_delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(token_delay), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--token-delay-ms", type=float, default=0.0, help="pause between stream chunks after the first"
    )
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    runner(serve(args.host, args.port, args.token_delay_ms / 1000))


if __name__ == "__main__":
    main()
