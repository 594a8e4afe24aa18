"""A fake Ollama server speaking the native API (/api/chat, /api/tags, /api/show, /api/ps, /api/version).

Usage::

    with FakeOllamaServer(models={"llama3.2:latest": {"capabilities": ["completion", "tools"]}}) as server:
        adapter = OllamaAdapter(EndpointConfig(base_url=server.url, provider="ollama"), client)
        server.script(Reply(text="Hi there", usage=(3, 2)))

What it does, field for field as real Ollama (checked against the official ollama-python types):

- ``GET /`` answers ``Ollama is running`` (text/plain), as the real server does; auto-detection
  may use it or ``GET /api/version`` → ``{"version": ...}``.
- ``GET /api/tags`` lists `models`: ``name``, ``model``, ``modified_at``, ``size``, ``digest``,
  ``details{parent_model, format, family, families, parameter_size, quantization_level}``.
- ``GET /api/ps`` lists the loaded models (``expires_at``, ``size_vram``, ``context_length``). A
  model counts as loaded when its info says ``"loaded": True`` or after a chat to it.
- ``POST /api/show {"model"}`` → ``modelfile``, ``parameters``, ``template``, ``details``,
  ``model_info`` (``general.architecture``, ``<arch>.context_length``, ...), ``capabilities``,
  ``modified_at``; unknown model → 404 ``{"error": "model 'x' not found"}``.
- ``POST /api/chat``: ``stream`` defaults to true → NDJSON (``application/x-ndjson``) lines
  ``{"model","created_at","message":{"role":"assistant","content"},"done":false}``, tool calls in
  one chunk as ``message.tool_calls: [{"id", "function": {"index", "name", "arguments": {...}}}]``,
  then a final line with ``done: true``, ``done_reason``, the durations (nanoseconds) and
  ``prompt_eval_count``/``eval_count``. ``stream: false`` → that final object with the whole
  message. An unknown model → 404 ``{"error": "model 'x' not found"}`` unless a reply is scripted.
  Names without a tag mean ``:latest``, as in Ollama.

`models` maps a name to its info; every key is optional: ``family`` (default "llama"),
``architecture`` (default the family), ``parameter_size``, ``quantization_level``, ``capabilities``
(default ``["completion"]``), ``context_length``, ``size``, ``loaded``, and ``show_status`` (an
HTTP status for /api/show to fail with, to test resilience).

Scripted `Reply` features on /api/chat: `text`/`chunks`, `tool_calls`, `usage` (None omits the
counts), `finish_reason` (the ``done_reason``), `status` + `error_body` (default body
``{"error": "..."}``), `raw` (bytes sent verbatim, e.g. malformed JSON or a stream without its done
line), `headers`, `delay`, `chunk_delay`, `drop_after` (cut the connection), and
`stream_error_after` + `stream_error` (the in-band ``{"error": ...}`` line with HTTP 200; a str is
the message, a dict is sent as the line; without streaming the error is a 500 as in Ollama).
`route_errors` maps a path (``/api/tags``, ``/api/version``, ...) to a status it fails with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply

DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "llama3.2:latest": {
        "family": "llama",
        "parameter_size": "3.2B",
        "capabilities": ["completion", "tools"],
        "context_length": 131072,
    },
    "gemma3:4b": {
        "family": "gemma3",
        "parameter_size": "4.3B",
        "capabilities": ["completion", "vision"],
        "context_length": 131072,
    },
}

_STATUS_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    429: "too many requests, try again later",
    500: "an error was encountered while running the model",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _full_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class FakeOllamaServer(FakeServer):
    """A real HTTP server on 127.0.0.1 that answers like Ollama (see the module docstring)."""

    name = "ollama"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        models: dict[str, dict[str, Any]] | None = None,
        version: str = "0.12.3",
    ) -> None:
        super().__init__(default)
        source = DEFAULT_MODELS if models is None else models
        self.models: dict[str, dict[str, Any]] = {_full_name(k): dict(v) for k, v in source.items()}
        self.version = version
        self.loaded: set[str] = {name for name, info in self.models.items() if info.get("loaded")}
        self.route_errors: dict[str, int] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/", self._root, methods=["GET", "HEAD"]),
            Route("/api/version", self._version, methods=["GET"]),
            Route("/api/tags", self._tags, methods=["GET"]),
            Route("/api/ps", self._ps, methods=["GET"]),
            Route("/api/show", self._show, methods=["POST"]),
            Route("/api/chat", self._chat, methods=["POST"]),
        ]

    # -- model descriptions ---------------------------------------------------------------------

    def _info(self, name: str) -> dict[str, Any] | None:
        return self.models.get(_full_name(name))

    @staticmethod
    def _details(info: dict[str, Any]) -> dict[str, Any]:
        family = info.get("family", "llama")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": info.get("parameter_size", "3.2B"),
            "quantization_level": info.get("quantization_level", "Q4_K_M"),
        }

    def _entry(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-09-30T10:15:42.123456789Z",
            "size": info.get("size", 2019393189),
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": self._details(info),
        }

    def _error(self, status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def _route_error(self, path: str) -> Response | None:
        status = self.route_errors.get(path)
        return None if status is None else self._error(status, _STATUS_MESSAGES.get(status, "error"))

    # -- routes ---------------------------------------------------------------------------------

    async def _root(self, request: Request) -> Response:
        await self.record(request)
        return PlainTextResponse("Ollama is running")

    async def _version(self, request: Request) -> Response:
        await self.record(request)
        return self._route_error("/api/version") or JSONResponse({"version": self.version})

    async def _tags(self, request: Request) -> Response:
        await self.record(request)
        failed = self._route_error("/api/tags")
        if failed is not None:
            return failed
        return JSONResponse({"models": [self._entry(name, info) for name, info in self.models.items()]})

    async def _ps(self, request: Request) -> Response:
        await self.record(request)
        failed = self._route_error("/api/ps")
        if failed is not None:
            return failed
        expires = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        running = []
        for name in sorted(self.loaded):
            info = self.models.get(name, {})
            entry = self._entry(name, info)
            del entry["modified_at"]
            entry.update(
                expires_at=expires, size_vram=entry["size"], context_length=info.get("context_length", 4096)
            )
            running.append(entry)
        return JSONResponse({"models": running})

    async def _show(self, request: Request) -> Response:
        rec = await self.record(request)
        failed = self._route_error("/api/show")
        if failed is not None:
            return failed
        body = rec.json() or {}
        # Older clients send {"name": ...}; Ollama still accepts it.
        name = str(body.get("model") or body.get("name") or "")
        info = self._info(name)
        if info is None:
            return self._error(404, f"model '{name}' not found")
        if info.get("show_status"):
            status = int(info["show_status"])
            return self._error(status, _STATUS_MESSAGES.get(status, "error"))
        details = self._details(info)
        arch = info.get("architecture", details["family"])
        template = "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>"
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            f"FROM {name}\n"
            f'TEMPLATE """{template}"""\n'
            "PARAMETER stop <|eot_id|>\n"
        )
        return JSONResponse(
            {
                "license": "LICENSE TEXT",
                "modelfile": modelfile,
                "parameters": 'stop                           "<|eot_id|>"',
                "template": template,
                "details": details,
                "model_info": {
                    "general.architecture": arch,
                    "general.basename": details["family"],
                    "general.file_type": 15,
                    "general.parameter_count": 3212749888,
                    "general.quantization_version": 2,
                    f"{arch}.context_length": info.get("context_length", 4096),
                    f"{arch}.embedding_length": 3072,
                    f"{arch}.block_count": 28,
                },
                "capabilities": list(info.get("capabilities", ["completion"])),
                "modified_at": "2025-09-30T10:15:42.123456789Z",
            }
        )

    async def _chat(self, request: Request) -> Response:
        rec = await self.record(request)
        try:
            body = rec.json() or {}
        except ValueError:
            return self._error(400, "invalid character in request body")
        model = str(body.get("model") or "")
        if not model:
            return self._error(400, "model is required")
        with self._lock:
            scripted = bool(self._script)
        if not scripted and self._info(model) is None:
            return self._error(404, f"model '{model}' not found")
        reply = self.next_reply()
        await self._pause_unless_gone(request, reply.delay)
        if self._info(model) is not None:
            self.loaded.add(_full_name(model))
        stream = body.get("stream", True) is not False
        media_type = "application/x-ndjson" if stream else "application/json; charset=utf-8"
        if reply.raw is not None:
            return Response(reply.raw, status_code=reply.status, headers=reply.headers, media_type=media_type)
        if reply.status >= 400:
            payload = reply.error_body
            if payload is None:
                message = f"model '{model}' not found" if reply.status == 404 else None
                payload = {"error": message or _STATUS_MESSAGES.get(reply.status, "error")}
            return JSONResponse(payload, status_code=reply.status, headers=reply.headers)
        if not stream:
            if reply.stream_error_after is not None:
                return self._error(500, self._stream_error_message(reply))
            final = self._final(model, reply)
            final["message"] = self._message("".join(reply.text_chunks()), reply.tool_calls)
            return self.json_response(final, reply, media_type=media_type)
        return self.stream_response(self._lines(model, reply), reply, media_type)

    @staticmethod
    async def _pause_unless_gone(request: Request, seconds: float) -> None:
        """Wait `seconds`, but stop as soon as the client hangs up (as Ollama cancels a request whose
        client left), so a timed-out test leaves no handler sleeping when the server stops."""
        if seconds <= 0:
            return
        # The body is already read, so the next ASGI message is the client's disconnect.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.receive(), seconds)

    # -- rendering ------------------------------------------------------------------------------

    @staticmethod
    def _message(content: str, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            rendered = []
            for index, call in enumerate(tool_calls):
                arguments = call.get("arguments", {})
                if isinstance(arguments, str):
                    arguments = json.loads(arguments)
                entry: dict[str, Any] = {
                    "function": {"index": index, "name": call["name"], "arguments": arguments}
                }
                if call.get("id"):
                    entry = {"id": call["id"], **entry}
                rendered.append(entry)
            message["tool_calls"] = rendered
        return message

    @staticmethod
    def _stream_error_message(reply: Reply) -> str:
        error = reply.stream_error
        if isinstance(error, dict):
            return str(error.get("error", _STREAM_ERROR))
        return str(error) if error else _STREAM_ERROR

    def _final(self, model: str, reply: Reply) -> dict[str, Any]:
        final: dict[str, Any] = {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": reply.finish_reason or "stop",
            "total_duration": 1_234_567_890,
            "load_duration": 45_678_901,
        }
        if reply.usage is not None:
            prompt, completion = reply.usage
            final.update(
                prompt_eval_count=prompt,
                prompt_eval_duration=prompt * 2_000_000,
                eval_count=completion,
                eval_duration=completion * 20_000_000,
            )
        return final

    def _lines(self, model: str, reply: Reply) -> list[bytes]:
        lines: list[dict[str, Any]] = [
            {"model": model, "created_at": _now(), "message": self._message(chunk), "done": False}
            for chunk in reply.text_chunks()
        ]
        if reply.tool_calls:
            lines.append(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": self._message("", reply.tool_calls),
                    "done": False,
                }
            )
        if reply.stream_error_after is not None:
            error = reply.stream_error
            line = error if isinstance(error, dict) else {"error": self._stream_error_message(reply)}
            lines = [*lines[: reply.stream_error_after], line]
        else:
            lines.append(self._final(model, reply))
        # Compact separators, as Go's encoder writes them.
        return [json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines]
