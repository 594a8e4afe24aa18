"""The compare arena: one prompt, two to four models side by side, votes and a leaderboard.

A run is stored before any model is called (the run row and one `pending` answer per side), then
every side streams in its own task at the same time. The tasks belong to this service, not to the
HTTP response: a client that goes away only stops listening, and the answers are still finished
and stored. Listeners get the sides' events interleaved as they happen, each tagged with its side.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

from mmstudio.config import ChatConfig
from mmstudio.domain.broadcast import Broadcast
from mmstudio.domain.chat.leaderboard import MAX_MODELS, MIN_MODELS, Standing, Vote, rank
from mmstudio.domain.chat.types import FINAL_STATUSES
from mmstudio.domain.router import RouteInfo, RouteOptions, Router, new_request_id
from mmstudio.errors import InvalidRequest, StudioError
from mmstudio.providers.base import ChatRequest, Message

log = logging.getLogger(__name__)

AnswerStatus = Literal["pending", "streaming", "complete", "error", "interrupted"]
RunStatus = Literal["running", "complete", "interrupted"]
EventType = Literal["run", "start", "delta", "done", "error", "complete"]

MAX_PAGE = 100
INTERRUPTED = "the studio stopped before this answer finished"


@dataclass
class CompareAnswer:
    id: str
    run_id: str
    side: int  # 0-based position in the run's `models`
    model: str  # the model asked (never replaced by a fallback: an arena side is one model)
    status: AnswerStatus = "pending"
    text: str = ""  # partial text is kept when a side fails
    model_used: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None  # only known live (the `done` event); not stored

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class RunVote:
    winner: str  # one of the run's models, "tie" or "both_bad"
    created_at: datetime


@dataclass
class CompareRun:
    id: str
    prompt: str
    models: tuple[str, ...]
    status: RunStatus
    created_at: datetime
    answers: list[CompareAnswer]  # by side
    vote: RunVote | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running" and all(a.finished for a in self.answers)


@dataclass
class CompareRunPage:
    items: list[CompareRun]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class Leaderboard:
    standings: list[Standing]
    total_votes: int


@dataclass(frozen=True)
class CompareEvent:
    """One thing that happened in a run. `run`: the run as created; `start`, `done`, `error`: the
    side's answer at that moment; `delta`: a piece of a side's text; `complete`: the finished run."""

    type: EventType
    run_id: str
    side: int | None = None
    model: str | None = None
    text: str = ""
    answer: CompareAnswer | None = None
    run: CompareRun | None = None


class CompareStore(Protocol):
    """What the arena needs from storage (`mmstudio.storage.compare_repo.CompareRepository`).
    Unknown run ids raise `NotFound`."""

    async def create_run(self, prompt: str, models: Sequence[str]) -> CompareRun:
        """The run (`running`) and one `pending` answer per side, in one transaction."""
        ...

    async def save_answer(self, answer: CompareAnswer) -> None: ...

    async def finish_run(self, run_id: str, status: RunStatus) -> None: ...

    async def get_run(self, run_id: str) -> CompareRun: ...

    async def list_runs(self, *, limit: int, offset: int) -> CompareRunPage:
        """Newest first."""
        ...

    async def set_vote(self, run_id: str, winner: str) -> RunVote:
        """Record the run's vote, replacing an earlier one."""
        ...

    async def votes(self) -> list[Vote]:
        """Every stored vote with its run's models."""
        ...

    async def interrupt_unfinished(self, reason: str) -> int:
        """Mark `running` runs `interrupted` and their unfinished answers `interrupted` (partial text
        kept, `reason` as the error); returns how many runs."""
        ...


class _ActiveRun:
    """A run being answered in this process: live text per side, and the listeners to tell."""

    def __init__(self, run: CompareRun, options: RouteOptions) -> None:
        self.run = run
        self.options = options
        self.pieces: dict[int, list[str]] = {a.side: [] for a in run.answers}
        # A listener that arrives late (or reconnects) sees the run from its start.
        self.events: Broadcast[CompareEvent] = Broadcast(lambda e: e.type == "complete")
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def answer(self, side: int) -> CompareAnswer:
        return replace(self.run.answers[side], text="".join(self.pieces[side]))

    def snapshot(self) -> CompareRun:
        return replace(self.run, answers=[self.answer(a.side) for a in self.run.answers])

    def publish(self, event: CompareEvent) -> None:
        self.events.publish(event)

    def subscribe(self) -> AsyncIterator[CompareEvent]:
        return self.events.subscribe()


