"""The jobs table on SQLite and a real PostgreSQL: idempotent create, atomic claims with leases, resume
of a job whose worker died (its upstream handle kept), moves guarded by the lease owner, cancel, and
jobs waiting on one that failed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from mmstudio.domain.jobs.types import TRANSITIONS, can_move
from mmstudio.storage._time import utc_now
from mmstudio.storage.db import create_engine, session_factory
from mmstudio.storage.jobs_repo import JobRepository

LEASE = 30.0


def _repo(engine: Any) -> JobRepository:
    return JobRepository(session_factory(engine))


async def test_create_is_idempotent_by_key(engine: Any) -> None:
    jobs = _repo(engine)
    first, created = await jobs.create("video", {"prompt": "a fox"}, idempotency_key="k-1", plan=["xai/v"])
    again, created_again = await jobs.create("video", {"prompt": "something else"}, idempotency_key="k-1")
    assert created and not created_again and again.id == first.id and again.request == {"prompt": "a fox"}
    other, _ = await jobs.create("video", {"prompt": "a fox"})
    assert other.id != first.id and other.id.startswith("job_") and len(other.id) > 20
    assert (first.state, first.plan, first.attempt_count, first.lease_owner) == (
        "queued",
        ("xai/v",),
        0,
        None,
    )
    assert await jobs.get_many([first.id, "job_nope", other.id, first.id]) == {
        first.id: await jobs.get(first.id),
        other.id: await jobs.get(other.id),
    }
    assert await jobs.get_many([]) == {}
    page = await jobs.list(kind="video")
    assert page.total == 2 and [j.id for j in page.items] == [other.id, first.id]
    assert (await jobs.list(state="running")).total == 0


async def test_claims_take_priority_then_age_and_hold_a_lease(engine: Any) -> None:
    jobs = _repo(engine)
    old, _ = await jobs.create("video", {"n": 1})
    urgent, _ = await jobs.create("video", {"n": 2}, priority=5)
    image, _ = await jobs.create("image", {"n": 3})
    a = await jobs.claim("worker-a", lease_seconds=LEASE, kinds=["video"])
    b = await jobs.claim("worker-b", lease_seconds=LEASE, kinds=["video"])
    assert a is not None and b is not None and (a.id, b.id) == (urgent.id, old.id)
    assert a.lease_owner == "worker-a" and a.attempt_count == 1 and a.started_at is not None
    assert await jobs.claim("worker-c", lease_seconds=LEASE, kinds=["video"]) is None  # both are held
    c = await jobs.claim("worker-c", lease_seconds=LEASE)
    assert c is not None and c.id == image.id


async def test_a_dead_workers_job_is_resumed_by_its_handle_not_resubmitted(engine: Any) -> None:
    jobs = _repo(engine)
    job, _ = await jobs.create("video", {"prompt": "a fox"})
    claimed = await jobs.claim("worker-a", lease_seconds=LEASE)
    assert claimed is not None
    assert await jobs.move(job.id, "worker-a", "submitting") is not None
    running = await jobs.record_submission(job.id, "worker-a", "req-123", provider="xai", model="xai/v")
    assert running is not None and running.state == "running" and running.reached_upstream
    # worker-a dies: nobody else may take it while its lease runs ...
    assert await jobs.claim("worker-b", lease_seconds=LEASE) is None
    # ... and once it expires worker-b gets it back with the handle, to poll it.
    later = utc_now() + timedelta(seconds=LEASE + 1)
    resumed = await jobs.claim("worker-b", lease_seconds=LEASE, now=later)
    assert resumed is not None and resumed.id == job.id
    assert (resumed.state, resumed.upstream_handle, resumed.attempt_count) == ("running", "req-123", 2)
    # worker-a, back from its stall, can no longer touch the job.
    assert await jobs.move(job.id, "worker-a", "failed", error_message="late") is None
    assert not await jobs.report_progress(job.id, "worker-a", 50, estimated=False)
    assert await jobs.heartbeat_many([job.id], "worker-a", lease_seconds=LEASE) == {}
    assert await jobs.report_progress(job.id, "worker-b", 40, estimated=True)
    assert await jobs.move(job.id, "worker-b", "downloading") is not None
    done = await jobs.move(job.id, "worker-b", "complete", output_ids=["asset-1"])
    assert done is not None and done.state == "complete" and done.progress == 100.0
    assert done.output_ids == ("asset-1",) and done.lease_owner is None and done.finished_at is not None
    assert await jobs.claim("worker-c", lease_seconds=LEASE, now=later + timedelta(hours=1)) is None


async def test_moves_follow_the_state_machine(engine: Any) -> None:
    jobs = _repo(engine)
    job, _ = await jobs.create("video", {})
    await jobs.claim("w", lease_seconds=LEASE)
    assert await jobs.move(job.id, "w", "downloading") is None  # queued -> downloading is not a move
    assert await jobs.move(job.id, "w", "complete") is None
    assert await jobs.move(job.id, "w", "submitting") is not None
    assert await jobs.move(job.id, "w", "queued") is not None  # a retry before the upstream accepted it
    assert all(not TRANSITIONS[s] for s in ("complete", "failed", "cancelled"))
    assert can_move("running", "running") and not can_move("complete", "running")


async def test_release_lets_another_worker_continue_at_once(engine: Any) -> None:
    jobs = _repo(engine)
    job, _ = await jobs.create("video", {})
    await jobs.claim("w1", lease_seconds=LEASE)
    await jobs.move(job.id, "w1", "submitting")
    await jobs.record_submission(job.id, "w1", "op/1", provider="gemini", model="gemini/veo")
    assert await jobs.release("w1") == 1
    taken = await jobs.claim("w2", lease_seconds=LEASE)
    assert taken is not None and taken.upstream_handle == "op/1" and taken.lease_owner == "w2"


async def test_cancel_a_queued_job_at_once_and_mark_a_running_one(engine: Any) -> None:
    jobs = _repo(engine)
    waiting, _ = await jobs.create("video", {})
    running, _ = await jobs.create("video", {})
    await jobs.claim("w", lease_seconds=LEASE)  # the older one: `waiting`
    cancelled = await jobs.request_cancel(running.id)
    assert cancelled is not None and cancelled.state == "cancelled" and cancelled.finished_at is not None
    marked = await jobs.request_cancel(waiting.id)
    assert marked is not None and marked.state == "queued" and marked.cancel_requested
    assert await jobs.request_cancel("job_nope") is None
    done = await jobs.move(waiting.id, "w", "cancelled", error_message="cancelled upstream")
    assert done is not None and (await jobs.request_cancel(waiting.id)) == done


async def test_a_job_waits_for_its_dependency_and_fails_with_it(engine: Any) -> None:
    jobs = _repo(engine)
    still, _ = await jobs.create("image", {"prompt": "a fox"})
    video, _ = await jobs.create("video", {"prompt": "a fox runs"}, depends_on=still.id, priority=9)
    second, _ = await jobs.create("video", {"prompt": "again"}, depends_on=still.id)
    claimed = await jobs.claim("w", lease_seconds=LEASE)
    assert claimed is not None and claimed.id == still.id  # the videos wait despite their priority
    assert await jobs.claim("w2", lease_seconds=LEASE) is None
    await jobs.move(still.id, "w", "submitting")
    await jobs.move(still.id, "w", "failed", error_kind="content_filtered", error_message="refused: safety")
    assert sorted(await jobs.fail_orphans()) == sorted([video.id, second.id])
    failed = await jobs.get(video.id)
    assert failed is not None and failed.state == "failed" and failed.error_kind == "dependency_failed"
    assert failed.error_message == "the image it waits for failed: refused: safety"

    ok, _ = await jobs.create("image", {})
    after, _ = await jobs.create("video", {}, depends_on=ok.id)
    await jobs.claim("w", lease_seconds=LEASE)
    await jobs.move(ok.id, "w", "submitting")
    await jobs.record_submission(ok.id, "w", "p-1", provider="comfyui", model="comfyui/x")
    await jobs.move(ok.id, "w", "downloading")
    await jobs.move(ok.id, "w", "complete", output_ids=["img"])
    taken = await jobs.claim("w", lease_seconds=LEASE)
    assert taken is not None and taken.id == after.id


async def test_many_claimers_racing_for_one_job_one_wins(engine: Any) -> None:
    url = engine.url.render_as_string(hide_password=False)
    engines = [create_engine(url) for _ in range(6)]  # separate pools: separate connections
    try:
        job, _ = await _repo(engine).create("video", {})
        results = await asyncio.gather(
            *(_repo(e).claim(f"worker-{i}", lease_seconds=LEASE) for i, e in enumerate(engines))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0].id == job.id and winners[0].attempt_count == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_claimers_share_many_jobs_each_exactly_once(engine: Any) -> None:
    url = engine.url.render_as_string(hide_password=False)
    engines = [create_engine(url) for _ in range(4)]
    try:
        made = [(await _repo(engine).create("video", {"i": i}))[0].id for i in range(40)]
        seen: list[str] = []

        async def drain(repo: JobRepository, owner: str) -> None:
            while (job := await repo.claim(owner, lease_seconds=LEASE)) is not None:
                seen.append(job.id)
                await repo.move(job.id, owner, "submitting")
                await repo.move(job.id, owner, "failed", error_message="done for the test")

        await asyncio.gather(*(drain(_repo(e), f"w{i}") for i, e in enumerate(engines)))
        assert sorted(seen) == sorted(made)
    finally:
        for e in engines:
            await e.dispose()


async def test_a_batch_claim_takes_up_to_its_limit_in_priority_then_age_order(engine: Any) -> None:
    jobs = _repo(engine)
    made = [(await jobs.create("video", {"n": n}))[0].id for n in range(5)]
    urgent, _ = await jobs.create("video", {"n": 5}, priority=3)
    first = await jobs.claim_batch("w1", limit=3, lease_seconds=LEASE)
    assert [j.id for j in first] == [urgent.id, made[0], made[1]]
    assert all(j.lease_owner == "w1" and j.attempt_count == 1 for j in first)
    rest = await jobs.claim_batch("w2", limit=10, lease_seconds=LEASE)
    assert [j.id for j in rest] == made[2:]
    assert await jobs.claim_batch("w3", limit=10, lease_seconds=LEASE) == []
    assert await jobs.claim_batch("w3", limit=0, lease_seconds=LEASE) == []


async def test_a_batch_claim_takes_no_more_of_a_provider_than_its_room(engine: Any) -> None:
    jobs = _repo(engine)
    farm = [(await jobs.create("video", {"n": n}, provider="farm"))[0].id for n in range(4)]
    cloud = [(await jobs.create("video", {"n": n}, provider="cloud"))[0].id for n in range(2)]
    unplanned, _ = await jobs.create("video", {"n": 9})
    room = {"farm": 1, "cloud": 5}
    taken = await jobs.claim_batch("w", limit=10, lease_seconds=LEASE, room=lambda p: room[p])
    assert sorted(j.id for j in taken) == sorted([farm[0], *cloud, unplanned.id])
    room = {"farm": 0, "cloud": 0}
    assert await jobs.claim_batch("w2", limit=10, lease_seconds=LEASE, room=lambda p: room[p]) == []
    # The limit holds across providers: a tight provider first, then the others.
    more = [(await jobs.create("video", {"n": n}, provider="cloud"))[0].id for n in range(3)]
    room = {"farm": 2, "cloud": 9}
    two = await jobs.claim_batch("w3", limit=2, lease_seconds=LEASE, room=lambda p: room[p])
    assert len(two) == 2 and {j.id for j in two} <= {*farm[1:], *more}


async def test_batch_claimers_racing_share_the_jobs_each_exactly_once(engine: Any) -> None:
    url = engine.url.render_as_string(hide_password=False)
    engines = [create_engine(url) for _ in range(4)]  # separate pools: separate connections
    try:
        made = [(await _repo(engine).create("video", {"i": i}))[0].id for i in range(60)]
        seen: list[str] = []

        async def drain(repo: JobRepository, owner: str) -> None:
            while batch := await repo.claim_batch(owner, limit=7, lease_seconds=LEASE):
                assert len(batch) <= 7
                seen.extend(j.id for j in batch)

        await asyncio.gather(*(drain(_repo(e), f"w{i}") for i, e in enumerate(engines)))
        assert sorted(seen) == sorted(made)
    finally:
        for e in engines:
            await e.dispose()


async def test_one_heartbeat_extends_every_lease_a_worker_holds_and_says_which_to_stop(engine: Any) -> None:
    jobs = _repo(engine)
    made = [(await jobs.create("video", {"n": n}))[0] for n in range(4)]
    held = [await jobs.claim("worker-a", lease_seconds=1.0) for _ in range(3)]
    other = await jobs.claim("worker-b", lease_seconds=LEASE)
    assert all(j is not None for j in held) and other is not None
    mine = [j.id for j in held if j is not None]
    await jobs.request_cancel(mine[1])  # asked from another process
    finished = await jobs.move(mine[2], "worker-a", "failed", error_message="gone")
    assert finished is not None
    beat = await jobs.heartbeat_many([*mine, other.id, "job_nope"], "worker-a", lease_seconds=LEASE)
    # Still held: the first two (the second with its cancel); not the ended one nor worker-b's.
    assert beat == {mine[0]: False, mine[1]: True}
    later = utc_now() + timedelta(seconds=5)  # past the 1 s leases they were claimed with
    assert await jobs.claim("worker-c", lease_seconds=LEASE, now=later) is None  # extended: all held
    assert {j.id for j in made} == {*mine, other.id}
    assert await jobs.heartbeat_many([], "worker-a", lease_seconds=LEASE) == {}


async def test_the_leases_of_dead_owners_are_released_and_no_others(engine: Any) -> None:
    jobs = _repo(engine)
    for n in range(3):
        await jobs.create("video", {"n": n})
    dead = await jobs.claim("host:1.111:dead", lease_seconds=LEASE)
    alive = await jobs.claim("host:1.222:alive", lease_seconds=LEASE)
    ended = await jobs.claim("host:1.333:ended", lease_seconds=LEASE)
    assert dead is not None and alive is not None and ended is not None
    assert await jobs.move(ended.id, "host:1.333:ended", "failed", error_message="x") is not None
    asked: list[str] = []

    def is_dead(owner: str) -> bool:
        asked.append(owner)
        return owner != "host:1.222:alive"

    assert await jobs.release_dead(is_dead) == ["host:1.111:dead"]
    assert sorted(asked) == ["host:1.111:dead", "host:1.222:alive"]  # an ended job's owner is not asked
    taken = await jobs.claim("worker-b", lease_seconds=LEASE)
    assert taken is not None and taken.id == dead.id  # at once, its lease not run out
    assert await jobs.claim("worker-c", lease_seconds=LEASE) is None
