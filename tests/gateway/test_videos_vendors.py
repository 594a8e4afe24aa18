"""Every cloud video vendor through mmstudio with the official `openai` SDK unchanged (xAI, Veo and
Runway behind `/v1/videos`, each vendor's protocol-faithful fake behind mmstudio), OpenAI's `size`
fitted to each vendor's own shape and said in the job's notes."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import av
import openai
import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.veo_server import FakeVeoServer
from tests.fakes.xai_video_server import FakeXAIVideoServer, video_bytes
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.test_videos import wait_done

FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))
XAI_KEY = "xai-videos-vendors-0123456789"
GEMINI_KEY = "gemini-videos-vendors-0123456789"
RUNWAY_KEY = "key_runway_vendors_0123456789"
OPENAI_KEY = "sk-images-vendors-0123456789abcdef"


@dataclass
class Vendor:
    model: str
    env: dict[str, str]
    submissions: Callable[[], int]
    served: Callable[[], bytes]  # the bytes the vendor served for the one video
    sent: Callable[[], dict[str, Any]]  # the shape the vendor was asked for


@pytest.fixture(params=["xai", "veo"])
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    with ExitStack() as stack:
        if request.param == "xai":
            xai = stack.enter_context(FakeXAIVideoServer(api_key=XAI_KEY))
            yield Vendor(
                "xai/grok-imagine-video",
                {"XAI_API_KEY": XAI_KEY, "XAI_BASE_URL": f"{xai.url}/v1"},
                lambda: xai.submissions,
                lambda: video_bytes("9:16", "720p", 4),
                lambda: xai.generation_bodies()[0],
            )
        else:
            veo = stack.enter_context(FakeVeoServer(api_key=GEMINI_KEY))
            yield Vendor(
                "gemini/veo-3.1-generate-preview",
                {"GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": f"{veo.url}/v1beta"},
                lambda: veo.submissions,
                lambda: veo.mp4,
                lambda: veo.create_bodies()[0]["parameters"],
            )


@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")  # the SDK's words
async def test_the_openai_sdk_drives_each_vendor_unchanged(live: OpenLive, vendor: Vendor) -> None:
    running = await live({**engines(None, None), **vendor.env}, config=FAST)
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client:
        created = await client.videos.create(
            model=vendor.model,  # type: ignore[arg-type]
            prompt="a fox in the snow",
            seconds="4",
            size="720x1280",
        )
        assert created.status == "queued"
        done = await wait_done(running, created.id)
        assert done["job"]["state"] == "complete", done["job"]
        video = await client.videos.retrieve(created.id)
        assert video.status == "completed" and video.progress == 100 and video.model == vendor.model
        data = (await client.videos.download_content(created.id)).read()
        listed = await client.videos.list()
        assert created.id in [v.id for v in listed.data]
    assert vendor.submissions() == 1
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(vendor.served()).hexdigest()
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].frames >= 1 or container.duration
    sent = vendor.sent()
    # OpenAI's 720x1280 reaches the vendor as portrait 720p, and the job says it was fitted.
    assert sent.get("aspect_ratio", sent.get("aspectRatio")) == "9:16"
    assert sent.get("resolution") == "720p"
    job = done["job"]
    assert job["notes"]["adjusted"]["resolution"] == {"asked": "720x1280", "sent": "720p"}
