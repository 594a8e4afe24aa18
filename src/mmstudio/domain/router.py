"""The router: every generation request goes to the model the user chose and, when it fails, to
the next candidate of its plan, without the caller noticing.

- Per attempt: a timeout (the model's, else local 30 s / cloud 60 s), capped by the request's
  deadline. Streams: the same timeout to the first event and between events.
- Retryable failures (timeouts, connection errors, 5xx, 429, broken streams) are retried on the
  same model with exponential backoff and jitter, honouring `Retry-After` (a longer wait than
  `max_retry_after` moves on to the next model instead). Other failures move on at once; a
  request the upstream calls malformed (400) is returned to the caller as it is.
- A circuit breaker per model skips models that keep failing (see breaker.py).
- Streams fail over mid-answer: the next candidate is asked to continue the partial text, so the
  client sees one stream. With no candidate left the stream ends with an error event, never with
  a clean finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from mmstudio.config import RateLimit, StudioConfig
from mmstudio.domain.breaker import CircuitBreaker
from mmstudio.domain.continuation import OverlapTrimmer, continuation_request
from mmstudio.domain.plan import Candidate, Needs, Plan, Planner, check_messages
from mmstudio.domain.registry import ModelRegistry, Resolved
from mmstudio.domain.types import Outcome, RequestRecord
from mmstudio.errors import (
    AllModelsFailed,
    BadRequest,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StudioError,
)
from mmstudio.providers.base import ChatRequest, ChatResponse, StreamEvent, Usage

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures that say something about the request, not the model's health: no breaker count.
REQUEST_KINDS = frozenset({"bad_request", "context_too_long", "content_filtered"})


class Limiter(Protocol):
    """Rate limits per gateway key and per model (domain/ratelimit.py). `check_*` raise RateLimited."""

    async def check_key(self, key_id: str | None, limit: RateLimit | None) -> None: ...

    async def check_model(self, model_id: str) -> None: ...

    async def count_tokens(
        self, key_id: str | None, key_limit: RateLimit | None, model_id: str, tokens: int
    ) -> None: ...


class MetricsSink(Protocol):
    def record(self, record: RequestRecord) -> None: ...


class AttemptObserver(Protocol):
    """Told what the router does while it does it (Creator Studio shows it as progress). Called
    synchronously on the event loop: keep it quick and never raise."""

    def planned(self, plan: Plan) -> None:
        """The candidates, in order, and the models skipped (offline, no key, cooling down)."""
        ...

    def trying(self, candidate: Candidate, number: int) -> None:
        """Attempt `number` (1-based, over the whole request) is starting on `candidate`."""
        ...

    def failed(self, candidate: Candidate, attempt: Attempt) -> None: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    model: str
    provider: str
    outcome: Literal["ok", "error"]
    latency_ms: float
    error: str | None = None
    kind: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "provider": self.provider,
            "outcome": self.outcome,
            "error": self.error,
            "kind": self.kind,
            "latencyMs": self.latency_ms,
        }


@dataclass
class RouteInfo:
    """What happened to one routed request; filled in while it runs."""

    request_id: str
    requested: str | None
    plan: Plan | None = None
    attempts: list[Attempt] = field(default_factory=list)
    resolved: Resolved | None = None  # the model answering now (or that answered)
    started: float = field(default_factory=time.perf_counter)
    first_token_ms: float | None = None
    latency_ms: float | None = None
    usage: Usage | None = None
    fallback: bool = False  # a model other than the first candidate answered
    outcome: Outcome | None = None
    error: StudioError | None = None
    observer: AttemptObserver | None = None

    @property
    def model_used(self) -> str | None:
        return self.resolved.entry.id if self.resolved else None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return list(self.plan.skipped) if self.plan else []

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000.0, 2)


@dataclass(frozen=True, slots=True)
class Routed:
    response: ChatResponse
    info: RouteInfo


@dataclass(frozen=True, slots=True)
class RouteOptions:
    fallbacks: bool = True  # False: only the selected model (its own retries still apply)
    route: str = "gateway"  # for metrics: gateway, studio, chat, codegen
    key_id: str | None = None  # the gateway key (None: keys are off)
    key_limit: RateLimit | None = None  # the key's own limits, else the configured per-key ones
    request_id: str | None = None
    # The fallback chain after the selected model and its own fallbacks; None: the default chain
    # (config `fallback_chain`, else local models then cloud). Creator Studio passes its own.
    chain: tuple[str, ...] | None = None
    observer: AttemptObserver | None = None


class Router:
    def __init__(
        self,
        registry: ModelRegistry,
        config: StudioConfig,
        *,
        breaker: CircuitBreaker | None = None,
        limiter: Limiter | None = None,
        metrics: MetricsSink | None = None,
        on_success: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.config = config
        self.routing = config.routing
        self.breaker = breaker or CircuitBreaker(
            self.routing.breaker_failures, self.routing.breaker_cooldown, clock
        )
        self.planner = Planner(registry, config, self.breaker)
        self.limiter = limiter
        self.metrics = metrics
        self._on_success = on_success
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._background: set[asyncio.Task[Any]] = set()

    # -- public ---------------------------------------------------------------------------------

    def plan(self, request: ChatRequest, options: RouteOptions = RouteOptions()) -> Plan:
        plan = self.planner.plan(
            request.model or None, Needs.of(request), fallbacks=options.fallbacks, chain=options.chain
        )
        if options.observer is not None:
            options.observer.planned(plan)
        return plan

    async def chat(self, request: ChatRequest, options: RouteOptions = RouteOptions()) -> Routed:
        """Answer `request` (its `model` is the caller's reference; empty means the default)."""
        info = RouteInfo(
            options.request_id or new_request_id(), request.model or None, observer=options.observer
        )
        try:
            check_messages(request)
            info.plan = self.plan(request, options)
            await self.admit_key(options)
            response = await self._chat(request, info)
        except StudioError as exc:
            self._finish(info, options, stream=False, error=exc)
            raise
        except BaseException:
            self._finish(info, options, stream=False, cancelled=True)
            raise
        info.usage = response.usage
        self._finish(info, options, stream=False)
        return Routed(response, info)

    async def admit_key(self, options: RouteOptions) -> None:
        if self.limiter is not None:
            await self.limiter.check_key(options.key_id, options.key_limit)

    def stream(self, request: ChatRequest, options: RouteOptions = RouteOptions()) -> RoutedStream:
        return RoutedStream(self, request, options)

    async def drain(self) -> None:
        """Wait for background bookkeeping (session counts) to finish."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- non-streaming --------------------------------------------------------------------------

    async def _chat(self, request: ChatRequest, info: RouteInfo) -> ChatResponse:
        adapters = self.registry.adapter

        async def call(candidate: Candidate) -> ChatResponse:
            upstream = replace(request, model=candidate.resolved.entry.upstream)
            return await adapters(candidate.resolved.endpoint).chat(upstream)

        return await self.attempts(info, call)

    async def attempts(
        self,
        info: RouteInfo,
        call: Callable[[Candidate], Awaitable[T]],
        *,
        final: tuple[type[ProviderError], ...] = (BadRequest,),
    ) -> T:
        """Try `info.plan`'s candidates in order with `call`: per-attempt timeouts, retries with backoff on
        retryable failures, the breaker and the model limits, every attempt recorded in `info`. A failure
        of a `final` type ends the request at once (the request itself is wrong, or a refusal that
        another model should not be asked to overrule). Chat and image generation both run through it."""
        assert info.plan is not None
        deadline = self._clock() + self.routing.deadline
        last: ProviderError | None = None
        limited: RateLimited | None = None
        for index, candidate in enumerate(info.plan.candidates):
            admitted, refused = await self._admit_or_skip(info, candidate)
            limited = refused or limited
            if not admitted:
                continue
            tries = 0
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise self._all_failed(info, last, deadline_hit=True)
                timeout = min(candidate.timeout, remaining)
                _tell_trying(info, candidate)
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        response = await call(candidate)
                except TimeoutError:
                    error: ProviderError = _timeout(candidate, timeout)
                except ProviderError as exc:
                    error = exc
                except BaseException:
                    self.breaker.release(candidate.model_id)
                    raise
                else:
                    self._attempt_ok(info, candidate, started, index)
                    return response
                last = error
                self._attempt_failed(info, candidate, started, error)
                if isinstance(error, final):
                    raise error
                if not await self._retry_same(candidate, error, tries, deadline):
                    break
                tries += 1
        if last is None and limited is not None:
            raise limited
        raise self._all_failed(info, last)

    # -- shared pieces --------------------------------------------------------------------------

    async def _admit(self, candidate: Candidate) -> None:
        if not self.breaker.acquire(candidate.model_id):
            raise _Skip("cooling down after repeated failures")
        if self.limiter is not None:
            try:
                await self.limiter.check_model(candidate.model_id)
            except RateLimited:
                self.breaker.release(candidate.model_id)
                raise

    async def _admit_or_skip(self, info: RouteInfo, candidate: Candidate) -> tuple[bool, RateLimited | None]:
        """Whether `candidate` may be tried now; a refusal is recorded in the plan's skips."""
        assert info.plan is not None
        try:
            await self._admit(candidate)
        except RateLimited as exc:
            info.plan = _with_skip(info.plan, candidate.model_id, exc.message)
            return False, exc
        except _Skip as skip:
            info.plan = _with_skip(info.plan, candidate.model_id, skip.reason)
            return False, None
        return True, None

    async def _retry_same(
        self, candidate: Candidate, error: ProviderError, tries: int, deadline: float
    ) -> bool:
        """Wait before trying `candidate` again, or say to move on (not retryable, out of retries, a
        wait past the deadline or `max_retry_after`, or the breaker opened meanwhile)."""
        delay = self._retry_delay(error, tries, deadline)
        if delay is None:
            return False
        await self._sleep(delay)
        return self.breaker.acquire(candidate.model_id)

    def _attempt_ok(self, info: RouteInfo, candidate: Candidate, started: float, index: int) -> None:
        latency = round((time.perf_counter() - started) * 1000.0, 2)
        info.attempts.append(Attempt(candidate.model_id, candidate.resolved.entry.provider_id, "ok", latency))
        info.resolved = candidate.resolved
        info.fallback = index > 0
        self.breaker.success(candidate.model_id)

    def _attempt_failed(
        self, info: RouteInfo, candidate: Candidate, started: float, error: ProviderError
    ) -> None:
        latency = round((time.perf_counter() - started) * 1000.0, 2)
        attempt = Attempt(
            candidate.model_id,
            candidate.resolved.entry.provider_id,
            "error",
            latency,
            error.message,
            error.kind,
        )
        info.attempts.append(attempt)
        if info.observer is not None:
            info.observer.failed(candidate, attempt)
        if error.kind in REQUEST_KINDS:
            self.breaker.release(candidate.model_id)
        else:
            self.breaker.failure(candidate.model_id)
        log.info("attempt on %s failed (%s): %s", candidate.model_id, error.kind, error.message[:200])

    def _retry_delay(self, error: ProviderError, tries: int, deadline: float) -> float | None:
        """Seconds to wait before trying the same model again, or None to move on."""
        if not error.retryable or tries >= self.routing.retries:
            return None
        if error.retry_after is not None:
            delay = error.retry_after
            if delay > self.routing.max_retry_after:
                return None
        else:
            ceiling = min(self.routing.backoff_max, self.routing.backoff_base * (2**tries))
            delay = ceiling / 2 + self._jitter() * ceiling / 2  # "equal jitter"
        if self._clock() + delay >= deadline:
            return None
        return delay

    def _all_failed(
        self, info: RouteInfo, last: ProviderError | None, *, deadline_hit: bool = False
    ) -> ProviderError:
        attempts = [a.as_dict() for a in info.attempts]
        tried = "; ".join(f"{a.model}: {a.error}" for a in info.attempts if a.outcome == "error")
        if deadline_hit:
            cause = ProviderTimeout(
                f"The request's deadline of {self.routing.deadline:g} s passed after "
                f"{len(info.attempts)} attempt(s). {tried}".strip(),
                provider=last.provider if last else "",
            )
            return AllModelsFailed(cause.message, last=cause, attempts=attempts)
        if last is None:  # every candidate was skipped at the last moment
            last = ProviderError("no model could be tried: " + "; ".join(f"{m} {r}" for m, r in info.skipped))
        if len(info.attempts) == 1:
            return AllModelsFailed(last.message, last=last, attempts=attempts)
        return AllModelsFailed(
            f"All {len(info.attempts)} attempts failed. {tried}".strip(), last=last, attempts=attempts
        )

    def finish(
        self,
        info: RouteInfo,
        options: RouteOptions,
        *,
        error: StudioError | None = None,
        cancelled: bool = False,
    ) -> None:
        """Close a request run through `attempts` by another service (images): its session count and
        its metrics record, exactly as a chat request's."""
        self._finish(info, options, stream=False, error=error, cancelled=cancelled)

    def _finish(
        self,
        info: RouteInfo,
        options: RouteOptions,
        *,
        stream: bool,
        error: StudioError | None = None,
        cancelled: bool = False,
    ) -> None:
        info.latency_ms = info.elapsed_ms()
        if cancelled:
            info.outcome = "cancelled"
        elif error is not None:
            info.outcome = "rejected" if isinstance(error, RateLimited) else "error"
            info.error = error
        else:
            info.outcome = "ok"
        if info.outcome == "ok" and info.model_used is not None:
            if self._on_success is not None:
                self._on_success(info.model_used)  # in memory; written in batches
            usage = info.usage
            if self.limiter is not None and usage is not None and usage.total_tokens:
                self._spawn(
                    self.limiter.count_tokens(
                        options.key_id, options.key_limit, info.model_used, usage.total_tokens
                    )
                )
        if self.metrics is not None:
            self.metrics.record(self._record(info, options, stream))

    def _record(self, info: RouteInfo, options: RouteOptions, stream: bool) -> RequestRecord:
        usage = info.usage or Usage()
        entry = info.resolved.entry if info.resolved else None
        latency = info.latency_ms or 0.0
        tps = None
        if usage.output_tokens and latency:
            generating = latency - (info.first_token_ms or 0.0) if stream else latency
            tps = round(usage.output_tokens / max(generating, 1.0) * 1000.0, 2)
        cost = None
        if entry is not None and entry.input_price is not None and entry.output_price is not None:
            cost = (usage.input_tokens * entry.input_price + usage.output_tokens * entry.output_price) / 1e6
        status = 200
        error_kind = None
        if info.error is not None:
            status = _status_of(info.error)
            error_kind = (
                info.error.kind if isinstance(info.error, ProviderError) else type(info.error).__name__
            )
        elif info.outcome == "cancelled":
            status = 499
        return RequestRecord(
            request_id=info.request_id,
            created_at=datetime.now(UTC),
            route=options.route,
            outcome=info.outcome or "error",
            status_code=status,
            latency_ms=latency,
            model_requested=info.requested,
            model_used=info.model_used,
            provider=entry.provider_id if entry else None,
            key_id=options.key_id,
            attempts=len(info.attempts),
            fallback=info.fallback,
            error_kind=error_kind,
            stream=stream,
            ttft_ms=info.first_token_ms,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tokens_per_second=tps,
            cost_usd=cost,
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("bookkeeping after a request failed")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class RoutedStream:
    """A routed stream. `await start()` waits for the first event (so the caller can still answer
    with an HTTP error, or set headers naming the model); then iterate for `StreamEvent`s.
    `info` is live: `info.resolved` is the model producing the text right now."""

    def __init__(self, router: Router, request: ChatRequest, options: RouteOptions) -> None:
        self.router = router
        self.request = request
        self.options = options
        self.info = RouteInfo(
            options.request_id or new_request_id(), request.model or None, observer=options.observer
        )
        self._events = self._run()
        self._first: StreamEvent | None = None
        self._started = False
        self._finished = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            check_messages(self.request)
            self.info.plan = self.router.plan(self.request, self.options)
            await self.router.admit_key(self.options)
        except StudioError as exc:
            self._done(error=exc)
            raise
        try:
            self._first = await anext(self._events)
        except StopAsyncIteration:
            self._first = None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        await self.start()
        if self._first is None:
            return
        first, self._first = self._first, None
        yield first
        async for event in self._events:
            yield event

    async def aclose(self) -> None:
        """Stop the generation (the client went away, or Stop was pressed)."""
        await self._events.aclose()
        if not self._finished:
            self._done(cancelled=True)

    def _done(self, *, error: StudioError | None = None, cancelled: bool = False) -> None:
        if not self._finished:
            self._finished = True
            self.router._finish(self.info, self.options, stream=True, error=error, cancelled=cancelled)

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        router, info = self.router, self.info
        assert info.plan is not None
        routing = router.routing
        deadline = router._clock() + routing.deadline
        sent = ""  # text the client has seen
        sent_tool_call = False
        last: ProviderError | None = None
        limited: RateLimited | None = None
        try:
            for index, candidate in enumerate(info.plan.candidates):
                admitted, refused = await router._admit_or_skip(info, candidate)
                limited = refused or limited
                if not admitted:
                    continue
                adapter = router.registry.adapter(candidate.resolved.endpoint)
                tries = 0
                while True:
                    remaining = deadline - router._clock()
                    if remaining <= 0 and not sent:
                        raise router._all_failed(info, last, deadline_hit=True)
                    timeout = min(candidate.timeout, remaining) if not sent else candidate.timeout
                    base = replace(self.request, model=candidate.resolved.entry.upstream)
                    upstream = continuation_request(base, sent) if sent else base
                    trimmer = OverlapTrimmer(sent)
                    _tell_trying(info, candidate)
                    started = time.perf_counter()
                    iterator = adapter.stream(upstream).__aiter__()
                    usage: Usage | None = None
                    try:
                        while True:
                            try:
                                async with asyncio.timeout(timeout):
                                    event = await anext(iterator)
                            except StopAsyncIteration:
                                break
                            except TimeoutError:
                                raise _timeout(candidate, timeout) from None
                            if event.type == "text":
                                shown = trimmer.feed(event.text)
                                if not shown:
                                    continue
                                event = replace(event, text=shown)
                                if info.first_token_ms is None:
                                    info.first_token_ms = info.elapsed_ms()
                                if info.resolved is not candidate.resolved:
                                    info.resolved = candidate.resolved
                                sent += shown
                            elif event.type == "tool_call":
                                sent_tool_call = True
                                info.resolved = candidate.resolved
                                if info.first_token_ms is None:
                                    info.first_token_ms = info.elapsed_ms()
                            elif event.type == "usage":
                                usage = event.usage
                                continue  # sent once, with the finish
                            elif event.type == "finish":
                                rest = trimmer.finish()
                                if rest:
                                    sent += rest
                                    yield StreamEvent("text", text=rest)
                                router._attempt_ok(info, candidate, started, index)
                                info.usage = usage
                                if usage is not None:
                                    yield StreamEvent("usage", usage=usage)
                                self._done()
                                yield event
                                return
                            yield event
                        raise ProviderError(
                            "the stream ended without finishing",
                            provider=candidate.resolved.entry.provider_id,
                        )
                    except ProviderError as exc:
                        error = exc
                    except BaseException:
                        router.breaker.release(candidate.model_id)
                        raise
                    finally:
                        await _close(iterator)
                    last = error
                    router._attempt_failed(info, candidate, started, error)
                    if sent_tool_call:
                        break  # a half-sent tool call cannot be continued by another model
                    if isinstance(error, BadRequest) and not sent:
                        raise error
                    if not await router._retry_same(candidate, error, tries, deadline):
                        break
                    tries += 1
                if sent_tool_call:
                    break
            if not sent and not sent_tool_call:
                if last is None and limited is not None:
                    raise limited
                raise router._all_failed(info, last)
            failure = router._all_failed(info, last)
            self._done(error=failure)
            yield StreamEvent("error", error=_stream_failure_message(failure, sent))
        except StudioError as exc:
            self._done(error=exc)
            raise


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _tell_trying(info: RouteInfo, candidate: Candidate) -> None:
    if info.observer is not None:
        info.observer.trying(candidate, len(info.attempts) + 1)


def _with_skip(plan: Plan, model_id: str, reason: str) -> Plan:
    return replace(plan, skipped=(*plan.skipped, (model_id, reason)))


def _timeout(candidate: Candidate, timeout: float) -> ProviderTimeout:
    return ProviderTimeout(
        f"{candidate.model_id} did not answer within {timeout:g} s",
        provider=candidate.resolved.entry.provider_id,
        model=candidate.model_id,
    )


def _stream_failure_message(failure: ProviderError, sent: str) -> str:
    return (
        f"The answer was cut off after {len(sent)} characters and no other model could continue it. "
        f"{failure.message}"
    )


async def _close(iterator: AsyncIterator[StreamEvent]) -> None:
    """Close an adapter's stream so its HTTP connection goes back to the pool (or is dropped)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _status_of(error: StudioError) -> int:
    """The HTTP status the web layer answers this error with (web/errors.py), for metrics."""
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, ProviderError):
        cause = error.last if isinstance(error, AllModelsFailed) else error
        kind = cause.kind
        if kind in REQUEST_KINDS:
            return 400
        return {"rate_limited": 429, "timeout": 504}.get(kind, 502)
    if isinstance(error, (InvalidRequest, NotFound)):
        return 400
    return 503


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex
