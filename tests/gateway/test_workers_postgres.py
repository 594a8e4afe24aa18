"""Scale-out on a real PostgreSQL: `mmstudio serve --no-worker` takes 200 video jobs, two `mmstudio
worker` processes (sharing the database and the media folder, as two machines would share a volume) run
them on the procrastinate engine (`videos.engine: auto` on PostgreSQL). Every job ends complete, each
ran on exactly one worker, both workers took part, the vendor accepted each job exactly once, and
procrastinate carried each job id exactly once (one succeeded task per job)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import blank_postgres_database, pg_fetch
from tests.fakes.base import closed_port
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer
from tests.gateway.process import serve_process

KEY = "sk-videos-workers-0123456789abcdef"
JOBS = 200
DONE = re.compile(r"job (job_\S+) \(video\) complete on (\S+)")

pytestmark = pytest.mark.postgres


async def procrastinate_tasks(database: str) -> list[tuple[str, str]]:
    """(job id, status) of every procrastinate task in `database`."""
    rows = await pg_fetch(database, "SELECT args->>'job_id' AS job_id, status::text FROM procrastinate_jobs")
    return sorted((str(row["job_id"]), str(row["status"])) for row in rows)


def studio_env(
    tmp_path: Path, config: Path, database: str, sora: FakeOpenAIVideosServer, key: str
) -> dict[str, str]:
    """A studio on `database` with Sora's fake behind it and no local engine to find."""
    return {
        "MMSTUDIO_DATA_DIR": str(tmp_path / "data"),
        "MMSTUDIO_CONFIG": str(config),
        "MMSTUDIO_DATABASE_URL": database,
        "OPENAI_API_KEY": key,
        "OPENAI_BASE_URL": f"{sora.url}/v1",
        "OLLAMA_HOST": f"127.0.0.1:{closed_port()}",
        "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
    }


@contextlib.contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    full = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning", **env}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmstudio", "worker", "--concurrency", "8"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()  # SIGTERM: the worker gives its leases back and exits
            try:
                assert proc.wait(30) == 0, log_path.read_text()[-2000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)


def test_two_workers_on_postgres_run_200_jobs_each_exactly_once(
    tmp_path: Path, postgres_admin_url: str
) -> None:
    database = asyncio.run(blank_postgres_database(postgres_admin_url))
    config = tmp_path / "mmstudio.yaml"
    config.write_text(
        "detect_local: false\nvideos: {poll_interval_s: 0.02, lease_seconds: 5, per_provider: {openai: 8}}\n"
    )
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = studio_env(tmp_path, config, database, sora, KEY)
        with (
            serve_process(env, tmp_path, "api", args=("--no-worker",)) as api,
            httpx.Client(base_url=api.url, timeout=10) as client,
        ):
            logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
            with worker_process(env, logs[0]), worker_process(env, logs[1]):
                deadline = time.monotonic() + 60
                while not all("mmstudio worker" in log.read_text() for log in logs):  # both are up
                    assert time.monotonic() < deadline, [log.read_text()[-1000:] for log in logs]
                    time.sleep(0.05)  # reading the workers' logs, not waiting for time to pass
                ids = []
                for n in range(JOBS):
                    made = client.post("/api/videos", json={"prompt": f"shot {n}", "model": "openai/sora-2"})
                    assert made.status_code == 202, made.text
                    ids.append(made.json()["id"])
                deadline = time.monotonic() + 240
                while (states := client.get("/api/jobs/summary").json()["states"])["complete"] < JOBS:
                    assert states["failed"] == 0, client.get("/api/jobs", params={"state": "failed"}).json()
                    assert time.monotonic() < deadline, states
                    time.sleep(0.2)  # reading the server's state, not waiting for time to pass
        assert not DONE.search(api.log())  # `serve --no-worker` ran none of them
        ran: dict[str, list[str]] = {}
        for log in logs:
            for job_id, owner in DONE.findall(log.read_text()):
                ran.setdefault(job_id, []).append(owner)
        assert sorted(ran) == sorted(ids)
        assert all(len(owners) == 1 for owners in ran.values())  # each on exactly one worker
        owners = {owners[0] for owners in ran.values()}
        assert len(owners) == 2  # both workers took part
        assert sora.submissions == JOBS
        assert sorted(c.values["prompt"] for c in sora.creates) == sorted(f"shot {n}" for n in range(JOBS))
        assert all(re.search(r"procrastinate\s+engine", log.read_text()) for log in logs)
        assert asyncio.run(procrastinate_tasks(database)) == sorted((i, "succeeded") for i in ids)


def test_serve_with_its_own_worker_on_postgres_runs_jobs_through_procrastinate(
    tmp_path: Path, postgres_admin_url: str
) -> None:
    """`mmstudio serve` alone (its in-process worker) on PostgreSQL: the jobs go through procrastinate."""
    database = asyncio.run(blank_postgres_database(postgres_admin_url))
    config = tmp_path / "mmstudio.yaml"
    config.write_text("detect_local: false\nvideos: {poll_interval_s: 0.02, lease_seconds: 5}\n")
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = studio_env(tmp_path, config, database, sora, KEY)
        with (
            serve_process(env, tmp_path, "serve") as api,
            httpx.Client(base_url=api.url, timeout=10) as client,
        ):
            ids = []
            for n in range(5):
                made = client.post("/api/videos", json={"prompt": f"shot {n}", "model": "openai/sora-2"})
                assert made.status_code == 202, made.text
                ids.append(made.json()["id"])
            deadline = time.monotonic() + 60
            while (states := client.get("/api/jobs/summary").json()["states"])["complete"] < len(ids):
                assert states["failed"] == 0 and time.monotonic() < deadline, states
                time.sleep(0.05)  # reading the server's state, not waiting for time to pass
        assert sorted(job_id for job_id, _ in DONE.findall(api.log())) == sorted(ids)  # ran in serve
        assert sora.submissions == len(ids)
        assert asyncio.run(procrastinate_tasks(database)) == sorted((i, "succeeded") for i in ids)
