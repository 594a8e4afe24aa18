"""The Ollama native API adapter (/api/chat, /api/tags, /api/show, /api/ps, /api/version)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar

from mmstudio.errors import (
    ContextTooLong,
    InvalidRequest,
    ProviderError,
    ProviderProtocolError,
    ProviderUnavailable,
    UpstreamModelNotFound,
    redact,
)
from mmstudio.providers._http import CONTEXT_MARKERS, HTTPAdapter, error_for_status, parse_retry_after
from mmstudio.providers.base import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    EndpointConfig,
    FinishReason,
    ImagePart,
    Message,
    ProbeResult,
    RemoteModel,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["OllamaAdapter", "StreamNormalizer", "build_chat_body", "map_ollama_error"]

_SHOW_CONCURRENCY = 4
_NOT_OLLAMA = "answered with something that is not an Ollama answer (not an Ollama server?)"
_DETAIL_KEYS = ("format", "family", "families", "parameter_size", "quantization_level")
# The C scanner behind json.loads, called directly: it skips two whitespace regex matches per
# call, which is a third of the cost of normalizing a token line. `feed` falls back to
# json.loads whenever the fast path does not consume the whole line.
_decoder: Any = json.JSONDecoder()  # typeshed does not declare scan_once
_scan_once: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once


# --- errors -----------------------------------------------------------------------------------


def map_ollama_error(
    config: EndpointConfig,
    status: int | None,
    message: str,
    model: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an Ollama error message to our tree. `status` is None for an in-band error line that
    arrived inside an HTTP 200 answer."""
    lowered = message.lower()
    label = config.provider or "ollama"
    # Ollama answers an unknown model with 404, but some versions (and /api/show) use 400.
    if status in (400, 404, None) and "not found" in lowered and "model" in lowered:
        where = f"HTTP {status}" if status is not None else "an error"
        return UpstreamModelNotFound(
            f"{label} returned {where}: {redact(message, config.secrets)}",
            provider=config.provider,
            model=model,
            status=status,
        )
    if status == 404 and "model" not in lowered:
        # Not Ollama's own 404 (which names the model) but a missing route: wrong base URL.
        return ProviderProtocolError(
            f"{label} returned HTTP 404 ({redact(message[:100], config.secrets)!r}): no such endpoint at "
            f"{config.base_url}; is it an Ollama server?",
            provider=config.provider,
            model=model,
            status=404,
        )
    if status is not None:
        return error_for_status(status, message, config=config, model=model, retry_after=retry_after)
    full = f"{label} reported an error inside its answer: {redact(message, config.secrets)}"
    if any(marker in lowered for marker in CONTEXT_MARKERS):
        return ContextTooLong(full, provider=config.provider, model=model)
    # An in-band error means the runner failed while generating: another try may well work.
    return ProviderUnavailable(full, provider=config.provider, model=model)


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, str):
            return error
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return text[:500]


def _protocol_error(config: EndpointConfig, what: str, model: str | None) -> ProviderProtocolError:
    where = config.provider or "ollama"
    if config.base_url:
        where += f" at {config.base_url}"
    return ProviderProtocolError(
        f"{where} {redact(what, config.secrets)}", provider=config.provider, model=model
    )


# --- request translation ----------------------------------------------------------------------


def _image_base64(image: ImagePart) -> str:
    if image.data is not None:
        return image.as_base64()
    url = image.url or ""
    # A data URL already carries the bytes; only a remote URL is impossible for Ollama.
    if url.startswith("data:") and ";base64," in url:
        return url.split(",", 1)[1]
    raise InvalidRequest(
        "Ollama needs inline image data (bytes or a base64 data URL); it cannot fetch an image from a URL "
        f"({url[:80]!r})",
        field="messages",
    )


