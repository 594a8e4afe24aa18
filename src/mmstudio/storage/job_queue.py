"""The procrastinate side of the jobs (PostgreSQL): the App on the database, its schema, deferring
`run_job(job_id)`, a worker that hands each id to `JobWorker.run_id`, and the recovery pass.

procrastinate only carries job ids; the `jobs` row stays the truth (state, lease, upstream handle,
outputs). One procrastinate job per row, deferred with ``queueing_lock = lock = job id``: a row is queued
at most once, and never carried by two running tasks at once. A task whose row is not claimable yet (a
dependency not complete, its provider at its cap here) is retried a little later, the same procrastinate
job back in ``todo``; one whose worker shut down is retried at once, after its lease went back.

Recovery (every third of a lease, by one worker at a time under an advisory lock): the procrastinate
jobs of a worker that stopped sending heartbeats (SIGKILL) go back to ``todo`` once their row's lease
expired, and any row not ended and not held that no procrastinate job carries (an enqueue that failed,
a task that failed; rows unchanged for a lease, so a row just stored is left to the process enqueuing
it) is deferred again. The next worker resumes the row from its stored upstream handle, never
submitting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as procrastinate_errors
from procrastinate.jobs import Job as ProcrastinateJob
from procrastinate.jobs import Status
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker
from sqlalchemy.engine import make_url

from mmstudio.domain.jobs.queue import RunOutcome
from mmstudio.domain.jobs.types import TERMINAL, Job
from mmstudio.errors import ConfigError
from mmstudio.storage.db import async_url

log = logging.getLogger(__name__)

TASK = "mmstudio.run_job"
QUEUE = "mmstudio_jobs"
# Advisory lock keys (any 64-bit numbers no other code of ours uses): applying the schema, recovering.
SCHEMA_LOCK = 0x6D6D_7374_0001
RECOVERY_LOCK = 0x6D6D_7374_0002
MAX_WAIT_S = 5.0  # the longest a job not claimable yet waits before it is tried again

_ORPHANS = """
SELECT j.id, j.priority FROM jobs AS j
 WHERE j.state <> ALL(%(terminal)s)
   AND (j.lease_owner IS NULL OR j.lease_expires_at < %(now)s)
   AND j.updated_at < %(settled)s
   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS p WHERE p.queueing_lock = j.id AND p.status = 'todo')
   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs AS p WHERE p.lock = j.id AND p.status = 'doing')
 ORDER BY j.priority DESC, j.created_at, j.id
 LIMIT %(limit)s
"""


def libpq_url(url: str) -> str:
    """A libpq (psycopg) connection URL for the SQLAlchemy URL mmstudio is configured with."""
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            "the procrastinate job engine needs PostgreSQL (MMSTUDIO_DATABASE_URL=postgresql://...)"
        )
    query = dict(parsed.query)
    if "ssl" in query and "sslmode" not in query:  # asyncpg's name for libpq's sslmode
        query["sslmode"] = query.pop("ssl")
    return parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


async def apply_schema(conninfo: str) -> bool:
    """Create procrastinate's tables, functions and triggers unless they exist; True when this call
    created them. One transaction under an advisory lock: processes starting at once apply it once."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
        if row is not None and row[0] is not None:
            return False
        await conn.execute(SchemaManager.get_schema())  # no parameters: sent as one script
    return True


