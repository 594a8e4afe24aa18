"""ComfyUI video adapter: Wan 2.1 workflow templates, queued and polled by prompt id, websocket step progress.

Over 500 lines on purpose: the templates' data, the poll that reads ComfyUI's queue and history, and the
websocket feed that gives the poll its step progress describe one protocol and change together.

A video is a *workflow* (a node graph in ComfyUI's API format, see `comfyui` for the file format and its
``mmstudio.slots``) queued like an image, but followed by polls instead of one long wait, so the job
system can store the prompt id at once and resume after a restart:

- `submit` uploads the start image (``POST /upload/image``, named by content) when the workflow has a
  ``start_image`` slot, fills the slots and sends ``POST /prompt {prompt, client_id, prompt_id}``; the
  prompt id is the handle. ``frames`` is ``duration_s * fps`` snapped to the template's frame step (Wan's
  VAE packs 4 frames into one latent, so a length is ``4k + 1``: 5 s at 16 fps is 81 frames); ``fps`` is
  ``extra["fps"]`` or the workflow's own; ``width`` x ``height`` come from the aspect ratio and the
  resolution (``480p``, ``16:9`` → 832 x 480). A seed of None or -1 is drawn at random. Custom slots
  (``steps``, ``cfg``, ``sampler_name``, ``scheduler``, ``shift``) are filled from `extra`.
- `poll` reads ``GET /history/{prompt_id}`` (``{}`` until done, then ``{id: {prompt, outputs, status:
  {status_str: success | error, messages}}}``); a prompt not in the history is looked up in ``GET /queue``
  (``queue_running`` / ``queue_pending`` items ``[number, prompt_id, graph, extra, outputs]``). ComfyUI
  moves a prompt from the queue to the history in one step, so a prompt in neither is read from the
  history once more before it is called lost (ComfyUI restarted: it keeps its queue in memory only).
  The seed, frames, fps and size reported in `VideoStatus.info` are read back from the graph ComfyUI
  holds (the queue item or the history entry), so they are true after a restart of ours too.
- The step progress is the ``progress {value, max, prompt_id}`` messages of the websocket
  ``/ws?clientId=<client_id>``. ComfyUI sends them only to the client that queued the prompt, so the
  adapter keeps one client id and, while any of its prompts is in flight, one socket read in the
  background (`_ProgressFeed`), opened before the prompt is queued and closed when its last prompt ends.
  A poll reports the latest ``value / max`` of its prompt in % (at most 99: decoding and encoding follow
  the last step), 0 while it is queued (or runs, on a live socket, before its first step), and None
  when no socket carries its messages (refused, or a prompt queued before our restart): the job
  handler then estimates.
- `download` streams ``GET /view?filename&subfolder&type`` of the first video output: core ``SaveVideo``
  (and ``SaveWEBM``) report ``{"images": [{filename, subfolder, type}], "animated": [true]}``, Video
  Helper Suite's ``VHS_VideoCombine`` ``{"gifs": [...]}``; only files with a video extension count. A
  404 there means the file left ComfyUI's output folder: `ResultExpired`.
- `cancel` deletes the prompt from the queue (``POST /queue {"delete": [id]}``) and, when it is the one
  running, interrupts it (``POST /interrupt {"prompt_id"}``; older ComfyUI interrupts whatever runs, which
  is then ours). The interrupted prompt's history says ``execution_interrupted``: a poll reports
  ``cancelled``, as it does for a prompt our cancel deleted from the queue.

Errors are mapped as the image adapter maps them (it is used for the upload and the error bodies): a
graph ComfyUI refuses is a `BadRequest` naming each failing node, 5xx `ProviderUnavailable`, a refused
connection `ProviderConnectionError`. A node that fails while running is a ``failed`` status with the
node and ComfyUI's exception (``node 3 (KSampler) failed: torch.OutOfMemoryError: ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import Any, ClassVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from mmstudio.errors import ConfigError, InvalidRequest, ProviderError, ResultExpired, redact
from mmstudio.providers._http import HTTPAdapter, raise_protocol
from mmstudio.providers.base import Capabilities, EndpointConfig, ProbeResult, RemoteModel
from mmstudio.providers.media.comfyui import (
    SEED_LIMIT,
    WORKFLOW_KEY,
    ComfyUIAdapter,
    Workflow,
    _combo_options,
    _is_int,
    _listed,
    parse_workflow,
    prompt_history,
)
from mmstudio.providers.media.video_base import VideoCapabilities, VideoRequest, VideoState, VideoStatus
from mmstudio.providers.media.video_download import checked_video, is_mp4, is_webm

log = logging.getLogger(__name__)

# -- the templates -----------------------------------------------------------------------------

# Wan 2.1's 480p sizes (sides multiples of 16, about 832 x 480 pixels in all).
WAN_480P: dict[str, tuple[int, int]] = {
    "16:9": (832, 480),
    "9:16": (480, 832),
    "1:1": (624, 624),
    "4:3": (704, 528),
    "3:4": (528, 704),
}


@dataclass(frozen=True, slots=True)
class VideoTemplate:
    """A built-in video workflow as a model: its file (``workflows/<workflow>.json``), what it can do,
    and the shape rules its nodes follow."""

    workflow: str
    display_name: str
    capabilities: VideoCapabilities
    sizes: Mapping[str, Mapping[str, tuple[int, int]]]  # resolution -> aspect ratio -> (width, height)
    default_aspect: str = "16:9"
    frame_step: int = 4  # a length is frame_step * k + 1
    requires_start_image: bool = False
    max_fps: float = 120.0  # CreateVideo's limit


# WanCameraEmbedding's `camera_pose` for each camera move it has (ComfyUI's nodes_camera_trajectory.py);
# tilts are not among them, so a tilt reaches it in words.
WAN_CAMERA_POSES: dict[str, str] = {
    "pan_up": "Pan Up",
    "pan_down": "Pan Down",
    "pan_left": "Pan Left",
    "pan_right": "Pan Right",
    "zoom_in": "Zoom In",
    "zoom_out": "Zoom Out",
    "roll_left": "Anti Clockwise (ACW)",
    "roll_right": "ClockWise (CW)",
}
WAN_CAMERA_STILL = "Static"
CAMERA_SPEED_MAX = 2.0  # a move at full strength; the node takes 0..10, and Wan's own default is 1.0


def _wan(
    image_to_video: bool, typical_seconds: float, camera_moves: tuple[str, ...] = ()
) -> VideoCapabilities:
    return VideoCapabilities(
        durations=(1, 2, 3, 4, 5),  # Wan 2.1 is trained on 81 frames (5 s at its 16 fps); longer degrades
        aspect_ratios=tuple(WAN_480P),
        resolutions=("480p",),
        image_to_video=image_to_video,
        text_to_video=not image_to_video,  # the i2v workflow needs its start frame
        seed=True,
        negative_prompt=True,
        camera_moves=camera_moves,
        poll_interval_s=1.0,  # a local server: a poll is two small requests
        typical_seconds=typical_seconds,
    )


# The first is the default ComfyUI video model. Timings are for 5 s at 480p on one RTX 4090.
COMFYUI_VIDEO_TEMPLATES: dict[str, VideoTemplate] = {
    "wan-t2v": VideoTemplate(
        workflow="video_wan_t2v",
        display_name="Wan 2.1 text to video 1.3B (ComfyUI)",
        capabilities=_wan(False, 240.0),
        sizes={"480p": WAN_480P},
    ),
    "wan-i2v": VideoTemplate(
        workflow="video_wan_i2v",
        display_name="Wan 2.1 image to video 14B 480p (ComfyUI)",
        capabilities=_wan(True, 600.0),
        sizes={"480p": WAN_480P},
        requires_start_image=True,
    ),
    "wan-camera": VideoTemplate(
        workflow="video_wan_camera",
        display_name="Wan 2.1 Fun Camera Control 1.3B (ComfyUI)",
        capabilities=_wan(True, 300.0, tuple(WAN_CAMERA_POSES)),
        sizes={"480p": WAN_480P},
        requires_start_image=True,
    ),
}
COMFYUI_VIDEO_MODELS: dict[str, VideoCapabilities] = {
    name: template.capabilities for name, template in COMFYUI_VIDEO_TEMPLATES.items()
}
COMFYUI_VIDEO_DISPLAY_NAMES = {name: t.display_name for name, t in COMFYUI_VIDEO_TEMPLATES.items()}

# The slots filled from the request's own fields; any other slot is a custom one, filled from `extra`.
REQUEST_SLOTS = frozenset(("prompt", "negative_prompt", "seed", "width", "height", "frames", "fps"))
REQUEST_SLOTS |= {"start_image", "camera_pose", "camera_speed"}
REQUIRED_SLOTS = ("prompt", "seed", "width", "height", "frames", "fps")
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mkv", ".mov"})
# Where ComfyUI looks for the model files its loaders offer, for messages that say what to download.
MODEL_FOLDERS: dict[tuple[str, str], str] = {
    ("UNETLoader", "unet_name"): "models/diffusion_models",
    ("CLIPLoader", "clip_name"): "models/text_encoders",
    ("VAELoader", "vae_name"): "models/vae",
    ("CLIPVisionLoader", "clip_name"): "models/clip_vision",
    ("CheckpointLoaderSimple", "ckpt_name"): "models/checkpoints",
}
SEED_MAX = 2**64 - 1  # KSampler's seed input
RUNNING_CAP = 99.0  # the last sampler step is not the end: decoding and encoding follow
_SHORT = httpx.Timeout(5.0, connect=2.0)  # queue looks, deletes and the interrupt


@cache
def load_video_workflow(name: str) -> Workflow:
    """A built-in video workflow by file name (``video_wan_t2v``), checked for the slots a video needs;
    raises `ConfigError` naming the file and the slot."""
    text = (
        resources.files("mmstudio.providers.media").joinpath("workflows", f"{name}.json").read_text("utf-8")
    )
    workflow = parse_workflow(json.loads(text), name=name, source=f"{name} (built-in)")
    missing = [slot for slot in REQUIRED_SLOTS if not workflow.has(slot)]
    if missing:
        raise ConfigError(
            f"ComfyUI workflow {workflow.source}: a video workflow needs the slots {', '.join(missing)} "
            f"in {WORKFLOW_KEY}.slots"
        )
    return workflow


def frames_for(duration_s: float, fps: float, step: int) -> int:
    """``duration_s * fps`` frames, snapped to the nearest length of ``step * k + 1`` (at least one step)."""
    wanted = duration_s * fps
    return max(1, math.floor((wanted - 1) / step + 0.5)) * step + 1  # a tie goes to the longer video


def slot_value(graph: Mapping[str, Any], workflow: Workflow, slot: str) -> Any:
    """What a graph holds at the first path of `slot` (None when the workflow has no such slot)."""
    paths = workflow.slots.get(slot)
    if not paths:
        return None
    target: Any = graph
    for key in paths[0]:
        if not isinstance(target, Mapping) or key not in target:
            return None
        target = target[key]
    return target


def video_outputs(entry: Mapping[str, Any], nodes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The ``{filename, subfolder, type, ...}`` of each video file in a history entry, in node order:
    SaveVideo's ``images`` (flagged ``animated``), VHS_VideoCombine's ``gifs``, or a ``videos`` list.
    Without `nodes`, only files of type ``output`` count (``temp`` ones are previews)."""
    outputs = entry.get("outputs")
    outputs = outputs if isinstance(outputs, Mapping) else {}
    refs: list[dict[str, Any]] = []
    for node in nodes or tuple(outputs):
        output = outputs.get(node)
        if not isinstance(output, Mapping):
            continue
        for key in ("gifs", "videos", "images"):
            items = output.get(key)
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, Mapping) or not isinstance(item.get("filename"), str):
                    continue
                if PurePosixPath(item["filename"]).suffix.lower() not in VIDEO_EXTENSIONS:
                    continue
                kind = item.get("type") if isinstance(item.get("type"), str) else "output"
                if nodes or kind == "output":
                    subfolder = item.get("subfolder") if isinstance(item.get("subfolder"), str) else ""
                    ref: dict[str, Any] = {"filename": item["filename"], "subfolder": subfolder, "type": kind}
                    if isinstance(item.get("frame_rate"), int | float):  # VHS says the rate it wrote
                        ref["frame_rate"] = item["frame_rate"]
                    refs.append(ref)
    return refs


