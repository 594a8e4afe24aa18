"""Google Gemini adapter: generateContent, streamGenerateContent (SSE) and the models list.

A little over the ~500-line guide: request translation, Google's error shape and the stream
normalizer of one wire protocol, which read best side by side.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx

from mmstudio.errors import (
    AuthenticationError,
    ContentFiltered,
    ContextTooLong,
    MidStreamError,
    ProviderError,
    ProviderTimeout,
    redact,
)
from mmstudio.providers._http import (
    HTTPAdapter,
    error_for_status,
    parse_retry_after,
    raise_protocol,
    require_request,
)
from mmstudio.providers.base import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    ContentPart,
    EndpointConfig,
    FinishReason,
    ImagePart,
    ProbeResult,
    RemoteModel,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolResultPart,
    Usage,
)

# Finish reasons that mean the upstream withheld content (google-genai's FinishReason enum).
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"}) | frozenset(
    {"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}
)
# Everything else that is not STOP/MAX_TOKENS (MALFORMED_FUNCTION_CALL, OTHER, LANGUAGE, NO_IMAGE,
# TOO_MANY_TOOL_CALLS, future values) ends the answer without it being complete: "error".
_FINISH: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length"}

# google.rpc.Code names, for errors whose HTTP status we do not have (in-band stream errors).
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_TOKEN_LIMIT = ("exceeds the maximum number of tokens", "input token count", "token count exceeds")
# JSON-schema keys Gemini's OpenAPI-subset `parameters` rejects.
_SCHEMA_DROP = frozenset({"additionalProperties", "$schema", "$id", "$comment", "strict"})
_TOOL_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY", "any": "ANY"}
_SIGNATURE_CACHE = 2048
_DECODER = json.JSONDecoder()


def _label(config: EndpointConfig) -> str:
    return config.provider or "gemini"


def _retry_info(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``retryDelay: "30s"``)."""
    for detail in details:
        if not isinstance(detail, Mapping) or not str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            continue
        try:  # proto3 JSON renders a Duration as "30s" or "1.5s"
            return max(0.0, float(str(detail.get("retryDelay")).strip().rstrip("s")))
        except ValueError:
            return None
    return None


def google_error(
    status: int | None,
    payload: Any,
    headers: Mapping[str, str],
    config: EndpointConfig,
    model: str | None,
    raw: str = "",
) -> ProviderError:
    """Map a Google error (``{"error":{"code","message","status","details"}}``) to our tree."""
    err = payload.get("error") if isinstance(payload, Mapping) else None
    retry = parse_retry_after(headers)
    if not isinstance(err, Mapping):
        # Not Google's shape (a proxy's HTML page, say): the status is all we know.
        text = raw[:500] or "no error body"
        return error_for_status(status or 502, text, config=config, model=model, retry_after=retry)
    message = str(err.get("message") or "")
    rpc = str(err.get("status") or "")
    code = err.get("code")
    status = status or (code if isinstance(code, int) else None) or _RPC_STATUS.get(rpc, 500)
    details: list[Any] = found if isinstance(found := err.get("details"), list) else []
    reasons = {d.get("reason") for d in details if isinstance(d, Mapping)}
    text = f"{rpc}: {message}" if rpc else message
    full = f"{_label(config)} returned HTTP {status}: {redact(text, config.secrets)}"
    kwargs: dict[str, Any] = {"provider": config.provider, "model": model, "status": status}
    lowered = message.lower()
    # Google reports a bad key as 400 INVALID_ARGUMENT, not 401.
    if reasons & _KEY_REASONS or "api key not valid" in lowered:
        return AuthenticationError(full, **kwargs)
    if status == 504 or rpc == "DEADLINE_EXCEEDED":
        return ProviderTimeout(full, **kwargs)
    if status == 400 and any(marker in lowered for marker in _TOKEN_LIMIT):
        return ContextTooLong(full, **kwargs)
    if rpc == "RESOURCE_EXHAUSTED":
        status = 429
    if retry is None:
        retry = _retry_info(details)
    return error_for_status(status, text, config=config, model=model, code=rpc, retry_after=retry)


def _filtered(config: EndpointConfig, model: str | None, what: str, message: Any) -> ContentFiltered:
    extra = f": {redact(str(message), config.secrets)}" if message else ""
    return ContentFiltered(
        f"{_label(config)} blocked the content ({what}){extra}", provider=config.provider, model=model
    )


def _check_feedback(chunk: Mapping[str, Any], config: EndpointConfig, model: str | None) -> None:
    feedback = chunk.get("promptFeedback")
    if feedback and feedback.get("blockReason"):
        raise _filtered(
            config, model, f"prompt blockReason {feedback['blockReason']}", feedback.get("blockReasonMessage")
        )


