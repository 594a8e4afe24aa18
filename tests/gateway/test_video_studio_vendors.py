"""What each video vendor is sent for a full set of Video Studio settings: Generate from a project with
every control set (prompt, negative prompt, camera, duration, tunes, seed, loop, interpolate, start
frame), against each vendor's protocol-faithful fake (ComfyUI's with its Wan workflows too), and the
exact upstream body checked. A control a model lacks is written into the prompt (camera, tunes, loop) or
left out (seed, negative prompt); a loop is the start frame sent as the end frame where the model takes
one; ComfyUI's Fun Camera model gets the strongest camera move as its own parameter. The project's
`controls` map says which is which, so the page never misleads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from mmstudio.config import StudioConfig, VideosConfig
from tests.fakes.comfyui_video_server import FakeComfyUIVideoServer
from tests.fakes.images import make_image
from tests.fakes.openai_videos_server import FakeOpenAIVideosServer
from tests.fakes.runway_server import FakeRunwayServer
from tests.fakes.veo_server import FakeVeoServer
from tests.fakes.xai_video_server import FakeXAIVideoServer
from tests.gateway.conftest import OpenLive, engines
from tests.gateway.test_video_studio import BASE, _upload
from tests.gateway.test_videos import wait_done

FAST = StudioConfig(videos=VideosConfig(poll_interval_s=0.01))
WORDS = (
    "Camera: slow pan right, slight zoom out, slight tilt up. "
    "Style: lively motion, very steady footage, strongly consistent subjects and scene."
)
LOOP = " A seamless loop: the last frame matches the first."
ALL_WORDS = f"a fox in the snow. {WORDS}{LOOP}"  # camera, tunes and loop all in words
SETTINGS: dict[str, Any] = {
    "prompt": "a fox in the snow",
    "negative_prompt": "blurry",
    "pan_x": 0.5,
    "zoom": -0.3,
    "tilt": 0.2,
    "stability": 0.5,
    "amplitude": 0.5,
    "coherence": 0.5,
    "seed": 7,
    "loop": True,
    "interpolate": False,
}
IMAGE = "<the start frame>"


@dataclass
class Vendor:
    model: str
    env: dict[str, str]
    sent: Callable[[], dict[str, Any]]  # the one create body the vendor received, images as IMAGE
    body: dict[str, Any]  # what it must be
    controls: dict[str, str]  # the marks the page shows for this model


def _marks(**native: str) -> dict[str, str]:
    """The controls map: the given marks over those of a model that takes nothing natively."""
    base = {
        "camera": "via prompt",
        "tunes": "via prompt",
        "loop": "via prompt",
        "interpolate": "applied at export",
        "duration": "native",
        "seed": "not used by this model",
        "negativePrompt": "not used by this model",
        "startFrame": "native",
        "endFrame": "not used by this model",
    }
    return {**base, **{key.replace("_f", "F").replace("_p", "P"): v for key, v in native.items()}}


def _inline(value: str) -> str:
    assert value.startswith("data:image/png;base64,"), value[:40]
    return IMAGE


@pytest.fixture(params=["xai", "veo", "runway", "sora", "comfyui-camera", "comfyui-t2v"])
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    with ExitStack() as stack:
        if request.param == "xai":
            xai = stack.enter_context(FakeXAIVideoServer(api_key="xai-studio-0123456789"))
            env = {"XAI_API_KEY": "xai-studio-0123456789", "XAI_BASE_URL": f"{xai.url}/v1"}

            def xai_sent() -> dict[str, Any]:
                body = dict(xai.generation_bodies()[0])
                body["image"] = {"url": _inline(body["image"]["url"])}
                return body

            yield Vendor(
                "xai/grok-imagine-video",
                env,
                xai_sent,
                {
                    "model": "grok-imagine-video",
                    "prompt": ALL_WORDS,
                    "duration": 1,
                    "aspect_ratio": "16:9",
                    "resolution": "720p",
                    "image": {"url": IMAGE},
                },
                _marks(),
            )
        elif request.param == "veo":
            veo = stack.enter_context(FakeVeoServer(api_key="gemini-studio-0123456789"))
            env = {"GEMINI_API_KEY": "gemini-studio-0123456789", "GEMINI_BASE_URL": f"{veo.url}/v1beta"}

            def veo_sent() -> dict[str, Any]:
                body = veo.create_bodies()[0]
                (instance,) = body["instances"]
                for key in ("image", "lastFrame"):
                    assert instance[key]["mimeType"] == "image/png" and instance[key]["bytesBase64Encoded"]
                    instance[key] = IMAGE
                return dict(body)

            yield Vendor(
                "gemini/veo-3.1-generate-preview",
                env,
                veo_sent,
                {
                    # the loop: the start frame is the last frame too
                    "instances": [
                        {"prompt": f"a fox in the snow. {WORDS}", "image": IMAGE, "lastFrame": IMAGE}
                    ],
                    "parameters": {
                        "aspectRatio": "16:9",
                        "resolution": "720p",
                        "durationSeconds": 4,
                        "negativePrompt": "blurry",
                    },
                },
                _marks(loop="native", end_frame="native", negative_prompt="native"),
            )
        elif request.param == "runway":
            runway = stack.enter_context(FakeRunwayServer(api_key="key_runway_studio_0123456789"))
            env = {
                "RUNWAYML_API_SECRET": "key_runway_studio_0123456789",
                "RUNWAY_BASE_URL": f"{runway.url}/v1",
            }

            def runway_sent() -> dict[str, Any]:
                body = dict(runway.create_bodies()[0])
                body["promptImage"] = [
                    {**frame, "uri": _inline(frame["uri"])} for frame in body["promptImage"]
                ]
                return body

            yield Vendor(
                "runway/gen3a_turbo",
                env,
                runway_sent,
                {
                    "model": "gen3a_turbo",
                    "promptImage": [
                        {"uri": IMAGE, "position": "first"},
                        {"uri": IMAGE, "position": "last"},  # the loop
                    ],
                    "promptText": f"a fox in the snow. {WORDS}",
                    "ratio": "1280:768",
                    "duration": 5,
                    "seed": 7,
                },
                _marks(loop="native", end_frame="native", seed="native"),
            )
        elif request.param == "sora":
            sora = stack.enter_context(FakeOpenAIVideosServer(api_key="sk-studio-0123456789abcdef"))
            env = {"OPENAI_API_KEY": "sk-studio-0123456789abcdef", "OPENAI_BASE_URL": f"{sora.url}/v1"}
            yield Vendor(
                "openai/sora-2",
                env,
                lambda: _with_reference(sora),
                {
                    "prompt": ALL_WORDS,
                    "model": "sora-2",
                    "seconds": "4",
                    "size": "1280x720",
                    "input_reference": "image image/png 1280x720",  # fitted to the video's size
                },
                _marks(),
            )
        else:
            comfy = stack.enter_context(FakeComfyUIVideoServer())
            env = {"COMFYUI_URL": comfy.url}
            camera = request.param == "comfyui-camera"
            yield Vendor(
                "comfyui/wan-camera" if camera else "comfyui/wan-t2v",
                env,
                lambda: _comfy_sent(comfy, camera),
                {
                    "positive": (
                        # the strongest move (pan right) is Fun Camera's own; the others are words
                        "a fox in the snow. Camera: slight zoom out, slight tilt up. Style: lively motion, "
                        f"very steady footage, strongly consistent subjects and scene.{LOOP}"
                        if camera
                        else ALL_WORDS
                    ),
                    "negative": "blurry",
                    "seed": 7,
                    "size": [832, 480, 17],  # 1 s at Wan's 16 fps: 17 frames
                    "fps": 16.0,
                    **({"camera": ["Pan Right", 1.0], "image": IMAGE} if camera else {}),
                },
                _marks(camera="native + via prompt", seed="native", negative_prompt="native")
                if camera
                else _marks(seed="native", negative_prompt="native", start_frame="not used by this model"),
            )


def _comfy_sent(comfy: FakeComfyUIVideoServer, camera: bool) -> dict[str, Any]:
    """The graph's filled slots: prompts, seed, size and length, rate, camera and start image."""
    graph = comfy.requests_to("/prompt")[0].json()["prompt"]
    shape = graph["60" if camera else "40"]["inputs"]
    sent = {
        "positive": graph["6"]["inputs"]["text"],
        "negative": graph["7"]["inputs"]["text"],
        "seed": graph["3"]["inputs"]["seed"],
        "size": [shape["width"], shape["height"], shape["length"]],
        "fps": graph["57"]["inputs"]["fps"],
    }
    if camera:
        sent["camera"] = [shape["camera_pose"], shape["speed"]]
        (name,) = comfy.inputs  # the start frame, uploaded to ComfyUI's input folder
        assert graph["52"]["inputs"]["image"] == name
        sent["image"] = IMAGE
    return sent


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


