"""The Anthropic Messages adapter: request translation, SSE stream normalization, error mapping."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, ClassVar

from mmstudio.errors import (
    ContentFiltered,
    ContextTooLong,
    ProviderError,
    ProviderProtocolError,
    ProviderTimeout,
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
    Usage,
    finish_event,
    usage_event,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
JSON_INSTRUCTION = (
    "Respond with a single valid JSON value and nothing else: no prose, no explanations, no code fences."
)

# Stop reasons we do not know map to "stop": Anthropic adds new ones over time (pause_turn, ...).
_FINISH: dict[str | None, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}

# In-band (stream) errors carry no HTTP status; this is the status the same error has over HTTP.
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_raw_decode = json.JSONDecoder().raw_decode

# Anthropic's wording for an over-long prompt that the shared markers in _http do not cover.
_CONTEXT_WORDS = ("prompt is too long", "exceed context limit", "exceeds context limit")


def map_error(
    config: EndpointConfig,
    status: int | None,
    etype: str,
    message: str,
    *,
    model: str | None = None,
    retry_after: float | None = None,
    where: str | None = None,
) -> ProviderError:
    """One Anthropic error (`{"type": etype, "message": message}`) as our exception; `where`
    names how an error without an HTTP error status came (``"event mid-stream"``, ...)."""
    code = status or _STATUS_BY_TYPE.get(etype, 500)
    label = config.provider or "upstream"
    text = redact(f"{etype}: {message}" if etype else message, config.secrets)
    kwargs: dict[str, Any] = {"provider": config.provider, "model": model, "status": code}
    lowered = text.lower()
    if code == 400 and any(word in lowered for word in _CONTEXT_WORDS):
        exc: ProviderError = ContextTooLong(f"{label} returned HTTP 400: {text}", **kwargs)
    elif etype == "timeout_error":
        exc = ProviderTimeout(f"{label} timed out upstream: {text}", **kwargs)
    else:
        exc = error_for_status(code, text, config=config, model=model, code=etype, retry_after=retry_after)
    if where:  # the message must not claim an HTTP status that never came
        exc.message = f"{label} sent an error {where}: {text}"
        exc.args = (exc.message,)
    return exc


def _error_parts(payload: Any) -> tuple[str, str] | None:
    """(type, message) from `{"type":"error","error":{"type","message"}}`, else None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("type") or ""), str(error.get("message") or "")


def _refusal(config: EndpointConfig, model: str | None) -> ContentFiltered:
    label = config.provider or "upstream"
    return ContentFiltered(
        f"{label} refused to answer (stop_reason refusal)", provider=config.provider, model=model
    )


def _sum_input(usage: Mapping[str, Any]) -> int:
    # Cached prompt tokens are reported apart from input_tokens; other protocols count them in
    # the prompt total, so we do too.
    return sum(usage.get(key) or 0 for key in _INPUT_KEYS)


class _ToolBlock:
    __slots__ = ("has_args", "index", "start_input")

    def __init__(self, index: int, start_input: Any) -> None:
        self.index = index
        self.start_input = start_input
        self.has_args = False


