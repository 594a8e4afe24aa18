"""Image Studio API: generate images (`/api/images`, JSON or SSE progress), the gallery, and media
bytes with thumbnails (`/api/media`).

`POST /api/images` answers with the stored images, or with `"stream": true` server-sent events: `plan`,
per model `attempt` (and `attempt_failed`), `progress` `{step, steps, percent}` where the engine reports
it, one `image` per stored image, and a final `done` or `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ConfigDict, Field

from mmstudio.domain.media.images import (
    FIDELITIES,
    FORMATS,
    MAX_N,
    QUALITIES,
    ImageOrder,
    ImageOutcome,
    ImageService,
)
from mmstudio.domain.media.sizes import SIZE_PATTERN
from mmstudio.domain.media.types import MediaAsset
from mmstudio.domain.plan import Candidate, Plan
from mmstudio.domain.router import Attempt
from mmstudio.domain.types import ModelView
from mmstudio.errors import InvalidRequest, NotFound, StudioError
from mmstudio.providers.media.base import ImageProgress
from mmstudio.web.bodies import (
    IMAGE_UPLOAD_TYPES,
    PAGE_PARAMETERS,
    body_schema,
    int_param,
    parse_body,
    read_upload,
    upload_body,
)
from mmstudio.web.constraints import RequestModel, between, matching, one_of, text
from mmstudio.web.deps import StudioDep
from mmstudio.web.errors import error_body
from mmstudio.web.gateway import route_headers, route_options
from mmstudio.web.sse import sse_event, sse_response

router = APIRouter(tags=["images"])

IMMUTABLE = "public, max-age=31536000, immutable"


# The success answers of the routes that send a stored file's bytes, not JSON.
MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file (an image or a video)", "content": {"image/*": {}, "video/*": {}}}
}
THUMB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "a WebP thumbnail", "content": {"image/webp": {}}}
}

SIZE_MESSAGE = (
    "size '{value}' is not a size or an aspect ratio; use WIDTHxHEIGHT (e.g. 1024x1024), W:H (e.g. 16:9) "
    "or auto"
)
SIZE_DESCRIPTION = (
    "WIDTHxHEIGHT (sides 64 to 8192), W:H (1:4 to 4:1) or auto; mapped to the nearest the model can do"
)


class ImageFields(RequestModel):
    """What to draw and with what: `POST /api/images` and `POST /api/images/jobs` share these."""

    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, text("prompt is required: describe the image to make")] = Field(
        description="what to draw"
    )
    model: str | None = Field(
        default=None, description="image model id, name or alias; default: the image fallback chain"
    )
    n: Annotated[int, between(1, MAX_N, "n")] = Field(
        default=1, description="how many images (1 to the model's maximum, at most 10)"
    )
    size: Annotated[str, matching(SIZE_PATTERN, SIZE_MESSAGE)] | None = Field(
        default=None, description=SIZE_DESCRIPTION
    )
    quality: Annotated[str, one_of(QUALITIES, "quality")] | None = Field(
        default=None, description="where the model has it"
    )
    seed: Annotated[int, between(-1, 2**32 - 1, "seed")] | None = Field(
        default=None, description="-1 or absent: random; the seed used is in the recipe"
    )
    steps: Annotated[int, between(1, 150, "steps")] | None = Field(
        default=None, description="sampling steps (local engines)"
    )
    negative_prompt: str | None = Field(default=None, description="what to avoid (engines that support it)")
    references: list[str] = Field(default_factory=list, description="media ids of reference photos")
    mask: str | None = Field(default=None, description="media id of a mask (edits)")
    input_fidelity: Annotated[str, one_of(FIDELITIES, "input_fidelity")] | None = Field(
        default=None, description="models that support it"
    )
    output_format: Annotated[str, one_of(FORMATS, "output_format")] | None = None
    workflow: str | None = Field(default=None, description="ComfyUI workflow name")
    parent_id: str | None = Field(default=None, description="the image this one edits or varies")
    fallbacks: bool = Field(default=True, description="false: only the named model")

    def order(self) -> ImageOrder:
        return ImageOrder(
            prompt=self.prompt,
            model=self.model,
            n=self.n,
            size=self.size,
            quality=self.quality,
            seed=self.seed,
            steps=self.steps,
            negative_prompt=self.negative_prompt,
            references=tuple(self.references),
            mask=self.mask,
            input_fidelity=self.input_fidelity,
            output_format=self.output_format,
            workflow=self.workflow,
            parent_id=self.parent_id,
            fallbacks=self.fallbacks,
        )


class ImageIn(ImageFields):
    stream: bool = Field(default=False, description="true: server-sent progress events")


# -- generating ----------------------------------------------------------------------------------


@router.post("/api/images", response_model=None, openapi_extra=body_schema(ImageIn))
async def generate(request: Request, studio: StudioDep) -> Response:
    """Make images with the chosen model (then its fallbacks and the image chain); each is stored with
    its recipe. `stream: true` answers with server-sent progress events."""
    body = await parse_body(request, ImageIn)
    service: ImageService = studio.images
    options = route_options(request, route="images", fallbacks=body.fallbacks)
    if body.stream:
        return sse_response(_stream(service, body.order(), options))
    outcome = await service.generate(body.order(), options=options)
    return JSONResponse(outcome_json(studio, outcome), headers=route_headers(outcome.info))


class _Events:
    """ImageObserver that queues SSE frames for the response."""

    def __init__(self, studio: Any) -> None:
        self.studio = studio
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def planned(self, plan: Plan) -> None:
        await self.queue.put(
            sse_event(
                "plan",
                {
                    "candidates": [c.model_id for c in plan.candidates],
                    "skipped": [{"model": m, "reason": r} for m, r in plan.skipped],
                },
            )
        )

    async def trying(self, candidate: Candidate, number: int) -> None:
        await self.queue.put(
            sse_event(
                "attempt",
                {
                    "model": candidate.model_id,
                    "modelName": candidate.resolved.display_name,
                    "kind": candidate.resolved.entry.kind,
                    "index": number,
                    "timeoutS": candidate.timeout,
                },
            )
        )

    async def failed(self, candidate: Candidate, attempt: Attempt) -> None:
        await self.queue.put(
            sse_event(
                "attempt_failed",
                {
                    "model": candidate.model_id,
                    "modelName": candidate.resolved.display_name,
                    "kind": candidate.resolved.entry.kind,
                    "error": attempt.error,
                    "errorKind": attempt.kind,
                    "latencyMs": attempt.latency_ms,
                },
            )
        )

    async def progress(self, model_id: str, progress: ImageProgress) -> None:
        await self.queue.put(
            sse_event(
                "progress",
                {
                    "model": model_id,
                    "step": progress.step,
                    "steps": progress.steps,
                    "percent": progress.percent,
                },
            )
        )

    async def image(self, asset: MediaAsset) -> None:
        await self.queue.put(sse_event("image", asset_json(self.studio, asset)))


async def _stream(service: ImageService, order: ImageOrder, options: Any) -> AsyncIterator[bytes]:
    events = _Events(service)

    async def run() -> None:
        try:
            outcome = await service.generate(order, observer=events, options=options)
            await events.queue.put(sse_event("done", outcome_json(service, outcome)))
        except StudioError as exc:
            _status, body = error_body(exc)
            await events.queue.put(sse_event("error", body))
        finally:
            await events.queue.put(None)

    task = asyncio.create_task(run(), name="mmstudio-image")
    try:
        while (frame := await events.queue.get()) is not None:
            yield frame
    finally:
        if not task.done():  # the client left: stop the generation (local engines are told to cancel)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the gallery ---------------------------------------------------------------------------------


@router.get("/api/images/models")
async def image_models(studio: StudioDep) -> JSONResponse:
    """Every image model, local engines first, with what it can do and whether it is usable now (a
    model whose key is missing says which variable to set)."""
    views = [v for v in studio.registry.views() if v.entry.modality == "image"]
    views.sort(key=lambda v: (v.entry.kind != "local", not v.available, v.entry.provider_id, v.entry.id))
    return JSONResponse({"models": [model_json(v) for v in views]})


@router.get(
    "/api/images",
    openapi_extra={
        "parameters": [
            *PAGE_PARAMETERS["parameters"],
            {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "provider", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "q", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "uploads", "in": "query", "required": False, "schema": {"type": "boolean"}},
        ]
    },
)
async def list_images(request: Request, studio: StudioDep) -> JSONResponse:
    """Stored images, newest first: `limit` (1 to 100, default 40), `offset`, and filters `model`,
    `provider` and `q` (words in the prompt); `uploads=true` lists uploaded images too (a frame or
    reference picker)."""
    limit = int_param(request, "limit", 40)
    offset = int_param(request, "offset", 0)
    if not 1 <= limit <= 100:
        raise InvalidRequest(f"limit must be between 1 and 100, got {limit}", field="limit")
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more, got {offset}", field="offset")
    query = request.query_params
    page = await studio.media.list(
        limit=limit,
        offset=offset,
        model=query.get("model") or None,
        provider=query.get("provider") or None,
        q=query.get("q") or None,
        with_uploads=_flag(query.get("uploads"), "uploads"),
    )
    return JSONResponse(
        {
            "items": [asset_json(studio, a, recipe=False) for a in page.items],
            "total": page.total,
            "limit": limit,
            "offset": offset,
        }
    )


@router.get("/api/images/{asset_id}")
async def get_image(asset_id: str, studio: StudioDep) -> JSONResponse:
    """One image with its full recipe and attempts."""
    return JSONResponse(asset_json(studio, await _image(studio, asset_id)))


@router.delete("/api/images/{asset_id}", status_code=204)
async def delete_image(asset_id: str, studio: StudioDep) -> Response:
    """Delete an image (its file goes when no other image shares the same bytes)."""
    await _image(studio, asset_id)
    await studio.media.delete(asset_id)
    return Response(status_code=204)


@router.post("/api/images/{asset_id}/reuse")
async def reuse_image(asset_id: str, studio: StudioDep) -> JSONResponse:
    """The recipe of an image as a new `POST /api/images` body."""
    service: ImageService = studio.images
    return JSONResponse(service.reuse(await _image(studio, asset_id)))


# -- media bytes ---------------------------------------------------------------------------------


@router.post(
    "/api/media",
    status_code=201,
    openapi_extra=upload_body(
        {"file": "an image (PNG, JPEG, WebP, GIF) or a clip"}, content_types=IMAGE_UPLOAD_TYPES
    ),
)
async def upload(request: Request, studio: StudioDep) -> JSONResponse:
    """Upload a reference photo or an image to edit (multipart field `file`): checked, turned upright
    (EXIF orientation) and stored without its metadata."""
    data, filename = await read_upload(request, "image")
    asset = await studio.media.save_upload(data, filename or "upload")
    return JSONResponse(asset_json(studio, asset), status_code=201)


@router.get("/api/media/{asset_id}", responses=MEDIA_RESPONSES)
async def media_bytes(asset_id: str, request: Request, studio: StudioDep) -> Response:
    """The image's bytes, with its content type and an ETag (its sha256)."""
    return await asset_bytes(request, studio, await _asset(studio, asset_id))


