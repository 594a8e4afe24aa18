"""A fake ComfyUI that also runs video workflows (Wan 2.1 with the core CreateVideo / SaveVideo nodes).

Usage::

    with FakeComfyUIVideoServer() as server:            # every model file the built-in templates name
        server.script(ComfyReply(fail_node="3"))          # the next queued prompt fails in node 3
        server.fail("/view", 500, "drop")                 # the next two /view requests

It is `FakeComfyUIServer` (graph validation, the queue, the worker, the websocket, history, uploads,
``/interrupt`` and ``POST /queue {"delete"}``) with the video nodes added, faithful to ComfyUI's
``comfy_extras/nodes_wan.py``, ``nodes_hunyuan.py``, ``nodes_video.py`` and ``nodes.py``:

- ``UNETLoader {unet_name, weight_dtype}``, ``CLIPLoader {clip_name, type, device?}``, ``VAELoader``,
  ``CLIPVisionLoader`` offer the files given to the constructor (`unets`, `text_encoders`, `vaes`,
  `clip_visions`), so a graph naming a file that is not installed fails validation with
  ``value_not_in_list`` and ``/object_info/{class}`` lists what is there. ``CLIPVisionEncode``,
  ``ModelSamplingSD3``, ``EmptyHunyuanLatentVideo`` and ``WanImageToVideo`` (optional ``start_image`` and
  ``clip_vision_output``, validated through like ComfyUI does) take their real inputs and limits, and so
  do the Fun Camera pair ``WanCameraEmbedding {camera_pose, width, height, length, speed, fx, fy, cx,
  cy}`` (outputs the embedding and the three sizes, which ``WanCameraImageToVideo`` takes as links) and
  ``WanCameraImageToVideo`` (optional ``camera_conditions``); `camera_moves` records each pose and speed.
- A video latent of ``length`` frames decodes to ``((length - 1) // 4) * 4 + 1`` frames of
  ``width // 8 * 8`` x ``height // 8 * 8`` (Wan's VAE packs 4 frames into one latent). ``KSampler`` sends
  one ``progress {value, max, prompt_id, node}`` per step, as for images (`hold` and interrupts work).
- ``CreateVideo {images, fps}`` + ``SaveVideo {video, filename_prefix, format, codec}`` write a real H.264
  MP4 (PyAV, `tests.fakes.videos.make_mp4`) of those frames at that rate, saved as
  ``{prefix}_{counter:05}_.mp4`` (a prefix ``video/x`` puts it in subfolder ``video``), announced by
  ``executed`` and recorded in the history as core ComfyUI's ``ui.PreviewVideo`` does: ``{"images":
  [{filename, subfolder, type: "output"}], "animated": [true]}``. ``GET /view`` serves it as
  ``video/mp4``.

`submissions` counts the prompts ``/prompt`` accepted. `fail(route, *faults)` scripts the next requests
to ``/prompt``, ``/history``, ``/queue`` or ``/view``: a status answers with ComfyUI's (aiohttp's)
plain-text error page, ``"drop"`` sends half an answer and cuts the connection, and for ``/prompt``
``"accept_then_drop"`` queues the prompt and then cuts the answer (the client never learns its id);
`hold_answers()` queues the next prompts and answers none until the client hangs up.

The base fake's node table (`comfyui_server.NODES`) gains the video classes when this module is imported:
new names only, none changed, so image graphs validate and run exactly as before (a real ComfyUI with
Wan support knows both). Video outputs are merged into the history entry as it is written (`_History`),
in the same step, so no poll ever sees a finished prompt without its video.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.fakes.comfyui_server import (
    MAX_RESOLUTION,
    NODES,
    ComfyReply,
    FakeComfyUIServer,
    _float,
    _int,
    _is_link,
    _Job,
)
from tests.fakes.videos import make_mp4

UNETS = [
    "wan2.1_t2v_1.3B_fp16.safetensors",
    "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors",
    "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors",
]
CAMERA_POSES = [
    "Static",
    "Pan Up",
    "Pan Down",
    "Pan Left",
    "Pan Right",
    "Zoom In",
    "Zoom Out",
    "Anti Clockwise (ACW)",
    "ClockWise (CW)",
]
TEXT_ENCODERS = ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"]
VAES = ["wan_2.1_vae.safetensors"]
CLIP_VISIONS = ["clip_vision_h.safetensors"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "wan", "hidream"]
WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
VIDEO_FORMATS, VIDEO_CODECS = ["auto", "mp4"], ["auto", "h264"]
ERROR_PAGE = b"500 Internal Server Error\n\nServer got itself in trouble"

# WanImageToVideo's and WanCameraImageToVideo's required inputs (their optional ones differ).
WAN_TO_VIDEO_INPUTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "positive": ("CONDITIONING", {}),
    "negative": ("CONDITIONING", {}),
    "vae": ("VAE", {}),
    "width": _int(832, 16, MAX_RESOLUTION),
    "height": _int(480, 16, MAX_RESOLUTION),
    "length": _int(81, 1, MAX_RESOLUTION),
    "batch_size": _int(1, 1, 4096),
}
VIDEO_NODES: dict[str, tuple[dict[str, tuple[Any, dict[str, Any]]], tuple[str, ...], bool]] = {
    "UNETLoader": (
        {"unet_name": ("@unets", {}), "weight_dtype": ("@weight_dtypes", {})},
        ("MODEL",),
        False,
    ),
    "CLIPLoader": ({"clip_name": ("@text_encoders", {}), "type": ("@clip_types", {})}, ("CLIP",), False),
    "VAELoader": ({"vae_name": ("@vaes", {})}, ("VAE",), False),
    "CLIPVisionLoader": ({"clip_name": ("@clip_visions", {})}, ("CLIP_VISION",), False),
    "CLIPVisionEncode": (
        {"clip_vision": ("CLIP_VISION", {}), "image": ("IMAGE", {}), "crop": ("@clip_crops", {})},
        ("CLIP_VISION_OUTPUT",),
        False,
    ),
    "ModelSamplingSD3": ({"model": ("MODEL", {}), "shift": _float(3.0, 0.0, 100.0)}, ("MODEL",), False),
    "EmptyHunyuanLatentVideo": (
        {
            "width": _int(848, 16, MAX_RESOLUTION),
            "height": _int(480, 16, MAX_RESOLUTION),
            "length": _int(25, 1, MAX_RESOLUTION),
            "batch_size": _int(1, 1, 4096),
        },
        ("LATENT",),
        False,
    ),
    "WanImageToVideo": (
        WAN_TO_VIDEO_INPUTS,
        ("CONDITIONING", "CONDITIONING", "LATENT"),
        False,
    ),
    "WanCameraEmbedding": (
        {
            "camera_pose": ("@camera_poses", {}),
            "width": _int(832, 16, MAX_RESOLUTION),
            "height": _int(480, 16, MAX_RESOLUTION),
            "length": _int(81, 1, MAX_RESOLUTION),
            "speed": _float(1.0, 0.0, 10.0),
            "fx": _float(0.5, 0.0, 1.0),
            "fy": _float(0.5, 0.0, 1.0),
            "cx": _float(0.5, 0.0, 1.0),
            "cy": _float(0.5, 0.0, 1.0),
        },
        ("WAN_CAMERA_EMBEDDING", "INT", "INT", "INT"),
        False,
    ),
    "WanCameraImageToVideo": (
        WAN_TO_VIDEO_INPUTS,
        ("CONDITIONING", "CONDITIONING", "LATENT"),
        False,
    ),
    "CreateVideo": ({"images": ("IMAGE", {}), "fps": _float(30.0, 1.0, 120.0)}, ("VIDEO",), False),
    "SaveVideo": (
        {
            "video": ("VIDEO", {}),
            "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
            "format": ("@video_formats", {}),
            "codec": ("@video_codecs", {}),
        },
        (),
        True,
    ),
}
# Optional inputs (the base table has required ones only): linked ones are validated through.
OPTIONAL: dict[str, dict[str, tuple[Any, dict[str, Any]]]] = {
    "CLIPLoader": {"device": ("@devices", {"advanced": True})},
    "WanImageToVideo": {"clip_vision_output": ("CLIP_VISION_OUTPUT", {}), "start_image": ("IMAGE", {})},
    "WanCameraImageToVideo": {
        "clip_vision_output": ("CLIP_VISION_OUTPUT", {}),
        "start_image": ("IMAGE", {}),
        "camera_conditions": ("WAN_CAMERA_EMBEDDING", {}),
    },
    "CreateVideo": {"audio": ("AUDIO", {})},
}
assert not set(VIDEO_NODES) & set(NODES), "the video fake only adds node classes, never replaces one"
NODES.update(VIDEO_NODES)


@dataclass(frozen=True)
class _Frames:
    """Decoded video frames: what a video latent, VAEDecode and CreateVideo carry in the fake."""

    width: int
    height: int
    count: int
    fps: float = 0.0


@lru_cache(maxsize=32)
def _mp4(width: int, height: int, count: int, fps: int) -> bytes:
    # Encoding 81 frames at 832 x 480 takes about a second: each shape is encoded once per test run.
    return make_mp4(width, height, seconds=count / fps, fps=fps)


class _History(dict[str, dict[str, Any]]):
    """The history, with each prompt's video outputs merged in as its entry is written."""

    def __init__(self, videos: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.videos = videos

    def __setitem__(self, prompt_id: str, entry: dict[str, Any]) -> None:
        for node_id, output in self.videos.pop(prompt_id, {}).items():
            entry["outputs"][node_id] = output
            entry["meta"][node_id] = {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
        super().__setitem__(prompt_id, entry)


class FakeComfyUIVideoServer(FakeComfyUIServer):
    name = "comfyui-video"

    def __init__(
        self,
        *,
        unets: Iterable[str] = UNETS,
        text_encoders: Iterable[str] = TEXT_ENCODERS,
        vaes: Iterable[str] = VAES,
        clip_visions: Iterable[str] = CLIP_VISIONS,
        checkpoints: list[str] | None = None,
    ) -> None:
        self._installed = (list(unets), list(text_encoders), list(vaes), list(clip_visions))
        super().__init__(checkpoints)
        self._install()
        self.submissions = 0
        self.camera_moves: list[tuple[str, float]] = []  # (camera_pose, speed) of each camera embedding run
        self.faults: dict[str, deque[int | str]] = {}
        # Crash tests: `hold_answers()` queues the next prompts but keeps their answers until the client
        # hangs up (a worker killed after ComfyUI accepted, before it heard the prompt id); `answer_held`
        # is set when that point is reached.
        self.holding_answers = False
        self.answer_held = threading.Event()

    def hold_answers(self) -> None:
        self.holding_answers = True

    def _install(self) -> None:
        unets, text_encoders, vaes, clip_visions = self._installed
        self.unets, self.text_encoders = list(unets), list(text_encoders)
        self.vaes, self.clip_visions = list(vaes), list(clip_visions)

    def _init_state(self) -> None:
        super()._init_state()
        self.videos: dict[str, dict[str, Any]] = {}  # prompt id -> node id -> SaveVideo's ui output
        self.history = _History(self.videos)

    def reset(self) -> None:
        super().reset()
        self._install()
        self.submissions = 0
        self.camera_moves: list[tuple[str, float]] = []  # (camera_pose, speed) of each camera embedding run
        self.faults = {}
        self.holding_answers = False
        self.answer_held.clear()

    # -- scripting -----------------------------------------------------------------------------

    def fail(self, route: str, *faults: int | str) -> None:
        """The next requests to `route` (``/prompt``, ``/history``, ``/queue``, ``/view``) fail in turn."""
        self.faults.setdefault(route, deque()).extend(faults)

    def _fault(self, route: str) -> int | str | None:
        queue = self.faults.get(route)
        return queue.popleft() if queue else None

    def _faulty(self, fault: int | str, body: bytes = ERROR_PAGE) -> Response:
        if fault == "drop":
            return self._truncated(body, 200, {}, "application/json")
        assert isinstance(fault, int), f"unknown fault {fault!r}"
        return Response(ERROR_PAGE, status_code=fault, media_type="text/plain")

    def video_files(self) -> dict[str, bytes]:
        """Every saved video by ``subfolder/filename``."""
        return {
            f"{sub}/{name}" if sub else name: data
            for (kind, sub, name), data in self.files.items()
            if kind == "output" and name.endswith(".mp4")
        }

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:  # type: ignore[override]
        overrides: list[BaseRoute] = [
            Route("/prompt", self._video_prompt, methods=["POST"]),
            Route("/history/{prompt_id}", self._video_history, methods=["GET"]),
            Route("/queue", self._video_queue, methods=["GET", "POST"]),
            Route("/view", self._video_view, methods=["GET"]),
        ]
        return overrides + super().routes()  # the first matching route wins

    async def _video_prompt(self, request: Request) -> Response:
        fault = self._fault("/prompt")
        if fault is not None and fault != "accept_then_drop":
            await self.record(request)
            return self._faulty(fault)
        response = await self._prompt(request)
        if response.status_code == 200:
            self.submissions += 1
            if fault == "accept_then_drop":
                return self._faulty("drop", bytes(response.body))
            if self.holding_answers:  # queued, but the client hears nothing until it hangs up
                self.answer_held.set()
                await request.receive()  # the body was read: the next message is the disconnect
                return Response(status_code=499)
        return response

    async def _video_history(self, request: Request) -> Response:
        fault = self._fault("/history")
        if fault is not None:
            await self.record(request)
            return self._faulty(fault, b"{}")
        return await self._history_one(request)

    async def _video_queue(self, request: Request) -> Response:
        fault = self._fault("/queue")
        if fault is not None:
            await self.record(request)
            return self._faulty(fault, b"{}")
        return await self._queue(request)

    async def _video_view(self, request: Request) -> Response:
        fault = self._fault("/view")
        query = request.query_params
        data = self.files.get(
            (query.get("type", "output"), query.get("subfolder", ""), query.get("filename", ""))
        )
        if fault is not None:
            await self.record(request)
            return self._faulty(fault, data or ERROR_PAGE)
        if data is not None and query.get("filename", "").endswith(".mp4"):
            await self.record(request)
            return Response(data, media_type="video/mp4")
        return await self._view(request)

    # -- validation and execution --------------------------------------------------------------

    def _choices(self, name: str) -> list[str]:
        video = {
            "@unets": self.unets,
            "@text_encoders": self.text_encoders,
            "@vaes": self.vaes,
            "@clip_visions": self.clip_visions,
            "@clip_types": CLIP_TYPES,
            "@weight_dtypes": WEIGHT_DTYPES,
            "@clip_crops": ["center", "none"],
            "@devices": ["default", "cpu"],
            "@video_formats": VIDEO_FORMATS,
            "@video_codecs": VIDEO_CODECS,
            "@camera_poses": CAMERA_POSES,
        }
        if name == "@samplers":  # the Wan templates sample with uni_pc, one of ComfyUI's samplers
            return [*super()._choices(name), "uni_pc", "uni_pc_bh2"]
        return video[name] if name in video else super()._choices(name)

    def _node_info(self, name: str) -> dict[str, Any]:
        info = super()._node_info(name)
        optional = OPTIONAL.get(name)
        if optional:
            info["input"]["optional"] = {k: self._input_spec(v) for k, v in optional.items()}
            info["input_order"]["optional"] = list(optional)
        return info

    def _validate_node(
        self, prompt: dict[str, Any], node_id: str, errors: dict[str, list[dict[str, Any]]], seen: set[str]
    ) -> None:
        first = node_id not in seen
        super()._validate_node(prompt, node_id, errors, seen)
        if not first:
            return
        inputs = prompt[node_id].get("inputs") or {}
        for name in OPTIONAL.get(prompt[node_id]["class_type"], {}):
            value: Any = inputs.get(name)
            if _is_link(value) and value[0] in prompt:
                self._validate_node(prompt, value[0], errors, seen)

    async def _run_node(self, job: _Job, node_id: str, node: dict[str, Any], values: dict[str, Any]) -> Any:
        inputs = node.get("inputs", {})
        kind = node["class_type"]

        def linked(name: str) -> Any:
            value = inputs[name]
            return values.get(value[0]) if _is_link(value) else value

        def number(name: str) -> Any:  # an INT input, or the output of the node it is linked to
            value = inputs[name]
            if not _is_link(value):
                return value
            source = values.get(value[0])
            return source[value[1]] if isinstance(source, tuple) else source

        if kind == "WanCameraEmbedding":  # what a camera move looks like here: its pose and speed
            self.camera_moves.append((inputs["camera_pose"], inputs["speed"]))
            embedding = {"pose": inputs["camera_pose"], "speed": inputs["speed"]}
            return (embedding, inputs["width"], inputs["height"], inputs["length"])
        if kind in ("EmptyHunyuanLatentVideo", "WanImageToVideo", "WanCameraImageToVideo"):
            width, height, length = number("width"), number("height"), number("length")
            count = ((length - 1) // 4) * 4 + 1
            return _Frames(width // 8 * 8, height // 8 * 8, count)
        if kind == "CreateVideo":
            frames = linked("images")
            return _Frames(frames.width, frames.height, frames.count, float(inputs["fps"]))
        if kind == "SaveVideo":
            return await self._save_video(job, node_id, linked("video"), inputs["filename_prefix"])
        return await super()._run_node(job, node_id, node, values)

    async def _save_video(self, job: _Job, node_id: str, video: _Frames, prefix: str) -> list[dict[str, str]]:
        subfolder, _, prefix = prefix.rpartition("/")
        self._counter += 1
        filename = f"{prefix}_{self._counter:05}_.mp4"
        data = await asyncio.to_thread(_mp4, video.width, video.height, video.count, round(video.fps))
        self.files[("output", subfolder, filename)] = data
        saved = [{"filename": filename, "subfolder": subfolder, "type": "output"}]
        output = {"images": saved, "animated": [True]}
        self.videos.setdefault(job.prompt_id, {})[node_id] = output
        message = {"node": node_id, "display_node": node_id, "output": output, "prompt_id": job.prompt_id}
        await self._message(job, "executed", message, keep=False)
        return saved


__all__ = ["ComfyReply", "FakeComfyUIVideoServer"]
