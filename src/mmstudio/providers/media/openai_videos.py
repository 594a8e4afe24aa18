"""OpenAI Videos (Sora) adapter: ``POST /v1/videos`` multipart, poll ``GET /v1/videos/{id}``, stream
``GET /v1/videos/{id}/content``; and the sora-2 model data.

The wire format follows openai-python's ``resources/videos.py`` and ``types/video.py``: the create form
takes ``prompt``, ``model``, ``seconds`` (a *string*: ``"4" | "8" | "12"``), ``size`` (``WxH``) and an
optional ``input_reference`` file (the start frame); every call answers a Video object ``{id,
object: "video", status: queued | in_progress | completed | failed, progress (integer %), seconds,
size, error?: {code, message}, expires_at?}``. A refusal of the moderation system arrives *after*
acceptance as ``status: failed`` with a moderation code, and is reported by `poll` as
``VideoStatus(state="failed", refused=True)`` with OpenAI's words; one refused at creation (HTTP 400)
is `ContentFiltered` from `submit`, like the image adapter's. The server's ``openai-poll-after-ms``
header, when present, is passed on as ``info["poll_after_s"]``. Errors are OpenAI's ``{"error": {...}}``
bodies, mapped as in the image adapter. OpenAI scheduled these endpoints to shut down in September
2026: the adapter is supported, never a default.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from mmstudio.errors import (
    ContentFiltered,
    ProviderError,
    ResultExpired,
    redact,
)
from mmstudio.providers._http import HTTPAdapter, UpstreamResponse, decode_json, raise_protocol
from mmstudio.providers.base import Capabilities, ProbeResult, RemoteModel
from mmstudio.providers.media.video_base import VideoCapabilities, VideoRequest, VideoState, VideoStatus
from mmstudio.providers.media.video_download import checked_video
from mmstudio.providers.openai_compat import _error_fields, payload_error

_PORTRAIT, _LANDSCAPE = "720x1280", "1280x720"
_PRO_PORTRAIT, _PRO_LANDSCAPE = "1024x1792", "1792x1024"

OPENAI_VIDEO_MODELS: dict[str, VideoCapabilities] = {
    "sora-2": VideoCapabilities(
        durations=(4, 8, 12),
        aspect_ratios=("9:16", "16:9"),
        resolutions=(_PORTRAIT, _LANDSCAPE),
        image_to_video=True,
        price_per_second_usd=0.10,
        poll_interval_s=10.0,
        typical_seconds=120.0,
        key_env="OPENAI_API_KEY",
    ),
    "sora-2-pro": VideoCapabilities(
        durations=(4, 8, 12),
        aspect_ratios=("9:16", "16:9"),
        resolutions=(_PORTRAIT, _LANDSCAPE, _PRO_PORTRAIT, _PRO_LANDSCAPE),
        image_to_video=True,
        price_per_second_usd=0.30,  # at 720p; the larger sizes cost $0.50 a second
        poll_interval_s=15.0,
        typical_seconds=300.0,
        key_env="OPENAI_API_KEY",
    ),
}

# The size a bare aspect ratio asks for (the smallest of that orientation: every model takes it).
_SIZE_FOR_RATIO = {"9:16": _PORTRAIT, "16:9": _LANDSCAPE}
_STATES: dict[str, VideoState] = {
    "queued": "queued",
    "in_progress": "running",
    "completed": "succeeded",
    "failed": "failed",
}
_VIDEO_MODEL_PREFIXES = ("sora",)
# OpenAI's refusals: ``moderation_blocked`` (the video moderation's code), the older
# ``content_policy_violation``, and messages that name the safety or moderation system.
_REFUSAL = re.compile(r"moderation|content_policy|safety system|safety_violations")
_INFO_KEYS = ("model", "size", "seconds", "created_at", "completed_at", "expires_at", "remixed_from_video_id")


class OpenAIVideosAdapter(HTTPAdapter):
    """OpenAI's Videos API; `config.base_url` ends in ``/v1``; the key goes as a Bearer token."""

    protocol: ClassVar[str] = "openai_videos"
    capabilities: ClassVar[dict[str, VideoCapabilities]] = OPENAI_VIDEO_MODELS
    default_label: ClassVar[str] = "openai"

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
        if 400 <= status < 500 and "api key" not in lowered and _REFUSAL.search(lowered):
            return ContentFiltered(
                f"{self.label} refused the video: {redact(message, self.config.secrets)}",
                provider=self.config.provider,
                model=model,
                status=status,
            )
        return payload_error(self.config, status, payload, model, headers)

    # -- submit --------------------------------------------------------------------------------

    def create_form(self, request: VideoRequest) -> dict[str, str]:
        """The create form's text fields; `seconds` as text, as the API takes it; `extra` goes last."""
        form = {"prompt": request.prompt, "model": request.model}
        if request.duration_s is not None:
            form["seconds"] = str(request.duration_s)
        size = request.resolution or _SIZE_FOR_RATIO.get(request.aspect_ratio or "")
        if size is not None:
            form["size"] = size
        form.update({key: str(value) for key, value in request.extra.items() if value is not None})
        return form

    async def submit(self, request: VideoRequest) -> str:
        form = self.create_form(request)
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        if request.start_image is not None:
            image = request.start_image
            name, data, media_type = image.name, image.data, image.media_type
            if "size" in form:  # the API refuses a reference of another size than the video's
                fitted = await asyncio.to_thread(fit_reference, data, form["size"])
                if fitted is not None:
                    name, data, media_type = f"{Path(name).stem or 'start'}.png", fitted, "image/png"
            files.append(("input_reference", (name, data, media_type)))
        else:
            # Without a file httpx would send the form urlencoded; the endpoint is documented (and
            # the SDK sends it) as multipart, so the text goes as parts without a filename.
            files = [
                (name, ("", value.encode(), "text/plain; charset=utf-8")) for name, value in form.items()
            ]
            form = {}
        data = await self.request_multipart("videos", data=form, files=files, model=request.model)
        video = self.video_object(data, request.model)
        self.parse_status(video, request.model)  # a create answer we cannot read is not an accepted job
        return str(video["id"])

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, handle: str, model: str) -> VideoStatus:
        response = await self.get(_path(handle), model)
        data = decode_json(response.content, self.config, "a video status")
        status = self.parse_status(self.video_object(data, model), model)
        poll_after = response.headers.get("openai-poll-after-ms")
        if poll_after is not None and poll_after.strip().isdigit():
            status = replace(status, info={**status.info, "poll_after_s": int(poll_after) / 1000.0})
        return status

    def video_object(self, data: Any, model: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise_protocol(self.config, "sent a video that is not an object", model)
        handle = data.get("id")
        if not isinstance(handle, str) or not handle:
            raise_protocol(self.config, "sent a video without an `id`", model)
        return data

    def parse_status(self, video: Mapping[str, Any], model: str) -> VideoStatus:
        """A Video object as our status; an unknown `status` or a non-numeric `progress` is garbage."""
        raw_state = video.get("status")
        state = _STATES.get(raw_state) if isinstance(raw_state, str) else None
        if state is None:
            raise_protocol(self.config, f"sent a video with an unknown status {raw_state!r}", model)
        progress = video.get("progress")
        if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int | float)):
            raise_protocol(
                self.config, f"sent a video with a progress that is not a number: {progress!r}", model
            )
        info = {key: video[key] for key in _INFO_KEYS if video.get(key) is not None}
        error: str | None = None
        refused = False
        if state == "failed":
            message, code, etype = _error_fields(video.get("error") or {"message": "no reason given"})
            refused = bool(_REFUSAL.search(f"{code} {etype} {message}".lower()))
            error = redact(
                f"{message} [{code}]" if code and code not in message else message, self.config.secrets
            )
            if code:
                info["error_code"] = code
        duration: float | None = None
        if state == "succeeded":
            try:
                duration = float(video.get("seconds") or 0) or None
            except (TypeError, ValueError):
                duration = None
        return VideoStatus(
            state=state,
            progress=None if progress is None else float(max(0, min(100, progress))),
            error=error,
            refused=refused,
            duration_s=duration,
            info=info,
        )

    # -- download ------------------------------------------------------------------------------

    async def download(self, handle: str, status: VideoStatus, model: str) -> AsyncIterator[bytes]:
        """The MP4, streamed from the content endpoint; 404 or 410 there means the video expired
        (OpenAI keeps the assets until `expires_at`) and is `ResultExpired`."""
        request = self.client.build_request(
            "GET",
            self.url(f"{_path(handle)}/content"),
            params={"variant": "video"},
            headers={**self.headers(), "Accept": "application/binary"},
            timeout=self.timeout(),
        )
        with self.transport_errors(model):
            response = await self.client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                with self.transport_errors(model):
                    body = await response.aread()
                if response.status_code in (404, 410):
                    raise self.expired(handle, status, body, model)
                raise self.error_from_response(response.status_code, body, response.headers, model)
            async for chunk in checked_video(
                self, response, model, label=self.label, empty=f"sent an empty video for {handle}"
            ):
                yield chunk
        finally:
            await response.aclose()

    def expired(self, handle: str, status: VideoStatus, body: bytes, model: str) -> ResultExpired:
        message, _code, _type = _error_fields(json_or_text(body, 404))
        expires_at = status.info.get("expires_at")
        when = f" (it expired at {expires_at})" if expires_at is not None else ""
        return ResultExpired(
            f"{self.label} no longer has video {handle}{when}: {redact(message, self.config.secrets)}",
            provider=self.config.provider,
            model=model,
        )

    # -- cancel, models, health ----------------------------------------------------------------

    async def cancel(self, handle: str, model: str) -> bool:
        """``DELETE /v1/videos/{id}``: OpenAI's only way to stop a video (it deletes the job)."""
        await self.request_json("DELETE", _path(handle), model=model)
        return True

    async def get(self, path: str, model: str | None) -> UpstreamResponse:
        """A GET whose headers the caller needs (`request_json` keeps only the body)."""
        response: UpstreamResponse
        with self.transport_errors(model):
            if self._direct is not None:
                response = await self._direct.send(
                    "GET", self.url(path), headers=self.headers(), timeout=self.timeout()
                )
            else:
                response = await self.client.request(
                    "GET", self.url(path), headers=self.headers(), timeout=self.timeout()
                )
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.content, response.headers, model)
        return response

    async def list_models(self) -> list[RemoteModel]:
        """The listed Sora models, marked with what their data says they take."""
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
    """The video's resource path; the handle is quoted whole, so it can never reach another route."""
    return f"videos/{quote(handle, safe='')}"


def json_or_text(body: bytes, status: int) -> Any:
    """An error body as JSON when it is, else its text (or a note that it was empty)."""
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500] or f"HTTP {status} with an empty body"


__all__ = ["OPENAI_VIDEO_MODELS", "OpenAIVideosAdapter"]


def fit_reference(data: bytes, size: str) -> bytes | None:
    """The start frame scaled and centre-cropped to fill `size` ("1280x720") as PNG: OpenAI answers 400
    "Inpaint image must match the requested width and height" otherwise. None when it already fits."""
    from PIL import Image, ImageOps

    width, height = (int(n) for n in size.split("x"))
    with Image.open(io.BytesIO(data)) as picture:
        if picture.size == (width, height):
            return None
        fitted = ImageOps.fit(
            ImageOps.exif_transpose(picture).convert("RGB"), (width, height), Image.Resampling.LANCZOS
        )
    out = io.BytesIO()
    fitted.save(out, "PNG")
    return out.getvalue()
