"""Export: a Video Studio timeline rendered into one MP4 as a durable job (kind `export`), with progress,
cancellable, the result a media asset whose recipe is the project and its clip list.

The job's request is the whole cut list (asset ids, trims) and the output size and frame rate, taken
when the export was asked for: a later edit of the timeline does not change an export under way. The
render itself (`render.py`) runs in a worker thread; this handler reports its progress and stops it when
the job is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmstudio.domain.jobs.types import Job
from mmstudio.domain.jobs.worker import JobContext
from mmstudio.domain.media.store import MediaStore
from mmstudio.domain.media.types import Recipe
from mmstudio.domain.video.render import Cut, RenderSpec, render
from mmstudio.errors import InvalidRequest

KIND = "export"
EXPORT_MODEL = "mmstudio/export"
HEIGHTS = {"480p": 480, "720p": 720, "1080p": 1080}
REPORT_EVERY_S = 0.5


def export_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """The output size of a project: the resolution is the short side, both sides even (H.264)."""
    short = HEIGHTS[resolution]
    wide, tall = (int(n) for n in aspect_ratio.split(":"))
    long = round(short * max(wide, tall) / min(wide, tall) / 2) * 2
    return (long, short) if wide >= tall else (short, long)


class ExportJobHandler:
    cancelled_message = "cancelled; the render was stopped and nothing was stored"

    def __init__(self, store: MediaStore) -> None:
        self.store = store

    async def run(self, context: JobContext) -> Sequence[str]:
        request = context.job.request
        cuts = []
        for index, clip in enumerate(request["cuts"]):
            asset = await self.store.get(clip["asset_id"])
            if asset is None:
                raise InvalidRequest(
                    f"clip {index + 1}: its video {clip['asset_id']!r} was deleted", field="clips"
                )
            path = await self.store.read_path(asset)
            start_s, end_s = float(clip.get("start_s") or 0.0), clip.get("end_s")
            cuts.append(Cut(path, start_s, end_s, interpolate=bool(clip.get("interpolate", False))))
        spec = RenderSpec(int(request["width"]), int(request["height"]), int(request["fps"]))
        await context.running(model=EXPORT_MODEL)
        out = self.store.scratch_path()
        stop = threading.Event()
        percent = [0.0]
        rendering = asyncio.create_task(
            asyncio.to_thread(
                render, cuts, spec, out, progress=lambda p: percent.__setitem__(0, p), cancelled=stop.is_set
            )
        )
        try:
            while not rendering.done():
                await asyncio.wait([rendering], timeout=REPORT_EVERY_S)
                if not rendering.done() and percent[0] > (context.job.progress or 0.0):
                    await context.progress(round(percent[0], 1))
            result = rendering.result()
            await context.downloading()  # "storing": the file goes into the media store
            asset = await self.store.save_video_file(out, recipe=_recipe(request, result.duration_s))
        except BaseException:
            stop.set()  # a cancel (or any failure here) stops the render thread too
            # and waits for it: it removes its partial file as it stops, before the job says cancelled
            with contextlib.suppress(BaseException):
                await asyncio.wait({rendering})
            raise
        finally:
            await asyncio.to_thread(Path(out).unlink, True)
        return [asset.id]

    async def cancel_upstream(self, job: Job) -> bool:
        return True  # nothing runs elsewhere: cancelling the job stopped the render


def _recipe(request: Mapping[str, Any], duration_s: float) -> Recipe:
    return Recipe(
        model_used=EXPORT_MODEL,
        provider="mmstudio",
        prompt=str(request.get("project_name") or "export"),
        size=f"{request['width']}x{request['height']}",
        aspect_ratio=request.get("aspect_ratio"),
        references=tuple(c["asset_id"] for c in request["cuts"]),
        extra={
            "project_id": request.get("project_id"),
            "clips": [dict(c) for c in request["cuts"]],
            "fps": request["fps"],
            "duration_s": duration_s,
        },
    )
