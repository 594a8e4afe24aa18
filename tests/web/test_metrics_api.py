"""/metrics and /api/metrics through the real app and its lifespan, on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, text

from mmstudio.config import MetricsConfig
from mmstudio.settings import Settings
from mmstudio.storage.db import create_engine
from mmstudio.web.app import create_app
from tests.domain.conftest import local_env
from tests.storage.test_metrics_repo import GPT, LLAMA, SINCE, known_records, make_record
from tests.web.conftest import app_client


@pytest.fixture
def settings(data_dir: Path) -> tuple[Settings, dict[str, str]]:
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(None, None)}
    settings = Settings.from_env(env)
    # Ten years of retention: the fixed 2026-03-01 test data must survive the flusher's first prune.
    config = settings.config.model_copy(update={"metrics": MetricsConfig(retention_days=3650)})
    return replace(settings, config=config), env


@pytest.fixture
async def app(settings: tuple[Settings, dict[str, str]]) -> FastAPI:
    return create_app(settings[0], environ=settings[1])


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as client:
        assert (await client.get("/api/models")).status_code == 200  # the studio is open
        yield client


def studio(app: FastAPI) -> Any:
    return app.state.studio


async def test_prometheus_endpoint(app: FastAPI, client: httpx.AsyncClient) -> None:
    metrics = studio(app).metrics
    metrics.record(make_record(latency_ms=1500.0, input_tokens=12))
    metrics.record(make_record(model_used=GPT, provider="openai", outcome="error", status_code=502))
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = {
        (s.labels["model"], s.labels["outcome"]): s.value
        for s in families["mmstudio_requests"].samples
        if s.name == "mmstudio_requests_total"
    }
    assert requests == {(LLAMA, "ok"): 1, (GPT, "error"): 1}
    latency = families["mmstudio_request_latency_seconds"]
    assert latency.type == "histogram"
    assert {s.labels["model"] for s in latency.samples} == {LLAMA}
    lag = families["mmstudio_event_loop_lag_seconds"]  # the studio's own loop, timed since it started
    assert (
        lag.type == "histogram" and "le" in next(s for s in lag.samples if s.name.endswith("_bucket")).labels
    )
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_summary_on_known_data(app: FastAPI, client: httpx.AsyncClient) -> None:
    for record in known_records():
        studio(app).metrics.record(record)
    response = await client.get(
        "/api/metrics", params={"since": SINCE.isoformat(), "until": "2026-03-01T12:00:00Z", "bucket": "1h"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["since"] == "2026-03-01T10:00:00Z" and body["until"] == "2026-03-01T12:00:00Z"
    assert body["bucket"] == "1h" and body["bucket_seconds"] == 3600 and body["enabled"] is True
    assert body["buckets"] == ["2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"]
    assert body["totals"]["requests"] == 17 and body["totals"]["latency_p95_ms"] == 580.0
    assert body["series"]["requests"] == [15, 2]
    by_model = {m["model"]: m for m in body["models"]}
    assert set(by_model) == {GPT, LLAMA, None}
    assert by_model[LLAMA]["series"]["latency_p50_ms"] == [250.0, 1000.0]
    assert by_model[LLAMA]["totals"]["fallbacks"] == 1
    assert by_model[GPT]["series"]["cost_usd"] == [0.01, 0.0]

    # "+00:00" unencoded in a query string arrives as " 00:00": still understood.
    raw = await client.get(
        "/api/metrics?since=2026-03-01T10:00:00+00:00&until=2026-03-01T11:00:00+00:00&bucket=15m&model="
        + LLAMA
    )
    assert raw.status_code == 200, raw.text
    quarter = raw.json()
    assert quarter["model"] == LLAMA and len(quarter["buckets"]) == 4
    assert [m["model"] for m in quarter["models"]] == [LLAMA]
    assert quarter["series"]["requests"] == [5, 0, 0, 0]


async def test_defaults_and_relative_times(app: FastAPI, client: httpx.AsyncClient) -> None:
    metrics = studio(app).metrics
    now = metrics.now()
    metrics.record(make_record(now - timedelta(minutes=5)))
    metrics.record(make_record(now - timedelta(days=3)))
    body = (await client.get("/api/metrics")).json()  # the last 24 hours in 1-hour buckets
    until = datetime.fromisoformat(body["until"])
    assert timedelta(0) <= until - now < timedelta(minutes=5)
    assert until - datetime.fromisoformat(body["since"]) == timedelta(hours=24)
    assert body["bucket_seconds"] == 3600 and len(body["buckets"]) in (24, 25)
    assert body["totals"]["requests"] == 1
    assert sum(body["series"]["requests"]) == 1
    week = (await client.get("/api/metrics", params={"since": "7d", "bucket": "1d"})).json()
    assert week["totals"]["requests"] == 2
    first = datetime.fromisoformat(week["buckets"][0])
    assert first.hour == 0 and first.minute == 0 and first.tzinfo == UTC  # days start at midnight UTC
    window = (await client.get("/api/metrics", params={"since": "2h", "until": "1h", "bucket": "5m"})).json()
    assert window["totals"]["requests"] == 0 and len(window["buckets"]) in (12, 13)


async def test_summary_by_model_requested_and_known_prices(app: FastAPI, client: httpx.AsyncClient) -> None:
    for record in known_records():
        studio(app).metrics.record(record)
    window = {"since": SINCE.isoformat(), "until": "2026-03-01T12:00:00Z", "bucket": "1h"}
    used = (await client.get("/api/metrics", params=window)).json()
    assert used["by"] == "used"
    priced = {m["model"]: m["totals"]["priced_requests"] for m in used["models"]}
    assert priced == {GPT: 10, LLAMA: 0, None: 0}
    assert used["series"]["priced_requests"] == [10, 0]
    response = await client.get("/api/metrics", params={**window, "by": "requested"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["by"] == "requested"
    by_model = {m["model"]: m["totals"] for m in body["models"]}
    assert (by_model[GPT]["requests"], by_model[GPT]["fallbacks"]) == (11, 1)
    assert (by_model[LLAMA]["requests"], by_model[LLAMA]["errors"]) == (5, 1)
    only = (await client.get("/api/metrics", params={**window, "by": "requested", "model": GPT})).json()
    assert [m["model"] for m in only["models"]] == [GPT] and only["totals"]["requests"] == 11


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"bucket": "2h"}, "bucket", "1m, 5m, 15m, 1h, 6h, 1d"),
        ({"by": "asked"}, "by", "used, requested"),
        ({"since": "yesterday"}, "since", "RFC 3339"),
        ({"until": "2026-13-01"}, "until", "relative time like"),
        ({"since": "1h", "until": "2h"}, "since", "must be before"),
        ({"since": "30d", "bucket": "1m"}, "bucket", "larger bucket"),
        ({"since": "999999w"}, "since", "at most 5 digits"),
    ],
)
async def test_bad_parameters_are_400s_that_say_what_is_allowed(
    client: httpx.AsyncClient, params: dict[str, str], field: str, says: str
) -> None:
    response = await client.get("/api/metrics", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field and says in body["message"]


async def test_schema_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/metrics"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"since", "until", "bucket", "model", "by"}
    schemas = spec["components"]["schemas"]
    assert {"MetricsSummaryPublic", "ModelMetricsPublic", "MetricsSeriesPublic"} <= set(schemas)
    assert "latency_p95_ms" in schemas["MetricsSeriesPublic"]["properties"]


async def test_shutdown_writes_what_was_recorded(
    app: FastAPI, settings: tuple[Settings, dict[str, str]]
) -> None:
    async with app_client(app) as client:
        assert (await client.get("/api/models")).status_code == 200
        metrics = studio(app).metrics
        for i in range(1234):
            metrics.record(make_record(metrics.now() - timedelta(seconds=i)))
    engine = create_engine(settings[0].resolved_database_url)
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM request_metrics"))).scalar_one()
    finally:
        await engine.dispose()
    assert count == 1234


async def test_request_metrics_use_a_sqlite_connection_of_their_own(app: FastAPI) -> None:
    # Each SQLite connection caches the pages it reads and the batch INSERTs it prepares: kept to one
    # connection, those stay one connection's worth however long the server runs.
    async with app_client(app) as client:
        assert (await client.get("/api/models")).status_code == 200  # the studio is open
        running = studio(app)
        assert running.metrics_engine is not None and running.metrics_engine is not running.engine
        assert running.metrics_engine.pool.size() == 1
        inserts: dict[str, int] = {"metrics": 0, "shared": 0}

        def counter(name: str) -> Any:
            def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                inserts[name] += statement.startswith("INSERT INTO request_metrics")

            return seen

        listeners = [(running.metrics_engine, counter("metrics")), (running.engine, counter("shared"))]
        for engine, listener in listeners:
            event.listen(engine.sync_engine, "before_cursor_execute", listener)
        try:
            for i in range(700):
                running.metrics.record(make_record(running.metrics.now() - timedelta(seconds=i)))
            assert await running.metrics.flush() == 700
        finally:
            for engine, listener in listeners:
                event.remove(engine.sync_engine, "before_cursor_execute", listener)
    assert inserts == {"metrics": 4, "shared": 0}  # 700 rows: 500 + 128 + 64 + 8
