"""A fake Runway developer API (``/v1/image_to_video``, ``/v1/tasks/{id}``, ``/v1/organization``) and the
CDN its output URLs point at, over real HTTP.

Usage::

    with FakeRunwayServer(api_key=KEY) as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", api_key=KEY, provider="runway")
        server.script_create(RunwayReply(end="FAILED", failure_code="SAFETY.INPUT.TEXT"))
        ...
        assert server.submissions == 1

It answers the way Runway's docs and the ``runwayml`` SDK describe the API:

- Every ``/v1`` call needs ``Authorization: Bearer <key>`` (else 401 ``{"error"}``) and
  ``X-Runway-Version: 2024-11-06`` (else 400, as the real API does).
- ``POST /v1/image_to_video`` takes ``{model, promptImage, promptText?, ratio?, duration?, seed?,
  watermark?, contentModeration?}``; anything else is a 400 ``{"error", "issues": [{path, message}]}``.
  ``promptImage`` is an ``https://`` URL on a domain (not fetched) or a ``data:image/...;base64,`` URI
  under 5 MB holding a real image, or for gen3a_turbo a list of ``{uri, position: first | last}``. An
  unknown model is a 403 "Model variant ... is not available". The answer is ``{id}`` (a UUID).
- ``GET /v1/tasks/{id}`` advances the task one step per poll through `RunwayReply.steps` (by default
  PENDING, THROTTLED, RUNNING 0.25, RUNNING 0.75), then to its end: SUCCEEDED with ``output: [url]`` (a
  freshly signed CDN URL on every poll), FAILED with ``failure`` and ``failureCode``, or CANCELLED. An
  unknown task is a 404.
- ``DELETE /v1/tasks/{id}`` answers 204: a task not yet finished becomes CANCELLED; a finished one is
  deleted (404 from then on).
- The CDN (``/cdn/{id}.mp4?_jwt=...``) serves a real MP4 from `make_mp4()` and wants no key; a URL whose
  signature `expire_urls` lapsed, or of a task `expire_task` dropped, answers 403 (CloudFront's
  AccessDenied XML).

Script each route with `RunwayReply` (a `Reply`): `script_create` (what the task it starts will do:
`steps`, `end`, `failure`, `failure_code`, `video`; or an error: `status` + `error_body`, `raw`,
`headers`), `script_poll` (an error or `raw` garbage for one poll; a plain reply just advances the task)
and `script_download` (an error status, or `drop_after=0` to cut the body halfway).
`submissions` counts accepted creates.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import itertools
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply
from tests.fakes.videos import make_mp4

API_VERSION = "2024-11-06"
RATIOS = {
    "gen4_turbo": ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"),
    "gen3a_turbo": ("1280:768", "768:1280"),
}
POSITIONS = {"gen4_turbo": ("first",), "gen3a_turbo": ("first", "last")}
DEFAULT_STEPS: tuple[tuple[str, float | None], ...] = (
    ("PENDING", None),
    ("THROTTLED", None),
    ("RUNNING", 0.25),
    ("RUNNING", 0.75),
)
SAFETY_FAILURE = "Your prompt was flagged by our content moderation system."
_FIELDS = frozenset(
    {"model", "promptImage", "promptText", "ratio", "duration", "seed", "watermark", "contentModeration"}
)
_MAX_DATA_URI = 5 * 1024 * 1024
_MAX_SEED = 4_294_967_295
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access denied</Message></Error>"
)


@dataclass
class RunwayReply(Reply):
    """`Reply` plus, for a create, the task's course: the states it passes (`steps`, each a status and
    a progress 0..1 or None), where it ends (`end`: SUCCEEDED | FAILED | CANCELLED), the failure's text
    and code, and the MP4 it makes (`video`, `make_mp4()` when None)."""

    steps: tuple[tuple[str, float | None], ...] = DEFAULT_STEPS
    end: str = "SUCCEEDED"
    failure: str = SAFETY_FAILURE
    failure_code: str | None = "SAFETY.INPUT.TEXT"
    video: bytes | None = None


@dataclass
class FakeTask:
    id: str
    body: dict[str, Any]
    plan: RunwayReply
    video: bytes
    created_at: str
    polls: int = 0
    cancelled: bool = False
    deleted: bool = False
    signatures: set[str] = field(default_factory=set)

    def status(self) -> tuple[str, float | None]:
        steps = self.plan.steps
        if self.cancelled:
            return "CANCELLED", None
        if steps and self.polls <= len(steps):
            return steps[max(0, self.polls - 1)]
        return self.plan.end, None

    @property
    def finished(self) -> bool:
        return self.status()[0] in ("SUCCEEDED", "FAILED", "CANCELLED")


class Invalid(Exception):
    def __init__(self, path: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.path = path
        self.status = status


class FakeRunwayServer(FakeServer):
    """Runway's API and its output CDN (module docstring)."""

    name = "runway"

    def __init__(self, *, api_key: str | None = None, video: bytes | None = None) -> None:
        super().__init__(RunwayReply())
        self.api_key = api_key
        self.video = video if video is not None else make_mp4()
        self.tasks: dict[str, FakeTask] = {}
        self.submissions = 0
        self._creates: deque[RunwayReply] = deque()
        self._polls: deque[Reply] = deque()
        self._downloads: deque[Reply] = deque()
        self._counter = itertools.count(1)
        self._state = threading.Lock()

    # -- scripting -----------------------------------------------------------------------------

    def script_create(self, *replies: RunwayReply) -> FakeRunwayServer:
        self._creates.extend(replies)
        return self

    def script_poll(self, *replies: Reply) -> FakeRunwayServer:
        self._polls.extend(replies)
        return self

    def script_download(self, *replies: Reply) -> FakeRunwayServer:
        self._downloads.extend(replies)
        return self

    def reset(self) -> None:
        super().reset()
        with self._state:
            self.tasks.clear()
            self.submissions = 0
            self._creates.clear()
            self._polls.clear()
            self._downloads.clear()

    def expire_urls(self, task_id: str) -> None:
        """Every output URL handed out so far for `task_id` lapses (a poll signs a fresh one)."""
        with self._state:
            self.tasks[task_id].signatures.clear()

    def expire_task(self, task_id: str) -> None:
        """The task and its video are gone: its URLs answer 403, the task 404."""
        with self._state:
            task = self.tasks[task_id]
            task.deleted = True
            task.signatures.clear()

    def create_bodies(self) -> list[Any]:
        return [r.json() for r in self.requests_to("/v1/image_to_video")]

    def downloads(self) -> list[Any]:
        return [r for r in self.requests if r.path.startswith("/cdn/")]

    @staticmethod
    def _pop(queue: deque[Any]) -> Any:
        return queue.popleft() if queue else None

    # -- checks and errors ---------------------------------------------------------------------

    def error(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
        return self.json_response({"error": message}, Reply(status=status, headers=headers or {}))

    def scripted_error(self, reply: Reply) -> Response | None:
        if reply.raw is not None:
            return self.json_response(None, reply)
        if reply.status < 400:
            return None
        default = {
            429: "You have exceeded the rate limit for this organization.",
            500: "An unexpected error occurred.",
            502: "Runway is shedding load; try again later.",
            503: "Runway is shedding load; try again later.",
            504: "Runway is overloaded and could not satisfy the request.",
        }.get(reply.status, "Request failed.")
        body = reply.error_body if reply.error_body is not None else {"error": default}
        return self.json_response(body, reply)

    def refuse(self, request: Request) -> Response | None:
        """The key first (401), then the version header (400), the real API's order."""
        auth = request.headers.get("authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return self.error(401, "Invalid API key provided.")
        version = request.headers.get("x-runway-version")
        if version is None:
            return self.error(
                400, "The X-Runway-Version header is required. The current version is 2024-11-06."
            )
        if version != API_VERSION:
            return self.error(400, f"Unsupported API version {version!r}. Use 2024-11-06.")
        return None

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/v1/image_to_video", self.create, methods=["POST"]),
            Route("/v1/tasks/{task_id}", self.task_route, methods=["GET", "DELETE"]),
            Route("/v1/organization", self.organization, methods=["GET"]),
            Route("/cdn/{name}", self.cdn, methods=["GET"]),
        ]

    async def create(self, request: Request) -> Response:
        rec = await self.record(request)
        if (refused := self.refuse(request)) is not None:
            return refused
        plan = self._pop(self._creates) or RunwayReply()
        await self.pause(plan.delay)
        if (scripted := self.scripted_error(plan)) is not None:
            return scripted
        try:
            body = rec.json()
        except ValueError:
            return self.error(400, "Request body is not valid JSON.")
        try:
            self.validate(body)
        except Invalid as exc:
            if exc.status != 400:
                return self.error(exc.status, str(exc))
            issue = {"path": [exc.path], "message": str(exc)}
            return self.json_response(
                {"error": "Validation of body failed", "issues": [issue]}, Reply(status=400)
            )
        task = FakeTask(
            id=str(uuid.uuid4()),
            body=body,
            plan=plan,
            video=plan.video if plan.video is not None else self.video,
            created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        )
        with self._state:
            self.tasks[task.id] = task
            self.submissions += 1
        return self.json_response({"id": task.id}, Reply())

    async def task_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self.refuse(request)) is not None:
            return refused
        task_id = request.path_params["task_id"]
        task = self.tasks.get(task_id)
        if request.method == "DELETE":
            if task is None or task.deleted:
                return self.error(404, "Task not found.")
            if task.finished:
                task.deleted = True
                task.signatures.clear()
            else:
                task.cancelled = True
            return Response(status_code=204)
        reply = self._pop(self._polls) or Reply()
        if (scripted := self.scripted_error(reply)) is not None:
            return scripted
        if task is None or task.deleted:
            return self.error(404, "Task not found.")
        task.polls += 1
        return self.json_response(self.render(task), reply)

    def render(self, task: FakeTask) -> dict[str, Any]:
        status, progress = task.status()
        out: dict[str, Any] = {"id": task.id, "createdAt": task.created_at, "status": status}
        seconds = int(task.body.get("duration") or 10)
        if status in ("PENDING", "THROTTLED", "RUNNING"):
            out["estimatedCost"] = {"credits": 5 * seconds}
        else:
            out["cost"] = {"credits": 5 * seconds if status == "SUCCEEDED" else 0}
        if status == "RUNNING":
            out["progress"] = progress if progress is not None else 0.0
        elif status == "SUCCEEDED":
            signature = f"sig{next(self._counter)}"
            task.signatures.add(signature)
            out["output"] = [f"{self.url}/cdn/{task.id}.mp4?_jwt={signature}"]
        elif status == "FAILED":
            out["failure"] = task.plan.failure
            if task.plan.failure_code is not None:
                out["failureCode"] = task.plan.failure_code
        return out

    async def organization(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self.refuse(request)) is not None:
            return refused
        payload = {
            "creditBalance": 1000,
            "tier": {
                "maxMonthlyCreditSpend": 10000,
                "models": {"gen4_turbo": {"maxConcurrentGenerations": 1}},
            },
            "usage": {"models": {}},
        }
        return self.json_response(payload, Reply())

    async def cdn(self, request: Request) -> Response:
        await self.record(request)
        reply = self._pop(self._downloads) or Reply()
        if reply.status >= 400:
            return Response(reply.raw or _DENIED, status_code=reply.status, media_type="application/xml")
        task = self.tasks.get(request.path_params["name"].removesuffix(".mp4"))
        signature = request.query_params.get("_jwt", "")
        if task is None or signature not in task.signatures:
            return Response(_DENIED, status_code=403, media_type="application/xml")
        data = reply.raw if reply.raw is not None else task.video
        if reply.drop_after is not None:
            return self._truncated(data, 200, {}, "video/mp4")
        return Response(data, media_type="video/mp4")

    # -- validation ----------------------------------------------------------------------------

    def validate(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise Invalid("", "Expected an object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise Invalid(unknown[0], f"Unrecognized key: {unknown[0]!r}")
        model = body.get("model")
        if not isinstance(model, str):
            raise Invalid("model", "Required")
        if model not in RATIOS:
            raise Invalid("model", f"Model variant {model} is not available.", status=403)
        self.validate_image(model, body.get("promptImage"))
        text = body.get("promptText")
        if text is not None and (
            not isinstance(text, str) or not text or len(text.encode("utf-16-le")) > 2000
        ):
            raise Invalid("promptText", "Must be a non-empty string of at most 1000 characters")
        ratio = body.get("ratio")
        if ratio is not None and ratio not in RATIOS[model]:
            raise Invalid(
                "ratio", f"Invalid enum value. Expected {' | '.join(RATIOS[model])}, received {ratio!r}"
            )
        duration = body.get("duration")
        if duration is not None and (isinstance(duration, bool) or duration not in (5, 10)):
            raise Invalid("duration", f"Invalid literal value, expected 5 or 10, received {duration!r}")
        seed = body.get("seed")
        if seed is not None and (
            not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MAX_SEED
        ):
            raise Invalid("seed", f"Must be an integer from 0 to {_MAX_SEED}")

    def validate_image(self, model: str, value: Any) -> None:
        if value is None:
            raise Invalid("promptImage", "Required")
        if isinstance(value, str):
            self.validate_uri(value)
            return
        if not isinstance(value, list) or not value:
            raise Invalid("promptImage", "Expected a string or an array of prompt images")
        seen: set[str] = set()
        for item in value:
            if not isinstance(item, dict) or set(item) != {"uri", "position"}:
                raise Invalid("promptImage", "Each prompt image is {uri, position}")
            position = item["position"]
            if position not in POSITIONS[model]:
                raise Invalid("promptImage", f"Invalid position {position!r} for {model}")
            if position in seen:
                raise Invalid("promptImage", f"Duplicate position {position!r}")
            seen.add(position)
            self.validate_uri(item["uri"])

    def validate_uri(self, uri: Any) -> None:
        if not isinstance(uri, str):
            raise Invalid("promptImage", "Expected a string")
        if uri.startswith("data:"):
            if len(uri) >= _MAX_DATA_URI:
                raise Invalid("promptImage", "Data URI is larger than 5MB.")
            head, comma, data = uri.partition(",")
            if not comma or not head.endswith(";base64"):
                raise Invalid("promptImage", "Invalid data URI.")
            media_type = head[len("data:") : -len(";base64")]
            if media_type not in ("image/jpeg", "image/jpg", "image/png", "image/webp"):
                raise Invalid(
                    "promptImage", "Unsupported asset type. Data URIs must include the content type."
                )
            try:
                Image.open(io.BytesIO(base64.b64decode(data, validate=True))).verify()
            except (binascii.Error, ValueError, OSError) as exc:
                raise Invalid("promptImage", "Invalid data URI.") from exc
            return
        parts = urlsplit(uri)
        if parts.scheme != "https":
            raise Invalid("promptImage", "Only HTTPS URLs are allowed.")
        try:
            ipaddress.ip_address(parts.hostname or "")
        except ValueError:
            if not parts.hostname:
                raise Invalid("promptImage", "Invalid URL") from None
            return
        raise Invalid("promptImage", "URLs must be hosted on a domain.")
