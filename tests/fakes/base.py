"""The base of every fake upstream: a real HTTP server on a loopback port with scripted replies.

A vendor fake subclasses `FakeServer`, declares its routes, and renders `Reply` objects in its
own wire format. Tests script replies in order (`server.script(Reply(...), ...)`); when the
script is empty the `default` reply is used. Every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


class DropConnection(Exception):
    """Raised inside a streaming body to cut the connection without a clean end."""


@dataclass
class Reply:
    """One scripted answer.

    - `text` / `chunks`: the answer's text (streamed as `chunks` when given, else word by word).
    - `tool_calls`: ``[{"id": ..., "name": ..., "arguments": {...}}]``.
    - `status` + `error_body`: an error reply in the vendor's shape (`error_body` is sent as
      JSON; when None the fake renders its vendor's default body for that status).
    - `raw`: send these bytes verbatim with `status` (malformed JSON and similar).
    - `delay`: seconds before the response starts; `chunk_delay`: between stream chunks.
    - `drop_after`: in a stream, cut the connection after that many chunks; in a plain reply,
      send half the body and cut.
    - `stream_error_after` + `stream_error`: the vendor's in-band error after that many chunks
      (Ollama's ``{"error"}`` line, Anthropic's ``event: error``, an OpenAI error chunk).
    - `hold_after` + `resume`: in a stream, send that many chunks, then wait until the test sets
      `resume` (at most 10 s) before the rest: the client is mid-stream for as long as the test needs.
    """

    text: str = "Hello from the fake."
    chunks: list[str] | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: tuple[int, int] | None = (5, 7)
    finish_reason: str | None = None
    status: int = 200
    error_body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after: int | None = None
    stream_error_after: int | None = None
    stream_error: Any = None
    hold_after: int | None = None
    resume: threading.Event = field(default_factory=threading.Event)

    def text_chunks(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        if not self.text:
            return []
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class FakeServer:
    """Run a Starlette app under uvicorn in a thread on 127.0.0.1:<free port>."""

    name = "fake"

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- scripting -----------------------------------------------------------------------------

    def script(self, *replies: Reply) -> Self:
        with self._lock:
            self._script.extend(replies)
        return self

    def next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # -- routes (subclasses) -----------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def record(self, request: Request) -> Recorded:
        body = await request.body()
        rec = Recorded(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            body=body,
        )
        self.requests.append(rec)
        return rec

    # -- rendering helpers ---------------------------------------------------------------------

    @staticmethod
    async def pause(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def json_response(
        self, payload: Any, reply: Reply, status: int | None = None, media_type: str = "application/json"
    ) -> Response:
        body = reply.raw if reply.raw is not None else json.dumps(payload).encode()
        if reply.drop_after is not None:
            return self._truncated(body, status or reply.status, reply.headers, media_type)
        return Response(
            body, status_code=status or reply.status, headers=reply.headers, media_type=media_type
        )

    def _truncated(self, body: bytes, status: int, headers: dict[str, str], media_type: str) -> Response:
        async def half() -> AsyncIterator[bytes]:
            yield body[: max(1, len(body) // 2)]
            raise DropConnection("scripted drop")

        return StreamingResponse(
            half(),
            status_code=status,
            headers={**headers, "content-length": str(len(body))},
            media_type=media_type,
        )

    def stream_response(self, pieces: Iterable[bytes], reply: Reply, media_type: str) -> StreamingResponse:
        """Send `pieces` one by one, honouring `chunk_delay` and `drop_after`."""

        async def body() -> AsyncIterator[bytes]:
            for index, piece in enumerate(pieces):
                if reply.drop_after is not None and index >= reply.drop_after:
                    raise DropConnection("scripted drop")
                if index and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                if reply.hold_after is not None and index == reply.hold_after:
                    await asyncio.to_thread(reply.resume.wait, 10)
                yield piece

        return StreamingResponse(
            body(), status_code=reply.status, headers=reply.headers, media_type=media_type
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        app = Starlette(routes=self.routes())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=1,
            access_log=False,
            ws="websockets-sansio",  # not websockets.legacy, which is deprecated and will be removed
        )
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            assert self._server is not None
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def serve() -> None:
                assert self._server is not None
                task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
                # uvicorn exposes no start event; poll its flag (bounded by the caller's wait).
                while not self._server.started and not task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                started.set()
                await task

            try:
                loop.run_until_complete(serve())
            finally:
                started.set()
                loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        if not started.wait(10) or not self._server.started:
            raise RuntimeError(f"fake {self.name} server did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


class BlackHole:
    """A loopback port that accepts connections and never answers (for timeouts)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
