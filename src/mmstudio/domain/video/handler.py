"""The video job handler: submit a video once, poll it, download it into the media store.

It is the `JobHandler` of kind ``video`` (see domain/jobs/worker.py), so the worker's rules hold: the
upstream handle is stored the moment the vendor accepts the video, a job handed over after a restart is
*resumed* by polling that handle, and nothing is ever submitted twice once a vendor accepted it.

- **Before acceptance** the plan's models are tried in order; a retryable failure (429, 5xx, timeout,
  connection) is retried with backoff and jitter, then the next model is tried. A request the vendor
  refuses outright (bad request, key) moves on too: nothing was paid.
- **After acceptance** a failure is the job's failure, with the vendor's reason: a moderation refusal
  is a `ContentFiltered`, an expired result a `ResultExpired`. Polls and downloads that fail in a
  retryable way are retried (a download starts again from the beginning into a fresh temp file).
- **Progress** is the vendor's when it reports one, else an estimate from the elapsed time and the
  model's typical duration (capped at 95 %), marked as an estimate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mmstudio.domain.jobs.types import Job
from mmstudio.domain.jobs.worker import JobContext
from mmstudio.domain.media.store import MediaStore
from mmstudio.domain.media.types import Recipe
from mmstudio.domain.video.fit import Fitted, fit
from mmstudio.errors import (
    AllModelsFailed,
    ContentFiltered,
    InvalidRequest,
    ProviderError,
    ProviderProtocolError,
    ResultExpired,
    UnsupportedMediaType,
)
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.video_base import (
    CameraMove,
    ChosenHandles,
    VideoAdapter,
    VideoCapabilities,
    VideoRequest,
    VideoStatus,
)

ESTIMATE_CAP = 95.0


@dataclass(frozen=True, slots=True)
class VideoModel:
    """A video model ready to call: its id (``provider/name``), the vendor's name for it, what it can
    do, and the adapter speaking its vendor's protocol."""

    id: str
    provider: str
    upstream: str
    capabilities: VideoCapabilities
    adapter: VideoAdapter
    display_name: str = ""


