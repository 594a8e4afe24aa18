"""JobService on a real migrated database (SQLite, and PostgreSQL when available): following every job
sees this process's worker's changes at once and another process's through the database, each change
once; the counts per state; an Idempotency-Key answers the job it made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from mmstudio.domain.jobs.service import JobService
from mmstudio.domain.jobs.types import Job
from mmstudio.storage.db import session_factory
from mmstudio.storage.jobs_repo import JobRepository


async def next_change(changes: AsyncIterator[Job], job_id: str, state: str) -> Job:
    async with asyncio.timeout(10):
        async for job in changes:
            if job.id == job_id and job.state == state:
                return job
    raise AssertionError("the stream ended")


async def test_following_every_job_sees_both_processes_changes_once(engine: Any) -> None:
    here = JobService(JobRepository(session_factory(engine)), poll_seconds=0.05)
    elsewhere = JobRepository(session_factory(engine))  # another process's worker: no in-memory path
    changes = here.follow_all()
    first = asyncio.ensure_future(anext(changes))  # subscribed before anything changes
    await asyncio.sleep(0)
    mine, _ = await here.create("video", {"prompt": "a fox"}, plan=["farm/fast"])
    theirs, _ = await here.create("video", {"prompt": "an owl"}, plan=["farm/fast"])
    claimed = await elsewhere.claim("other-process", lease_seconds=30, now=None)
    assert claimed is not None
    moved = await elsewhere.move(claimed.id, "other-process", "submitting")
    assert moved is not None
    here.changed(moved)  # told in-process too: must not be yielded twice
    seen = [await first]
    async with asyncio.timeout(10):
        async for job in changes:
            seen.append(job)
            if any(j.id == claimed.id and j.state == "submitting" for j in seen):
                break
    submitting = [j for j in seen if j.id == claimed.id and j.state == "submitting"]
    assert len(submitting) == 1
    assert {j.id for j in seen if j.state == "queued"} == {mine.id, theirs.id}  # both creations, once each
    # A change only the database knows about (the other process did not tell this one).
    running = await elsewhere.move(claimed.id, "other-process", "running")
    assert running is not None
    got = await next_change(changes, claimed.id, "running")
    assert got.updated_at == running.updated_at
    await changes.aclose()
    counts = await here.counts()
    assert counts == {"queued": 1, "running": 1}
    assert {mine.id, theirs.id} >= {claimed.id}


async def test_an_idempotency_key_answers_the_job_it_made(engine: Any) -> None:
    service = JobService(JobRepository(session_factory(engine)))
    job, created = await service.create("image", {"prompt": "a fox"}, plan=["x/y"], idempotency_key="k-1")
    assert created and (await service.made_with("k-1")) == job
    assert await service.made_with("k-2") is None and await service.made_with(None) is None
