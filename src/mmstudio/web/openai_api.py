"""The OpenAI-compatible gateway: /v1/models and /v1/chat/completions (plain and SSE streaming).

Any OpenAI client works unchanged with `base_url` pointed here. The `model` field takes
`provider/model`, a registered name or an alias; errors come in OpenAI's error shape.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from mmstudio.domain.router import RoutedStream
from mmstudio.domain.types import ModelView
from mmstudio.domain.video.models import VideoEntry
from mmstudio.errors import ModelNotFound, NotFound
from mmstudio.web.deps import StudioDep, get_studio
from mmstudio.web.gateway import route_headers, route_options
from mmstudio.web.openai_wire import DONE, ChatCompletionIn, ChunkWriter, completion_body, to_chat_request
from mmstudio.web.sse import SSE_HEADERS

router = APIRouter(prefix="/v1", tags=["openai"])


def _model_object(view: ModelView) -> dict[str, Any]:
    return {
        "id": view.entry.id,
        "object": "model",
        "created": 0,
        "owned_by": view.entry.provider_id,
        "name": view.entry.display_name,
        "modality": view.entry.modality,
    }


@router.get("/models")
async def list_models(studio: StudioDep) -> dict[str, Any]:
    """The models that can answer now (local engines up, cloud keys set)."""
    views = [v for v in studio.registry.views() if v.available]
    views.sort(key=lambda v: (v.entry.kind != "local", v.entry.id))
    await studio.videos.models.refresh()
    videos = [_video_object(e) for e in studio.videos.models.entries.values() if e.usable]
    return {"object": "list", "data": [_model_object(v) for v in views] + videos}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, studio: StudioDep) -> dict[str, Any]:
    await studio.videos.models.refresh()
    video = studio.videos.models.entries.get(model_id)
    if video is not None and video.usable:
        return _video_object(video)
    try:
        resolved = studio.registry.resolve(model_id)
    except ModelNotFound as exc:  # OpenAI answers 404 for a model it does not have
        raise NotFound(exc.message) from None
    return _model_object(studio.registry.view(resolved.entry))


def _video_object(entry: VideoEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "model",
        "created": 0,
        "owned_by": entry.provider,
        "name": entry.display_name,
        "modality": "video",
    }


async def chat_completions(
    body: ChatCompletionIn, request: Request, studio: StudioDep
) -> JSONResponse | StreamingResponse:
    """Chat completions through the router (fallback included; send `"fallbacks": false` or the
    header `x-mmstudio-fallbacks: off` to pin the model). Response headers name the model that
    answered: `x-mmstudio-model`, `x-mmstudio-attempts`, `x-mmstudio-latency-ms`."""
    chat = to_chat_request(body)
    options = route_options(request, route="gateway", fallbacks=body.fallbacks)
    if not body.stream:
        routed = await studio.router.chat(chat, options)
        info = routed.info
        model = info.model_used or body.model
        return JSONResponse(
            completion_body(routed.response, request_id=info.request_id, model=model),
            headers=route_headers(info),
        )
    stream = studio.router.stream(chat, options)
    await stream.start()  # failures before the first token are plain HTTP errors
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _frames(stream, ChunkWriter(stream.info.request_id, include_usage), body.model),
        media_type="text/event-stream",
        headers={**route_headers(stream.info), **SSE_HEADERS},
    )


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json"


class _ChatCompletionsRoute(APIRoute):
    """FastAPI's route for `chat_completions` (its OpenAPI entry, its handling of anything unusual)
    with a short way through for the well-formed request.

    FastAPI's request handling (body field, dependency solving, the throwaway sub-response it makes
    for dependencies) cost about as much CPU as everything else mmstudio does for a gateway request.
    A JSON body that parses and validates as `ChatCompletionIn` (the same `json.loads` and pydantic
    validation FastAPI applies) goes straight to the endpoint; any other request (another content
    type, malformed JSON, a validation error) is handed to FastAPI's handler, which reads the cached
    body again and answers exactly as it always has, so error shapes and messages cannot drift.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if _is_json(request.headers.get("content-type")):
                try:
                    raw = await request.body()  # kept on the request for FastAPI's handler
                except HTTPException:  # the body size limit: as FastAPI would, let it through
                    raise
                except Exception:  # the client left: FastAPI's handler says what it always said
                    return await full(request)
                try:
                    body = ChatCompletionIn.model_validate(json.loads(raw)) if raw else None
                except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError too
                    body = None
                if body is not None:
                    return await chat_completions(body, request, await get_studio(request))
            return await full(request)

        return handler


router.add_api_route(
    "/chat/completions",
    chat_completions,
    methods=["POST"],
    response_model=None,
    route_class_override=_ChatCompletionsRoute,
)


async def _frames(stream: RoutedStream, writer: ChunkWriter, requested: str) -> AsyncIterator[bytes]:
    try:
        async for event in stream:
            frame = writer.frame(event, stream.info.model_used or requested)
            if frame is not None:
                yield frame
            if event.type == "error":
                return  # a truncated answer never ends with [DONE]
        yield DONE
    finally:
        await stream.aclose()  # the client left early: stop the upstream, record it as cancelled
