"""Refuse request bodies over the configured size (`limits.max_body_mb`, default 20 MB) with 413,
before they are read into memory: by Content-Length when given, else while the body streams in.
Upload routes may have their own, larger limit (`uploads`: path → bytes, plus multipart overhead)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmstudio.errors import PayloadTooLarge
from mmstudio.web.errors import render_error

MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around an uploaded file


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # The upload route checks the file's own size and names its limit; here it only needs a
        # bound that is not lower than that limit.
        self.uploads = {
            path: max(limit + MULTIPART_SLACK, max_bytes) for path, limit in (uploads or {}).items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException passes through FastAPI's body parsing to the app's handler.
                    raise HTTPException(413, self._message(limit))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, limit: int) -> str:
        return (
            f"The request body is larger than the limit of {limit / 1_000_000:g} MB "
            "(set limits.max_body_mb in the config to change it)"
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = PayloadTooLarge(self._message(limit), field="body")
        await render_error(scope.get("path", ""), error)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