def _finish_reason(
    reason: str, saw_calls: bool, config: EndpointConfig, model: str | None, candidate: Mapping[str, Any]
) -> FinishReason:
    if reason in _FILTERED:
        raise _filtered(config, model, f"finishReason {reason}", candidate.get("finishMessage"))
    mapped = _FINISH.get(reason, "error")
    return "tool_calls" if saw_calls and mapped == "stop" else mapped


def _usage(meta: Mapping[str, Any]) -> Usage:
    return Usage(meta.get("promptTokenCount") or 0, meta.get("candidatesTokenCount") or 0)


def _signature_key(call_id: str, name: str, args: Any) -> tuple[str, str, str]:
    return call_id, name, json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)


class StreamNormalizer:
    """Turns one streamGenerateContent SSE ``data:`` payload at a time into our stream events.

    Kept to one JSON decode and a few dict lookups per chunk: it runs once per token batch.
    `chat` folds a whole generateContent response through it too, so both paths agree.
    `signatures` collects the ``thoughtSignature`` of each function call for later replay.
    """

    __slots__ = ("_calls", "_config", "_done", "_model", "_usage", "signatures")

    def __init__(self, config: EndpointConfig | None = None, model: str | None = None) -> None:
        self._config = config or EndpointConfig(base_url="", provider="gemini")
        self._model = model
        self._calls = 0
        self._usage: Mapping[str, Any] | None = None
        self._done = False
        self.signatures: list[tuple[tuple[str, str, str], str]] = []

    @property
    def done(self) -> bool:
        """True once a chunk carried a finishReason (the finish event has been returned)."""
        return self._done

    def feed(self, data: str) -> list[StreamEvent]:
        try:
            # raw_decode skips json.loads' two whitespace regex scans; the slow path handles padding.
            chunk, end = _DECODER.raw_decode(data)
            if end != len(data):
                raise ValueError(data)
        except ValueError:
            try:
                chunk = json.loads(data)
            except ValueError:
                raise_protocol(self._config, f"sent a chunk that is not JSON: {data[:200]!r}", self._model)
        return self.feed_chunk(chunk, data)

    def feed_chunk(self, chunk: Any, raw: str = "") -> list[StreamEvent]:
        """`feed` for an already decoded ``GenerateContentResponse``."""
        if not isinstance(chunk, dict):
            raise_protocol(self._config, "sent a chunk that is not an object", self._model)
        if "error" in chunk:
            raise google_error(None, chunk, {}, self._config, self._model, raw)
        if self._done:
            return []
        try:
            return self._events(chunk)
        except (AttributeError, TypeError, IndexError, KeyError):
            shown = raw[:200] or str(chunk)[:200]
            raise_protocol(self._config, f"sent a chunk of unexpected shape: {shown!r}", self._model)

    def _events(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        meta = chunk.get("usageMetadata")
        if meta:
            self._usage = meta
        candidates = chunk.get("candidates")
        if not candidates:
            _check_feedback(chunk, self._config, self._model)
            return events
        candidate = candidates[0]
        content = candidate.get("content")
        if content:
            for part in content.get("parts") or ():
                text = part.get("text")
                if text is not None:
                    if text and not part.get("thought"):
                        events.append(StreamEvent("text", text=text))
                    continue
                call = part.get("functionCall")
                if call is not None:
                    events.append(self._tool_call(call, part.get("thoughtSignature")))
        reason = candidate.get("finishReason")
        if reason:
            events.extend(self._close(reason, candidate))
        return events

    def _tool_call(self, call: Mapping[str, Any], signature: str | None) -> StreamEvent:
        index = self._calls
        self._calls += 1
        name = str(call.get("name") or "")
        args = call.get("args") or {}
        call_id = call.get("id") or f"call_{index}"
        if signature:
            self.signatures.append((_signature_key(call_id, name, args), signature))
        delta = ToolCallDelta(index=index, id=call_id, name=name, arguments=json.dumps(args))
        return StreamEvent("tool_call", tool_call=delta)

    def _close(self, reason: str, candidate: Mapping[str, Any]) -> list[StreamEvent]:
        finish = _finish_reason(reason, self._calls > 0, self._config, self._model, candidate)
        self._done = True
        usage = [StreamEvent("usage", usage=_usage(self._usage))] if self._usage is not None else []
        return [*usage, StreamEvent("finish", finish_reason=finish)]

    def finish(self, assume: str | None = None) -> list[StreamEvent]:
        """Call at the end of the body: a stream that never carried a finishReason is broken,
        unless `assume` names the reason to take (a complete generateContent answer)."""
        if self._done:
            return []
        if assume is None:
            raise_protocol(self._config, "stream ended before any chunk carried a finishReason", self._model)
        return self._close(assume, {})


# --- request translation ------------------------------------------------------------------


def clean_schema(schema: Any) -> Any:
    """Drop the JSON-schema keys Gemini rejects, at every depth (property *names* are kept)."""
    if isinstance(schema, Mapping):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _SCHEMA_DROP:
                continue
            if key == "properties" and isinstance(value, Mapping):
                out[key] = {name: clean_schema(sub) for name, sub in value.items()}
            else:
                out[key] = clean_schema(value)
        return out
    if isinstance(schema, list):
        return [clean_schema(item) for item in schema]
    return schema


def _image_part(image: ImagePart) -> dict[str, Any]:
    if image.url is None:
        return {"inlineData": {"mimeType": image.media_type, "data": image.as_base64()}}
    if image.url.startswith("data:") and ";base64," in image.url:
        header, data = image.url[5:].split(";base64,", 1)
        return {"inlineData": {"mimeType": header or image.media_type, "data": data}}
    return {"fileData": {"mimeType": image.media_type, "fileUri": image.url}}


def _tool_response(part: ToolResultPart) -> dict[str, Any]:
    if part.is_error:
        return {"error": part.content}
    try:
        parsed = json.loads(part.content)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"result": part.content}


