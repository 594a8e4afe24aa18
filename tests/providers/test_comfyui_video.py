"""ComfyUIVideoAdapter against the fake ComfyUI (video nodes) over real HTTP and a real websocket."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import av
import httpx
import pytest

from mmstudio.errors import (
    BadRequest,
    InvalidRequest,
    ProviderConnectionError,
    ProviderUnavailable,
    ResultExpired,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media import LOCAL_VIDEO_MODELS, create_video_adapter, local_video_models
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.comfyui import load_workflow
from mmstudio.providers.media.comfyui_video import (
    COMFYUI_VIDEO_MODELS,
    COMFYUI_VIDEO_TEMPLATES,
    ComfyUIVideoAdapter,
    frames_for,
    load_video_workflow,
    video_outputs,
)
from mmstudio.providers.media.video_base import CameraMove, VideoAdapter, VideoRequest, VideoStatus
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import closed_port
from tests.fakes.comfyui_video_server import ComfyReply, FakeComfyUIVideoServer
from tests.fakes.images import make_image

START = InputImage(make_image(96, 64, "PNG", (200, 120, 40)), "image/png", "start.png")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeComfyUIVideoServer]:
    with FakeComfyUIVideoServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeComfyUIVideoServer) -> Iterator[None]:
    server.reset()
    yield
    server.settle()  # never leave a held or queued prompt behind for the next test


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(client: httpx.AsyncClient, base_url: str) -> ComfyUIVideoAdapter:
    return ComfyUIVideoAdapter(EndpointConfig(base_url=base_url, provider="comfyui", timeout=10.0), client)


@pytest.fixture
async def adapter(
    client: httpx.AsyncClient, server: FakeComfyUIVideoServer
) -> AsyncIterator[ComfyUIVideoAdapter]:
    made = make(client, server.url)
    yield made
    await made.aclose()


def ask(prompt: str = "a paper boat drifting down a rainy street", **kwargs: Any) -> VideoRequest:
    kwargs.setdefault("model", "wan-t2v")
    kwargs.setdefault("duration_s", 1)
    kwargs.setdefault("extra", {"steps": 4})
    return VideoRequest(prompt=prompt, **kwargs)


def graph_of(server: FakeComfyUIVideoServer, index: int = 0) -> dict[str, Any]:
    graph: dict[str, Any] = server.requests_to("/prompt")[index].json()["prompt"]
    return graph


async def wait(server: FakeComfyUIVideoServer, predicate: Callable[[Any], bool]) -> None:
    await asyncio.to_thread(server.wait_for, predicate)


async def poll_until(
    adapter: ComfyUIVideoAdapter,
    handle: str,
    done: Callable[[VideoStatus], bool],
    model: str = "wan-t2v",
    seen: list[VideoStatus] | None = None,
) -> VideoStatus:
    """Poll as the job handler does, without its sleep: each poll is a real round trip, so the
    adapter's websocket reader runs between them."""
    for _ in range(2000):
        status = await adapter.poll(handle, model)
        if seen is not None:
            seen.append(status)
        if done(status):
            return status
    raise AssertionError(f"prompt {handle} never reached the awaited state (last: {status})")


def finished(status: VideoStatus) -> bool:
    return status.state not in ("queued", "running")


async def fetch(
    adapter: ComfyUIVideoAdapter, handle: str, status: VideoStatus, model: str = "wan-t2v"
) -> bytes:
    return b"".join([chunk async for chunk in adapter.download(handle, status, model)])


def probe_video(data: bytes) -> tuple[str, int, int, int, float]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = len(list(container.decode(stream)))
        return stream.codec_context.name, stream.width, stream.height, frames, float(stream.average_rate or 0)


async def queue_foreign(server: FakeComfyUIVideoServer) -> str:
    """Another user's image prompt, queued without a client id (its messages go to every socket)."""
    graph = load_workflow("txt2img").fill({"prompt": "someone else's", "steps": 3, "width": 64, "height": 64})
    async with httpx.AsyncClient() as other:
        answer = await other.post(f"{server.url}/prompt", json={"prompt": graph})
    assert answer.status_code == 200, answer.text
    prompt_id: str = answer.json()["prompt_id"]
    return prompt_id


