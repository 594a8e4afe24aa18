"""The Video Studio API under `/api/video-studio/projects`: projects and their next-shot settings,
clips on the timeline (add, trim, reorder, duplicate, delete, undo) and Generate. Every change is
stored at once, so a reload or another browser shows the same project, the same model selected."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from mmstudio.domain.video.projects import (
    ASPECT_RATIOS,
    MAX_PROMPT,
    RANGES,
    RESOLUTIONS,
    Clip,
    Project,
    ShotSettings,
)
from mmstudio.domain.video.studio import ClipView, ProjectView
from mmstudio.web.bodies import body_schema, parse_body
from mmstudio.web.constraints import RequestModel
from mmstudio.web.deps import StudioDep
from mmstudio.web.jobs_api import job_json, video_model_json

router = APIRouter(prefix="/api/video-studio/projects", tags=["video studio"])

Camera = Field(default=None, ge=RANGES["pan_x"][0], le=RANGES["pan_x"][1])  # the domain's ranges
Tune = Field(default=None, ge=RANGES["stability"][0], le=RANGES["stability"][1])


class ProjectIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    aspect_ratio: str = Field(default="16:9", json_schema_extra={"enum": list(ASPECT_RATIOS)})
    resolution: str = Field(default="720p", json_schema_extra={"enum": list(RESOLUTIONS)})


class ProjectPatch(RequestModel):
    """Only the fields sent are written (two tabs changing different fields both keep theirs)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    aspect_ratio: str | None = Field(default=None, json_schema_extra={"enum": list(ASPECT_RATIOS)})
    resolution: str | None = Field(default=None, json_schema_extra={"enum": list(RESOLUTIONS)})
    selected_clip_id: str | None = None
    playhead_s: float | None = Field(default=None, ge=0, le=86400)
    model: str | None = Field(default=None, max_length=400, description="video model id; persists at once")
    start_frame: str | None = Field(default=None, description="image asset id, or null to clear")
    end_frame: str | None = Field(default=None, description="image asset id (models that take one)")
    pan_x: float | None = Camera
    pan_y: float | None = Camera
    zoom: float | None = Camera
    tilt: float | None = Camera
    roll: float | None = Camera
    duration_s: float | None = Field(default=None, ge=RANGES["duration_s"][0], le=RANGES["duration_s"][1])
    stability: float | None = Tune
    amplitude: float | None = Tune
    coherence: float | None = Tune
    seed: int | None = Field(default=None, ge=-1, le=2**31 - 1, description="-1: random")
    loop: bool | None = None
    interpolate: bool | None = None
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT)


class ClipIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    asset_id: str = Field(description="a video in the media store (an upload or a generated one)")


class TrimIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    trim_in_s: float = Field(default=0.0, ge=0)
    trim_out_s: float | None = Field(default=None, gt=0, description="null: to the clip's end")


class OrderIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    clip_ids: list[str] = Field(description="every clip of the timeline, each once, in the new order")


class UndoIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    clip_id: str | None = Field(default=None, description="the clip to restore; default: the last deleted")


# -- routes ---------------------------------------------------------------------------------------


@router.get("")
async def list_projects(studio: StudioDep) -> JSONResponse:
    return JSONResponse({"items": [project_summary(p) for p in await studio.video_studio.list()]})


@router.post("", status_code=201, response_model=None, openapi_extra=body_schema(ProjectIn))
async def create_project(request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, ProjectIn)
    made = await studio.video_studio.create(
        body.name, aspect_ratio=body.aspect_ratio, resolution=body.resolution
    )
    return JSONResponse(view_json(await studio.video_studio.view(made.id)), status_code=201)


@router.get("/{project_id}")
async def get_project(project_id: str, studio: StudioDep) -> JSONResponse:
    return JSONResponse(view_json(await studio.video_studio.view(project_id)))


@router.patch("/{project_id}", response_model=None, openapi_extra=body_schema(ProjectPatch))
async def patch_project(project_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, ProjectPatch)
    await studio.video_studio.update(project_id, body.model_dump(exclude_unset=True))
    return JSONResponse(view_json(await studio.video_studio.view(project_id)))


@router.delete("/{project_id}", status_code=204, response_class=Response)
async def delete_project(project_id: str, studio: StudioDep) -> Response:
    await studio.video_studio.delete(project_id)
    return Response(status_code=204)


@router.post("/{project_id}/clips", status_code=201, response_model=None, openapi_extra=body_schema(ClipIn))
async def add_clip(project_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, ClipIn)
    clip = await studio.video_studio.add_upload(project_id, body.asset_id)
    return JSONResponse(clip_json(clip), status_code=201)


@router.patch("/{project_id}/clips/{clip_id}", response_model=None, openapi_extra=body_schema(TrimIn))
async def trim_clip(project_id: str, clip_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, TrimIn)
    clip = await studio.video_studio.trim(project_id, clip_id, body.trim_in_s, body.trim_out_s)
    return JSONResponse(clip_json(clip))


@router.post("/{project_id}/clips/{clip_id}/duplicate", status_code=201)
async def duplicate_clip(project_id: str, clip_id: str, studio: StudioDep) -> JSONResponse:
    return JSONResponse(clip_json(await studio.video_studio.duplicate(project_id, clip_id)), status_code=201)


@router.delete("/{project_id}/clips/{clip_id}")
async def delete_clip(project_id: str, clip_id: str, studio: StudioDep) -> JSONResponse:
    """Soft: `POST .../clips/undo` puts it back where it was."""
    return JSONResponse(clip_json(await studio.video_studio.delete_clip(project_id, clip_id)))


