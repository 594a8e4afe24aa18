"""The procrastinate side (`storage/job_queue.py`) and the `videos.engine` setting: procrastinate's schema
applied once by three processes' worth of concurrent appliers (an advisory lock; the others see it
present), a job id queued at most once however often it is enqueued, the libpq URL made from
SQLAlchemy's, and `procrastinate` on SQLite refused with the allowed values named."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mmstudio.config import StudioConfig, VideosConfig, load_config
from mmstudio.domain.jobs.types import Job
from mmstudio.errors import ConfigError
from mmstudio.settings import Settings
from mmstudio.storage.job_queue import ProcrastinateQueue, apply_schema, libpq_url


async def _procrastinate_rows(url: str) -> list[tuple[str, str]]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT queueing_lock, status::text FROM procrastinate_jobs ORDER BY id")
    finally:
        await conn.close()
    return [(row["queueing_lock"], row["status"]) for row in rows]


@pytest.mark.postgres
async def test_schema_apply_is_idempotent_with_three_concurrent_appliers(postgres_url: str) -> None:
    conninfo = libpq_url(postgres_url)
    applied = await asyncio.gather(*(apply_schema(conninfo) for _ in range(3)))
    assert sorted(applied) == [False, False, True]  # one applied it; the two others waited, found it
    assert await apply_schema(conninfo) is False
    queues = [ProcrastinateQueue(postgres_url, lease_seconds=5) for _ in range(3)]
    await asyncio.gather(*(q.open() for q in queues))  # what three processes starting at once do
    try:
        now = datetime.now(UTC)
        job = Job(id="job_once", kind="video", state="queued", request={}, created_at=now, updated_at=now)
        await asyncio.gather(*(q.enqueue(job) for q in queues), queues[0].enqueue(job))
        assert await _procrastinate_rows(postgres_url) == [("job_once", "todo")]  # queued once
    finally:
        await asyncio.gather(*(q.close() for q in queues))


def test_the_libpq_url_is_made_from_sqlalchemy_s() -> None:
    assert libpq_url("postgresql+asyncpg://u:p%40ss@db.example:5433/studio?ssl=require") == (
        "postgresql://u:p%40ss@db.example:5433/studio?sslmode=require"
    )
    assert libpq_url("postgresql://u@localhost/studio") == "postgresql://u@localhost/studio"
    with pytest.raises(ConfigError, match="PostgreSQL"):
        libpq_url("sqlite:///x.db")


def test_videos_engine_procrastinate_on_sqlite_is_a_config_error(tmp_path: Path) -> None:
    def settings(engine: str, database_url: str | None = None) -> Settings:
        videos = VideosConfig(engine=engine)  # type: ignore[arg-type]
        return Settings(data_dir=tmp_path, database_url=database_url, config=StudioConfig(videos=videos))

    with pytest.raises(ConfigError, match="allowed: auto, table, procrastinate"):
        assert settings("procrastinate").job_engine
    assert settings("auto").job_engine == "table"
    assert settings("table").job_engine == "table"
    assert settings("auto", "postgresql://u@h/db").job_engine == "procrastinate"
    assert settings("table", "postgresql://u@h/db").job_engine == "table"
    assert settings("procrastinate", "postgresql+asyncpg://u@h/db").job_engine == "procrastinate"
    path = tmp_path / "mmstudio.yaml"
    path.write_text("videos: {engine: redis}\n")
    with pytest.raises(ConfigError, match="procrastinate"):
        load_config(path)


async def test_studio_open_refuses_procrastinate_on_sqlite(tmp_path: Path) -> None:
    from mmstudio.studio import Studio

    config = StudioConfig(detect_local=False, videos=VideosConfig(engine="procrastinate"))
    with pytest.raises(ConfigError, match=r"videos\.engine: procrastinate needs PostgreSQL"):
        await Studio.open(Settings(data_dir=tmp_path / "data", config=config), environ={})