class _Later(Exception):
    """The row is not claimable yet (or its worker is stopping): run the task again in `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"again in {seconds:g} s")
        self.seconds = seconds


class _Redeliver(procrastinate.BaseRetryStrategy):
    """Only `_Later` is retried (forever: the row decides when the job ends), a job waiting long
    (a dependency still running) less and less often, up to every `MAX_WAIT_S`. Anything else fails
    the task; the recovery pass defers the row again."""

    def get_retry_decision(
        self, *, exception: BaseException, job: ProcrastinateJob
    ) -> procrastinate.RetryDecision | None:
        if not isinstance(exception, _Later):
            return None
        seconds = min(exception.seconds * 2 ** min(job.attempts, 8), MAX_WAIT_S)
        return procrastinate.RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=seconds))


class ProcrastinateQueue:
    """The `JobQueue` of the procrastinate engine, and the worker side of it."""

    def __init__(
        self,
        database_url: str,
        *,
        lease_seconds: float,
        concurrency: int = 8,
        retry_seconds: float = 1.0,
    ) -> None:
        self.conninfo = libpq_url(database_url)
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.retry_seconds = retry_seconds  # a row not claimable yet is tried again this much later
        self.every = max(lease_seconds / 3, 0.2)  # heartbeats, polls and recovery
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.conninfo, min_size=1, max_size=concurrency + 4
            )
        )
        self.task = self.app.task(name=TASK, queue=QUEUE, retry=_Redeliver())(self._run_job)
        self._run: Callable[[str], Awaitable[RunOutcome]] | None = None
        self._worker: Worker | None = None

    async def open(self) -> None:
        if await apply_schema(self.conninfo):
            log.info("procrastinate's schema applied")
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    # -- the API's side ----------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> None:
        await self._defer(job.id, job.priority)

    async def _defer(self, job_id: str, priority: int) -> bool:
        """False when a procrastinate job already carries `job_id` (its queueing lock)."""
        deferrer = self.task.configure(queueing_lock=job_id, lock=job_id, priority=priority)
        try:
            await deferrer.defer_async(job_id=job_id)
        except procrastinate_errors.AlreadyEnqueued:
            return False
        return True

    # -- the worker's side -------------------------------------------------------------------------

    async def run_worker(self, run: Callable[[str], Awaitable[RunOutcome]], *, name: str) -> None:
        """Take job ids from the queue and `run` each (`JobWorker.run_id`), `concurrency` at once,
        with the recovery pass beside it, until `stop()` and the tasks it runs have ended (or until
        cancelled). To shut down: `stop()`, then stop the `JobWorker` (its leases go back, and the tasks
        it was running are retried at once for another worker)."""
        self._run = run
        self.app.perform_import_paths()  # type: ignore[no-untyped-call]  # procrastinate leaves it untyped
        self._worker = Worker(
            app=self.app,
            queues=[QUEUE],
            name=name,
            concurrency=self.concurrency,
            install_signal_handlers=False,
            fetch_job_polling_interval=min(self.every, 1.0),  # retried tasks are found by polling
            abort_job_polling_interval=max(self.every, 1.0),
            update_heartbeat_interval=self.every,
            stalled_worker_timeout=self.lease_seconds,
        )
        recovery = asyncio.create_task(self._recover_every(), name="mmstudio-jobs-recovery")
        try:
            await self._worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves it untyped
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery

    def stop(self) -> None:
        """Take no more job ids (the running tasks end when the `JobWorker` stops)."""
        if self._worker is not None:
            self._worker.stop()  # type: ignore[no-untyped-call]  # procrastinate leaves it untyped

    async def _run_job(self, job_id: str) -> str:
        assert self._run is not None, "run_worker() sets the runner before any task runs"
        outcome = await self._run(job_id)
        if outcome == "waiting":
            raise _Later(self.retry_seconds)
        if outcome == "stopped":
            raise _Later(0)
        return outcome

    async def _recover_every(self) -> None:
        while True:
            try:
                await self.recover()
            except Exception:  # the database is unreachable for a moment: the next pass tries again
                log.exception("the jobs' recovery pass failed")
            await asyncio.sleep(self.every)

    async def recover(self, *, limit: int = 1000) -> int:
        """Hand over again what dead workers left: their stalled procrastinate jobs back to ``todo``
        (once the row's lease expired), and every row not ended nor held that nothing carries deferred
        again. One worker at a time (others skip the pass). Returns how many rows were handed over."""
        handed = 0
        async with await psycopg.AsyncConnection.connect(self.conninfo) as conn, conn.transaction():
            got = await (
                await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (RECOVERY_LOCK,))
            ).fetchone()
            if got is None or not got[0]:
                return 0
            manager = self.app.job_manager
            stalled = await manager.get_stalled_jobs(
                task_name=TASK, seconds_since_heartbeat=self.lease_seconds
            )
            now = datetime.now(UTC)
            for stuck in stalled:
                assert stuck.id is not None
                handed += await self._unstick(conn, stuck.id, str(stuck.task_kwargs.get("job_id")), now)
            rows = await (
                await conn.execute(
                    _ORPHANS,
                    {
                        "terminal": sorted(TERMINAL),
                        "now": now,
                        # a row just stored is being enqueued by the process that stored it
                        "settled": now - timedelta(seconds=self.lease_seconds),
                        "limit": limit,
                    },
                )
            ).fetchall()
            for job_id, priority in rows:
                if await self._defer(job_id, priority):
                    log.info("job %s: no worker carried it; queued again", job_id)
                    handed += 1
        return handed

    async def _unstick(self, conn: Any, task_id: int, job_id: str, now: datetime) -> int:
        """A procrastinate job left ``doing`` by a dead worker: back to ``todo`` when its row waits for
        a worker, ended (``aborted``) when its row ended; left alone while the row's lease is live."""
        row = await (
            await conn.execute(
                "SELECT state, lease_owner, lease_expires_at FROM jobs WHERE id = %s", (job_id,)
            )
        ).fetchone()
        manager = self.app.job_manager
        if row is not None and row[0] not in TERMINAL:
            _, owner, expires = row
            if owner is not None and expires is not None and expires >= now:
                return 0  # its lease is live (the lease runs a little longer than the heartbeats)
            try:
                await manager.retry_job_by_id_async(task_id, retry_at=now)
            except procrastinate_errors.ConnectorException:  # another job carries the row already
                pass
            else:
                log.info("job %s: its worker died; handed to the next worker", job_id)
                return 1
        with contextlib.suppress(procrastinate_errors.ConnectorException):  # another pass ended it
            await manager.finish_job_by_id_async(task_id, status=Status.ABORTED, delete_job=False)
        return 0
