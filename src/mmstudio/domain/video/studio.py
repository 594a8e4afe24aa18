"""The Video Studio: projects whose next-shot settings are stored (so a reload, another browser or a
crash loses nothing, and the chosen model stays chosen), clips on a timeline, and Generate, which makes a
video job (domain/jobs) and puts its clip on the timeline at once.

Checks that need more than the value itself happen here: the model exists, the duration is one it can
do, an end frame only for a model that takes one, frames are images in the media store, trims inside
the clip. Each refusal is a 400 naming the field and what is allowed, and the project is unchanged.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from mmstudio.domain.jobs.types import Job
from mmstudio.domain.media.types import MediaAsset
from mmstudio.domain.video.controls import ShotPlan, plan_shot
from mmstudio.domain.video.export import EXPORT_MODEL, export_size
from mmstudio.domain.video.export import KIND as EXPORT_KIND
from mmstudio.domain.video.fit import fit
from mmstudio.domain.video.models import NEVER_DEFAULT, VideoEntry, VideoModels
from mmstudio.domain.video.projects import Clip, Project, ShotSettings, check_project, check_settings
from mmstudio.domain.video.render import last_frame
from mmstudio.domain.video.service import VideoOrder, VideoService
from mmstudio.errors import InvalidRequest, NotFound

SEED_DEFAULT_MODEL = "runway/gen3a_turbo"  # the seed design's `runway-gen3-alpha`, when Runway is keyed


class ProjectStore(Protocol):
    async def create(
        self, name: str, aspect_ratio: str, resolution: str, next_shot: ShotSettings
    ) -> Project: ...
    async def list(self) -> builtins.list[Project]: ...
    async def get(self, project_id: str, *, with_deleted_clips: bool = False) -> Project | None: ...
    async def deleted_clips(self, project_id: str) -> builtins.list[Clip]: ...
    async def update(self, project_id: str, fields: Mapping[str, Any]) -> Project: ...
    async def delete(self, project_id: str) -> None: ...
    async def add_clip(
        self,
        project_id: str,
        *,
        settings: ShotSettings,
        job_id: str | None = None,
        asset_id: str | None = None,
        after: str | None = None,
    ) -> Clip: ...
    async def update_clip(self, project_id: str, clip_id: str, fields: Mapping[str, Any]) -> Clip: ...
    async def reorder(self, project_id: str, clip_ids: Sequence[str]) -> Project: ...
    async def duplicate_clip(self, project_id: str, clip_id: str) -> Clip: ...
    async def delete_clip(self, project_id: str, clip_id: str) -> Clip: ...
    async def restore_clip(self, project_id: str, clip_id: str) -> Clip: ...


class Media(Protocol):
    async def get(self, asset_id: str) -> MediaAsset | None: ...
    async def get_many(self, asset_ids: Iterable[str]) -> dict[str, MediaAsset]: ...
    async def read_path(self, asset: MediaAsset) -> Path: ...
    async def save_upload(self, data: bytes, filename: str, *, tier: str | None = None) -> MediaAsset: ...


class Jobs(Protocol):
    async def get(self, job_id: str) -> Job: ...


@dataclass(frozen=True, slots=True)
class ClipView:
    """A clip with what the page shows about it: its job's state and progress, and its video."""

    clip: Clip
    job: Job | None
    asset: MediaAsset | None


@dataclass(frozen=True, slots=True)
class ProjectView:
    project: Project
    clips: tuple[ClipView, ...]
    model: VideoEntry | None  # the selected model as the table knows it now (None: unknown id)

    @property
    def plan(self) -> ShotPlan | None:
        """What Generate would send the selected model now, and how each control gets there."""
        return plan_shot(self.project.next_shot, self.model.capabilities) if self.model else None