# --- the model data and the templates ----------------------------------------------------


def test_capability_table() -> None:
    assert list(COMFYUI_VIDEO_MODELS) == ["wan-t2v", "wan-i2v", "wan-camera"]
    t2v, i2v, camera = (COMFYUI_VIDEO_MODELS[name] for name in ("wan-t2v", "wan-i2v", "wan-camera"))
    for caps in (t2v, i2v, camera):
        assert caps.durations == (1, 2, 3, 4, 5) and caps.resolutions == ("480p",)
        assert caps.aspect_ratios == ("16:9", "9:16", "1:1", "4:3", "3:4")
        assert caps.seed and caps.negative_prompt and not caps.end_frame and not caps.loop
        assert caps.price_per_second_usd is None and caps.key_env is None
        assert caps.poll_interval_s == 1.0 and caps.typical_seconds > 0
    assert not t2v.camera_motion and not i2v.camera_motion
    # Fun Camera's poses: pans, zooms and rolls each way, no tilts (those go into the prompt)
    assert set(camera.camera_moves) == {
        f"{kind}_{way}"
        for kind, ways in (("pan", ("up", "down", "left", "right")), ("zoom", ("in", "out")))
        for way in ways
    } | {"roll_left", "roll_right"}
    assert not t2v.image_to_video and i2v.image_to_video and camera.image_to_video
    assert COMFYUI_VIDEO_TEMPLATES["wan-i2v"].requires_start_image
    assert COMFYUI_VIDEO_TEMPLATES["wan-camera"].requires_start_image


def test_the_templates_use_comfyuis_own_nodes() -> None:
    t2v, i2v = load_video_workflow("video_wan_t2v"), load_video_workflow("video_wan_i2v")
    assert {n["class_type"] for n in t2v.graph.values()} == {
        "KSampler",
        "CLIPTextEncode",
        "VAEDecode",
        "UNETLoader",
        "CLIPLoader",
        "VAELoader",
        "EmptyHunyuanLatentVideo",
        "ModelSamplingSD3",
        "CreateVideo",
        "SaveVideo",
    }
    assert {n["class_type"] for n in i2v.graph.values()} - {n["class_type"] for n in t2v.graph.values()} == {
        "WanImageToVideo",
        "CLIPVisionLoader",
        "CLIPVisionEncode",
        "LoadImage",
    }
    assert t2v.slots["frames"] == (("40", "inputs", "length"),) and t2v.outputs == ("58",)
    assert i2v.slots["start_image"] == (("52", "inputs", "image"),) and not t2v.has("start_image")
    assert i2v.graph["37"]["inputs"]["unet_name"] == "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors"
    camera = load_video_workflow("video_wan_camera")
    kinds = {n["class_type"] for n in camera.graph.values()}
    assert kinds - {n["class_type"] for n in i2v.graph.values()} == {
        "WanCameraEmbedding",
        "WanCameraImageToVideo",
    }
    assert "WanImageToVideo" not in kinds
    assert camera.slots["camera_pose"] == (("60", "inputs", "camera_pose"),)
    assert camera.slots["camera_speed"] == (("60", "inputs", "speed"),)
    assert camera.slots["frames"] == (("60", "inputs", "length"),)  # the sampler's latent follows its links
    assert camera.graph["50"]["inputs"]["camera_conditions"] == ["60", 0]
    assert camera.graph["37"]["inputs"]["unet_name"] == "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors"


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"),
    [(5, 16, 81), (1, 16, 17), (2, 16, 33), (5, 24, 121), (1, 1, 5), (3, 25, 77)],
)
def test_frames_are_a_whole_number_of_latents(seconds: int, fps: float, frames: int) -> None:
    assert frames_for(seconds, fps, 4) == frames and (frames - 1) % 4 == 0