async def test_a_full_set_of_settings_reaches_each_vendor_exactly_as_its_controls_say(
    live: OpenLive, vendor: Vendor
) -> None:
    running = await live({**engines(None, None), **vendor.env}, config=FAST)
    models = {m["id"]: m for m in (await running.client.get("/api/videos/models")).json()["models"]}
    caps = models[vendor.model]["capabilities"]
    pid = (await running.client.post(BASE, json={"name": "full", "aspect_ratio": "16:9"})).json()["id"]
    start = await _upload(running, make_image(64, 36), "start.png", "image/png")
    settings = {
        **SETTINGS,
        "model": vendor.model,
        "duration_s": caps["durations"][0],
        "start_frame": start if caps["imageToVideo"] else None,
    }
    patched = await running.client.patch(f"{BASE}/{pid}", json=settings)
    assert patched.status_code == 200, patched.text
    assert patched.json()["controls"] == vendor.controls
    made = await running.client.post(f"{BASE}/{pid}/generate")
    assert made.status_code == 202, made.text
    job = (await wait_done(running, made.json()["job"]["id"]))["job"]
    assert job["state"] == "complete", (job["error"], job["notes"])
    assert vendor.sent() == vendor.body
    text = repr(vendor.sent())
    for unused in ("stability", "amplitude", "coherence", "interpolat"):
        assert unused not in text  # no vendor has such a parameter: they are words or ours
    # the clip keeps the settings it was made with, the seed among them
    (clip,) = (await running.client.get(f"{BASE}/{pid}")).json()["clips"]
    assert clip["settings"]["seed"] == 7 and clip["settings"]["loop"] is True