@router.post("/{project_id}/clips/undo", response_model=None, openapi_extra=body_schema(UndoIn))
async def undo_delete(project_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, UndoIn) if await request.body() else UndoIn()
    return JSONResponse(clip_json(await studio.video_studio.undo_delete(project_id, body.clip_id)))


@router.put("/{project_id}/order", response_model=None, openapi_extra=body_schema(OrderIn))
async def reorder(project_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, OrderIn)
    await studio.video_studio.reorder(project_id, body.clip_ids)
    return JSONResponse(view_json(await studio.video_studio.view(project_id)))


class RetryIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    confirm: bool = Field(default=False, description="true: make a second paid submission of a shot")


@router.post(
    "/{project_id}/clips/{clip_id}/retry",
    status_code=202,
    response_model=None,
    openapi_extra=body_schema(RetryIn),
)
async def retry_clip(project_id: str, clip_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """A failed clip's shot again, in its place (202). A shot the vendor had accepted may have been
    billed: then only with `confirm: true` (the page asks first)."""
    body = await parse_body(request, RetryIn) if await request.body() else RetryIn()
    clip, job = await studio.video_studio.retry_clip(project_id, clip_id, confirm=body.confirm)
    return JSONResponse({"clip": clip_json(clip), "job": job_json(job)}, status_code=202)


class ExportIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    fps: int = Field(default=24, ge=1, le=60, description="frames per second of the film")


@router.post("/{project_id}/clips/{clip_id}/last-frame")
async def use_last_frame(project_id: str, clip_id: str, studio: StudioDep) -> JSONResponse:
    """The clip's last frame as an image, made the next shot's start frame (the usual way to chain)."""
    await studio.video_studio.use_last_frame(project_id, clip_id)
    return JSONResponse(view_json(await studio.video_studio.view(project_id)))


@router.post(
    "/{project_id}/export", status_code=202, response_model=None, openapi_extra=body_schema(ExportIn)
)
async def export(project_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """An export job (202): the timeline as it is now rendered into one MP4 at the project's size, with
    progress on the job (`/api/jobs/{id}/events`), cancellable; the film is the job's output."""
    body = await parse_body(request, ExportIn) if await request.body() else ExportIn()
    job = await studio.video_studio.export(
        project_id, fps=body.fps, idempotency_key=request.headers.get("idempotency-key") or None
    )
    return JSONResponse(job_json(job), status_code=202)


@router.post("/{project_id}/generate", status_code=202)
async def generate(project_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """A video job from the next-shot settings with the selected model, and its clip on the timeline at
    once (202). The same `Idempotency-Key` again answers the same job, never a second paid one."""
    clip, job = await studio.video_studio.generate(
        project_id, idempotency_key=request.headers.get("idempotency-key") or None
    )
    return JSONResponse({"clip": clip_json(clip), "job": job_json(job)}, status_code=202)


# -- shapes ---------------------------------------------------------------------------------------


def settings_json(shot: ShotSettings) -> dict[str, Any]:
    return {
        "model": shot.model,
        "startFrame": shot.start_frame,
        "endFrame": shot.end_frame,
        "camera": {
            "pan": {"x": shot.pan_x, "y": shot.pan_y},
            "zoom": shot.zoom,
            "tilt": shot.tilt,
            "roll": shot.roll,
        },
        "durationS": shot.duration_s,
        "tunes": {"stability": shot.stability, "amplitude": shot.amplitude, "coherence": shot.coherence},
        "seed": shot.seed,
        "loop": shot.loop,
        "interpolate": shot.interpolate,
        "prompt": shot.prompt,
        "negativePrompt": shot.negative_prompt,
    }


def controls_json(view: ProjectView) -> dict[str, str]:
    """How each control reaches the selected model (`domain.video.controls`): "native", "via prompt",
    "native + via prompt" (camera), "applied at export" (interpolate) or "not used by this model"."""
    plan = view.plan
    if plan is None:
        return {}
    return {_CONTROL_KEYS.get(name, name): route for name, route in plan.routes.items()}


_CONTROL_KEYS = {"start_frame": "startFrame", "end_frame": "endFrame", "negative_prompt": "negativePrompt"}


def clip_json(clip: Clip, view: ClipView | None = None) -> dict[str, Any]:
    asset = view.asset if view is not None else None
    job = view.job if view is not None else None
    return {
        "id": clip.id,
        "position": clip.position,
        "jobId": clip.job_id,
        "assetId": clip.asset_id,
        "videoUrl": f"/api/media/{clip.asset_id}" if clip.asset_id else None,
        "posterUrl": f"/api/media/{clip.asset_id}/thumb" if clip.asset_id else None,
        "durationS": asset.duration_s if asset is not None else None,
        "trimInS": clip.trim_in_s,
        "trimOutS": clip.trim_out_s,
        "settings": settings_json(clip.settings),
        "state": job.state if job is not None else ("complete" if clip.asset_id else None),
        "progress": job.progress if job is not None else None,
        "error": job.error_message if job is not None else None,
        "deleted": clip.deleted,
        "createdAt": clip.created_at.isoformat(),
    }


def project_summary(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "aspectRatio": project.aspect_ratio,
        "resolution": project.resolution,
        "model": project.next_shot.model,
        "createdAt": project.created_at.isoformat(),
        "updatedAt": project.updated_at.isoformat(),
    }


def view_json(view: ProjectView) -> dict[str, Any]:
    project = view.project
    return {
        **project_summary(project),
        "nextShot": settings_json(project.next_shot),
        "selectedModel": video_model_json(view.model) if view.model is not None else None,
        "controls": controls_json(view),
        "selectedClipId": project.selected_clip_id,
        "playheadS": project.playhead_s,
        "clips": [clip_json(v.clip, v) for v in view.clips],
    }
