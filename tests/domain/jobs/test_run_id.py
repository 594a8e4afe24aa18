"""`JobWorker.run_id`, what a queue's task does with the job id it carries, on SQLite and PostgreSQL:
it claims that row on the same conditions as `claim` and runs it (`ran`); an ended or unknown job is
`ended`, one another worker holds is `elsewhere`, one whose dependency is not complete or whose
provider is at its cap here is `waiting` (the queue tries again later), and a `stop()` meanwhile
answers `stopped` only after the lease went back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from mmstudio.storage.jobs_repo import JobRepository
from tests.domain.jobs.test_worker import Watch, client, farm, worker
from tests.fakes.render_farm_server import FakeRenderFarm

__all__ = ["client", "farm"]  # fixtures


async def test_run_id_runs_the_job_once_and_then_says_it_ended(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    w = worker(engine, farm, client, "w1")
    store: JobRepository = w.store  # type: ignore[assignment]
    job, _ = await store.create("video", {"prompt": "a fox"})
    assert await w.run_id(job.id) == "ran"
    ended = await store.get(job.id)
    assert ended is not None and ended.state == "complete" and ended.lease_owner is None
    assert await w.run_id(job.id) == "ended"  # delivered twice: nothing runs twice
    assert await w.run_id("job_unknown") == "ended"
    assert farm.submissions == 1


async def test_a_job_another_worker_holds_is_elsewhere_and_a_dependency_not_done_is_waiting(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    first = worker(engine, farm, client, "w1")
    second = worker(engine, farm, client, "w2")
    store: JobRepository = first.store  # type: ignore[assignment]
    image, _ = await store.create("video", {"prompt": "first"})
    after, _ = await store.create("video", {"prompt": "then"}, depends_on=image.id)
    claimed = await store.claim_id(image.id, "w1", lease_seconds=30)
    assert claimed is not None and claimed.lease_owner == "w1"
    assert await store.claim_id(image.id, "w2", lease_seconds=30) is None  # one claimer per id
    assert await second.run_id(image.id) == "elsewhere"
    assert await second.run_id(after.id) == "waiting"  # its dependency is not complete
    await first.run(claimed)
    assert await second.run_id(after.id) == "ran"
    done = await store.get(after.id)
    assert done is not None and done.state == "complete" and farm.submissions == 2


async def test_a_provider_at_its_cap_here_is_waiting_or_waits_for_a_slot(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    """Cap 1 for the farm: without `cap_wait_seconds` its second job is `waiting` at once (the queue
    retries it); with it, the second job waits in the worker and is claimed as soon as the first ends."""
    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch, provider_cap=lambda p: 1)
    store: JobRepository = w.store  # type: ignore[assignment]
    one, _ = await store.create("video", {"prompt": "one"}, provider="farm")
    two, _ = await store.create("video", {"prompt": "two"}, provider="farm")
    farm.hold()
    running = asyncio.create_task(w.run_id(one.id))
    await watch.until(lambda j: j.id == one.id and j.upstream_handle is not None)
    assert await w.run_id(two.id) == "waiting"
    w.cap_wait_seconds = 60.0
    refused = asyncio.Event()
    claim_id = store.claim_id

    async def seen_claim_id(job_id: str, owner: str, **kw: Any) -> Any:  # the real one, observed
        claimed = await claim_id(job_id, owner, **kw)
        if claimed is None:
            refused.set()
        return claimed

    store.claim_id = seen_claim_id  # type: ignore[method-assign]
    second = asyncio.create_task(w.run_id(two.id))
    async with asyncio.timeout(10):
        await refused.wait()  # it tried while the farm was full here
    assert not second.done()  # and waits, not answering `waiting`
    farm.release()
    assert await running == "ran"
    assert await second == "ran"  # claimed when the first one ended, without a retry from the queue
    ended = await store.get(two.id)
    assert ended is not None and ended.state == "complete" and ended.attempt_count == 1


async def test_stop_answers_stopped_after_the_lease_went_back(
    engine: Any, farm: FakeRenderFarm, client: httpx.AsyncClient
) -> None:
    watch = Watch()
    w = worker(engine, farm, client, "w1", on_change=watch)
    store: JobRepository = w.store  # type: ignore[assignment]
    job, _ = await store.create("video", {"prompt": "a fox"})
    farm.hold()
    running = asyncio.create_task(w.run_id(job.id))
    await watch.until(lambda j: j.upstream_handle is not None)
    await w.stop()
    assert await running == "stopped"
    left = await store.get(job.id)
    assert left is not None and left.state == "running" and left.lease_owner is None  # for the next one
    assert await w.run_id(job.id) == "stopped"  # a stopped worker takes nothing
    farm.release()
    assert await worker(engine, farm, client, "w2").run_id(job.id) == "ran"
    assert farm.submissions == 1
