"""A fake Gemini API for Veo: ``predictLongRunning``, operations that finish after N polls, real MP4 files.

It is `FakeGeminiServer` (same ``/v1beta`` key check, model list and Google error bodies) plus:

- ``POST /v1beta/models/{model}:predictLongRunning`` ``{instances: [{prompt, image?, lastFrame?}],
  parameters: {aspectRatio?, resolution?, durationSeconds?, negativePrompt?, personGeneration?,
  sampleCount?, enhancePrompt?}}`` → ``{"name": "models/{model}/operations/{id}"}``. Checked as the real
  API checks it (400 INVALID_ARGUMENT): unknown field names (camelCase or snake_case), a missing prompt,
  an image without valid base64 ``bytesBase64Encoded`` (or ``inlineData.data``) or ``mimeType``, a
  ``lastFrame`` without an ``image``, an aspect ratio other than 16:9 / 9:16, a resolution other than
  720p / 1080p, a duration other than 4, 6 or 8. ``seed`` is an unknown name here, as google-genai's
  Gemini-API converter says.
- ``GET /v1beta/models/{model}/operations/{id}`` → ``{"name"}`` while running (no ``done``: proto3
  leaves false out, and there is no progress), then ``{"name", "done": true, "response": {"@type",
  "generateVideoResponse": {"generatedSamples": [{"video": {"uri"}}]}}}``; or ``done`` with ``error``
  ``{code, message}``; or ``done`` with no samples and ``raiMediaFilteredCount`` /
  ``raiMediaFilteredReasons``. An unknown operation is 404 NOT_FOUND.
- ``GET /v1beta/files/{id}:download?alt=media`` (the sample's uri; key checked) → 302 to
  ``http://{blob_host}:{port}/blob/{id}`` (``localhost`` by default: another origin than the API's
  ``127.0.0.1``, like Google's storage host), which serves the MP4 made by `make_mp4()` without a key.

Script creates with `VeoReply` (a `Reply`): `polls` (the poll that finds it done; 1 = the first),
`outcome` (``"video"``, ``"error"``, ``"filtered"``), `samples`, `error_code` / `error_message`,
`rai_reasons`, `rai_count`, `file_status` (403/404/410: the file expired), `cut_download` (half the MP4,
then the connection drops), `video` (bytes served instead of the MP4). `status` + `error_body` / `raw`
on a create reply answer the create itself (nothing is submitted). Poll faults are scripted apart with
`script_poll(Reply(...))` (status, raw garbage, headers), consumed by the next polls.

`submissions` counts accepted creates; `create_bodies()` returns their JSON bodies; `blob_requests()`
the requests that reached the storage route.
"""

from __future__ import annotations

import binascii
import itertools
import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.base import DropConnection, Recorded, Reply
from tests.fakes.gemini_images_server import decode_bytes
from tests.fakes.gemini_server import FakeGeminiServer, google_error_body
from tests.fakes.videos import make_mp4

VEO_MODELS = ["veo-3.1-generate-preview", "veo-3.1-fast-generate-preview"]
DEFAULT_MODELS = [*VEO_MODELS, "gemini-2.5-flash"]
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
_INSTANCE_FIELDS = frozenset({"prompt", "image", "lastFrame", "referenceImages", "video"})
_PARAMETER_FIELDS = frozenset(
    {"aspectRatio", "resolution", "durationSeconds", "negativePrompt", "personGeneration"}
    | {"sampleCount", "enhancePrompt"}
)
_IMAGE_FIELDS = frozenset({"bytesBase64Encoded", "mimeType", "inlineData", "gcsUri"})
_RATIOS = ("16:9", "9:16")
_RESOLUTIONS = ("720p", "1080p")
_DURATIONS = (4, 6, 8)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _get(obj: dict[str, Any], camel: str) -> Any:
    return obj[camel] if camel in obj else obj.get(_snake(camel))


@dataclass
class VeoReply(Reply):
    """A `Reply` with the Veo knobs described in the module docstring."""

    polls: int = 2
    outcome: str = "video"
    samples: int = 1
    error_code: int = 13
    error_message: str = "Video generation failed due to an internal error."
    rai_reasons: list[str] = field(
        default_factory=lambda: [
            "Your current safety settings for person generation blocked this video. Try a different prompt."
        ]
    )
    rai_count: int | None = None
    file_status: int | None = None
    cut_download: bool = False
    video: bytes | None = None


@dataclass
class _Operation:
    name: str
    model: str
    reply: VeoReply
    polled: int = 0
    files: list[str] = field(default_factory=list)


class _Invalid(Exception):
    """A request the real API answers with 400 INVALID_ARGUMENT; the message is Google's."""