def _output_files(entry: Mapping[str, Any]) -> list[str]:
    """Every file name a history entry's outputs mention (for a message when none is a video)."""
    outputs = entry.get("outputs")
    names: list[str] = []
    for output in outputs.values() if isinstance(outputs, Mapping) else []:
        for items in output.values() if isinstance(output, Mapping) else []:
            for item in items if isinstance(items, list) else []:
                if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
                    names.append(item["filename"])
    return names


def failure_text(kind: object, data: Mapping[str, Any]) -> str:
    """An ``execution_error`` or ``execution_interrupted`` message as one line naming the node."""
    where = f"node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
    if kind == "execution_interrupted":
        return f"interrupted at {where}"
    exc_type, exc_message = data.get("exception_type"), str(data.get("exception_message") or "").strip()
    text = f"{where} failed: " + (f"{exc_type}: " if exc_type else "") + (exc_message or "no message")
    if "OutOfMemory" in str(exc_type) or "out of memory" in exc_message.lower():
        text += " (the GPU ran out of memory: try a shorter video or a smaller size)"
    return text


def _queued_graph(items: object, prompt_id: str) -> Mapping[str, Any] | None:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, list) and len(item) > 2 and item[1] == prompt_id and isinstance(item[2], dict):
            return item[2]
    return None


