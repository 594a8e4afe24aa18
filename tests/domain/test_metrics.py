"""MetricsRecorder against a real SQLite database: buffering, batching, shutdown, retention,
Prometheus output and summaries."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from mmstudio.config import MetricsConfig
from mmstudio.domain.metrics import GroupBy, MetricsAggregate, MetricsRecorder, percentile
from mmstudio.domain.types import RequestRecord
from mmstudio.errors import InvalidRequest
from mmstudio.storage.db import create_engine, migrate, session_factory
from mmstudio.storage.metrics_repo import MetricsRepository, statement_sizes
from tests.storage.test_metrics_repo import (
    GPT,
    H10,
    H11,
    LLAMA,
    SINCE,
    T0,
    UNTIL,
    Statements,
    known_records,
    make_record,
)

WAIT = 10.0  # a safety net for awaited events, never a timing assumption


def clock() -> datetime:
    """The recorders' "now": just after the test data (so nothing is old enough to be pruned)."""
    return UNTIL + timedelta(hours=1)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Any]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def repo(engine: Any) -> MetricsRepository:
    return MetricsRepository(session_factory(engine))


class WatchedStore:
    """The real repository behind the store protocol, noting each batch and able to fail on demand."""

    def __init__(self, repo: MetricsRepository) -> None:
        self.repo = repo
        self.batches: list[int] = []
        self.failures_left = 0
        self.attempted = asyncio.Event()
        self.written = asyncio.Event()

    async def insert_many(self, records: Sequence[RequestRecord]) -> None:
        self.attempted.set()
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("database is down")
        await self.repo.insert_many(records)
        self.batches.append(len(records))
        self.written.set()

    async def delete_older_than(self, cutoff: datetime) -> int:
        return await self.repo.delete_older_than(cutoff)

    async def aggregate(
        self,
        *,
        since: datetime,
        until: datetime,
        bucket_seconds: int,
        model: str | None,
        by: GroupBy = "used",
    ) -> MetricsAggregate:
        return await self.repo.aggregate(
            since=since, until=until, bucket_seconds=bucket_seconds, model=model, by=by
        )


def config(**values: Any) -> MetricsConfig:
    return MetricsConfig(**{"flush_interval_seconds": 600, **values})


def samples(recorder: MetricsRecorder) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = recorder.prometheus()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_record_never_touches_the_database_until_a_flush(engine: Any, repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(batch_size=100), clock=clock)
    with Statements(engine) as seen:
        for i in range(10):
            recorder.record(make_record(T0 + timedelta(seconds=i)))
        assert seen.seen == [] and recorder.pending == 10
        assert await recorder.flush() == 10
        assert len(seen.inserts()) == len(statement_sizes(10)) == 2  # 8 + 2 rows, never a statement per row
    assert await repo.count() == 10 and recorder.pending == 0
    await recorder.close()


async def test_flush_writes_each_batch_with_a_few_inserts(engine: Any, repo: MetricsRepository) -> None:
    store = WatchedStore(repo)
    recorder = MetricsRecorder(store, config(batch_size=5), clock=clock)
    for i in range(12):
        recorder.record(make_record(T0 + timedelta(seconds=i)))
    with Statements(engine) as seen:
        assert await recorder.flush() == 12
    assert store.batches == [5, 5, 2]
    assert len(seen.inserts()) == sum(len(statement_sizes(n)) for n in (5, 5, 2)) == 5  # 4+1, 4+1, 2
    await recorder.close()


async def test_a_full_batch_wakes_the_flusher_at_once(repo: MetricsRepository) -> None:
    store = WatchedStore(repo)
    recorder = MetricsRecorder(store, config(batch_size=5), clock=clock)  # 600 s interval: never elapses
    recorder.start()
    for i in range(4):
        recorder.record(make_record(T0 + timedelta(seconds=i)))
    await asyncio.sleep(0)
    assert store.batches == []
    recorder.record(make_record())
    await asyncio.wait_for(store.written.wait(), WAIT)
    assert store.batches == [5] and await repo.count() == 5
    await recorder.close()


async def test_close_writes_every_buffered_record(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(batch_size=500), clock=clock)
    recorder.start()
    for i in range(10_000):
        recorder.record(make_record(T0 + timedelta(milliseconds=i)))
    await recorder.close()
    assert await repo.count() == 10_000
    assert recorder.pending == 0
    # After close, record() still counts but never raises; the record cannot be written any more.
    recorder.record(make_record())
    assert samples(recorder)[("mmstudio_metrics_dropped_records_total", ())] == 1
    await recorder.close()  # idempotent


