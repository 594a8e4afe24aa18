"""The studio's routing API: `POST /api/chat` with `{messages, modelId, providerId, stream}`.

The answer says who answered and how: `modelUsed`, `latencyMs` and every attempt. Streams are
server-sent events: `start`, `delta`, `tool_call`, `model` (a failover mid-answer), `done` or
`error`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ConfigDict, Field

from mmstudio.domain.patterns import NOT_BLANK
from mmstudio.domain.router import RoutedStream, RouteInfo
from mmstudio.errors import InvalidRequest, ModelNotFound
from mmstudio.providers.base import ChatRequest, StreamEvent, Usage
from mmstudio.web.constraints import RequestModel
from mmstudio.web.deps import StudioDep
from mmstudio.web.gateway import route_headers, route_options
from mmstudio.web.openai_wire import MessageIn, convert_messages
from mmstudio.web.sse import sse_event, sse_response

if TYPE_CHECKING:
    from mmstudio.studio import Studio

router = APIRouter(prefix="/api", tags=["chat"])


class StudioChatIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={  # a provider names where a model is: the model is needed with it
            "if": {
                "required": ["providerId"],
                "properties": {"providerId": {"type": "string", "pattern": NOT_BLANK}},
            },
            "then": {
                "required": ["modelId"],
                "properties": {"modelId": {"type": "string", "pattern": NOT_BLANK}},
            },
        },
    )

    messages: list[MessageIn] = Field(min_length=1, description="OpenAI-style messages")
    modelId: str | None = Field(default=None, description="a model id, name or alias")
    providerId: str | None = Field(default=None, description="with modelId: the provider serving it")
    stream: bool = False
    fallbacks: bool = True
    temperature: float | None = Field(default=None, ge=0, le=2)
    maxTokens: int | None = Field(default=None, ge=1)


def _reference(body: StudioChatIn) -> str:
    model, provider = (body.modelId or "").strip(), (body.providerId or "").strip()
    if provider and not model:
        raise InvalidRequest("modelId is required when providerId is given", field="modelId")
    if provider and not model.lower().startswith(provider.lower() + "/"):
        return f"{provider}/{model}"
    return model


def _not_supported(studio: Studio, body: StudioChatIn) -> JSONResponse:
    supported = [
        {"providerId": v.entry.provider_id, "modelId": v.entry.upstream, "name": v.entry.display_name}
        for v in studio.registry.views()
        if v.available and v.entry.modality in ("chat", "code")
    ]
    model, provider = body.modelId or "", body.providerId
    message = (
        f'Model "{model}" from provider "{provider}" is not supported'
        if provider
        else f'Model "{model}" is not supported'
    )
    return JSONResponse(
        {"error": "Model not found", "message": message, "supportedModels": supported}, status_code=404
    )


def _chat_request(body: StudioChatIn, reference: str) -> ChatRequest:
    return ChatRequest(
        model=reference,
        messages=convert_messages(body.messages),
        temperature=body.temperature,
        max_tokens=body.maxTokens,
    )


@router.post("/chat", response_model=None)
async def chat(body: StudioChatIn, request: Request, studio: StudioDep) -> JSONResponse | StreamingResponse:
    """Send messages to the selected model (or the configured default) through the router."""
    reference = _reference(body)
    chat_request = _chat_request(body, reference)
    options = route_options(request, route="studio", fallbacks=body.fallbacks)
    try:
        if not body.stream:
            routed = await studio.router.chat(chat_request, options)
            response, info = routed.response, routed.info
            payload = {
                "id": info.request_id,
                "message": {
                    "role": "assistant",
                    "content": response.text,
                    "toolCalls": [
                        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
                    ],
                },
                "finishReason": response.finish_reason,
                "usage": _usage(response.usage),
                **_who(studio, info),
            }
            return JSONResponse(payload, headers=route_headers(info))
        stream = studio.router.stream(chat_request, options)
        await stream.start()
    except ModelNotFound:
        return _not_supported(studio, body)
    return sse_response(_events(studio, stream), route_headers(stream.info))


def _who(studio: Studio, info: RouteInfo) -> dict[str, Any]:
    entry = info.resolved.entry if info.resolved else None
    return {
        "modelUsed": info.model_used,
        "providerUsed": entry.provider_id if entry else None,
        "modelName": info.resolved.display_name if info.resolved else None,
        "latencyMs": info.latency_ms if info.latency_ms is not None else info.elapsed_ms(),
        "timeToFirstTokenMs": info.first_token_ms,
        "fallback": info.fallback,
        "attempts": [a.as_dict() for a in info.attempts],
        "skipped": [{"model": m, "reason": r} for m, r in info.skipped],
    }


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens}


async def _events(studio: Studio, stream: RoutedStream) -> AsyncIterator[bytes]:
    info = stream.info
    yield sse_event("start", {"id": info.request_id, **_who(studio, info)})
    model = info.model_used
    try:
        async for event in stream:
            if info.model_used != model:
                model = info.model_used
                yield sse_event("model", _who(studio, info))
            frame = _event_frame(event)
            if frame is not None:
                yield frame
            if event.type == "finish":
                yield sse_event(
                    "done",
                    {"finishReason": event.finish_reason, "usage": _usage(info.usage), **_who(studio, info)},
                )
            elif event.type == "error":
                yield sse_event("error", {"message": event.error, **_who(studio, info)})
    finally:
        await stream.aclose()


def _event_frame(event: StreamEvent) -> bytes | None:
    if event.type == "text":
        return sse_event("delta", {"text": event.text})
    if event.type == "tool_call" and event.tool_call is not None:
        call = event.tool_call
        return sse_event(
            "tool_call", {"index": call.index, "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    return None
