"""A fake OpenAI Videos (Sora) API: create, retrieve, list, delete and download jobs that advance per poll.

Usage::

    with FakeOpenAIVideosServer(api_key="sk-test") as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", api_key="sk-test", provider="openai")
        server.script(VideoReply(steps=3))           # the next create: done on the third poll
        server.script_poll(Reply(status=429, headers={"retry-after": "2"}))
        server.script_content(Reply(drop_after=0))   # the next download: cut halfway
        ...
        (call,) = server.creates                     # what the multipart create carried

It is `FakeOpenAIServer` (flavor ``openai``: the Bearer key check, ``/v1/models``, OpenAI's error bodies
and ``x-request-id``) plus the video routes, checked against openai-python's ``resources/videos.py``,
``types/video.py``, ``video_create_params.py`` and ``video_delete_response.py``:

- ``POST /v1/videos`` takes multipart/form-data (the SDK always sends it): ``prompt`` (required),
  ``model`` (``sora-2`` by default), ``seconds`` as *text* ``"4" | "8" | "12"`` (default ``"4"``), ``size``
  ``WxH`` (default ``720x1280``; ``1024x1792``/``1792x1024`` only for ``sora-2-pro``) and an optional
  ``input_reference`` file, a PNG/JPEG/WebP of exactly the requested size. Anything else is OpenAI's
  400 (``unknown_parameter``, ``invalid_value``, ``missing_required_parameter``); an unknown model is
  the 400 ``invalid_value`` on ``model``. The answer is a Video ``{id, object: "video", model, status:
  "queued", progress: 0, created_at, completed_at, expires_at, error, prompt, remixed_from_video_id,
  seconds, size}``.
- ``GET /v1/videos/{id}`` advances the job one step per call: ``in_progress`` with an integer
  ``progress`` until the `steps`-th poll, then ``completed`` (``completed_at``, ``expires_at`` an hour
  later, progress 100) or ``failed`` with ``error: {code, message}`` (a moderation refusal is the code
  ``moderation_blocked``). Unfinished videos carry the ``openai-poll-after-ms`` header (`poll_after_ms`).
- ``GET /v1/videos`` lists the jobs (newest first, ``limit``/``after``/``order``) as ``{object: "list",
  data, first_id, last_id, has_more}``; it does not advance them.
- ``GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet`` sends a real H.264 MP4 from
  `make_mp4` (small frames of the requested orientation, the requested seconds at 4 fps) with its
  ``content-length``, or a JPEG for the other variants. Not finished yet: 400 ``video_not_ready``.
  After `expire(id)`: 404 ``video_expired`` (the assets are gone, the job remains).
- ``DELETE /v1/videos/{id}`` answers ``{id, object: "video.deleted", deleted: true}``; the job is then
  unknown (404) everywhere. An unknown id is a 404 with OpenAI's body.

Script creates with `script(VideoReply(...))`: `steps` (polls until done), `outcome` (``completed`` or
``failed``), `error_code`/`error_message` (the failure; ``refused=True`` is the moderation failure at
the end), `refused_at_create` (the synchronous 400 ``moderation_blocked``), and the `Reply` knobs
(`status` + `error_body`, `raw`, `headers`, `delay`, `drop_after`). `script_poll(...)` answers the next
retrieves instead of the job (errors, `raw` garbage, `headers`), without advancing it; `script_content`
likewise for downloads (`drop_after=0` cuts the body halfway, `raw` sends other bytes, `status` an
error). `submissions` counts accepted creates; `creates` records each one (`CreateCall`).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mmstudio.providers.media.base import sniff_image_type
from tests.fakes.base import Reply
from tests.fakes.images import make_image
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.videos import make_mp4

VIDEO_MODELS = ["sora-2", "sora-2-pro"]
DEFAULT_MODELS = [*VIDEO_MODELS, "gpt-image-1", "gpt-4o"]
SECONDS = ("4", "8", "12")
SIZES = {"sora-2": ("720x1280", "1280x720"), "sora-2-pro": ("720x1280", "1280x720", "1024x1792", "1792x1024")}
_FIELDS = frozenset({"prompt", "model", "seconds", "size", "input_reference"})
REFUSAL_CODE = "moderation_blocked"
REFUSAL_MESSAGE = "Your request was blocked by our moderation system."
EXPIRY_S = 3600


@dataclass
class VideoReply(Reply):
    """A `Reply` with the video knobs described in the module docstring."""

    steps: int = 2
    outcome: str = "completed"
    refused: bool = False
    error_code: str = "internal_error"
    error_message: str = "Video generation failed."
    refused_at_create: bool = False


@dataclass
class CreateCall:
    """One accepted ``POST /v1/videos``, as the multipart parser saw it."""

    fields: list[str]  # every part's name, in the order sent
    values: dict[str, str]  # the text parts
    reference: bytes | None = None
    reference_name: str = ""
    reference_type: str = ""


@dataclass
class Job:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    plan: VideoReply
    created_at: int
    polls: int = 0
    status: str = "queued"
    progress: int = 0
    completed_at: int | None = None
    expires_at: int | None = None
    error: dict[str, Any] | None = None
    expired: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expires_at": self.expires_at,
            "error": self.error,
            "prompt": self.prompt,
            "remixed_from_video_id": None,
            "seconds": self.seconds,
            "size": self.size,
        }


class Invalid(Exception):
    def __init__(self, message: str, param: str | None, code: str | None = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@cache
def video_bytes(size: str, seconds: str) -> bytes:
    """A real MP4 of the size's orientation (a tenth of it, even), `seconds` long at 4 fps."""
    width, _, height = size.partition("x")
    return make_mp4(int(width) // 20 * 2, int(height) // 20 * 2, seconds=float(seconds), fps=4)


class FakeOpenAIVideosServer(FakeOpenAIServer):
    """OpenAI's Videos API on top of the chat fake (module docstring)."""

    name = "openai-videos"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        poll_after_ms: int | None = 2000,
    ) -> None:
        super().__init__(
            default or VideoReply(),
            flavor="openai",
            models=list(models) if models is not None else list(DEFAULT_MODELS),
            api_key=api_key,
        )
        self.poll_after_ms = poll_after_ms
        self.jobs: dict[str, Job] = {}
        self.creates: list[CreateCall] = []
        self._poll_script: deque[Reply] = deque()
        self._content_script: deque[Reply] = deque()
        self._clock = itertools.count(1_760_000_000)
        # Crash tests: `hold_creates()` keeps the next creates unanswered (and not accepted) until the
        # client hangs up; `hold_downloads()` sends half of each video, then waits for the client to
        # hang up. `create_held` / `download_held` are set when that point is reached.
        self.holding_creates = False
        self.holding_downloads = False
        self.create_held = threading.Event()
        self.download_held = threading.Event()

    def hold_creates(self) -> None:
        self.holding_creates = True

    def hold_downloads(self) -> None:
        self.holding_downloads = True

    def release(self) -> None:
        self.holding_creates = self.holding_downloads = False

    @staticmethod
    async def _until_gone(request: Request) -> None:
        """Wait until the client hangs up (a SIGKILLed client's socket closes at once). The body is
        read already, so the next ASGI message is the disconnect."""
        await request.receive()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create_route, methods=["POST"]),
            Route("/v1/videos", self.list_route, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.retrieve_route, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.delete_route, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", self.content_route, methods=["GET"]),
            *super().routes(),
        ]

    # -- scripting -------------------------------------------------------------------------------

    def script_poll(self, *replies: Reply) -> FakeOpenAIVideosServer:
        with self._lock:
            self._poll_script.extend(replies)
        return self

    def script_content(self, *replies: Reply) -> FakeOpenAIVideosServer:
        with self._lock:
            self._content_script.extend(replies)
        return self

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._poll_script.clear()
            self._content_script.clear()
            self.jobs.clear()
            self.creates.clear()

    @property
    def submissions(self) -> int:
        return len(self.creates)

    def expire(self, video_id: str) -> None:
        """The job's assets are gone (its `expires_at` passed): content answers 404 from now on."""
        job = self.jobs[video_id]
        job.expired = True
        job.expires_at = int(time.time()) - 1

    # -- helpers ---------------------------------------------------------------------------------

    def invalid(self, exc: Invalid) -> Response:
        body = {"error": {"message": str(exc), "type": "invalid_request_error", "param": exc.param}}
        body["error"]["code"] = exc.code
        return JSONResponse(body, status_code=400, headers=self._headers())

    def missing(self, video_id: str) -> Response:
        body = self.error_payload(404, f"Video with id '{video_id}' not found.", code="video_not_found")
        body["error"]["param"] = "video_id"
        return JSONResponse(body, status_code=404, headers=self._headers())

    def _pop(self, queue: deque[Reply]) -> Reply | None:
        with self._lock:
            return queue.popleft() if queue else None

    def scripted_error(self, reply: Reply) -> Response | None:
        """A scripted reply that is not the job's own answer (an error, raw bytes), else None."""
        reply = replace(reply, headers=self._headers(reply.headers))
        if reply.raw is not None:
            return self.json_response(None, reply)
        if reply.status >= 400 or reply.error_body is not None:
            return self.json_response(reply.error_body or self.error_payload(reply.status), reply)
        return None

    def video_response(self, job: Job, reply: Reply | None = None) -> Response:
        headers = self._headers(reply.headers if reply is not None else None)
        if job.status in ("queued", "in_progress") and self.poll_after_ms is not None:
            headers["openai-poll-after-ms"] = str(self.poll_after_ms)
        return self.json_response(job.body(), replace(reply or Reply(), headers=headers, status=200))

    # -- create ----------------------------------------------------------------------------------

    async def create_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            # The JSON form of the create is not what the SDK sends; the fake takes multipart only.
            return self.invalid(
                Invalid(
                    "Invalid Content-Type header, expected multipart/form-data.", None, "invalid_content_type"
                )
            )
        try:
            call = await self.parse_create(request)
            model, seconds, size = self.check(call)
        except Invalid as exc:
            return self.invalid(exc)
        reply = self.next_reply()
        if self.holding_creates:
            self.create_held.set()
            await self._until_gone(request)
            return Response(status_code=499)  # the client left before the vendor accepted anything
        await self._pause_unless_gone(request, reply.delay)
        plan = reply if isinstance(reply, VideoReply) else VideoReply(**_reply_fields(reply))
        if plan.refused_at_create:
            body = {
                "error": {
                    "message": REFUSAL_MESSAGE,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": REFUSAL_CODE,
                }
            }
            return JSONResponse(body, status_code=400, headers=self._headers())
        if (error := self.scripted_error(plan)) is not None:
            return error
        self.creates.append(call)
        job = Job(
            id=f"video_{uuid.uuid4().hex}",
            model=model,
            prompt=call.values["prompt"],
            seconds=seconds,
            size=size,
            plan=plan,
            created_at=next(self._clock),
        )
        self.jobs[job.id] = job
        return self.video_response(job, plan)

    async def parse_create(self, request: Request) -> CreateCall:
        fields: list[str] = []
        values: dict[str, str] = {}
        call = CreateCall(fields, values)
        async with request.form(max_files=4) as form:
            for name, value in form.multi_items():
                fields.append(name)
                if name not in _FIELDS:
                    raise Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
                if isinstance(value, UploadFile):
                    if name != "input_reference":
                        raise Invalid(f"Invalid type for '{name}': expected a string, but got a file.", name)
                    call.reference = await value.read()
                    call.reference_name = value.filename or ""
                    call.reference_type = value.content_type or ""
                elif name == "input_reference":
                    raise Invalid(
                        "Invalid type for 'input_reference': expected a file.", name, "invalid_type"
                    )
                else:
                    values[name] = value
        return call

    def check(self, call: CreateCall) -> tuple[str, str, str]:
        values = call.values
        if not values.get("prompt"):
            raise Invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = values.get("model") or "sora-2"
        if model not in SIZES or model not in self.models:
            raise Invalid(
                f"Invalid value: '{model}'. Supported values are: {_quoted(tuple(SIZES))}.", "model"
            )
        seconds = values.get("seconds", "4")
        if seconds not in SECONDS:
            raise Invalid(f"Invalid value: '{seconds}'. Supported values are: {_quoted(SECONDS)}.", "seconds")
        size = values.get("size", "720x1280")
        if size not in SIZES[model]:
            raise Invalid(f"Invalid value: '{size}'. Supported values are: {_quoted(SIZES[model])}.", "size")
        if call.reference is not None:
            kind = sniff_image_type(call.reference)
            if kind not in ("image/png", "image/jpeg", "image/webp"):
                raise Invalid(
                    "Invalid file format for 'input_reference'. Supported formats are image/jpeg, "
                    "image/png, image/webp.",
                    "input_reference",
                    "invalid_file_format",
                )
            if _image_size(call.reference) != size:
                raise Invalid(
                    "Inpaint image must match the requested width and height",
                    "input_reference",
                    "invalid_value",
                )
        return model, seconds, size

    # -- retrieve, list, delete ------------------------------------------------------------------

    async def retrieve_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        video_id = request.path_params["video_id"]
        job = self.jobs.get(video_id)
        scripted = self._pop(self._poll_script)
        if scripted is not None:
            await self._pause_unless_gone(request, scripted.delay)
            if (error := self.scripted_error(scripted)) is not None:
                return error
        if job is None:
            return self.missing(video_id)
        if scripted is None:
            self.advance(job)
        return self.video_response(job, scripted)

    def advance(self, job: Job) -> None:
        if job.status in ("completed", "failed"):
            return
        job.polls += 1
        plan = job.plan
        if job.polls < plan.steps:
            job.status = "in_progress"
            job.progress = int(100 * job.polls / plan.steps)
            return
        now = next(self._clock)
        job.completed_at = now
        if plan.refused or plan.outcome == "failed":
            job.status = "failed"
            job.error = (
                {"code": REFUSAL_CODE, "message": REFUSAL_MESSAGE}
                if plan.refused
                else {"code": plan.error_code, "message": plan.error_message}
            )
            return
        job.status, job.progress, job.expires_at = "completed", 100, now + EXPIRY_S

    async def list_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        jobs = sorted(self.jobs.values(), key=lambda j: j.created_at)
        if request.query_params.get("order", "desc") == "desc":
            jobs.reverse()
        after = request.query_params.get("after")
        if after:
            ids = [j.id for j in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query_params.get("limit", "20"))
        page = jobs[:limit]
        data = [j.body() for j in page]
        body = {
            "object": "list",
            "data": data,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(jobs) > limit,
        }
        return JSONResponse(body, headers=self._headers())

    async def delete_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        video_id = request.path_params["video_id"]
        if self.jobs.pop(video_id, None) is None:
            return self.missing(video_id)
        body = {"id": video_id, "object": "video.deleted", "deleted": True}
        return JSONResponse(body, headers=self._headers())

    # -- content ---------------------------------------------------------------------------------

    async def content_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        video_id = request.path_params["video_id"]
        job = self.jobs.get(video_id)
        if job is None:
            return self.missing(video_id)
        variant = request.query_params.get("variant", "video")
        if variant not in ("video", "thumbnail", "spritesheet"):
            choices = ("video", "thumbnail", "spritesheet")
            return self.invalid(
                Invalid(f"Invalid value: '{variant}'. Supported values are: {_quoted(choices)}.", "variant")
            )
        scripted = self._pop(self._content_script)
        if scripted is not None:
            await self._pause_unless_gone(request, scripted.delay)
            if scripted.status >= 400 or scripted.error_body is not None:
                return self.scripted_error(scripted) or Response(status_code=scripted.status)
        if job.expired:
            body = self.error_payload(
                404, f"Video content for '{video_id}' has expired.", code="video_expired"
            )
            return JSONResponse(body, status_code=404, headers=self._headers())
        if job.status != "completed":
            message = (
                f"Video '{video_id}' is not ready yet (status {job.status}); try again when it completed."
            )
            return self.invalid(Invalid(message, "video_id", "video_not_ready"))
        if variant == "video":
            data, media_type = video_bytes(job.size, job.seconds), "video/mp4"
        else:
            width, _, height = job.size.partition("x")
            data, media_type = make_image(int(width) // 10, int(height) // 10, "JPEG"), "image/jpeg"
        reply = replace(scripted or Reply(), headers=self._headers(scripted.headers if scripted else None))
        if reply.raw is not None:
            data, reply = reply.raw, replace(reply, raw=None)
        if reply.drop_after is not None:
            return self._truncated(data, 200, reply.headers, media_type)
        if self.holding_downloads and variant == "video":
            return self._held(data, reply.headers, media_type)
        return Response(data, status_code=200, headers=reply.headers, media_type=media_type)

    def _held(self, data: bytes, headers: dict[str, str], media_type: str) -> Response:
        async def body() -> Any:
            yield data[: len(data) // 2]
            self.download_held.set()
            await asyncio.Event().wait()  # Starlette stops the body when the client hangs up

        return StreamingResponse(
            body(), headers={**headers, "content-length": str(len(data))}, media_type=media_type
        )


def _quoted(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _image_size(data: bytes) -> str:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return f"{image.width}x{image.height}"


def _reply_fields(reply: Reply) -> dict[str, Any]:
    """A plain `Reply`'s fields, to make the `VideoReply` plan of a create scripted with one."""
    return {name: getattr(reply, name) for name in Reply.__dataclass_fields__}
