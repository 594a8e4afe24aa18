"""Images as durable jobs (kind ``image``): an order checked and stored before any model is called, run
by the job worker through `ImageService.generate` (the same plan, fallbacks and recipes as
`POST /api/images`), with the engine's progress on the job.

An image is one synchronous call: there is no upstream handle to resume, so a job whose worker died
mid-call is generated again by the next worker (the first call's result never reached mmstudio). A video
job made with `after_job` set to an image job starts from that job's first image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from mmstudio.domain.jobs.service import JobService
from mmstudio.domain.jobs.types import Job
from mmstudio.domain.jobs.worker import JobContext
from mmstudio.domain.media.images import ImageOrder, ImageService
from mmstudio.domain.media.types import MediaAsset
from mmstudio.domain.plan import Candidate, Plan
from mmstudio.domain.router import Attempt, RouteOptions
from mmstudio.errors import AllModelsFailed
from mmstudio.providers.media.base import ImageProgress

_ORDER_FIELDS = frozenset(f.name for f in fields(ImageOrder))


def order_request(order: ImageOrder) -> dict[str, Any]:
    """The order as the job's stored request (JSON: tuples become lists, unset fields are left out)."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in asdict(order).items()
        if value not in (None, ())
    }


def order_of(request: Mapping[str, Any]) -> ImageOrder:
    values = {k: v for k, v in request.items() if k in _ORDER_FIELDS}
    if "references" in values:
        values["references"] = tuple(values["references"])
    return ImageOrder(**values)


class ImageJobs:
    """What the API does with image jobs: check the order, then store it as a job."""

    def __init__(self, images: ImageService, jobs: JobService) -> None:
        self.images = images
        self.jobs = jobs

    async def create(
        self, order: ImageOrder, *, after_job: str | None = None, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        existing = await self.jobs.made_with(idempotency_key)
        if existing is not None:
            return existing, False  # the same order again: not checked, not stored twice
        plan = await self.images.check(order)
        first = plan.candidates[0].resolved.entry
        return await self.jobs.create(
            "image",
            order_request(order),
            plan=[c.model_id for c in plan.candidates],
            depends_on=after_job,
            idempotency_key=idempotency_key,
            info={"skipped": [{"model": m, "reason": r} for m, r in plan.skipped]},
            provider=first.provider_id,
        )


class _JobProgress:
    """ImageObserver that puts the engine's progress on the job (other events are the attempts)."""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.last = -1.0

    async def planned(self, plan: Plan) -> None:
        return None

    async def trying(self, candidate: Candidate, number: int) -> None:
        return None

    async def failed(self, candidate: Candidate, attempt: Attempt) -> None:
        return None

    async def progress(self, model_id: str, progress: ImageProgress) -> None:
        percent = progress.percent
        if percent is None and progress.step is not None and progress.steps:
            percent = 100.0 * progress.step / progress.steps
        if percent is None:
            return
        percent = round(min(percent, 99.0), 1)  # 100 is for the stored image
        if percent > self.last:
            self.last = percent
            await self.context.progress(percent)

    async def image(self, asset: MediaAsset) -> None:
        return None


class ImageJobHandler:
    """The `JobHandler` of kind ``image``."""

    def __init__(self, images: ImageService) -> None:
        self.images = images

    async def run(self, context: JobContext) -> Sequence[str]:
        await context.running()  # no handle to keep: the call itself is the work
        try:
            outcome = await self.images.generate(
                order_of(context.job.request),
                observer=_JobProgress(context),
                options=RouteOptions(route="images", request_id=context.job.id),
            )
        except AllModelsFailed as exc:
            await context.running(attempts=exc.attempts)  # each model's reason stays on the job
            raise
        recipe = outcome.assets[0].recipe if outcome.assets else None
        await context.running(
            attempts=[a.as_dict() for a in outcome.info.attempts],
            model=outcome.model_used,
            provider=recipe.provider if recipe is not None else None,
        )
        return [asset.id for asset in outcome.assets]

    async def cancel_upstream(self, job: Job) -> bool:
        return False  # a synchronous call: stopping the worker's task is all there is
