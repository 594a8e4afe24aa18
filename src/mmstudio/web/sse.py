"""Server-sent events as the studio writes them: named events with compact JSON data."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse

KEEPALIVE = b": keep-alive\n\n"  # a comment line: every SSE client ignores it
KEEPALIVE_S = 15.0  # proxies and load balancers close a connection idle for 60 s (nginx's default)

# No caching, and no buffering by a reverse proxy (nginx honours X-Accel-Buffering): tokens must flow.
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One `event:`/`data:` frame."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def sse_response(frames: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )


async def with_keepalive(frames: AsyncIterator[bytes], every_s: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
    """`frames`, with a keep-alive comment whenever none came for `every_s` seconds, so a quiet stream
    (the Jobs page while nothing runs) is not closed by a proxy as idle. The wait for the next frame is
    never cancelled by a keep-alive: it goes on in its own task."""
    iterator = aiter(frames)
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield KEEPALIVE
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            yield frame
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        if not pending.done():
            pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
            await pending
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
