"""The request metrics table: batch inserts, retention deletes and the aggregation behind /api/metrics.

How the aggregation is computed, and why two ways:

- On **PostgreSQL** the database does it: one `GROUP BY GROUPING SETS ((model, bucket), (model),
  (bucket), ())` query with `percentile_cont` for p50/p95, so only a few hundred aggregated rows cross
  the network however many requests the window holds. That is the deployment with the large tables.
- On **SQLite** (the embedded default: a local file, no network, one box's traffic) there is no
  percentile function, so the rows of the window are streamed (ten narrow columns) and aggregated in
  Python by `StatsAccumulator`, whose percentile is the same linear interpolation as PostgreSQL's
  `percentile_cont`. Both paths apply the same definitions (see `MetricsStats`) and the same tests run
  against both.

Either way a request counts for the model that answered it or, with `by="requested"`, for the one the
caller asked for (see `GroupBy`): only the grouping column changes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, case, cast, delete, extract, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from mmstudio.domain.metrics import GroupBy, MetricsAggregate, MetricsStats, StatsAccumulator
from mmstudio.domain.types import RequestRecord
from mmstudio.storage._time import utc
from mmstudio.storage.tables import RequestMetricRow

T = RequestMetricRow
Grouping = InstrumentedAttribute[str | None]  # the column a request's model is read from
TABLE = RequestMetricRow.metadata.tables[RequestMetricRow.__tablename__]
STREAM_ROWS = 5000

# Column lengths, so an over-long value (an unusual error kind, a long model id) is cut rather than
# failing the whole batch on PostgreSQL, which enforces them.
_LENGTHS = {
    "id": 36,
    "key_id": 36,
    "route": 20,
    "model_requested": 400,
    "model_used": 400,
    "provider": 40,
    "outcome": 20,
    "error_kind": 40,
}


SQLITE_ROWS_PER_STATEMENT = 500  # x 19 columns, under SQLite's 32,766 bound parameters


def _finite(value: float | None) -> float | None:
    # SQLite turns NaN into NULL (which a NOT NULL column rejects): store no value instead.
    return value if value is not None and math.isfinite(value) else None


def _cut(value: str | None, column: str) -> str | None:
    return value[: _LENGTHS[column]] if value is not None else None


def _row(record: RequestRecord) -> dict[str, Any]:
    return {
        "id": _cut(record.request_id, "id"),
        "created_at": utc(record.created_at),
        "key_id": _cut(record.key_id, "key_id"),
        "route": _cut(record.route, "route"),
        "model_requested": _cut(record.model_requested, "model_requested"),
        "model_used": _cut(record.model_used, "model_used"),
        "provider": _cut(record.provider, "provider"),
        "attempts": record.attempts,
        "fallback": record.fallback,
        "outcome": _cut(record.outcome, "outcome"),
        "error_kind": _cut(record.error_kind, "error_kind"),
        "status_code": record.status_code,
        "stream": record.stream,
        "latency_ms": _finite(record.latency_ms) or 0.0,
        "ttft_ms": _finite(record.ttft_ms),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "tokens_per_second": _finite(record.tokens_per_second),
        "cost_usd": _finite(record.cost_usd),
    }


COLUMNS: tuple[str, ...] = tuple(TABLE.columns.keys())
Converter = Callable[[Any], Any] | None


def statement_sizes(rows: int) -> list[int]:
    """How many rows each INSERT of a batch of `rows` takes: full statements, then the rest in powers of
    two, largest first (300 rows: 256, 32, 8, 4).

    Only these few sizes ever reach SQLite. Each distinct statement text is prepared and kept in the
    connection's statement cache (128 per connection), and a prepared 500-row INSERT holds about half a
    megabyte of native memory: with one statement per batch size, batches of every size from 1 to 500
    made the server's memory creep up by megabytes per 10,000 requests, out of sight of tracemalloc.
    """
    sizes = [SQLITE_ROWS_PER_STATEMENT] * (rows // SQLITE_ROWS_PER_STATEMENT)
    rest, size = rows % SQLITE_ROWS_PER_STATEMENT, 256
    while rest:
        if rest >= size:
            sizes.append(size)
            rest -= size
        size //= 2
    return sizes


@functools.cache
def _sqlite_insert_sql(rows: int) -> str:
    """`INSERT ... VALUES (?, ...), ... ON CONFLICT (id) DO NOTHING` for `rows` rows, as SQLAlchemy
    renders the same statement."""
    group = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    return (
        f"INSERT INTO {TABLE.name} ({', '.join(COLUMNS)}) VALUES "
        + ", ".join([group] * rows)
        + " ON CONFLICT (id) DO NOTHING"
    )


_converters: dict[str, tuple[Converter, ...]] = {}


def _sqlite_converters(dialect: Any) -> tuple[Converter, ...]:
    """Each column type's bind processor on this dialect (datetimes to SQLite's stored text, booleans
    to integers), so the rows are stored exactly as SQLAlchemy would store them."""
    found = _converters.get(dialect.name)
    if found is None:
        found = _converters[dialect.name] = tuple(
            TABLE.columns[name].type.dialect_impl(dialect).bind_processor(dialect) for name in COLUMNS
        )
    return found


def _values(record: RequestRecord, convert: tuple[Converter, ...]) -> list[Any]:
    row = _row(record)
    return [
        value if fn is None or value is None else fn(value)
        for fn, value in zip(convert, [row[name] for name in COLUMNS], strict=True)
    ]


class MetricsRepository:
    """One row per routed request. Implements `mmstudio.domain.metrics.MetricsStore`."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def insert_many(self, records: Sequence[RequestRecord]) -> None:
        """Insert a batch. A request id already stored is skipped, so retrying a batch whose commit was
        not acknowledged cannot fail on duplicates."""
        if not records:
            return
        async with self._sessions() as session, session.begin():
            if _dialect(session) == "postgresql":
                rows = [_row(r) for r in records]
                await session.execute(pg_insert(TABLE).on_conflict_do_nothing(index_elements=["id"]), rows)
                return
            # SQLite: multi-row INSERT statements, not executemany. executemany re-takes the GIL for
            # every row on aiosqlite's thread; while the event loop is busy serving requests each
            # handover can wait a full switch interval, and at ~800 requests/s the writer fell behind
            # (the buffer grew without bound). A few statements per batch need a few handovers.
            # The SQL text is built once per chunk size and the values are bound flat: compiling a
            # 500-row `insert().values(...)` with SQLAlchemy (9,500 bind parameters, never cached)
            # cost a fifth of the server's CPU at full load, on the event loop's thread.
            connection = await session.connection()
            convert = _sqlite_converters(connection.dialect)
            start = 0
            for size in statement_sizes(len(records)):
                chunk = records[start : start + size]
                start += size
                params = [value for record in chunk for value in _values(record, convert)]
                await connection.exec_driver_sql(_sqlite_insert_sql(size), tuple(params))

    async def delete_older_than(self, cutoff: datetime) -> int:
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(T).where(T.created_at < utc(cutoff)))
        return int(getattr(result, "rowcount", 0) or 0)

    async def count(self) -> int:
        async with self._sessions() as session:
            return int((await session.execute(select(func.count()).select_from(T))).scalar_one())

    async def aggregate(
        self,
        *,
        since: datetime,
        until: datetime,
        bucket_seconds: int,
        model: str | None,
        by: GroupBy = "used",
    ) -> MetricsAggregate:
        """Statistics of requests created in `[since, until)` per model used (or requested: `by`),
        optionally of one such model."""
        group = T.model_requested if by == "requested" else T.model_used
        window: list[ColumnElement[bool]] = [T.created_at >= utc(since), T.created_at < utc(until)]
        if model is not None:
            window.append(group == model)
        async with self._sessions() as session:
            if _dialect(session) == "postgresql":
                return await _aggregate_in_database(session, window, bucket_seconds, group)
            return await _aggregate_in_python(session, window, bucket_seconds, group)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _aggregate_in_python(
    session: AsyncSession, window: list[ColumnElement[bool]], bucket_seconds: int, group: Grouping
) -> MetricsAggregate:
    statement = (
        select(
            T.created_at,
            group,
            T.outcome,
            T.fallback,
            T.latency_ms,
            T.ttft_ms,
            T.input_tokens,
            T.output_tokens,
            T.tokens_per_second,
            T.cost_usd,
        )
        .where(*window)
        .execution_options(yield_per=STREAM_ROWS)
    )
    cells: dict[tuple[str | None, datetime], StatsAccumulator] = {}
    starts: dict[int, datetime] = {}
    result = await session.stream(statement)
    async for partition in result.partitions():
        for created, model, outcome, fallback, latency, ttft, tokens_in, tokens_out, tps, cost in partition:
            index = math.floor(utc(created).timestamp() / bucket_seconds)
            start = starts.get(index)
            if start is None:
                start = starts[index] = datetime.fromtimestamp(index * bucket_seconds, UTC)
            cell = cells.get((model, start))
            if cell is None:
                cell = cells[(model, start)] = StatsAccumulator()
            cell.add(
                outcome=outcome,
                fallback=fallback,
                latency_ms=latency,
                ttft_ms=ttft,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                tokens_per_second=tps,
                cost_usd=cost,
            )
    return StatsAccumulator.aggregate(cells)


