"""Runway video adapter (``gen4_turbo``, ``gen3a_turbo``): ``POST /v1/image_to_video``, poll
``GET /v1/tasks/{id}``, stream the task's ``output[0]``, cancel with ``DELETE /v1/tasks/{id}``; model data.

The wire format follows Runway's API docs (docs.dev.runwayml.com) and the ``runwayml`` SDK's
``types/image_to_video_create_params.py`` and ``types/task_retrieve_response.py``. Every call carries
``Authorization: Bearer <key>`` and ``X-Runway-Version: 2024-11-06`` (the API answers 400 without it).
The create body is ``{model, promptImage, promptText?, ratio, duration?, seed?}``: ``promptImage`` is an
HTTPS URL or a ``data:`` URI (under 5 MB encoded), or for a first and last frame a list of ``{uri,
position: first | last}``; ``ratio`` is a pixel size written ``W:H`` (``1280:720``), so our aspect ratio
is translated per model. The answer is ``{id}``. A task is ``{id, status: PENDING | THROTTLED | RUNNING |
SUCCEEDED | FAILED | CANCELLED, progress? (0..1), output? [url], failure?, failureCode?}``; a failure
code starting ``SAFETY.`` is the content moderation's (input or output) and is reported as a refusal.
Output URLs are signed and expire within 24-48 hours; fetching the task again gives fresh ones, which
`download` does once before calling the result expired. Errors are ``{"error": "<message>"}`` (400s may
add ``issues``); 429 and 502/503/504 may be retried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx

from mmstudio.errors import (
    InvalidRequest,
    ProviderError,
    ResultExpired,
    UpstreamModelNotFound,
    redact,
)
from mmstudio.providers._http import (
    HTTPAdapter,
    UpstreamResponse,
    error_for_status,
    parse_retry_after,
    raise_protocol,
)
from mmstudio.providers.base import Capabilities, ProbeResult, RemoteModel
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.openai_images import data_url
from mmstudio.providers.media.video_base import VideoCapabilities, VideoRequest, VideoState, VideoStatus
from mmstudio.providers.media.video_download import checked_video

RUNWAY_API_VERSION = "2024-11-06"
RUNWAY_BASE_URL = "https://api.dev.runwayml.com/v1"

# Our aspect ratio -> Runway's `ratio` (a pixel size), per model. gen4_turbo's 1104:832 and 1584:672 are
# Runway's nearest sizes to 4:3 and 21:9; gen3a_turbo's only sizes are 1280:768 and 768:1280 (5:3, 3:5).
_RATIOS: dict[str, dict[str, str]] = {
    "gen4_turbo": {
        "16:9": "1280:720",
        "9:16": "720:1280",
        "4:3": "1104:832",
        "3:4": "832:1104",
        "1:1": "960:960",
        "21:9": "1584:672",
    },
    "gen3a_turbo": {"5:3": "1280:768", "3:5": "768:1280"},
}


def _sizes(model: str) -> tuple[str, ...]:
    return tuple(ratio.replace(":", "x") for ratio in _RATIOS[model].values())


# Both take a start image and nothing else (no text-only generation on this endpoint): `submit` refuses a
# request without one. Runway bills 5 credits a second for both, at $0.01 a credit.
RUNWAY_VIDEO_MODELS: dict[str, VideoCapabilities] = {
    # First: the default Runway model. gen3a_turbo is gone from the current SDK's image_to_video schema.
    "gen4_turbo": VideoCapabilities(
        durations=(5, 10),
        aspect_ratios=tuple(_RATIOS["gen4_turbo"]),
        resolutions=_sizes("gen4_turbo"),
        image_to_video=True,
        text_to_video=False,
        seed=True,
        price_per_second_usd=0.05,
        poll_interval_s=6.0,  # the SDK's own wait loop polls every 6 s (with jitter)
        typical_seconds=60.0,
        key_env="RUNWAYML_API_SECRET",
    ),
    "gen3a_turbo": VideoCapabilities(
        durations=(5, 10),
        aspect_ratios=tuple(_RATIOS["gen3a_turbo"]),
        resolutions=_sizes("gen3a_turbo"),
        image_to_video=True,
        text_to_video=False,
        end_frame=True,  # promptImage may hold a `position: "last"` frame too
        seed=True,
        price_per_second_usd=0.05,
        poll_interval_s=6.0,
        typical_seconds=45.0,
        key_env="RUNWAYML_API_SECRET",
    ),
}
RUNWAY_DISPLAY_NAMES = {"gen3a_turbo": "Runway Gen-3 Alpha Turbo", "gen4_turbo": "Runway Gen-4 Turbo"}
REQUIRES_START_IMAGE = frozenset(RUNWAY_VIDEO_MODELS)

_STATES: dict[str, VideoState] = {
    "PENDING": "queued",
    "THROTTLED": "queued",  # waiting for one of the organisation's concurrency slots
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}
_REFUSAL_PREFIX = "SAFETY."
_MAX_DATA_URI = 5 * 1024 * 1024  # the encoded data URI's limit
_MAX_PROMPT = 1000  # UTF-16 code units
_MAX_SEED = 4_294_967_295
_EXPIRED = (401, 403, 404, 410)  # what a signed CDN URL answers once it lapsed (or the asset is gone)


class RunwayVideoAdapter(HTTPAdapter):
    """Runway's developer API; `config.base_url` is ``https://api.dev.runwayml.com/v1``."""

    protocol: ClassVar[str] = "runway"
    capabilities: ClassVar[dict[str, VideoCapabilities]] = RUNWAY_VIDEO_MODELS
    default_label: ClassVar[str] = "runway"

    def headers(self) -> dict[str, str]:
        headers = {"X-Runway-Version": RUNWAY_API_VERSION}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        headers.update(self.config.headers)
        return headers

    @property
    def label(self) -> str:
        return self.config.provider or self.default_label

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        message = error_message(body, status)
        retry_after = parse_retry_after(headers)
        # An unknown model, or one the organisation may not use, is a 403 "Model variant ... is not
        # available": the key itself is fine, so it is not an authentication failure.
        if status == 403 and "not available" in message.lower():
            return UpstreamModelNotFound(
                f"{self.label} returned HTTP 403: {redact(message, self.config.secrets)}",
                provider=self.config.provider,
                model=model,
                status=status,
            )
        return error_for_status(status, message, config=self.config, model=model, retry_after=retry_after)

    # -- submit --------------------------------------------------------------------------------

    def create_body(self, request: VideoRequest) -> dict[str, Any]:
        """The ``image_to_video`` body; every check that can fail runs here, before anything is sent."""
        ratios = _RATIOS.get(request.model)
        if ratios is None:
            raise InvalidRequest(
                f"{request.model!r} is not a Runway video model; known: {', '.join(RUNWAY_VIDEO_MODELS)}",
                field="model",
            )
        caps = RUNWAY_VIDEO_MODELS[request.model]
        if request.start_image is None:
            raise InvalidRequest(
                f"{RUNWAY_DISPLAY_NAMES[request.model]} makes a video from a start image: give one",
                field="start_image",
            )
        if request.end_image is not None and not caps.end_frame:
            raise InvalidRequest(f"{request.model} takes no end frame", field="end_image")
        start = image_uri(request.start_image, "start_image")
        prompt_image: str | list[dict[str, str]] = start
        if request.end_image is not None:
            end = image_uri(request.end_image, "end_image")
            prompt_image = [{"uri": start, "position": "first"}, {"uri": end, "position": "last"}]
        body: dict[str, Any] = {"model": request.model, "promptImage": prompt_image}
        if request.prompt:
            if len(request.prompt.encode("utf-16-le")) // 2 > _MAX_PROMPT:
                raise InvalidRequest(f"Runway takes a prompt of at most {_MAX_PROMPT} characters", "prompt")
            body["promptText"] = request.prompt
        ratio = self.ratio(request, ratios)
        if ratio is not None:
            body["ratio"] = ratio
        if request.duration_s is not None:
            if request.duration_s not in caps.durations:
                raise InvalidRequest(
                    f"{request.model} makes videos of {' or '.join(map(str, caps.durations))} seconds",
                    field="duration_s",
                )
            body["duration"] = request.duration_s
        if request.seed is not None:
            if not 0 <= request.seed <= _MAX_SEED:
                raise InvalidRequest(f"a Runway seed is 0..{_MAX_SEED}", field="seed")
            body["seed"] = request.seed
        body.update(request.extra)  # e.g. contentModeration, watermark
        return body

    def ratio(self, request: VideoRequest, ratios: Mapping[str, str]) -> str | None:
        """Runway's pixel `ratio` from the resolution (``1280x720``) or the aspect ratio (``16:9``)."""
        if request.resolution is not None:
            wanted = request.resolution.replace("x", ":")
            if wanted not in ratios.values():
                raise InvalidRequest(
                    f"{request.model} makes {', '.join(_sizes(request.model))}", field="resolution"
                )
            return wanted
        if request.aspect_ratio is None:
            return None
        if request.aspect_ratio in ratios.values():  # already Runway's own spelling
            return request.aspect_ratio
        found = ratios.get(request.aspect_ratio)
        if found is None:
            raise InvalidRequest(
                f"{request.model} takes the aspect ratios {', '.join(ratios)}", field="aspect_ratio"
            )
        return found

    async def submit(self, request: VideoRequest) -> str:
        body = self.create_body(request)
        data = await self.request_json("POST", "image_to_video", model=request.model, json_body=body)
        handle = data.get("id") if isinstance(data, dict) else None
        if not isinstance(handle, str) or not handle:
            raise_protocol(
                self.config, f"answered a new task without an `id`: {str(data)[:200]}", request.model
            )
        return handle

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, handle: str, model: str) -> VideoStatus:
        return self.parse_task(await self.task(handle, model), model)

    async def task(self, handle: str, model: str) -> dict[str, Any]:
        try:
            data = await self.request_json("GET", f"tasks/{handle}", model=model)
        except UpstreamModelNotFound as exc:  # a 404 here is the task, not the model
            if exc.status != 404:
                raise
            raise ResultExpired(
                f"{self.label} no longer has task {handle} (deleted, or older than Runway keeps tasks)",
                provider=self.config.provider,
                model=model,
                status=exc.status,
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise_protocol(self.config, f"sent a task that is not a task object: {str(data)[:200]}", model)
        return data

    def parse_task(self, task: Mapping[str, Any], model: str) -> VideoStatus:
        """A task as our status; an unknown `status`, a bad `progress` or a success without output is
        garbage (`ProviderProtocolError`, retryable: the next poll may read fine)."""
        raw = task.get("status")
        state = _STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise_protocol(self.config, f"sent a task with an unknown status {raw!r}", model)
        progress = task.get("progress")
        if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int | float)):
            raise_protocol(self.config, f"sent a task progress that is not a number: {progress!r}", model)
        info: dict[str, Any] = {"status": raw}
        if isinstance(task.get("createdAt"), str):
            info["created_at"] = task["createdAt"]
        for key, name in (("estimatedCost", "estimated_credits"), ("cost", "credits")):
            cost = task.get(key)
            if isinstance(cost, dict) and isinstance(cost.get("credits"), int | float):
                info[name] = cost["credits"]
        error: str | None = None
        refused = False
        result_url: str | None = None
        if state == "failed":
            failure = task.get("failure")
            code = task.get("failureCode")
            reason = failure if isinstance(failure, str) and failure else "no reason given"
            if isinstance(code, str) and code:
                info["failure_code"] = code
                refused = code.upper().startswith(_REFUSAL_PREFIX)
                reason = f"{reason} [{code}]"
            error = redact(reason, self.config.secrets)
        elif state == "succeeded":
            output = task.get("output")
            if not isinstance(output, list) or not output or not all(isinstance(u, str) for u in output):
                raise_protocol(self.config, f"sent a finished task without output URLs: {output!r}", model)
            result_url = output[0]
            if not result_url.startswith(("https://", "http://")):
                raise_protocol(self.config, f"sent an output that is not a URL: {result_url[:100]!r}", model)
            info["outputs"] = len(output)
        percent: float | None = None
        if state == "succeeded":
            percent = 100.0
        elif progress is not None:
            percent = float(max(0.0, min(1.0, progress))) * 100.0
        return VideoStatus(
            state=state, progress=percent, error=error, refused=refused, result_url=result_url, info=info
        )

    # -- download ------------------------------------------------------------------------------

    async def download(self, handle: str, status: VideoStatus, model: str) -> AsyncIterator[bytes]:
        """The MP4 at the task's first output URL, streamed; the URL is signed, so no key goes with it.
        When it lapsed (401/403/404/410) the task is fetched again for a fresh URL, once; when that one
        fails too, or the task is gone, the result is `ResultExpired`."""
        refreshed = status.result_url is None
        url = status.result_url or await self.fresh_url(handle, model)
        while True:
            response = await self.open_download(url, model)
            try:
                if response.status_code < 400:
                    async for chunk in checked_video(self, response, model, label=self.label):
                        yield chunk
                    return
                with self.transport_errors(model):
                    body = await response.aread()
            finally:
                await response.aclose()
            if response.status_code not in _EXPIRED:
                raise self.error_from_response(response.status_code, body, response.headers, model)
            if refreshed:
                raise ResultExpired(
                    f"{self.label}'s video for task {handle} can no longer be fetched (HTTP "
                    f"{response.status_code} from its output URL, also from a fresh one)",
                    provider=self.config.provider,
                    model=model,
                    status=response.status_code,
                )
            url, refreshed = await self.fresh_url(handle, model), True

    async def fresh_url(self, handle: str, model: str) -> str:
        status = self.parse_task(await self.task(handle, model), model)
        if status.state != "succeeded" or status.result_url is None:
            raise ResultExpired(
                f"{self.label} task {handle} has no video to fetch (it is {status.state})",
                provider=self.config.provider,
                model=model,
            )
        return status.result_url

    async def open_download(self, url: str, model: str) -> httpx.Response:
        # The CDN gets no Authorization, no version header and none of the configured headers.
        request = self.client.build_request(
            "GET", url, headers={"Accept": "video/mp4"}, timeout=self.timeout()
        )
        with self.transport_errors(model):
            return await self.client.send(request, stream=True)

    # -- cancel, models, health ----------------------------------------------------------------

    async def cancel(self, handle: str, model: str) -> bool:
        """``DELETE /v1/tasks/{id}`` (204, no body): cancels a pending, throttled or running task and
        deletes a finished one. A task already gone (404) is as stopped as it gets."""
        response = await self.send("DELETE", f"tasks/{handle}", model)
        if response.status_code == 404 or response.status_code < 400:
            return True
        raise self.error_from_response(response.status_code, response.content, response.headers, model)

    async def send(self, method: str, path: str, model: str | None) -> UpstreamResponse:
        """A request whose status the caller reads itself (`request_json` wants a JSON body)."""
        response: UpstreamResponse
        with self.transport_errors(model):
            if self._direct is not None:
                response = await self._direct.send(
                    method, self.url(path), headers=self.headers(), timeout=self.timeout()
                )
            else:
                response = await self.client.request(
                    method, self.url(path), headers=self.headers(), timeout=self.timeout()
                )
        return response

    async def list_models(self) -> list[RemoteModel]:
        """Runway has no model list endpoint: the table's models, as data."""
        return [
            RemoteModel(
                model_id,
                "runway",
                Capabilities(streaming=False, vision=True),
                {
                    "video": True,
                    "display_name": RUNWAY_DISPLAY_NAMES[model_id],
                    "image_to_video": caps.image_to_video,
                    "requires_start_image": model_id in REQUIRES_START_IMAGE,
                },
            )
            for model_id, caps in RUNWAY_VIDEO_MODELS.items()
        ]

    async def probe(self) -> ProbeResult:
        """``GET /v1/organization`` (the credit balance and tier): checks the key and the version header."""
        return await self.timed_probe("organization")


