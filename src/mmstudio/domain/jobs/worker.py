"""The job worker: claims jobs with a lease, keeps the lease alive, runs each job's handler, and records
how it ended. Knows nothing about video: a handler per job kind does the upstream work.

Rules the worker enforces for every handler:

- **Persist first.** The job row exists before the worker sees it; the handler reports the upstream's
  handle with `JobContext.submitted()` the moment the upstream accepts the job, which stores it in the
  same write that moves the job to `running`.
- **Resume, never resubmit.** A job is handed to its handler again after its worker died (the lease
  expired) or shut down (the lease was released). `job.upstream_handle` then says the upstream already has
  it: the handler polls that handle instead of submitting again.
- **One worker per job.** A lease is extended every third of its length. A worker that fails to extend it
  (another worker took the job over after a stall) stops the handler at once, and every write it would
  still try is refused by the store.
- **Cancel** is a flag on the row (set by the API); a job running in the same process is stopped at
  once (`cancel_now`), one running elsewhere at its worker's next heartbeat; the handler is stopped and
  asked to cancel upstream where the vendor allows it.
- **Caps per provider**: with `provider_cap`, a provider this worker already runs as many jobs of as
  it may is skipped when claiming, so one slow vendor cannot take every slot.

Two ways to get work: `run_forever` claims the next claimable row itself (the `table` engine), and
`run_id` runs the one job a queue handed over (the `procrastinate` engine), claimed by id on the same
conditions; either way the row's lease says who runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from mmstudio.domain.jobs.queue import RunOutcome
from mmstudio.domain.jobs.types import Job, JobState
from mmstudio.errors import ProviderError, StudioError

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The job is not this worker's any more: stop working on it, write nothing."""


class MoveRefused(Exception):
    """A handler asked for a state change the job's state does not allow (a bug in the handler): the job
    fails with this message instead of being handed over again and again."""


class JobStore(Protocol):
    async def get(self, job_id: str) -> Job | None: ...
    async def claim(
        self,
        owner: str,
        *,
        lease_seconds: float,
        kinds: Iterable[str] | None = None,
        now: datetime | None = None,
        skip_providers: Iterable[str] = (),
    ) -> Job | None: ...
    async def claim_batch(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        kinds: Iterable[str] | None = None,
        now: datetime | None = None,
        skip_providers: Iterable[str] = (),
        room: Callable[[str], int] | None = None,
    ) -> list[Job]: ...
    async def claim_id(
        self,
        job_id: str,
        owner: str,
        *,
        lease_seconds: float,
        kinds: Iterable[str] | None = None,
        now: datetime | None = None,
        skip_providers: Iterable[str] = (),
    ) -> Job | None: ...
    async def heartbeat_many(
        self, job_ids: Iterable[str], owner: str, *, lease_seconds: float
    ) -> dict[str, bool]: ...
    async def release(self, owner: str) -> int: ...
    async def release_dead(self, is_dead: Callable[[str], bool]) -> list[str]: ...
    async def move(self, job_id: str, owner: str, target: JobState, **fields: Any) -> Job | None: ...
    async def record_submission(
        self,
        job_id: str,
        owner: str,
        handle: str,
        *,
        provider: str,
        model: str,
        attempts: Iterable[Mapping[str, Any]] = (),
    ) -> Job | None: ...
    async def report_progress(
        self, job_id: str, owner: str, percent: float, *, estimated: bool
    ) -> Job | None: ...
    async def fail_orphans(self) -> list[str]: ...


