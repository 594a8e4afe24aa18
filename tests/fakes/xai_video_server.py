"""A fake xAI video API (``/v1/videos/generations``, ``/v1/videos/{request_id}``) and its video URLs.

Usage::

    with FakeXAIVideoServer(api_key="xai-test") as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", api_key="xai-test", provider="xai")
        server.script(VideoReply(steps=3))             # the next create: done on the third poll
        server.script_poll(Reply(status=429, headers={"retry-after": "2"}))
        server.script_video(Reply(drop_after=0))       # the next video fetch: cut halfway
        ...
        (body,) = server.generation_bodies()

It is `FakeOpenAIServer` in the ``xai`` flavor (``/v1/models`` owned by ``xai``, errors as ``{"code":
"<description>", "error": "<message>"}``, a wrong key is xAI's HTTP 400 "Incorrect API key provided")
plus the video routes, as xAI's video generation docs describe them; a request without any key is a
401 in the same shape.

- ``POST /v1/videos/generations`` takes JSON ``{model, prompt, duration?, aspect_ratio?, resolution?,
  image?: {url}, user?}``: ``duration`` an integer 1..15 (default 6), ``aspect_ratio`` one of seven
  (default 16:9), ``resolution`` ``480p | 720p`` (default 720p), ``image.url`` an ``https://`` link (not
  fetched) or a ``data:image/...;base64,`` URI holding a real image. An unknown field is xAI's 422, a
  bad value a 400; an unknown model a 404. The answer is ``{"request_id": "<uuid>"}``.
- ``GET /v1/videos/{request_id}`` advances the job one step per call: ``{status: "pending", progress}``
  until the `steps`-th poll, then ``{status: "done", video: {url, duration, respect_moderation},
  model, usage: {cost_in_usd_ticks}, progress: 100}``, or (HTTP 200 all the same) ``{status: "failed",
  video: {duration: 0, respect_moderation: true}, model: "", error: {code, message}}``, or ``{status:
  "expired"}``. An unknown id is a 404.
- ``GET /vidgen/{request_id}.mp4`` is the temporary URL: a real H.264 MP4 from `make_mp4` (frames of the
  asked shape, the asked seconds at 2 fps) with its ``content-length``; it ignores any key. After
  `expire_video(id)` it is a 403 (``AccessDenied``, as a signed URL's bucket answers) or 404.

Script creates with `script(VideoReply(...))`: `steps`, `outcome` (``done`` | ``failed`` | ``expired``),
`refused` (the failure is the moderation's: `REFUSAL_CODE` / `REFUSAL_MESSAGE`), `moderated` (``done``
but ``respect_moderation: false``), `error_code`/`error_message`, `progress` (False: pending answers
carry no progress), `pending_status` (the HTTP status of pending answers, e.g. 202),
`refused_at_create` (a synchronous 400 naming moderation), and the `Reply` knobs (`status` +
`error_body`, `raw`, `headers`, `delay`). `script_poll(...)` answers the next polls instead of the job
(errors, `raw` garbage, `headers`) without advancing it; `script_video(...)` likewise for video
fetches (`drop_after=0` sends the Content-Length and half the body, then cuts; `raw` sends other bytes
with the reply's `content-type` header or ``video/mp4``; `status` an error). `submissions` counts
accepted creates.
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
from collections import deque
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.videos import make_mp4

VIDEO_MODELS = ["grok-imagine-video"]
DEFAULT_MODELS = [*VIDEO_MODELS, "grok-imagine-image", "grok-4"]
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
RESOLUTIONS = ("480p", "720p")
_LONG_SIDE = {"480p": 64, "720p": 96}  # tiny frames of the asked shape, so tests stay fast
_FIELDS = frozenset({"model", "prompt", "duration", "aspect_ratio", "resolution", "image", "user"})
_INVALID = "Client specified an invalid argument"
REFUSAL_CODE = "content_moderation"
REFUSAL_MESSAGE = "Generated video rejected by content moderation."
CREATE_REFUSAL = "Prompt rejected by content moderation: it violates the usage policy."
TICKS_PER_SECOND = 500_000_000  # $0.05 a second in xAI's cost ticks (1e-10 USD)


@dataclass
class VideoReply(Reply):
    """A `Reply` with the video knobs described in the module docstring."""

    steps: int = 2
    outcome: str = "done"
    refused: bool = False
    moderated: bool = False
    error_code: str = "internal_error"
    error_message: str = "Video generation failed. Please try again."
    progress: bool = True
    pending_status: int = 200
    refused_at_create: bool = False


@dataclass
class Job:
    id: str
    model: str
    duration: int
    aspect_ratio: str
    resolution: str
    plan: VideoReply
    polls: int = 0
    status: str = "pending"
    progress: int = 0
    url_gone: int | None = None  # the status the video URL answers once expired


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@cache
def video_bytes(aspect_ratio: str, resolution: str, duration: int) -> bytes:
    """A real MP4 of the ratio's shape (even sides), `duration` seconds at 2 fps."""
    width_part, _, height_part = aspect_ratio.partition(":")
    ratio = float(width_part) / float(height_part)
    long_side = _LONG_SIDE[resolution]
    width, height = (long_side, long_side / ratio) if ratio >= 1 else (long_side * ratio, long_side)
    return make_mp4(int(width) // 2 * 2, int(height) // 2 * 2, seconds=float(duration), fps=2)


class FakeXAIVideoServer(FakeOpenAIServer):
    """xAI's video API on top of the chat fake (module docstring)."""

    name = "xai-video"

    def __init__(
        self, default: Reply | None = None, *, models: list[str] | None = None, api_key: str | None = None
    ) -> None:
        super().__init__(
            default or VideoReply(),
            flavor="xai",
            models=list(models) if models is not None else list(DEFAULT_MODELS),
            api_key=api_key,
        )
        self.jobs: dict[str, Job] = {}
        self.accepted: list[dict[str, Any]] = []
        self._poll_script: deque[Reply] = deque()
        self._video_script: deque[Reply] = deque()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos/generations", self.create_route, methods=["POST"]),
            Route("/v1/videos/{request_id}", self.poll_route, methods=["GET"]),
            Route("/vidgen/{request_id}.mp4", self.video_route, methods=["GET"]),
            *super().routes(),
        ]

    # -- scripting -------------------------------------------------------------------------------

    def script_poll(self, *replies: Reply) -> FakeXAIVideoServer:
        with self._lock:
            self._poll_script.extend(replies)
        return self

    def script_video(self, *replies: Reply) -> FakeXAIVideoServer:
        with self._lock:
            self._video_script.extend(replies)
        return self

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._poll_script.clear()
            self._video_script.clear()
            self.jobs.clear()
            self.accepted.clear()

    @property
    def submissions(self) -> int:
        return len(self.accepted)

    def generation_bodies(self) -> list[Any]:
        return [r.json() for r in self.requests_to("/v1/videos/generations")]

    def expire_video(self, request_id: str, status: int = 403) -> None:
        """The job's temporary URL lapsed: fetching it answers `status` (403 or 404) from now on."""
        self.jobs[request_id].url_gone = status

    def video_url(self, request_id: str) -> str:
        return f"{self.url}/vidgen/{request_id}.mp4"

    # -- key and errors --------------------------------------------------------------------------

    def _refuse_key(self, request: Request) -> Response | None:
        if self.api_key is not None and not request.headers.get("authorization"):
            body = {
                "code": "Unauthenticated",
                "error": "No API key provided. Pass it as a Bearer token in the Authorization header.",
            }
            return JSONResponse(body, status_code=401, headers=self._headers())
        return super()._refuse_key(request)

    def invalid(self, exc: Invalid) -> Response:
        return JSONResponse({"code": _INVALID, "error": str(exc)}, status_code=exc.status)

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

    # -- create ----------------------------------------------------------------------------------

    async def create_route(self, request: Request) -> Response:
        rec = await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        try:
            if not request.headers.get("content-type", "").startswith("application/json"):
                raise Invalid("Expected request with `Content-Type: application/json`", status=415)
            try:
                body = rec.json()
            except ValueError:
                raise Invalid("Failed to parse the request body as JSON") from None
            if not isinstance(body, dict):
                raise Invalid("Failed to deserialize the JSON body into the target type", status=422)
            job_fields = self.check(body)
        except Invalid as exc:
            return self.invalid(exc)
        if job_fields["model"] not in self.models:
            return JSONResponse(
                self._model_missing(job_fields["model"]), status_code=404, headers=self._headers()
            )
        reply = self.next_reply()
        await self._pause_unless_gone(request, reply.delay)
        plan = reply if isinstance(reply, VideoReply) else VideoReply(**_reply_fields(reply))
        if plan.refused_at_create:
            return JSONResponse(
                {"code": _INVALID, "error": CREATE_REFUSAL}, status_code=400, headers=self._headers()
            )
        if (error := self.scripted_error(plan)) is not None:
            return error
        job = Job(id=str(uuid.uuid4()), plan=plan, **job_fields)
        self.jobs[job.id] = job
        self.accepted.append(body)
        return JSONResponse({"request_id": job.id}, headers=self._headers(plan.headers))

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in body:
            if name not in _FIELDS:
                raise Invalid(
                    f"Failed to deserialize the JSON body into the target type: unknown field `{name}`",
                    status=422,
                )
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            raise Invalid("prompt must not be empty")
        model = body.get("model", "grok-imagine-video")
        if not isinstance(model, str) or model not in VIDEO_MODELS:
            raise Invalid(f"Model {model!r} does not support video generation")
        duration = body.get("duration", 6)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 15:
            raise Invalid(f"duration must be an integer between 1 and 15, got {duration!r}")
        ratio = body.get("aspect_ratio", "16:9")
        if ratio not in ASPECT_RATIOS:
            raise Invalid(f"Invalid aspect_ratio '{ratio}'. Supported: {', '.join(ASPECT_RATIOS)}")
        resolution = body.get("resolution", "720p")
        if resolution not in RESOLUTIONS:
            raise Invalid(f"Invalid resolution '{resolution}'. Supported: {', '.join(RESOLUTIONS)}")
        if "image" in body:
            self._check_image(body["image"])
        return {"model": model, "duration": duration, "aspect_ratio": ratio, "resolution": resolution}

    @staticmethod
    def _check_image(image: Any) -> None:
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise Invalid("`image` needs a non-empty `url`")
        if url.startswith("https://"):
            return
        head, _, data = url.partition(",")
        if not (head.startswith("data:image/") and head.endswith(";base64")):
            raise Invalid("Image url must be an https URL or a base64 data URI")
        try:
            with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as picture:
                picture.verify()
        except (binascii.Error, ValueError, OSError):
            raise Invalid("Invalid image: the data URI does not hold a decodable image") from None

    # -- poll ------------------------------------------------------------------------------------

    async def poll_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        request_id = request.path_params["request_id"]
        scripted = self._pop(self._poll_script)
        if scripted is not None:
            await self._pause_unless_gone(request, scripted.delay)
            if (error := self.scripted_error(scripted)) is not None:
                return error
        job = self.jobs.get(request_id)
        if job is None:
            body = {"code": "Some requested entity was not found", "error": f"Request {request_id} not found"}
            return JSONResponse(body, status_code=404, headers=self._headers())
        if scripted is None:
            self.advance(job)
        headers = self._headers(scripted.headers if scripted is not None else None)
        status = job.plan.pending_status if job.status == "pending" else 200
        return JSONResponse(self.job_body(job), status_code=status, headers=headers)

    def advance(self, job: Job) -> None:
        if job.status != "pending":
            return
        job.polls += 1
        plan = job.plan
        if job.polls < plan.steps:
            job.progress = int(100 * job.polls / plan.steps)
            return
        job.progress = 100
        job.status = "failed" if plan.refused else plan.outcome

    def job_body(self, job: Job) -> dict[str, Any]:
        plan = job.plan
        if job.status == "pending":
            return {"status": "pending", "progress": job.progress} if plan.progress else {"status": "pending"}
        if job.status == "expired":
            return {"status": "expired"}
        if job.status == "failed":
            code, message = (
                (REFUSAL_CODE, REFUSAL_MESSAGE) if plan.refused else (plan.error_code, plan.error_message)
            )
            return {
                "status": "failed",
                "video": {"duration": 0, "respect_moderation": True},
                "model": "",
                "error": {"code": code, "message": message},
            }
        video: dict[str, Any] = {"url": self.video_url(job.id), "duration": job.duration}
        video["respect_moderation"] = not plan.moderated
        if plan.moderated:
            video["url"] = ""
        return {
            "status": "done",
            "video": video,
            "model": job.model,
            "usage": {"cost_in_usd_ticks": TICKS_PER_SECOND * job.duration},
            "progress": 100,
        }

    # -- the temporary video URL -----------------------------------------------------------------

    async def video_route(self, request: Request) -> Response:
        await self.record(request)  # the CDN checks no key: a signed URL is its own credential
        job = self.jobs.get(request.path_params["request_id"])
        scripted = self._pop(self._video_script)
        if scripted is not None:
            await self._pause_unless_gone(request, scripted.delay)
            if scripted.status >= 400:
                return Response(
                    scripted.raw or b"error", status_code=scripted.status, headers=scripted.headers
                )
        if job is None or job.status != "done" or job.url_gone == 404:
            return Response(_s3_error("NoSuchKey", "The specified key does not exist."), status_code=404)
        if job.url_gone is not None:
            return Response(_s3_error("AccessDenied", "Request has expired"), status_code=job.url_gone)
        data = video_bytes(job.aspect_ratio, job.resolution, job.duration)
        reply = scripted or Reply()
        headers = dict(reply.headers)
        media_type = headers.pop("content-type", "video/mp4")
        if reply.raw is not None:
            data = reply.raw
        if reply.drop_after is not None:
            return self._truncated(data, 200, headers, media_type)
        return Response(data, status_code=200, headers=headers, media_type=media_type)


def _s3_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        "</Error>"
    ).encode()


def _reply_fields(reply: Reply) -> dict[str, Any]:
    """A plain `Reply`'s fields, to make the `VideoReply` plan of a create scripted with one."""
    return {name: getattr(reply, name) for name in Reply.__dataclass_fields__}