def image_uri(image: InputImage, field: str) -> str:
    if not image.media_type.startswith("image/"):
        raise InvalidRequest(f"Runway takes an image here, not {image.media_type}", field=field)
    uri = data_url(image)
    if len(uri) >= _MAX_DATA_URI:
        raise InvalidRequest(
            f"the image is too large for Runway ({len(uri)} bytes as a data URI; the limit is 5 MB)",
            field=field,
        )
    return uri


def error_message(body: bytes, status: int) -> str:
    """Runway's ``{"error": "...", "issues"?: [...]}`` as one line, else the body's text."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500] or f"HTTP {status} with an empty body"
    if not isinstance(payload, dict):
        return str(payload)[:500]
    message = payload.get("error")
    text = message if isinstance(message, str) and message else json.dumps(payload)[:500]
    issues = payload.get("issues")
    if isinstance(issues, list):
        details = []
        for issue in issues[:5]:
            if isinstance(issue, dict) and isinstance(issue.get("message"), str):
                path = issue.get("path")
                where = ".".join(str(p) for p in path) if isinstance(path, list) and path else ""
                details.append(f"{where}: {issue['message']}" if where else issue["message"])
        if details:
            text = f"{text} ({'; '.join(details)})"
    return text


__all__ = [
    "RUNWAY_API_VERSION",
    "RUNWAY_BASE_URL",
    "RUNWAY_DISPLAY_NAMES",
    "RUNWAY_VIDEO_MODELS",
    "RunwayVideoAdapter",
]