class FakeVeoServer(FakeGeminiServer):
    """The Gemini API's Veo routes on top of the chat fake (module docstring)."""

    name = "veo"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        max_page_size: int = 50,
        blob_host: str = "localhost",
    ) -> None:
        super().__init__(
            default or VeoReply(),
            models=list(models) if models is not None else list(DEFAULT_MODELS),
            api_key=api_key,
            max_page_size=max_page_size,
        )
        self.blob_host = blob_host
        self.operations: dict[str, _Operation] = {}
        self.files: dict[str, _Operation] = {}
        self.submissions = 0
        self._poll_script: deque[Reply] = deque()
        self._poll_lock = threading.Lock()
        self._op_ids = itertools.count(1)
        self._mp4: bytes | None = None

    # -- scripting and assertions --------------------------------------------------------------

    def script_poll(self, *replies: Reply) -> FakeVeoServer:
        with self._poll_lock:
            self._poll_script.extend(replies)
        return self

    def reset(self) -> None:
        super().reset()
        with self._poll_lock:
            self._poll_script.clear()
        self.operations.clear()
        self.files.clear()
        self.submissions = 0

    @property
    def mp4(self) -> bytes:
        if self._mp4 is None:
            self._mp4 = make_mp4(64, 36, seconds=1.0)
        return self._mp4

    def create_bodies(self) -> list[Any]:
        return [
            r.json() for r in self.requests if r.method == "POST" and r.path.endswith(":predictLongRunning")
        ]

    def blob_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/blob/")]

    def model_info(self, model: str) -> dict[str, Any]:
        info = super().model_info(model)
        if model.startswith("veo"):
            info.update(supportedGenerationMethods=["predictLongRunning"], inputTokenLimit=1024)
            info.pop("thinking", None)
        return info

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/v1beta/models/{model}/operations/{op}", self.get_operation, methods=["GET"]),
            Route("/v1beta/files/{target}", self.download_file, methods=["GET"]),
            Route("/blob/{file_id}", self.blob, methods=["GET"]),
            *super().routes(),
        ]

    async def generate(self, request: Request) -> Response:
        model, _, method = request.path_params["target"].partition(":")
        if method != "predictLongRunning":
            return await super().generate(request)
        recorded = await self.record(request)
        if (failure := self._auth_failure(request)) is not None:
            return failure
        with self._lock:
            scripted = bool(self._script)
        if model not in self.models and not scripted:
            return self._not_found(model, method)
        try:
            body = json.loads(recorded.body or b"null")
            self._validate(body)
        except ValueError:
            return JSONResponse(google_error_body(400, "Invalid JSON payload received."), status_code=400)
        except _Invalid as exc:
            return JSONResponse(google_error_body(400, str(exc)), status_code=400)
        reply = self.next_reply()
        await self._pause_unless_gone(request, reply.delay)
        if reply.raw is not None or reply.status >= 400:
            error = reply.error_body if reply.error_body is not None else google_error_body(reply.status)
            return self.json_response(error, reply)
        knobs = reply if isinstance(reply, VeoReply) else VeoReply()
        name = f"models/{model}/operations/{next(self._op_ids):04d}fake{len(self.operations):04d}"
        self.operations[name] = _Operation(name=name, model=model, reply=knobs)
        self.submissions += 1
        return self.json_response({"name": name}, reply)

    async def get_operation(self, request: Request) -> Response:
        await self.record(request)
        if (failure := self._auth_failure(request)) is not None:
            return failure
        with self._poll_lock:
            fault = self._poll_script.popleft() if self._poll_script else None
        if fault is not None and (fault.raw is not None or fault.status >= 400):
            error = fault.error_body if fault.error_body is not None else google_error_body(fault.status)
            return self.json_response(error, fault)
        name = f"models/{request.path_params['model']}/operations/{request.path_params['op']}"
        operation = self.operations.get(name)
        if operation is None:
            return JSONResponse(google_error_body(404, f"Operation {name} not found."), status_code=404)
        operation.polled += 1
        return JSONResponse(self.render(operation, request))

    def render(self, operation: _Operation, request: Request) -> dict[str, Any]:
        reply = operation.reply
        if operation.polled < reply.polls:
            return {"name": operation.name}
        if reply.outcome == "error":
            return {
                "name": operation.name,
                "done": True,
                "error": {"code": reply.error_code, "message": reply.error_message},
            }
        result: dict[str, Any] = {}
        if reply.outcome == "filtered":
            result["raiMediaFilteredCount"] = reply.rai_count if reply.rai_count is not None else 1
            if reply.rai_reasons:
                result["raiMediaFilteredReasons"] = list(reply.rai_reasons)
        else:
            if not operation.files:
                for _ in range(reply.samples):
                    file_id = f"fv{len(self.files):06d}x"
                    self.files[file_id] = operation
                    operation.files.append(file_id)
            base = f"{request.url.scheme}://{request.url.netloc}"
            result["generatedSamples"] = [
                {"video": {"uri": f"{base}/v1beta/files/{file_id}:download?alt=media"}}
                for file_id in operation.files
            ]
        return {
            "name": operation.name,
            "done": True,
            "response": {"@type": RESPONSE_TYPE, "generateVideoResponse": result},
        }

    async def download_file(self, request: Request) -> Response:
        await self.record(request)
        file_id, _, method = request.path_params["target"].partition(":")
        if method != "download" or request.query_params.get("alt") != "media":
            return JSONResponse(google_error_body(404), status_code=404)
        if (failure := self._auth_failure(request)) is not None:
            return failure
        operation = self.files.get(file_id)
        if operation is None:
            return JSONResponse(google_error_body(404, f"File {file_id} not found."), status_code=404)
        expired = operation.reply.file_status
        if expired is not None:
            message = f"You do not have permission to access the File {file_id} or it may not exist."
            return JSONResponse(google_error_body(expired, message), status_code=expired)
        return RedirectResponse(f"http://{self.blob_host}:{self.port}/blob/{file_id}", status_code=302)

    async def blob(self, request: Request) -> Response:
        await self.record(request)
        operation = self.files.get(request.path_params["file_id"])
        if operation is None:
            return Response(
                b"<Error><Code>NoSuchKey</Code></Error>", status_code=404, media_type="application/xml"
            )
        data = operation.reply.video if operation.reply.video is not None else self.mp4
        if not operation.reply.cut_download:
            return Response(data, media_type="video/mp4")

        async def half() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            raise DropConnection("scripted cut")

        return StreamingResponse(half(), media_type="video/mp4", headers={"content-length": str(len(data))})

    # -- request checks ------------------------------------------------------------------------

    def _validate(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Invalid("Invalid JSON payload received. Expected an object.")
        _known(body, frozenset({"instances", "parameters"}), "")
        instances = _get(body, "instances")
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            raise _Invalid("* PredictLongRunningRequest.instances: instances is required.\n")
        instance = instances[0]
        _known(instance, _INSTANCE_FIELDS, "instances[0]")
        prompt = _get(instance, "prompt")
        image = _get(instance, "image")
        if not (isinstance(prompt, str) and prompt.strip()) and image is None:
            raise _Invalid("A text prompt or an image is required.")
        for key in ("image", "lastFrame"):
            if (value := _get(instance, key)) is not None:
                _check_image(value, f"instances[0].{_snake(key)}")
        if _get(instance, "lastFrame") is not None and image is None:
            raise _Invalid("`lastFrame` requires `image` (the first frame).")
        parameters = _get(body, "parameters") or {}
        _known(parameters, _PARAMETER_FIELDS, "parameters")
        ratio = _get(parameters, "aspectRatio")
        if ratio is not None and ratio not in _RATIOS:
            raise _Invalid(f"Unsupported aspect ratio: {ratio}. Supported: {', '.join(_RATIOS)}.")
        resolution = _get(parameters, "resolution")
        if resolution is not None and resolution not in _RESOLUTIONS:
            raise _Invalid(f"Unsupported resolution: {resolution}. Supported: {', '.join(_RESOLUTIONS)}.")
        duration = _get(parameters, "durationSeconds")
        if duration is not None:
            try:  # proto3 JSON takes an int32 as a number or a numeric string
                seconds = int(duration) if not isinstance(duration, bool | float) else None
            except ValueError:
                seconds = None
            if seconds not in _DURATIONS:
                raise _Invalid(f"Unsupported duration: {duration}. Supported: 4, 6, 8 seconds.")


def _known(obj: Any, fields: frozenset[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise _Invalid(f"Invalid value at '{where or 'request'}': expected an object.")
    allowed = fields | {_snake(f) for f in fields}
    for name in obj:
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise _Invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _check_image(image: Any, where: str) -> None:
    _known(image, _IMAGE_FIELDS, where)
    inline = _get(image, "inlineData")
    data = _get(inline, "data") if isinstance(inline, dict) else _get(image, "bytesBase64Encoded")
    mime = _get(inline, "mimeType") if isinstance(inline, dict) else _get(image, "mimeType")
    if _get(image, "gcsUri") is not None:
        raise _Invalid(f"* {where}.gcs_uri: gcsUri is not supported in the Gemini API.\n")
    try:
        decode_bytes(str(data or ""))
    except (binascii.Error, ValueError):
        raise _Invalid(
            f"Invalid value at '{where}.bytes_base64_encoded' (TYPE_BYTES), Base64 decoding failed"
        ) from None
    if not data:
        raise _Invalid(f"* {where}: image bytes are required.\n")
    if not mime:
        raise _Invalid(f"* {where}.mime_type: mime_type is required.\n")
