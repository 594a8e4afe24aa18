"""A fake Google Gemini API (``/v1beta``) on a loopback port, for adapter and router tests.

Routes (all under ``/v1beta``):

- ``GET /models`` — the model list, paginated with ``pageSize`` / ``pageToken`` →
  ``nextPageToken`` (page size capped at `max_page_size`, default 50 like the real API).
- ``GET /models/{model}`` — one model.
- ``POST /models/{model}:generateContent`` — one ``GenerateContentResponse``.
- ``POST /models/{model}:streamGenerateContent?alt=sse`` — ``data: <GenerateContentResponse>``
  events separated by ``\\r\\n\\r\\n``, no event names, no ``[DONE]``; the last chunk carries
  ``finishReason`` and the full ``usageMetadata``. Without ``alt=sse`` the real API streams one
  JSON array of the same chunks; the fake does that too (``[chunk,\\r\\nchunk]``).

Authentication: when `api_key` is set, the key must come in ``x-goog-api-key`` (or ``?key=``).
A missing key is 403 PERMISSION_DENIED; a wrong key is **400 INVALID_ARGUMENT** "API key not
valid..." with an ``ErrorInfo`` detail ``reason: API_KEY_INVALID``, as Google answers.

Replies: a POST to a model not in `models` is 404 NOT_FOUND unless a reply is scripted. Scripted
`Reply` fields: `text`/`chunks`; `tool_calls` (``{"name", "arguments", "id"?,
"thought_signature"?}`` → ``functionCall`` parts; ``id`` is sent only when given, as the real
API often omits it); `usage` (prompt, candidates) or None; `finish_reason` (a Gemini value such as
``"SAFETY"`` or ``"MAX_TOKENS"``; default ``"STOP"``); `status` + `error_body` (None renders
Google's default body for the status, see `google_error_body`); `raw`; `headers`; `delay`;
`chunk_delay`; `drop_after` (cut the connection after that many chunks); `stream_error_after` +
`stream_error` (an ``{"error":{...}}`` payload sent as a ``data:`` event, then a clean end).
`GeminiReply` adds `block_reason` (``promptFeedback.blockReason``, no candidates),
`omit_finish` (no chunk carries a finishReason) and `model_version`.

Every response carries ``responseId``, ``modelVersion``, ``usageMetadata`` (``promptTokenCount``,
``candidatesTokenCount``, ``totalTokenCount``, ``promptTokensDetails``) and candidate ``index``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply

_RPC_NAMES = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
BAD_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
_SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
)


def google_error_body(
    status: int, message: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    """Google's error shape for `status`, with the default message and details the API sends."""
    name, default = _RPC_NAMES.get(status, ("UNKNOWN", "Unknown error."))
    if details is None and status == 429:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": _QUOTA_METRIC,
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"},
        ]
    error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
    if details:
        error["details"] = details
    return {"error": error}


def bad_key_body() -> dict[str, Any]:
    """What the Gemini API answers (HTTP 400) for a key it does not know."""
    return google_error_body(
        400,
        BAD_KEY_MESSAGE,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": BAD_KEY_MESSAGE,
            },
        ],
    )


@dataclass
class GeminiReply(Reply):
    """A `Reply` with Gemini-only knobs (see the module docstring)."""

    block_reason: str | None = None
    omit_finish: bool = False
    model_version: str | None = None


