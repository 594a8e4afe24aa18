"""SIGKILL `mmstudio serve` while a video job is being polled, start it again: the job is resumed by its
stored handle, the vendor saw exactly one submission, and the stored file is the bytes the vendor served."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import httpx

from tests.fakes.base import closed_port
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, VideoReply, video_bytes
from tests.gateway.process import serve_process

KEY = "sk-videos-crash-0123456789abcdef"


def _until(url: str, test: object, timeout: float = 20) -> dict[str, object]:
    assert callable(test)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(url, timeout=5).json()
        if test(job):
            return dict(job)
        time.sleep(0.05)  # polling the server's state, not waiting for time to pass
    raise AssertionError(f"{url} never got there: {job}")


def test_sigkill_while_polling_resumes_and_never_resubmits(tmp_path: Path) -> None:
    config = tmp_path / "mmstudio.yaml"
    config.write_text("detect_local: false\nvideos: {poll_interval_s: 0.02, lease_seconds: 1}\n")
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = {
            "MMSTUDIO_DATA_DIR": str(tmp_path / "data"),
            "MMSTUDIO_CONFIG": str(config),
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": f"{sora.url}/v1",
            "OLLAMA_HOST": f"127.0.0.1:{closed_port()}",
            "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        }
        sora.script(VideoReply(steps=10**6))
        with serve_process(env, tmp_path, "first") as first:
            made = httpx.post(
                f"{first.url}/api/videos", json={"prompt": "a fox", "model": "openai/sora-2"}, timeout=10
            ).json()
            job_url = f"{first.url}/api/jobs/{made['id']}"

            def polled() -> bool:
                return any(r.method == "GET" and r.path.startswith("/v1/videos/") for r in sora.requests)

            _until(job_url, lambda j: j["state"] == "running" and polled())
            os.kill(first.pid, signal.SIGKILL)
        assert sora.submissions == 1
        for upstream in sora.jobs.values():  # the vendor finishes while mmstudio is down
            upstream.plan = replace(upstream.plan, steps=upstream.polls + 1)
        with serve_process(env, tmp_path, "second") as second:
            job = _until(
                f"{second.url}/api/jobs/{made['id']}", lambda j: j["state"] in ("complete", "failed")
            )
            assert job["state"] == "complete", job
            assert sora.submissions == 1 and job["attemptCount"] == 2
            (output,) = job["outputs"]  # type: ignore[misc]
            data = httpx.get(f"{second.url}{output['url']}", timeout=10).content
            expected = video_bytes("720x1280", "4")
            assert hashlib.sha256(data).hexdigest() == hashlib.sha256(expected).hexdigest()