class VideoStudio:
    def __init__(
        self, projects: ProjectStore, models: VideoModels, media: Media, videos: VideoService
    ) -> None:
        self.projects = projects
        self.models = models
        self.media = media
        self.videos = videos

    # -- projects ----------------------------------------------------------------------------------

    def default_model(self) -> str | None:
        """Runway Gen-3 Alpha Turbo when Runway is keyed (the seed's default), else the first usable
        video model, local first (never Sora, which is used only when named)."""
        entries = self.models.entries
        seed = entries.get(SEED_DEFAULT_MODEL)
        if seed is not None and seed.usable:
            return seed.id
        return next((e.id for e in entries.values() if e.usable and e.provider not in NEVER_DEFAULT), None)

    async def create(self, name: str, *, aspect_ratio: str = "16:9", resolution: str = "720p") -> Project:
        check_project(name=name, aspect_ratio=aspect_ratio, resolution=resolution)
        return await self.projects.create(
            name.strip(), aspect_ratio, resolution, ShotSettings(model=self.default_model())
        )

    async def list(self) -> builtins.list[Project]:
        return await self.projects.list()

    async def get(self, project_id: str) -> Project:
        project = await self.projects.get(project_id)
        if project is None:
            raise NotFound(f"no video project {project_id!r}")
        return project

    async def view(self, project_id: str) -> ProjectView:
        """The project with each clip's job and video, a finished job's output recorded on its clip."""
        project = await self.get(project_id)
        jobs = await self.videos.jobs.get_many(c.job_id for c in project.clips if c.job_id)
        clips = []
        for clip in project.clips:
            job = jobs.get(clip.job_id) if clip.job_id else None
            if clip.asset_id is None and job is not None and job.state == "complete" and job.output_ids:
                clip = await self.projects.update_clip(project.id, clip.id, {"asset_id": job.output_ids[0]})
            clips.append((clip, job))
        assets = await self.media.get_many(c.asset_id for c, _ in clips if c.asset_id)
        views = [ClipView(c, job, assets.get(c.asset_id) if c.asset_id else None) for c, job in clips]
        model = self.models.entries.get(project.next_shot.model or "") if project.next_shot.model else None
        return ProjectView(replace(project, clips=tuple(v.clip for v in views)), tuple(views), model)

    async def update(self, project_id: str, changes: Mapping[str, Any]) -> Project:
        """Project fields (name, aspect_ratio, resolution, selected_clip_id, playhead_s) and next-shot
        settings, each checked; only the fields given are written."""
        project = await self.get(project_id)
        own = {k: changes[k] for k in ("name", "aspect_ratio", "resolution") if k in changes}
        check_project(**own)
        fields: dict[str, Any] = dict(own)
        if "selected_clip_id" in changes:
            selected = changes["selected_clip_id"]
            if selected is not None and selected not in {c.id for c in project.clips}:
                raise InvalidRequest(f"no clip {selected!r} on this timeline", field="selected_clip_id")
            fields["selected_clip_id"] = selected
        if "playhead_s" in changes:
            playhead = changes["playhead_s"]
            if (
                isinstance(playhead, bool)
                or not isinstance(playhead, int | float)
                or not 0 <= playhead <= 86400
            ):
                raise InvalidRequest("playhead_s must be seconds from 0", field="playhead_s")
            fields["playhead_s"] = float(playhead)
        settings = check_settings({k: v for k, v in changes.items() if k not in {*fields, *own}})
        await self._check_against_model(project.next_shot, settings)
        fields.update(settings)
        return await self.projects.update(project_id, fields)

    async def delete(self, project_id: str) -> None:
        await self.projects.delete(project_id)

    async def _check_against_model(self, current: ShotSettings, changes: Mapping[str, Any]) -> None:
        merged = replace(current, **changes)
        # A newly chosen model must exist (a 400 listing the video models); the one kept may have gone.
        if "model" in changes and merged.model:
            entry: VideoEntry | None = self.models.entry(merged.model)
        else:
            entry = self.models.entries.get(merged.model) if merged.model else None
        for name in ("start_frame", "end_frame"):
            if changes.get(name):
                await self._image(changes[name], name)
        if merged.loop and merged.end_frame and ("loop" in changes or "end_frame" in changes):
            raise InvalidRequest(
                "a loop ends the shot on its start frame, so it takes no end frame: clear end_frame or "
                "turn loop off",
                field="loop" if "loop" in changes else "end_frame",
            )
        if entry is None:
            return
        caps = entry.capabilities
        if "end_frame" in changes and changes["end_frame"] and not caps.end_frame:
            raise InvalidRequest(
                f"{entry.display_name} does not take an end frame; clear end_frame or choose a model "
                "that does",
                field="end_frame",
            )
        if "duration_s" in changes and caps.durations and merged.duration_s not in caps.durations:
            allowed = ", ".join(f"{d:g}" for d in caps.durations)
            raise InvalidRequest(
                f"{entry.display_name} makes videos of {allowed} seconds; duration_s {merged.duration_s:g} "
                "is not one of them",
                field="duration_s",
            )

    async def _image(self, asset_id: str, field: str) -> MediaAsset:
        asset = await self.media.get(asset_id)
        if asset is None:
            raise NotFound(f"{field}: no image {asset_id!r} in the media store (deleted?)", field=field)
        if not asset.mime.startswith("image/"):
            raise InvalidRequest(f"{field}: {asset_id!r} is a {asset.mime} file, not an image", field=field)
        return asset

    async def _job(self, job_id: str | None) -> Job | None:
        if job_id is None:
            return None
        try:
            return await self.videos.jobs.get(job_id)
        except NotFound:
            return None

    # -- clips -------------------------------------------------------------------------------------

    async def add_upload(self, project_id: str, asset_id: str) -> Clip:
        """An uploaded (or gallery) video as a clip at the end of the timeline."""
        await self.get(project_id)
        asset = await self.media.get(asset_id)
        if asset is None:
            raise NotFound(f"asset_id: no video {asset_id!r} in the media store", field="asset_id")
        if not asset.mime.startswith("video/"):
            raise InvalidRequest(
                f"asset_id: {asset_id!r} is a {asset.mime} file, not a video", field="asset_id"
            )
        return await self.projects.add_clip(project_id, settings=ShotSettings(), asset_id=asset_id)

    async def trim(self, project_id: str, clip_id: str, trim_in_s: float, trim_out_s: float | None) -> Clip:
        project = await self.get(project_id)
        clip = next((c for c in project.clips if c.id == clip_id), None)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r} on this timeline")
        asset = await self.media.get(clip.asset_id) if clip.asset_id else None
        length = asset.duration_s if asset is not None else None
        if trim_in_s < 0 or (length is not None and trim_in_s >= length):
            bound = f" and below its length {length:g} s" if length is not None else ""
            raise InvalidRequest(f"trim_in_s must be 0 or more{bound}", field="trim_in_s")
        if trim_out_s is not None and (
            trim_out_s <= trim_in_s or (length is not None and trim_out_s > length)
        ):
            bound = f" and at most its length {length:g} s" if length is not None else ""
            raise InvalidRequest(
                f"trim_out_s must be after trim_in_s ({trim_in_s:g} s){bound}", field="trim_out_s"
            )
        return await self.projects.update_clip(
            project_id, clip_id, {"trim_in_s": trim_in_s, "trim_out_s": trim_out_s}
        )

    async def reorder(self, project_id: str, clip_ids: Sequence[str]) -> Project:
        return await self.projects.reorder(project_id, clip_ids)

    async def duplicate(self, project_id: str, clip_id: str) -> Clip:
        return await self.projects.duplicate_clip(project_id, clip_id)

    async def delete_clip(self, project_id: str, clip_id: str) -> Clip:
        return await self.projects.delete_clip(project_id, clip_id)

    async def undo_delete(self, project_id: str, clip_id: str | None = None) -> Clip:
        """Restore `clip_id`, or the clip deleted last."""
        if clip_id is None:
            deleted = await self.projects.deleted_clips(project_id)
            if not deleted:
                raise NotFound("no deleted clip to restore in this project")
            clip_id = deleted[0].id
        return await self.projects.restore_clip(project_id, clip_id)

    async def retry_clip(self, project_id: str, clip_id: str, *, confirm: bool = False) -> tuple[Clip, Job]:
        """A failed or cancelled clip's shot made again as a new job (the clip keeps its place). When the
        vendor had accepted the first one (it may have been billed), only with `confirm`."""
        project = await self.get(project_id)
        clip = next((c for c in project.clips if c.id == clip_id), None)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r} on this timeline")
        job = await self._job(clip.job_id)
        if job is None:
            raise InvalidRequest(
                "this clip was not generated here: there is nothing to retry", field="clip_id"
            )
        if job.upstream_handle is not None and not confirm and job.state in ("failed", "cancelled"):
            raise InvalidRequest(
                f"{job.model or 'the vendor'} accepted this shot before it {job.state}, so it may have been "
                "billed; a retry is a second paid submission: send confirm true to make it",
                field="confirm",
            )
        again = await self.videos.jobs.retry(job.id)
        updated = await self.projects.update_clip(project_id, clip_id, {"job_id": again.id, "asset_id": None})
        return updated, again

    # -- chaining shots and export -----------------------------------------------------------------

    async def use_last_frame(self, project_id: str, clip_id: str) -> Project:
        """The clip's last frame as an image asset, made the next shot's start frame."""
        project = await self.get(project_id)
        clip = next((c for c in project.clips if c.id == clip_id), None)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r} on this timeline")
        asset = await self._clip_video(clip, 1 + project.clips.index(clip))
        png = await asyncio.to_thread(last_frame, await self.media.read_path(asset))
        still = await self.media.save_upload(png, f"last-frame-{clip.id}.png")
        return await self.projects.update(project_id, {"start_frame": still.id})

    async def export(self, project_id: str, *, fps: int = 24, idempotency_key: str | None = None) -> Job:
        """An export job of the timeline as it is now (every clip with its trim), at the project's size."""
        project = await self.get(project_id)
        if not project.clips:
            raise InvalidRequest("the timeline has no clips: generate or add one first", field="clips")
        cuts = []
        for index, clip in enumerate(project.clips, start=1):
            asset = await self._clip_video(clip, index)
            cuts.append(
                {
                    "asset_id": asset.id,
                    "start_s": clip.trim_in_s,
                    "end_s": clip.trim_out_s,
                    "interpolate": clip.settings.interpolate,  # blended frames where its rate is changed
                }
            )
        width, height = export_size(project.aspect_ratio, project.resolution)
        request = {
            "project_id": project.id,
            "project_name": project.name,
            "aspect_ratio": project.aspect_ratio,
            "width": width,
            "height": height,
            "fps": fps,
            "cuts": cuts,
        }
        job, _ = await self.videos.jobs.create(
            EXPORT_KIND, request, plan=[EXPORT_MODEL], idempotency_key=idempotency_key
        )
        return job

    async def _clip_video(self, clip: Clip, index: int) -> MediaAsset:
        asset_id = clip.asset_id
        if asset_id is None and clip.job_id is not None:
            job = await self._job(clip.job_id)
            if job is not None and job.state == "complete" and job.output_ids:
                asset_id = job.output_ids[0]
        asset = await self.media.get(asset_id) if asset_id else None
        if asset is None:
            raise InvalidRequest(
                f"clip {index} has no video yet (still generating, failed, or its file was deleted)",
                field="clips",
            )
        return asset

    # -- generate ----------------------------------------------------------------------------------

    async def generate(self, project_id: str, *, idempotency_key: str | None = None) -> tuple[Clip, Job]:
        """A video job from the next-shot settings (the selected model only: a fallback would be a
        different model than the one chosen), and its clip on the timeline at once."""
        project = await self.get(project_id)
        shot = project.next_shot
        if not shot.prompt.strip() and not shot.start_frame:
            raise InvalidRequest("write a prompt (or pick a start frame) for the next shot", field="prompt")
        if shot.model is None:
            raise InvalidRequest("choose a video model for the next shot", field="model")
        entry = self.models.entry(shot.model)
        if not entry.usable:
            raise InvalidRequest(
                f"{entry.display_name} cannot be used now: {entry.reason}. Choose another model or fix that.",
                field="model",
            )
        plan = plan_shot(shot, entry.capabilities)
        # The nearest shape the model makes (Gen-3's 5:3 for a 16:9 project): the export letterboxes it.
        shape = fit(
            {"aspect_ratio": project.aspect_ratio, "resolution": project.resolution}, entry.capabilities
        )
        order = VideoOrder(
            prompt=plan.prompt,
            model=shot.model,
            duration_s=round(shot.duration_s),
            aspect_ratio=shape.aspect_ratio,
            resolution=shape.resolution,
            seed=plan.seed,
            negative_prompt=plan.negative_prompt,
            start_image=shot.start_frame,
            end_image=plan.end_frame,
            camera=plan.camera,
            fallbacks=False,
            idempotency_key=idempotency_key,
        )
        job, _ = await self.videos.create(order)
        clip = await self.projects.add_clip(project_id, settings=shot, job_id=job.id)
        return clip, job
