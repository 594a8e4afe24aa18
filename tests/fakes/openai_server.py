"""A fake OpenAI-compatible server (/v1/models, /v1/chat/completions) in five vendor flavors.

Usage::

    with FakeOpenAIServer(flavor="lmstudio", models=["qwen2.5-7b"]) as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", provider="lmstudio")
        server.script(Reply(text="Hi there", usage=(3, 2)))

Flavors (checked against the openai-python SDK types and the vendors' docs):

- ``openai``: chunks carry ``id``, ``object``, ``created``, ``model``, ``system_fingerprint``,
  ``service_tier``; with ``include_usage`` every chunk has ``"usage": null`` except the last.
  Errors are ``{"error": {"message", "type", "param", "code"}}``.
- ``xai``: errors are ``{"code": "<description>", "error": "<message>"}``; a bad key is HTTP 400.
- ``lmstudio``: OpenAI-shaped, plus ``GET /api/v0/models`` (``type``, ``arch``, ``state``,
  ``max_context_length``, ...; override per model with `native_models`) and HTTP 200
  ``{"error": "Unexpected endpoint or method. (POST /path)"}`` for any unknown path.
- ``ollama_v1``: ``system_fingerprint: "fp_ollama"``, ``owned_by: "library"``.
- ``llamacpp``: errors are ``{"error": {"code": <status>, "message", "type"}}``.

``POST /v1/chat/completions`` answers per the request's ``stream`` field. A stream is
``data: <chunk>\\n\\n`` events: first a role chunk (``delta: {"role": "assistant", "content": ""}``,
no text), one chunk per text piece, tool calls as OpenAI streams them (a first delta with
``index``, ``id``, ``type`` and ``function.name`` and empty ``arguments``, then argument
fragments), a chunk with ``delta: {}`` and the ``finish_reason``, a usage chunk with
``choices: []`` only when ``stream_options.include_usage`` is set, and ``data: [DONE]``.

Scripted `Reply` fields: `text`/`chunks`, `tool_calls` (``{"id"?, "name", "arguments": dict |
str}``), `usage` (None omits it), `finish_reason` (default ``stop``/``tool_calls``), `status` +
`error_body` (None renders the flavor's default body for the status; an `error_body` with status
200 is sent as is, like LM Studio's 200 errors), `headers` (e.g. ``retry-after``), `raw` (bytes
sent verbatim: malformed JSON, or hand-written SSE such as a stream without ``[DONE]``),
`delay`, `chunk_delay`, `drop_after` and `stream_error_after` + `stream_error` (the in-band
``data: {"error": ...}`` chunk, after which the stream ends without ``[DONE]``; a dict with an
``error`` key is sent as is, another dict is wrapped in ``{"error": ...}``). Stream positions
count SSE events including the role chunk, so ``drop_after=2`` delivers the first text piece
only. Without streaming, `stream_error_after` becomes a 500. Every answer carries an
``x-request-id`` header.

A model not in `models` gets a 404 ``model_not_found`` in the flavor's shape unless a reply is
scripted. With `api_key` set, a wrong or missing Bearer key is refused on every route (401
``invalid_api_key``, or xAI's 400), echoing the key masked the way the vendor does.
`models_reply`, when set, is rendered by ``GET /v1/models`` instead of the list (errors, delays).
`error_payload(status, ...)` builds a body in the flavor's shape for scripting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply

FLAVORS = ("openai", "xai", "lmstudio", "ollama_v1", "llamacpp")
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_OWNERS = {"openai": "system", "xai": "xai", "lmstudio": "organization_owner", "ollama_v1": "library"}
_FINGERPRINTS = {
    "openai": "fp_f1a2b3c4d5",
    "xai": "fp_xai_fake",
    "ollama_v1": "fp_ollama",
    "llamacpp": "b6500-fake",
}
# (message, OpenAI type, OpenAI code, xAI description, llama.cpp type) per status.
_DEFAULTS: dict[int, tuple[str, str, str | None, str, str]] = {
    400: (
        "Invalid request.",
        "invalid_request_error",
        None,
        "Client specified an invalid argument",
        "invalid_request_error",
    ),
    401: (
        "Unauthorized.",
        "invalid_request_error",
        "invalid_api_key",
        "Unauthenticated",
        "authentication_error",
    ),
    403: (
        "You are not allowed to sample from this model.",
        "invalid_request_error",
        None,
        "The caller does not have permission to execute the specified operation",
        "permission_error",
    ),
    404: (
        "Not found.",
        "invalid_request_error",
        None,
        "Some requested entity was not found",
        "not_found_error",
    ),
    429: (
        "Rate limit reached for requests. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
        "Too many requests",
        "unavailable_error",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        "Internal error",
        "server_error",
    ),
    502: ("Bad gateway.", "server_error", None, "Bad gateway", "server_error"),
    503: (
        "The server is overloaded or not ready yet.",
        "server_error",
        None,
        "The service is currently unavailable",
        "unavailable_error",
    ),
}
_STREAM_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
_FRAGMENT = 8  # characters of tool-call arguments per streamed piece


def _mask(key: str, flavor: str) -> str:
    """The key as the vendor echoes it: OpenAI keeps 8 + 4 characters, xAI 2 + 2."""
    if flavor == "xai":
        return f"{key[:2]}***{key[-2:]}" if len(key) > 4 else "***"
    return f"{key[:8]}{'*' * (len(key) - 12)}{key[-4:]}" if len(key) > 12 else "***"


class FakeOpenAIServer(FakeServer):
    """A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible vendor.

    `url` is the server root; adapters take ``f"{server.url}/v1"`` as their base URL.
    See the module docstring for the flavors and the scripted `Reply` features.
    """

    name = "openai"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        flavor: str = "openai",
        models: list[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")
        super().__init__(default)
        self.flavor = flavor
        self.models: list[str] = list(models) if models is not None else ["gpt-test"]
        self.api_key = api_key
        self.models_reply: Reply | None = None
        self.native_models: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        routes = [
            Route("/v1/models", self._models, methods=_ALL_METHODS),
            Route("/v1/chat/completions", self._chat, methods=_ALL_METHODS),
        ]
        if self.flavor == "lmstudio":
            routes.append(Route("/api/v0/models", self._native_models, methods=_ALL_METHODS))
        routes.append(Route("/{path:path}", self._unknown, methods=_ALL_METHODS))
        return routes

    # -- error bodies ---------------------------------------------------------------------------

    def error_payload(
        self, status: int, message: str | None = None, *, code: str | None = None, type: str | None = None
    ) -> dict[str, Any]:
        """An error body in this flavor's shape; unspecified parts take the status's defaults."""
        default_message, oa_type, oa_code, xai_code, cpp_type = _DEFAULTS.get(
            status,
            (
                "Error.",
                "server_error" if status >= 500 else "invalid_request_error",
                None,
                "Error",
                "server_error" if status >= 500 else "invalid_request_error",
            ),
        )
        text = message or default_message
        if self.flavor == "xai":
            return {"code": code or xai_code, "error": text}
        if self.flavor == "llamacpp":
            return {"error": {"code": status, "message": text, "type": type or cpp_type}}
        return {"error": {"message": text, "type": type or oa_type, "param": None, "code": code or oa_code}}

    def _model_missing(self, model: str) -> dict[str, Any]:
        if self.flavor == "ollama_v1":
            return self.error_payload(
                404, f'model "{model}" not found, try pulling it first', type="api_error"
            )
        if self.flavor == "xai":
            return self.error_payload(
                404, f"The model {model} does not exist or your team does not have access to it."
            )
        return self.error_payload(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    def _refuse_key(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if given == self.api_key:
            return None
        headers = self._headers()
        body: dict[str, Any]
        if self.flavor == "xai":
            body = {
                "code": "Client specified an invalid argument",
                "error": f"Incorrect API key provided: {_mask(given, 'xai')}. "
                "You can obtain an API key from https://console.x.ai.",
            }
            return JSONResponse(body, status_code=400, headers=headers)
        if self.flavor == "llamacpp":
            return JSONResponse(self.error_payload(401, "Invalid API Key"), status_code=401, headers=headers)
        if given:
            message = (
                f"Incorrect API key provided: {_mask(given, self.flavor)}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            body = self.error_payload(401, message, code="invalid_api_key")
        else:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            body = {
                "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            }
        return JSONResponse(body, status_code=401, headers=headers)

    @staticmethod
    def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"x-request-id": f"req_{uuid.uuid4().hex}", **(extra or {})}

    # -- routes ---------------------------------------------------------------------------------

    async def _unknown(self, request: Request) -> Response:
        await self.record(request)
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        where = f"{request.method} {request.url.path}"
        if self.flavor == "lmstudio":
            return JSONResponse({"error": f"Unexpected endpoint or method. ({where})"}, status_code=200)
        if self.flavor == "ollama_v1":
            return PlainTextResponse("404 page not found", status_code=404)
        if self.flavor == "llamacpp":
            return JSONResponse(self.error_payload(404, "File Not Found"), status_code=404)
        return JSONResponse(
            self.error_payload(404, f"Invalid URL ({where})"), status_code=404, headers=self._headers()
        )

    async def _models(self, request: Request) -> Response:
        if request.method != "GET":
            return await self._unknown(request)
        await self.record(request)
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        reply = self.models_reply
        if reply is not None:
            await self._pause_unless_gone(request, reply.delay)
            reply = replace(reply, headers=self._headers(reply.headers))
            if reply.raw is None and (reply.status >= 400 or reply.error_body is not None):
                return self.json_response(reply.error_body or self.error_payload(reply.status), reply)
            if reply.raw is not None:
                return self.json_response(None, reply)
        owner = _OWNERS.get(self.flavor, "llamacpp")
        data = [
            {"id": m, "object": "model", "created": 1_715_367_049, "owned_by": owner} for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data}, headers=self._headers())

    async def _native_models(self, request: Request) -> Response:
        if request.method != "GET":
            return await self._unknown(request)
        await self.record(request)
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        data = []
        for model in self.models:
            entry: dict[str, Any] = {
                "id": model,
                "object": "model",
                "type": "llm",
                "publisher": "lmstudio-community",
                "arch": "llama",
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded",
                "max_context_length": 4096,
            }
            entry.update(self.native_models.get(model, {}))
            data.append(entry)
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        if request.method != "POST":
            return await self._unknown(request)
        rec = await self.record(request)
        refused = self._refuse_key(request)
        if refused is not None:
            return refused
        try:
            body = rec.json() or {}
        except ValueError:
            message = "We could not parse the JSON body of your request."
            return JSONResponse(self.error_payload(400, message), status_code=400, headers=self._headers())
        model = str(body.get("model") or "")
        with self._lock:
            scripted = bool(self._script)
        if not scripted and model not in self.models:
            return JSONResponse(self._model_missing(model), status_code=404, headers=self._headers())
        reply = self.next_reply()
        reply = replace(reply, headers=self._headers(reply.headers))
        await self._pause_unless_gone(request, reply.delay)
        stream = body.get("stream") is True
        if reply.raw is not None:
            if stream and reply.status < 400:
                return self.stream_response([reply.raw], reply, "text/event-stream")
            return self.json_response(None, reply)
        if reply.status >= 400 or reply.error_body is not None:
            payload = reply.error_body
            if payload is None:
                payload = (
                    self._model_missing(model) if reply.status == 404 else self.error_payload(reply.status)
                )
            return self.json_response(payload, reply)
        if stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return self.stream_response(self._events(model, reply, include_usage), reply, "text/event-stream")
        if reply.stream_error_after is not None:
            return self.json_response(self._stream_error(reply), replace(reply, status=500))
        return self.json_response(self._completion(model, reply), reply)

    @staticmethod
    async def _pause_unless_gone(request: Request, seconds: float) -> None:
        """Wait, but stop when the client hangs up, so a timed-out test leaves no sleeping handler."""
        if seconds <= 0:
            return
        # The body has been read, so the next ASGI message is the client's disconnect.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.receive(), seconds)

    # -- rendering ------------------------------------------------------------------------------

    def _envelope(self, model: str, kind: str) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": kind,
            "created": int(time.time()),
            "model": model,
        }
        if self.flavor == "lmstudio":
            envelope["system_fingerprint"] = model  # LM Studio puts the model id here
        elif self.flavor in _FINGERPRINTS:
            envelope["system_fingerprint"] = _FINGERPRINTS[self.flavor]
        if self.flavor == "openai":
            envelope["service_tier"] = "default"
        return envelope

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int] | None:
        if reply.usage is None:
            return None
        prompt, completion = reply.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def _finish_reason(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    @staticmethod
    def _arguments(call: dict[str, Any]) -> str:
        arguments = call.get("arguments", {})
        return arguments if isinstance(arguments, str) else json.dumps(arguments)

    def _completion(self, model: str, reply: Reply) -> dict[str, Any]:
        text = "".join(reply.text_chunks())
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if reply.tool_calls else "")}
        if self.flavor == "openai":
            message.update(refusal=None, annotations=[])
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.get("id") or f"call_{index}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": self._arguments(call)},
                }
                for index, call in enumerate(reply.tool_calls)
            ]
        completion = self._envelope(model, "chat.completion")
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self._finish_reason(reply),
        }
        completion["choices"] = [choice]
        usage = self._usage(reply)
        if usage is not None:
            completion["usage"] = usage
        return completion

    def _stream_error(self, reply: Reply) -> dict[str, Any]:
        error = reply.stream_error
        if isinstance(error, dict):
            return error if "error" in error else {"error": error}
        message = str(error) if error else _STREAM_ERROR_MESSAGE
        return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}

    def _events(self, model: str, reply: Reply, include_usage: bool) -> list[bytes]:
        envelope = self._envelope(model, "chat.completion.chunk")
        null_usage = {"usage": None} if include_usage and self.flavor == "openai" else {}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**envelope, "choices": [choice], **null_usage}

        role: dict[str, Any] = {"role": "assistant", "content": ""}
        if self.flavor == "openai":
            role["refusal"] = None
        events = [chunk(role)]
        events.extend(chunk({"content": piece}) for piece in reply.text_chunks())
        for index, call in enumerate(reply.tool_calls):
            first = {
                "index": index,
                "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            events.append(chunk({"tool_calls": [first]}))
            arguments = self._arguments(call)
            for start in range(0, len(arguments), _FRAGMENT):
                piece = {"index": index, "function": {"arguments": arguments[start : start + _FRAGMENT]}}
                events.append(chunk({"tool_calls": [piece]}))
        events.append(chunk({}, self._finish_reason(reply)))
        usage = self._usage(reply)
        if include_usage and usage is not None:
            events.append({**envelope, "choices": [], "usage": usage})
        if reply.stream_error_after is not None:
            events = [*events[: reply.stream_error_after], self._stream_error(reply)]
        lines = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events]
        if reply.stream_error_after is None:
            lines.append(b"data: [DONE]\n\n")
        return lines
