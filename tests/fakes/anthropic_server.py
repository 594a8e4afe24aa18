"""A fake Anthropic Messages API (`/v1/messages`, `/v1/models`) on a real loopback HTTP server.

What it checks, like the real API: the ``x-api-key`` header when the fake has an `api_key`
(401 ``authentication_error``), the ``anthropic-version`` header (400), a JSON body with
``max_tokens`` (400 ``invalid_request_error``), and the model name: a model not in `models`
answers 404 ``not_found_error`` unless a reply was scripted for that request.

How a `Reply` renders:

- 200, not streaming: ``{id, type:"message", role, model, content:[text block?, tool_use blocks],
  stop_reason, stop_sequence, usage:{input_tokens, output_tokens}}``.
- 200, streaming (``"stream": true`` in the body): SSE with ``event:`` lines, in the real order::

      message_start (usage.input_tokens) → content_block_start (text) → ping → content_block_delta
      (text_delta) … → content_block_stop → per tool call: content_block_start (tool_use, input {})
      → content_block_delta (input_json_delta: "" then fragments of the arguments' JSON) …
      → content_block_stop → message_delta (stop_reason, usage.output_tokens) → message_stop

  A second ``ping`` follows every other delta. `usage=None` leaves the usage objects out.
- `finish_reason` takes ours (``stop``, ``length``, ``tool_calls``, ``content_filter``) or
  Anthropic's own (``end_turn``, ``max_tokens``, ``tool_use``, ``refusal``, ...); by default
  ``tool_use`` when there are tool calls, else ``end_turn``.
- **Chunk counting** for `drop_after` and `stream_error_after` is in *content deltas* (text
  chunks, then tool-argument fragments): ``drop_after=2`` delivers the opening events and
  exactly two deltas, then cuts the connection; ``stream_error_after=0`` sends
  ``message_start`` (and the opening block events) and then the error. `stream_error` is the
  ``event: error`` payload (default ``overloaded_error``); the stream ends after it, as the
  real one does. `chunk_delay` applies between deltas.
- `status` >= 400: ``{"type":"error","error":{"type","message"}}`` (`error_body` overrides it;
  the type follows the status: 400 invalid_request_error, 401 authentication_error,
  402 billing_error, 403 permission_error, 404 not_found_error, 413 request_too_large,
  429 rate_limit_error, 500 api_error, 504 timeout_error, 529 overloaded_error). Errors are
  never streamed, even for a streaming request, like the real API before a stream starts.
- `raw`: these bytes verbatim with `status` (``text/event-stream`` for streaming requests).

Every route takes the next scripted reply (or the default), so a scripted error or `delay`
applies to ``GET /v1/models`` too; a success reply there just serves the model list, paginated
with ``limit`` (default 20), ``after_id`` / ``before_id`` and ``has_more``, ``first_id``,
``last_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply

ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Anthropic's error body for `status`."""
    default = (
        ("api_error", "Internal server error") if status >= 500 else ("invalid_request_error", "Bad request")
    )
    etype, text = ERROR_TYPES.get(status, default)
    return {"type": "error", "error": {"type": etype, "message": message or text}}


