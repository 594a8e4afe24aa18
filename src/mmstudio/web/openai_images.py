"""The OpenAI-compatible images API: `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
(multipart, one or several `image`/`image[]` parts, optional `mask`), answered in OpenAI's exact shape.

Images go through the same ImageService as the studio (plan, fallback, recipes, gallery). Who answered is
in the same `x-mmstudio-*` headers as chat. `response_format: url` answers with links to `/api/media/{id}`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import ConfigDict, Field
from starlette.datastructures import UploadFile

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
from mmstudio.domain.patterns import NOT_BLANK
from mmstudio.errors import InvalidRequest
from mmstudio.web.bodies import IMAGE_UPLOAD_TYPES, body_schema, check_form, parse_body, upload_body
from mmstudio.web.constraints import RequestModel, between, matching, one_of, text
from mmstudio.web.deps import StudioDep
from mmstudio.web.gateway import route_headers, route_options
from mmstudio.web.images_api import SIZE_DESCRIPTION, SIZE_MESSAGE

router = APIRouter(prefix="/v1/images", tags=["openai"])

RESPONSE_FORMATS = ("b64_json", "url")
MAX_EDIT_IMAGES = 16
IGNORED_EDIT_FIELDS = (
    "background",
    "moderation",
    "output_compression",
    "partial_images",
    "stream",
    "style",
    "user",
)
EDIT_FIELDS = {
    "image",
    "image[]",
    "mask",
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "input_fidelity",
    "output_format",
    "response_format",
    *IGNORED_EDIT_FIELDS,
}


class ImageGenerationIn(RequestModel):
    # OpenAI's fields; ones we do not use (style, user, background, moderation, ...) are accepted.
    model_config = ConfigDict(extra="allow")

    prompt: Annotated[str, text("prompt is required: describe the image to make")]
    model: str | None = None
    n: Annotated[int, between(1, MAX_N, "n")] = 1
    size: Annotated[str, matching(SIZE_PATTERN, SIZE_MESSAGE)] | None = Field(
        default=None, description=SIZE_DESCRIPTION
    )
    quality: Annotated[str, one_of(QUALITIES, "quality")] | None = None
    response_format: Annotated[str, one_of(RESPONSE_FORMATS, "response_format")] | None = Field(
        default=None, description="b64_json (default) or url"
    )
    output_format: Annotated[str, one_of(FORMATS, "output_format")] | None = None
    seed: Annotated[int, between(-1, 2**32 - 1, "seed")] | None = None
    negative_prompt: str | None = None
    fallbacks: bool = True


@router.post("/generations", openapi_extra=body_schema(ImageGenerationIn))
async def generations(request: Request, studio: StudioDep) -> Response:
    """Create images from a prompt (OpenAI's `images.generate`)."""
    body = await parse_body(request, ImageGenerationIn)
    fmt = _response_format(body.response_format)
    order = ImageOrder(
        prompt=body.prompt,
        model=body.model,
        n=body.n,
        size=body.size,
        quality=body.quality,
        seed=body.seed,
        negative_prompt=body.negative_prompt,
        output_format=body.output_format,
        fallbacks=body.fallbacks,
    )
    service: ImageService = studio.images
    outcome = await service.generate(
        order, options=route_options(request, route="gateway", fallbacks=body.fallbacks)
    )
    return await _respond(studio, request, outcome, fmt)


@router.post(
    "/edits",
    openapi_extra=upload_body(
        {
            "image": "an image to edit (several: repeat the part, as image or image[])",
            "mask": "where to edit (transparent: edit here)",
        },
        content_types=IMAGE_UPLOAD_TYPES,
        required=("prompt", "image"),
        fields={
            "prompt": {"type": "string", "pattern": NOT_BLANK},
            "model": {"type": "string"},
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_N},
            "size": {"type": "string", "pattern": SIZE_PATTERN, "description": SIZE_DESCRIPTION},
            "quality": {"type": "string", "enum": list(QUALITIES)},
            "input_fidelity": {"type": "string", "enum": list(FIDELITIES)},
            "output_format": {"type": "string", "enum": list(FORMATS)},
            "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
            **{
                name: {"type": "string", "description": "OpenAI's; accepted, not used"}
                for name in IGNORED_EDIT_FIELDS
            },
        },
    ),
)
async def edits(request: Request, studio: StudioDep) -> Response:
    """Edit or combine images (OpenAI's `images.edit`, one image or several as `image[]`)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("images/edits takes multipart/form-data (image files and fields)", field="image")
    async with request.form(max_files=MAX_EDIT_IMAGES + 1, max_fields=40) as form:
        check_form(form, EDIT_FIELDS)
        files = [f for key in ("image", "image[]") for f in form.getlist(key) if isinstance(f, UploadFile)]
        if not files:
            raise InvalidRequest("send at least one image file as 'image' (or 'image[]')", field="image")
        if len(files) > MAX_EDIT_IMAGES:
            raise InvalidRequest(f"at most {MAX_EDIT_IMAGES} images, got {len(files)}", field="image")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        fmt = _response_format(fields.get("response_format"))
        images = [(await f.read(), f.filename or "image") for f in files]
        mask = form.get("mask")
        masked = (await mask.read(), mask.filename or "mask") if isinstance(mask, UploadFile) else None
    # Persist first: the photos are in the media store before any model is called.
    references = [(await studio.media.save_upload(data, name)).id for data, name in images]
    mask_id = (await studio.media.save_upload(*masked)).id if masked is not None else None
    order = ImageOrder(
        prompt=fields.get("prompt", ""),
        model=fields.get("model") or None,
        n=_int(fields.get("n"), "n", 1),
        size=fields.get("size") or None,
        quality=fields.get("quality"),
        references=tuple(references),
        mask=mask_id,
        input_fidelity=fields.get("input_fidelity"),
        output_format=fields.get("output_format"),
    )
    service: ImageService = studio.images
    outcome = await service.generate(order, options=route_options(request, route="gateway"))
    return await _respond(studio, request, outcome, fmt)


def _response_format(value: str | None) -> str:
    fmt = value if value is not None else "b64_json"
    if fmt not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format {fmt!r} is not one of: {', '.join(RESPONSE_FORMATS)}", field="response_format"
        )
    return fmt


def _int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, got {raw!r}", field=name) from None


async def _respond(studio: Any, request: Request, outcome: ImageOutcome, fmt: str) -> Response:
    """OpenAI's images response. The base64 text is spliced into the JSON as bytes (base64 never needs
    escaping) and encoded in a worker thread: a 2 MB image costs one encode, and the event loop none."""
    base = str(request.base_url).rstrip("/")
    extra: dict[str, Any] = {}
    if outcome.revised_prompt:
        extra["revised_prompt"] = outcome.revised_prompt
    items: list[bytes] = []
    for asset in outcome.assets:
        if fmt == "url":
            items.append(_json({"url": f"{base}/api/media/{asset.id}", **extra}))
        else:
            raw = await studio.media.read_bytes(asset)
            encoded = await asyncio.to_thread(base64.b64encode, raw)
            rest = _json(extra)[1:-1]
            items.append(b'{"b64_json":"' + encoded + b'"' + (b"," + rest if rest else b"") + b"}")
    meta: dict[str, Any] = {"created": int(time.time())}
    first = outcome.assets[0] if outcome.assets else None
    if first is not None:
        meta["size"] = f"{first.width}x{first.height}"
        meta["output_format"] = first.mime.rsplit("/", 1)[-1]
    if outcome.usage:
        meta["usage"] = _usage(outcome.usage)
    body = b'{"data":[' + b",".join(items) + b"]," + _json(meta)[1:]
    headers = route_headers(outcome.info)
    if outcome.size_used:
        headers["x-mmstudio-size"] = outcome.size_used
    return Response(body, media_type="application/json", headers=headers)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _usage(usage: Any) -> dict[str, Any]:
    """OpenAI's usage object; a vendor's other shape (Gemini's token counts) mapped onto it."""
    if "input_tokens" in usage or "output_tokens" in usage:
        return dict(usage)
    tokens_in = int(usage.get("promptTokenCount", 0) or 0)
    tokens_out = int(usage.get("candidatesTokenCount", 0) or 0)
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
        "input_tokens_details": {"text_tokens": tokens_in, "image_tokens": 0},
    }