@router.get("/api/media/{asset_id}/thumb", responses=THUMB_RESPONSES)
async def media_thumb(asset_id: str, request: Request, studio: StudioDep) -> Response:
    """A WebP thumbnail (made once, then served from memory or the media store)."""
    return await asset_thumb(request, studio, await _asset(studio, asset_id))


async def asset_bytes(request: Request, studio: Any, asset: MediaAsset) -> Response:
    return await _file(request, f'"{asset.sha256}"', asset.mime, lambda: studio.media.read_path(asset))


async def asset_thumb(request: Request, studio: Any, asset: MediaAsset) -> Response:
    etag = f'"thumb-{asset.sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(await studio.media.thumbnail_bytes(asset), media_type="image/webp", headers=headers)


async def _file(request: Request, etag: str, mime: str, path: Callable[[], Awaitable[Path]]) -> Response:
    """Content-addressed bytes: cached for a year, and a matching If-None-Match is a 304."""
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(await path(), media_type=mime, headers=headers)


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("", "false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise InvalidRequest(f"{name} must be true or false, got {value!r}", field=name)


async def _asset(studio: Any, asset_id: str, tier: str | None = None) -> MediaAsset:
    """The asset, when it belongs to `tier` (None: the studio's own media, not a story tier's):
    another tier's media is not found, as if it did not exist."""
    asset: MediaAsset | None = await studio.media.get(asset_id)
    if asset is None or asset.tier != tier:
        raise NotFound(f"no media {asset_id!r}")
    return asset


tier_asset = _asset


async def _image(studio: Any, asset_id: str) -> MediaAsset:
    asset = await _asset(studio, asset_id)
    if asset.kind != "image":
        raise NotFound(f"no image {asset_id!r}")
    return asset


# -- rendering -----------------------------------------------------------------------------------


def model_json(view: ModelView) -> dict[str, Any]:
    caps = view.entry.image
    return {
        "id": view.entry.id,
        "name": view.entry.display_name,
        "provider": view.entry.provider_id,
        "providerName": view.endpoint.display_name,
        "kind": view.entry.kind,
        "usable": view.available,
        "reason": view.unavailable_reason,
        "health": view.health.status,
        "latencyMs": view.health.latency_ms,
        "keyEnv": view.endpoint.key_env,
        "capabilities": None
        if caps is None
        else {
            "references": caps.supports_references,
            "inputFidelity": caps.supports_input_fidelity,
            "edit": caps.supports_edit,
            "mask": caps.supports_mask,
            "negativePrompt": caps.supports_negative_prompt,
            "seed": caps.supports_seed,
            "steps": caps.supports_steps,
            "sizes": list(caps.sizes),
            "aspectRatios": list(caps.aspect_ratios),
            "qualities": list(caps.qualities),
            "maxN": caps.max_n,
            "maxReferences": caps.max_references,
            "outputFormats": list(caps.output_formats),
        },
    }


def asset_json(studio: Any, asset: MediaAsset, *, recipe: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": asset.id,
        "kind": asset.kind,
        "mime": asset.mime,
        "width": asset.width,
        "height": asset.height,
        "bytes": asset.bytes,
        "sha256": asset.sha256,
        "createdAt": asset.created_at.isoformat(),
        "url": f"/api/media/{asset.id}",
        "thumbUrl": f"/api/media/{asset.id}/thumb",
        "latencyMs": asset.latency_ms,
        "costUsd": asset.cost_usd,
        "parentId": asset.parent_id,
    }
    r = asset.recipe
    if r is not None:
        data["modelUsed"] = r.model_used
        data["modelName"] = (r.extra or {}).get("display_name") or r.model_used
        data["prompt"] = r.prompt
        data["seed"] = r.seed
    if recipe:
        data["recipe"] = r.to_dict() if r is not None else None
        data["attempts"] = list(asset.attempts)
    return data


def outcome_json(studio: Any, outcome: ImageOutcome) -> dict[str, Any]:
    info = outcome.info
    return {
        "images": [asset_json(studio, a) for a in outcome.assets],
        "modelUsed": info.model_used,
        "modelName": info.resolved.display_name if info.resolved else None,
        "fallback": info.fallback,
        "attempts": [a.as_dict() for a in info.attempts],
        "skipped": [{"model": m, "reason": r} for m, r in info.skipped],
        "sizeUsed": outcome.size_used,
        "notes": outcome.notes,
        "latencyMs": info.latency_ms,
        "requestId": info.request_id,
    }