def test_video_outputs_of_savevideo_and_video_helper_suite() -> None:
    entry = {
        "outputs": {
            "9": {"images": [{"filename": "still_00001_.png", "subfolder": "", "type": "output"}]},
            "58": {
                "images": [{"filename": "a_00002_.mp4", "subfolder": "video", "type": "output"}],
                "animated": [True],
            },
            "60": {
                "gifs": [
                    {
                        "filename": "vhs_00001.mp4",
                        "subfolder": "",
                        "type": "output",
                        "format": "video/h264-mp4",
                        "frame_rate": 16.0,
                    },
                    {"filename": "vhs_00001.webm", "subfolder": "", "type": "temp"},
                ]
            },
            "61": {
                "images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}],
                "animated": [True],
            },
        }
    }
    assert video_outputs(entry) == [
        {"filename": "a_00002_.mp4", "subfolder": "video", "type": "output"},
        {"filename": "vhs_00001.mp4", "subfolder": "", "type": "output", "frame_rate": 16.0},
    ]
    assert video_outputs(entry, ("60",))[1] == {"filename": "vhs_00001.webm", "subfolder": "", "type": "temp"}
    assert video_outputs({"outputs": {"61": entry["outputs"]["61"]}}) == []


async def test_it_is_a_registered_video_adapter(
    client: httpx.AsyncClient, server: FakeComfyUIVideoServer
) -> None:
    adapter = create_video_adapter("comfyui_video", EndpointConfig(base_url=server.url), client)
    assert isinstance(adapter, ComfyUIVideoAdapter) and isinstance(adapter, VideoAdapter)
    assert adapter.protocol == "comfyui_video"
    assert LOCAL_VIDEO_MODELS["comfyui"][0] == "comfyui_video"
    assert local_video_models("comfyui") == COMFYUI_VIDEO_MODELS and local_video_models("ollama") == {}


# --- text to video, end to end -----------------------------------------------------------


async def test_text_to_video_end_to_end(adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer) -> None:
    server.hold(after_step=2)
    handle = await adapter.submit(ask(duration_s=2, aspect_ratio="16:9", resolution="480p", seed=42))
    assert server.submissions == 1
    body = server.requests_to("/prompt")[0].json()
    assert body["prompt_id"] == handle and server.ws_clients == [body["client_id"]]
    assert [r.path for r in server.requests] == ["/prompt"]  # one request: nothing uploaded, no retry

    seen: list[VideoStatus] = []
    held = await poll_until(adapter, handle, lambda s: s.progress == 50.0, seen=seen)
    assert held.state == "running" and (held.info["step"], held.info["steps"]) == (2, 4)
    assert {s.state for s in seen} <= {"queued", "running"}
    server.release()
    done = await poll_until(adapter, handle, finished, seen=seen)

    progress = [s.progress for s in seen]
    # 0 until the first step, then each step seen (at most 99 while running), 100 once done; never back.
    assert set(progress) <= {0.0, 25.0, 50.0, 75.0, 99.0, 100.0} and 50.0 in progress
    assert progress == sorted(p or 0.0 for p in progress) and progress[-1] == 100.0
    assert done.state == "succeeded" and done.progress == 100.0 and done.error is None
    assert done.info["seed"] == 42 and done.info["workflow"] == "video_wan_t2v"
    assert (done.info["frames"], done.info["fps"], done.info["width"], done.info["height"]) == (
        33,
        16.0,
        832,
        480,
    )
    assert done.duration_s == pytest.approx(33 / 16)
    assert done.info["output"]["subfolder"] == "video" and done.info["output"]["type"] == "output"
    assert not adapter.feed.live  # its last prompt ended: the socket is closed

    data = await fetch(adapter, handle, done)
    (served,) = server.video_files().values()
    assert data == served and hashlib.sha256(data).hexdigest() == hashlib.sha256(served).hexdigest()
    assert probe_video(data) == ("h264", 832, 480, 33, 16.0)
    (view,) = server.requests_to("/view")
    assert view.query == {"filename": done.info["output"]["filename"], "subfolder": "video", "type": "output"}
    assert server.submissions == 1