async def test_a_failed_write_keeps_the_batch_for_the_next_round(
    repo: MetricsRepository, caplog: pytest.LogCaptureFixture
) -> None:
    store = WatchedStore(repo)
    store.failures_left = 1
    recorder = MetricsRecorder(store, config(batch_size=3), clock=clock)
    for i in range(7):
        recorder.record(make_record(T0 + timedelta(seconds=i)))
    with pytest.raises(ConnectionError):
        await recorder.flush()
    assert recorder.pending == 7 and await repo.count() == 0
    recorder.record(make_record(T0 + timedelta(seconds=8)))
    assert await recorder.flush() == 8
    assert store.batches == [3, 3, 2]  # the failed batch first, then the rest
    assert await repo.count() == 8
    values = samples(recorder)
    assert values[("mmstudio_metrics_write_failures_total", ())] == 1
    assert values[("mmstudio_metrics_buffered_records", ())] == 0

    # The background flusher logs a failure and keeps going; close() writes what it kept.
    store.failures_left = 1
    store.attempted.clear()
    recorder.start()
    for i in range(3):
        recorder.record(make_record(T0 + timedelta(minutes=1, seconds=i)))
    await asyncio.wait_for(store.attempted.wait(), WAIT)
    await recorder.close()
    assert await repo.count() == 11
    assert "writing request metrics failed" in caplog.text


async def test_close_with_a_dead_database_logs_what_is_lost(
    repo: MetricsRepository, caplog: pytest.LogCaptureFixture
) -> None:
    store = WatchedStore(repo)
    store.failures_left = 1_000
    recorder = MetricsRecorder(store, config(), clock=clock)
    recorder.record(make_record())
    await recorder.close()  # does not raise
    assert "1 request metrics records could not be written" in caplog.text


async def test_a_full_buffer_drops_the_oldest_records(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(), buffer_limit=3, clock=clock)
    records = [make_record(T0 + timedelta(seconds=i), request_id=f"r{i}") for i in range(5)]
    for r in records:
        recorder.record(r)
    assert recorder.pending == 3
    assert samples(recorder)[("mmstudio_metrics_dropped_records_total", ())] == 2
    await recorder.close()
    async with repo._sessions() as session:
        ids = sorted((await session.execute(text("SELECT id FROM request_metrics"))).scalars())
    assert ids == ["r2", "r3", "r4"]


async def test_retention_prunes_at_start_and_on_demand(repo: MetricsRepository) -> None:
    now = T0 + timedelta(days=100)
    await repo.insert_many([make_record(now - timedelta(days=d)) for d in (0, 10, 29.9, 31, 45, 90)])
    recorder = MetricsRecorder(repo, config(retention_days=60), clock=lambda: now)
    recorder.start()
    await recorder.close()  # the flusher's first act is a prune; close waits for the flusher
    assert await repo.count() == 5
    assert await recorder.prune(now) == 0
    assert await recorder.prune(now + timedelta(days=20)) == 1  # the 45-day-old row is now 65 days old
    short = MetricsRecorder(repo, config(retention_days=0.5), clock=lambda: now)
    assert await short.prune() == 3
    assert await repo.count() == 1


async def test_prometheus_exposition(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(), clock=clock)
    recorder.record(
        make_record(latency_ms=300.0, ttft_ms=40.0, input_tokens=11, output_tokens=7, key_id="SECRET-key")
    )
    recorder.record(make_record(latency_ms=7000.0, fallback=True, stream=True, route="studio"))
    recorder.record(
        make_record(model_used=GPT, provider="openai", outcome="error", status_code=502, cost_usd=0.25)
    )
    recorder.record(make_record(model_used=None, provider=None, outcome="rejected", status_code=429))
    body, content_type = recorder.prometheus()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"SECRET" not in body and b"key-1" not in body
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["mmstudio_requests"].type == "counter"
    assert families["mmstudio_request_latency_seconds"].type == "histogram"
    assert families["mmstudio_time_to_first_token_seconds"].type == "histogram"
    assert families["mmstudio_metrics_buffered_records"].type == "gauge"
    values = samples(recorder)

    def requests(route: str, model: str, provider: str, outcome: str) -> float:
        labels = (("model", model), ("outcome", outcome), ("provider", provider), ("route", route))
        return values[("mmstudio_requests_total", labels)]

    assert requests("gateway", LLAMA, "ollama", "ok") == 1
    assert requests("studio", LLAMA, "ollama", "ok") == 1
    assert requests("gateway", GPT, "openai", "error") == 1
    assert requests("gateway", "none", "none", "rejected") == 1
    assert values[("mmstudio_fallbacks_total", (("model", LLAMA),))] == 1
    assert values[("mmstudio_input_tokens_total", (("model", LLAMA),))] == 11
    assert values[("mmstudio_output_tokens_total", (("model", LLAMA),))] == 7
    assert values[("mmstudio_cost_usd_total", (("model", GPT),))] == 0.25
    # Latency of successes only, in seconds: 0.3 s and 7 s.
    assert values[("mmstudio_request_latency_seconds_count", (("model", LLAMA),))] == 2
    assert values[("mmstudio_request_latency_seconds_sum", (("model", LLAMA),))] == pytest.approx(7.3)
    assert values[("mmstudio_request_latency_seconds_bucket", (("le", "0.5"), ("model", LLAMA)))] == 1
    assert values[("mmstudio_request_latency_seconds_bucket", (("le", "10.0"), ("model", LLAMA)))] == 2
    assert ("mmstudio_request_latency_seconds_count", (("model", GPT),)) not in values
    assert values[("mmstudio_time_to_first_token_seconds_sum", (("model", LLAMA),))] == pytest.approx(0.04)
    assert values[("mmstudio_metrics_buffered_records", ())] == 4
    await recorder.flush()
    assert samples(recorder)[("mmstudio_metrics_buffered_records", ())] == 0
    await recorder.close()