class CompareService:
    def __init__(self, store: CompareStore, router: Router, config: ChatConfig) -> None:
        self.store = store
        self.router = router
        self.config = config
        self._active: dict[str, _ActiveRun] = {}

    # -- runs ------------------------------------------------------------------------------------

    def check(self, prompt: str, models: Sequence[str]) -> list[str]:
        """The canonical ids of `models` (ids, names or aliases), or `InvalidRequest`/`ModelNotFound`
        saying what is wrong with the request."""
        if not prompt.strip():
            raise InvalidRequest("the prompt is empty: write something for the models to answer", "prompt")
        if not MIN_MODELS <= len(models) <= MAX_MODELS:
            raise InvalidRequest(
                f"compare {MIN_MODELS} to {MAX_MODELS} models; got {len(models)}", field="models"
            )
        ids: list[str] = []
        for ref in models:
            if not ref.strip():
                raise InvalidRequest("a model id in `models` is empty", field="models")
            ids.append(self.router.registry.resolve(ref).entry.id)
        # Checked after resolving: "ollama/llama3.2" and its alias are the same contestant.
        duplicates = sorted(m for m, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise InvalidRequest(
                f"each model can take one side only; listed more than once: {', '.join(duplicates)}",
                field="models",
            )
        return ids

    async def start(
        self, prompt: str, models: Sequence[str], *, options: RouteOptions | None = None
    ) -> CompareRun:
        """Store the run, start every side, and return at once (the run as created). `options`
        carries the caller's gateway key for rate limits and metrics."""
        ids = self.check(prompt, models)
        run = await self.store.create_run(prompt, ids)
        active = _ActiveRun(run, options or RouteOptions(route="compare"))
        active.publish(CompareEvent("run", run.id, run=active.snapshot()))
        self._active[run.id] = active
        active.task = asyncio.create_task(self._drive(active), name=f"compare-{run.id}")
        return active.snapshot()

    def listen(self, run_id: str) -> AsyncIterator[CompareEvent]:
        """The run's events from its start: live while it runs here (subscribed as this returns, so
        call it right after `start`), else rebuilt from storage (`done` then lacks `finish_reason`)."""
        active = self._active.get(run_id)
        if active is not None:
            return active.subscribe()
        return self._stored_events(run_id)

    async def _stored_events(self, run_id: str) -> AsyncIterator[CompareEvent]:
        for event in _replay(await self.store.get_run(run_id)):
            yield event

    async def wait(self, run_id: str) -> CompareRun:
        """The run once every side has ended."""
        active = self._active.get(run_id)
        if active is not None:
            await active.done.wait()
        return await self.store.get_run(run_id)

    async def get(self, run_id: str) -> CompareRun:
        active = self._active.get(run_id)
        if active is not None:
            return active.snapshot()
        return await self.store.get_run(run_id)

    async def list_runs(self, *, limit: int = 20, offset: int = 0) -> CompareRunPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}; got {limit}", field="limit")
        if offset < 0:
            raise InvalidRequest(f"offset must be 0 or more; got {offset}", field="offset")
        page = await self.store.list_runs(limit=limit, offset=offset)
        page.items = [self._active[r.id].snapshot() if r.id in self._active else r for r in page.items]
        return page

    # -- votes -----------------------------------------------------------------------------------

    async def vote(self, run_id: str, winner: str) -> RunVote:
        """Record the verdict on a finished run (again: replaces the earlier one)."""
        run = await self.get(run_id)
        if run_id in self._active or not run.finished:
            raise InvalidRequest(
                "this run is still answering: wait until every answer is finished, then vote", field="winner"
            )
        Vote(run.models, winner)  # raises InvalidRequest listing the allowed winners
        return await self.store.set_vote(run_id, winner)

    async def leaderboard(self) -> Leaderboard:
        votes = await self.store.votes()
        return Leaderboard(rank(votes), len(votes))

    # -- lifecycle -------------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start-up: runs a previous process left unfinished become `interrupted`."""
        return await self.store.interrupt_unfinished(INTERRUPTED)

    async def close(self) -> None:
        """Stop every run in flight; their sides are stored `interrupted` with their partial text."""
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- running a run ---------------------------------------------------------------------------

    async def _drive(self, active: _ActiveRun) -> None:
        run = active.run
        status: RunStatus = "complete"
        try:
            results = await asyncio.gather(
                *(self._side(active, a) for a in run.answers), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    log.error("a compare side of run %s failed", run.id, exc_info=result)
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        finally:
            run.status = status
            try:
                await self.store.finish_run(run.id, status)
            except Exception:
                log.exception("could not store the end of compare run %s", run.id)
            finally:  # even when cancelled again while writing: listeners and waiters must end
                # Gone from the active runs before `complete` is told, so a vote sent on `complete`
                # is judged on the stored answers.
                self._active.pop(run.id, None)
                active.publish(CompareEvent("complete", run.id, run=active.snapshot()))
                active.done.set()

    async def _side(self, active: _ActiveRun, answer: CompareAnswer) -> None:
        run, side = active.run, answer.side
        request = ChatRequest(model=answer.model, messages=(Message.text("user", run.prompt),))
        # No fallbacks: a side must be answered by the model named on it, or show its error.
        options = replace(active.options, fallbacks=False, request_id=new_request_id())
        stream = self.router.stream(request, options)
        failure: str | None = None
        try:
            async with asyncio.timeout(self.config.compare_timeout_seconds):
                await stream.start()
                answer.status = "streaming"
                answer.model_used = stream.info.model_used or answer.model
                active.publish(CompareEvent("start", run.id, side, answer.model, answer=active.answer(side)))
                async for event in stream:
                    if event.type == "text" and event.text:
                        active.pieces[side].append(event.text)
                        active.publish(CompareEvent("delta", run.id, side, answer.model, text=event.text))
                    elif event.type == "usage" and event.usage is not None:
                        answer.output_tokens = event.usage.output_tokens
                    elif event.type == "finish":
                        answer.finish_reason = event.finish_reason
                    elif event.type == "error":
                        failure = event.error or "the answer failed"
        except TimeoutError:
            failure = (
                f"{answer.model} did not finish within {self.config.compare_timeout_seconds:g} s "
                "(chat.compare_timeout_seconds)"
            )
        except StudioError as exc:
            failure = exc.message
        except asyncio.CancelledError:
            answer.status, answer.error = "interrupted", INTERRUPTED
            raise
        except Exception as exc:  # one side's bug must not take the others down
            log.exception("compare side %s of run %s failed", side, run.id)
            failure = f"unexpected error ({type(exc).__name__}); see the server log"
        finally:
            try:
                await stream.aclose()
            except Exception:
                log.exception("closing compare side %s of run %s failed", side, run.id)
            finally:
                await self._end_side(active, answer, stream.info, failure)

    async def _end_side(
        self, active: _ActiveRun, answer: CompareAnswer, info: RouteInfo, failure: str | None
    ) -> None:
        if answer.status != "interrupted":
            answer.status = "error" if failure is not None else "complete"
            answer.error = failure
        answer.model_used = info.model_used or answer.model_used
        answer.latency_ms = info.latency_ms if info.latency_ms is not None else info.elapsed_ms()
        answer.ttft_ms = info.first_token_ms
        if answer.output_tokens is None and info.usage is not None:
            answer.output_tokens = info.usage.output_tokens
        final = active.answer(answer.side)
        try:
            await self.store.save_answer(final)
        finally:
            kind: EventType = "done" if final.status == "complete" else "error"
            active.publish(CompareEvent(kind, final.run_id, final.side, final.model, answer=final))


def _replay(run: CompareRun) -> list[CompareEvent]:
    """The events of a run no longer in flight here, rebuilt from what was stored."""
    events = [
        CompareEvent("run", run.id, run=replace(run, answers=[replace(a, text="") for a in run.answers]))
    ]
    for a in run.answers:
        if a.status == "pending":
            continue
        events.append(CompareEvent("start", run.id, a.side, a.model, answer=replace(a, text="")))
        if a.text:
            events.append(CompareEvent("delta", run.id, a.side, a.model, text=a.text))
        if a.finished:
            kind: EventType = "done" if a.status == "complete" else "error"
            events.append(CompareEvent(kind, run.id, a.side, a.model, answer=a))
    if run.finished:
        events.append(CompareEvent("complete", run.id, run=run))
    return events
