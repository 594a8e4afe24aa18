"""What each video vendor is sent for a full set of Video Studio settings: Generate from a project with
every control set (prompt, negative prompt, camera, duration, tunes, seed, loop, interpolate, start and
end frame), against each vendor's protocol-faithful fake, and the exact upstream body checked. Controls
a model lacks are written into the prompt (camera) or left out (and the job's notes say so); the
project's `controls` map says which is which, so the page never misleads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.images import make_image
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer
from tests.fakes.runway_server import FakeRunwayServer
from tests.fakes.veo_server import FakeVeoServer
from tests.fakes.xai_video_server import FakeXAIVideoServer
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.test_video_studio import BASE, _upload
from tests.gateway.test_videos import wait_done

FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))
CAMERA_WORDS = "a fox in the snow. Camera: slow pan right, slight zoom out."


@dataclass
class Vendor:
    model: str
    env: dict[str, str]
    sent: Callable[[], dict[str, Any]]  # the one create body the vendor received


@pytest.fixture(params=["xai", "veo", "runway", "sora"])
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    with ExitStack() as stack:
        if request.param == "xai":
            xai = stack.enter_context(FakeXAIVideoServer(api_key="xai-studio-0123456789"))
            env = {"XAI_API_KEY": "xai-studio-0123456789", "XAI_BASE_URL": f"{xai.url}/v1"}
            yield Vendor("xai/grok-imagine-video", env, lambda: xai.generation_bodies()[0])
        elif request.param == "veo":
            veo = stack.enter_context(FakeVeoServer(api_key="gemini-studio-0123456789"))
            env = {"GEMINI_API_KEY": "gemini-studio-0123456789", "GEMINI_BASE_URL": f"{veo.url}/v1beta"}
            yield Vendor("gemini/veo-3.1-generate-preview", env, lambda: veo.create_bodies()[0])
        elif request.param == "runway":
            runway = stack.enter_context(FakeRunwayServer(api_key="key_runway_studio_0123456789"))
            env = {
                "RUNWAYML_API_SECRET": "key_runway_studio_0123456789",
                "RUNWAY_BASE_URL": f"{runway.url}/v1",
            }
            yield Vendor("runway/gen4_turbo", env, lambda: runway.create_bodies()[0])
        else:
            sora = stack.enter_context(FakeOpenAIVideosServer(api_key="sk-studio-0123456789abcdef"))
            env = {"OPENAI_API_KEY": "sk-studio-0123456789abcdef", "OPENAI_BASE_URL": f"{sora.url}/v1"}
            yield Vendor("openai/sora-2", env, lambda: _with_reference(sora))


def _with_reference(sora: FakeOpenAIVideosServer) -> dict[str, Any]:
    """Sora's form fields, and its `input_reference` file as "image/png 1280x720"."""
    import io

    from PIL import Image

    call = sora.creates[0]
    sent: dict[str, Any] = dict(call.values)
    if call.reference is not None:
        size = Image.open(io.BytesIO(call.reference)).size
        sent["input_reference"] = f"image {call.reference_type} {size[0]}x{size[1]}"
    return sent


async def test_a_full_set_of_settings_reaches_each_vendor_as_its_controls_say(
    live: OpenLive, vendor: Vendor
) -> None:
    running = await live({**engines(None, None), **vendor.env}, config=FAST)
    models = {m["id"]: m for m in (await running.client.get("/api/videos/models")).json()["models"]}
    caps = models[vendor.model]["capabilities"]
    pid = (await running.client.post(BASE, json={"name": "full", "aspect_ratio": "16:9"})).json()["id"]
    start = await _upload(running, make_image(64, 36), "start.png", "image/png")
    settings: dict[str, Any] = {
        "model": vendor.model,
        "prompt": "a fox in the snow",
        "negative_prompt": "blurry",
        "pan_x": 0.5,
        "zoom": -0.3,
        "duration_s": caps["durations"][0],
        "stability": 0.5,
        "amplitude": 0.5,
        "coherence": 0.5,
        "seed": 7,
        "loop": True,
        "interpolate": False,
        "start_frame": start if caps["imageToVideo"] else None,
    }
    patched = await running.client.patch(f"{BASE}/{pid}", json=settings)
    assert patched.status_code == 200, patched.text
    controls = patched.json()["controls"]
    assert (
        controls["camera"] == "via prompt"
        and controls["tunes"] == controls["loop"] == "not used by this model"
    )
    assert controls["seed"] == ("native" if caps["seed"] else "not used by this model")
    assert controls["startFrame"] == ("native" if caps["imageToVideo"] else "not used by this model")
    made = await running.client.post(f"{BASE}/{pid}/generate")
    assert made.status_code == 202, made.text
    job = (await wait_done(running, made.json()["job"]["id"]))["job"]
    assert job["state"] == "complete", (job["error"], job["notes"])
    sent = vendor.sent()
    text = repr(sent)
    assert CAMERA_WORDS in text  # the camera, in words, inside the prompt the vendor got
    assert ("7" in text and "seed" in text) == caps["seed"]  # the seed only where the model takes one
    for unused in ("stability", "amplitude", "coherence", "interpolat", "loop"):
        assert unused not in text  # never sent: no vendor here has such a parameter
    assert ("blurry" in text) == (vendor.model.startswith("gemini/"))  # only Veo takes a negative prompt
    if caps["imageToVideo"]:
        # the start frame went along: inline as a data URI or base64 (xAI, Veo, Runway) or as a file of
        # exactly the video's size (Sora refuses any other)
        assert "base64" in text.lower() or "image image/png 1280x720" in text, text[:300]
    notes = job["notes"]
    if not caps["seed"]:
        assert "seed" in notes.get("dropped", []), notes