class VideoJobHandler:
    def __init__(
        self,
        models: Callable[[str], VideoModel],
        store: MediaStore,
        *,
        retries: int = 2,
        backoff_s: float = 1.0,
        poll_interval_s: float | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self.store = store
        self.retries = retries
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s  # None: what the vendor asks for
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock

    # -- JobHandler --------------------------------------------------------------------------------

    async def run(self, context: JobContext) -> Sequence[str]:
        job = context.job
        attempts: list[dict[str, Any]] = [dict(a) for a in job.attempts]
        found = await self._intended(job, attempts) if job.upstream_handle is None else None
        if found is not None:  # a create whose answer a dead worker never got: the vendor has it
            model, handle = found
            await context.submitted(handle, provider=model.provider, model=model.id, attempts=attempts)
        elif job.upstream_handle is None:
            model, handle = await self._submit(context, attempts, await self._chained_start(context))
            await context.submitted(handle, provider=model.provider, model=model.id, attempts=attempts)
        else:
            assert job.model is not None
            model, handle = self.models(job.model), job.upstream_handle
        status = await self._wait(context, model, handle)
        await context.downloading()
        asset = await self._download(context.job, model, handle, status, attempts)
        return [asset]

    async def cancel_upstream(self, job: Job) -> bool:
        if job.upstream_handle is None or job.model is None:
            return False
        model = self.models(job.model)
        return await model.adapter.cancel(job.upstream_handle, model.upstream)

    # -- submitting: fall back only before a vendor accepted it ------------------------------------

    async def _chained_start(self, context: JobContext) -> str | None:
        """A job made with `after_job` and no start image of its own starts from the first image the
        job it waited for made (the still, then its video)."""
        job = context.job
        if job.depends_on is None or job.request.get("start_image"):
            return None
        before = await context.store.get(job.depends_on)
        for asset_id in before.output_ids if before is not None else ():
            asset = await self.store.get(asset_id)
            if asset is not None and asset.mime.startswith("image/"):
                return asset.id
        return None

    async def _intended(self, job: Job, attempts: list[dict[str, Any]]) -> tuple[VideoModel, str] | None:
        """The handle a worker stored before a create whose answer it never got (it died, or the
        connection was cut), when the vendor has a video under it: accepted, so it is polled."""
        intended = job.info.get("intended")
        if not isinstance(intended, Mapping):
            return None
        handle, model_id = intended.get("handle"), intended.get("model")
        if not isinstance(handle, str) or not isinstance(model_id, str):
            return None
        model = self.models(model_id)
        if not isinstance(model.adapter, ChosenHandles) or not await self._knows(model, handle):
            return None
        spec = dict(job.request)
        chained = intended.get("startImage")
        if isinstance(chained, str):
            spec["start_image"] = chained
        entry = _attempt(model.id, "submitted", 0.0)
        entry.update(fit(spec, model.capabilities).notes(), found=True)
        if isinstance(chained, str):
            entry["startImage"] = chained
        attempts.append(entry)
        return model, handle

    async def _knows(self, model: VideoModel, handle: str) -> bool:
        """Whether the vendor has `handle`, asked again (with backoff) while it cannot say."""
        assert isinstance(model.adapter, ChosenHandles)
        for attempt in range(self.retries + 4):
            try:
                return await model.adapter.knows(handle, model.upstream)
            except ProviderError as exc:
                if not exc.retryable or attempt == self.retries + 3:
                    raise
                await self._sleep(self._delay(attempt, exc))
        raise AssertionError("unreachable")

    async def _submit(
        self, context: JobContext, attempts: list[dict[str, Any]], chained_start: str | None = None
    ) -> tuple[VideoModel, str]:
        last: ProviderError | None = None
        job = context.job
        spec = dict(job.request)
        if chained_start is not None:
            spec["start_image"] = chained_start
        for model_id in job.plan:
            model = self.models(model_id)
            fitted = fit(spec, model.capabilities)
            request = await self._request(spec, model, fitted)
            chooser = model.adapter if isinstance(model.adapter, ChosenHandles) else None
            chosen: str | None = None
            if chooser is not None:  # the handle is stored before the create call
                chosen = chooser.new_handle()
                intended = {"handle": chosen, "model": model.id}
                if chained_start is not None:
                    intended["startImage"] = chained_start
                await context.intend(intended)
                request = replace(request, handle=chosen)
            for attempt in range(self.retries + 1):
                started = self._clock()
                try:
                    if chooser and chosen and attempt > 0 and await chooser.knows(chosen, model.upstream):
                        handle = chosen  # the create before was accepted; only its answer was lost
                    else:
                        handle = await model.adapter.submit(request)
                except ProviderError as exc:
                    last = exc
                    attempts.append(_attempt(model.id, "error", self._clock() - started, exc))
                    if exc.retryable and attempt < self.retries:
                        await self._sleep(self._delay(attempt, exc))
                        continue
                    break  # the next model: nothing was accepted, so nothing was paid
                entry = _attempt(model.id, "submitted", self._clock() - started)
                entry.update(fitted.notes())
                if chained_start is not None:
                    entry["startImage"] = chained_start
                attempts.append(entry)
                return model, handle
        if last is None:
            raise InvalidRequest("the job has no video model to try", field="model")
        raise AllModelsFailed(
            f"No video model accepted the job: {last.message}", last=last, attempts=attempts
        )

    async def _request(self, spec: Mapping[str, Any], model: VideoModel, fitted: Fitted) -> VideoRequest:
        caps = model.capabilities
        return VideoRequest(
            model=model.upstream,
            prompt=str(spec.get("prompt", "")),
            duration_s=fitted.duration_s,
            aspect_ratio=fitted.aspect_ratio,
            resolution=fitted.resolution,
            seed=spec.get("seed") if caps.seed else None,
            negative_prompt=spec.get("negative_prompt"),
            start_image=await self._image(spec.get("start_image")) if caps.image_to_video else None,
            end_image=await self._image(spec.get("end_image")) if caps.end_frame else None,
            camera=_camera(spec.get("camera"), caps),
        )

    async def _image(self, asset_id: object) -> InputImage | None:
        if not isinstance(asset_id, str) or not asset_id:
            return None
        asset = await self.store.get(asset_id)
        if asset is None or not asset.mime.startswith("image/"):
            raise InvalidRequest(f"no image {asset_id!r} to start the video from", field="start_image")
        data = await self.store.read_bytes(asset)
        return InputImage(data=data, media_type=asset.mime, name=f"{asset.id}.{asset.extension}")

    # -- waiting: the vendor's progress, or an estimate ----------------------------------------------

    async def _wait(self, context: JobContext, model: VideoModel, handle: str) -> VideoStatus:
        caps = model.capabilities
        started = self._clock()
        failures = 0
        while True:
            try:
                status = await model.adapter.poll(handle, model.upstream)
            except ProviderError as exc:
                failures += 1
                if not exc.retryable or failures > self.retries + 3:
                    raise
                await self._sleep(self._delay(failures - 1, exc))
                continue
            failures = 0
            if status.state == "succeeded":
                return status
            if status.state == "failed":
                reason = status.error or "the vendor gave no reason"
                if status.refused:
                    raise ContentFiltered(
                        f"{model.display_name or model.id} refused the video: {reason}",
                        provider=model.provider,
                        model=model.id,
                    )
                raise ProviderError(
                    f"{model.display_name or model.id} failed the video: {reason}",
                    provider=model.provider,
                    model=model.id,
                )
            if status.state == "cancelled":
                raise ProviderError("the vendor cancelled the video", provider=model.provider, model=model.id)
            if status.progress is not None:
                await context.progress(status.progress, estimated=False)
            else:
                elapsed = self._clock() - started
                estimate = min(ESTIMATE_CAP, 100.0 * elapsed / max(caps.typical_seconds, 1.0))
                await context.progress(round(estimate, 1), estimated=True)
            await self._sleep(self._poll_interval(caps, status))

    # -- downloading --------------------------------------------------------------------------------

    async def _download(
        self, job: Job, model: VideoModel, handle: str, status: VideoStatus, attempts: list[dict[str, Any]]
    ) -> str:
        spec = job.request
        submitted: dict[str, Any] = next(
            (a for a in reversed(attempts) if a.get("outcome") == "submitted"), {}
        )
        sent = {k: v["sent"] for k, v in submitted.get("adjusted", {}).items()}  # what the vendor got
        start = spec.get("start_image") or submitted.get("startImage")
        recipe = Recipe(
            model_used=model.id,
            provider=model.provider,
            prompt=str(spec.get("prompt", "")),
            model_requested=spec.get("model"),
            negative_prompt=spec.get("negative_prompt"),
            size=sent.get("resolution", spec.get("resolution")),
            aspect_ratio=sent.get("aspect_ratio", spec.get("aspect_ratio")),
            seed=_used_seed(status, spec.get("seed")),
            references=tuple(r for r in (start, spec.get("end_image")) if isinstance(r, str)),
            extra={"display_name": model.display_name or model.id, "job_id": job.id, "handle": handle},
        )
        cost = None
        if model.capabilities.price_per_second_usd is not None and status.duration_s:
            cost = round(model.capabilities.price_per_second_usd * status.duration_s, 4)
        for attempt in range(self.retries + 1):
            try:
                asset = await self.store.save_video(
                    model.adapter.download(handle, status, model.upstream),
                    recipe=recipe,
                    attempts=tuple(attempts),
                    cost_usd=cost,
                    parent_id=start if isinstance(start, str) else None,
                    tier=spec.get("tier") if isinstance(spec.get("tier"), str) else None,
                )
            except ResultExpired:
                raise
            except (ProviderError, UnsupportedMediaType, OSError) as exc:  # cut, or not a video
                if attempt == self.retries or (isinstance(exc, ProviderError) and not exc.retryable):
                    raise ProviderProtocolError(
                        f"the video could not be downloaded: {exc}", provider=model.provider, model=model.id
                    ) from exc
                await self._sleep(self._delay(attempt, exc if isinstance(exc, ProviderError) else None))
                continue
            return asset.id
        raise AssertionError("unreachable")  # pragma: no cover

    def _poll_interval(self, caps: VideoCapabilities, status: VideoStatus) -> float:
        if self.poll_interval_s is not None:
            return self.poll_interval_s
        asked = status.info.get("poll_after_s")  # the vendor's own hint (OpenAI's openai-poll-after-ms)
        return float(asked) if isinstance(asked, int | float) and asked > 0 else caps.poll_interval_s

    def _delay(self, attempt: int, exc: ProviderError | None) -> float:
        if exc is not None and exc.retry_after is not None:
            return float(exc.retry_after)
        return self.backoff_s * (2.0**attempt) * (0.5 + self._jitter())


def _attempt(model: str, outcome: str, seconds: float, exc: ProviderError | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": model, "outcome": outcome, "latencyMs": round(seconds * 1000, 1)}
    if exc is not None:
        entry.update(error=exc.message, kind=exc.kind)
    return entry


def _used_seed(status: VideoStatus, asked: object) -> int | None:
    """The seed the vendor says it ran (ComfyUI reads it back from the graph: a random one drawn for
    -1 included), else the one asked for (None or -1: not known)."""
    reported = status.info.get("seed")
    if isinstance(reported, int) and not isinstance(reported, bool):
        return reported
    return asked if isinstance(asked, int) and not isinstance(asked, bool) and asked != -1 else None


def _camera(value: object, caps: VideoCapabilities) -> CameraMove | None:
    """The job's camera move, for a model that has it (a fallback without it gets none: `fit` notes
    the drop)."""
    if not isinstance(value, Mapping) or value.get("move") not in caps.camera_moves:
        return None
    strength = value.get("strength")
    return CameraMove(str(value["move"]), float(strength) if isinstance(strength, int | float) else 0.5)
