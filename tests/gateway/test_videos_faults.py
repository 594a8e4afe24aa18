"""Vendor faults on a video job, each through `/api/videos` on a real uvicorn with the worker running and
the fake Sora server misbehaving on cue: every job ends in the right state with a clear message (never
a 500, never a second accepted submission), and nothing half-written is left in the media store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.base import Reply
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer, VideoReply, video_bytes
from tests.gateway.conftest import OpenLive
from tests.gateway.test_videos import KEY, env_for, wait_done

FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01, retry_backoff_s=0.01))


@pytest.fixture
def sora() -> Iterator[FakeOpenAIVideosServer]:
    with FakeOpenAIVideosServer(api_key=KEY) as server:
        yield server


def _leftovers(data_dir: Path) -> list[Path]:
    tmp = data_dir / "media" / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


@pytest.mark.parametrize(
    ("fault", "state", "words", "submissions"),
    [
        ("create 429 once", "complete", None, 1),
        ("create 500 every time", "failed", "No video model accepted the job", 0),
        ("create 400", "failed", "No video model accepted the job", 0),
        ("poll 503 twice", "complete", None, 1),
        ("poll garbage once", "complete", None, 1),
        ("poll garbage always", "failed", None, 1),
        ("download cut once", "complete", None, 1),
        ("download cut always", "failed", "could not be downloaded", 1),
        ("download not a video", "failed", "could not be downloaded", 1),
        ("vendor failed", "failed", "The render farm melted.", 1),
        ("expired before download", "failed", "expired", 1),
    ],
)
async def test_each_fault_ends_the_job_clearly(
    live: OpenLive,
    sora: FakeOpenAIVideosServer,
    data_dir: Path,
    fault: str,
    state: str,
    words: str | None,
    submissions: int,
) -> None:
    running = await live(env_for(sora), config=FAST)
    error = {"error": {"message": "Upstream overloaded.", "type": "server_error", "code": None}}
    garbage = Reply(raw=b"<html>502 Bad Gateway</html>", status=200)
    if fault == "create 429 once":
        sora.script(Reply(status=429, headers={"retry-after": "0"}))
    elif fault == "create 500 every time":
        sora.script(*[Reply(status=500, error_body=error)] * 3)
    elif fault == "create 400":
        bad = {"error": {"message": "Invalid prompt.", "type": "invalid_request_error", "code": None}}
        sora.script(Reply(status=400, error_body=bad))
    elif fault == "poll 503 twice":
        sora.script_poll(*[Reply(status=503, error_body=error, headers={"retry-after": "0"})] * 2)
    elif fault == "poll garbage once":
        sora.script_poll(garbage)
    elif fault == "poll garbage always":
        sora.script_poll(*[garbage] * 20)
    elif fault == "download cut once":
        sora.script_content(Reply(drop_after=0))
    elif fault == "download cut always":
        sora.script_content(*[Reply(drop_after=0)] * 5)
    elif fault == "download not a video":
        sora.script_content(*[Reply(raw=b"this is not an mp4 at all")] * 5)
    elif fault == "expired before download":
        gone = {
            "error": {
                "message": "Video content has expired.",
                "type": "invalid_request_error",
                "code": "video_expired",
            }
        }
        sora.script_content(Reply(status=404, error_body=gone))
    elif fault == "vendor failed":
        sora.script(VideoReply(outcome="failed", error_message="The render farm melted."))
    made = await running.client.post("/api/videos", json={"prompt": "a fox", "model": "openai/sora-2"})
    assert made.status_code == 202, made.text
    done = await wait_done(running, made.json()["id"])
    job = done["job"]
    assert job["state"] == state, job
    if words is not None:
        assert words in job["error"], job
    assert sora.submissions == submissions
    if state == "complete":
        (output,) = job["outputs"]
        media = await running.client.get(output["url"])
        assert media.content == video_bytes("720x1280", "4")
    else:
        assert job["outputs"] == [] and job["error"]
    assert _leftovers(data_dir) == []