@dataclass
class JobContext:
    """What a handler gets: the job as claimed, and the calls that record what it did."""

    job: Job
    owner: str
    store: JobStore
    notify: Callable[[Job], None]

    async def submitted(
        self, handle: str, *, provider: str, model: str, attempts: Iterable[Mapping[str, Any]] = ()
    ) -> None:
        """The upstream accepted the job and answered `handle`: stored before anything else happens."""
        await self._moved(
            await self.store.record_submission(
                self.job.id, self.owner, handle, provider=provider, model=model, attempts=attempts
            ),
            "running",
        )

    async def running(self, **fields: Any) -> None:
        """The work started without an upstream handle to keep (a synchronous call, e.g. an image);
        `fields` (the model that answered, the attempts) are stored in the same write."""
        if self.job.state != "running" or fields:
            await self._moved(await self.store.move(self.job.id, self.owner, "running", **fields), "running")

    async def progress(self, percent: float, *, estimated: bool = False) -> None:
        """Store the progress (one write that returns the job) and tell the listeners; the same value
        again writes nothing (the lease keeper notices a lost lease or a cancel meanwhile)."""
        if percent == self.job.progress and estimated == self.job.progress_estimated:
            return
        reported = await self.store.report_progress(self.job.id, self.owner, percent, estimated=estimated)
        await self._moved(reported, self.job.state)

    async def downloading(self) -> None:
        """Fetching the result. A job a restart found downloading already starts the download again."""
        if self.job.state != "downloading":
            await self._moved(await self.store.move(self.job.id, self.owner, "downloading"), "downloading")

    async def intend(self, intended: Mapping[str, Any]) -> None:
        """About to create the job upstream under a handle the caller chose (`intended` names it and
        the model): stored first, so a create whose answer is lost is found by asking the vendor."""
        info = {**self.job.info, "intended": dict(intended)}
        await self._moved(
            await self.store.move(self.job.id, self.owner, "submitting", info=info), "submitting"
        )

    async def polling_again(self) -> None:
        """Back from downloading to polling (a result that must be fetched again)."""
        await self._moved(await self.store.move(self.job.id, self.owner, "running"), "running")

    async def _moved(self, job: Job | None, target: JobState) -> None:
        """The job as a write left it; a write that changed nothing was refused: the lease is gone
        (`LeaseLost`), or the job still is this worker's and cannot go to `target` (`MoveRefused`)."""
        if job is None:
            current = await self.store.get(self.job.id)
            if current is not None and current.lease_owner == self.owner and not current.terminal:
                raise MoveRefused(f"a {current.kind} job cannot go from {current.state} to {target}")
            raise LeaseLost(self.job.id)
        self.job = job
        self.notify(job)


class JobHandler(Protocol):
    """The upstream work of one job kind."""

    async def run(self, context: JobContext) -> Sequence[str]:
        """Submit (or, when `context.job.upstream_handle` is set, resume polling), wait, download;
        return the output asset ids. Raise `StudioError` for a failure (its message is the job's)."""
        ...

    async def cancel_upstream(self, job: Job) -> bool:
        """Ask the vendor to stop `job`; False when it cannot (the result is then discarded)."""
        ...


async def _first_of(events: list[asyncio.Event], timeout: float | None = None) -> None:
    """Until one of `events` is set (or `timeout` seconds pass)."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _pid_namespace() -> str:
    """This process's PID namespace (a container has its own), so a PID is compared only within it."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def default_owner() -> str:
    """``host:pidns.pid:token``: unique, and enough to tell whether the process still runs (`gone`)."""
    return f"{socket.gethostname()}:{_pid_namespace()}.{os.getpid()}:{secrets.token_hex(3)}"


def gone(owner: str, me: str | None = None) -> bool:
    """Whether `owner` is a worker process of this machine (same host and PID namespace) that no
    longer runs. Anything else (another machine, another container, a PID now in use) is not known to
    be gone: its leases run out as usual."""
    host, _, rest = owner.partition(":")
    where, _, _token = rest.partition(":")
    namespace, _, pid = where.partition(".")
    same_place = host == socket.gethostname() and namespace == _pid_namespace()
    if owner == me or not same_place or not pid.isdigit() or int(pid) == os.getpid():
        return False  # our own PID: another worker of this process (tests run several)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs under another user
        return False
    return False


