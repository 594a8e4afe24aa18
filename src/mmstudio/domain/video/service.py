"""VideoService: a video order checked against the chosen model and made a durable job (persisted before
any vendor is called; the job worker does the rest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmstudio.domain.jobs.service import JobService
from mmstudio.domain.jobs.types import Job
from mmstudio.domain.media.store import MediaStore
from mmstudio.domain.video.fit import fit, size_of
from mmstudio.domain.video.models import VideoModels
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.providers.media.video_base import CameraMove

MAX_PROMPT = 4000


@dataclass(frozen=True, slots=True)
class VideoOrder:
    prompt: str
    model: str | None = None
    duration_s: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    start_image: str | None = None  # media asset ids
    end_image: str | None = None
    camera: CameraMove | None = None  # for a model with camera moves; others get the camera in words
    after_job: str | None = None  # wait for this job (e.g. the still image) before starting
    tier: str | None = None  # a story tier: the video belongs to it (served only under the tier)
    fallbacks: bool = True
    idempotency_key: str | None = None


class VideoService:
    def __init__(self, models: VideoModels, jobs: JobService, store: MediaStore) -> None:
        self.models = models
        self.jobs = jobs
        self.store = store

    async def create(self, order: VideoOrder) -> tuple[Job, bool]:
        if not order.prompt or not order.prompt.strip():
            raise InvalidRequest("prompt is required: describe the video to make", field="prompt")
        if len(order.prompt) > MAX_PROMPT:
            raise InvalidRequest(
                f"prompt is {len(order.prompt)} characters; at most {MAX_PROMPT}", field="prompt"
            )
        has_image = bool(order.start_image or order.after_job)  # after_job: the image it waits for
        await self.models.refresh()  # what the local engines can run now
        plan = self.models.plan(order.model, fallbacks=order.fallbacks, has_image=has_image)
        chosen = self.models.entry(plan[0]).capabilities
        for name, value, allowed in (
            ("duration_s", order.duration_s, chosen.durations),
            ("aspect_ratio", order.aspect_ratio, chosen.aspect_ratios),
            ("resolution", order.resolution, chosen.resolutions),
        ):
            if name == "resolution" and _other_naming(value, chosen.resolutions):
                continue  # OpenAI's 1280x720 for a model that says 720p (or back): fitted when sent
            if value is not None and value not in allowed:
                listing = ", ".join(str(a) for a in allowed) or "none (this model does not take it)"
                raise InvalidRequest(
                    f"{name} {value!r} is not one this model can do; allowed: {listing}", field=name
                )
        for name, asset_id in (("start_image", order.start_image), ("end_image", order.end_image)):
            if asset_id:
                asset = await self.store.get(asset_id)
                if asset is None or not asset.mime.startswith("image/"):
                    raise NotFound(
                        f"{name}: no image {asset_id!r} (upload it with POST /api/media)", field=name
                    )
        if order.camera is not None and (
            order.camera.move not in chosen.camera_moves or not 0 < order.camera.strength <= 1
        ):
            moves = ", ".join(chosen.camera_moves) or "none (give the camera in the prompt)"
            raise InvalidRequest(
                f"camera {order.camera.move} at {order.camera.strength:g} is not a move {plan[0]} takes; "
                f"its moves (strength above 0, at most 1): {moves}",
                field="camera",
            )
        if order.start_image and not chosen.image_to_video:
            raise InvalidRequest(f"{plan[0]} does not start from an image", field="start_image")
        request: dict[str, Any] = {
            "prompt": order.prompt.strip(),
            "model": order.model,
            "duration_s": order.duration_s,
            "aspect_ratio": order.aspect_ratio,
            "resolution": order.resolution,
            "seed": order.seed,
            "negative_prompt": order.negative_prompt,
            "start_image": order.start_image,
            "end_image": order.end_image,
            "tier": order.tier,
            "camera": {"move": order.camera.move, "strength": order.camera.strength}
            if order.camera
            else None,
        }
        request = {k: v for k, v in request.items() if v is not None}
        if order.resolution is not None and fit(request, chosen).resolution is None:
            listing = ", ".join(chosen.resolutions) or "none (this model does not take it)"
            raise InvalidRequest(
                f"resolution {order.resolution!r} is not one this model can do; allowed: {listing}",
                field="resolution",
            )
        return await self.jobs.create(
            "video",
            request,
            plan=plan,
            depends_on=order.after_job,
            idempotency_key=order.idempotency_key,
            info={"notes": fit(request, chosen).notes()},
            provider=self.models.entry(plan[0]).provider,
        )


def _other_naming(value: object, allowed: tuple[str, ...]) -> bool:
    """A ``WxH`` size against ``720p`` names, or the other way round."""
    if not isinstance(value, str) or not allowed:
        return False
    return (size_of(value) is not None) != (size_of(allowed[0]) is not None)
