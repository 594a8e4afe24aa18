"""ComfyUI image adapter: workflow templates with named slots, queued over HTTP, followed on the websocket.

Over 500 lines on purpose: the workflow file format and the adapter that fills it change together.

A generation fills a *workflow* (a node graph in ComfyUI's API format) and queues it: ``POST /upload/image``
for a reference, ``POST /prompt {prompt, client_id, prompt_id}``, then the websocket
``/ws?clientId=<client_id>`` for ``progress`` and completion. ``/history/{prompt_id}`` is the authority
on the outcome: it is read when the socket says the prompt is done (``execution_success``, or
``executing`` with ``node`` null), polled every `ComfyUIAdapter.poll_interval` seconds when the socket
cannot be opened or drops, and looked at when the socket stays silent for `idle_check_interval`.
The images are fetched from ``GET /view``. Cancelling the awaiting task deletes the prompt from the
queue and interrupts it only if it is the one running (``/interrupt`` is global on older ComfyUI).

Workflow files are exported with ComfyUI's "Export (API)" and carry one extra top-level key, stripped
before the graph is sent::

    {
      "mmstudio": {
        "format": 1,
        "slots": {
          "prompt": ["6", "inputs", "text"],
          "seed": [["3", "inputs", "seed"], ["20", "inputs", "noise_seed"]],
          "cfg": ["3", "inputs", "cfg"]
        },
        "outputs": ["9"]
      },
      "3": {"class_type": "KSampler", "inputs": {...}},
      ...
    }

A slot is a path of keys into the graph (node id, ``"inputs"``, input name), or a list of such paths
when one value goes to several places. Every path must exist and hold a literal value, not a link
(``["4", 0]``). The slots filled from the request are ``prompt`` (required), ``negative_prompt``,
``seed``, ``steps``, ``width``, ``height``, ``batch_size`` (from `n`), ``checkpoint`` (from `model`,
unless it is ``""`` or ``"default"``: then the file's own value stays) and ``reference_image`` (the
uploaded name of the first reference; a workflow with this slot needs a reference, one without it
takes none). Any other slot name is a *custom* slot, filled from ``request.extra[name]`` when given
(the templates expose ``cfg``, ``sampler_name``, ``scheduler`` and, for img2img, ``denoise``). A slot
the request leaves unset keeps the file's value; a request field the workflow has no slot for is not
sent. `outputs` (optional) names the nodes whose images are returned, in order; without it every
node's images of type ``output`` are (previews of type ``temp`` are not).

`request.workflow` names a built-in template (``txt2img``, ``img2img``) or an absolute path to a
user's ``.json`` file; without it ``img2img`` is used when the request has references, else
``txt2img``. A file that is not JSON, not in the API format, or has a slot that does not fit its
graph raises `ConfigError` naming the file and the slot.

A batch shares one seed (ComfyUI draws the whole batch's noise from it), so every image reports the
same seed; without `request.seed` a random one in ``0..2**32-1`` is drawn and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeGuard
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from mmstudio.errors import BadRequest, ConfigError, InvalidRequest, ProviderError, redact
from mmstudio.providers._http import (
    HTTPAdapter,
    UpstreamResponse,
    error_for_status,
    parse_retry_after,
    raise_protocol,
)
from mmstudio.providers.base import ProbeResult, RemoteModel
from mmstudio.providers.media.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageProgress,
    ImageRequest,
    ImageResult,
    InputImage,
    ProgressCallback,
    sniff_image_type,
)

COMFYUI_CAPABILITIES = ImageCapabilities(
    supports_references=True,
    supports_edit=True,
    supports_negative_prompt=True,
    supports_seed=True,
    supports_steps=True,
    max_n=8,
    max_references=1,
    output_formats=("png",),
)

WORKFLOW_KEY = "mmstudio"
BUILTIN_WORKFLOWS = ("txt2img", "img2img")
# The slots filled from the request's own fields; any other slot name is a custom one, from `extra`.
REQUEST_SLOTS = frozenset(("prompt", "negative_prompt", "seed", "steps", "width", "height"))
REQUEST_SLOTS |= {"batch_size", "checkpoint", "reference_image"}
REQUIRED_SLOTS = ("prompt",)
# Model names that mean "the checkpoint the workflow file names": no override is written for them.
DEFAULT_CHECKPOINT_NAMES = frozenset({"", "default"})
MIN_SIDE, MAX_SIDE, SIDE_STEP = 16, 16384, 8  # EmptyLatentImage's limits
SEED_LIMIT = 2**32
MAX_MESSAGE = 64 * 2**20  # websocket frames: previews of large images are big
_SHORT = httpx.Timeout(5.0, connect=2.0)  # queue looks, deletes and the interrupt
_PREVIEW, _PREVIEW_WITH_METADATA = 1, 4  # binary websocket event types

SlotPath = tuple[str, ...]


# -- workflows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workflow:
    """A validated API-format graph (without the ``mmstudio`` key) and where its slots point."""

    name: str
    source: str  # the file it came from, for messages
    graph: Mapping[str, Any]
    slots: Mapping[str, tuple[SlotPath, ...]]
    outputs: tuple[str, ...] = ()

    def has(self, slot: str) -> bool:
        return slot in self.slots

    def fill(self, values: Mapping[str, object]) -> dict[str, Any]:
        """A copy of the graph with each value written to every path of its slot; values for slots
        the workflow does not declare are dropped."""
        graph: dict[str, Any] = copy.deepcopy(dict(self.graph))
        for slot, value in values.items():
            for path in self.slots.get(slot, ()):
                target: Any = graph
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
        return graph


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and _is_int(value[1])


def _slot_paths(raw: object) -> tuple[SlotPath, ...] | None:
    """One path (``["6", "inputs", "text"]``) or a list of them, else None."""

    def path(item: object) -> SlotPath | None:
        if isinstance(item, list) and len(item) >= 2 and all(isinstance(k, str) and k for k in item):
            return tuple(item)
        return None

    if (single := path(raw)) is not None:
        return (single,)
    if isinstance(raw, list) and raw:
        paths = [path(item) for item in raw]
        if all(p is not None for p in paths):
            return tuple(p for p in paths if p is not None)
    return None


def _path_problem(graph: Mapping[str, Any], path: SlotPath) -> str | None:
    target: Any = graph
    for depth, key in enumerate(path):
        if not isinstance(target, dict) or key not in target:
            where = "the graph" if depth == 0 else "/".join(path[:depth])
            return f"{list(path)} does not exist: {where} has no {key!r}"
        target = target[key]
    if _is_link(target):
        return f"{list(path)} is a link to another node's output, not a value to fill"
    return None


def parse_workflow(data: object, *, name: str, source: str) -> Workflow:
    """Validate a workflow's JSON (see the module docstring); raises `ConfigError` naming `source`."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"ComfyUI workflow {source}: {why}")

    if not isinstance(data, dict):
        raise bad("is not a JSON object of node id -> {class_type, inputs}")
    if isinstance(data.get("nodes"), list) and "links" in data:
        raise bad('is in the UI format: export it with "Export (API)" and add an "mmstudio" key')
    meta = data.get(WORKFLOW_KEY)
    if not isinstance(meta, dict) or not isinstance(meta.get("slots"), dict):
        raise bad(
            f'has no "{WORKFLOW_KEY}": {{"slots": {{...}}}} key saying where the request goes, e.g. '
            '{"mmstudio": {"slots": {"prompt": ["6", "inputs", "text"]}}}'
        )
    if meta.get("format", 1) != 1:
        raise bad(f"has {WORKFLOW_KEY}.format {meta.get('format')!r}; only format 1 is known")
    graph = {key: node for key, node in data.items() if key != WORKFLOW_KEY}
    if not graph:
        raise bad("has no nodes")
    for node_id, node in graph.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs"), dict)
        ):
            raise bad(f"node {node_id!r} is not an object with a class_type string and an inputs object")
    slots: dict[str, tuple[SlotPath, ...]] = {}
    for slot, raw in meta["slots"].items():
        paths = _slot_paths(raw)
        if paths is None:
            raise bad(f'slot {slot!r} is not a path like ["6", "inputs", "text"] nor a list of such paths')
        for path in paths:
            if (problem := _path_problem(graph, path)) is not None:
                raise bad(f"slot {slot!r}: {problem}")
        slots[slot] = paths
    for required in REQUIRED_SLOTS:
        if required not in slots:
            raise bad(f"the required slot {required!r} is missing from {WORKFLOW_KEY}.slots")
    outputs = meta.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, str) and o in graph for o in outputs):
        raise bad(f"{WORKFLOW_KEY}.outputs must be a list of node ids of the graph, not {outputs!r}")
    return Workflow(name=name, source=source, graph=graph, slots=slots, outputs=tuple(outputs))