def _translate_message(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    results = message.tool_results
    for result in results:
        out.append(
            {
                "role": "tool",
                "content": result.content,
                "tool_name": result.name,
                "tool_call_id": result.tool_call_id,
            }
        )
    text = message.text_content
    images = message.images
    calls = message.tool_calls
    if results and not (text or images or calls):
        return out
    if message.role == "tool" and results:
        # Leftover text in a tool message has no call to belong to; keep it as a plain tool turn.
        out.append({"role": "tool", "content": text})
        return out
    entry: dict[str, Any] = {"role": message.role, "content": text}
    if images:
        entry["images"] = [_image_base64(image) for image in images]
    if calls:
        entry["tool_calls"] = [
            {"id": call.id, "function": {"name": call.name, "arguments": call.arguments}} for call in calls
        ]
    out.append(entry)
    return out


def build_chat_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The /api/chat body for `request`. `request.extra` is merged last (its `options` into ours)."""
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        messages.extend(_translate_message(message))
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": stream}
    # Ollama has no tool_choice; "none" is honoured by not offering the tools at all.
    if request.tools and request.tool_choice != "none":
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in request.tools
        ]
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.seed is not None:
        options["seed"] = request.seed
    if request.stop:
        options["stop"] = list(request.stop)
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.json_mode:
        body["format"] = "json"
    for key, value in request.extra.items():
        if key == "options" and isinstance(value, Mapping):
            options.update(value)
        else:
            body[key] = value
    if options:
        body["options"] = options
    return body


# --- response translation ---------------------------------------------------------------------


def _finish_reason(done_reason: Any, had_tool_calls: bool) -> FinishReason:
    # Ollama reports done_reason "stop" even when it returns tool calls.
    if had_tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(data: Mapping[str, Any]) -> Usage | None:
    prompt = data.get("prompt_eval_count")
    completion = data.get("eval_count")
    if prompt is None and completion is None:
        return None
    return Usage(int(prompt or 0), int(completion or 0))


class StreamNormalizer:
    """Turns Ollama's NDJSON chat lines into `StreamEvent`s, one line at a time.

    `feed` takes one line and returns its events; `finish` is called when the body ends and
    raises unless a ``done: true`` line was seen, so a cut stream never looks complete. Kept
    lean (one JSON parse and a few dict lookups per line): it runs once per token.
    """

    __slots__ = ("_calls", "_config", "_done", "_model")

    def __init__(self, config: EndpointConfig | None = None, model: str | None = None) -> None:
        self._config = config or EndpointConfig(base_url="", provider="ollama")
        self._model = model
        self._calls = 0
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, line: str) -> list[StreamEvent]:
        try:
            data, end = _scan_once(line, 0)
            if end != len(line):
                raise ValueError(line)
        except (StopIteration, ValueError):
            if not line or line.isspace():
                return []
            data = self._parse_slowly(line)
        if type(data) is not dict:
            raise _protocol_error(self._config, _NOT_OLLAMA, self._model)
        error = data.get("error")
        if error:
            raise map_ollama_error(self._config, None, str(error), self._model)
        if self._done:
            return []
        events: list[StreamEvent] = []
        message = data.get("message")
        if message:
            try:
                content = message.get("content")
                if content:
                    if type(content) is not str:
                        raise TypeError(content)
                    events.append(StreamEvent("text", content))
                calls = message.get("tool_calls")
                if calls:
                    self._tool_call_events(calls, events)
            except (AttributeError, TypeError) as exc:
                what = f"sent a malformed message: {line[:200]!r}"
                raise _protocol_error(self._config, what, self._model) from exc
        if data.get("done"):
            self._done = True
            usage = _usage(data)
            if usage is not None:
                events.append(StreamEvent("usage", usage=usage))
            reason = _finish_reason(data.get("done_reason"), self._calls > 0)
            events.append(StreamEvent("finish", finish_reason=reason))
        elif message is None:
            raise _protocol_error(self._config, _NOT_OLLAMA, self._model)
        return events

    def _parse_slowly(self, line: str) -> Any:
        # Leading or trailing whitespace, or not JSON at all: json.loads decides and explains.
        try:
            return json.loads(line)
        except ValueError as exc:
            what = f"sent a stream line that is not JSON: {line[:200]!r}"
            raise _protocol_error(self._config, what, self._model) from exc

    def _tool_call_events(self, calls: Any, events: list[StreamEvent]) -> None:
        for call in calls:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            # Ollama sends a whole object; tolerate servers that already send a JSON string.
            text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
            index = self._calls
            self._calls += 1
            delta = ToolCallDelta(
                index=index, id=call.get("id") or f"call_{index}", name=function.get("name"), arguments=text
            )
            events.append(StreamEvent("tool_call", tool_call=delta))

    def finish(self) -> list[StreamEvent]:
        if not self._done:
            raise _protocol_error(self._config, "ended the stream without its final done line", self._model)
        return []


def _parse_tool_calls(raw: Any, config: EndpointConfig, model: str) -> tuple[ToolCall, ...]:
    if not raw:
        return ()
    calls: list[ToolCall] = []
    for index, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _protocol_error(config, f"sent a malformed tool call: {str(call)[:200]}", model)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                what = f"sent tool arguments that are not JSON: {arguments[:200]!r}"
                raise _protocol_error(config, what, model) from exc
        if arguments is not None and not isinstance(arguments, dict):
            what = f"sent tool arguments that are not an object: {str(arguments)[:200]}"
            raise _protocol_error(config, what, model)
        calls.append(
            ToolCall(
                id=call.get("id") or f"call_{index}",
                name=function["name"],
                arguments=arguments or {},
            )
        )
    return tuple(calls)


def _capabilities(show: Any, default: Capabilities) -> Capabilities:
    if not isinstance(show, dict):
        return default
    info = show.get("model_info")
    context: int | None = None
    if isinstance(info, dict):
        arch = info.get("general.architecture")
        value = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
        if isinstance(value, int) and value > 0:
            context = value
    listed = show.get("capabilities")
    # Ollama before 0.6.x had no capabilities list: then we only learn the context length.
    if not isinstance(listed, list):
        return default.merged(context_length=context)
    return default.merged(
        tools="tools" in listed,
        vision="vision" in listed,
        json_mode="completion" in listed,
        context_length=context,
    )


# --- the adapter ------------------------------------------------------------------------------


class OllamaAdapter(HTTPAdapter):
    """Ollama's native API. `config.base_url` is the server root (``http://127.0.0.1:11434``)."""

    protocol: ClassVar[str] = "ollama"
    # What we assume of a model Ollama has not described (/api/show failed): chat and JSON mode
    # work everywhere, tools and vision only where the model says so.
    default_capabilities: ClassVar[Capabilities] = Capabilities(streaming=True, json_mode=True)

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        return map_ollama_error(self.config, status, _error_text(body), model, parse_retry_after(headers))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = build_chat_body(request, stream=False)
        data = await self.request_json("POST", "/api/chat", model=request.model, json_body=body)
        if not isinstance(data, dict):
            raise _protocol_error(self.config, _NOT_OLLAMA, request.model)
        if data.get("error"):
            raise map_ollama_error(self.config, None, str(data["error"]), request.model)
        message = data.get("message")
        if not isinstance(message, dict):
            raise _protocol_error(self.config, _NOT_OLLAMA, request.model)
        calls = _parse_tool_calls(message.get("tool_calls"), self.config, request.model)
        content = message.get("content")
        return ChatResponse(
            model=str(data.get("model") or request.model),
            text=content if isinstance(content, str) else "",
            tool_calls=calls,
            finish_reason=_finish_reason(data.get("done_reason"), bool(calls)),
            usage=_usage(data),
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        return self.guard_stream(self._stream(request), request.model)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = build_chat_body(request, stream=True)
        normalizer = StreamNormalizer(self.config, request.model)
        async with self.open_stream("/api/chat", body, request.model) as response:
            lines = response.aiter_lines()
            while True:
                # Only the read is mapped: exceptions thrown in by our consumer must pass untouched.
                with self.transport_errors(request.model):
                    try:
                        line = await anext(lines)
                    except StopAsyncIteration:
                        break
                for event in normalizer.feed(line):
                    yield event
        for event in normalizer.finish():
            yield event

    async def list_models(self) -> list[RemoteModel]:
        data = await self.request_json("GET", "/api/tags")
        entries = data.get("models") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise _protocol_error(self.config, _NOT_OLLAMA, None)
        limit = asyncio.Semaphore(_SHOW_CONCURRENCY)

        async def describe(entry: dict[str, Any]) -> RemoteModel:
            name = str(entry.get("name") or entry.get("model"))
            raw_details = entry.get("details")
            details: dict[str, Any] = {}
            if isinstance(raw_details, dict):
                details.update({k: raw_details[k] for k in _DETAIL_KEYS if raw_details.get(k) is not None})
            for key in ("size", "digest", "modified_at"):
                if entry.get(key) is not None:
                    details[key] = entry[key]
            async with limit:
                try:
                    show = await self.request_json("POST", "/api/show", model=name, json_body={"model": name})
                except ProviderError:
                    # One model Ollama cannot describe must not hide the others.
                    show = None
            return RemoteModel(
                id=name, capabilities=_capabilities(show, self.default_capabilities), details=details
            )

        named = [e for e in entries if isinstance(e, dict) and (e.get("name") or e.get("model"))]
        return list(await asyncio.gather(*(describe(entry) for entry in named)))

    async def loaded_models(self) -> list[str]:
        """Names of the models Ollama holds in memory right now (GET /api/ps)."""
        data = await self.request_json("GET", "/api/ps")
        entries = data.get("models") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise _protocol_error(self.config, _NOT_OLLAMA, None)
        names = (e.get("name") or e.get("model") for e in entries if isinstance(e, dict))
        return [str(name) for name in names if name]

    async def version(self) -> str:
        data = await self.request_json("GET", "/api/version")
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            raise _protocol_error(self.config, _NOT_OLLAMA, None)
        return version

    async def probe(self) -> ProbeResult:
        result = await self.timed_probe("/api/version", version_key="version")
        if result.ok and not isinstance(result.version, str):
            # Other servers answer unknown paths with 200 (LM Studio): no version means not Ollama.
            label = self.config.provider or "ollama"
            return ProbeResult(
                ok=False,
                latency_ms=result.latency_ms,
                error=f"{label} at {self.config.base_url} {_NOT_OLLAMA}",
            )
        return result
