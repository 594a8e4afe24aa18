"""Server-sent events as the studio writes them: named events with compact JSON data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse

# No caching, and no buffering by a reverse proxy (nginx honours X-Accel-Buffering): tokens must flow.
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One `event:`/`data:` frame."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def sse_response(frames: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )
