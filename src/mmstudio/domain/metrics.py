"""Request metrics: buffered in memory, written in batches off the request path, served as Prometheus
text and as aggregated series for charts.

The router calls `MetricsRecorder.record(record)` once per request. That call is synchronous and O(1):
it updates in-process Prometheus metrics and appends to a bounded in-memory buffer. A background task
(`start()`) writes the buffer to the `MetricsStore` in batches, whenever `batch_size` records are
waiting or every `flush_interval_seconds`, and prunes rows older than `retention_days`. `close()` writes
everything still buffered, so a clean shutdown loses nothing.

Overload protection: the buffer holds at most `BUFFER_LIMIT` records (plus one batch being written).
When the database cannot keep up (or is down) and the buffer is full, the *oldest* record is dropped
and counted in `mmstudio_metrics_dropped_records_total`: memory stays bounded and the most recent
history, the one a user is looking at, is kept.

The statistics types (`MetricsStats`, `StatsAccumulator`) live here beside the recorder that serves
them, which puts the module a little over 500 lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from mmstudio.config import MetricsConfig
from mmstudio.domain.types import RequestRecord
from mmstudio.errors import InvalidRequest

log = logging.getLogger(__name__)

BUFFER_LIMIT = 100_000
PRUNE_EVERY_SECONDS = 3600.0
CLOSE_TIMEOUT_SECONDS = 30.0
MAX_BUCKETS = 5000
NO_LABEL = "none"  # the Prometheus label value for a request that reached no model or provider

# Which model a request counts for in a summary: the one that answered (a request no model answered
# counts for None), or the one the caller asked for (None: the caller named none, so the default).
# "requested" is what attributes a failure, or a fallback away from a model, to that model.
GroupBy = Literal["used", "requested"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)

# LLM requests take from milliseconds (cached, local) to minutes (long generations).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


# -- aggregated statistics (what the store's read query returns) -------------------------------


@dataclass(frozen=True, slots=True)
class MetricsStats:
    """Aggregates over a set of requests.

    Latency percentiles cover successful requests only (a rejected request's ~0 ms or a failed one's
    timeout would say nothing about how fast the model answers). TTFT and tokens/s are means over the
    requests that reported them; cost sums the requests that had a price, `priced_requests` of them
    (0: no price is known, so the cost is unknown rather than free).
    """

    requests: int = 0
    ok: int = 0
    errors: int = 0
    rejected: int = 0
    cancelled: int = 0
    fallbacks: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    ttft_mean_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_per_second_mean: float | None = None
    cost_usd: float = 0.0
    priced_requests: int = 0


STAT_FIELDS = tuple(f.name for f in fields(MetricsStats))


@dataclass(frozen=True, slots=True)
class MetricsAggregate:
    """Statistics of one time window at four levels. Models are the ones requests count for (see
    `GroupBy`); `None` means the request reached no model (rejected, or every candidate failed) or,
    grouped by the model requested, that it named none. Bucket keys are bucket start times (UTC)."""

    total: MetricsStats = MetricsStats()
    by_model: Mapping[str | None, MetricsStats] = field(default_factory=dict)
    by_bucket: Mapping[datetime, MetricsStats] = field(default_factory=dict)
    by_model_bucket: Mapping[tuple[str | None, datetime], MetricsStats] = field(default_factory=dict)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks: PostgreSQL's `percentile_cont`, exactly."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(slots=True)
class StatsAccumulator:
    """Running sums for `MetricsStats`, for stores that aggregate in Python."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    rejected: int = 0
    cancelled: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced_requests: int = 0
    ttft_sum: float = 0.0
    ttft_count: int = 0
    tps_sum: float = 0.0
    tps_count: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))  # 8 bytes per request

    def add(
        self,
        *,
        outcome: str,
        fallback: bool,
        latency_ms: float,
        ttft_ms: float | None,
        input_tokens: int,
        output_tokens: int,
        tokens_per_second: float | None,
        cost_usd: float | None,
    ) -> None:
        self.requests += 1
        if outcome == "ok":
            self.ok += 1
            self.latencies.append(latency_ms)
        elif outcome == "error":
            self.errors += 1
        elif outcome == "rejected":
            self.rejected += 1
        elif outcome == "cancelled":
            self.cancelled += 1
        self.fallbacks += bool(fallback)
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost_usd is not None:
            self.cost_usd += cost_usd
            self.priced_requests += 1
        if ttft_ms is not None:
            self.ttft_sum += ttft_ms
            self.ttft_count += 1
        if tokens_per_second is not None:
            self.tps_sum += tokens_per_second
            self.tps_count += 1

    def merge(self, other: StatsAccumulator) -> None:
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies.extend(other.latencies)

    def stats(self) -> MetricsStats:
        ordered = sorted(self.latencies)
        return MetricsStats(
            requests=self.requests,
            ok=self.ok,
            errors=self.errors,
            rejected=self.rejected,
            cancelled=self.cancelled,
            fallbacks=self.fallbacks,
            latency_p50_ms=percentile(ordered, 0.5),
            latency_p95_ms=percentile(ordered, 0.95),
            ttft_mean_ms=self.ttft_sum / self.ttft_count if self.ttft_count else None,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            tokens_per_second_mean=self.tps_sum / self.tps_count if self.tps_count else None,
            cost_usd=self.cost_usd,
            priced_requests=self.priced_requests,
        )

    @staticmethod
    def aggregate(cells: Mapping[tuple[str | None, datetime], StatsAccumulator]) -> MetricsAggregate:
        """Roll (model, bucket) cells up to per-model, per-bucket and total statistics."""
        total = StatsAccumulator()
        by_model: dict[str | None, StatsAccumulator] = {}
        by_bucket: dict[datetime, StatsAccumulator] = {}
        for (model, bucket), cell in cells.items():
            total.merge(cell)
            by_model.setdefault(model, StatsAccumulator()).merge(cell)
            by_bucket.setdefault(bucket, StatsAccumulator()).merge(cell)
        return MetricsAggregate(
            total=total.stats(),
            by_model={k: v.stats() for k, v in by_model.items()},
            by_bucket={k: v.stats() for k, v in by_bucket.items()},
            by_model_bucket={k: v.stats() for k, v in cells.items()},
        )


_SUMMED = tuple(f.name for f in fields(StatsAccumulator) if f.name != "latencies")


# -- the store and the recorder ------------------------------------------------------------------


class MetricsStore(Protocol):
    async def insert_many(self, records: Sequence[RequestRecord]) -> None: ...

    async def delete_older_than(self, cutoff: datetime) -> int: ...

    async def aggregate(
        self,
        *,
        since: datetime,
        until: datetime,
        bucket_seconds: int,
        model: str | None,
        by: GroupBy = "used",
    ) -> MetricsAggregate: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MetricsRecorder:
    """Buffers request records, writes them in batches, exposes Prometheus metrics and summaries."""

    def __init__(
        self,
        store: MetricsStore,
        config: MetricsConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        buffer_limit: int = BUFFER_LIMIT,
    ) -> None:
        self.store = store
        self.config = config
        self._clock = clock or _utc_now
        self._limit = buffer_limit
        self._buffer: deque[RequestRecord] = deque()
        self._retry: list[RequestRecord] | None = None  # a batch whose write failed, written first
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._pruned_at = -math.inf
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "mmstudio_requests",
            "Routed requests by route, model used, provider and outcome.",
            ["route", "model", "provider", "outcome"],
            registry=r,
        )
        self._fallbacks = Counter(
            "mmstudio_fallbacks",
            "Requests served by a fallback model (by model used).",
            ["model"],
            registry=r,
        )
        self._input_tokens = Counter("mmstudio_input_tokens", "Input tokens by model.", ["model"], registry=r)
        self._output_tokens = Counter(
            "mmstudio_output_tokens", "Output tokens by model.", ["model"], registry=r
        )
        self._cost = Counter("mmstudio_cost_usd", "Cost in US dollars by model.", ["model"], registry=r)
        self._latency = Histogram(
            "mmstudio_request_latency_seconds",
            "Latency of successful requests, whole request, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            "mmstudio_time_to_first_token_seconds",
            "Time to the first token, by model.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._buffered = Gauge(
            "mmstudio_metrics_buffered_records", "Request records waiting to be written.", registry=r
        )
        self._dropped = Counter(
            "mmstudio_metrics_dropped_records",
            "Request records dropped because the buffer was full (or the recorder closed).",
            registry=r,
        )
        self._write_failures = Counter(
            "mmstudio_metrics_write_failures", "Failed batch writes (the batch is retried).", registry=r
        )

    # -- the hot path ---------------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        """Count one request. Synchronous, O(1), never raises and never waits for I/O."""
        if not self.config.enabled:
            return
        try:
            self._observe(record)
            if self._closed:
                self._dropped.inc()
                return
            if len(self._buffer) >= self._limit:
                self._buffer.popleft()
                self._dropped.inc()
            self._buffer.append(record)
            self._buffered.set(self.pending)
            if len(self._buffer) >= self.config.batch_size:
                self._wake.set()
        except Exception:  # metrics must never break a request
            log.warning("could not record request metrics", exc_info=True)

    def _observe(self, record: RequestRecord) -> None:
        model = record.model_used or NO_LABEL
        self._requests.labels(record.route, model, record.provider or NO_LABEL, record.outcome).inc()
        if record.fallback:
            self._fallbacks.labels(model).inc()
        if record.input_tokens > 0:
            self._input_tokens.labels(model).inc(record.input_tokens)
        if record.output_tokens > 0:
            self._output_tokens.labels(model).inc(record.output_tokens)
        if record.cost_usd is not None and math.isfinite(record.cost_usd) and record.cost_usd > 0:
            self._cost.labels(model).inc(record.cost_usd)
        if record.outcome == "ok" and math.isfinite(record.latency_ms):
            self._latency.labels(model).observe(max(record.latency_ms, 0.0) / 1000)
        if record.ttft_ms is not None and math.isfinite(record.ttft_ms):
            self._ttft.labels(model).observe(max(record.ttft_ms, 0.0) / 1000)

    @property
    def pending(self) -> int:
        """Records not yet written (buffered plus a batch waiting for a retry)."""
        return len(self._buffer) + len(self._retry or ())

    def now(self) -> datetime:
        return self._clock()

    # -- writing --------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write what is buffered now, one `insert_many` per `batch_size` records; return how many.

        Records arriving during the write wait for the next flush, so a flood cannot keep this
        running forever. If a write fails the batch is kept (written first next time) and the error
        raised; writes are idempotent (the store ignores request ids it already has).
        """
        async with self._flush_lock:
            size = self.config.batch_size
            rounds = math.ceil(len(self._buffer) / size) + (self._retry is not None)
            written = 0
            for _ in range(rounds):
                batch = self._retry or [self._buffer.popleft() for _ in range(min(size, len(self._buffer)))]
                if not batch:
                    break
                self._retry = batch  # kept until the store confirms, even if we are cancelled
                try:
                    await self.store.insert_many(batch)
                except Exception:
                    self._write_failures.inc()
                    self._buffered.set(self.pending)
                    raise
                self._retry = None
                written += len(batch)
            self._buffered.set(self.pending)
            return written

    def start(self) -> None:
        """Start the background flusher (needs a running event loop). Idempotent."""
        if not self.config.enabled or self._task is not None or self._closed:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mmstudio-metrics")

    async def _run(self) -> None:
        interval = self.config.flush_interval_seconds
        await self._prune_logged()
        failed = False
        while not self._stop.is_set():
            # After a failed write wait the whole interval, even if the buffer is full: a database
            # that is down should not be hammered once per request.
            event = self._stop if failed else self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                await self.flush()
                failed = False
            except Exception:
                failed = True
                log.warning(
                    "writing request metrics failed; %d records kept for retry", self.pending, exc_info=True
                )
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
                await self._prune_logged()

    async def _prune_logged(self) -> None:
        self._pruned_at = time.monotonic()
        try:
            removed = await self.prune()
        except Exception:
            log.warning("pruning old request metrics failed", exc_info=True)
        else:
            if removed:
                log.info(
                    "pruned %d request metrics rows older than %s days", removed, self.config.retention_days
                )

    async def prune(self, now: datetime | None = None) -> int:
        """Delete rows older than `retention_days`; return how many."""
        cutoff = (now or self._clock()) - timedelta(days=self.config.retention_days)
        return await self.store.delete_older_than(cutoff)

    async def close(self) -> None:
        """Stop the flusher and write everything still buffered. `record()` keeps working (it only
        counts) afterwards."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            while self.pending:
                await self.flush()
        except Exception:
            log.error(
                "%d request metrics records could not be written at shutdown", self.pending, exc_info=True
            )
        finally:
            self._closed = True

    # -- reading --------------------------------------------------------------------------------

    def prometheus(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type (format 0.0.4, which every Prometheus
        version reads; our names need none of 1.0.0's escaping)."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    async def summary(
        self,
        *,
        since: datetime,
        until: datetime,
        bucket_seconds: int,
        model: str | None = None,
        by: GroupBy = "used",
    ) -> dict[str, Any]:
        """Statistics of `[since, until)` in total, per model and per time bucket, as columns for charts.

        `by` says which model a request counts for (and which one `model` filters on): the one that
        answered or the one asked for (see `GroupBy`).

        Buckets start at multiples of `bucket_seconds` since the Unix epoch (UTC), so hourly buckets
        start on the hour and daily ones at midnight UTC. Each `series` has one value per entry of
        `buckets`: counts are 0 and means/percentiles `None` where there were no requests. Buffered
        records are written first, so the answer includes every request recorded so far.
        """
        since, until = _as_utc(since), _as_utc(until)
        if bucket_seconds <= 0:
            raise InvalidRequest("bucket must be positive", field="bucket")
        if since >= until:
            raise InvalidRequest("since must be before until", field="since")
        if by not in GROUP_BY:
            raise InvalidRequest(f"by must be one of {', '.join(GROUP_BY)}; got {by!r}", field="by")
        first = math.floor(since.timestamp() / bucket_seconds)
        last = math.ceil(until.timestamp() / bucket_seconds)
        if last - first > MAX_BUCKETS:
            raise InvalidRequest(
                f"that range has {last - first} buckets, at most {MAX_BUCKETS} are allowed: "
                "choose a larger bucket or a shorter range",
                field="bucket",
            )
        buckets = [datetime.fromtimestamp(i * bucket_seconds, UTC) for i in range(first, last)]
        if self.config.enabled:
            try:
                await self.flush()
            except Exception:  # the history already written can still be shown
                log.warning("writing buffered request metrics before a summary failed", exc_info=True)
            data = await self.store.aggregate(
                since=since, until=until, bucket_seconds=bucket_seconds, model=model, by=by
            )
        else:
            data = MetricsAggregate()
        models = sorted(data.by_model.items(), key=lambda kv: (-kv[1].requests, kv[0] is None, kv[0] or ""))
        return {
            "enabled": self.config.enabled,
            "since": since,
            "until": until,
            "bucket_seconds": bucket_seconds,
            "model": model,
            "by": by,
            "buckets": buckets,
            "totals": _public(data.total),
            "series": _series([data.by_bucket.get(b) for b in buckets]),
            "models": [
                {
                    "model": name,
                    "totals": _public(stats),
                    "series": _series([data.by_model_bucket.get((name, b)) for b in buckets]),
                }
                for name, stats in models
            ],
        }


_EMPTY = MetricsStats()
_ROUNDING = {
    "latency_p50_ms": 3,
    "latency_p95_ms": 3,
    "ttft_mean_ms": 3,
    "tokens_per_second_mean": 3,
    "cost_usd": 8,
}


def _public(stats: MetricsStats | None) -> dict[str, Any]:
    stats = stats or _EMPTY
    out: dict[str, Any] = {}
    for name in STAT_FIELDS:
        value = getattr(stats, name)
        digits = _ROUNDING.get(name)
        out[name] = round(value, digits) if digits is not None and value is not None else value
    return out


def _series(cells: Sequence[MetricsStats | None]) -> dict[str, list[Any]]:
    rows = [_public(c) for c in cells]
    return {name: [row[name] for row in rows] for name in STAT_FIELDS}


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
