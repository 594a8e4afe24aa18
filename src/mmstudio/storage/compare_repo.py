"""Compare-arena runs, their answers and votes (SQLite or PostgreSQL). Returns domain objects."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from mmstudio.domain.chat.compare import (
    AnswerStatus,
    CompareAnswer,
    CompareRun,
    CompareRunPage,
    RunStatus,
    RunVote,
)
from mmstudio.domain.chat.leaderboard import Vote
from mmstudio.errors import NotFound, StudioError
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import CompareAnswerRow, CompareRunRow, VoteRow

log = logging.getLogger(__name__)

_UNFINISHED = ("pending", "streaming")


def _finite(value: float | None) -> float | None:
    # SQLite turns NaN into NULL anyway; PostgreSQL would store it and JSON cannot carry it.
    return value if value is not None and math.isfinite(value) else None


def _answer(row: CompareAnswerRow) -> CompareAnswer:
    status: AnswerStatus = row.status  # type: ignore[assignment]  # written only from AnswerStatus
    return CompareAnswer(
        id=row.id,
        run_id=row.run_id,
        side=row.side,
        model=row.model,
        status=status,
        text=row.text,
        model_used=row.model_used,
        error=row.error,
        latency_ms=row.latency_ms,
        ttft_ms=row.ttft_ms,
        output_tokens=row.output_tokens,
    )


def _run(row: CompareRunRow, answers: list[CompareAnswer], vote: VoteRow | None) -> CompareRun:
    status: RunStatus = row.status  # type: ignore[assignment]  # written only from RunStatus
    return CompareRun(
        id=row.id,
        prompt=row.prompt,
        models=tuple(row.models),
        status=status,
        created_at=utc(row.created_at),
        answers=sorted(answers, key=lambda a: a.side),
        vote=RunVote(vote.winner, utc(vote.created_at)) if vote is not None else None,
    )


class CompareRepository:
    """The `compare_runs`, `compare_answers` and `votes` tables."""

    def __init__(self, sessions: async_sessionmaker[Any], dialect: str) -> None:
        self._sessions = sessions
        self._dialect = dialect

    async def create_run(self, prompt: str, models: Sequence[str]) -> CompareRun:
        run = CompareRunRow(
            id=str(uuid.uuid4()), prompt=prompt, models=list(models), status="running", created_at=utc_now()
        )
        answers = [
            CompareAnswerRow(
                id=str(uuid.uuid4()), run_id=run.id, side=side, model=model, text="", status="pending"
            )
            for side, model in enumerate(models)
        ]
        async with self._sessions() as session, session.begin():
            session.add(run)
            await session.flush()  # the run first: the answers' foreign key points at it
            session.add_all(answers)
        return _run(run, [_answer(a) for a in answers], None)

    async def save_answer(self, answer: CompareAnswer) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(CompareAnswerRow)
                .where(CompareAnswerRow.id == answer.id)
                .values(
                    status=answer.status,
                    text=answer.text,
                    model_used=answer.model_used,
                    error=answer.error,
                    latency_ms=_finite(answer.latency_ms),
                    ttft_ms=_finite(answer.ttft_ms),
                    output_tokens=answer.output_tokens,
                )
            )

    async def finish_run(self, run_id: str, status: RunStatus) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(CompareRunRow).where(CompareRunRow.id == run_id).values(status=status)
            )

    async def get_run(self, run_id: str) -> CompareRun:
        async with self._sessions() as session:
            row = await session.get(CompareRunRow, run_id)
            if row is None:
                raise NotFound(f"no compare run with id {run_id!r}")
            answers = (
                await session.scalars(select(CompareAnswerRow).where(CompareAnswerRow.run_id == run_id))
            ).all()
            vote = await session.get(VoteRow, run_id)
        return _run(row, [_answer(a) for a in answers], vote)

    async def list_runs(self, *, limit: int, offset: int) -> CompareRunPage:
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(CompareRunRow)) or 0
            rows = (
                await session.scalars(
                    select(CompareRunRow)
                    .order_by(CompareRunRow.created_at.desc(), CompareRunRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
            ids = [r.id for r in rows]
            answers: dict[str, list[CompareAnswer]] = {i: [] for i in ids}
            votes: dict[str, VoteRow] = {}
            if ids:
                for a in await session.scalars(
                    select(CompareAnswerRow).where(CompareAnswerRow.run_id.in_(ids))
                ):
                    answers[a.run_id].append(_answer(a))
                for v in await session.scalars(select(VoteRow).where(VoteRow.run_id.in_(ids))):
                    votes[v.run_id] = v
        items = [_run(r, answers[r.id], votes.get(r.id)) for r in rows]
        return CompareRunPage(items=items, total=total, limit=limit, offset=offset)

    async def set_vote(self, run_id: str, winner: str) -> RunVote:
        created = utc_now()
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        # One statement, so two votes racing on the same run cannot both insert.
        statement = insert(VoteRow).values(run_id=run_id, winner=winner, created_at=created)
        statement = statement.on_conflict_do_update(
            index_elements=[VoteRow.run_id], set_={"winner": winner, "created_at": created}
        )
        async with self._sessions() as session, session.begin():
            if await session.get(CompareRunRow, run_id) is None:
                raise NotFound(f"no compare run with id {run_id!r}")
            await session.execute(statement)
        return RunVote(winner, created)

    async def votes(self) -> list[Vote]:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(VoteRow.run_id, VoteRow.winner, CompareRunRow.models).join(
                        CompareRunRow, CompareRunRow.id == VoteRow.run_id
                    )
                )
            ).all()
        votes: list[Vote] = []
        for run_id, winner, models in rows:
            try:
                votes.append(Vote(tuple(models), winner))
            except StudioError as exc:  # only a hand-edited row can get here: skip it, keep the board
                log.warning("ignoring the stored vote on compare run %s: %s", run_id, exc)
        return votes

    async def interrupt_unfinished(self, reason: str) -> int:
        async with self._sessions() as session, session.begin():
            running = (
                await session.scalars(select(CompareRunRow.id).where(CompareRunRow.status == "running"))
            ).all()
            if not running:
                return 0
            await session.execute(
                update(CompareAnswerRow)
                .where(CompareAnswerRow.run_id.in_(running), CompareAnswerRow.status.in_(_UNFINISHED))
                .values(status="interrupted", error=reason)
            )
            await session.execute(
                update(CompareRunRow).where(CompareRunRow.id.in_(running)).values(status="interrupted")
            )
        return len(running)
