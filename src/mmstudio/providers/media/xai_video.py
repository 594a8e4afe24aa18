"""xAI Grok Imagine video adapter (``grok-imagine-video``): ``POST /v1/videos/generations``, poll
``GET /v1/videos/{request_id}``, stream the temporary ``video.url``; and the model's data.

The wire format follows xAI's video generation docs (docs.x.ai, "Video Generation"; the REST flow the
xai-sdk wraps). The create body is JSON ``{model, prompt, duration (integer seconds, always sent: the
default is the API's, not ours), aspect_ratio?, resolution? (480p | 720p), image?: {url}}``, where the
start image's URL is a ``data:`` URI; the answer is ``{"request_id"}``. A poll answers
``status: pending`` (any 2xx, with ``progress`` in % when the API gives it), ``done`` with ``video: {url,
duration, respect_moderation}``, ``failed`` **as HTTP 200** with ``error: {code, message}``, or
``expired`` (the deferred request lapsed before it finished). A refusal is reported by `poll`, never
raised: a failure whose code or message names content moderation, or a ``done`` whose video carries
``respect_moderation: false``, is ``VideoStatus(state="failed", refused=True)`` with xAI's words. One
refused at creation (a 400 naming moderation) is `ContentFiltered` from `submit`, like the image
adapter's. The video URL is on xAI's CDN and temporary: it is fetched with a plain GET (no key goes to
another host), and as xAI has no content endpoint to fetch it from again, a 403/404/410 there is
`ResultExpired`. xAI has no cancel call. Errors are xAI's ``{"code", "error"}`` bodies, mapped as in the
image adapter (`xai_media`), including its HTTP 400 for a bad key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from mmstudio.errors import (
    ContentFiltered,
    InvalidRequest,
    ProviderError,
    ResultExpired,
    redact,
)
from mmstudio.providers._http import (
    HTTPAdapter,
    error_for_status,
    parse_retry_after,
    raise_protocol,
)
from mmstudio.providers.base import Capabilities, ProbeResult, RemoteModel
from mmstudio.providers.media.openai_images import data_url
from mmstudio.providers.media.openai_videos import json_or_text
from mmstudio.providers.media.video_base import VideoCapabilities, VideoRequest, VideoState, VideoStatus
from mmstudio.providers.media.video_download import checked_video, is_mp4
from mmstudio.providers.media.xai_media import _XAI_REFUSAL
from mmstudio.providers.openai_compat import _error_fields, payload_error

XAI_VIDEO_MODELS: dict[str, VideoCapabilities] = {
    "grok-imagine-video": VideoCapabilities(
        durations=tuple(range(1, 16)),  # 1..15 seconds
        aspect_ratios=("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"),
        resolutions=("480p", "720p"),
        image_to_video=True,
        price_per_second_usd=0.05,  # at 480p; 720p costs $0.07 a second
        poll_interval_s=5.0,  # what xAI's own examples wait between polls
        typical_seconds=90.0,  # "up to several minutes"; most short clips finish in one to two
        key_env="XAI_API_KEY",
    ),
}

DEFAULT_DURATION_S = 6  # sent when the request names none, so the length (and the bill) is ours to know
_VIDEO_MODEL_PREFIXES = ("grok-imagine-video",)
_INFO_KEYS = ("model",)
_EXPIRED_URL = (403, 404, 410)  # what a CDN answers for a lapsed signed URL


def _video_problem(response: httpx.Response) -> Callable[[bytes], str | None]:
    """A video by its type or, whatever the type says, by the MP4 ``ftyp`` box."""
    is_video_type = response.headers.get("content-type", "").lower().startswith("video/")

    def problem(head: bytes) -> str | None:
        if is_video_type or is_mp4(head):
            return None
        return f"sent something that is not a video (starts {head[:12]!r})"

    return problem


class XAIVideoAdapter(HTTPAdapter):
    """xAI's video API at ``https://api.x.ai/v1``; the key goes as a Bearer token (to xAI only)."""

    protocol: ClassVar[str] = "xai_video"
    capabilities: ClassVar[dict[str, VideoCapabilities]] = XAI_VIDEO_MODELS
    default_label: ClassVar[str] = "xai"

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        headers.update(self.config.headers)
        return headers

    @property
    def label(self) -> str:
        return self.config.provider or self.default_label

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        payload = json_or_text(body, status)
        message, code, etype = _error_fields(payload)
        lowered = f"{code} {etype} {message}".lower()
        # A key error mentions "api key"; it must stay an AuthenticationError whatever else it says.
        if 400 <= status < 500 and "api key" not in lowered and _XAI_REFUSAL.search(lowered):
            return ContentFiltered(
                f"{self.label} refused the video: {redact(message, self.config.secrets)}",
                provider=self.config.provider,
                model=model,
                status=status,
            )
        return payload_error(self.config, status, payload, model, headers)

    # -- submit --------------------------------------------------------------------------------

    def create_body(self, request: VideoRequest) -> dict[str, Any]:
        """``{model, prompt, duration, aspect_ratio?, resolution?, image?}``; `extra` goes last."""
        if request.end_image is not None:
            raise InvalidRequest(f"{request.model} does not take an end frame", field="end_image")
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "duration": request.duration_s if request.duration_s is not None else DEFAULT_DURATION_S,
        }
        if request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        if request.resolution:
            body["resolution"] = request.resolution
        if request.start_image is not None:
            body["image"] = {"url": data_url(request.start_image)}
        body.update(request.extra)
        return body

    async def submit(self, request: VideoRequest) -> str:
        body = self.create_body(request)
        data = await self.request_json("POST", "videos/generations", model=request.model, json_body=body)
        handle = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(handle, str) or not handle:
            raise_protocol(self.config, "accepted a video without a `request_id`", request.model)
        return handle

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, handle: str, model: str) -> VideoStatus:
        data = await self.request_json("GET", _path(handle), model=model)
        return self.parse_status(data, model)

    def parse_status(self, data: Any, model: str) -> VideoStatus:
        """A poll answer as our status; anything that is not one of xAI's four states is garbage."""
        if not isinstance(data, dict):
            raise_protocol(self.config, "sent a video status that is not an object", model)
        raw_state = data.get("status")
        video = data.get("video")
        if video is not None and not isinstance(video, dict):
            raise_protocol(self.config, f"sent a `video` that is not an object: {video!r}", model)
        progress = data.get("progress")
        if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int | float)):
            raise_protocol(self.config, f"sent a progress that is not a number: {progress!r}", model)
        info: dict[str, Any] = {key: data[key] for key in _INFO_KEYS if data.get(key)}
        usage = data.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("cost_in_usd_ticks"), int):
            info["cost_in_usd_ticks"] = usage["cost_in_usd_ticks"]
        if raw_state == "pending":
            state: VideoState = "running" if progress else "queued"
            shown = None if progress is None else float(max(0, min(100, progress)))
            return VideoStatus(state=state, progress=shown, info=info)
        if raw_state == "done":
            return self.parse_done(video or {}, info, model)
        if raw_state == "failed":
            return self.parse_failed(data.get("error"), info)
        if raw_state == "expired":
            info["expired"] = True
            return VideoStatus(
                state="failed",
                error=f"{self.label}: the video request expired before the video was finished",
                info=info,
            )
        raise_protocol(self.config, f"sent a video status with an unknown status {raw_state!r}", model)

    def parse_done(self, video: Mapping[str, Any], info: dict[str, Any], model: str) -> VideoStatus:
        if video.get("respect_moderation") is False:
            # The video was made but withheld: xAI's moderation did not pass it.
            info["respect_moderation"] = False
            return VideoStatus(
                state="failed",
                error=f"{self.label} withheld the video: it did not pass content moderation",
                refused=True,
                info=info,
            )
        url = video.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise_protocol(self.config, f"sent a finished video without a usable `url`: {url!r}", model)
        duration = video.get("duration")
        seconds = (
            float(duration)
            if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0
            else None
        )
        return VideoStatus(state="succeeded", progress=100.0, result_url=url, duration_s=seconds, info=info)

    def parse_failed(self, error: Any, info: dict[str, Any]) -> VideoStatus:
        message, code, _type = _error_fields(error or {"message": "no reason given"})
        refused = "api key" not in message.lower() and bool(_XAI_REFUSAL.search(f"{code} {message}".lower()))
        if code:
            info["error_code"] = code
        text = f"{message} [{code}]" if code and code not in message else message
        return VideoStatus(
            state="failed", error=redact(text, self.config.secrets), refused=refused, info=info
        )

    # -- download ------------------------------------------------------------------------------

    async def download(self, handle: str, status: VideoStatus, model: str) -> AsyncIterator[bytes]:
        """The video at its temporary URL, streamed. Without a URL in `status` (a status kept from
        before a restart) the request is polled once for it. 403/404/410 mean the URL lapsed, and xAI
        keeps no copy to fetch instead: `ResultExpired`."""
        url = status.result_url
        if url is None:
            fresh = await self.poll(handle, model)
            if fresh.state != "succeeded" or fresh.result_url is None:
                raise ResultExpired(
                    f"{self.label} request {handle} has no video to fetch (it is {fresh.state}"
                    f"{': ' + fresh.error if fresh.error else ''})",
                    provider=self.config.provider,
                    model=model,
                )
            url = fresh.result_url
        # The CDN gets no Authorization and none of the configured headers: it is another host.
        request = self.client.build_request("GET", url, headers={"Accept": "video/*"}, timeout=self.timeout())
        with self.transport_errors(model):
            response = await self.client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                with self.transport_errors(model):
                    body = await response.aread()
                if response.status_code in _EXPIRED_URL:
                    raise ResultExpired(
                        f"{self.label}: the result expired before it could be fetched (HTTP "
                        f"{response.status_code} from the video URL of request {handle})",
                        provider=self.config.provider,
                        model=model,
                        status=response.status_code,
                    )
                raise self.download_error(response, body, model)
            async for chunk in checked_video(
                self, response, model, _video_problem(response), label=self.label
            ):
                yield chunk
        finally:
            await response.aclose()

    def download_error(self, response: httpx.Response, body: bytes, model: str) -> ProviderError:
        # The CDN's body is not xAI's error shape: the generic mapping, with its Retry-After.
        return error_for_status(
            response.status_code,
            f"the video URL answered: {body.decode('utf-8', 'replace')[:300]}",
            config=self.config,
            model=model,
            retry_after=parse_retry_after(response.headers),
        )

    # -- cancel, models, health ----------------------------------------------------------------

    async def cancel(self, handle: str, model: str) -> bool:
        """xAI has no call to stop a video: the job runs on and its result is discarded."""
        return False

    async def list_models(self) -> list[RemoteModel]:
        """The listed Grok Imagine video models, marked with what their data says they take."""
        data = await self.request_json("GET", "models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise_protocol(self.config, "sent a model list without `data`")
        models: list[RemoteModel] = []
        for entry in entries:
            model_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(model_id, str) or not model_id.startswith(_VIDEO_MODEL_PREFIXES):
                continue
            caps = self.capabilities.get(model_id, VideoCapabilities())
            owner = entry.get("owned_by")
            details = {k: v for k, v in entry.items() if k not in ("id", "object")}
            details["video"] = True
            details["image_to_video"] = caps.image_to_video
            models.append(
                RemoteModel(
                    model_id,
                    owner if isinstance(owner, str) else None,
                    Capabilities(streaming=False, vision=caps.image_to_video),
                    details,
                )
            )
        return models

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models")


def _path(handle: str) -> str:
    """The request's status path; the handle is quoted whole, so it can never reach another route."""
    return f"videos/{quote(handle, safe='')}"


__all__ = ["XAI_VIDEO_MODELS", "XAIVideoAdapter"]
