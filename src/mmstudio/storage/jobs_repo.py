"""The `jobs` table (SQLite or PostgreSQL): create with an idempotency key, claim with a lease in one
``UPDATE ... RETURNING``, heartbeats, state moves guarded by the lease owner. Returns domain objects.

Every write that changes a running job names its lease owner: a worker that lost its lease (it stalled
past the expiry and another worker took the job over) can no longer move the job, record a submission or
report progress, so two workers never both act on one job.
"""

from __future__ import annotations

import builtins
import math
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import aliased

from mmstudio.domain.jobs.types import (
    ACTIVE,
    DEPENDENCY_FAILED,
    STATES,
    TERMINAL,
    TRANSITIONS,
    Job,
    JobPage,
    JobState,
)
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import JobRow

COLUMNS = tuple(JobRow.__table__.c)


def new_job_id() -> str:
    """Random and unguessable, URL-safe."""
    return "job_" + secrets.token_urlsafe(15)


def _at(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


def _job(row: Mapping[str, Any]) -> Job:
    state: JobState = row["state"]
    progress = row["progress"]
    return Job(
        id=row["id"],
        kind=row["kind"],
        state=state,
        request=row["request"] or {},
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        recipe=row["recipe"],
        plan=tuple(row["plan"] or ()),
        attempts=tuple(row["attempts"] or ()),
        provider=row["provider"],
        model=row["model"],
        upstream_handle=row["upstream_handle"],
        submitted_at=_at(row["submitted_at"]),
        progress=progress if progress is None or math.isfinite(progress) else None,
        progress_estimated=bool(row["progress_estimated"]),
        depends_on=row["depends_on"],
        priority=row["priority"],
        idempotency_key=row["idempotency_key"],
        started_at=_at(row["started_at"]),
        finished_at=_at(row["finished_at"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=_at(row["lease_expires_at"]),
        attempt_count=row["attempt_count"],
        cancel_requested=bool(row["cancel_requested"]),
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        output_ids=tuple(row["output_ids"] or ()),
        info=row["info"] or {},
    )


def _sources(target: JobState) -> list[str]:
    """The states a job may be in to move to `target`."""
    return [s for s in STATES if target in TRANSITIONS[s]]


def _claimable(now: datetime, kinds: Iterable[str] | None, skip_providers: Iterable[str]) -> Any:
    """A job a worker may take now: queued with its dependency (if any) complete, or active with its
    worker's lease gone; of `kinds`, and not of `skip_providers`."""
    done = aliased(JobRow)
    free = or_(JobRow.lease_owner.is_(None), JobRow.lease_expires_at < now)
    ready = or_(
        JobRow.depends_on.is_(None),
        JobRow.depends_on.in_(select(done.id).where(done.state == "complete").scalar_subquery()),
    )
    claimable = and_(
        free,
        or_(and_(JobRow.state == "queued", ready), JobRow.state.in_(list(ACTIVE))),
    )
    if kinds is not None:
        claimable = and_(claimable, JobRow.kind.in_(list(kinds)))
    skipped = list(skip_providers)
    if skipped:
        claimable = and_(claimable, or_(JobRow.provider.is_(None), JobRow.provider.not_in(skipped)))
    return claimable


def _lease(owner: str, now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "attempt_count": JobRow.attempt_count + 1,
        "started_at": func.coalesce(JobRow.started_at, now),
        "updated_at": now,
    }


class JobRepository:
    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    # -- creating and reading --------------------------------------------------------------------

    async def create(
        self,
        kind: str,
        request: Mapping[str, Any],
        *,
        recipe: Mapping[str, Any] | None = None,
        plan: Iterable[str] = (),
        depends_on: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        info: Mapping[str, Any] | None = None,
        provider: str | None = None,
    ) -> tuple[Job, bool]:
        """A new queued job, or (with an idempotency key already used) the existing one; the flag says
        whether it was created now."""
        now = utc_now()
        row = JobRow(
            id=new_job_id(),
            kind=kind,
            state="queued",
            request=dict(request),
            recipe=dict(recipe) if recipe is not None else None,
            plan=list(plan),
            attempts=[],
            progress_estimated=False,
            depends_on=depends_on,
            priority=priority,
            idempotency_key=idempotency_key,
            provider=provider,  # the first choice's, until a vendor accepts it
            created_at=now,
            updated_at=now,
            attempt_count=0,
            cancel_requested=False,
            output_ids=[],
            info=dict(info or {}),
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = await self.by_idempotency_key(idempotency_key)
            if existing is None:  # pragma: no cover - the conflicting row was deleted in between
                raise
            return existing, False
        created = await self.get(row.id)
        assert created is not None
        return created, True

    async def get(self, job_id: str) -> Job | None:
        return await self._one(select(*COLUMNS).where(JobRow.id == job_id))

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """The jobs of `job_ids` that exist, by id, in one query."""
        wanted = sorted(set(job_ids))
        if not wanted:
            return {}
        async with self._sessions() as session:
            rows = (await session.execute(select(*COLUMNS).where(JobRow.id.in_(wanted)))).mappings()
            return {job.id: job for job in map(_job, rows)}

    async def by_idempotency_key(self, key: str) -> Job | None:
        return await self._one(select(*COLUMNS).where(JobRow.idempotency_key == key))

    async def _one(self, query: Select[Any]) -> Job | None:
        async with self._sessions() as session:
            row = (await session.execute(query)).mappings().first()
        return _job(row) if row is not None else None

    async def list(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> JobPage:
        """Newest first."""

        def where(query: Select[Any]) -> Select[Any]:
            if kind:
                query = query.where(JobRow.kind == kind)
            if state:
                query = query.where(JobRow.state == state)
            return query

        async with self._sessions() as session:
            total = await session.scalar(where(select(func.count()).select_from(JobRow))) or 0
            rows = (
                await session.execute(
                    where(select(*COLUMNS))
                    .order_by(JobRow.created_at.desc(), JobRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).mappings()
            items = [_job(r) for r in rows]
        return JobPage(items, int(total), limit, offset)

    async def changed_since(self, when: datetime | None, *, limit: int = 200) -> builtins.list[Job]:
        """Jobs changed after `when` (every job when None), oldest change first: what a page following
        all jobs has not seen yet."""
        query = select(*COLUMNS).order_by(JobRow.updated_at, JobRow.id).limit(limit)
        if when is not None:
            query = query.where(JobRow.updated_at > when)
        async with self._sessions() as session:
            rows = (await session.execute(query)).mappings()
            return [_job(r) for r in rows]

    async def counts(self) -> dict[str, int]:
        """How many jobs are in each state (states with none are left out)."""
        async with self._sessions() as session:
            rows = await session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
            return {str(state): int(n) for state, n in rows}

    # -- claiming --------------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        *,
        lease_seconds: float,
        kinds: Iterable[str] | None = None,
        now: datetime | None = None,
        skip_providers: Iterable[str] = (),
    ) -> Job | None:
        """Take the next job for `owner` with a lease, atomically: a queued job whose dependency (if
        any) is complete, or a job whose worker's lease expired (it is resumed, never resubmitted when
        it has an upstream handle). Highest priority first, then oldest. None when there is none.
        Jobs of `skip_providers` (those the worker runs as many of as it may) are left for later."""
        taken = await self.claim_batch(
            owner, limit=1, lease_seconds=lease_seconds, kinds=kinds, now=now, skip_providers=skip_providers
        )
        return taken[0] if taken else None

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
    ) -> builtins.list[Job]:
        """Take up to `limit` jobs for `owner` as `claim` takes one, in one write for most calls (a
        worker with free slots after a restart takes its jobs at once, not one statement each).
        `room(provider)` is how many more jobs of that provider the worker may take (None: no cap); a
        provider with less room than the jobs it has waiting gets a statement of its own, limited to its
        room, so a batch never takes more of one vendor than the worker may run. Jobs with no provider
        yet are not capped."""
        if limit < 1:
            return []
        now = now or utc_now()
        claimable = _claimable(now, kinds, skip_providers)
        async with self._sessions() as session:
            # A read first: an idle worker asking every few seconds never takes SQLite's write lock.
            waiting = (
                await session.execute(
                    select(JobRow.provider, func.count()).where(claimable).group_by(JobRow.provider)
                )
            ).all()
        if not waiting:
            return []
        tight = {
            provider: room(provider)
            for provider, count in waiting
            if room is not None and provider is not None and room(provider) < min(count, limit)
        }
        batches: builtins.list[tuple[Any, int]] = [
            (JobRow.provider == provider, space) for provider, space in tight.items() if space > 0
        ]
        if len(tight) < len(waiting):  # the providers with room for all they have waiting, in one statement
            batches.append((or_(JobRow.provider.is_(None), JobRow.provider.not_in(list(tight))), limit))
        taken: builtins.list[Job] = []
        async with self._sessions() as session, session.begin():
            for only, space in batches:
                space = min(space, limit - len(taken))
                if space <= 0:
                    break
                # A CTE, evaluated once: PostgreSQL may run an `IN (SELECT ... LIMIT n FOR UPDATE)`
                # again per row it scans, and then takes more than `n`.
                candidates = (
                    select(JobRow.id)
                    .where(claimable, only)
                    .order_by(JobRow.priority.desc(), JobRow.created_at, JobRow.id)
                    .limit(space)
                    .with_for_update(skip_locked=True)  # PostgreSQL: claimers skip each other's rows
                    .cte("candidates")
                )
                statement = (
                    update(JobRow)
                    .where(JobRow.id.in_(select(candidates.c.id)), claimable)  # checked again on each row
                    .values(**_lease(owner, now, lease_seconds))
                    .returning(*COLUMNS)
                )
                taken += [_job(row) for row in (await session.execute(statement)).mappings()]
        taken.sort(key=lambda job: (-job.priority, job.created_at, job.id))
        return taken

    async def claim_id(
        self,
        job_id: str,
        owner: str,
        *,
        lease_seconds: float,
        kinds: Iterable[str] | None = None,
        now: datetime | None = None,
        skip_providers: Iterable[str] = (),
    ) -> Job | None:
        """Take the job `job_id` for `owner` on the same conditions as `claim` (claimable state, no live
        lease, its dependency complete, its provider not skipped): what a queue's task does with the id
        it carries. None when it is not claimable now; two claimers of one id never both get it (the
        second `UPDATE` sees the first one's lease)."""
        now = now or utc_now()
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, _claimable(now, kinds, skip_providers))
            .values(**_lease(owner, now, lease_seconds))
            .returning(*COLUMNS)
        )
        async with self._sessions() as session, session.begin():
            row = (await session.execute(statement)).mappings().first()
        return _job(row) if row is not None else None

    async def heartbeat_many(
        self, job_ids: Iterable[str], owner: str, *, lease_seconds: float
    ) -> dict[str, bool]:
        """Extend `owner`'s leases of `job_ids` in one write (a worker's heartbeat costs one statement
        however many jobs it runs). The jobs `owner` still holds, each with whether a cancel was asked;
        a job left out is not `owner`'s any more (stop working on it)."""
        ids = list(job_ids)
        if not ids:
            return {}
        now = utc_now()
        statement = (
            update(JobRow)
            .where(JobRow.id.in_(ids), JobRow.lease_owner == owner, JobRow.state.not_in(list(TERMINAL)))
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            .returning(JobRow.id, JobRow.cancel_requested)
        )
        async with self._sessions() as session, session.begin():
            rows = (await session.execute(statement)).all()
        return {str(job_id): bool(cancel) for job_id, cancel in rows}

    async def release(self, owner: str) -> int:
        """Give up every lease of `owner` (a graceful shutdown): another worker continues at once."""
        statement = (
            update(JobRow)
            .where(JobRow.lease_owner == owner, JobRow.state.not_in(list(TERMINAL)))
            .values(lease_owner=None, lease_expires_at=None, updated_at=utc_now())
        )
        async with self._sessions() as session, session.begin():
            result = await session.execute(statement)
        return int(result.rowcount or 0)

    async def release_dead(self, is_dead: Callable[[str], bool]) -> builtins.list[str]:
        """Give up the live leases of every owner `is_dead` says is gone (a process of this machine
        that was killed): a restart resumes its jobs at once instead of after their leases run out.
        The owners released."""
        now = utc_now()
        async with self._sessions() as session:
            owners = await session.scalars(
                select(JobRow.lease_owner)
                .where(
                    JobRow.lease_owner.is_not(None),
                    JobRow.lease_expires_at >= now,
                    JobRow.state.not_in(list(TERMINAL)),
                )
                .distinct()
            )
            dead = sorted(o for o in owners if o is not None and is_dead(o))
        if dead:
            statement = (
                update(JobRow)
                .where(JobRow.lease_owner.in_(dead), JobRow.state.not_in(list(TERMINAL)))
                .values(lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            async with self._sessions() as session, session.begin():
                await session.execute(statement)
        return dead

    # -- moving a job ----------------------------------------------------------------------------

    async def move(self, job_id: str, owner: str, target: JobState, **fields: Any) -> Job | None:
        """Move a job `owner` holds to `target` (only from a state `target` may follow), with other
        columns in the same write. A terminal state ends the lease. None when the job is not `owner`'s
        any more or the move is not allowed from its state."""
        now = utc_now()
        values: dict[str, Any] = {"state": target, "updated_at": now, **fields}
        if "attempts" in values:
            values["attempts"] = [dict(a) for a in values["attempts"]]
        if "output_ids" in values:
            values["output_ids"] = list(values["output_ids"])
        if target in TERMINAL:
            values.update(lease_owner=None, lease_expires_at=None, finished_at=now)
            if target == "complete":
                values.setdefault("progress", 100.0)
                values.setdefault("progress_estimated", False)
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_owner == owner, JobRow.state.in_(_sources(target)))
            .values(**values)
            .returning(*COLUMNS)
        )
        async with self._sessions() as session, session.begin():
            row = (await session.execute(statement)).mappings().first()
        return _job(row) if row is not None else None

    async def record_submission(
        self,
        job_id: str,
        owner: str,
        handle: str,
        *,
        provider: str,
        model: str,
        attempts: Iterable[Mapping[str, Any]] = (),
    ) -> Job | None:
        """The upstream accepted the job: its handle, who has it and `running`, in one write."""
        return await self.move(
            job_id,
            owner,
            "running",
            upstream_handle=handle,
            provider=provider,
            model=model,
            submitted_at=utc_now(),
            attempts=list(attempts),
        )

    async def report_progress(
        self, job_id: str, owner: str, percent: float, *, estimated: bool
    ) -> Job | None:
        """The job with its new progress, or None when `owner` no longer holds it (or it ended)."""
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_owner == owner, JobRow.state.in_(list(ACTIVE)))
            .values(
                progress=min(max(float(percent), 0.0), 100.0),
                progress_estimated=estimated,
                updated_at=utc_now(),
            )
            .returning(*COLUMNS)
        )
        async with self._sessions() as session, session.begin():
            row = (await session.execute(statement)).mappings().first()
        return _job(row) if row is not None else None

    # -- cancelling and dependencies ---------------------------------------------------------------

    async def request_cancel(self, job_id: str) -> Job | None:
        """A queued job nobody holds is cancelled at once; a running one is marked, and its worker
        cancels it upstream where the vendor allows it. A finished job is returned unchanged."""
        now = utc_now()
        free = or_(JobRow.lease_owner.is_(None), JobRow.lease_expires_at < now)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state == "queued", free)
                .values(
                    state="cancelled",
                    cancel_requested=True,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                    error_kind="cancelled",
                    error_message="cancelled before it started",
                )
            )
            await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state.not_in(list(TERMINAL)))
                .values(cancel_requested=True, updated_at=now)
            )
        return await self.get(job_id)

    async def fail_orphans(self) -> builtins.list[str]:
        """Queued jobs waiting for a job that failed or was cancelled fail too, saying why (never
        queued forever). Returns their ids."""
        dependency = aliased(JobRow)
        now = utc_now()
        async with self._sessions() as session:
            waiting = await session.scalar(
                select(JobRow.id).where(JobRow.state == "queued", JobRow.depends_on.is_not(None)).limit(1)
            )
        if waiting is None:
            return []
        async with self._sessions() as session, session.begin():
            pairs = (
                await session.execute(
                    select(JobRow.id, dependency.kind, dependency.state, dependency.error_message)
                    .join(dependency, dependency.id == JobRow.depends_on)
                    .where(JobRow.state == "queued", dependency.state.in_(["failed", "cancelled"]))
                )
            ).all()
            for job_id, kind, state, reason in pairs:
                await session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.state == "queued")
                    .values(
                        state="failed",
                        error_kind="dependency_failed",
                        error_message=DEPENDENCY_FAILED.format(
                            kind=kind, state=state, reason=reason or "no reason given"
                        ),
                        finished_at=now,
                        updated_at=now,
                    )
                )
        return [job_id for job_id, _, _, _ in pairs]
