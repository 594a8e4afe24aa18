"""The compare page's server-rendered pieces: model picker, finished answers, recent runs, leaderboard.

Fragments under /api/ui/compare (so gateway keys protect them like any API route). The answers
themselves stream from /api/chat/ui/compare; these render what needs the server: the models with
their health, Markdown of finished answers, and the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from mmstudio.domain.chat.compare import CompareService
from mmstudio.domain.chat.leaderboard import BOTH_BAD, MAX_MODELS, MIN_MODELS, TIE
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import PROBE_TIMEOUT, STALE_SECONDS, chat_views, grouped
from mmstudio.web.ui.templating import render

router = APIRouter(prefix="/api/ui/compare", include_in_schema=False)

RECENT_RUNS = 8


@dataclass(frozen=True)
class RecentRun:
    id: str
    prompt: str
    created_at: datetime
    status: str
    finished: bool
    models: list[str]  # display names, by side
    verdict: str | None  # the vote in words


def _names(studio: Any) -> dict[str, str]:
    """Model id → display name; a run may name a model that is gone since, which keeps its id."""
    return {v.entry.id: v.entry.display_name for v in studio.registry.views()}


def verdict(winner: str | None, names: dict[str, str]) -> str | None:
    if winner is None:
        return None
    if winner == TIE:
        return "Tie"
    if winner == BOTH_BAD:
        return "Both bad"
    return f"{names.get(winner, winner)} won"


async def _probe_stale(studio: Any) -> None:
    """Check engines whose health is old, at once and briefly, so the picker's dots are current."""
    now = datetime.now(UTC)
    stale = {
        v.endpoint.id: v.endpoint
        for v in chat_views(studio)
        if v.endpoint.enabled
        and (v.health.last_checked is None or (now - v.health.last_checked).total_seconds() >= STALE_SECONDS)
    }

    async def probe(endpoint: Any) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(studio.registry.health.check(endpoint), PROBE_TIMEOUT)

    await asyncio.gather(*(probe(e) for e in stale.values()))


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request, studio: StudioDep) -> HTMLResponse:
    """Checkboxes for the chat models, grouped by provider, local first, with health."""
    await _probe_stale(studio)
    groups = grouped(chat_views(studio))
    # Providers with no usable model (a cloud without its key, an engine that is down) are folded
    # away: a catalogue of greyed-out names would bury the few models that can answer.
    return render(
        request,
        "partials/compare_models.html",
        groups=[g for g in groups if any(v.available for v in g.views)],
        unusable=[g for g in groups if not any(v.available for v in g.views)],
        min_models=MIN_MODELS,
        max_models=MAX_MODELS,
    )


@router.get("/runs/{run_id}/answers", response_class=HTMLResponse)
async def answers(
    request: Request, run_id: str, studio: StudioDep, side: Annotated[int | None, Query()] = None
) -> HTMLResponse:
    """A run's answers as rendered Markdown, one <template data-side> each (or only `side`)."""
    service: CompareService = studio.compare
    run = await service.get(run_id)
    chosen = [a for a in run.answers if side is None or a.side == side]
    return render(request, "partials/compare_answers.html", answers=chosen)


@router.get("/runs", response_class=HTMLResponse)
async def runs(request: Request, studio: StudioDep) -> HTMLResponse:
    service: CompareService = studio.compare
    page = await service.list_runs(limit=RECENT_RUNS)
    names = _names(studio)
    items = [
        RecentRun(
            id=r.id,
            prompt=r.prompt,
            created_at=r.created_at,
            status=r.status,
            finished=r.finished,
            models=[names.get(m, m) for m in r.models],
            verdict=verdict(r.vote.winner if r.vote else None, names),
        )
        for r in page.items
    ]
    return render(request, "partials/compare_runs.html", runs=items, total=page.total)


@router.get("/leaderboard", response_class=HTMLResponse)
async def leaderboard(request: Request, studio: StudioDep) -> HTMLResponse:
    service: CompareService = studio.compare
    board = await service.leaderboard()
    return render(
        request,
        "partials/compare_leaderboard.html",
        standings=board.standings,
        total_votes=board.total_votes,
        names=_names(studio),
    )
