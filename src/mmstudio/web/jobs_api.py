"""Jobs and videos in the studio API: `POST /api/videos` makes a durable video job (202, the job); the
`/api/jobs` routes list, show, follow (SSE), cancel and retry jobs of every kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from mmstudio.domain.jobs.types import STATES, TERMINAL, Job
from mmstudio.domain.video.models import VideoEntry
from mmstudio.domain.video.service import VideoOrder
from mmstudio.errors import InvalidRequest, StudioError
from mmstudio.web.bodies import PAGE_PARAMETERS, body_schema, int_param, parse_body
from mmstudio.web.constraints import RequestModel, text
from mmstudio.web.deps import StudioDep
from mmstudio.web.images_api import ImageFields
from mmstudio.web.sse import sse_event, sse_response, with_keepalive

router = APIRouter(tags=["jobs"])


class VideoIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Annotated[str, text("prompt is required: describe the video to make")] = Field(
        description="what happens in the video"
    )
    model: str | None = Field(default=None, description="video model id or alias; default: the first usable")
    duration_s: int | None = Field(default=None, description="seconds (one the model offers)")
    aspect_ratio: str | None = Field(default=None, description="e.g. 16:9 (one the model offers)")
    resolution: str | None = Field(default=None, description="e.g. 720p (one the model offers)")
    seed: int | None = None
    negative_prompt: str | None = None
    start_image: str | None = Field(default=None, description="media id of the first frame (image-to-video)")
    end_image: str | None = Field(
        default=None, description="media id of the last frame (models that take it)"
    )
    after_job: str | None = Field(default=None, description="start only when this job is complete")
    fallbacks: bool = Field(default=True, description="false: only the named model")


@router.post("/api/videos", status_code=202, response_model=None, openapi_extra=body_schema(VideoIn))
async def create_video(request: Request, studio: StudioDep) -> JSONResponse:
    """Make a video: stored as a job at once (answered 202 with it), run by the job worker. The same
    `Idempotency-Key` header again answers the job it made (200), never a second paid submission."""
    body = await parse_body(request, VideoIn)
    order = VideoOrder(
        **body.model_dump(exclude={"fallbacks"}),
        fallbacks=body.fallbacks,
        idempotency_key=request.headers.get("idempotency-key") or None,
    )
    job, created = await studio.videos.create(order)
    return JSONResponse(job_json(job), status_code=202 if created else 200)


@router.get("/api/videos/models")
async def video_models(studio: StudioDep) -> JSONResponse:
    """Every video model with what it can do and whether it is usable now (one whose key is missing
    says which variable to set). `default` marks the model a video without one goes to."""
    models = studio.videos.models
    await models.refresh()
    usable = [e for e in models.entries.values() if e.usable]
    try:
        default: str | None = models.plan(None)[0] if usable else None
    except StudioError:
        default = None
    return JSONResponse(
        {"models": [video_model_json(e, default=e.id == default) for e in models.entries.values()]}
    )


def video_model_json(entry: VideoEntry, *, default: bool = False) -> dict[str, Any]:
    caps = entry.capabilities
    return {
        "id": entry.id,
        "name": entry.display_name,
        "provider": entry.provider,
        "kind": "local" if entry.local else "cloud",
        "usable": entry.usable,
        "reason": entry.reason,
        "default": default,
        "capabilities": {
            "durations": list(caps.durations),
            "aspectRatios": list(caps.aspect_ratios),
            "resolutions": list(caps.resolutions),
            "imageToVideo": caps.image_to_video,
            "textToVideo": caps.text_to_video,
            "endFrame": caps.end_frame,
            "cameraMotion": caps.camera_motion,
            "cameraMoves": list(caps.camera_moves),
            "seed": caps.seed,
            "negativePrompt": caps.negative_prompt,
            "loop": caps.loop,
            "pricePerSecondUsd": caps.price_per_second_usd,
            "typicalSeconds": caps.typical_seconds,
        },
    }


class ImageJobIn(ImageFields):
    after_job: str | None = Field(default=None, description="start only when this job is complete")


@router.post("/api/images/jobs", status_code=202, response_model=None, openapi_extra=body_schema(ImageJobIn))
async def create_image_job(request: Request, studio: StudioDep) -> JSONResponse:
    """Make images as a durable job (answered 202 with it; follow it at `/api/jobs/{id}/events`). The
    order is checked first, like `POST /api/images`. A video made with `after_job` set to this job
    starts from its first image. The same `Idempotency-Key` again answers the job it made (200)."""
    body = await parse_body(request, ImageJobIn)
    job, created = await studio.image_jobs.create(
        body.order(),
        after_job=body.after_job,
        idempotency_key=request.headers.get("idempotency-key") or None,
    )
    return JSONResponse(job_json(job), status_code=202 if created else 200)


@router.get(
    "/api/jobs",
    openapi_extra={
        "parameters": [
            *PAGE_PARAMETERS["parameters"],
            {"name": "kind", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "state",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": list(STATES)},
            },
        ]
    },
)
async def list_jobs(request: Request, studio: StudioDep) -> JSONResponse:
    """Jobs, newest first: `limit` (1 to 100, default 50), `offset`, filters `kind` and `state`."""
    limit, offset = int_param(request, "limit", 50), int_param(request, "offset", 0)
    if not 1 <= limit <= 100:
        raise InvalidRequest(f"limit must be between 1 and 100, got {limit}", field="limit")
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more, got {offset}", field="offset")
    state = request.query_params.get("state")
    if state is not None and state not in STATES:
        raise InvalidRequest(f"state {state!r} is not one of: {', '.join(STATES)}", field="state")
    page = await studio.jobs.list(
        kind=request.query_params.get("kind") or None, state=state, limit=limit, offset=offset
    )
    return JSONResponse(
        {"items": [job_json(j) for j in page.items], "total": page.total, "limit": limit, "offset": offset}
    )


@router.get("/api/jobs/summary")
async def jobs_summary(studio: StudioDep) -> JSONResponse:
    """How many jobs are in each state, and how many are active (queued or running): the header's
    badge."""
    counts = await studio.jobs.counts()
    active = sum(n for state, n in counts.items() if state not in TERMINAL)
    return JSONResponse({"active": active, "states": {state: counts.get(state, 0) for state in STATES}})


@router.get("/api/jobs/events", response_model=None)
async def all_job_events(studio: StudioDep) -> Response:
    """Server-sent events: a `job` event with the job at every change of any job, from this process
    and every other one (the Jobs page keeps its list live with one connection)."""

    async def frames() -> AsyncIterator[bytes]:
        async for job in studio.jobs.follow_all():
            yield sse_event("job", job_json(job))

    return sse_response(with_keepalive(frames()))


@router.get("/api/jobs/{job_id}")
async def get_job(job_id: str, studio: StudioDep) -> JSONResponse:
    return JSONResponse(job_json(await studio.jobs.get(job_id)))


@router.get("/api/jobs/{job_id}/events", response_model=None)
async def job_events(job_id: str, studio: StudioDep) -> Response:
    """Server-sent events: `job` with the job as it is now, then at every change (state, progress,
    attempt), and a final `done` (complete) or `error` (failed or cancelled)."""
    await studio.jobs.get(job_id)  # a 404 before the stream starts

    async def frames() -> AsyncIterator[bytes]:
        async for job in studio.jobs.follow(job_id):
            yield sse_event("job", job_json(job))
            if job.state in TERMINAL:
                yield sse_event("done" if job.state == "complete" else "error", job_json(job))

    return sse_response(with_keepalive(frames()))  # a job queued behind others can be quiet for long


@router.post("/api/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, studio: StudioDep) -> JSONResponse:
    """Cancel: a queued job at once; a running one is stopped upstream where the vendor allows it."""
    return JSONResponse(job_json(await studio.jobs.cancel(job_id)))


@router.post("/api/jobs/{job_id}/retry", status_code=202)
async def retry_job(job_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """A new job with the same request (a failed or cancelled one only). It is a new paid submission:
    the UI asks first."""
    job = await studio.jobs.retry(job_id, idempotency_key=request.headers.get("idempotency-key") or None)
    return JSONResponse(job_json(job), status_code=202)


def job_json(job: Job) -> dict[str, Any]:
    tier = job.request.get("tier")  # a story's picture or video is served only under its tier
    media = f"/api/stories/{tier}/media" if isinstance(tier, str) and tier else "/api/media"
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "progress": job.progress,
        "progressEstimated": job.progress_estimated,
        "model": job.model,
        "provider": job.provider,
        "plan": list(job.plan),
        "request": dict(job.request),
        "attempts": [dict(a) for a in job.attempts],
        "upstreamHandle": job.upstream_handle,  # the vendor's id for it (request id, operation, prompt id)
        # How the request was fitted to the chosen model: {"adjusted": {field: {asked, sent}}, "dropped"}
        "notes": dict(job.info.get("notes") or {}),
        "dependsOn": job.depends_on,
        "cancelRequested": job.cancel_requested,
        "errorKind": job.error_kind,
        "error": job.error_message,
        "outputs": [
            {"id": o, "url": f"{media}/{o}", "posterUrl": f"{media}/{o}/thumb"} for o in job.output_ids
        ],
        "attemptCount": job.attempt_count,
        "createdAt": job.created_at.isoformat(),
        "updatedAt": job.updated_at.isoformat(),
        "submittedAt": job.submitted_at.isoformat() if job.submitted_at else None,
        "finishedAt": job.finished_at.isoformat() if job.finished_at else None,
    }