def _position(pending: object, prompt_id: str) -> int | None:
    """The prompt's place in the pending queue (1 = next), by ComfyUI's queue number."""
    if not isinstance(pending, list):
        return None
    numbers = sorted(
        (item[0], item[1])
        for item in pending
        if isinstance(item, list) and len(item) > 1 and isinstance(item[0], int | float)
    )
    ids = [pid for _number, pid in numbers]
    return ids.index(prompt_id) + 1 if prompt_id in ids else None


# -- the websocket feed ------------------------------------------------------------------------


@dataclass
class _ProgressFeed:
    """The adapter's websocket, read in the background while one of its prompts is in flight: the latest
    ``progress`` (value, max) of each watched prompt. It never raises: without a socket there is no
    progress, and the poll says so (None)."""

    adapter: ComfyUIVideoAdapter
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reconnect_interval: float = 10.0  # after a failed connect, the next try waits this long
    steps: dict[str, tuple[int, int]] = field(default_factory=dict)
    watched: set[str] = field(default_factory=set)
    _ws: ClientConnection | None = None
    _reader: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _retry_at: float = 0.0

    @property
    def live(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def open(self) -> None:
        """Connect (once; again after a drop, but not more often than `reconnect_interval`)."""
        async with self._lock:
            if self.live or time.monotonic() < self._retry_at:
                return
            comfy = self.adapter.comfy
            try:
                self._ws = await connect(
                    comfy.ws_url(self.client_id),
                    additional_headers=comfy.headers() or None,
                    open_timeout=comfy.config.connect_timeout,
                    max_size=2**26,  # preview frames of large videos are big
                    proxy=None,  # like the HTTP client: a local engine is reached directly
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._retry_at = time.monotonic() + self.reconnect_interval
                log.info("ComfyUI websocket not available (%s): progress will be estimated", exc)
                return
            self._reader = asyncio.get_running_loop().create_task(self._read(self._ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    self._take(message)
        except (OSError, WebSocketException):
            pass  # dropped: the next poll reconnects
        except Exception:  # a bug here must not end silently in a task nobody awaits
            log.exception("reading the ComfyUI websocket failed")

    def _take(self, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("type") != "progress":
            return
        data = event.get("data")
        if not isinstance(data, dict):
            return
        prompt_id, value, steps = data.get("prompt_id"), data.get("value"), data.get("max")
        if prompt_id in self.watched and _is_int(value) and _is_int(steps) and steps > 0:
            self.steps[prompt_id] = (value, steps)

    def percent(self, prompt_id: str) -> float | None:
        """The prompt's step progress; 0 while the socket is live and no step came yet; None without."""
        step = self.steps.get(prompt_id)
        if step is not None:
            value, steps = step
            return min(round(max(value / steps, 0.0) * 100.0, 1), RUNNING_CAP)
        return 0.0 if self.live and prompt_id in self.watched else None

    async def forget(self, prompt_id: str) -> None:
        self.watched.discard(prompt_id)
        self.steps.pop(prompt_id, None)
        if not self.watched:
            await self.close()

    async def close(self) -> None:
        reader, ws = self._reader, self._ws
        self._reader = self._ws = None
        if ws is not None:
            with contextlib.suppress(OSError, WebSocketException):
                await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# -- the adapter -------------------------------------------------------------------------------


def _video_problem(head: bytes) -> str | None:
    """ComfyUI's video nodes save MP4 or WebM; anything else is not the video."""
    if is_mp4(head) or is_webm(head):
        return None
    return f"sent a file that is not a video (starts {head[:12]!r})"


class ComfyUIVideoAdapter(HTTPAdapter):
    """Video workflows on a ComfyUI server (default ``http://127.0.0.1:8188``), the same endpoint as the
    image adapter. `model` is a template name (``wan-t2v``, ``wan-i2v``). Call `aclose` on shutdown to
    close the progress socket of prompts still in flight."""

    protocol: ClassVar[str] = "comfyui_video"
    capabilities: ClassVar[dict[str, VideoCapabilities]] = COMFYUI_VIDEO_MODELS

    def __init__(self, config: EndpointConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config, client)
        # The image adapter speaks the same protocol: its upload, error mapping and socket URL are ours.
        self.comfy = ComfyUIAdapter(config, client)
        self.feed = _ProgressFeed(self)
        self.cancelled: set[str] = set()  # prompts our cancel removed: gone from the queue, not lost

    def headers(self) -> dict[str, str]:
        return self.comfy.headers()

    @property
    def label(self) -> str:
        return self.config.provider or "comfyui"

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        return self.comfy.error_from_response(status, body, headers, model)

    async def aclose(self) -> None:
        self.feed.watched.clear()
        await self.feed.close()

    # -- submit --------------------------------------------------------------------------------

    def template(self, model: str) -> VideoTemplate:
        found = COMFYUI_VIDEO_TEMPLATES.get(model)
        if found is None:
            known = ", ".join(COMFYUI_VIDEO_TEMPLATES)
            raise InvalidRequest(f"{model!r} is not a ComfyUI video model; known: {known}", field="model")
        return found

    def slot_values(
        self, request: VideoRequest, template: VideoTemplate, workflow: Workflow
    ) -> dict[str, Any]:
        """What goes into the slots (all but the start image); every check that can fail runs here."""
        caps = template.capabilities
        if request.end_image is not None:
            raise InvalidRequest(f"{template.display_name} takes no end frame", field="end_image")
        if template.requires_start_image and request.start_image is None:
            raise InvalidRequest(
                f"{template.display_name} makes a video from a start image: give one", field="start_image"
            )
        if request.start_image is not None and not workflow.has("start_image"):
            raise InvalidRequest(
                f"{template.display_name} takes no start image (the image-to-video model does)",
                field="start_image",
            )
        if request.start_image is not None and not request.start_image.media_type.startswith("image/"):
            raise InvalidRequest(
                f"a start image must be an image, not {request.start_image.media_type}", field="start_image"
            )
        values: dict[str, Any] = {"prompt": request.prompt, "seed": self.seed(request.seed)}
        if request.negative_prompt is not None:
            values["negative_prompt"] = request.negative_prompt
        if request.aspect_ratio is not None or request.resolution is not None:
            values["width"], values["height"] = self.size(request, template)
        fps = self.fps(request.extra.get("fps", slot_value(workflow.graph, workflow, "fps")), template)
        values["fps"] = fps
        if request.duration_s is not None:
            if request.duration_s not in caps.durations:
                allowed = ", ".join(map(str, caps.durations))
                raise InvalidRequest(
                    f"{template.display_name} makes videos of {allowed} seconds", field="duration_s"
                )
            values["frames"] = frames_for(request.duration_s, fps, template.frame_step)
        if workflow.has("camera_pose"):
            values["camera_pose"], speed = self.camera(request, template)
            if speed is not None and workflow.has("camera_speed"):
                values["camera_speed"] = speed
        elif request.camera is not None:
            raise InvalidRequest(f"{template.display_name} takes no camera move", field="camera")
        for key, value in request.extra.items():
            if key not in REQUEST_SLOTS and workflow.has(key):
                values[key] = value
        steps = values.get("steps")
        if steps is not None and (not _is_int(steps) or steps < 1):
            raise InvalidRequest(f"steps must be a whole number of at least 1, not {steps!r}", field="steps")
        return values

    def camera(self, request: VideoRequest, template: VideoTemplate) -> tuple[str, float | None]:
        """WanCameraEmbedding's pose and speed for the request's camera move (still without one)."""
        move = request.camera
        if move is None:
            return WAN_CAMERA_STILL, None
        pose = WAN_CAMERA_POSES.get(move.move)
        if pose is None or move.move not in template.capabilities.camera_moves:
            allowed = ", ".join(template.capabilities.camera_moves)
            raise InvalidRequest(
                f"{template.display_name} cannot {move.move.replace('_', ' ')}; its moves: {allowed}",
                field="camera",
            )
        return pose, round(max(0.1, min(1.0, move.strength)) * CAMERA_SPEED_MAX, 2)

    def seed(self, seed: int | None) -> int:
        """The seed to send: None or -1 draw one at random (0..2**32-1, like the image adapter)."""
        if seed is None or seed == -1:
            return secrets.randbelow(SEED_LIMIT)
        if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
            raise InvalidRequest(f"a ComfyUI seed is 0..{SEED_MAX} (or -1 for a random one)", field="seed")
        return seed

    def size(self, request: VideoRequest, template: VideoTemplate) -> tuple[int, int]:
        resolution = request.resolution or next(iter(template.sizes))
        sizes = template.sizes.get(resolution)
        if sizes is None:
            raise InvalidRequest(
                f"{template.display_name} makes {', '.join(template.sizes)} videos", field="resolution"
            )
        aspect = request.aspect_ratio or template.default_aspect
        if aspect not in sizes:
            raise InvalidRequest(
                f"{template.display_name} takes the aspect ratios {', '.join(sizes)}", field="aspect_ratio"
            )
        return sizes[aspect]

    def fps(self, value: object, template: VideoTemplate) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidRequest(f"fps must be a number, not {value!r}", field="fps")
        if not 1 <= value <= template.max_fps:
            raise InvalidRequest(f"fps must be 1..{template.max_fps:g}, not {value:g}", field="fps")
        return float(value)

    async def submit(self, request: VideoRequest) -> str:
        template = self.template(request.model)
        workflow = load_video_workflow(template.workflow)
        values = self.slot_values(request, template, workflow)
        if request.start_image is not None:
            values["start_image"] = await self.comfy.upload(request.start_image, request.model)
        graph = workflow.fill(values)
        await self.feed.open()  # before the prompt is queued, so none of its messages is missed
        # Ours (the job stored it before this call), so it is watched before ComfyUI can send anything
        # of it, and a create whose answer is lost is found by `knows`.
        prompt_id = request.handle or self.new_handle()
        self.feed.watched.add(prompt_id)
        body = {"prompt": graph, "client_id": self.feed.client_id, "prompt_id": prompt_id}
        try:
            data = await self.request_json("POST", "prompt", model=request.model, json_body=body)
        except BaseException:
            await self.feed.forget(prompt_id)
            raise
        handle = data.get("prompt_id") if isinstance(data, dict) else None
        if not isinstance(handle, str) or not handle:
            await self.feed.forget(prompt_id)
            raise_protocol(self.config, f"queued a prompt without answering its prompt_id: {data!r:.200}")
        if handle != prompt_id:  # an older ComfyUI that ignores a client's own id
            self.feed.watched.discard(prompt_id)
            self.feed.watched.add(handle)
        return handle

    def new_handle(self) -> str:
        return str(uuid.uuid4())

    async def knows(self, handle: str, model: str) -> bool:
        """Whether ComfyUI has prompt `handle`: in its history, or queued or running."""
        if await prompt_history(self, handle, model) is not None:
            return True
        queue = await self.request_json("GET", "queue", model=model, timeout=_SHORT)
        queue = queue if isinstance(queue, dict) else {}
        if _listed(queue.get("queue_running"), handle) or _listed(queue.get("queue_pending"), handle):
            if self.feed.live:
                self.feed.watched.add(handle)  # its step progress again (a socket open now sees it)
            return True
        return await prompt_history(self, handle, model) is not None  # it may have finished between

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, handle: str, model: str) -> VideoStatus:
        workflow = load_video_workflow(self.template(model).workflow)
        entry = await prompt_history(self, handle, model)
        if entry is None:
            queue = await self.request_json("GET", "queue", model=model, timeout=_SHORT)
            queue = queue if isinstance(queue, dict) else {}
            running, pending = queue.get("queue_running"), queue.get("queue_pending")
            if _listed(running, handle) or _listed(pending, handle):
                return await self.queued(handle, workflow, running, pending)
            entry = await prompt_history(self, handle, model)  # it may have finished between the two looks
            if entry is None:
                await self.feed.forget(handle)
                if handle in self.cancelled:  # deleted from the queue by our own cancel
                    return VideoStatus(state="cancelled", error=f"{self.label}: cancelled while queued")
                return VideoStatus(
                    state="failed",
                    error=(
                        f"{self.label}: prompt {handle} is neither queued, running nor in the history "
                        "(deleted from the queue, or ComfyUI restarted: it keeps its queue in memory only)"
                    ),
                )
        await self.feed.forget(handle)
        return self.finished(entry, handle, workflow)

    async def queued(self, handle: str, workflow: Workflow, running: object, pending: object) -> VideoStatus:
        graph = _queued_graph(running, handle) or _queued_graph(pending, handle)
        info = self.graph_info(graph, workflow)
        if _listed(pending, handle):
            info["queue_position"] = _position(pending, handle)
            return VideoStatus(state="queued", progress=0.0, info=info)
        if handle in self.feed.watched and not self.feed.live:
            await self.feed.open()  # the socket dropped: get the next steps
        step = self.feed.steps.get(handle)
        if step is not None:
            info["step"], info["steps"] = step
        return VideoStatus(state="running", progress=self.feed.percent(handle), info=info)

    def finished(self, entry: Mapping[str, Any], handle: str, workflow: Workflow) -> VideoStatus:
        prompt = entry.get("prompt")
        graph = prompt[2] if isinstance(prompt, list) and len(prompt) > 2 else None
        info = self.graph_info(graph if isinstance(graph, dict) else None, workflow)
        status = entry.get("status")
        if isinstance(status, dict) and status.get("status_str") == "error":
            messages = status.get("messages")
            for item in messages if isinstance(messages, list) else []:
                failed = isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
                if failed and item[0] in ("execution_error", "execution_interrupted"):
                    text = redact(failure_text(item[0], item[1]), self.config.secrets)
                    state: VideoState = "cancelled" if item[0] == "execution_interrupted" else "failed"
                    return VideoStatus(state=state, error=f"{self.label}: {text}", info=info)
            return VideoStatus(state="failed", error=f"{self.label}: prompt {handle} failed", info=info)
        refs = video_outputs(entry, workflow.outputs)
        if not refs:
            files = ", ".join(_output_files(entry)) or "nothing"
            return VideoStatus(
                state="failed",
                error=f"{self.label}: prompt {handle} finished without a video output (it saved {files})",
                info=info,
            )
        info["output"] = {k: refs[0][k] for k in ("filename", "subfolder", "type")}
        fps = refs[0].get("frame_rate", info.get("fps"))
        frames = info.get("frames")
        duration = frames / fps if _is_int(frames) and isinstance(fps, int | float) and fps > 0 else None
        return VideoStatus(state="succeeded", progress=100.0, duration_s=duration, info=info)

    def graph_info(self, graph: Mapping[str, Any] | None, workflow: Workflow) -> dict[str, Any]:
        """What the queued graph says: the workflow, and the seed, frames, fps, size and steps it runs."""
        info: dict[str, Any] = {"workflow": workflow.name}
        for slot in ("seed", "frames", "fps", "width", "height", "steps"):
            value = slot_value(graph, workflow, slot) if graph is not None else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                info[slot] = value
        return info

    # -- download ------------------------------------------------------------------------------

    async def download(self, handle: str, status: VideoStatus, model: str) -> AsyncIterator[bytes]:
        """The first video output from ``/view``, streamed. Without its file in `status` (a status kept
        from before a restart) the history is read for it. A 404 means the file is gone from ComfyUI's
        output folder: `ResultExpired`."""
        ref = status.info.get("output")
        if not isinstance(ref, Mapping) or not isinstance(ref.get("filename"), str):
            fresh = await self.poll(handle, model)
            ref = fresh.info.get("output")
            if fresh.state != "succeeded" or not isinstance(ref, Mapping):
                raise ResultExpired(
                    f"{self.label} prompt {handle} has no video to fetch (it is {fresh.state}"
                    f"{': ' + fresh.error if fresh.error else ''})",
                    provider=self.config.provider,
                    model=model,
                )
        params = {k: str(ref.get(k) or "") for k in ("filename", "subfolder", "type")}
        request = self.client.build_request(
            "GET", self.url("view"), params=params, headers=self.headers(), timeout=self.timeout()
        )
        with self.transport_errors(model):
            response = await self.client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                with self.transport_errors(model):
                    body = await response.aread()
                if response.status_code == 404:
                    raise ResultExpired(
                        f"{self.label} no longer has {params['filename']} of prompt {handle} "
                        "(it was removed from ComfyUI's output folder)",
                        provider=self.config.provider,
                        model=model,
                        status=404,
                    )
                raise self.error_from_response(response.status_code, body, response.headers, model)
            async for chunk in checked_video(self, response, model, _video_problem, label=self.label):
                yield chunk
        finally:
            await response.aclose()

    # -- cancel --------------------------------------------------------------------------------

    async def cancel(self, handle: str, model: str) -> bool:
        """Drop the prompt from the queue, then interrupt it if it is the one running (deleting first
        closes the window where a queued prompt starts between the look and the delete). A prompt already
        finished or gone is as stopped as it gets: True."""
        self.cancelled.add(handle)
        await self.send("POST", "queue", {"delete": [handle]}, model)
        queue = await self.request_json("GET", "queue", model=model, timeout=_SHORT)
        if isinstance(queue, dict) and _listed(queue.get("queue_running"), handle):
            await self.send("POST", "interrupt", {"prompt_id": handle}, model)
        await self.feed.forget(handle)
        return True

    async def send(self, method: str, path: str, body: Any, model: str | None) -> None:
        """A request answered with an empty 200 (``/queue`` deletes, ``/interrupt``)."""
        with self.transport_errors(model):
            if self._direct is not None:
                response: Any = await self._direct.send(
                    method, self.url(path), headers=self.headers(), timeout=_SHORT, json_body=body
                )
            else:
                response = await self.client.request(
                    method, self.url(path), json=body, headers=self.headers(), timeout=_SHORT
                )
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.content, response.headers, model)

    # -- models and health ---------------------------------------------------------------------

    async def check_workflows(self) -> dict[str, list[str]]:
        """Per model, what the server lacks to run its workflow (a node class, a model file); an empty
        list means it can run. One ``/object_info/{class}`` per node class the templates use."""
        workflows = {name: load_video_workflow(t.workflow) for name, t in COMFYUI_VIDEO_TEMPLATES.items()}
        classes = sorted({node["class_type"] for w in workflows.values() for node in w.graph.values()})
        answers = await asyncio.gather(*(self.request_json("GET", f"object_info/{c}") for c in classes))
        info = {c: a.get(c) if isinstance(a, dict) else None for c, a in zip(classes, answers, strict=True)}
        return {name: self.problems(workflow, info) for name, workflow in workflows.items()}

    def problems(self, workflow: Workflow, info: Mapping[str, Any]) -> list[str]:
        """What stops `workflow` on a server whose node definitions are `info` (class -> object_info)."""
        found: list[str] = []
        filled = set(workflow.slots.get("start_image", ()))  # the request's upload, not the file's name
        for node_id, node in workflow.graph.items():
            kind = node["class_type"]
            spec = info.get(kind)
            if not isinstance(spec, dict):
                found.append(f"the node {kind} (update ComfyUI, or install the custom node that has it)")
                continue
            inputs = spec.get("input")
            specs: dict[str, Any] = {}
            for group in ("required", "optional"):
                if isinstance(inputs, dict) and isinstance(inputs.get(group), dict):
                    specs.update(inputs[group])
            for name, value in node["inputs"].items():
                options = _combo_options(specs.get(name))
                if not isinstance(value, str) or options is None or (node_id, "inputs", name) in filled:
                    continue
                if value not in options:
                    folder = MODEL_FOLDERS.get((kind, name))
                    where = f" in {folder}" if folder else f" among {kind}'s {name} choices"
                    found.append(f"{value}{where}")
        return found

    async def list_models(self) -> list[RemoteModel]:
        """The built-in video workflows this server can run: every node class present and every model
        file the workflow names installed."""
        problems = await self.check_workflows()
        models: list[RemoteModel] = []
        for name, template in COMFYUI_VIDEO_TEMPLATES.items():
            if problems[name]:
                log.info("ComfyUI cannot run %s yet: it needs %s", name, "; ".join(problems[name]))
                continue
            models.append(
                RemoteModel(
                    name,
                    "comfyui",
                    Capabilities(streaming=False, vision=template.capabilities.image_to_video),
                    {
                        "video": True,
                        "local": True,
                        "display_name": template.display_name,
                        "workflow": template.workflow,
                        "image_to_video": template.capabilities.image_to_video,
                        "requires_start_image": template.requires_start_image,
                    },
                )
            )
        return models

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("system_stats")


__all__ = [
    "COMFYUI_VIDEO_DISPLAY_NAMES",
    "COMFYUI_VIDEO_MODELS",
    "COMFYUI_VIDEO_TEMPLATES",
    "ComfyUIVideoAdapter",
    "VideoTemplate",
    "frames_for",
    "load_video_workflow",
    "video_outputs",
]