def sse(payload: dict[str, Any]) -> bytes:
    """One SSE event; its ``event:`` name is the payload's type, as Anthropic sends it."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


class FakeAnthropicServer(FakeServer):
    """Anthropic's Messages API. `models` are the known model ids (also the ``/v1/models`` list);
    `api_key`, when set, is required in ``x-api-key``."""

    name = "anthropic"

    def __init__(
        self, default: Reply | None = None, *, models: list[str] | None = None, api_key: str | None = None
    ) -> None:
        super().__init__(default)
        self.models = list(models) if models is not None else ["claude-test"]
        self.api_key = api_key
        self._ids = itertools.count(1)
        # Set on the server's own loop when the server stops, to cut scripted delays short.
        self._stopping: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._stopping_lock = threading.Lock()

    def stop(self) -> None:
        with self._stopping_lock:
            stopping, self._stopping = self._stopping, None
        if stopping is not None:  # so no delayed handler outlives the server's loop
            loop, event = stopping
            loop.call_soon_threadsafe(event.set)
        super().stop()

    async def wait(self, seconds: float) -> None:
        """`Reply.delay`, cut short when the server stops."""
        if seconds <= 0:
            return
        with self._stopping_lock:
            if self._stopping is None:
                self._stopping = (asyncio.get_running_loop(), asyncio.Event())
            event = self._stopping[1]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
        ]

    # -- helpers -------------------------------------------------------------------------------

    def take_reply(self) -> tuple[Reply, bool]:
        """The next reply and whether it was scripted (rather than the default)."""
        with self._lock:
            if self._script:
                return self._script.popleft(), True
            return self.default, False

    def error(
        self, status: int, message: str | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        return Response(
            json.dumps(error_body(status, message)),
            status_code=status,
            headers=self._headers(headers),
            media_type="application/json",
        )

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"request-id": f"req_fake{next(self._ids):06d}", **(extra or {})}

    def check_headers(self, request: Request) -> Response | None:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return self.error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    def error_reply(self, reply: Reply) -> Response:
        if reply.raw is not None:
            return self.json_response(None, reply)
        body = reply.error_body if reply.error_body is not None else error_body(reply.status)
        return self.json_response(body, reply)

    # -- /v1/messages --------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        await self.record(request)
        refused = self.check_headers(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self.error(400, "There was an error parsing the body of your request as JSON")
        if not isinstance(body, dict):
            return self.error(400, "The request body is not a valid JSON object")
        if "max_tokens" not in body:
            return self.error(400, "max_tokens: Field required")
        if not body.get("messages"):
            return self.error(400, "messages: Field required")
        model = str(body.get("model") or "")
        reply, scripted = self.take_reply()
        if not scripted and model not in self.models:
            return self.error(404, f"model: {model}")
        await self.wait(reply.delay)
        reply = dataclasses.replace(reply, headers={**self._headers(), **reply.headers})
        if reply.status >= 400:
            return self.error_reply(reply)
        stream = bool(body.get("stream"))
        if reply.raw is not None:
            return self.json_response(
                None, reply, media_type="text/event-stream" if stream else "application/json"
            )
        if stream:
            return self.stream_response(self.sse_pieces(reply, model), reply, media_type="text/event-stream")
        return self.json_response(self.message(reply, model), reply)

    @staticmethod
    def stop_reason(reply: Reply) -> str:
        if reply.finish_reason:
            return _STOP_REASONS.get(reply.finish_reason, reply.finish_reason)
        return "tool_use" if reply.tool_calls else "end_turn"

    def message(self, reply: Reply, model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        text = "".join(reply.text_chunks())
        if text:
            content.append({"type": "text", "text": text})
        for call in reply.tool_calls:
            content.append(
                {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["arguments"]}
            )
        message: dict[str, Any] = {
            "id": f"msg_fake{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": self.stop_reason(reply),
            "stop_sequence": None,
        }
        if reply.usage is not None:
            message["usage"] = {"input_tokens": reply.usage[0], "output_tokens": reply.usage[1]}
        return message

    def sse_pieces(self, reply: Reply, model: str) -> list[bytes]:
        """The stream as pieces: piece i ends with content delta i (see the module docstring)."""
        start: dict[str, Any] = {
            "id": f"msg_fake{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if reply.usage is not None:
            start["usage"] = {"input_tokens": reply.usage[0], "output_tokens": 1}
        pending = [sse({"type": "message_start", "message": start})]  # events not yet in a piece
        pieces: list[bytes] = []
        deltas = 0
        index = 0

        def delta(event: dict[str, Any]) -> bool:
            """Add one content delta; False when the scripted error ends the stream here."""
            nonlocal deltas, pending
            if reply.stream_error_after is not None and deltas >= reply.stream_error_after:
                return False
            pending.append(sse(event))
            deltas += 1
            if deltas % 2 == 0:
                pending.append(sse({"type": "ping"}))
            pieces.append(b"".join(pending))
            pending = []
            return True

        def finish_with_error() -> list[bytes]:
            payload = reply.stream_error if reply.stream_error is not None else OVERLOADED
            # str/bytes go out verbatim, to script malformed error events
            data = payload.encode() if isinstance(payload, str) else payload
            data = data if isinstance(data, bytes) else json.dumps(data).encode()
            return [*pieces, b"".join(pending) + b"event: error\ndata: " + data + b"\n\n"]

        chunks = reply.text_chunks()
        if chunks:
            pending.append(
                sse(
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
                )
            )
            pending.append(sse({"type": "ping"}))
            for chunk in chunks:
                if not delta(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": chunk},
                    }
                ):
                    return finish_with_error()
            pending.append(sse({"type": "content_block_stop", "index": 0}))
            index = 1
        for call in reply.tool_calls:
            pending.append(
                sse(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": call["id"],
                            "name": call["name"],
                            "input": {},
                        },
                    }
                )
            )
            arguments = json.dumps(call["arguments"])
            # The real API opens with an empty fragment and splits the JSON anywhere.
            for fragment in ["", *(arguments[i : i + 7] for i in range(0, len(arguments), 7))]:
                if not delta(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": fragment},
                    }
                ):
                    return finish_with_error()
            pending.append(sse({"type": "content_block_stop", "index": index}))
            index += 1
        if reply.stream_error_after is not None and deltas >= reply.stream_error_after:
            return finish_with_error()
        message_delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(reply), "stop_sequence": None},
        }
        if reply.usage is not None:
            message_delta["usage"] = {"output_tokens": reply.usage[1]}
        pending.append(sse(message_delta))
        pending.append(sse({"type": "message_stop"}))
        return [*pieces, b"".join(pending)]

    # -- /v1/models ----------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        await self.record(request)
        refused = self.check_headers(request)
        if refused is not None:
            return refused
        reply, _ = self.take_reply()
        await self.wait(reply.delay)
        if reply.status >= 400 or reply.raw is not None:
            return self.error_reply(reply)
        params = request.query_params
        try:
            limit = int(params.get("limit", "20"))
        except ValueError:
            return self.error(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return self.error(400, "limit: Input should be between 1 and 1000")
        ids = self.models
        if "after_id" in params:
            start = ids.index(params["after_id"]) + 1 if params["after_id"] in ids else len(ids)
            page, has_more = ids[start : start + limit], start + limit < len(ids)
        elif "before_id" in params:
            end = ids.index(params["before_id"]) if params["before_id"] in ids else 0
            page, has_more = ids[max(0, end - limit) : end], end - limit > 0
        else:
            page, has_more = ids[:limit], limit < len(ids)
        data = [
            {
                "type": "model",
                "id": model_id,
                "display_name": model_id.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
            }
            for model_id in page
        ]
        payload = {
            "data": data,
            "has_more": has_more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }
        return Response(json.dumps(payload), headers=self._headers(), media_type="application/json")
