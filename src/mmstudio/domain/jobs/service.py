"""JobService: what the API and the CLI do with jobs (create, read, follow, cancel, retry), on the job
store, with live changes from the worker in this process and the database for the rest.

Following a job (`follow`) first yields its current row, then every change: from this process's worker
at once, and from other processes' workers through the database (read again every `poll_seconds`), so a
page or a CLI watching a job sees it move wherever it runs. It ends after the terminal state.

With a `queue` (the procrastinate engine), a job created here is also handed to the queue, which carries
its id to a worker; the row is stored first, so a job whose enqueue failed is still found and enqueued
by the workers' recovery pass (`storage/job_queue.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mmstudio.domain.jobs.queue import JobQueue
from mmstudio.domain.jobs.types import TERMINAL, Job, JobPage
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.storage.jobs_repo import JobRepository

_NEVER = datetime.min.replace(tzinfo=UTC)
log = logging.getLogger(__name__)


class JobService:
    def __init__(
        self, store: JobRepository, *, poll_seconds: float = 1.0, queue: JobQueue | None = None
    ) -> None:
        self.store = store
        self.queue = queue  # None: workers claim rows themselves (the table engine)
        self.poll_seconds = poll_seconds
        self._listeners: dict[str, set[asyncio.Queue[Job]]] = {}
        self._everyone: set[asyncio.Queue[Job]] = set()  # followers of every job (the Jobs page)
        self.wake = asyncio.Event()  # set on create/cancel so the in-process worker looks at once
        self.stop_now: Callable[[str], bool] | None = None  # the in-process worker's cancel_now

    # -- the worker's side -------------------------------------------------------------------------

    def changed(self, job: Job) -> None:
        """Called by the worker for every state or progress change."""
        for queue in self._listeners.get(job.id, ()):
            queue.put_nowait(job)
        for queue in self._everyone:
            queue.put_nowait(job)

    # -- the API's side ----------------------------------------------------------------------------

    async def create(
        self,
        kind: str,
        request: Mapping[str, Any],
        *,
        plan: Iterable[str],
        recipe: Mapping[str, Any] | None = None,
        depends_on: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        info: Mapping[str, Any] | None = None,
        provider: str | None = None,
    ) -> tuple[Job, bool]:
        """Persist the job (before any upstream call); an idempotency key already used returns the job
        it made, and the flag is False."""
        if depends_on is not None and await self.store.get(depends_on) is None:
            raise NotFound(f"after_job: no job {depends_on!r}", field="after_job")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise InvalidRequest("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
        job, created = await self.store.create(
            kind,
            request,
            recipe=recipe,
            plan=plan,
            depends_on=depends_on,
            priority=priority,
            idempotency_key=idempotency_key,
            info=info,
            provider=provider,
        )
        if created:
            self.changed(job)  # the Jobs page shows it at once
            if self.queue is not None:
                try:
                    await self.queue.enqueue(job)
                except Exception:  # stored already: the workers' recovery pass enqueues it
                    log.exception("job %s: enqueuing it failed; the workers' recovery pass will", job.id)
        self.wake.set()
        return job, created

    async def made_with(self, idempotency_key: str | None) -> Job | None:
        """The job an `Idempotency-Key` already made (asked again: answered without checking again)."""
        return await self.store.by_idempotency_key(idempotency_key) if idempotency_key else None

    async def get(self, job_id: str) -> Job:
        job = await self.store.get(job_id) if job_id else None
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """The jobs that exist among `job_ids`, by id (one query)."""
        return await self.store.get_many(job_ids)

    async def list(self, *, kind: str | None, state: str | None, limit: int, offset: int) -> JobPage:
        return await self.store.list(kind=kind, state=state, limit=limit, offset=offset)

    async def cancel(self, job_id: str) -> Job:
        await self.get(job_id)
        job = await self.store.request_cancel(job_id)
        assert job is not None
        self.changed(job)
        if self.stop_now is not None:
            self.stop_now(job_id)  # running here: stopped now, not at the next heartbeat
        self.wake.set()
        return job

    async def retry(self, job_id: str, *, idempotency_key: str | None = None) -> Job:
        """A new job with the same request and plan (a failed or cancelled job stays as it ended)."""
        job = await self.get(job_id)
        if job.state not in ("failed", "cancelled"):
            raise InvalidRequest(
                f"job {job_id} is {job.state}; only a failed or cancelled job can be retried", field="id"
            )
        again, _ = await self.create(
            job.kind,
            job.request,
            plan=job.plan,
            recipe=job.recipe,
            priority=job.priority,
            idempotency_key=idempotency_key,
            info={"notes": job.info.get("notes", {}), "retry_of": job.id},
            provider=job.provider,
        )
        return again

    async def counts(self) -> dict[str, int]:
        return await self.store.counts()

    async def follow_all(self) -> AsyncIterator[Job]:
        """Every change of every job from now on (each change once): this process's worker's at
        once, other processes' through the database, read every `poll_seconds`."""
        queue: asyncio.Queue[Job] = asyncio.Queue()
        self._everyone.add(queue)
        seen: dict[str, datetime] = {}
        since = datetime.now(UTC)  # the database's cursor (this process's changes come by the queue)
        loop = asyncio.get_running_loop()
        next_read = loop.time() + self.poll_seconds
        try:
            while True:
                updates: list[Job] = []
                with contextlib.suppress(TimeoutError):
                    updates.append(await asyncio.wait_for(queue.get(), max(0.0, next_read - loop.time())))
                if loop.time() >= next_read:
                    read = await self.store.changed_since(since)
                    since = max([since, *(j.updated_at for j in read)])
                    updates.extend(read)
                    next_read = loop.time() + self.poll_seconds
                for job in updates:
                    if job.updated_at <= seen.get(job.id, _NEVER):
                        continue
                    seen[job.id] = job.updated_at
                    yield job
        finally:
            self._everyone.discard(queue)

    async def follow(self, job_id: str) -> AsyncIterator[Job]:
        """The job now, then each change, until it ends."""
        current = await self.get(job_id)
        queue: asyncio.Queue[Job] = asyncio.Queue()
        self._listeners.setdefault(job_id, set()).add(queue)
        try:
            yield current
            last = current.updated_at
            while current.state not in TERMINAL:
                try:
                    update = await asyncio.wait_for(queue.get(), self.poll_seconds)
                except TimeoutError:
                    fresh = await self.store.get(job_id)  # another process may be running it
                    if fresh is None:
                        return
                    update = fresh
                if update.updated_at <= last and update.state == current.state:
                    continue
                current, last = update, update.updated_at
                yield current
        finally:
            listeners = self._listeners.get(job_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    with contextlib.suppress(KeyError):
                        del self._listeners[job_id]