def _is_generated_id(call_id: str) -> bool:
    # Ids we made up (`call_<n>`) mean nothing to Gemini; sending them back is pointless.
    return call_id.startswith("call_") and call_id[5:].isdigit()


class GeminiAdapter(HTTPAdapter):
    """The Gemini API (``generativelanguage.googleapis.com/v1beta``), key in ``x-goog-api-key``."""

    protocol: ClassVar[str] = "gemini"
    default_capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True, tools=True, vision=True, json_mode=True
    )

    def __init__(self, config: EndpointConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config, client)
        # Gemini 3 rejects a replayed functionCall without its thoughtSignature, and our ToolCall
        # type has no slot for it: remember recent ones here, keyed by id, name and arguments.
        self._signatures: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def headers(self) -> dict[str, str]:
        headers = dict(self.config.headers)
        if self.config.api_key:
            headers["x-goog-api-key"] = self.config.api_key
        return headers

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        raw = body.decode("utf-8", "replace")
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        return google_error(status, payload, headers, self.config, model, raw)

    # -- chat ----------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        require_request(request)
        data = await self.request_json(
            "POST",
            self._path(request.model, "generateContent"),
            model=request.model,
            json_body=self.build_body(request),
        )
        return self._parse_response(data, request.model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        inner = self._stream_events(request)
        try:
            async for event in self.guard_stream(inner, request.model):
                yield event
        except MidStreamError as exc:
            # A block is a decision about the content, not a broken stream: failing over to
            # another upstream must not look like the remedy, so keep it ContentFiltered.
            if isinstance(exc.__cause__, ContentFiltered):
                raise exc.__cause__ from None
            raise
        finally:
            await inner.aclose()  # a consumer that stops early must not leave the response open

    async def _stream_events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        require_request(request)
        model = request.model
        normalizer = StreamNormalizer(self.config, model)
        path = self._path(model, "streamGenerateContent")
        async with self.open_stream(path, self.build_body(request), model, params={"alt": "sse"}) as response:
            lines = response.aiter_lines()
            data: list[str] = []
            while not normalizer.done:
                with self.transport_errors(model):
                    line = await anext(lines, None)
                if line is None or not line:
                    # End of body or end of one SSE event: dispatch what the event carried.
                    if data:
                        payload = "\n".join(data)
                        data.clear()
                        for event in normalizer.feed(payload):
                            yield event
                    if line is None:
                        break
                elif line.startswith("data:"):
                    data.append(line[6:] if line.startswith("data: ") else line[5:])
            self._remember(normalizer.signatures)
        for event in normalizer.finish():
            yield event

    def _parse_response(self, data: Any, model: str) -> ChatResponse:
        normalizer = StreamNormalizer(self.config, model)
        events = normalizer.feed_chunk(data)  # raises for an error body or a blocked prompt
        if not data.get("candidates"):
            raise_protocol(self.config, "sent a response without candidates", model)
        events += normalizer.finish(assume="STOP")
        self._remember(normalizer.signatures)
        texts: list[str] = []
        calls: list[ToolCall] = []
        usage: Usage | None = None
        finish: FinishReason = "stop"
        for event in events:
            if event.type == "text":
                texts.append(event.text)
            elif event.tool_call is not None:
                delta = event.tool_call
                calls.append(
                    ToolCall(id=delta.id or "", name=delta.name or "", arguments=json.loads(delta.arguments))
                )
            elif event.usage is not None:
                usage = event.usage
            elif event.finish_reason is not None:
                finish = event.finish_reason
        return ChatResponse(
            model=data.get("modelVersion") or model,
            text="".join(texts),
            tool_calls=tuple(calls),
            finish_reason=finish,
            usage=usage,
            id=data.get("responseId"),
        )

    def _remember(self, signatures: list[tuple[tuple[str, str, str], str]]) -> None:
        for key, signature in signatures:
            self._signatures[key] = signature
            self._signatures.move_to_end(key)
        while len(self._signatures) > _SIGNATURE_CACHE:
            self._signatures.popitem(last=False)

    @staticmethod
    def _path(model: str, method: str) -> str:
        return f"models/{model.removeprefix('models/')}:{method}"

    # -- translation ---------------------------------------------------------------------------

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        """The generateContent body for `request` (also used for streaming)."""
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role == "system":
                if message.text_content:
                    system.append({"text": message.text_content})
                continue
            role = "model" if message.role == "assistant" else "user"
            parts = [p for p in (self._part(item) for item in message.content) if p is not None]
            if not parts:
                continue
            if contents and contents[-1]["role"] == role:
                contents[-1]["parts"].extend(parts)  # Gemini wants turns to alternate
            else:
                contents.append({"role": role, "parts": parts})
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        if request.tools:
            declarations = []
            for tool in request.tools:
                declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
                params = clean_schema(tool.parameters)
                # An OBJECT schema with no properties is rejected: omit it for argument-less tools.
                if params and (params.get("properties") or params.get("type") not in (None, "object")):
                    declaration["parameters"] = params
                declarations.append(declaration)
            body["tools"] = [{"functionDeclarations": declarations}]
        if request.tool_choice:
            mode = _TOOL_CHOICE.get(request.tool_choice.lower())
            calling: dict[str, Any] = {"mode": mode or "ANY"}
            if mode is None:
                calling["allowedFunctionNames"] = [request.tool_choice]
            body["toolConfig"] = {"functionCallingConfig": calling}
        generation: dict[str, Any] = {}
        for key, value in (
            ("temperature", request.temperature),
            ("topP", request.top_p),
            ("maxOutputTokens", request.max_tokens),
            ("seed", request.seed),
        ):
            if value is not None:
                generation[key] = value
        if request.stop:
            generation["stopSequences"] = list(request.stop)
        if request.json_mode:
            generation["responseMimeType"] = "application/json"
        if generation:
            body["generationConfig"] = generation
        for key, value in request.extra.items():
            # One level deep, so extra={"generationConfig": {"topK": 3}} adds to ours.
            current = body.get(key)
            body[key] = (
                {**current, **value} if isinstance(current, dict) and isinstance(value, Mapping) else value
            )
        return body

    def _part(self, item: ContentPart) -> dict[str, Any] | None:
        if isinstance(item, TextPart):
            return {"text": item.text} if item.text else None  # Gemini rejects empty text parts
        if isinstance(item, ImagePart):
            return _image_part(item)
        if isinstance(item, ToolCall):
            call: dict[str, Any] = {"name": item.name, "args": item.arguments}
            if not _is_generated_id(item.id):
                call["id"] = item.id
            part: dict[str, Any] = {"functionCall": call}
            signature = self._signatures.get(_signature_key(item.id, item.name, item.arguments))
            if signature:
                part["thoughtSignature"] = signature
            return part
        response: dict[str, Any] = {"name": item.name, "response": _tool_response(item)}
        if not _is_generated_id(item.tool_call_id):
            response["id"] = item.tool_call_id
        return {"functionResponse": response}

    # -- models and health ---------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        models: list[RemoteModel] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            params = {"pageSize": "1000"}
            if token:
                params["pageToken"] = token
            data = await self.request_json("GET", "models", params=params)
            if not isinstance(data, dict):
                raise_protocol(self.config, "sent a models list that is not an object")
            models.extend(
                self._remote_model(item) for item in data.get("models") or () if isinstance(item, dict)
            )
            token = data.get("nextPageToken")
            if not token or token in seen:  # a repeated token would loop forever
                return models
            seen.add(token)

    def _remote_model(self, item: Mapping[str, Any]) -> RemoteModel:
        methods = list(item.get("supportedGenerationMethods") or ())
        limit = item.get("inputTokenLimit")
        context = limit if isinstance(limit, int) else None
        if "generateContent" in methods:
            capabilities = self.default_capabilities.merged(context_length=context)
        else:  # embeddings, Imagen, Veo: not chat models
            capabilities = Capabilities(streaming=False, context_length=context)
        details = {
            key: item[key]
            for key in ("displayName", "description", "version", "outputTokenLimit", "thinking")
            if key in item
        }
        details["supportedGenerationMethods"] = methods
        return RemoteModel(
            id=str(item.get("name") or "").removeprefix("models/"),
            owned_by="google",
            capabilities=capabilities,
            details=details,
        )

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models?pageSize=1")


__all__ = ["GeminiAdapter", "StreamNormalizer", "clean_schema", "google_error"]
