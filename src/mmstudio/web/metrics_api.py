"""Request metrics over HTTP: /metrics for Prometheus and /api/metrics for the studio's charts."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, cast

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from mmstudio.domain.metrics import GroupBy
from mmstudio.domain.times import EARLIEST, parse_time
from mmstudio.errors import InvalidRequest
from mmstudio.web.deps import StudioDep

router = APIRouter(tags=["metrics"])

BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
RELATIVE = r"^[0-9]{1,5}[smhdw]$"  # at most 99999 weeks back: within the calendar
TIME_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": RELATIVE},
        {"type": "string", "enum": ["now"]},
    ]
}
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DEFAULT_RANGE = timedelta(hours=24)


class MetricsStatsPublic(BaseModel):
    """Aggregates over a set of requests. Latency percentiles cover successful requests only."""

    requests: int
    ok: int
    errors: int
    rejected: int = Field(description="refused by our own limits or routing before any model answered")
    cancelled: int
    fallbacks: int = Field(description="requests served by a model other than the first candidate")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_mean_ms: float | None = Field(description="mean time to first token")
    input_tokens: int
    output_tokens: int
    tokens_per_second_mean: float | None
    cost_usd: float
    priced_requests: int = Field(
        description="requests whose model has a price; cost_usd covers these (0: the cost is unknown)"
    )


class MetricsSeriesPublic(BaseModel):
    """One value per time bucket (aligned with `buckets`): 0 or null where there were no requests."""

    requests: list[int]
    ok: list[int]
    errors: list[int]
    rejected: list[int]
    cancelled: list[int]
    fallbacks: list[int]
    latency_p50_ms: list[float | None]
    latency_p95_ms: list[float | None]
    ttft_mean_ms: list[float | None]
    input_tokens: list[int]
    output_tokens: list[int]
    tokens_per_second_mean: list[float | None]
    cost_usd: list[float]
    priced_requests: list[int]


class ModelMetricsPublic(BaseModel):
    model: str | None = Field(
        description="by=used: the model that answered (null: the request reached no model); "
        "by=requested: the model asked for (null: none was named, so the default)"
    )
    totals: MetricsStatsPublic
    series: MetricsSeriesPublic


class MetricsSummaryPublic(BaseModel):
    enabled: bool = Field(description="false when metrics are turned off in the configuration")
    since: datetime
    until: datetime
    bucket: str
    bucket_seconds: int
    model: str | None = Field(description="the model filter, if one was given")
    by: GroupBy = Field(description="which model a request counts for: used (answered) or requested")
    buckets: list[datetime] = Field(description="start of each time bucket (UTC), ascending")
    totals: MetricsStatsPublic
    series: MetricsSeriesPublic
    models: list[ModelMetricsPublic] = Field(description="one entry per model, most requests first")


@router.get("/metrics", include_in_schema=False)
async def prometheus(studio: StudioDep) -> Response:
    """Prometheus text exposition of the request counters and histograms."""
    body, content_type = studio.metrics.prometheus()
    return Response(content=body, headers={"Content-Type": content_type})


@router.get("/api/metrics", response_model=MetricsSummaryPublic)
async def summary(
    studio: StudioDep,
    since: Annotated[
        str | None,
        Query(
            description="an RFC 3339 time or date, or one this long ago: 1h, 24h, 7d (default 24h)",
            json_schema_extra=TIME_SCHEMA,
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description="an RFC 3339 time or date, relative, or now (default)", json_schema_extra=TIME_SCHEMA
        ),
    ] = None,
    bucket: Annotated[
        str,
        Query(description="bucket size: " + ", ".join(BUCKETS), json_schema_extra={"enum": list(BUCKETS)}),
    ] = "1h",
    model: Annotated[str | None, Query(description="only this model (provider/model)")] = None,
    by: Annotated[
        str,
        Query(
            description="count each request for the model that answered it (used) or the one asked for "
            "(requested: failures and fallbacks then show against the model that failed)",
            json_schema_extra={"enum": ["used", "requested"]},
        ),
    ] = "used",  # checked by the recorder, which answers a bad value with a 400 naming the choices
) -> MetricsSummaryPublic:
    """Requests, errors, fallbacks, latency p50/p95, time to first token, tokens and cost, in total,
    per model and per time bucket."""
    bucket_seconds = BUCKETS.get(bucket)
    if bucket_seconds is None:
        raise InvalidRequest(f"bucket must be one of {', '.join(BUCKETS)}; got {bucket!r}", field="bucket")
    now = studio.metrics.now()
    end = _parse_time(until, now, "until") if until is not None else now
    start = (
        _parse_time(since, now, "since")
        if since is not None
        else max(end, EARLIEST + DEFAULT_RANGE) - DEFAULT_RANGE
    )
    if start >= end:
        raise InvalidRequest(
            f"since ({start.isoformat()}) must be before until ({end.isoformat()})", field="since"
        )
    data = await studio.metrics.summary(
        since=start, until=end, bucket_seconds=bucket_seconds, model=model or None, by=cast(GroupBy, by)
    )
    return MetricsSummaryPublic.model_validate({**data, "bucket": bucket})


def _parse_time(value: str, now: datetime, name: str) -> datetime:
    """`now`, a relative time (`RELATIVE`), or an RFC 3339 date-time or date (`parse_time`; an
    unencoded "+00:00" in a query string arrives as " 00:00"). Times past either end of the calendar
    are clamped to it."""
    if value == "now":
        return now
    if re.fullmatch(RELATIVE[1:-1], value, re.ASCII):
        delta = timedelta(**{UNITS[value[-1]]: int(value[:-1])})
        return now - delta if now - EARLIEST > delta else EARLIEST
    parsed = parse_time(re.sub(r"(?<=[0-9]) ([0-9]{2}:[0-9]{2})$", r"+\1", value))
    if parsed is not None:
        return parsed
    raise InvalidRequest(
        f"{name} must be an RFC 3339 time (like 2026-01-31T12:00:00Z) or date (2026-01-31), a relative "
        f"time like 30m, 1h, 24h, 7d (at most 5 digits; units s, m, h, d, w) or 'now'; got {value!r}",
        field=name,
    )