@cache
def _builtin(name: str) -> Workflow:
    text = (
        resources.files("mmstudio.providers.media").joinpath("workflows", f"{name}.json").read_text("utf-8")
    )
    return parse_workflow(json.loads(text), name=name, source=f"{name} (built-in)")


def load_workflow(path_or_name: str | os.PathLike[str]) -> Workflow:
    """A built-in template by name (``txt2img``, ``img2img``) or a user's API-format ``.json`` file by
    absolute path; raises `ConfigError` naming the file and what is wrong with it."""
    text = os.fspath(path_or_name)
    if text in BUILTIN_WORKFLOWS:
        return _builtin(text)
    path = Path(text).expanduser()
    if not path.is_absolute() or path.suffix.lower() != ".json":
        names = ", ".join(BUILTIN_WORKFLOWS)
        raise ConfigError(
            f"unknown ComfyUI workflow {text!r}: give a built-in name ({names}) "
            "or an absolute path to an API-format .json file"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"ComfyUI workflow {path}: cannot be read ({exc.strerror or exc})") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"ComfyUI workflow {path}: is not valid JSON ({exc})") from exc
    return parse_workflow(data, name=path.stem, source=str(path))


# -- wire helpers ------------------------------------------------------------------------------


def snap_size(width: int, height: int) -> tuple[int, int]:
    """The nearest size a latent takes: each side a multiple of 8, from 16 to 16384."""

    def snap(side: int) -> int:
        return min(MAX_SIDE, max(MIN_SIDE, (side + SIDE_STEP // 2) // SIDE_STEP * SIDE_STEP))

    return snap(width), snap(height)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _listed(items: object, prompt_id: str) -> bool:
    """Whether a ``/queue`` list (items ``[number, prompt_id, prompt, extra, outputs]``) holds the prompt."""
    return isinstance(items, list) and any(
        isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in items
    )


def _combo_options(spec: object) -> list[str] | None:
    """A combo input's choices: ``[[names...], {...}]``, or ``["COMBO", {"options": [...]}]`` (newer)."""
    if not isinstance(spec, list) or not spec:
        return None
    first = spec[0]
    if isinstance(first, list):
        return [n for n in first if isinstance(n, str) and n]
    if first == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        if isinstance(options, list):
            return [n for n in options if isinstance(n, str) and n]
    return None


def _error_text(body: bytes) -> str:
    """``/prompt``'s ``{error: {type, message, details}, node_errors: {id: {errors, class_type}}}`` as
    one line naming each failing node; any other body as its text."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:500] or "(no body)"
    if not isinstance(payload, dict):
        return str(payload)[:500]
    parts: list[str] = []
    nodes: list[str] = []
    node_errors = payload.get("node_errors")
    for node_id, info in (node_errors if isinstance(node_errors, dict) else {}).items():
        info = info if isinstance(info, dict) else {}
        errors = info.get("errors") if isinstance(info.get("errors"), list) else []
        for item in errors or [{}]:
            item = item if isinstance(item, dict) else {}
            message = str(item.get("message") or "invalid")
            details = item.get("details")
            nodes.append(
                f"node {node_id} ({info.get('class_type', '?')}): {message}"
                + (f": {details}" if details else "")
            )
    error = payload.get("error")
    if isinstance(error, dict):
        message, details = str(error.get("message") or error.get("type") or "error"), error.get("details")
        # With node errors the details only repeat them; alone they name the node ("Node ID '#3'").
        parts.append(f"{message} ({details})" if details and not nodes else message)
    elif isinstance(error, str) and error:
        parts.append(error)
    return "; ".join(parts + nodes) or json.dumps(payload)[:500]


def _preview_of(frame: bytes, prompt_id: str, ours_running: bool) -> bytes | None:
    """The image in a binary preview frame: type 1 (``type, format, bytes``: sent to the prompt's client,
    taken while our prompt runs) or type 4 (with a JSON metadata block naming the prompt)."""
    if len(frame) < 8:
        return None
    kind = int.from_bytes(frame[:4], "big")
    if kind == _PREVIEW and ours_running:
        return frame[8:] if sniff_image_type(frame[8:]) else None
    if kind == _PREVIEW_WITH_METADATA:
        size = int.from_bytes(frame[4:8], "big")
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            metadata = json.loads(frame[8 : 8 + size])
            image = frame[8 + size :]
            if (
                isinstance(metadata, dict)
                and metadata.get("prompt_id") == prompt_id
                and sniff_image_type(image)
            ):
                return image
    return None


# -- the adapter -------------------------------------------------------------------------------


async def prompt_history(adapter: HTTPAdapter, prompt_id: str, model: str) -> dict[str, Any] | None:
    """ComfyUI's ``/history/{prompt_id}`` entry: None while the prompt has not finished (or is unknown)."""
    data = await adapter.request_json("GET", f"history/{quote(prompt_id, safe='')}", model=model)
    if not isinstance(data, dict):
        raise_protocol(adapter.config, "sent a history that is not an object", model)
    entry = data.get(prompt_id)
    return entry if isinstance(entry, dict) else None


class ComfyUIAdapter(HTTPAdapter):
    """A ComfyUI server (default ``http://127.0.0.1:8188``). No auth of its own; an `api_key` goes as a
    Bearer token (and `config.headers` as they are), on HTTP and the websocket, for a proxy in front.

    `poll_interval` is the seconds between ``/history`` polls without a websocket; `idle_check_interval`
    how long the open socket may stay silent before ``/history`` is looked at anyway.
    """

    protocol: ClassVar[str] = "comfyui"
    capabilities: ClassVar[ImageCapabilities] = COMFYUI_CAPABILITIES
    poll_interval: float = 0.5
    idle_check_interval: float = 10.0

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        headers.update(self.config.headers)
        return headers

    @property
    def _label(self) -> str:
        return self.config.provider or "comfyui"

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        text = redact(_error_text(body), self.config.secrets)
        if status == 400:  # /prompt's answer to a graph it will not run: no retry fixes that
            return BadRequest(
                f"{self._label} rejected the request: {text}",
                provider=self.config.provider,
                model=model,
                status=400,
            )
        return error_for_status(
            status, text, config=self.config, model=model, retry_after=parse_retry_after(headers)
        )

    # -- generation ----------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> ImageResult:
        workflow = await self.workflow_for(request)
        seed = request.seed if request.seed is not None else secrets.randbelow(SEED_LIMIT)
        client_id = uuid.uuid4().hex
        # Sent with the prompt (ComfyUI takes a client's own id), so a cancel during the POST still
        # names it; the id ComfyUI answers with is used from then on.
        prompt_id = str(uuid.uuid4())
        queued = False
        async with self._socket(client_id) as ws:
            try:
                graph = workflow.fill(await self.slot_values(request, workflow, seed))
                queued = True
                answer = await self._queue_prompt(graph, client_id, prompt_id, request.model)
                prompt_id = answer["prompt_id"]
                entry = await self._wait(ws, prompt_id, progress, request.model)
            except asyncio.CancelledError:
                if queued:
                    await self._cancel(prompt_id)
                raise
        used_seed = seed if workflow.has("seed") else None
        images = [
            replace(await self._fetch(ref, request.model), seed=used_seed)
            for ref in self._output_refs(entry, workflow, request.model)
        ]
        info: dict[str, Any] = {"prompt_id": prompt_id, "workflow": workflow.name, "seed": used_seed}
        if _is_int(answer.get("number")):
            info["number"] = answer["number"]
        if answer.get("node_errors"):  # some outputs failed validation, the rest ran
            info["node_errors"] = answer["node_errors"]
        return ImageResult(images=tuple(images), info=info)

    async def workflow_for(self, request: ImageRequest) -> Workflow:
        """The request's workflow (default txt2img, or img2img with references), checked against it."""
        name = request.workflow or ("img2img" if request.references else "txt2img")
        workflow = await asyncio.to_thread(load_workflow, name)
        if request.references and not workflow.has("reference_image"):
            raise InvalidRequest(
                f"ComfyUI workflow {workflow.source} has no reference_image slot: it takes no reference",
                field="references",
            )
        if workflow.has("reference_image") and not request.references:
            raise InvalidRequest(
                f"ComfyUI workflow {workflow.source} needs a reference image", field="references"
            )
        return workflow

    async def slot_values(self, request: ImageRequest, workflow: Workflow, seed: int) -> dict[str, object]:
        """What goes into the slots (the reference is uploaded here); custom slots from `extra`."""
        values: dict[str, object] = {"prompt": request.prompt, "seed": seed, "batch_size": max(1, request.n)}
        if request.negative_prompt is not None:
            values["negative_prompt"] = request.negative_prompt
        if request.steps is not None:
            values["steps"] = request.steps
        if (size := request.width_height) is not None:
            values["width"], values["height"] = snap_size(*size)
        if request.model.strip().lower() not in DEFAULT_CHECKPOINT_NAMES:
            values["checkpoint"] = request.model
        for key, value in request.extra.items():
            if key not in REQUEST_SLOTS and workflow.has(key):
                values[key] = value
        if request.references and workflow.has("reference_image"):
            values["reference_image"] = await self.upload(request.references[0], request.model)
        return values

    async def upload(self, image: InputImage, model: str | None = None) -> str:
        """Upload to ComfyUI's input folder; the name LoadImage takes. Named by content, so the same
        reference is stored once (and ``overwrite`` replaces it with the same bytes)."""
        suffix = {"image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}.get(
            image.media_type, ".png"
        )
        filename = f"mmstudio-{hashlib.sha256(image.data).hexdigest()[:24]}{suffix}"
        data = await self.request_multipart(
            "upload/image",
            data={"overwrite": "true", "type": "input"},
            files=[("image", (filename, image.data, image.media_type))],
            model=model,
        )
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise_protocol(self.config, "answered an upload without the stored name", model)
        subfolder = data.get("subfolder")
        return f"{subfolder}/{name}" if isinstance(subfolder, str) and subfolder else name

    async def _queue_prompt(
        self, graph: dict[str, Any], client_id: str, prompt_id: str, model: str
    ) -> dict[str, Any]:
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        data = await self.request_json("POST", "prompt", model=model, json_body=body)
        if not isinstance(data, dict) or not isinstance(data.get("prompt_id"), str) or not data["prompt_id"]:
            raise_protocol(self.config, "queued a prompt without answering its prompt_id", model)
        return data

    async def _wait(
        self, ws: ClientConnection | None, prompt_id: str, progress: ProgressCallback | None, model: str
    ) -> dict[str, Any]:
        """The prompt's history entry once it is done: followed on the socket while it lasts, then
        (or without one) by polling ``/history``."""
        if ws is not None:
            try:
                entry = await self._listen(ws, prompt_id, progress, model)
            except (ConnectionClosed, OSError):
                entry = None  # the socket dropped: the prompt runs on, so poll for it
            if entry is not None:
                return entry
        while True:
            entry = await self._finished(prompt_id, model)
            if entry is not None:
                return entry
            await asyncio.sleep(self.poll_interval)

    async def _listen(
        self, ws: ClientConnection, prompt_id: str, progress: ProgressCallback | None, model: str
    ) -> dict[str, Any] | None:
        """Report our prompt's progress until the socket says it is done (None: read the history now)
        or failed (raised). Other prompts' messages are skipped: a shared client id sees them too."""
        last: ImageProgress | None = None
        while True:
            try:
                async with asyncio.timeout(self.idle_check_interval):
                    message = await ws.recv()
            except TimeoutError:
                entry = await self._finished(prompt_id, model)  # a missed message must not hang us
                if entry is not None:
                    return entry
                continue
            if isinstance(message, bytes):
                preview = _preview_of(message, prompt_id, last is not None)
                if preview is not None and progress is not None:
                    await progress(replace(last or ImageProgress(), preview=preview))
                continue
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
                continue
            kind, data = event.get("type"), event["data"]
            if data.get("prompt_id") != prompt_id:
                continue
            if kind == "progress":
                value, steps = data.get("value"), data.get("max")
                if _is_int(value) and _is_int(steps) and steps > 0:
                    update = ImageProgress(
                        step=value, steps=steps, percent=round(min(max(value / steps, 0.0), 1.0) * 100, 1)
                    )
                    if update != last:
                        last = update
                        if progress is not None:
                            await progress(update)
            elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                return None
            elif kind in ("execution_error", "execution_interrupted"):
                raise self._execution_error(kind, data, prompt_id, model)

    async def _finished(self, prompt_id: str, model: str) -> dict[str, Any] | None:
        """The history entry when the prompt is done, None while it is queued or running; a failed run
        raises, and so does a prompt that is in neither (ComfyUI restarted, the queue was cleared)."""
        entry = await prompt_history(self, prompt_id, model)
        if entry is None:
            queue = await self.request_json("GET", "queue", model=model, timeout=_SHORT)
            if isinstance(queue, dict) and (
                _listed(queue.get("queue_running"), prompt_id)
                or _listed(queue.get("queue_pending"), prompt_id)
            ):
                return None
            # Leaving the queue and entering the history is one step in ComfyUI: look again.
            entry = await prompt_history(self, prompt_id, model)
            if entry is None:
                raise ProviderError(
                    f"{self._label}: prompt {prompt_id} is neither queued nor in the history "
                    "(was ComfyUI restarted, or the queue cleared?)",
                    provider=self.config.provider,
                    model=model,
                )
        status = entry.get("status")
        if isinstance(status, dict) and status.get("status_str") == "error":
            messages = status.get("messages")
            for item in messages if isinstance(messages, list) else []:
                failed = isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
                if failed and item[0] in ("execution_error", "execution_interrupted"):
                    raise self._execution_error(item[0], item[1], prompt_id, model)
            raise ProviderError(
                f"{self._label}: prompt {prompt_id} failed", provider=self.config.provider, model=model
            )
        return entry

    def _execution_error(
        self, kind: object, data: Mapping[str, Any], prompt_id: str, model: str
    ) -> ProviderError:
        where = f"node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
        if kind == "execution_interrupted":
            text = f"prompt {prompt_id} was interrupted at {where}"
        else:
            exc_type, exc_message = data.get("exception_type"), data.get("exception_message")
            text = (
                f"{where} failed: " + (f"{exc_type}: " if exc_type else "") + str(exc_message or "").strip()
            )
        return ProviderError(
            f"{self._label}: {redact(text, self.config.secrets)}", provider=self.config.provider, model=model
        )

    def _output_refs(self, entry: Mapping[str, Any], workflow: Workflow, model: str) -> list[dict[str, str]]:
        """The ``{filename, subfolder, type}`` of each result image, in the workflow's output order."""
        outputs = entry.get("outputs")
        outputs = outputs if isinstance(outputs, dict) else {}
        nodes = list(workflow.outputs) or list(outputs)
        refs: list[dict[str, str]] = []
        for node in nodes:
            output = outputs.get(node)
            images = output.get("images") if isinstance(output, dict) else None
            for image in images if isinstance(images, list) else []:
                if not isinstance(image, dict) or not isinstance(image.get("filename"), str):
                    continue
                kind, subfolder = image.get("type"), image.get("subfolder")
                kind = kind if isinstance(kind, str) else "output"
                if workflow.outputs or kind == "output":
                    subfolder = subfolder if isinstance(subfolder, str) else ""
                    refs.append({"filename": image["filename"], "subfolder": subfolder, "type": kind})
        if not refs:
            raise_protocol(self.config, "finished the prompt without any output images", model)
        return refs

    async def _fetch(self, ref: Mapping[str, str], model: str) -> GeneratedImage:
        response = await self._send("GET", "view", params=ref, model=model)
        data = response.content
        media_type = sniff_image_type(data)
        if media_type is None:
            raise_protocol(
                self.config,
                f"sent {len(data)} bytes for {ref['filename']} that are not a PNG, JPEG, WebP or GIF image",
                model,
            )
        return GeneratedImage(data=data, media_type=media_type)

    async def _cancel(self, prompt_id: str) -> None:
        """Best effort, the caller is already gone: drop the prompt from the queue, and interrupt only
        when it is the one running (older ComfyUI interrupts whatever runs; newer honours prompt_id)."""
        with contextlib.suppress(ProviderError):
            await self._send("POST", "queue", json_body={"delete": [prompt_id]}, timeout=_SHORT)
        with contextlib.suppress(ProviderError):
            queue = await self.request_json("GET", "queue", timeout=_SHORT)
            if isinstance(queue, dict) and _listed(queue.get("queue_running"), prompt_id):
                await self._send("POST", "interrupt", json_body={"prompt_id": prompt_id}, timeout=_SHORT)

    # -- transport -----------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        model: str | None = None,
    ) -> UpstreamResponse:
        """A request whose answer is not JSON (``/view``'s bytes; ``/queue`` and ``/interrupt`` answer
        with an empty 200)."""
        response: UpstreamResponse
        with self.transport_errors(model):
            if self._direct is not None:
                response = await self._direct.send(
                    method,
                    self.url(path),
                    headers=self.headers(),
                    timeout=timeout or self.timeout(),
                    json_body=json_body,
                    params=params,
                )
            else:
                response = await self.client.request(
                    method,
                    self.url(path),
                    json=json_body,
                    headers=self.headers(),
                    timeout=timeout or self.timeout(),
                    params=params,
                )
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.content, response.headers, model)
        return response

    def ws_url(self, client_id: str) -> str:
        parts = urlsplit(self.config.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = parts.path.rstrip("/") + "/ws"
        return urlunsplit((scheme, parts.netloc, path, urlencode({"clientId": client_id}), ""))

    @contextlib.asynccontextmanager
    async def _socket(self, client_id: str) -> AsyncIterator[ClientConnection | None]:
        """The websocket for `client_id`, or None when it cannot be opened (then ``/history`` is polled).
        Opened before the prompt is queued, so no message of it is missed."""
        ws: ClientConnection | None
        try:
            ws = await connect(
                self.ws_url(client_id),
                additional_headers=self.headers() or None,
                open_timeout=self.config.connect_timeout,
                max_size=MAX_MESSAGE,
                proxy=None,  # like the HTTP client: a local engine is reached directly
            )
        except (OSError, TimeoutError, WebSocketException):
            ws = None
        try:
            yield ws
        finally:
            if ws is not None:
                with contextlib.suppress(OSError, WebSocketException):
                    await ws.close()

    # -- models and health ---------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        """The checkpoints CheckpointLoaderSimple offers (its ``ckpt_name`` choices)."""
        data = await self.request_json("GET", "object_info/CheckpointLoaderSimple")
        try:
            spec = data["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
        except (KeyError, TypeError):
            raise_protocol(self.config, "sent object_info without CheckpointLoaderSimple's ckpt_name")
        names = _combo_options(spec)
        if names is None:
            raise_protocol(
                self.config, f"sent a ckpt_name input that is not a list of choices: {spec!r:.200}"
            )
        return [RemoteModel(id=name) for name in names]

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("system_stats")
