"""A procrastinate worker SIGKILLed (or SIGTERMed) with its jobs running at the vendor, on a real
PostgreSQL: `mmstudio serve --no-worker` takes 16 video jobs, two `mmstudio worker` processes (8 at once
each) both hold 8, all accepted by the vendor and polled; one worker is killed. The other one finishes
all 16: the killed worker's jobs are resumed by their stored handle (the vendor saw exactly one create
per job), its procrastinate tasks went back to `todo` (SIGKILL: left `doing`, found stalled by the
recovery pass; SIGTERM: retried at once after the leases went back, exit status 0) and ended
`succeeded` on the survivor (one task per job id, none left `doing`)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import blank_postgres_database, pg_fetch
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, VideoReply
from tests.gateway.process import serve_process
from tests.gateway.test_workers_postgres import DONE, procrastinate_tasks, studio_env, worker_process

KEY = "sk-videos-kill-0123456789abcdef"
JOBS = 16
OWNER = re.compile(r"mmstudio worker (\S+),")

pytestmark = pytest.mark.postgres


async def rows(database: str) -> list[dict[str, Any]]:
    return await pg_fetch(database, "SELECT id, state, lease_owner, upstream_handle, attempt_count FROM jobs")


def until(test: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := test()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)  # reading state, not waiting for time to pass
    return value


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_killed_worker_s_running_jobs_are_finished_by_the_other_each_created_once(
    tmp_path: Path, postgres_admin_url: str, sig: signal.Signals
) -> None:
    database = asyncio.run(blank_postgres_database(postgres_admin_url))
    config = tmp_path / "mmstudio.yaml"
    config.write_text(
        "detect_local: false\nvideos: {poll_interval_s: 0.05, lease_seconds: 2, per_provider: {openai: 8}}\n"
    )
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        sora.script(*[VideoReply(steps=10**6) for _ in range(JOBS)])  # in progress until told otherwise
        env = studio_env(tmp_path, config, database, sora, KEY)
        killed_log, survivor_log = tmp_path / "worker-killed.log", tmp_path / "worker-survivor.log"
        with (
            serve_process(env, tmp_path, "api", args=("--no-worker",)) as api,
            httpx.Client(base_url=api.url, timeout=10) as client,
            killed_log.open("w") as out,
        ):
            doomed = subprocess.Popen(
                [sys.executable, "-m", "mmstudio", "worker", "--concurrency", "8"],
                env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning", **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                with worker_process(env, survivor_log):
                    owners = [
                        until(lambda log=log: OWNER.search(log.read_text()), f"{log} up").group(1)  # type: ignore[misc]
                        for log in (killed_log, survivor_log)
                    ]
                    ids = []
                    for n in range(JOBS):
                        made = client.post(
                            "/api/videos", json={"prompt": f"shot {n}", "model": "openai/sora-2"}
                        )
                        assert made.status_code == 202, made.text
                        ids.append(made.json()["id"])

                    def all_running() -> list[dict[str, Any]] | None:
                        now = asyncio.run(rows(database))
                        polled = {r.path.rsplit("/", 1)[-1] for r in sora.requests if r.method == "GET"}
                        ok = all(r["state"] == "running" and r["upstream_handle"] in polled for r in now)
                        return now if ok and len(now) == JOBS else None

                    running = until(all_running, "all 16 running at the vendor")
                    held = {r["lease_owner"] for r in running}
                    assert held == set(owners)  # both workers hold jobs: 8 each
                    orphaned = sorted(r["id"] for r in running if r["lease_owner"] == owners[0])
                    assert len(orphaned) == 8

                    os.kill(doomed.pid, sig)
                    assert doomed.wait(30) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
                    for upstream in sora.jobs.values():  # the vendor finishes every video at its next poll
                        upstream.plan = replace(upstream.plan, steps=upstream.polls + 1)

                    def all_complete() -> bool:
                        states = client.get("/api/jobs/summary").json()["states"]
                        assert states["failed"] == 0, client.get(
                            "/api/jobs", params={"state": "failed"}
                        ).json()
                        return bool(states["complete"] == JOBS)

                    until(all_complete, "every job complete", timeout=120)
            finally:
                if doomed.poll() is None:
                    doomed.kill()
                    doomed.wait(10)
        finished = asyncio.run(rows(database))
        assert (
            sora.submissions == JOBS
        )  # one create per job: the killed worker's were resumed, not sent again
        assert sorted(c.values["prompt"] for c in sora.creates) == sorted(f"shot {n}" for n in range(JOBS))
        survivor_done = dict(DONE.findall(survivor_log.read_text()))
        assert not DONE.findall(killed_log.read_text())  # killed before it finished any
        assert sorted(survivor_done) == sorted(ids)  # the survivor finished all 16, its own and the orphans
        assert all(r["attempt_count"] == 2 for r in finished if r["id"] in orphaned)
        assert all(r["attempt_count"] == 1 for r in finished if r["id"] not in orphaned)
        assert asyncio.run(procrastinate_tasks(database)) == sorted((i, "succeeded") for i in ids)
