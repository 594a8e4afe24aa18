"""A fake ComfyUI server: graph validation, a queue, a worker that "executes" graphs, the websocket, history.

Over 500 lines on purpose: validation, the queue and execution share state, and splitting them would
only spread one server's behaviour over several files.

Usage::

    with FakeComfyUIServer(checkpoints=["v1-5-pruned-emaonly.safetensors"]) as server:
        config = EndpointConfig(base_url=server.url, provider="comfyui")
        server.script(ComfyReply(fail_node="3"))        # the next queued prompt fails in node 3

Faithful to ComfyUI's ``server.py`` and ``execution.py``:

- ``POST /prompt {prompt, client_id, prompt_id?}`` validates the graph as ``validate_prompt`` does: a node
  without ``class_type`` or of an unknown class is ``{"error": {"type": "invalid_prompt", "message":
  "Cannot execute because node X does not exist.", "details": "Node ID '#3'"}, "node_errors": {}}``; no
  output node is ``prompt_no_outputs``; a missing required input (``required_input_missing``), a value of
  the wrong type (``invalid_input_type``), out of range (``value_smaller_than_min`` / ``bigger_than_max``),
  a combo value not offered (``value_not_in_list``: checkpoints, samplers), a LoadImage file never
  uploaded (``custom_validation_failed``) or a link to a missing node lands in ``node_errors[node_id] =
  {errors: [{type, message, details, extra_info}], dependent_outputs, class_type}`` with ``error`` type
  ``prompt_outputs_failed_validation``; all of these answer 400. A valid graph answers ``{prompt_id,
  number, node_errors: {}}`` (the client's own ``prompt_id`` is kept, as newer ComfyUI does).
- One worker runs the queue in order. It sends, to the prompt's ``client_id`` (to every socket when the
  prompt has none, as ComfyUI does): ``execution_start``, ``execution_cached``, ``executing {node}`` per
  node, ``progress {value, max, prompt_id, node}`` per KSampler step, ``executed {node, output}`` for
  SaveImage, then ``execution_success``; the history entry is written and ``executing {node: null}``
  follows. A failure sends ``execution_error {prompt_id, node_id, node_type, exception_message,
  exception_type, traceback, ...}``, an interrupt ``execution_interrupted``; both leave a history entry
  with ``status_str: "error"`` and the message in ``status.messages``. ``status`` messages (queue size)
  go to every socket on connect and on each queue change.
- The images are real PNGs (Pillow) of the latent's size (EmptyLatentImage, or the uploaded image through
  ImageScale, 0 x 0 keeping it) times the batch (``batch_size``, RepeatLatentBatch's ``amount``), saved as
  ``{prefix}_{counter:05}_.png`` and served by ``GET /view?filename&subfolder&type`` (404 when unknown).
- ``POST /upload/image`` (multipart ``image``, ``overwrite``, ``subfolder``, ``type``) → ``{name,
  subfolder, type}``; without ``overwrite=true`` an existing name becomes ``name (1).png``.
- ``GET /queue`` → ``{queue_running: [[number, prompt_id, prompt, extra_data, outputs]], queue_pending}``;
  ``POST /queue {"delete": [...]}`` / ``{"clear": true}`` and ``POST /interrupt`` answer an empty 200.
  ``/interrupt`` with ``{"prompt_id"}`` interrupts only that prompt when `interrupt_honours_prompt_id`
  (newer ComfyUI), else whatever runs (older ComfyUI, the default here).
- ``GET /history``, ``/history/{id}`` (``{}`` until done), ``/object_info``, ``/object_info/{class}``
  (combos as ``[[choices], {...}]``, or ``["COMBO", {"options": [...]}]`` with ``combo_style="combo"``),
  ``/system_stats``.

Scripting (per queued prompt, taken from the script when it is queued): `ComfyReply` `status` +
`error_body` / `raw` / `delay` answer ``/prompt`` itself; `step_delay` (seconds per sampler step),
`fail_node` (node id or class type that raises `exception_type`: `exception_message`), `drop_socket_after`
(close the prompt's websockets after that step: the client must poll ``/history``), `garbage_view`
(``/view`` serves bytes that are not an image), `previews` (a binary PNG preview frame after each step).
`refuse_websocket` turns every websocket away. `hold(after_step=n)` makes a run wait after step n until
`release()` or an interrupt; `wait_for(predicate)` blocks (use ``asyncio.to_thread``) until the fake's
state satisfies it, so tests wait on events, never on the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.fakes.base import FakeServer, Recorded, Reply
from tests.fakes.images import make_image

_PALETTE = [(200, 80, 40), (40, 120, 200), (60, 170, 90), (220, 190, 50), (140, 60, 170), (90, 90, 90)]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "ddim"]
SCHEDULERS = ["normal", "karras", "exponential", "simple", "sgm_uniform"]
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
GARBAGE = b"<html>not an image</html>"
MAX_RESOLUTION = 16384


def _int(default: int, low: int, high: int) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": low, "max": high})


def _float(default: float, low: float, high: float) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": low, "max": high})


# class_type -> (required inputs, output types, output node?); combos named "@<list>" are filled in live.
NODES: dict[str, tuple[dict[str, tuple[Any, dict[str, Any]]], tuple[str, ...], bool]] = {
    "CheckpointLoaderSimple": ({"ckpt_name": ("@checkpoints", {})}, ("MODEL", "CLIP", "VAE"), False),
    "CLIPTextEncode": (
        {"text": ("STRING", {"multiline": True}), "clip": ("CLIP", {})},
        ("CONDITIONING",),
        False,
    ),
    "KSampler": (
        {
            "model": ("MODEL", {}),
            "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF),
            "steps": _int(20, 1, 10000),
            "cfg": _float(8.0, 0.0, 100.0),
            "sampler_name": ("@samplers", {}),
            "scheduler": ("@schedulers", {}),
            "positive": ("CONDITIONING", {}),
            "negative": ("CONDITIONING", {}),
            "latent_image": ("LATENT", {}),
            "denoise": _float(1.0, 0.0, 1.0),
        },
        ("LATENT",),
        False,
    ),
    "EmptyLatentImage": (
        {
            "width": _int(512, 16, MAX_RESOLUTION),
            "height": _int(512, 16, MAX_RESOLUTION),
            "batch_size": _int(1, 1, 4096),
        },
        ("LATENT",),
        False,
    ),
    "LoadImage": ({"image": ("@inputs", {"image_upload": True})}, ("IMAGE", "MASK"), False),
    "ImageScale": (
        {
            "image": ("IMAGE", {}),
            "upscale_method": ("@upscale_methods", {}),
            "width": _int(512, 0, MAX_RESOLUTION),
            "height": _int(512, 0, MAX_RESOLUTION),
            "crop": ("@crops", {}),
        },
        ("IMAGE",),
        False,
    ),
    "VAEEncode": ({"pixels": ("IMAGE", {}), "vae": ("VAE", {})}, ("LATENT",), False),
    "RepeatLatentBatch": ({"samples": ("LATENT", {}), "amount": _int(1, 1, 64)}, ("LATENT",), False),
    "VAEDecode": ({"samples": ("LATENT", {}), "vae": ("VAE", {})}, ("IMAGE",), False),
    "SaveImage": ({"images": ("IMAGE", {}), "filename_prefix": ("STRING", {"default": "ComfyUI"})}, (), True),
    "PreviewImage": ({"images": ("IMAGE", {})}, (), True),
}
_PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN")


@dataclass
class ComfyReply(Reply):
    """A scripted prompt (see the module docstring)."""

    step_delay: float = 0.0
    fail_node: str | None = None
    exception_type: str = "torch.OutOfMemoryError"
    exception_message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"
    drop_socket_after: int | None = None
    garbage_view: bool = False
    previews: bool = False


@dataclass
class _Job:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra: dict[str, Any]
    outputs: list[str]
    reply: ComfyReply
    messages: list[list[Any]] = field(default_factory=list)

    def item(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra, self.outputs]


class _Interrupted(Exception):
    pass


class _Failed(Exception):
    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


def _is_link(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def _error(kind: str, message: str, details: str = "", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeComfyUIServer(FakeServer):
    name = "comfyui"

    def __init__(self, checkpoints: list[str] | None = None, *, combo_style: str = "list") -> None:
        super().__init__(ComfyReply())
        self.checkpoints = list(
            checkpoints if checkpoints is not None else ["v1-5-pruned-emaonly.safetensors"]
        )
        self.combo_style = combo_style  # "list": [[choices], {...}]; "combo": ["COMBO", {"options"}]
        self.interrupt_honours_prompt_id = False
        self.refuse_websocket = False
        self._cond = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self._hold_after: int | None = None
        self._worker: asyncio.Task[None] | None = None
        self._init_state()

    def _init_state(self) -> None:
        self.inputs: dict[str, bytes] = {}  # uploaded files by name (ComfyUI's input folder)
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, filename) -> bytes
        self.history: dict[str, dict[str, Any]] = {}
        self.pending: deque[_Job] = deque()
        self.running: _Job | None = None
        self.interrupts: list[Any] = []  # the body of every /interrupt, None when empty
        self.interrupted_prompts: list[str] = []
        self.ws_clients: list[str] = []  # the clientId of every websocket opened
        self.sent: list[tuple[str, dict[str, Any]]] = []  # every JSON message sent, with its prompt's client
        self._interrupt_flag = False
        self._counter = 0
        self._number = 0
        self._sockets: dict[str, list[WebSocket]] = {}

    # -- scripting and waiting -----------------------------------------------------------------

    def hold(self, after_step: int = 1) -> None:
        """Make runs wait after sampler step `after_step` until `release()` or an interrupt."""
        self._hold_after = after_step
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def settle(self) -> None:
        """Let any held run finish and drop what is still queued (between tests)."""
        with self._cond:
            self.pending.clear()
        self.release()
        self.wait_for(lambda s: s.running is None)

    def reset(self) -> None:
        self.settle()
        super().reset()
        self.release()
        self._hold_after = None
        self.default = ComfyReply()
        self.combo_style = "list"
        self.interrupt_honours_prompt_id = False
        self.refuse_websocket = False
        with self._cond:
            self._init_state()

    def stop(self) -> None:
        self.release()
        super().stop()

    def wait_for(self, predicate: Callable[[FakeComfyUIServer], bool], timeout: float = 10.0) -> None:
        """Block until `predicate(self)` holds (checked on every request and state change)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError("the fake ComfyUI never reached the awaited state")

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    async def record(self, request: Request) -> Recorded:
        rec = await super().record(request)
        self._changed()
        return rec

    def queued_ids(self) -> list[str]:
        return [job.prompt_id for job in self.pending]

    def submitted(self) -> list[dict[str, Any]]:
        """The graphs of every ``/prompt`` request, in order."""
        return [r.json()["prompt"] for r in self.requests_to("/prompt")]

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:  # type: ignore[override]
        return [
            Route("/prompt", self._prompt, methods=["POST"]),
            Route("/prompt", self._prompt_info, methods=["GET"]),
            Route("/queue", self._queue, methods=["GET", "POST"]),
            Route("/interrupt", self._interrupt, methods=["POST"]),
            Route("/history", self._history_all, methods=["GET"]),
            Route("/history/{prompt_id}", self._history_one, methods=["GET"]),
            Route("/view", self._view, methods=["GET"]),
            Route("/upload/image", self._upload, methods=["POST"]),
            Route("/object_info", self._object_info, methods=["GET"]),
            Route("/object_info/{node_class}", self._object_info_one, methods=["GET"]),
            Route("/system_stats", self._system_stats, methods=["GET"]),
            WebSocketRoute("/ws", self._websocket),
        ]

    async def _prompt_info(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"exec_info": {"queue_remaining": self._remaining()}})

    async def _prompt(self, request: Request) -> Response:
        rec = await self.record(request)
        reply = self.next_reply()
        reply = reply if isinstance(reply, ComfyReply) else ComfyReply(**vars(reply))
        await self.pause(reply.delay)
        if reply.status >= 400 or reply.raw is not None:
            return self.json_response(reply.error_body or {"error": "scripted"}, reply)
        try:
            body = json.loads(rec.body)
        except ValueError:
            return Response(status_code=400)  # ComfyUI's json() raises before any answer of its own
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, dict):
            message = "No prompt provided"
            return JSONResponse({"error": _error("no_prompt", message, message), "node_errors": {}}, 400)
        error, outputs, node_errors = self.validate(prompt)
        if error is not None:
            return JSONResponse({"error": error, "node_errors": node_errors}, 400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        with self._cond:
            self._number += 1
            job = _Job(self._number, prompt_id, prompt, extra, outputs, reply)
            self.pending.append(job)
            self._cond.notify_all()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())
        await self._status()
        return JSONResponse({"prompt_id": prompt_id, "number": job.number, "node_errors": node_errors})

    async def _queue(self, request: Request) -> Response:
        rec = await self.record(request)
        if request.method == "GET":
            running = [self.running.item()] if self.running is not None else []
            return JSONResponse(
                {"queue_running": running, "queue_pending": [job.item() for job in self.pending]}
            )
        body = rec.json() or {}
        with self._cond:
            if body.get("clear"):
                self.pending.clear()
            for prompt_id in body.get("delete", []):
                self.pending = deque(job for job in self.pending if job.prompt_id != prompt_id)
            self._cond.notify_all()
        return Response(status_code=200)

    async def _interrupt(self, request: Request) -> Response:
        rec = await self.record(request)
        body = rec.json() if rec.body else None
        self.interrupts.append(body)
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        running = self.running
        if wanted and self.interrupt_honours_prompt_id and (running is None or running.prompt_id != wanted):
            return Response(status_code=200)  # "not currently running, skipping interrupt"
        self._interrupt_flag = True
        self._changed()
        return Response(status_code=200)

    async def _history_all(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse(self.history)

    async def _history_one(self, request: Request) -> Response:
        await self.record(request)
        prompt_id = request.path_params["prompt_id"]
        entry = self.history.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry is not None else {})

    async def _view(self, request: Request) -> Response:
        await self.record(request)
        query = request.query_params
        key = (query.get("type", "output"), query.get("subfolder", ""), query.get("filename", ""))
        stored = f"{key[1]}/{key[2]}" if key[1] else key[2]  # how uploads are named in LoadImage
        data = self.inputs.get(stored) if key[0] == "input" else self.files.get(key)
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png" if data.startswith(b"\x89PNG") else "text/html")

    async def _upload(self, request: Request) -> Response:
        await self.record(request)
        async with request.form() as form:
            image = form.get("image")
            if image is None or isinstance(image, str) or not image.filename:
                return Response(status_code=400)
            data = await image.read()
            overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
            subfolder = str(form.get("subfolder", ""))
            kind = str(form.get("type", "input"))
            name = image.filename
        stored = f"{subfolder}/{name}" if subfolder else name
        if not overwrite:
            base, dot, ext = name.rpartition(".")
            counter = 1
            while stored in self.inputs:
                name = f"{base} ({counter}).{ext}" if dot else f"{name} ({counter})"
                stored = f"{subfolder}/{name}" if subfolder else name
                counter += 1
        self.inputs[stored] = data
        return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})

    async def _object_info(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({name: self._node_info(name) for name in NODES})

    async def _object_info_one(self, request: Request) -> Response:
        await self.record(request)
        name = request.path_params["node_class"]
        return JSONResponse({name: self._node_info(name)} if name in NODES else {})

    async def _system_stats(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 34359738368,
                    "ram_free": 17179869184,
                    "comfyui_version": "0.3.40",
                    "python_version": "3.12.3 (main)",
                    "pytorch_version": "2.7.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 25757220864,
                        "vram_free": 24000000000,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    async def _websocket(self, websocket: WebSocket) -> None:
        client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
        self.ws_clients.append(client_id)
        self._changed()
        if self.refuse_websocket:
            await websocket.close()  # before accept: the upgrade is answered 403
            return
        await websocket.accept()
        self._sockets.setdefault(client_id, []).append(websocket)
        try:
            status = {"status": {"exec_info": {"queue_remaining": self._remaining()}}, "sid": client_id}
            await websocket.send_text(json.dumps({"type": "status", "data": status}))
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            with contextlib.suppress(ValueError):
                self._sockets.get(client_id, []).remove(websocket)

    # -- object_info and validation ------------------------------------------------------------

    def _choices(self, name: str) -> list[str]:
        return {
            "@checkpoints": self.checkpoints,
            "@samplers": SAMPLERS,
            "@schedulers": SCHEDULERS,
            "@upscale_methods": UPSCALE_METHODS,
            "@crops": ["disabled", "center"],
            "@inputs": sorted(self.inputs),
        }[name]

    def _input_spec(self, spec: tuple[Any, dict[str, Any]]) -> list[Any]:
        kind, options = spec
        if isinstance(kind, str) and kind.startswith("@"):
            if self.combo_style == "combo":
                return ["COMBO", {**options, "options": self._choices(kind)}]
            return [self._choices(kind), options]
        return [kind, options]

    def _node_info(self, name: str) -> dict[str, Any]:
        required, outputs, output_node = NODES[name]
        return {
            "input": {"required": {k: self._input_spec(v) for k, v in required.items()}},
            "input_order": {"required": list(required)},
            "output": list(outputs),
            "output_is_list": [False] * len(outputs),
            "output_name": list(outputs),
            "name": name,
            "display_name": name,
            "description": "",
            "python_module": "nodes",
            "category": "fake",
            "output_node": output_node,
        }

    def validate(self, prompt: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str], dict[str, Any]]:
        """ComfyUI's `validate_prompt`: (error or None, the outputs to run, node_errors)."""
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                message = "Cannot execute because a node is missing the class_type property."
                return _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
            if node["class_type"] not in NODES:
                message = f"Cannot execute because node {node['class_type']} does not exist."
                return _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
        outputs = [node_id for node_id, node in prompt.items() if NODES[node["class_type"]][2]]
        if not outputs:
            return _error("prompt_no_outputs", "Prompt has no outputs"), [], {}
        node_errors: dict[str, Any] = {}
        good: list[str] = []
        for output in outputs:
            errors: dict[str, list[dict[str, Any]]] = {}
            self._validate_node(prompt, output, errors, set())
            if not errors:
                good.append(output)
            for node_id, errs in errors.items():
                entry = node_errors.setdefault(
                    node_id,
                    {"errors": errs, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                )
                entry["dependent_outputs"].append(output)
        if not good:
            details = "\n".join(
                f"{e['message']}: {e['details']}" for info in node_errors.values() for e in info["errors"]
            )
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return error, [], node_errors
        return None, good, node_errors

    def _validate_node(
        self, prompt: dict[str, Any], node_id: str, errors: dict[str, list[dict[str, Any]]], seen: set[str]
    ) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        node = prompt[node_id]
        inputs = node.get("inputs") or {}
        required = NODES[node["class_type"]][0]
        found: list[dict[str, Any]] = []
        for name, (kind, options) in required.items():
            if name not in inputs:
                extra = {"input_name": name}
                found.append(_error("required_input_missing", "Required input is missing", name, extra))
                continue
            value = inputs[name]
            if kind not in _PRIMITIVES and not (isinstance(kind, str) and kind.startswith("@")):
                if not _is_link(value):
                    message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                    found.append(_error("bad_linked_input", message, name, {"input_name": name}))
                elif value[0] not in prompt:
                    message = "Exception when validating inner node"
                    found.append(_error("exception_during_inner_validation", message, repr(value[0])))
                else:
                    source_outputs = NODES[prompt[value[0]]["class_type"]][1]
                    if value[1] >= len(source_outputs) or source_outputs[value[1]] != kind:
                        message = "Return type mismatch between linked nodes"
                        found.append(
                            _error("return_type_mismatch", message, f"{name}, received_type != {kind}")
                        )
                    else:
                        self._validate_node(prompt, value[0], errors, seen)
                continue
            if _is_link(value):
                if value[0] in prompt:
                    self._validate_node(prompt, value[0], errors, seen)
                continue
            found.extend(self._check_value(node["class_type"], name, kind, options, value))
        if found:
            errors[node_id] = found

    def _check_value(
        self, class_type: str, name: str, kind: Any, options: dict[str, Any], value: Any
    ) -> list[dict[str, Any]]:
        extra = {"input_name": name, "received_value": value}
        if kind == "INT" and (not isinstance(value, int) or isinstance(value, bool)):
            message = f"Failed to convert an input value to a INT value: {name}, {value}"
            return [_error("invalid_input_type", message, f"{name}, {value}", extra)]
        if kind == "FLOAT" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            message = f"Failed to convert an input value to a FLOAT value: {name}, {value}"
            return [_error("invalid_input_type", message, f"{name}, {value}", extra)]
        if kind == "STRING" and not isinstance(value, str):
            message = f"Failed to convert an input value to a STRING value: {name}, {value}"
            return [_error("invalid_input_type", message, f"{name}, {value}", extra)]
        if kind in ("INT", "FLOAT"):
            if value < options["min"]:
                message = f"Value {value} smaller than min of {options['min']}"
                return [_error("value_smaller_than_min", message, name, extra)]
            if value > options["max"]:
                message = f"Value {value} bigger than max of {options['max']}"
                return [_error("value_bigger_than_max", message, name, extra)]
        if class_type == "LoadImage" and name == "image":  # LoadImage's VALIDATE_INPUTS, not the list
            if value not in self.inputs:
                message = "Custom validation failed for node"
                return [
                    _error("custom_validation_failed", message, f"image - Invalid image file: {value}", extra)
                ]
            return []
        if isinstance(kind, str) and kind.startswith("@") and value not in self._choices(kind):
            choices = self._choices(kind)
            return [
                _error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {choices}", extra)
            ]
        return []

    # -- execution -----------------------------------------------------------------------------

    def _remaining(self) -> int:
        return len(self.pending) + (1 if self.running is not None else 0)

    async def _send(self, job: _Job | None, kind: str, data: dict[str, Any]) -> None:
        """To the job's client, or to every socket when it has none (ComfyUI's ``send_sync``)."""
        client = job.extra.get("client_id") if job is not None else None
        self.sent.append((client or "*", {"type": kind, "data": data}))
        targets = (
            self._sockets.get(client, []) if client else [w for ws in self._sockets.values() for w in ws]
        )
        text = json.dumps({"type": kind, "data": data})
        for websocket in list(targets):
            with contextlib.suppress(Exception):  # a socket that just closed
                await websocket.send_text(text)

    async def _send_bytes(self, job: _Job, data: bytes) -> None:
        client = job.extra.get("client_id")
        for websocket in list(self._sockets.get(client, []) if client else []):
            with contextlib.suppress(Exception):
                await websocket.send_bytes(data)

    async def _status(self) -> None:
        await self._send(None, "status", {"status": {"exec_info": {"queue_remaining": self._remaining()}}})

    async def _work(self) -> None:
        while True:
            with self._cond:
                if not self.pending:
                    return
                job = self.pending.popleft()
                self.running = job
                self._interrupt_flag = False  # ComfyUI clears it when a prompt starts
                self._cond.notify_all()
            await self._execute(job)

    async def _message(self, job: _Job, kind: str, data: dict[str, Any], keep: bool = True) -> None:
        if keep:
            job.messages.append([kind, data])
        await self._send(job, kind, data)

    async def _execute(self, job: _Job) -> None:
        pid = job.prompt_id
        await self._message(job, "execution_start", {"prompt_id": pid, "timestamp": _now_ms()})
        await self._message(job, "execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": _now_ms()})
        values: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        status = "success"
        current = ""
        try:
            for node_id in self._order(job):
                current = node_id
                if self._interrupt_flag:
                    raise _Interrupted
                await self._message(
                    job, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}, keep=False
                )
                node = job.prompt[node_id]
                if job.reply.fail_node in (node_id, node["class_type"]):
                    raise _Failed(node_id)
                values[node_id] = await self._run_node(job, node_id, node, values)
                if node["class_type"] in ("SaveImage", "PreviewImage"):
                    outputs[node_id] = {"images": values[node_id]}
                    data = {
                        "node": node_id,
                        "display_node": node_id,
                        "output": outputs[node_id],
                        "prompt_id": pid,
                    }
                    await self._message(job, "executed", data, keep=False)
                executed.append(node_id)
            await self._message(job, "execution_success", {"prompt_id": pid, "timestamp": _now_ms()})
        except _Interrupted:
            status = "error"
            self.interrupted_prompts.append(pid)
            data = {
                "prompt_id": pid,
                "node_id": current,
                "node_type": job.prompt[current]["class_type"] if current else None,
                "executed": executed,
                "timestamp": _now_ms(),
            }
            await self._message(job, "execution_interrupted", data)
        except _Failed as failure:
            status = "error"
            node = job.prompt[failure.node_id]
            data = {
                "prompt_id": pid,
                "node_id": failure.node_id,
                "node_type": node["class_type"],
                "executed": executed,
                "exception_message": job.reply.exception_message,
                "exception_type": job.reply.exception_type,
                "traceback": ['  File "execution.py", line 496, in execute\n'],
                "current_inputs": {k: [v] for k, v in node.get("inputs", {}).items() if not _is_link(v)},
                "current_outputs": {},
                "timestamp": _now_ms(),
            }
            await self._message(job, "execution_error", data)
        with self._cond:  # ComfyUI's task_done: out of the queue and into the history in one step
            self.history[pid] = {
                "prompt": job.item(),
                "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": job.messages},
                "meta": {
                    n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                    for n in outputs
                },
            }
            self.running = None
            self._cond.notify_all()
        await self._message(job, "executing", {"node": None, "prompt_id": pid}, keep=False)
        await self._status()

    def _order(self, job: _Job) -> list[str]:
        """The nodes the outputs need, each after its inputs."""
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in job.prompt[node_id].get("inputs", {}).values():
                if _is_link(value):
                    visit(value[0])
            order.append(node_id)

        for output in job.outputs:
            visit(output)
        return order

    async def _run_node(self, job: _Job, node_id: str, node: dict[str, Any], values: dict[str, Any]) -> Any:
        """The node's value: for latents and images a ``(width, height, batch)``; SaveImage's file list."""
        inputs = node.get("inputs", {})

        def linked(name: str) -> Any:
            value = inputs[name]
            return values.get(value[0]) if _is_link(value) else value

        kind = node["class_type"]
        if kind == "EmptyLatentImage":
            return (inputs["width"] // 8 * 8, inputs["height"] // 8 * 8, inputs["batch_size"])
        if kind == "LoadImage":
            with Image.open(io.BytesIO(self.inputs[inputs["image"]])) as image:
                return (*image.size, 1)
        if kind == "ImageScale":
            width, height, batch = linked("image")
            new_w, new_h = inputs["width"], inputs["height"]
            if new_w == 0 and new_h == 0:
                return (width, height, batch)
            if new_w == 0:
                new_w = max(1, round(width * new_h / height))
            if new_h == 0:
                new_h = max(1, round(height * new_w / width))
            return (new_w, new_h, batch)
        if kind == "VAEEncode":
            width, height, batch = linked("pixels")
            return (width // 8 * 8, height // 8 * 8, batch)
        if kind == "RepeatLatentBatch":
            width, height, batch = linked("samples")
            return (width, height, batch * inputs["amount"])
        if kind == "KSampler":
            await self._sample(job, node_id, inputs["steps"])
            return linked("latent_image")
        if kind == "VAEDecode":
            return linked("samples")
        if kind in ("SaveImage", "PreviewImage"):
            return self._save(
                job, linked("images"), inputs.get("filename_prefix", "ComfyUI"), kind == "SaveImage"
            )
        return None

    async def _sample(self, job: _Job, node_id: str, steps: int) -> None:
        for step in range(1, steps + 1):
            await self.pause(job.reply.step_delay)
            if self._interrupt_flag:
                raise _Interrupted
            data = {"value": step, "max": steps, "prompt_id": job.prompt_id, "node": node_id}
            await self._message(job, "progress", data, keep=False)
            if job.reply.previews:
                preview = make_image(32, 32, "PNG", (step * 10 % 256, 0, 0))
                await self._send_bytes(job, (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + preview)
            if job.reply.drop_socket_after == step:
                for websocket in list(self._sockets.get(job.extra.get("client_id", ""), [])):
                    with contextlib.suppress(Exception):
                        await websocket.close(code=1011)
            if self._hold_after == step:
                # Polled, not awaited in a thread: a thread blocked on the gate would outlive stop().
                while not self._gate.is_set() and not self._interrupt_flag:  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
                if self._interrupt_flag:
                    raise _Interrupted

    def _save(self, job: _Job, image: Any, prefix: str, keep: bool) -> list[dict[str, str]]:
        width, height, batch = image
        subfolder, _, prefix = prefix.rpartition("/")
        kind = "output" if keep else "temp"
        saved = []
        for index in range(batch):
            self._counter += 1
            filename = f"{prefix}_{self._counter:05}_.png"
            color = _PALETTE[index % len(_PALETTE)]
            self.files[(kind, subfolder, filename)] = (
                GARBAGE if job.reply.garbage_view else make_image(width, height, "PNG", color)
            )
            saved.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return saved
