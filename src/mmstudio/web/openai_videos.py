"""The OpenAI-compatible videos API over the job system: `POST /v1/videos`, `GET /v1/videos/{id}`,
`GET /v1/videos/{id}/content`, `GET /v1/videos`, `DELETE /v1/videos/{id}`, in OpenAI's shapes, so the
official SDK's `client.videos.create / retrieve / download_content / list / delete` work for every
video model (the `model` field picks the vendor). Each video is a durable job: `Idempotency-Key` on
create answers the job it made, and a restart resumes it instead of paying for it again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ConfigDict, Field
from starlette.datastructures import UploadFile

from mmstudio.domain.jobs.types import Job
from mmstudio.domain.video.service import VideoOrder
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.web.bodies import (
    IMAGE_UPLOAD_TYPES,
    body_schema,
    check_form,
    file_encoding,
    parse_body,
    validate,
)
from mmstudio.web.constraints import SAYS_SOMETHING, RequestModel, between, matching
from mmstudio.web.deps import StudioDep

router = APIRouter(prefix="/v1/videos", tags=["openai"])

SECONDS = r"^(?:[1-9][0-9]{0,3})?$"  # empty: the model's default
SECONDS_MESSAGE = "seconds must be a whole number of seconds, got '{value}'"

STATUS = {
    "queued": "queued",
    "submitting": "queued",
    "running": "in_progress",
    "downloading": "in_progress",
    "complete": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


def video_json(job: Job) -> dict[str, Any]:
    spec = job.request
    duration = spec.get("duration_s")
    error = None
    if job.state in ("failed", "cancelled"):
        error = {"code": job.error_kind or "failed", "message": job.error_message or job.state}
    return {
        "id": job.id,
        "object": "video",
        "created_at": int(job.created_at.timestamp()),
        "completed_at": int(job.finished_at.timestamp())
        if job.state == "complete" and job.finished_at
        else None,
        "expires_at": None,  # kept until you delete it
        "status": STATUS[job.state],
        "model": job.model or spec.get("model") or (job.plan[0] if job.plan else None),
        "progress": int(job.progress or 0) if job.state != "complete" else 100,
        "prompt": spec.get("prompt"),
        "seconds": str(duration) if duration is not None else None,
        "size": spec.get("resolution"),
        "error": error,
        "remixed_from_video_id": None,
    }


class VideoCreateIn(RequestModel):
    """OpenAI's `videos.create` fields; others (OpenAI's or a client's own) are accepted and unused."""

    model_config = ConfigDict(extra="allow")

    prompt: Annotated[str, matching(SAYS_SOMETHING, "prompt is required: describe the video to make")]
    model: str | None = Field(default=None, description="video model id or alias; default: the first usable")
    seconds: (
        Annotated[int, between(1, 9999, "seconds")]
        | Annotated[str, matching(SECONDS, SECONDS_MESSAGE)]
        | None
    ) = Field(
        default=None, description="the length (one the model offers), as OpenAI's SDK sends it: a string"
    )
    size: str | None = Field(default=None, description="e.g. 1280x720 (one the model offers)")


CREATE_BODY = body_schema(VideoCreateIn)
CREATE_BODY["requestBody"]["content"]["multipart/form-data"] = {
    "schema": {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "pattern": SAYS_SOMETHING},
            "model": {"type": "string"},
            "seconds": {"type": "string", "pattern": SECONDS},
            "size": {"type": "string"},
            "input_reference": {"type": "string", "format": "binary", "description": "the first frame"},
        },
    },
    "encoding": file_encoding(("input_reference",), IMAGE_UPLOAD_TYPES),
}
FORM_FIELDS = {"prompt", "model", "seconds", "size", "input_reference"}


async def _order(request: Request, studio: Any) -> VideoOrder:
    """OpenAI's create fields (JSON, or multipart with an `input_reference` file)."""
    content_type = request.headers.get("content-type", "")
    start_id = None
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=20) as form:
            check_form(form, FORM_FIELDS)
            body = validate(VideoCreateIn, {k: v for k, v in form.items() if isinstance(v, str)})
            reference = form.get("input_reference")
            if isinstance(reference, UploadFile):
                data, name = await reference.read(), reference.filename or "reference.png"
                start_id = (await studio.media.save_upload(data, name)).id
    else:
        body = await parse_body(request, VideoCreateIn)
    return VideoOrder(
        prompt=body.prompt,
        model=body.model or None,
        duration_s=int(body.seconds) if body.seconds not in (None, "") else None,
        resolution=body.size or None,
        start_image=start_id,
        idempotency_key=request.headers.get("idempotency-key") or None,
    )


@router.post("", openapi_extra=CREATE_BODY)
async def create(request: Request, studio: StudioDep) -> JSONResponse:
    """Create a video (OpenAI's `videos.create`)."""
    job, _ = await studio.videos.create(await _order(request, studio))
    return JSONResponse(video_json(job))


@router.get("")
async def list_videos(request: Request, studio: StudioDep) -> JSONResponse:
    raw = request.query_params.get("limit") or "20"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest(f"limit must be between 1 and 100, got {raw!r}", field="limit")
    limit = int(raw)
    page = await studio.jobs.list(kind="video", state=None, limit=limit, offset=0)
    data = [video_json(j) for j in page.items]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.total > len(data),
        }
    )


@router.get("/{video_id}")
async def retrieve(video_id: str, studio: StudioDep) -> JSONResponse:
    return JSONResponse(video_json(await _job(studio, video_id)))


@router.get(
    "/{video_id}/content",
    response_model=None,
    responses={
        200: {"description": "the video, or its poster", "content": {"video/*": {}, "image/webp": {}}}
    },
)
async def content(video_id: str, request: Request, studio: StudioDep) -> Response:
    """The MP4 (`variant=video`, the default) or its poster (`variant=thumbnail`, WebP)."""
    job = await _job(studio, video_id)
    if job.state != "complete" or not job.output_ids:
        raise InvalidRequest(f"video {video_id} is {STATUS[job.state]}; its content is not ready", field="id")
    asset = await studio.media.get(job.output_ids[0])
    if asset is None:
        raise NotFound(f"the content of video {video_id} was deleted")
    variant = request.query_params.get("variant") or "video"
    if variant == "thumbnail":
        return FileResponse(await studio.media.poster(asset), media_type="image/webp")
    if variant != "video":
        raise InvalidRequest(f"variant {variant!r} is not one of: video, thumbnail", field="variant")
    return FileResponse(await studio.media.read_path(asset), media_type=asset.mime)


@router.delete("/{video_id}")
async def delete(video_id: str, studio: StudioDep) -> JSONResponse:
    """Cancel it if it is still running, and delete its video file; the job's record stays."""
    job = await _job(studio, video_id)
    if not job.terminal:
        await studio.jobs.cancel(job.id)
    for asset_id in job.output_ids:
        if await studio.media.get(asset_id) is not None:
            await studio.media.delete(asset_id)
    return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})


async def _job(studio: Any, video_id: str) -> Job:
    job: Job = await studio.jobs.get(video_id)
    if job.kind != "video":
        raise NotFound(f"no video {video_id!r}")
    return job
