"""The request metrics table on SQLite and PostgreSQL: batch inserts, retention, aggregation."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, text

from mmstudio.domain.types import RequestRecord
from mmstudio.storage.db import session_factory
from mmstudio.storage.metrics_repo import SQLITE_ROWS_PER_STATEMENT, MetricsRepository, statement_sizes

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LLAMA = "ollama/llama3.2"
GPT = "openai/gpt-4o"


def make_record(at: datetime = T0, **fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "created_at": at,
        "route": "gateway",
        "outcome": "ok",
        "status_code": 200,
        "latency_ms": 100.0,
        "model_requested": LLAMA,
        "model_used": LLAMA,
        "provider": "ollama",
        "key_id": "key-1",
        "attempts": 1,
    }
    values.update(fields)
    return RequestRecord(**values)


def known_records() -> list[RequestRecord]:
    """Two hours of traffic, 10:00-12:00, with values whose statistics are worked out in the tests below."""
    minute = timedelta(minutes=1)
    records = [
        # llama, 10:00 bucket: four successes and one failure (its latency is not a success's)
        *(
            make_record(
                T0 + i * minute,
                latency_ms=ms,
                ttft_ms=50.0,
                input_tokens=10,
                output_tokens=20,
                tokens_per_second=20.0,
            )
            for i, ms in enumerate([400.0, 100.0, 300.0, 200.0])
        ),
        make_record(
            T0 + 5 * minute, outcome="error", status_code=502, latency_ms=5000.0, error_kind="timeout"
        ),
        # llama, 11:00 bucket: one success after a fallback
        make_record(
            T0 + 65 * minute,
            latency_ms=1000.0,
            fallback=True,
            attempts=2,
            ttft_ms=150.0,
            tokens_per_second=40.0,
            model_requested=GPT,
        ),
        # gpt-4o, 10:00 bucket: ten successes, 10..100 ms, each with a price
        *(
            make_record(
                T0 + (10 + i) * minute,
                latency_ms=10.0 * (i + 1),
                model_requested=GPT,
                model_used=GPT,
                provider="openai",
                input_tokens=100,
                output_tokens=50,
                cost_usd=0.001,
            )
            for i in range(10)
        ),
        # 11:30: rejected before any model was chosen
        make_record(
            T0 + 90 * minute,
            outcome="rejected",
            status_code=429,
            latency_ms=0.5,
            model_used=None,
            provider=None,
            model_requested="gpt-unknown",
        ),
        # outside [10:00, 12:00): one just before, one exactly at `until`
        make_record(T0 - timedelta(seconds=1), latency_ms=9999.0),
        make_record(T0 + 120 * minute, latency_ms=9999.0),
    ]
    return records


def p50_p95(values: list[float]) -> tuple[float, float]:
    """An independent computation: `statistics.quantiles(method="inclusive")` is percentile_cont."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return cuts[9], cuts[18]


SINCE, UNTIL = T0, T0 + timedelta(hours=2)
H10, H11 = T0, T0 + timedelta(hours=1)
GPT_MS = [10.0 * (i + 1) for i in range(10)]
LLAMA_MS = [100.0, 200.0, 300.0, 400.0, 1000.0]


class Statements:
    """Every SQL statement the engine sends (statement text, executemany, number of parameter sets)."""

    def __init__(self, engine: Any) -> None:
        self.seen: list[tuple[str, bool, int]] = []
        self._engine = engine.sync_engine

    def _listen(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.seen.append((statement, many, len(params) if many else 1))

    def __enter__(self) -> Statements:
        event.listen(self._engine, "before_cursor_execute", self._listen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._listen)

    def inserts(self) -> list[tuple[bool, int]]:
        return [
            (m, n) for s, m, n in self.seen if s.lstrip().upper().startswith("INSERT INTO REQUEST_METRICS")
        ]


@pytest.fixture
def statements(engine: Any) -> Iterator[Statements]:
    with Statements(engine) as seen:
        yield seen


async def rows(engine: Any, columns: str = "count(*)") -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(f"SELECT {columns} FROM request_metrics"))).all()


