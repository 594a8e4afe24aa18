"""The job worker against a fake long-running upstream over real HTTP: a job runs to its end with
progress; a worker that dies or shuts down mid-job is resumed by the next one polling the same upstream
handle (exactly one submission); failures before and after the submission; cancel propagated upstream;
a worker that lost its lease stops and writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest

from mmstudio.domain.jobs.types import Job
from mmstudio.domain.jobs.worker import JobContext, JobWorker
from mmstudio.errors import ProviderError, ProviderUnavailable
from mmstudio.storage._time import utc_now
from mmstudio.storage.db import session_factory
from mmstudio.storage.jobs_repo import JobRepository
from tests.fakes.base import Reply
from tests.fakes.render_farm_server import FakeRenderFarm


class FarmHandler:
    """A handler as a video adapter's will be: submit once, or resume polling the stored handle."""

    def __init__(self, farm: FakeRenderFarm, client: httpx.AsyncClient) -> None:
        self.farm = farm
        self.client = client

    async def run(self, context: JobContext) -> Sequence[str]:
        handle = context.job.upstream_handle
        if handle is None:
            answer = await self.client.post(f"{self.farm.url}/tasks", json=dict(context.job.request))
            if answer.status_code >= 500:
                raise ProviderUnavailable("the farm is busy", provider="farm", model="farm/v1", status=503)
            handle = answer.json()["id"]
            await context.submitted(handle, provider="farm", model="farm/v1")
        while True:
            state = (await self.client.get(f"{self.farm.url}/tasks/{handle}")).json()
            if state["status"] == "succeeded":
                break
            if state["status"] == "failed":
                raise ProviderError(f"the farm failed it: {state['error']}", provider="farm", model="farm/v1")
            await context.progress(state["progress"])
            await asyncio.sleep(0.005)  # the vendor's poll interval (tiny here)
        await context.downloading()
        result = await self.client.get(f"{self.farm.url}/tasks/{handle}/result")
        return [result.text]

    async def cancel_upstream(self, job: Job) -> bool:
        answer = await self.client.delete(f"{self.farm.url}/tasks/{job.upstream_handle}")
        return answer.status_code == 204


@pytest.fixture
def farm() -> Iterator[FakeRenderFarm]:
    with FakeRenderFarm(steps=3) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as made:
        yield made


class Watch:
    """Every change the worker reports, and a way to wait for one (no sleeping for timing)."""

    def __init__(self) -> None:
        self.seen: list[Job] = []
        self.changed = asyncio.Event()

    def __call__(self, job: Job) -> None:
        self.seen.append(job)
        self.changed.set()

    async def until(self, test: Callable[[Job], bool]) -> Job:
        async with asyncio.timeout(10):
            while True:
                for job in self.seen:
                    if test(job):
                        return job
                self.changed.clear()
                await self.changed.wait()


def worker(engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient, owner: str, **kw: Any) -> JobWorker:
    return JobWorker(
        JobRepository(session_factory(engine)), {"video": FarmHandler(farm, client)}, owner=owner, **kw
    )


async def test_a_job_runs_to_its_end_with_progress(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch)
    job, _ = await w.store.create("video", {"prompt": "a fox"})  # type: ignore[attr-defined]
    ended = await w.run_once()
    assert ended is not None and ended.id == job.id and ended.state == "complete" and ended.progress == 100.0
    assert ended.output_ids == (f"result of {ended.upstream_handle}",) and ended.provider == "farm"
    assert farm.submissions == 1 and farm.tasks[ended.upstream_handle or ""].body == {"prompt": "a fox"}
    states = [j.state for j in watch.seen]
    assert states[0] == "submitting" and "running" in states and states[-2:] == ["downloading", "complete"]
    assert [j.progress for j in watch.seen if j.state == "running" and j.progress is not None] == [33.0, 67.0]
    assert await w.run_once() is None