class StreamNormalizer:
    """Turns the `data:` payloads of one Anthropic SSE stream into our `StreamEvent`s.

    Feed every payload in order; `finish()` at the end of the body raises when the stream was
    cut before ``message_stop``. The usage and finish events are emitted at ``message_stop``.
    """

    __slots__ = ("_blocks", "_config", "_input", "_model", "_output", "_stop_reason", "done")

    def __init__(self, config: EndpointConfig | None = None, model: str | None = None) -> None:
        self._config = config or EndpointConfig(base_url="", provider="anthropic")
        self._model = model
        self._blocks: dict[int, _ToolBlock] = {}  # content-block index → tool call
        self._input = 0
        self._output = 0
        self._stop_reason: str | None = None
        self.done = False

    def feed(self, data: str) -> list[StreamEvent]:
        """The events for one SSE `data:` payload (often none); raises on an ``error`` event."""
        try:
            # raw_decode skips json.loads' whitespace scans (about half its cost); anything it
            # does not fully consume goes through json.loads for the exact verdict.
            obj, end = _raw_decode(data)
            if end != len(data):
                obj = json.loads(data)
            return self._dispatch(obj)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, ValueError) and data[:1].isspace():
                return self.feed(data.strip())
            raise_protocol(self._config, f"unreadable stream event {data[:200]!r} ({exc!r})", self._model)

    def _dispatch(self, obj: dict[str, Any]) -> list[StreamEvent]:
        kind = obj["type"]
        # Ordered by frequency: deltas are nearly every event of a stream.
        if kind == "content_block_delta":
            delta = obj["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                return [StreamEvent("text", text=text)] if text else []
            if dtype == "input_json_delta":
                block = self._blocks.get(obj["index"])
                fragment = delta.get("partial_json")
                if block is None or not fragment:
                    return []
                block.has_args = True
                return [StreamEvent("tool_call", tool_call=ToolCallDelta(block.index, arguments=fragment))]
            return []  # thinking, signature and citation deltas have no place in our events
        if kind == "ping" or self.done:
            return []
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_stop":
            block = self._blocks.get(obj["index"])  # text blocks need nothing at their end
            if block is None or block.has_args:
                return []
            # No fragments came (a tool without parameters): the start block's input is the call.
            arguments = json.dumps(block.start_input if isinstance(block.start_input, dict) else {})
            return [StreamEvent("tool_call", tool_call=ToolCallDelta(block.index, arguments=arguments))]
        if kind == "message_start":
            usage = (obj.get("message") or {}).get("usage") or {}
            self._input = _sum_input(usage)
            self._output = usage.get("output_tokens") or 0
            return []
        if kind == "message_delta":
            self._stop_reason = (obj.get("delta") or {}).get("stop_reason") or self._stop_reason
            usage = obj.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._output = usage["output_tokens"]
            if usage.get("input_tokens") is not None:
                self._input = _sum_input(usage)
            return []
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            etype, message = _error_parts(obj) or ("api_error", "unknown error")
            raise map_error(self._config, None, etype, message, model=self._model, where="event mid-stream")
        return []  # Anthropic may add event types; its versioning policy says to ignore them

    def _block_start(self, obj: dict[str, Any]) -> list[StreamEvent]:
        block = obj.get("content_block") or {}
        btype = block.get("type")
        if btype == "tool_use":
            tool = _ToolBlock(len(self._blocks), block.get("input"))
            self._blocks[obj["index"]] = tool
            call = ToolCallDelta(tool.index, id=block.get("id"), name=block.get("name"))
            return [StreamEvent("tool_call", tool_call=call)]
        if btype == "text" and block.get("text"):
            return [StreamEvent("text", text=block["text"])]
        return []

    def _message_stop(self) -> list[StreamEvent]:
        self.done = True
        if self._stop_reason == "refusal":
            raise _refusal(self._config, self._model)
        reason = _FINISH.get(self._stop_reason, "stop")
        return [usage_event(self._input, self._output), finish_event(reason)]

    def finish(self) -> list[StreamEvent]:
        if not self.done:
            raise_protocol(self._config, "stream ended before message_stop", self._model)
        return []


class AnthropicAdapter(HTTPAdapter):
    """Anthropic's Messages API (`/v1/messages`, `/v1/models`)."""

    protocol: ClassVar[str] = "anthropic"
    default_capabilities: ClassVar[Capabilities] = Capabilities(streaming=True, tools=True, vision=True)
    page_size: int = 1000  # models per /v1/models page (the API allows 1..1000)

    # -- plumbing ------------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        headers.update(self.config.headers)  # lets a user add anthropic-beta or pin a version
        return headers

    def url(self, path: str) -> str:
        base = self.config.base_url.rstrip("/")
        # Tolerate a base URL given with /v1, as people copy it from other vendors' docs.
        if base.endswith("/v1") and path.startswith("/v1/"):
            path = path[3:]
        return base + "/" + path.lstrip("/")

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        retry_after = parse_retry_after(headers)
        try:
            parts = _error_parts(json.loads(body))
        except (ValueError, UnicodeDecodeError):
            parts = None
        if parts is None:  # a proxy's HTML page and the like: the status is all we know
            text = body.decode("utf-8", "replace")[:500]
            return error_for_status(status, text, config=self.config, model=model, retry_after=retry_after)
        return map_error(self.config, status, parts[0], parts[1], model=model, retry_after=retry_after)

    # -- requests ------------------------------------------------------------------------------

    def build_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The `/v1/messages` body for `request`."""
        require_request(request)
        system = [m.text_content for m in request.messages if m.role == "system" and m.text_content]
        if request.json_mode:
            system.append(JSON_INSTRUCTION)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _messages(request.messages),
        }
        if system:
            body["system"] = "\n\n".join(system)
        if stream:
            body["stream"] = True
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [
                {
                    "name": t.name,
                    "input_schema": dict(t.parameters),
                    **({"description": t.description} if t.description else {}),
                }
                for t in request.tools
            ]
            if request.tool_choice:
                body["tool_choice"] = _tool_choice(request.tool_choice)
        # Anthropic has no seed parameter; request.seed is dropped rather than rejected.
        body.update(request.extra)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = self.build_body(request, stream=False)
        data = await self.request_json("POST", "/v1/messages", model=request.model, json_body=body)
        if not isinstance(data, dict):
            raise_protocol(
                self.config, f"expected a message object, got {type(data).__name__}", request.model
            )
        if data.get("type") == "error":  # some gateways answer 200 with an error body
            etype, message = _error_parts(data) or ("api_error", "unknown error")
            raise map_error(
                self.config, None, etype, message, model=request.model, where="body with HTTP 200"
            )
        content = data.get("content")
        if not isinstance(content, list):
            raise_protocol(self.config, "message has no content list", request.model)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            btype = block.get("type") if isinstance(block, dict) else None
            if btype == "text":
                texts.append(str(block.get("text") or ""))
            elif btype == "tool_use":
                arguments = block.get("input")
                calls.append(
                    ToolCall(
                        id=str(block.get("id") or ""),
                        name=str(block.get("name") or ""),
                        arguments=arguments if isinstance(arguments, dict) else {},
                    )
                )
        stop_reason = data.get("stop_reason")
        if stop_reason == "refusal":
            raise _refusal(self.config, request.model)
        usage = data.get("usage")
        if isinstance(usage, dict):
            usage = Usage(_sum_input(usage), usage.get("output_tokens") or 0)
        return ChatResponse(
            model=str(data.get("model") or request.model),
            text="".join(texts),
            tool_calls=tuple(calls),
            finish_reason=_FINISH.get(stop_reason, "stop"),
            usage=usage if isinstance(usage, Usage) else None,
            id=data.get("id"),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        events = self._events(request)
        # Closing the inner generator closes the HTTP response when the caller stops early.
        async with contextlib.aclosing(events):
            async for event in self.guard_stream(events, request.model):
                yield event

    async def _events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        body = self.build_body(request, stream=True)
        normalizer = StreamNormalizer(self.config, request.model)
        async with self.open_stream("/v1/messages", body, request.model) as response:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                with self.transport_errors(request.model):
                    content = await response.aread()
                raise self._not_a_stream(content, request.model)
            data: list[str] = []
            with self.transport_errors(request.model):
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[6:] if line.startswith("data: ") else line[5:])
                    elif not line and data:
                        payload = data[0] if len(data) == 1 else "\n".join(data)
                        data = []
                        for event in normalizer.feed(payload):
                            yield event
                        if normalizer.done:
                            break  # message_stop is final; trailing bytes cannot change the answer
                    # "event:" lines repeat data["type"]; ":" lines are comments
                else:
                    if data:  # a last event without its blank line
                        for event in normalizer.feed("\n".join(data)):
                            yield event
        for event in normalizer.finish():
            yield event

    def _not_a_stream(self, content: bytes, model: str) -> ProviderError:
        data = decode_json(content, self.config, "a stream")
        parts = _error_parts(data)
        if parts is not None:
            return map_error(self.config, None, *parts, model=model, where="body instead of a stream")
        return ProviderProtocolError(
            f"{self.config.provider or 'upstream'} answered a stream request with plain JSON",
            provider=self.config.provider,
            model=model,
        )

    # -- models and health ---------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        models: list[RemoteModel] = []
        params = {"limit": str(self.page_size)}
        seen: set[str] = set()
        while True:
            page = await self.request_json("GET", "/v1/models", params=params)
            items = page.get("data") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise_protocol(self.config, "model list has no data array")
            models.extend(_remote_model(item) for item in items if isinstance(item, dict) and item.get("id"))
            last_id = page.get("last_id")
            # A cursor seen before would loop forever: stop on it instead of trusting has_more.
            if not page.get("has_more") or not isinstance(last_id, str) or last_id in seen:
                return models
            seen.add(last_id)
            params = {"limit": str(self.page_size), "after_id": last_id}

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("/v1/models?limit=1")


# -- translation helpers ------------------------------------------------------------------------


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice in ("required", "any"):
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _image_block(part: ImagePart) -> dict[str, Any]:
    url = part.url
    if url is not None and url.startswith("data:") and ";base64," in url:
        header, _, data = url.partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": header[5:], "data": data}}
    if url is not None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": part.media_type, "data": part.as_base64()},
    }


def _blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:  # the API rejects empty text blocks
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        elif isinstance(part, ToolCall):
            blocks.append({"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments})
        elif isinstance(part, ToolResultPart):
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": part.tool_call_id,
                "content": part.content,
            }
            if part.is_error:
                result["is_error"] = True
            blocks.append(result)
    return blocks


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Our messages as Anthropic's: tool results become user turns and same-role turns merge,
    because the API requires user and assistant to alternate."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for turn in out:
        # tool_result blocks must lead a user turn; a stable sort keeps the rest in order.
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return out


def _remote_model(item: dict[str, Any]) -> RemoteModel:
    context = item.get("max_input_tokens")
    capabilities = (
        AnthropicAdapter.default_capabilities.merged(context_length=context)
        if isinstance(context, int)
        else None
    )
    details = {
        k: item[k]
        for k in ("display_name", "created_at", "max_tokens", "lifecycle")
        if item.get(k) is not None
    }
    return RemoteModel(id=str(item["id"]), owned_by="anthropic", capabilities=capabilities, details=details)


__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicAdapter", "StreamNormalizer", "map_error"]
