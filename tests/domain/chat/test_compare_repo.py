"""The compare repository on SQLite and PostgreSQL: runs, answers, votes, recovery after a crash."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mmstudio.domain.chat.compare import CompareAnswer
from mmstudio.domain.chat.leaderboard import BOTH_BAD, TIE, Vote
from mmstudio.errors import NotFound
from mmstudio.storage.compare_repo import CompareRepository
from mmstudio.storage.db import session_factory

A, B, C = "ollama/llama3.2:latest", "lmstudio/gemma-2-2b-it", "openai/gpt-4o"


@pytest.fixture
def repo(engine: Any) -> CompareRepository:
    return CompareRepository(session_factory(engine), engine.dialect.name)


async def test_a_run_is_stored_with_one_pending_answer_per_side(repo: CompareRepository) -> None:
    run = await repo.create_run("Why is the sky blue?", [A, B, C])
    assert run.status == "running" and run.models == (A, B, C) and run.vote is None
    assert [(a.side, a.model, a.status, a.text) for a in run.answers] == [
        (0, A, "pending", ""),
        (1, B, "pending", ""),
        (2, C, "pending", ""),
    ]
    stored = await repo.get_run(run.id)
    assert stored == run
    assert stored.created_at.tzinfo is not None and not stored.finished


async def test_finished_answers_keep_text_error_and_timings(repo: CompareRepository) -> None:
    run = await repo.create_run("Hi", [A, B])
    first, second = run.answers
    await repo.save_answer(
        replace(
            first,
            status="complete",
            text="Hello there.",
            model_used=A,
            latency_ms=123.4,
            ttft_ms=12.5,
            output_tokens=7,
            finish_reason="stop",
        )
    )
    await repo.save_answer(
        replace(second, status="error", text="Partial", error="cut off", latency_ms=float("nan"))
    )
    await repo.finish_run(run.id, "complete")
    stored = await repo.get_run(run.id)
    assert stored.status == "complete" and stored.finished
    done, failed = stored.answers
    assert (done.status, done.text, done.model_used, done.latency_ms, done.ttft_ms, done.output_tokens) == (
        "complete",
        "Hello there.",
        A,
        123.4,
        12.5,
        7,
    )
    assert done.finish_reason is None  # not stored: only the live event carries it
    assert (failed.status, failed.text, failed.error, failed.latency_ms) == (
        "error",
        "Partial",
        "cut off",
        None,
    )


async def test_unknown_runs_are_not_found(repo: CompareRepository) -> None:
    with pytest.raises(NotFound, match="no compare run with id 'nope'"):
        await repo.get_run("nope")
    with pytest.raises(NotFound, match="nope"):
        await repo.set_vote("nope", TIE)


async def test_runs_are_listed_newest_first_with_answers_and_votes(repo: CompareRepository) -> None:
    ids = [(await repo.create_run(f"prompt {n}", [A, B])).id for n in range(5)]
    await repo.set_vote(ids[3], B)
    page = await repo.list_runs(limit=2, offset=1)
    assert page.total == 5 and page.limit == 2 and page.offset == 1
    assert [r.id for r in page.items] == [ids[3], ids[2]]
    assert page.items[0].vote is not None and page.items[0].vote.winner == B
    assert page.items[1].vote is None
    assert [a.model for a in page.items[0].answers] == [A, B]
    assert [r.id for r in (await repo.list_runs(limit=10, offset=0)).items] == ids[::-1]
    assert (await repo.list_runs(limit=10, offset=5)).items == []


async def test_voting_again_replaces_the_vote(repo: CompareRepository) -> None:
    run = await repo.create_run("Hi", [A, B])
    first = await repo.set_vote(run.id, A)
    second = await repo.set_vote(run.id, BOTH_BAD)
    stored = await repo.get_run(run.id)
    assert stored.vote == second and second.winner == BOTH_BAD and second.created_at >= first.created_at
    assert await repo.votes() == [Vote((A, B), BOTH_BAD)]


async def test_votes_come_with_their_runs_models(repo: CompareRepository) -> None:
    one = await repo.create_run("x", [A, B])
    two = await repo.create_run("y", [C, A, B])
    await repo.create_run("not voted", [A, C])
    await repo.set_vote(one.id, B)
    await repo.set_vote(two.id, TIE)
    assert sorted(await repo.votes(), key=lambda v: len(v.models)) == [Vote((A, B), B), Vote((C, A, B), TIE)]


async def test_runs_left_running_by_a_crash_become_interrupted(repo: CompareRepository) -> None:
    crashed = await repo.create_run("x", [A, B])
    side: CompareAnswer = replace(crashed.answers[0], status="complete", text="Done.")
    await repo.save_answer(side)
    await repo.save_answer(replace(crashed.answers[1], status="streaming", text="Half"))
    finished = await repo.create_run("y", [A, B])
    await repo.finish_run(finished.id, "complete")
    assert await repo.interrupt_unfinished("the studio stopped") == 1
    stored = await repo.get_run(crashed.id)
    assert stored.status == "interrupted" and stored.finished
    assert [(a.status, a.text, a.error) for a in stored.answers] == [
        ("complete", "Done.", None),
        ("interrupted", "Half", "the studio stopped"),
    ]
    assert (await repo.get_run(finished.id)).status == "complete"
    assert await repo.interrupt_unfinished("again") == 0