async def test_exactly_what_is_sent(adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer) -> None:
    request = ask(
        duration_s=5,
        aspect_ratio="9:16",
        resolution="480p",
        seed=2**40,
        negative_prompt="blurry, static",
        extra={"fps": 24, "steps": 3, "cfg": 5.0, "shift": 5.0, "not_a_slot": True},
    )
    handle = await adapter.submit(request)
    graph = graph_of(server)
    assert graph["6"]["inputs"]["text"] == "a paper boat drifting down a rainy street"
    assert graph["7"]["inputs"]["text"] == "blurry, static"
    assert graph["40"]["inputs"] == {"width": 480, "height": 832, "length": 121, "batch_size": 1}
    assert graph["57"]["inputs"]["fps"] == 24.0
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (2**40, 3, 5.0)
    assert graph["48"]["inputs"]["shift"] == 5.0
    assert graph["37"]["inputs"] == {
        "unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
        "weight_dtype": "default",
    }
    assert graph["58"]["inputs"]["format"] == "mp4" and "mmstudio" not in graph
    assert all("not_a_slot" not in node["inputs"] for node in graph.values())
    done = await poll_until(adapter, handle, finished)
    assert (done.info["frames"], done.info["fps"], done.info["seed"]) == (121, 24.0, 2**40)
    assert probe_video(await fetch(adapter, handle, done))[1:4] == (480, 832, 121)


