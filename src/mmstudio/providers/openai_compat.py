"""The OpenAI Chat Completions adapter (OpenAI, xAI, LM Studio, llama.cpp, vLLM, Ollama's /v1)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, cast

import httpx

from mmstudio.errors import (
    AuthenticationError,
    ContentFiltered,
    ContextTooLong,
    InvalidRequest,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderUnavailable,
    UpstreamModelNotFound,
    redact,
)
from mmstudio.providers._http import (
    HTTPAdapter,
    decode_json,
    error_for_status,
    parse_retry_after,
    raise_protocol,
    require_request,
)
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
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolResultPart,
    ToolSpec,
    Usage,
    finish_event,
    make_timeout,
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    "max_tokens": "length",  # a non-OpenAI engine's own word leaking through
}
_ALL_REASONS: tuple[FinishReason, ...] = ("stop", "length", "tool_calls", "content_filter", "error")
_FINISH_EVENTS: dict[FinishReason, StreamEvent] = {reason: finish_event(reason) for reason in _ALL_REASONS}
# Matched against "type code message" lowercased. Context phrasings cover what the shared table
# in _http misses: llama.cpp ("exceeds the available context size"), xAI ("maximum prompt length").
_FILTERED = re.compile(r"content_filter|content_policy")
_CONTEXT = re.compile(
    r"context[_ ](length|size|window)|exceed_context|maximum (context|prompt length)|too many tokens"
)
_BODY_ERRORS: tuple[tuple[re.Pattern[str], type[ProviderError]], ...] = (
    (_CONTEXT, ContextTooLong),
    (
        re.compile(r"model_not_found|not found|not loaded|no model|does not exist|failed to load"),
        UpstreamModelNotFound,
    ),
    (re.compile(r"api[ _]key|authentication|unauthorized"), AuthenticationError),
    (re.compile(r"rate[ _]limit"), ProviderRateLimited),
)

_loads = json.loads
# The C scanner behind json.loads, called directly: the wrapper's type checks and whitespace
# regexes cost about 40% of a chunk's parse, and chunks arrive by the thousand.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def map_finish(reason: str | None, has_tool_calls: bool) -> FinishReason:
    """Our finish reason; servers that say ``stop`` after a tool call meant ``tool_calls``."""
    mapped = _FINISH_REASONS.get(reason, "stop") if reason else "stop"
    if has_tool_calls and mapped == "stop":
        return "tool_calls"
    return mapped


def _error_fields(payload: Any) -> tuple[str, str, str]:
    """(message, code, type) from OpenAI's ``{"error": {...}}``, xAI's ``{"code", "error"}`` or a string."""
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            message = err.get("message") or err.get("error") or json.dumps(err)[:500]
            return str(message), str(err.get("code") or ""), str(err.get("type") or "")
        if err is not None:
            return str(err), str(payload.get("code") or ""), str(payload.get("type") or "")
    return str(payload)[:500], "", ""


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    described = {"description": tool.description} if tool.description else {}
    return {
        "type": "function",
        "function": {"name": tool.name, **described, "parameters": dict(tool.parameters)},
    }


def _wire_call(call: ToolCall) -> dict[str, Any]:
    arguments = json.dumps(call.arguments)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def _lmstudio_capabilities(info: Mapping[str, Any]) -> Capabilities:
    """From an `/api/v0/models` entry: ``type`` is llm, vlm or embeddings."""
    kind, declared, context = info.get("type"), info.get("capabilities"), info.get("max_context_length")
    chat = kind in ("llm", "vlm")
    return Capabilities(
        streaming=chat,
        tools=("tool_use" in declared) if isinstance(declared, list) else chat,
        vision=kind == "vlm",
        json_mode=chat,
        context_length=context if isinstance(context, int) else None,
    )


def _usage(data: Any) -> Usage | None:
    try:
        return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))
    except (AttributeError, TypeError, ValueError):  # absent, or a shape we cannot count on
        return None


def _filtered(config: EndpointConfig, model: str | None) -> ContentFiltered:
    label = config.provider or "upstream"
    return ContentFiltered(
        f"{label} blocked the response (finish_reason content_filter)", provider=config.provider, model=model
    )


def payload_error(
    config: EndpointConfig,
    status: int | None,
    payload: Any,
    model: str | None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """Map an error body to our exception. `status` is None for an error inside a stream."""
    message, code, etype = _error_fields(payload)
    tags = " ".join(t for t in (etype, code) if t and t not in message)
    detail = f"{message} [{tags}]" if tags else message
    request_id = headers.get("x-request-id") if headers else None
    if request_id:
        detail += f" (request id {request_id})"
    detail = redact(detail, config.secrets)
    lowered = f"{etype} {code} {message}".lower()
    label = config.provider or "upstream"
    kwargs: dict[str, Any] = {"provider": config.provider, "model": model, "status": status}
    if _FILTERED.search(lowered):
        return ContentFiltered(f"{label} blocked the content: {detail}", **kwargs)
    if status is not None and status >= 400:
        if status == 400 and "api key" in lowered:  # xAI answers a bad key with 400
            return AuthenticationError(f"{label} rejected the API key (HTTP 400): {detail}", **kwargs)
        if "model_not_found" in lowered:
            return UpstreamModelNotFound(f"{label} returned HTTP {status}: {detail}", **kwargs)
        if status not in (401, 403, 404, 429) and _CONTEXT.search(lowered):
            return ContextTooLong(f"{label} returned HTTP {status}: {detail}", **kwargs)
        retry_after = parse_retry_after(headers) if headers else None
        return error_for_status(
            status, detail, config=config, model=model, code=code, retry_after=retry_after
        )
    # An error inside a 2xx body (LM Studio) or in the stream: no status to go by, only words.
    where = "sent an error in the stream" if status is None else f"answered HTTP {status} with an error"
    text = f"{label} {where}: {detail}"
    if "unexpected endpoint" in lowered:
        return ProviderProtocolError(f"{text} (check that the base URL ends in /v1)", **kwargs)
    for pattern, error in _BODY_ERRORS:
        if pattern.search(lowered):
            return error(text, **kwargs)
    if status is None:  # the server broke while generating: worth trying elsewhere
        return ProviderUnavailable(text, **kwargs)
    return ProviderProtocolError(text, **kwargs)


class StreamNormalizer:
    """Turns the `data:` payloads of one chat-completions SSE stream into our stream events.

    `feed` takes one payload (a chunk's JSON or ``[DONE]``); `finish` is called when the body
    ends and raises if the stream was cut short. Usage is held back and sent once, right
    before the single closing ``finish`` event.
    """

    __slots__ = ("_config", "_content", "_done", "_model", "_reason", "_tool_ids", "_usage")

    def __init__(self, config: EndpointConfig | None = None, model: str | None = None) -> None:
        self._config = config or EndpointConfig(base_url="")
        self._model = model
        self._reason: str | None = None
        self._usage: Any = None
        self._done = False
        self._content = False
        self._tool_ids: dict[int, str] = {}

    def feed(self, data: str) -> list[StreamEvent]:
        if self._done:
            return []
        if data == "[DONE]":
            return self._close()
        try:
            chunk, end = _scan(data, 0)
            if end != len(data):
                chunk = _loads(data)  # trailing whitespace or junk: let the full parser decide
        except (ValueError, StopIteration):
            stripped = data.strip()
            if not stripped:  # an empty event is a keep-alive, per the SSE spec
                return []
            if stripped == "[DONE]":
                return self._close()
            chunk = self._parse_slowly(data)
        events: list[StreamEvent] = []
        try:
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content") or delta.get("refusal")
                    if content:
                        self._content = True
                        events.append(StreamEvent("text", content))
                    calls = delta.get("tool_calls")
                    if calls:
                        self._tool_deltas(calls, events)
                reason = choice.get("finish_reason")
                if reason:
                    self._set_reason(reason)
            elif chunk.get("error"):
                raise payload_error(self._config, None, chunk, self._model)
            usage = chunk.get("usage")
            if usage:
                self._usage = usage
        except (AttributeError, TypeError, KeyError, IndexError):
            raise_protocol(
                self._config, f"sent a stream chunk of an unexpected shape: {data[:200]!r}", self._model
            )
        return events

    def finish(self) -> list[StreamEvent]:
        """The closing events at the end of the body; raises if the stream never finished."""
        if self._done:
            return []
        if self._reason is None:
            raise_protocol(
                self._config, "ended the stream before it finished (no finish_reason, no [DONE])", self._model
            )
        return self._close()

    # -- internals -------------------------------------------------------------------------

    def _tool_deltas(self, calls: list[dict[str, Any]], events: list[StreamEvent]) -> None:
        ids = self._tool_ids
        for call in calls:
            call_id = call.get("id")
            index = call.get("index")
            if index is None:  # some servers omit it; a new id means a new call
                known = call_id is not None and call_id in ids.values()
                index = len(ids) if (call_id is not None and not known) or not ids else max(ids)
            function = call.get("function") or {}
            name = function.get("name")
            arguments = function.get("arguments")
            if arguments is None:
                arguments = ""
            elif not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            if index in ids:
                # id and name travel with the first piece only; some servers repeat them.
                if not arguments:
                    continue
                call_id = name = None
            else:
                call_id = call_id or _new_call_id()
                ids[index] = call_id
            events.append(StreamEvent("tool_call", tool_call=ToolCallDelta(index, call_id, name, arguments)))

    def _parse_slowly(self, data: str) -> Any:
        """json.loads for what the fast scanner refused: leading whitespace, or not JSON at all."""
        try:
            return _loads(data)
        except ValueError:
            raise_protocol(self._config, f"sent a stream chunk that is not JSON: {data[:200]!r}", self._model)

    def _set_reason(self, reason: str) -> None:
        self._reason = reason
        if reason == "content_filter" and not self._content and not self._tool_ids:
            raise _filtered(self._config, self._model)

    def _close(self) -> list[StreamEvent]:
        self._done = True
        events: list[StreamEvent] = []
        usage = _usage(self._usage)
        if usage is not None:
            events.append(StreamEvent("usage", usage=usage))
        events.append(_FINISH_EVENTS[map_finish(self._reason, bool(self._tool_ids))])
        return events


class OpenAICompatAdapter(HTTPAdapter):
    """Any server speaking OpenAI's `/v1/chat/completions`; `config.base_url` ends in ``/v1``.

    Quirks are detected from the answers rather than configured, so one adapter serves every
    vendor; the ``lmstudio`` quirk only adds LM Studio's native model listing.
    """

    protocol: ClassVar[str] = "openai_compat"
    default_capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True, tools=True, vision=True, json_mode=True
    )

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        headers.update(self.config.headers)
        return headers

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")[:500] or f"HTTP {status} with an empty body"
        return payload_error(self.config, status, payload, model, headers)

    # -- chat ----------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        require_request(request)
        body = self.build_body(request, stream=False)
        data = await self.request_json("POST", "chat/completions", model=request.model, json_body=body)
        return self.parse_completion(data, request.model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        # Close both layers explicitly so an abandoned stream releases its connection at once.
        events = self._events(request)
        guarded = cast(AsyncGenerator[StreamEvent, None], self.guard_stream(events, request.model))
        async with contextlib.aclosing(events), contextlib.aclosing(guarded):
            async for event in guarded:
                yield event

    async def _events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        require_request(request)
        body = self.build_body(request, stream=True)
        model = request.model
        async with self.open_stream("chat/completions", body, model) as response:
            if "json" in response.headers.get("content-type", ""):
                # No SSE: an error body with status 200 (LM Studio), or a server ignoring `stream`.
                with self.transport_errors(model):
                    content = await response.aread()
                for event in self._events_from_completion(self.parse_completion(content, model)):
                    yield event
                return
            normalizer = StreamNormalizer(self.config, model)
            feed = normalizer.feed
            data: list[str] = []
            with self.transport_errors(model):
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[6:] if line[5:6] == " " else line[5:])
                    elif not line and data:
                        payload = data[0] if len(data) == 1 else "\n".join(data)
                        data.clear()
                        for event in feed(payload):
                            yield event
            if data:  # the last event lacked its blank line; be lenient
                for event in feed("\n".join(data)):
                    yield event
            for event in normalizer.finish():
                yield event

    @staticmethod
    def _events_from_completion(response: ChatResponse) -> list[StreamEvent]:
        events = [StreamEvent("text", response.text)] if response.text else []
        for index, call in enumerate(response.tool_calls):
            delta = ToolCallDelta(index, call.id, call.name, json.dumps(call.arguments))
            events.append(StreamEvent("tool_call", tool_call=delta))
        if response.usage is not None:
            events.append(StreamEvent("usage", usage=response.usage))
        events.append(_FINISH_EVENTS[response.finish_reason])
        return events

    # -- models and health -----------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        data = await self.request_json("GET", "models")
        self._raise_body_error(data, None, "data")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise_protocol(self.config, "sent a model list without `data`")
        native = await self._lmstudio_models() if "lmstudio" in self.config.quirks else {}
        models: list[RemoteModel] = []
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            model_id = str(entry["id"])
            info = native.get(model_id)
            capabilities = _lmstudio_capabilities(info) if info else None
            details = {k: v for k, v in (info or entry).items() if k not in ("id", "object")}
            models.append(RemoteModel(model_id, entry.get("owned_by"), capabilities, details))
        return models

    async def _lmstudio_models(self) -> dict[str, dict[str, Any]]:
        """LM Studio's native listing knows model type and context length; optional extra."""
        root = self.config.base_url.rstrip("/").removesuffix("/v1")
        try:
            response = await self.client.get(
                f"{root}/api/v0/models", headers=self.headers(), timeout=make_timeout(self.config, 5.0)
            )
            data = response.json() if response.status_code < 300 else None
        except (httpx.HTTPError, ValueError):
            return {}
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return {}
        return {str(e["id"]): e for e in entries if isinstance(e, dict) and e.get("id")}

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models")

    # -- translation ---------------------------------------------------------------------------

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": self.messages(request.messages)}
        if request.tools:
            body["tools"] = [_wire_tool(tool) for tool in request.tools]
        choice = request.tool_choice
        if choice:
            keyword = choice in ("auto", "none", "required")
            body["tool_choice"] = choice if keyword else {"type": "function", "function": {"name": choice}}
        for name in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_mode:
            body["response_format"] = {"type": "json_object"}
        body.update(request.extra)
        if "max_completion_tokens" in request.extra:  # newer OpenAI models refuse both at once
            body.pop("max_tokens", None)
        body["stream"] = stream
        if stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return body

    def messages(self, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in messages:
            parts: list[TextPart | ImagePart] = []
            calls: list[ToolCall] = []
            for part in message.content:
                if isinstance(part, ToolResultPart):
                    # OpenAI wants one role-"tool" message per result, right after the call.
                    out.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": part.content})
                elif isinstance(part, ToolCall):
                    calls.append(part)
                else:
                    parts.append(part)
            if not parts and not calls and message.tool_results:
                continue
            entry: dict[str, Any] = {"role": message.role, "content": self._content(parts)}
            if calls:
                entry["tool_calls"] = [_wire_call(call) for call in calls]
                if not parts:
                    entry["content"] = None
            out.append(entry)
        return out

    @staticmethod
    def _content(parts: list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
        if all(isinstance(p, TextPart) for p in parts):
            return "".join(p.text for p in parts if isinstance(p, TextPart))
        content: list[dict[str, Any]] = []
        for part in parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            else:
                if part.data is None and part.url is None:
                    raise InvalidRequest("an image part needs inline data or a URL", field="messages")
                content.append({"type": "image_url", "image_url": {"url": part.as_data_url()}})
        return content

    def parse_completion(self, data: Any, model: str) -> ChatResponse:
        """A `chat.completion` body (bytes or parsed) as our `ChatResponse`."""
        if isinstance(data, bytes | str):
            data = decode_json(data, self.config, "a response")
        self._raise_body_error(data, model, "choices")
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise_protocol(self.config, f"sent a completion without choices: {str(data)[:200]!r}", model)
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, list):  # a few servers answer with content parts
            text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        else:
            text = content or message.get("refusal") or ""
        calls = tuple(self._tool_call(call, model) for call in message.get("tool_calls") or ())
        finish = map_finish(choice.get("finish_reason"), bool(calls))
        if finish == "content_filter" and not text and not calls:
            raise _filtered(self.config, model)
        usage = _usage(data.get("usage"))
        return ChatResponse(str(data.get("model") or model), str(text), calls, finish, usage, data.get("id"))

    def _tool_call(self, call: Any, model: str) -> ToolCall:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise_protocol(
                self.config, f"sent a tool call without a function name: {str(call)[:200]!r}", model
            )
        raw = function.get("arguments") or {}
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise_protocol(self.config, f"sent tool call arguments that are not JSON: {raw[:200]!r}", model)
        if not isinstance(arguments, dict):
            raise_protocol(
                self.config, f"sent tool call arguments that are not an object: {raw!r:.200}", model
            )
        return ToolCall(str(call.get("id") or _new_call_id()), str(function["name"]), arguments)

    def _raise_body_error(self, data: Any, model: str | None, content_key: str) -> None:
        """LM Studio (and others) answer some failures with HTTP 200 and a top-level `error`."""
        if isinstance(data, dict) and data.get("error") and content_key not in data:
            raise payload_error(self.config, 200, data, model)
