"""Job engines benchmark: 200 trivial jobs through two worker processes on a real PostgreSQL, with the
`table` engine (workers claim rows, `FOR UPDATE SKIP LOCKED`) and the `procrastinate` engine (a
procrastinate queue carries the job ids; the rows stay the truth). One machine, a few rounds each.

    python bench/job_engines.py [--jobs 200] [--workers 2] [--concurrency 8] [--rounds 2]

- **PostgreSQL**: started by `tests/servers.py` (initdb in a temp dir, fsync off), a blank database per run.
- **Workers**: this file run as ``worker ENGINE URL`` (its own process each): a `JobWorker` with one
  handler that does nothing (`running`, then done) on `JobRepository`; the table engine runs
  `run_forever` (idle 2 s between empty claims, as `Studio` does; no wake across processes), the
  procrastinate engine `ProcrastinateQueue.run_worker(worker.run_id)` (LISTEN/NOTIFY, polling 1 s).
- **Measured**: from the first create (`JobService.create`, which enqueues on procrastinate) to the last
  job's `finished_at`, the jobs/s that gives, and how long the creates alone took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]


class NoopHandler:
    async def run(self, context: Any) -> Sequence[str]:
        await context.running()
        return []

    async def cancel_upstream(self, job: Any) -> bool:
        return False


async def worker_main(engine_name: str, url: str, concurrency: int) -> None:
    from mmstudio.domain.jobs.worker import JobWorker
    from mmstudio.storage.db import create_engine, session_factory
    from mmstudio.storage.job_queue import ProcrastinateQueue
    from mmstudio.storage.jobs_repo import JobRepository

    engine = create_engine(url)
    worker = JobWorker(
        JobRepository(session_factory(engine)),
        {"noop": NoopHandler()},
        concurrency=concurrency,
        lease_seconds=30,
        idle_seconds=2.0,
    )
    queue = None
    if engine_name == "procrastinate":
        queue = ProcrastinateQueue(url, lease_seconds=30, concurrency=concurrency)
        await queue.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    run = asyncio.create_task(
        worker.run_forever() if queue is None else queue.run_worker(worker.run_id, name=worker.owner)
    )
    print("ready", flush=True)
    await stop.wait()
    await worker.stop()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    if queue is not None:
        await queue.close()
    await engine.dispose()


async def blank_database(admin_url: str) -> str:
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def spawn_worker(engine_name: str, url: str, concurrency: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "worker", engine_name, url, str(concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )


async def one_run(
    admin_url: str, engine_name: str, jobs: int, workers: int, concurrency: int
) -> dict[str, float]:
    from sqlalchemy import func, select

    from mmstudio.domain.jobs.service import JobService
    from mmstudio.storage.db import create_engine, migrate, session_factory
    from mmstudio.storage.job_queue import ProcrastinateQueue, apply_schema, libpq_url
    from mmstudio.storage.jobs_repo import JobRepository
    from mmstudio.storage.tables import JobRow

    url = await blank_database(admin_url)
    engine = create_engine(url)
    await migrate(engine)
    if engine_name == "procrastinate":
        await apply_schema(libpq_url(url))
    procs = [spawn_worker(engine_name, url, concurrency) for _ in range(workers)]
    queue = None
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        if engine_name == "procrastinate":
            queue = ProcrastinateQueue(url, lease_seconds=30)
            await queue.open()
        sessions = session_factory(engine)
        service = JobService(JobRepository(sessions), queue=queue)
        started = time.monotonic()
        first = None
        for n in range(jobs):
            job, _ = await service.create("noop", {"n": n}, plan=())
            first = first or job.created_at
        created = time.monotonic() - started
        while True:
            async with sessions() as session:
                done = await session.scalar(
                    select(func.count()).select_from(JobRow).where(JobRow.state == "complete")
                )
                if done == jobs:
                    last = await session.scalar(select(func.max(JobRow.finished_at)))
                    break
            await asyncio.sleep(0.02)  # reading the database, not timing anything with it
        assert first is not None and last is not None
        wall = (last - first).total_seconds()
        return {"wall_s": wall, "jobs_per_s": jobs / wall, "create_s": created}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(30) == 0
        if queue is not None:
            await queue.close()
        await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    from tests.servers import postgres_server

    results: dict[str, list[dict[str, float]]] = {"table": [], "procrastinate": []}
    with postgres_server() as admin_url:
        for _ in range(args.rounds):
            for engine_name in results:  # alternate, so a busy moment of the machine hits both
                result = await one_run(admin_url, engine_name, args.jobs, args.workers, args.concurrency)
                results[engine_name].append(result)
                print(engine_name, {k: round(v, 3) for k, v in result.items()}, flush=True)
    print(
        f"\n{args.jobs} trivial jobs, {args.workers} workers x {args.concurrency} at once, "
        f"{os.cpu_count()} CPUs"
    )
    for engine_name, runs in results.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        create = statistics.median(r["create_s"] for r in runs)
        print(
            f"{engine_name:>13}: wall {wall:.2f} s (median of {len(runs)}), {args.jobs / wall:.0f} jobs/s, "
            f"creates {create:.2f} s"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        asyncio.run(worker_main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--jobs", type=int, default=200)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--rounds", type=int, default=2)
        asyncio.run(main(parser.parse_args()))