async def test_unset_fields_keep_the_template_and_the_seed_is_drawn(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    handle = await adapter.submit(ask(duration_s=None, extra={"steps": 1}))
    graph = graph_of(server)
    assert graph["40"]["inputs"] == {"width": 832, "height": 480, "length": 81, "batch_size": 1}
    assert graph["7"]["inputs"]["text"].startswith("色调艳丽")  # Wan's recommended negative prompt
    seed = graph["3"]["inputs"]["seed"]
    assert 0 <= seed < 2**32
    done = await poll_until(adapter, handle, finished)
    assert done.info["seed"] == seed and done.duration_s == pytest.approx(81 / 16)

    await adapter.submit(ask(seed=-1))
    assert graph_of(server, 1)["3"]["inputs"]["seed"] != -1


# --- image to video ----------------------------------------------------------------------


async def test_image_to_video_uploads_the_start_image(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    handle = await adapter.submit(ask(model="wan-i2v", start_image=START, aspect_ratio="1:1", seed=7))
    (upload,) = server.requests_to("/upload/image")
    assert b'name="overwrite"\r\n\r\ntrue' in upload.body
    (name,) = server.inputs
    assert server.inputs[name] == START.data and name.startswith("mmstudio-") and name.endswith(".png")
    assert server.requests.index(upload) < server.requests.index(server.requests_to("/prompt")[0])
    graph = graph_of(server)
    assert graph["52"] == {
        "class_type": "LoadImage",
        "inputs": {"image": name},
        "_meta": {"title": "Start image"},
    }
    assert graph["50"]["inputs"]["start_image"] == ["52", 0]
    assert (graph["50"]["inputs"]["width"], graph["50"]["inputs"]["height"]) == (624, 624)

    done = await poll_until(adapter, handle, finished, model="wan-i2v")
    assert done.state == "succeeded" and done.info["workflow"] == "video_wan_i2v"
    assert probe_video(await fetch(adapter, handle, done, "wan-i2v"))[1:4] == (624, 624, 17)


async def test_a_camera_move_is_fun_cameras_pose_and_speed(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    move = CameraMove("pan_left", 0.5)
    handle = await adapter.submit(ask(model="wan-camera", start_image=START, duration_s=1, camera=move))
    graph = graph_of(server)
    assert graph["60"]["inputs"]["camera_pose"] == "Pan Left" and graph["60"]["inputs"]["speed"] == 1.0
    assert (graph["60"]["inputs"]["width"], graph["60"]["inputs"]["length"]) == (832, 17)
    done = await poll_until(adapter, handle, finished, model="wan-camera")
    assert done.state == "succeeded" and done.info["workflow"] == "video_wan_camera"
    assert server.camera_moves == [("Pan Left", 1.0)]  # the embedding ComfyUI ran
    assert probe_video(await fetch(adapter, handle, done, "wan-camera"))[1:4] == (832, 480, 17)

    await adapter.submit(ask(model="wan-camera", start_image=START, camera=CameraMove("roll_right", 1.0)))
    assert graph_of(server, 1)["60"]["inputs"]["camera_pose"] == "ClockWise (CW)"
    assert graph_of(server, 1)["60"]["inputs"]["speed"] == 2.0
    await adapter.submit(ask(model="wan-camera", start_image=START))  # no move: a still camera
    assert graph_of(server, 2)["60"]["inputs"]["camera_pose"] == "Static"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ask(model="wan-camera", start_image=START, camera=CameraMove("tilt_up", 0.5)), "camera"),
        (ask(camera=CameraMove("pan_left", 0.5)), "camera"),
        (ask(model="wan-i2v"), "start_image"),
        (ask(start_image=START), "start_image"),
        (ask(model="wan-i2v", start_image=InputImage(b"%PDF-", "application/pdf")), "start_image"),
        (ask(end_image=START), "end_image"),
        (ask(duration_s=7), "duration_s"),
        (ask(aspect_ratio="21:9"), "aspect_ratio"),
        (ask(resolution="720p"), "resolution"),
        (ask(seed=-2), "seed"),
        (ask(seed=2**64), "seed"),
        (ask(extra={"fps": 0}), "fps"),
        (ask(extra={"fps": "fast"}), "fps"),
        (ask(extra={"steps": 0}), "steps"),
        (ask(model="ltx-video"), "model"),
    ],
)
async def test_bad_requests_are_refused_before_sending(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer, request_: VideoRequest, field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await adapter.submit(request_)
    assert caught.value.field == field
    assert server.requests == [] and server.ws_clients == [] and server.submissions == 0


# --- failures ----------------------------------------------------------------------------


async def test_an_execution_error_names_the_node_and_the_exception(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.script(ComfyReply(fail_node="3"))
    handle = await adapter.submit(ask())
    failed = await poll_until(adapter, handle, finished)
    assert failed.state == "failed" and not failed.refused
    assert failed.error == (
        "comfyui: node 3 (KSampler) failed: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
        "2.00 GiB (the GPU ran out of memory: try a shorter video or a smaller size)"
    )
    assert failed.info["seed"] == graph_of(server)["3"]["inputs"]["seed"]

    server.script(
        ComfyReply(fail_node="VAEDecode", exception_type="RuntimeError", exception_message="bad vae")
    )
    handle = await adapter.submit(ask())
    failed = await poll_until(adapter, handle, finished)
    assert failed.error == "comfyui: node 8 (VAEDecode) failed: RuntimeError: bad vae"


async def test_a_model_file_that_is_not_installed_is_a_bad_request(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.unets = ["wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors"]
    with pytest.raises(BadRequest) as caught:
        await adapter.submit(ask())
    message = caught.value.message
    assert "Prompt outputs failed validation" in message
    assert "node 37 (UNETLoader): Value not in list" in message and "wan2.1_t2v_1.3B_fp16" in message
    assert server.submissions == 0 and not server.pending


async def test_comfyui_offline(client: httpx.AsyncClient) -> None:
    offline = make(client, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderConnectionError, match="refused the connection"):
        await offline.submit(ask())
    with pytest.raises(ProviderConnectionError):
        await offline.poll("0b7a4c5e-3f51-4c3e-9a41-6f1e8c2d9b10", "wan-t2v")
    probe = await offline.probe()
    assert not probe.ok and probe.error is not None and "refused" in probe.error
    assert not offline.feed.live and not offline.feed.watched


async def test_server_errors_and_dropped_connections_on_submit(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.fail("/prompt", 500, "drop", "accept_then_drop")
    with pytest.raises(ProviderUnavailable, match="HTTP 500") as caught:
        await adapter.submit(ask())
    assert caught.value.retryable and server.submissions == 0
    with pytest.raises(ProviderConnectionError, match="dropped the connection"):
        await adapter.submit(ask())
    assert server.submissions == 0
    # Accepted, then the answer was cut: the one case where a retry would run a second prompt.
    with pytest.raises(ProviderConnectionError, match="dropped the connection"):
        await adapter.submit(ask())
    assert server.submissions == 1 and not adapter.feed.watched


async def test_a_failed_poll_is_retryable_and_the_next_one_reads_on(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    handle = await adapter.submit(ask())
    await wait(server, lambda s: handle in s.history)
    server.fail("/history", 500, "drop")
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.poll(handle, "wan-t2v")
    assert caught.value.retryable
    with pytest.raises(ProviderConnectionError):
        await adapter.poll(handle, "wan-t2v")
    assert (await adapter.poll(handle, "wan-t2v")).state == "succeeded"


async def test_a_broken_download_and_a_deleted_file(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    handle = await adapter.submit(ask())
    done = await poll_until(adapter, handle, finished)
    server.fail("/view", "drop", 500)
    with pytest.raises(ProviderConnectionError):
        await fetch(adapter, handle, done)
    with pytest.raises(ProviderUnavailable):
        await fetch(adapter, handle, done)
    (served,) = server.video_files().values()
    assert await fetch(adapter, handle, done) == served

    server.files.clear()  # someone emptied ComfyUI's output folder
    with pytest.raises(ResultExpired, match="no longer has"):
        await fetch(adapter, handle, done)


async def test_a_status_from_before_a_restart_downloads_from_the_history(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer, client: httpx.AsyncClient
) -> None:
    handle = await adapter.submit(ask())
    await wait(server, lambda s: handle in s.history)
    restarted = make(client, server.url)  # a new process: another client id, no socket for the prompt
    data = await fetch(restarted, handle, VideoStatus(state="succeeded"))
    assert data == next(iter(server.video_files().values()))


async def test_a_prompt_that_left_the_queue_unrun_is_lost(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.hold(after_step=1)
    foreign = await queue_foreign(server)
    await wait(server, lambda s: s.running is not None and s.running.prompt_id == foreign)
    handle = await adapter.submit(ask())
    async with httpx.AsyncClient() as other:  # ComfyUI restarted, or someone cleared its queue
        assert (await other.post(f"{server.url}/queue", json={"clear": True})).status_code == 200
    lost = await adapter.poll(handle, "wan-t2v")
    assert lost.state == "failed" and lost.error is not None
    assert "neither queued, running nor in the history" in lost.error


# --- progress ----------------------------------------------------------------------------


async def test_queued_behind_another_prompt(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.hold(after_step=1)
    foreign = await queue_foreign(server)
    await wait(server, lambda s: s.running is not None and s.running.prompt_id == foreign)
    handle = await adapter.submit(ask(seed=5))
    queued = await adapter.poll(handle, "wan-t2v")
    assert (queued.state, queued.progress, queued.info["queue_position"]) == ("queued", 0.0, 1)
    assert queued.info["seed"] == 5  # read back from ComfyUI's queue
    server.release()
    done = await poll_until(adapter, handle, finished)
    assert done.state == "succeeded"
    # The foreign prompt's progress reached our socket too, and was not taken for ours.
    assert any(client == "*" and m["type"] == "progress" for client, m in server.sent)


async def test_without_a_websocket_progress_is_left_to_the_estimate(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.refuse_websocket = True
    server.hold(after_step=2)
    handle = await adapter.submit(ask())
    assert len(server.ws_clients) == 1  # it was tried
    await wait(server, lambda s: any(m["type"] == "progress" and m["data"]["value"] == 2 for _, m in s.sent))
    running = await adapter.poll(handle, "wan-t2v")
    assert (running.state, running.progress) == ("running", None) and "step" not in running.info
    assert len(server.ws_clients) == 1  # no reconnect on every poll
    server.release()
    assert (await poll_until(adapter, handle, finished)).state == "succeeded"


async def test_a_dropped_websocket_is_reopened(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    adapter.feed.reconnect_interval = 0.0
    server.script(ComfyReply(drop_socket_after=1))
    server.hold(after_step=1)
    handle = await adapter.submit(ask())
    await poll_until(adapter, handle, lambda _s: len(server.ws_clients) == 2 and adapter.feed.live)
    assert server.ws_clients[0] == server.ws_clients[1] == adapter.feed.client_id
    server.release()
    assert (await poll_until(adapter, handle, finished)).state == "succeeded"


# --- cancel ------------------------------------------------------------------------------


async def test_cancel_while_queued_deletes_it(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.hold(after_step=1)
    foreign = await queue_foreign(server)
    await wait(server, lambda s: s.running is not None and s.running.prompt_id == foreign)
    handle = await adapter.submit(ask())
    assert server.queued_ids() == [handle]

    assert await adapter.cancel(handle, "wan-t2v") is True
    assert [r.json() for r in server.requests_to("/queue") if r.method == "POST"] == [{"delete": [handle]}]
    assert server.requests_to("/interrupt") == [] and not server.pending
    assert server.running is not None and server.running.prompt_id == foreign  # the other run goes on
    status = await adapter.poll(handle, "wan-t2v")
    assert status.state == "cancelled" and not adapter.feed.live
    server.release()
    await wait(server, lambda s: foreign in s.history)
    assert handle not in server.history and server.submissions == 2  # the other user's and ours


async def test_cancel_while_running_interrupts_it(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.hold(after_step=1)
    handle = await adapter.submit(ask())
    await poll_until(adapter, handle, lambda s: s.progress == 25.0)

    assert await adapter.cancel(handle, "wan-t2v") is True
    assert server.interrupts == [{"prompt_id": handle}]
    await wait(server, lambda s: handle in s.history)
    assert server.interrupted_prompts == [handle]
    status = await adapter.poll(handle, "wan-t2v")
    assert status.state == "cancelled" and status.error == "comfyui: interrupted at node 3 (KSampler)"


async def test_cancel_after_it_finished(adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer) -> None:
    handle = await adapter.submit(ask())
    await poll_until(adapter, handle, finished)
    assert await adapter.cancel(handle, "wan-t2v") is True
    assert server.interrupts == []


# --- models and health -------------------------------------------------------------------


@pytest.mark.parametrize("style", ["list", "combo"])
async def test_list_models_lists_what_the_server_can_run(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer, style: str
) -> None:
    server.combo_style = style
    models = await adapter.list_models()
    assert [m.id for m in models] == ["wan-t2v", "wan-i2v", "wan-camera"]
    t2v, i2v, _camera = models
    assert t2v.details["video"] and t2v.details["local"] and t2v.details["workflow"] == "video_wan_t2v"
    assert i2v.details["requires_start_image"] and i2v.capabilities is not None and i2v.capabilities.vision
    paths = {r.path for r in server.requests}
    assert "/object_info/UNETLoader" in paths and "/object_info/WanImageToVideo" in paths
    assert "/object_info" not in paths  # one node class at a time, not the whole (large) table


async def test_a_missing_model_file_hides_its_model(
    adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer
) -> None:
    server.unets = ["wan2.1_t2v_1.3B_fp16.safetensors"]
    server.clip_visions = []
    assert [m.id for m in await adapter.list_models()] == ["wan-t2v"]
    problems = await adapter.check_workflows()
    assert problems == {
        "wan-t2v": [],
        "wan-i2v": [
            "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors in models/diffusion_models",
            "clip_vision_h.safetensors in models/clip_vision",
        ],
        "wan-camera": [
            "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors in models/diffusion_models",
            "clip_vision_h.safetensors in models/clip_vision",
        ],
    }


def test_a_missing_node_class_is_named(adapter: ComfyUIVideoAdapter) -> None:
    workflow = load_video_workflow("video_wan_i2v")
    known: dict[str, Any] = {node["class_type"]: {"input": {}} for node in workflow.graph.values()}
    del known["WanImageToVideo"]  # a ComfyUI older than Wan support
    assert adapter.problems(workflow, known) == [
        "the node WanImageToVideo (update ComfyUI, or install the custom node that has it)"
    ]


async def test_probe(adapter: ComfyUIVideoAdapter, server: FakeComfyUIVideoServer) -> None:
    ok = await adapter.probe()
    assert ok.ok and ok.error is None
    assert [r.path for r in server.requests] == ["/system_stats"]
