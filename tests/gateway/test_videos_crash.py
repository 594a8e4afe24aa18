"""SIGKILL `mmstudio serve` while a video job is being submitted, polled or downloaded, start it again:
the job ends complete, the vendor accepted exactly one submission (a job is resumed by its stored handle
once the vendor has it, and submitted again only when the vendor never accepted it), the stored file is
the bytes the vendor served, and nothing half-written is left in the media store."""

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


def _env(tmp_path: Path, sora: FakeOpenAIVideosServer) -> dict[str, str]:
    config = tmp_path / "mmstudio.yaml"
    # Leases far longer than any test: the restarted server sees that the killed one (same machine) is
    # gone and resumes its jobs at once, without waiting for the leases to run out.
    config.write_text("detect_local: false\nvideos: {poll_interval_s: 0.02, lease_seconds: 600}\n")
    return {
        "MMSTUDIO_DATA_DIR": str(tmp_path / "data"),
        "MMSTUDIO_CONFIG": str(config),
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": f"{sora.url}/v1",
        "OLLAMA_HOST": f"127.0.0.1:{closed_port()}",
        "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}",
    }


def _create(url: str) -> str:
    made = httpx.post(f"{url}/api/videos", json={"prompt": "a fox", "model": "openai/sora-2"}, timeout=10)
    assert made.status_code == 202, made.text
    return str(made.json()["id"])


def _finished_after_restart(
    tmp_path: Path, env: dict[str, str], sora: FakeOpenAIVideosServer, job_id: str
) -> dict[str, object]:
    with serve_process(env, tmp_path, "second") as second:
        job = _until(f"{second.url}/api/jobs/{job_id}", lambda j: j["state"] in ("complete", "failed"))
        assert job["state"] == "complete", job
        assert sora.submissions == 1
        (output,) = job["outputs"]  # type: ignore[misc]
        data = httpx.get(f"{second.url}{output['url']}", timeout=10).content
        expected = video_bytes("720x1280", "4")
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(expected).hexdigest()
    media = tmp_path / "data" / "media"
    assert list((media / "tmp").iterdir()) == []  # the half-written download is gone
    assert len([f for f in media.rglob("*.mp4")]) == 1
    return job


def test_sigkill_while_submitting_submits_again_only_what_the_vendor_never_accepted(tmp_path: Path) -> None:
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = _env(tmp_path, sora)
        sora.hold_creates()  # the create reaches the vendor and is never answered
        with serve_process(env, tmp_path, "first") as first:
            job_id = _create(first.url)
            assert sora.create_held.wait(20)
            job = _until(f"{first.url}/api/jobs/{job_id}", lambda j: j["state"] == "submitting")
            assert job["attempts"] == [] and sora.submissions == 0
            os.kill(first.pid, signal.SIGKILL)
        sora.release()
        job = _finished_after_restart(tmp_path, env, sora, job_id)
        assert len(sora.requests_to("/v1/videos")) == 2  # one lost with the killed process, one accepted
        assert job["attemptCount"] == 2


def test_sigkill_while_downloading_fetches_it_again_without_resubmitting(tmp_path: Path) -> None:
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = _env(tmp_path, sora)
        sora.hold_downloads()  # half the video is sent, then the download hangs
        with serve_process(env, tmp_path, "first") as first:
            job_id = _create(first.url)
            assert sora.download_held.wait(20)
            _until(f"{first.url}/api/jobs/{job_id}", lambda j: j["state"] == "downloading")
            assert len(list((tmp_path / "data" / "media" / "tmp").iterdir())) == 1  # being written
            os.kill(first.pid, signal.SIGKILL)
        sora.release()
        job = _finished_after_restart(tmp_path, env, sora, job_id)
        contents = [r for r in sora.requests if r.path.endswith("/content")]
        assert len(contents) == 2 and job["attemptCount"] == 2


def test_sigkill_while_polling_resumes_and_never_resubmits(tmp_path: Path) -> None:
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = _env(tmp_path, sora)
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


def test_sigkill_with_jobs_in_every_state_ends_every_job_with_one_submission_each(tmp_path: Path) -> None:
    with FakeOpenAIVideosServer(api_key=KEY) as sora:
        env = _env(tmp_path, sora)
        with serve_process(env, tmp_path, "first") as first:

            def create(prompt: str, **extra: object) -> str:
                body = {"prompt": prompt, "model": "openai/sora-2", **extra}
                made = httpx.post(f"{first.url}/api/videos", json=body, timeout=10)
                assert made.status_code == 202, made.text
                return str(made.json()["id"])

            def state(job_id: str, *states: str) -> dict[str, object]:
                return _until(f"{first.url}/api/jobs/{job_id}", lambda j: j["state"] in states)

            ids: dict[str, str] = {}
            ids["complete"] = create("complete")
            state(ids["complete"], "complete")
            sora.script(VideoReply(outcome="failed", error_message="The render farm melted."))
            ids["failed"] = create("failed")
            state(ids["failed"], "failed")
            sora.script(VideoReply(steps=10**6))
            ids["cancelled"] = create("cancelled")
            state(ids["cancelled"], "running")
            httpx.post(f"{first.url}/api/jobs/{ids['cancelled']}/cancel", timeout=10)
            state(ids["cancelled"], "cancelled")
            sora.script(VideoReply(steps=10**6))  # polled when the process dies
            ids["running"] = create("running")
            state(ids["running"], "running")
            sora.hold_downloads()  # half sent when the process dies
            ids["downloading"] = create("downloading")
            assert sora.download_held.wait(20)
            state(ids["downloading"], "downloading")
            sora.hold_creates()  # unanswered when the process dies
            ids["submitting"] = create("submitting")
            assert sora.create_held.wait(20)
            state(ids["submitting"], "submitting")
            ids["queued"] = create("queued", after_job=ids["submitting"])  # waits for it
            state(ids["queued"], "queued")
            os.kill(first.pid, signal.SIGKILL)
        sora.release()
        for upstream in sora.jobs.values():  # the vendor finishes the one being polled meanwhile
            if upstream.prompt == "running":
                upstream.plan = replace(upstream.plan, steps=upstream.polls + 1)
        with serve_process(env, tmp_path, "second") as second:
            ended = {
                name: _until(
                    f"{second.url}/api/jobs/{job_id}",
                    lambda j: j["state"] in ("complete", "failed", "cancelled"),
                    timeout=30,
                )
                for name, job_id in ids.items()
            }
            for name in ("complete", "running", "downloading", "submitting", "queued"):
                assert ended[name]["state"] == "complete", ended[name]
                (output,) = ended[name]["outputs"]  # type: ignore[misc]
                data = httpx.get(f"{second.url}{output['url']}", timeout=10).content
                assert hashlib.sha256(data).digest() == hashlib.sha256(video_bytes("720x1280", "4")).digest()
            assert ended["failed"]["state"] == "failed" and "melted" in str(ended["failed"]["error"])
            assert ended["cancelled"]["state"] == "cancelled"
        accepted = sorted(call.values["prompt"] for call in sora.creates)
        assert accepted == sorted(ids)  # every job the vendor accepted exactly once
        assert list((tmp_path / "data" / "media" / "tmp").iterdir()) == []