async def test_a_batch_takes_few_statements_and_retrying_it_is_harmless(
    engine: Any, statements: Statements
) -> None:
    repo = MetricsRepository(session_factory(engine))
    batch = [make_record(T0 + timedelta(seconds=i)) for i in range(1000)]
    await repo.insert_many(batch)
    if engine.dialect.name == "postgresql":
        assert statements.inserts() == [(True, 1000)]  # one executemany (asyncpg pipelines it)
    else:
        # multi-row INSERTs of SQLITE_ROWS_PER_STATEMENT rows: a few GIL handovers, not one per row
        assert statements.inserts() == [(False, 1), (False, 1)]
        (first, *_), *_ = [s for s in statements.seen if s[0].upper().startswith("INSERT")]
        assert first.count("(?, ?,") == SQLITE_ROWS_PER_STATEMENT == 500
    assert await repo.count() == 1000
    before = len(statements.inserts())
    # A retried batch (its commit was not acknowledged) neither fails nor duplicates.
    await repo.insert_many([*batch[:10], make_record()])
    assert await repo.count() == 1001
    await repo.insert_many([])
    expected = 1 if engine.dialect.name == "postgresql" else 3  # SQLite: 11 rows as 8 + 2 + 1
    assert len(statements.inserts()) == before + expected


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
async def test_sqlite_sees_only_a_few_distinct_insert_statements(engine: Any, statements: Statements) -> None:
    # Every distinct statement text is prepared and cached by SQLite (~0.5 MB for 500 rows): batches of
    # every size must not each bring their own.
    repo = MetricsRepository(session_factory(engine))
    for size in range(1, 80):
        await repo.insert_many([make_record() for _ in range(size)])
    await repo.insert_many([make_record() for _ in range(1234)])
    assert await repo.count() == sum(range(1, 80)) + 1234
    texts = {s for s, _, _ in statements.seen if s.upper().startswith("INSERT INTO REQUEST_METRICS")}
    rows = sorted(text.count("(?, ?,") for text in texts)
    assert rows == [1, 2, 4, 8, 16, 32, 64, 128, 500]
    assert sum(statement_sizes(1234)) == 1234 and statement_sizes(1234) == [500, 500, 128, 64, 32, 8, 2]


async def test_values_are_stored_as_utc_and_bad_values_cannot_poison_a_batch(engine: Any) -> None:
    repo = MetricsRepository(session_factory(engine))
    plus_two = timezone(timedelta(hours=2))
    await repo.insert_many(
        [
            make_record(
                datetime(2026, 3, 1, 12, 0, tzinfo=plus_two),
                request_id="a",
                latency_ms=float("nan"),
                ttft_ms=float("inf"),
                error_kind="x" * 100,
                provider="p" * 100,
            ),
            make_record(datetime(2026, 3, 1, 10, 30), request_id="b"),  # naive: taken as UTC
        ]
    )
    stored = sorted(await rows(engine, "id, latency_ms, ttft_ms, length(error_kind), length(provider)"))
    assert stored == [("a", 0.0, None, 40, 40), ("b", 100.0, None, None, 6)]
    # 12:00+02:00 is 10:00 UTC: before 10:15 UTC, while b (10:30) is not.
    assert await repo.delete_older_than(datetime(2026, 3, 1, 10, 15, tzinfo=UTC)) == 1
    assert [r[0] for r in await rows(engine, "id")] == ["b"]


async def test_delete_older_than_keeps_newer_rows(engine: Any) -> None:
    repo = MetricsRepository(session_factory(engine))
    await repo.insert_many([make_record(T0 - timedelta(days=d)) for d in (0, 1, 29, 31, 400)])
    assert await repo.delete_older_than(T0 - timedelta(days=30)) == 2
    assert await repo.count() == 3
    assert await repo.delete_older_than(T0 - timedelta(days=30)) == 0


async def test_aggregate_known_data(engine: Any) -> None:
    repo = MetricsRepository(session_factory(engine))
    await repo.insert_many(known_records())
    data = await repo.aggregate(since=SINCE, until=UNTIL, bucket_seconds=3600, model=None)

    total = data.total
    assert (total.requests, total.ok, total.errors, total.rejected, total.fallbacks) == (17, 15, 1, 1, 1)
    assert (total.latency_p50_ms, total.latency_p95_ms) == pytest.approx((80.0, 580.0))
    assert (total.latency_p50_ms, total.latency_p95_ms) == pytest.approx(p50_p95(GPT_MS + LLAMA_MS))
    assert total.input_tokens == 4 * 10 + 10 * 100 and total.output_tokens == 4 * 20 + 10 * 50
    assert total.cost_usd == pytest.approx(0.01)
    assert total.ttft_mean_ms == pytest.approx(70.0)  # (4 * 50 + 150) / 5
    assert total.tokens_per_second_mean == pytest.approx(24.0)  # (4 * 20 + 40) / 5

    assert set(data.by_model) == {LLAMA, GPT, None}
    llama = data.by_model[LLAMA]
    assert (llama.requests, llama.ok, llama.errors, llama.fallbacks) == (6, 5, 1, 1)
    assert (llama.latency_p50_ms, llama.latency_p95_ms) == pytest.approx((300.0, 880.0))
    assert (llama.latency_p50_ms, llama.latency_p95_ms) == pytest.approx(p50_p95(LLAMA_MS))
    assert llama.cost_usd == 0.0
    gpt = data.by_model[GPT]
    assert (gpt.latency_p50_ms, gpt.latency_p95_ms) == pytest.approx((55.0, 95.5))
    assert gpt.ttft_mean_ms is None and gpt.tokens_per_second_mean is None
    nobody = data.by_model[None]
    assert (nobody.requests, nobody.rejected, nobody.latency_p50_ms) == (1, 1, None)

    assert set(data.by_bucket) == {H10, H11}
    assert data.by_bucket[H10].requests == 15 and data.by_bucket[H11].requests == 2
    assert set(data.by_model_bucket) == {(LLAMA, H10), (LLAMA, H11), (GPT, H10), (None, H11)}
    cell = data.by_model_bucket[(LLAMA, H10)]
    assert (cell.requests, cell.errors, cell.latency_p50_ms, cell.latency_p95_ms) == (5, 1, 250.0, 385.0)
    assert data.by_model_bucket[(LLAMA, H11)].latency_p95_ms == 1000.0