class FakeGeminiServer(FakeServer):
    """The Gemini API's generateContent, streamGenerateContent and models routes, scripted."""

    name = "gemini"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        max_page_size: int = 50,
    ) -> None:
        super().__init__(default)
        self.models = list(models) if models is not None else ["gemini-test"]
        self.api_key = api_key
        self.max_page_size = max_page_size
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """What to put in `EndpointConfig.base_url`."""
        return f"{self.url}/v1beta"

    def routes(self) -> list[Route]:
        return [
            Route("/v1beta/models", self.list_models, methods=["GET"]),
            Route("/v1beta/models/{target}", self.get_model, methods=["GET"]),
            Route("/v1beta/models/{target}", self.generate, methods=["POST"]),
        ]

    # -- helpers -------------------------------------------------------------------------------

    def _auth_failure(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return JSONResponse(
                google_error_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established identity). "
                    "Please use API Key or other form of API consumer identity to call this API.",
                ),
                status_code=403,
            )
        if key != self.api_key:
            return JSONResponse(bad_key_body(), status_code=400)
        return None

    def model_info(self, model: str) -> dict[str, Any]:
        if "embedding" in model:
            methods, limits = ["embedContent", "countTextTokens", "countTokens"], (2048, 1)
        else:
            methods = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
            limits = (1048576, 65536)
        return {
            "name": f"models/{model}",
            "version": "001",
            "displayName": model.replace("-", " ").title(),
            "description": f"Fake {model}",
            "inputTokenLimit": limits[0],
            "outputTokenLimit": limits[1],
            "supportedGenerationMethods": methods,
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
            "maxTemperature": 2,
            "thinking": "embedding" not in model,
        }

    def _not_found(self, model: str, method: str = "generateContent") -> Response:
        return JSONResponse(
            google_error_body(
                404,
                f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
                "Call ListModels to see the list of available models and their supported methods.",
            ),
            status_code=404,
        )

    # -- routes --------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        await self.record(request)
        if (failure := self._auth_failure(request)) is not None:
            return failure
        try:
            size = min(int(request.query_params.get("pageSize", "50")), self.max_page_size)
            token = request.query_params.get("pageToken")
            start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        except ValueError:
            return JSONResponse(google_error_body(400, "Invalid page token or size."), status_code=400)
        size = size if size > 0 else min(50, self.max_page_size)
        page = self.models[start : start + size]
        body: dict[str, Any] = {"models": [self.model_info(m) for m in page]}
        if start + size < len(self.models):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return JSONResponse(body)

    async def get_model(self, request: Request) -> Response:
        await self.record(request)
        if (failure := self._auth_failure(request)) is not None:
            return failure
        model = request.path_params["target"]
        return JSONResponse(self.model_info(model)) if model in self.models else self._not_found(model)

    async def generate(self, request: Request) -> Response:
        recorded = await self.record(request)
        model, _, method = request.path_params["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return self._not_found(model, method or "this method")
        if (failure := self._auth_failure(request)) is not None:
            return failure
        try:
            recorded.json()
        except ValueError:
            return JSONResponse(google_error_body(400, "Invalid JSON payload received."), status_code=400)
        with self._lock:
            scripted = bool(self._script)
        if model not in self.models and not scripted:
            return self._not_found(model, method)
        reply = self.next_reply()
        await self._pause_unless_gone(request, reply.delay)
        sse = method == "streamGenerateContent" and request.query_params.get("alt") == "sse"
        media = "text/event-stream" if sse else "application/json"
        if reply.raw is not None or reply.status >= 400:
            body = reply.error_body if reply.error_body is not None else google_error_body(reply.status)
            return self.json_response(body, reply, media_type=media)
        chunks = self.render_chunks(reply, model)
        if method == "generateContent":
            return self.json_response(self.merge_chunks(chunks), reply)
        if sse:
            pieces = [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks]
            error = b"data: " + json.dumps(self._stream_error(reply)).encode() + b"\r\n\r\n"
        else:
            pieces = [(b"[" if i == 0 else b",\r\n") + json.dumps(c).encode() for i, c in enumerate(chunks)]
            pieces[-1] += b"]"
            error = b",\r\n" + json.dumps(self._stream_error(reply)).encode() + b"]"
        if reply.stream_error_after is not None:
            pieces = [*pieces[: reply.stream_error_after], error]
        return self.stream_response(pieces, reply, media)

    @staticmethod
    async def _pause_unless_gone(request: Request, seconds: float) -> None:
        # Stop waiting once the client hung up (a timeout test), so no handler outlives the server.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))
            if await request.is_disconnected():
                return

    # -- rendering -----------------------------------------------------------------------------

    @staticmethod
    def _stream_error(reply: Reply) -> Any:
        return reply.stream_error if reply.stream_error is not None else google_error_body(500)

    def render_chunks(self, reply: Reply, model: str) -> list[dict[str, Any]]:
        """The stream of ``GenerateContentResponse`` chunks for `reply` (one chunk when blocked)."""
        version = getattr(reply, "model_version", None) or model
        response_id = f"fake-resp-{next(self._ids):06d}"
        prompt, output = reply.usage if reply.usage is not None else (0, 0)

        def envelope(final: bool) -> dict[str, Any]:
            chunk: dict[str, Any] = {"modelVersion": version, "responseId": response_id}
            if reply.usage is not None:
                meta: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
                if final:
                    meta.update(candidatesTokenCount=output, totalTokenCount=prompt + output)
                meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
                chunk["usageMetadata"] = meta
            return chunk

        block = getattr(reply, "block_reason", None)
        if block:
            blocked = envelope(False)
            blocked["promptFeedback"] = {"blockReason": block, "safetyRatings": self._ratings(block)}
            return [blocked]
        finish = reply.finish_reason or "STOP"
        omit_finish = bool(getattr(reply, "omit_finish", False))
        texts = reply.text_chunks()
        calls = [self._call_part(call) for call in reply.tool_calls]
        # Text streams one piece per chunk; function calls and the finishReason ride on the last.
        part_lists: list[list[dict[str, Any]]] = [[{"text": t}] for t in texts]
        if calls or not part_lists:
            part_lists.append(calls)
        chunks: list[dict[str, Any]] = []
        for index, parts in enumerate(part_lists):
            final = index == len(part_lists) - 1
            chunk = envelope(final and not omit_finish)
            candidate: dict[str, Any] = {"index": 0}
            if parts:
                candidate["content"] = {"parts": parts, "role": "model"}
            if final and not omit_finish:
                candidate["finishReason"] = finish
                if finish not in ("STOP", "MAX_TOKENS"):
                    candidate["safetyRatings"] = self._ratings(finish)
            chunk["candidates"] = [candidate]
            chunks.append(chunk)
        return chunks

    @staticmethod
    def merge_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
        """What generateContent answers: the stream's chunks folded into one response."""
        merged = dict(chunks[-1])
        if "candidates" not in merged:
            return merged
        parts: list[dict[str, Any]] = []
        for chunk in chunks:
            for part in chunk["candidates"][0].get("content", {}).get("parts", []):
                if "text" in part and parts and "text" in parts[-1]:
                    parts[-1] = {"text": parts[-1]["text"] + part["text"]}
                else:
                    parts.append(part)
        candidate = dict(merged["candidates"][0])
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        merged["candidates"] = [candidate]
        return merged

    @staticmethod
    def _call_part(call: dict[str, Any]) -> dict[str, Any]:
        function: dict[str, Any] = {"name": call["name"], "args": call.get("arguments", {})}
        if call.get("id"):
            function["id"] = call["id"]
        part: dict[str, Any] = {"functionCall": function}
        if call.get("thought_signature"):
            part["thoughtSignature"] = call["thought_signature"]
        return part

    @staticmethod
    def _ratings(reason: str) -> list[dict[str, Any]]:
        return [
            {
                "category": category,
                "probability": "HIGH" if i == 0 and reason == "SAFETY" else "NEGLIGIBLE",
                **({"blocked": True} if i == 0 and reason == "SAFETY" else {}),
            }
            for i, category in enumerate(_SAFETY_CATEGORIES)
        ]