@pytest.mark.parametrize("graceful", [True, False], ids=["shutdown", "killed"])
async def test_the_next_worker_resumes_by_the_handle_never_resubmits(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient, graceful: bool
) -> None:
    watch = Watch()
    first = worker(engine, farm, client, "w1", on_change=watch)
    job, _ = await first.store.create("video", {"prompt": "a fox"})  # type: ignore[attr-defined]
    farm.hold()
    running = asyncio.create_task(first.run_forever())
    await watch.until(lambda j: j.upstream_handle is not None)
    await first.stop(release=graceful)  # killed: the lease is left to expire
    await running
    assert farm.submissions == 1
    # A killed worker's lease runs out later; the next worker sees that time (`clock`).
    later = None if graceful else (lambda: utc_now() + timedelta(minutes=5))
    second = worker(engine, farm, client, "w2", clock=later)
    farm.release()
    ended = await second.run_once()
    assert ended is not None and ended.id == job.id and ended.state == "complete"
    assert farm.submissions == 1 and ended.attempt_count == 2
    assert ended.output_ids == (f"result of {ended.upstream_handle}",)


async def test_a_failure_before_the_submission_and_one_after(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    w = worker(engine, farm, client, "w1")
    store: JobRepository = w.store  # type: ignore[assignment]
    await store.create("video", {"prompt": "a fox"})
    farm.script(Reply(status=503))
    busy = await w.run_once()
    assert busy is not None and busy.state == "failed" and busy.error_kind == "unavailable"
    assert busy.error_message == "the farm is busy" and busy.upstream_handle is None and farm.submissions == 0
    await store.create("video", {"prompt": "something"})
    farm.fail_next("moderation: the prompt was refused")
    refused = await w.run_once()
    assert refused is not None and refused.state == "failed" and refused.upstream_handle is not None
    assert refused.error_message == "the farm failed it: moderation: the prompt was refused"
    assert farm.submissions == 1


async def test_cancel_is_noticed_and_sent_upstream(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch, lease_seconds=0.3)
    store: JobRepository = w.store  # type: ignore[assignment]
    job, _ = await store.create("video", {"prompt": "a fox"})
    farm.hold()
    running = asyncio.create_task(w.run_forever())
    await watch.until(lambda j: j.upstream_handle is not None)
    await store.request_cancel(job.id)
    ended = await watch.until(lambda j: j.state == "cancelled")
    assert ended.error_message == "cancelled; the vendor stopped it"
    assert farm.tasks[ended.upstream_handle or ""].status == "cancelled"
    assert [r.method for r in farm.requests if r.method == "DELETE"] == ["DELETE"]
    await w.stop()
    await running


async def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    watch = Watch()
    stalled = worker(engine, farm, client, "w1", on_change=watch, lease_seconds=0.3)
    store: JobRepository = stalled.store  # type: ignore[assignment]
    job, _ = await store.create("video", {"prompt": "a fox"})
    farm.hold()
    running = asyncio.create_task(stalled.run_forever())
    await watch.until(lambda j: j.upstream_handle is not None)
    # Another worker, seeing the lease as expired, takes the job over.
    taker = worker(engine, farm, client, "w2", clock=lambda: utc_now() + timedelta(minutes=5))
    taken = await taker.claim()
    assert taken is not None and taken.id == job.id and taken.lease_owner == "w2"
    async with asyncio.timeout(10):
        while stalled._tasks:
            await asyncio.wait(list(stalled._tasks))
    current = await store.get(job.id)
    assert current is not None and current.lease_owner == "w2" and current.state == "running"
    farm.release()
    await taker.run(taken)
    ended = await store.get(job.id)
    assert ended is not None and ended.state == "complete" and farm.submissions == 1
    await stalled.stop()
    await running


async def test_a_cancel_in_this_process_stops_the_job_at_once(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    """The lease is an hour long, so only `cancel_now` (not a heartbeat) can end the job here."""
    from mmstudio.domain.jobs.service import JobService

    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch, lease_seconds=3600)
    service = JobService(w.store)  # type: ignore[arg-type]
    service.stop_now = w.cancel_now
    job, _ = await service.create("video", {"prompt": "a fox"}, plan=["farm/v1"])
    farm.hold()
    running = asyncio.create_task(w.run_forever())
    await watch.until(lambda j: j.upstream_handle is not None)
    await service.cancel(job.id)
    ended = await watch.until(lambda j: j.state == "cancelled")
    assert ended.error_message == "cancelled; the vendor stopped it"
    assert farm.tasks[ended.upstream_handle or ""].status == "cancelled"
    assert not w.cancel_now(job.id)  # nothing left running
    await w.stop()
    await running


async def test_a_provider_at_its_cap_waits_while_others_run(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    """Cap 1 for the farm: its second job waits (claimed after the first ends) while a job of another
    provider is claimed at once; jobs with no provider yet are never held back."""
    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch, provider_cap=lambda p: 1, concurrency=8)
    store: JobRepository = w.store  # type: ignore[assignment]
    first, _ = await store.create("video", {"prompt": "one"}, provider="farm")
    second, _ = await store.create("video", {"prompt": "two"}, provider="farm")
    farm.hold()
    claimed_first = await w.claim()
    assert claimed_first is not None and claimed_first.id == first.id
    running = w._start(claimed_first)
    await watch.until(lambda j: j.id == first.id and j.upstream_handle is not None)
    assert w.full_providers() == ["farm"]
    other, _ = await store.create("video", {"prompt": "three"}, provider="elsewhere")
    unknown, _ = await store.create("video", {"prompt": "four"})
    taken = [await w.claim(), await w.claim(), await w.claim()]
    assert [j.id if j else None for j in taken] == [other.id, unknown.id, None]  # `second` waits
    farm.release()
    await running
    assert w.full_providers() == []
    after = await w.claim()
    assert after is not None and after.id == second.id
    await w.stop()


async def test_free_slots_are_filled_in_one_claim_within_each_provider_cap(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    """Concurrency 4, the farm capped at 2: the worker takes two farm jobs and two not yet planned ones
    at once (never a third farm job while two run), and the rest as slots free up; all end complete."""
    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch, provider_cap=lambda p: 2, concurrency=4)
    store: JobRepository = w.store  # type: ignore[assignment]
    farmed = [(await store.create("video", {"n": n}, provider="farm"))[0].id for n in range(5)]
    unplanned = [(await store.create("video", {"n": 10 + n}))[0].id for n in range(3)]
    farm.hold()
    loop = asyncio.create_task(w.run_forever())
    try:
        submitted: set[str] = set()
        await watch.until(lambda j: bool(j.upstream_handle and submitted.add(j.id)) or len(submitted) >= 4)
        leased = [j for j in (await store.list(limit=20)).items if j.lease_owner == "w1"]
        assert len(leased) == 4
        assert sorted(j.id for j in leased) == sorted([*farmed[:2], *unplanned[:2]])
        farm.release()
        ended: set[str] = set()
        await watch.until(lambda j: (j.state == "complete" and ended.add(j.id)) or len(ended) == 8)
        assert ended == {*farmed, *unplanned}
    finally:
        await w.stop()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


class SkipsAhead:
    """A buggy handler: it asks to download before any vendor accepted the job."""

    async def run(self, context: JobContext) -> Sequence[str]:
        await context.downloading()  # submitting → downloading is not a move a job can make
        return ["never"]

    async def cancel_upstream(self, job: Job) -> bool:
        return False


async def test_a_refused_move_fails_the_job_once_instead_of_handing_it_over_again(engine: Any) -> None:
    store = JobRepository(session_factory(engine))
    w = JobWorker(store, {"video": SkipsAhead()}, owner="w1")
    await store.create("video", {"prompt": "a fox"})
    ended = await w.run_once()
    assert ended is not None and ended.state == "failed" and ended.lease_owner is None
    assert (
        ended.error_message is not None and "cannot go from submitting to downloading" in ended.error_message
    )
    assert await w.claim() is None  # nothing left to hand over: it does not loop
    assert ended.attempt_count == 1