async def test_record_never_raises_on_odd_values(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(), clock=clock)
    odd = make_record(latency_ms=math.nan, ttft_ms=-5.0, input_tokens=-3, cost_usd=math.inf, route="x" * 50)
    recorder.record(odd)
    recorder.record(object())  # type: ignore[arg-type]  # a caller's bug must not fail its request
    await recorder.close()
    assert await repo.count() == 1


async def test_summary_includes_buffered_records_and_fills_every_bucket(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(), clock=clock)
    for r in known_records():
        recorder.record(r)
    body = await recorder.summary(since=SINCE, until=UNTIL + timedelta(minutes=30), bucket_seconds=3600)
    assert recorder.pending == 0  # written first
    assert body["enabled"] is True and body["model"] is None
    assert body["buckets"] == [H10, H11, UNTIL]
    assert body["totals"]["requests"] == 18  # the record at exactly 12:00 is inside this window
    series = body["series"]
    assert series["requests"] == [15, 2, 1]
    assert series["errors"] == [1, 0, 0] and series["rejected"] == [0, 1, 0]
    assert series["fallbacks"] == [0, 1, 0]
    assert [m["model"] for m in body["models"]] == [GPT, LLAMA, None]  # most requests first
    llama = body["models"][1]
    # Successes 100, 200, 300, 400, 1000 and (at 12:00) 9999 ms.
    assert llama["totals"]["latency_p50_ms"] == 350.0 and llama["totals"]["latency_p95_ms"] == 7749.25
    assert llama["series"]["latency_p50_ms"] == [250.0, 1000.0, 9999.0]
    assert llama["series"]["latency_p95_ms"] == [385.0, 1000.0, 9999.0]
    assert llama["series"]["tokens_per_second_mean"] == [20.0, 40.0, None]
    gpt = body["models"][0]
    assert gpt["series"]["requests"] == [10, 0, 0]
    assert gpt["series"]["latency_p95_ms"] == [95.5, None, None]
    assert gpt["series"]["cost_usd"] == [0.01, 0.0, 0.0]
    assert set(gpt["series"]) == set(gpt["totals"])

    only = await recorder.summary(since=SINCE, until=UNTIL, bucket_seconds=900, model=GPT)
    assert [m["model"] for m in only["models"]] == [GPT] and only["totals"]["requests"] == 10
    assert len(only["buckets"]) == 8 and only["series"]["requests"][:2] == [5, 5]
    await recorder.close()


async def test_summary_by_model_requested(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(WatchedStore(repo), config(), clock=clock)
    for r in known_records():
        recorder.record(r)
    body = await recorder.summary(since=SINCE, until=UNTIL, bucket_seconds=3600, by="requested")
    assert body["by"] == "requested"
    assert [m["model"] for m in body["models"]] == [GPT, LLAMA, "gpt-unknown"]
    gpt, llama, _ = body["models"]
    assert gpt["series"]["fallbacks"] == [0, 1] and gpt["totals"]["priced_requests"] == 10
    assert llama["series"]["errors"] == [1, 0]
    assert (await recorder.summary(since=SINCE, until=UNTIL, bucket_seconds=3600))["by"] == "used"
    with pytest.raises(InvalidRequest, match="used, requested") as info:
        await recorder.summary(since=SINCE, until=UNTIL, bucket_seconds=3600, by="asked")  # type: ignore[arg-type]
    assert info.value.field == "by"
    await recorder.close()


async def test_summary_rejects_bad_ranges(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(), clock=clock)
    with pytest.raises(InvalidRequest) as info:
        await recorder.summary(since=UNTIL, until=SINCE, bucket_seconds=60)
    assert info.value.field == "since"
    with pytest.raises(InvalidRequest, match="larger bucket") as info:
        await recorder.summary(since=T0 - timedelta(days=30), until=T0, bucket_seconds=60)
    assert info.value.field == "bucket"
    await recorder.close()


async def test_disabled_metrics_record_nothing(repo: MetricsRepository) -> None:
    recorder = MetricsRecorder(repo, config(enabled=False, batch_size=1), clock=clock)
    recorder.start()
    recorder.record(make_record())
    assert recorder.pending == 0
    body = await recorder.summary(since=SINCE, until=UNTIL, bucket_seconds=3600)
    assert body["enabled"] is False and body["models"] == [] and body["totals"]["requests"] == 0
    assert body["series"]["requests"] == [0, 0]
    assert not [name for name, _ in samples(recorder) if name == "mmstudio_requests_total"]
    await recorder.close()
    assert await repo.count() == 0


def test_percentile_is_linear_interpolation() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 20.0], 0.95) == pytest.approx(19.5)