async def _aggregate_in_database(
    session: AsyncSession, window: list[ColumnElement[bool]], bucket_seconds: int, group: Grouping
) -> MetricsAggregate:
    # The bucket is computed in a subquery so the grouping refers to a plain column.
    inner = (
        select(
            group.label("model"),
            cast(func.floor(extract("epoch", T.created_at) / bucket_seconds), BigInteger).label("bucket"),
            T.outcome,
            T.fallback,
            T.latency_ms,
            T.ttft_ms,
            T.input_tokens,
            T.output_tokens,
            T.tokens_per_second,
            T.cost_usd,
        )
        .where(*window)
        .subquery()
    )
    c = inner.c

    def outcomes(name: str) -> Any:
        return func.sum(case((c.outcome == name, 1), else_=0))

    ok_latency = case((c.outcome == "ok", c.latency_ms))  # NULL otherwise: percentile_cont skips it
    statement = select(
        func.grouping(c.model, c.bucket),
        c.model,
        c.bucket,
        func.count(),
        outcomes("ok"),
        outcomes("error"),
        outcomes("rejected"),
        outcomes("cancelled"),
        func.sum(case((c.fallback, 1), else_=0)),
        func.percentile_cont(0.5).within_group(ok_latency),
        func.percentile_cont(0.95).within_group(ok_latency),
        func.avg(c.ttft_ms),
        func.sum(c.input_tokens),
        func.sum(c.output_tokens),
        func.avg(c.tokens_per_second),
        func.sum(c.cost_usd),
        func.count(c.cost_usd),
    ).group_by(func.grouping_sets(tuple_(c.model, c.bucket), tuple_(c.model), tuple_(c.bucket), tuple_()))
    total = MetricsStats()
    by_model: dict[str | None, MetricsStats] = {}
    by_bucket: dict[datetime, MetricsStats] = {}
    by_model_bucket: dict[tuple[str | None, datetime], MetricsStats] = {}
    for level, model, bucket, *values in (await session.execute(statement)).all():
        stats = _stats(values)
        start = datetime.fromtimestamp(bucket * bucket_seconds, UTC) if bucket is not None else None
        # GROUPING() is a bit mask of the columns *not* grouped: 0 both, 1 model only, 2 bucket only.
        if level == 0 and start is not None:
            by_model_bucket[(model, start)] = stats
        elif level == 1:
            by_model[model] = stats
        elif level == 2 and start is not None:
            by_bucket[start] = stats
        elif level == 3:
            total = stats
    return MetricsAggregate(
        total=total, by_model=by_model, by_bucket=by_bucket, by_model_bucket=by_model_bucket
    )


def _stats(values: Sequence[Any]) -> MetricsStats:
    (
        requests,
        ok,
        errors,
        rejected,
        cancelled,
        fallbacks,
        p50,
        p95,
        ttft,
        tokens_in,
        tokens_out,
        tps,
        cost,
        priced,
    ) = values

    def number(value: Any) -> float | None:
        return float(value) if value is not None else None

    return MetricsStats(
        requests=int(requests),
        ok=int(ok or 0),
        errors=int(errors or 0),
        rejected=int(rejected or 0),
        cancelled=int(cancelled or 0),
        fallbacks=int(fallbacks or 0),
        latency_p50_ms=number(p50),
        latency_p95_ms=number(p95),
        ttft_mean_ms=number(ttft),
        input_tokens=int(tokens_in or 0),
        output_tokens=int(tokens_out or 0),
        tokens_per_second_mean=number(tps),
        cost_usd=float(cost or 0.0),
        priced_requests=int(priced or 0),
    )