async def test_aggregate_filters_by_model_and_uses_smaller_buckets(engine: Any) -> None:
    repo = MetricsRepository(session_factory(engine))
    await repo.insert_many(known_records())
    data = await repo.aggregate(since=SINCE, until=UNTIL, bucket_seconds=900, model=LLAMA)
    assert set(data.by_model) == {LLAMA} and data.total.requests == 6
    assert data.total == data.by_model[LLAMA]
    # 10:00-10:05 falls in the 10:00 quarter; 11:05 in the 11:00 one.
    assert {b: s.requests for b, s in data.by_bucket.items()} == {H10: 5, H11: 1}
    empty = await repo.aggregate(since=UNTIL, until=UNTIL + timedelta(hours=1), bucket_seconds=60, model=GPT)
    assert empty.total.requests == 0 and not empty.by_model and not empty.by_bucket


async def test_aggregate_matches_across_databases_for_random_data(engine: Any) -> None:
    """Larger data streamed in partitions (SQLite) or aggregated by the database (PostgreSQL) gives
    the statistics an independent computation gives."""
    repo = MetricsRepository(session_factory(engine))
    latencies = [float((i * 7919) % 1000) + 0.25 for i in range(12_000)]
    await repo.insert_many(
        [make_record(T0 + timedelta(seconds=i / 2), latency_ms=ms) for i, ms in enumerate(latencies)]
    )
    data = await repo.aggregate(since=SINCE, until=UNTIL, bucket_seconds=3600, model=None)
    assert data.total.requests == 12_000
    assert (data.total.latency_p50_ms, data.total.latency_p95_ms) == pytest.approx(p50_p95(latencies))
    # 12,000 half-second steps from 10:00 end at 11:40: two buckets.
    assert {b: s.requests for b, s in data.by_bucket.items()} == {H10: 7200, H11: 4800}
    assert data.by_bucket[H11].latency_p50_ms == pytest.approx(p50_p95(latencies[7200:])[0])


async def test_aggregate_by_model_requested_shows_failures_and_fallbacks_against_that_model(
    engine: Any,
) -> None:
    repo = MetricsRepository(session_factory(engine))
    await repo.insert_many(known_records())
    data = await repo.aggregate(since=SINCE, until=UNTIL, bucket_seconds=3600, model=None, by="requested")
    assert set(data.by_model) == {LLAMA, GPT, "gpt-unknown"}
    gpt = data.by_model[GPT]  # ten answered by gpt-4o, one answered by llama after gpt-4o failed
    assert (gpt.requests, gpt.ok, gpt.fallbacks, gpt.priced_requests) == (11, 11, 1, 10)
    llama = data.by_model[LLAMA]
    assert (llama.requests, llama.ok, llama.errors, llama.fallbacks) == (5, 4, 1, 0)
    assert data.by_model["gpt-unknown"].rejected == 1
    assert data.by_model_bucket[(GPT, H11)].fallbacks == 1
    assert data.total.requests == 17 and data.total.priced_requests == 10
    only = await repo.aggregate(since=SINCE, until=UNTIL, bucket_seconds=3600, model=GPT, by="requested")
    assert set(only.by_model) == {GPT} and only.total.requests == 11


async def test_priced_requests_tell_an_unknown_cost_from_a_free_one(engine: Any) -> None:
    repo = MetricsRepository(session_factory(engine))
    await repo.insert_many([*known_records(), make_record(T0, model_used=GPT, cost_usd=0.0)])
    data = await repo.aggregate(since=SINCE, until=UNTIL, bucket_seconds=3600, model=None)
    assert data.by_model[GPT].priced_requests == 11 and data.by_model[GPT].cost_usd == pytest.approx(0.01)
    assert data.by_model[LLAMA].priced_requests == 0 and data.by_model[LLAMA].cost_usd == 0.0
    assert data.by_bucket[H10].priced_requests == 11