@dataclass
class JobWorker:
    store: JobStore
    handlers: Mapping[str, JobHandler]
    owner: str = field(default_factory=default_owner)
    concurrency: int = 4
    lease_seconds: float = 30.0
    idle_seconds: float = 0.5  # between claims when there was nothing to do
    clock: Callable[[], datetime] | None = None  # what "now" is when claiming (tests move it)
    on_change: Callable[[Job], None] | None = None  # every state or progress change (live events)
    wake: asyncio.Event | None = None  # set when a job was created or cancelled: look at once
    provider_cap: Callable[[str], int] | None = None  # jobs at once per provider (None: no cap)
    cap_wait_seconds: float = 0.0  # run_id: how long a job whose provider is full here waits for a slot
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _providers: dict[str, str | None] = field(default_factory=dict)  # running job -> its provider
    _work: dict[str, asyncio.Task[Any]] = field(default_factory=dict)  # running job -> its handler task
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _cancels: set[str] = field(default_factory=set)  # jobs cancel_now() stopped
    _ended_by: dict[str, str] = field(default_factory=dict)  # job -> why the lease keeper stopped it
    _keeper: asyncio.Task[None] | None = None  # extends every running job's lease in one write
    _released: asyncio.Event = field(default_factory=asyncio.Event)  # stop() gave the leases back
    _claiming: asyncio.Lock = field(default_factory=asyncio.Lock)  # run_id: one cap check + claim at once
    _freed: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) when a job ends here
    _looped: set[str] = field(default_factory=set)  # the jobs run_forever claimed that still run

    # -- the loop --------------------------------------------------------------------------------

    async def take_over_the_dead(self) -> list[str]:
        """Release the leases of this machine's worker processes that were killed (a restart after a
        SIGKILL or a power loss): their jobs are resumed at once, not after the leases run out."""
        dead = await self.store.release_dead(lambda owner: gone(owner, self.owner))
        for owner in dead:
            log.info("worker %s is gone: its jobs are resumed now", owner)
        return dead

    async def run_forever(self) -> None:
        """Claim and run jobs until `stop()`, at most `concurrency` at once: as many as there are free
        slots in one claim (a restart takes its dead predecessor's jobs over in one write)."""
        try:
            await self.take_over_the_dead()
        except Exception:  # the database is unreachable for a moment: the leases run out instead
            log.exception("looking for dead workers' jobs failed")
        while not self._stopping.is_set():
            free = self.concurrency - len(self._looped)
            if free <= 0:
                await _first_of([self._freed, self._stopping])
                continue
            try:
                jobs = await self.claim_many(free)
            except Exception:  # the database is unreachable for a moment: try again
                log.exception("claiming a job failed")
                jobs = []
            for job in jobs:
                self._start(job)
            if len(jobs) < free:  # nothing more to take now
                await self._idle()

    async def _idle(self) -> None:
        """Wait `idle_seconds`, or less when stopping or woken."""
        try:
            await _first_of(
                [self._stopping, *([self.wake] if self.wake is not None else [])], self.idle_seconds
            )
        finally:
            if self.wake is not None:
                self.wake.clear()

    def _start(self, job: Job) -> asyncio.Task[None]:
        """Run a job `run_forever` claimed in a task of its own; it holds a slot until it ends."""
        self._providers[job.id] = job.provider
        self._looped.add(job.id)
        task = asyncio.create_task(self._run_and_free(job), name=f"mmstudio-job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_and_free(self, job: Job) -> None:
        try:
            await self.run(job)
        finally:
            self._providers.pop(job.id, None)
            self._looped.discard(job.id)
            self._free_a_slot()

    async def claim(self) -> Job | None:
        taken = await self.claim_many(1)
        return taken[0] if taken else None

    async def claim_many(self, limit: int) -> list[Job]:
        """Up to `limit` jobs, none of a provider beyond what this worker may run of it."""
        await self.store.fail_orphans()
        now = self.clock() if self.clock is not None else None
        running = Counter(p for p in self._providers.values() if p is not None)
        cap = self.provider_cap
        return await self.store.claim_batch(
            self.owner,
            limit=limit,
            lease_seconds=self.lease_seconds,
            kinds=list(self.handlers),
            now=now,
            skip_providers=self.full_providers(),
            room=(lambda provider: cap(provider) - running[provider]) if cap is not None else None,
        )

    def full_providers(self) -> list[str]:
        """The providers this worker runs as many jobs of as it may: their jobs wait."""
        if self.provider_cap is None:
            return []
        running = Counter(p for p in self._providers.values() if p is not None)
        return sorted(p for p, n in running.items() if n >= self.provider_cap(p))

    def cancel_now(self, job_id: str) -> bool:
        """Stop a job this worker is running at once (a cancel asked in this process); the lease
        watcher ends it as cancelled. False when it does not run here (the heartbeat notices)."""
        work = self._work.get(job_id)
        if work is None or work.done():
            return False
        self._cancels.add(job_id)
        work.cancel()
        return True

    async def run_once(self) -> Job | None:
        """Claim one job and run it to its end; the job as it ended, or None when there was none."""
        job = await self.claim()
        if job is None:
            return None
        await self.run(job)
        return await self.store.get(job.id)

    async def stop(self, *, release: bool = True) -> None:
        """Stop claiming, stop the running handlers and (by default) give their leases back, so another
        worker resumes them at once. `release=False` is what a killed process leaves: leases that
        expire."""
        self._stopping.set()
        if self._keeper is not None:
            self._keeper.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if release:
            await self.store.release(self.owner)
        self._released.set()
        self._free_a_slot()  # run_id calls waiting for a provider's slot see the stop

    # -- one job a queue handed over ---------------------------------------------------------------

    async def run_id(self, job_id: str) -> RunOutcome:
        """Claim the job `job_id` (as `claim` would: claimable state, no live lease, dependency complete,
        its provider below its cap here) and run it to its end. What happened is the answer: see
        `RunOutcome`. A job whose provider is full here waits up to `cap_wait_seconds` for one of this
        worker's jobs to end. A `stop()` meanwhile answers `stopped` once the lease went back."""
        if self._stopping.is_set():
            return "stopped"
        await self.store.fail_orphans()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cap_wait_seconds
        while True:
            freed = self._freed  # set when a job ends from here on: no slot freed in between is missed
            async with self._claiming:  # the cap is checked and the job counted in one step
                job = await self.store.claim_id(
                    job_id,
                    self.owner,
                    lease_seconds=self.lease_seconds,
                    kinds=list(self.handlers),
                    now=self.clock() if self.clock is not None else None,
                    skip_providers=self.full_providers(),
                )
                if job is not None:
                    self._providers[job.id] = job.provider
            if job is not None:
                break
            outcome, current = await self._why_not(job_id)
            capped = current is not None and current.provider in self.full_providers()
            if outcome != "waiting" or not capped or loop.time() >= deadline:
                return outcome
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), deadline - loop.time())
            if self._stopping.is_set():
                return "stopped"
        if self._stopping.is_set():  # stop() came while claiming: it did not see this job
            self._providers.pop(job.id, None)
            await self.store.release(self.owner)
            return "stopped"
        task = asyncio.create_task(self.run(job), name=f"mmstudio-job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await task
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if not self._stopping.is_set() or (this is not None and this.cancelling()):
                raise  # this call itself was cancelled (its task was cancelled with it)
            await self._released.wait()  # stop() cancelled the job: the lease goes back first
            return "stopped"
        finally:
            self._providers.pop(job.id, None)
            self._free_a_slot()
        return "ran"

    def _free_a_slot(self) -> None:
        self._freed.set()
        self._freed = asyncio.Event()

    async def _why_not(self, job_id: str) -> tuple[RunOutcome, Job | None]:
        current = await self.store.get(job_id)
        if current is None or current.terminal:
            return "ended", current
        now = self.clock() if self.clock is not None else datetime.now(UTC)
        expires = current.lease_expires_at
        if current.lease_owner is not None and expires is not None and expires >= now:
            return "elsewhere", current
        return "waiting", current

    # -- one job ---------------------------------------------------------------------------------

    async def run(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        if job.cancel_requested:
            await self._cancel(handler, job)
            return
        if job.state == "queued":
            moved = await self.store.move(job.id, self.owner, "submitting")
            if moved is None:
                return
            job = moved
            self._notify(job)
        context = JobContext(job, self.owner, self.store, self._notify)
        work = asyncio.create_task(handler.run(context), name=f"mmstudio-job-work-{job.id}")
        self._work[job.id] = work
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep_leases(), name="mmstudio-job-leases")
        reason: str | None = None
        try:
            outputs = await work
        except asyncio.CancelledError:
            reason = "cancel" if job.id in self._cancels else self._ended_by.get(job.id)
            if reason is None:  # the worker itself is stopping: the job stays for the next one
                raise
        except LeaseLost:
            return
        except StudioError as exc:
            kind = exc.kind if isinstance(exc, ProviderError) else type(exc).__name__
            await self._end(job.id, "failed", error_kind=kind, error_message=exc.message)
            return
        except Exception as exc:
            log.exception("job %s: its handler failed", job.id)
            await self._end(job.id, "failed", error_kind="internal", error_message=f"internal error: {exc!r}")
            return
        else:
            await self._end(job.id, "complete", output_ids=list(outputs), error_kind=None, error_message=None)
            return
        finally:
            self._work.pop(job.id, None)
            self._cancels.discard(job.id)
            self._ended_by.pop(job.id, None)
        if reason == "cancel":
            current = await self.store.get(job.id)
            await self._cancel(handler, current or context.job)

    async def _keep_leases(self) -> None:
        """Every third of a lease, extend the leases of every job this worker runs in one write; stop a
        job whose lease another worker took over (after a stall) or whose cancel was asked elsewhere.
        Ends when no job runs here (the next job starts it again)."""
        while self._work:
            await asyncio.sleep(self.lease_seconds / 3)
            running = {job_id: work for job_id, work in self._work.items() if not work.done()}
            if not running:
                continue
            try:
                held = await self.store.heartbeat_many(running, self.owner, lease_seconds=self.lease_seconds)
            except Exception:  # the database is unreachable for a moment: the next beat tries again
                log.exception("extending the leases of %d job(s) failed", len(running))
                continue
            for job_id, work in running.items():
                if job_id not in held or held[job_id]:
                    self._ended_by[job_id] = "lost" if job_id not in held else "cancel"
                    work.cancel()

    async def _cancel(self, handler: JobHandler, job: Job) -> None:
        stopped = False
        if job.reached_upstream:
            try:
                stopped = await handler.cancel_upstream(job)
            except StudioError as exc:
                log.warning("job %s: cancelling upstream failed: %s", job.id, exc.message)
        message = getattr(handler, "cancelled_message", None) or (  # a job that runs here says its own
            "cancelled; the vendor stopped it"
            if stopped
            else "cancelled; the vendor cannot stop it, so its result will be discarded"
            if job.reached_upstream
            else "cancelled before it reached the vendor"
        )
        await self._end(job.id, "cancelled", error_kind="cancelled", error_message=message)

    async def _end(self, job_id: str, state: JobState, **fields: Any) -> None:
        ended = await self.store.move(job_id, self.owner, state, **fields)
        if ended is not None:
            log.info("job %s (%s) %s on %s", ended.id, ended.kind, ended.state, self.owner)
            self._notify(ended)

    def _notify(self, job: Job) -> None:
        if job.id in self._providers:  # a fallback vendor accepted it: it counts as that vendor's now
            self._providers[job.id] = job.provider
        if self.on_change is not None:
            self.on_change(job)
