"""Google Veo video adapter (Gemini API): ``predictLongRunning``, poll the operation, stream its file.

The wire format is the Gemini API's (``generativelanguage.googleapis.com/v1beta``), as google-genai's
Developer-API converters read and write it: ``POST models/{model}:predictLongRunning`` with ``{instances:
[{prompt, image?: {bytesBase64Encoded, mimeType}, lastFrame?: {...}}], parameters: {aspectRatio,
resolution, durationSeconds, negativePrompt?}}`` answers a google.longrunning Operation ``{name:
"models/{model}/operations/{id}"}``, the handle. ``GET {name}`` gives the operation again: no ``done``
(proto3 leaves false out) and no progress while it runs; then ``done: true`` with either ``error:
{code, message}`` (a google.rpc.Status) or ``response.generateVideoResponse`` holding
``generatedSamples[].video.uri``, or no samples and ``raiMediaFilteredCount`` /
``raiMediaFilteredReasons`` when the safety filters withheld the video: a refusal, reported by `poll`
as ``VideoStatus(state="failed", refused=True)`` with Google's reasons. The video's ``uri`` is a Gemini
API file (``.../files/{id}:download?alt=media``) that takes the key and redirects to storage; files are
kept about two days, after which it answers 403/404/410 and `download` raises `ResultExpired`.

Auth (``x-goog-api-key``), Google's error bodies and the model list are the chat adapter's, reused. The
Gemini API has no cancel for these operations, so `cancel` says False without a call.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import httpx

from mmstudio.errors import ProviderError, ProviderProtocolError, ResultExpired, redact
from mmstudio.providers._http import HTTPAdapter, raise_protocol
from mmstudio.providers.base import Capabilities, EndpointConfig, ProbeResult, RemoteModel
from mmstudio.providers.gemini import GeminiAdapter, google_error
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.gemini_media import _deep_merge
from mmstudio.providers.media.video_base import VideoCapabilities, VideoRequest, VideoStatus
from mmstudio.providers.media.video_download import checked_video

_VEO_3_1 = VideoCapabilities(
    durations=(4, 6, 8),
    aspect_ratios=("16:9", "9:16"),
    resolutions=("720p", "1080p"),
    image_to_video=True,
    end_frame=True,  # ``lastFrame``: interpolation between a first and a last frame (Veo 3.1 only)
    seed=False,  # google-genai's Gemini-API converter rejects `seed` ("not supported in Gemini API")
    negative_prompt=True,
    price_per_second_usd=0.40,  # with audio, which Veo 3.1 always makes
    poll_interval_s=10.0,  # Google's own samples poll every 10 s
    typical_seconds=90.0,
    key_env="GEMINI_API_KEY",
)

VEO_VIDEO_MODELS: dict[str, VideoCapabilities] = {
    "veo-3.1-generate-preview": _VEO_3_1,
    "veo-3.1-fast-generate-preview": VideoCapabilities(
        durations=_VEO_3_1.durations,
        aspect_ratios=_VEO_3_1.aspect_ratios,
        resolutions=_VEO_3_1.resolutions,
        image_to_video=True,
        end_frame=True,
        seed=False,
        negative_prompt=True,
        price_per_second_usd=0.15,
        poll_interval_s=10.0,
        typical_seconds=45.0,
        key_env="GEMINI_API_KEY",
    ),
}

# An operation name as the Gemini API makes it; anything else is not a handle of ours.
_OPERATION = re.compile(r"models/[A-Za-z0-9._-]+/operations/[A-Za-z0-9._-]+")
# Words of a failed operation's error that mean the content policy stopped it (not a broken job).
_REFUSAL = re.compile(r"usage guidelines|safety|responsible ai|\brai\b|prohibited|sensitive", re.IGNORECASE)
_GOOGLE_API_HOST = "generativelanguage.googleapis.com"
_EXPIRED = (403, 404, 410)
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _image(image: InputImage) -> dict[str, str]:
    return {"bytesBase64Encoded": base64.b64encode(image.data).decode("ascii"), "mimeType": image.media_type}


class VeoVideoAdapter(HTTPAdapter):
    """Veo on the Gemini API; `config.base_url` ends in ``/v1beta``; the key goes in ``x-goog-api-key``."""

    protocol: ClassVar[str] = "gemini_video"
    capabilities: ClassVar[dict[str, VideoCapabilities]] = VEO_VIDEO_MODELS

    def __init__(self, config: EndpointConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config, client)
        self._gemini = GeminiAdapter(config, client)  # auth, error mapping and the model list

    def headers(self) -> dict[str, str]:
        return self._gemini.headers()

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        return self._gemini.error_from_response(status, body, headers, model)

    @property
    def label(self) -> str:
        return self.config.provider or "gemini"

    # -- submit --------------------------------------------------------------------------------

    def build_body(self, request: VideoRequest) -> dict[str, Any]:
        """The predictLongRunning body; `extra` is merged in last (``{"parameters": {...}}``)."""
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.start_image is not None:
            instance["image"] = _image(request.start_image)
        if request.end_image is not None:
            instance["lastFrame"] = _image(request.end_image)
        parameters: dict[str, Any] = {}
        if request.aspect_ratio is not None:
            parameters["aspectRatio"] = request.aspect_ratio
        if request.resolution is not None:
            parameters["resolution"] = request.resolution
        if request.duration_s is not None:
            parameters["durationSeconds"] = request.duration_s
        if request.negative_prompt:
            parameters["negativePrompt"] = request.negative_prompt
        # No `seed`: the Gemini API's Veo takes none (the capability says so, so it arrives as None).
        body: dict[str, Any] = {"instances": [instance], "parameters": parameters}
        return _deep_merge(body, request.extra) if request.extra else body

    async def submit(self, request: VideoRequest) -> str:
        model = request.model.removeprefix("models/")
        data = await self.request_json(
            "POST",
            f"models/{model}:predictLongRunning",
            model=request.model,
            json_body=self.build_body(request),
        )
        operation = self._operation(data, request.model)
        name = operation.get("name")
        if not isinstance(name, str) or not _OPERATION.fullmatch(name):
            raise_protocol(
                self.config, f"sent an operation without a valid `name`: {str(name)[:100]!r}", model
            )
        return name

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, handle: str, model: str) -> VideoStatus:
        data = await self.request_json("GET", self._check_handle(handle, model), model=model)
        return self.parse_operation(self._operation(data, model), model)

    def _check_handle(self, handle: str, model: str) -> str:
        if not _OPERATION.fullmatch(handle):
            raise ProviderProtocolError(
                f"{self.label}: {handle[:100]!r} is not a Veo operation name",
                provider=self.config.provider,
                model=model,
            )
        return handle

    def _operation(self, data: Any, model: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise_protocol(self.config, "sent an operation that is not an object", model)
        if "error" in data and "name" not in data and "done" not in data:  # a 200 with Google's error
            raise google_error(None, data, {}, self.config, model)
        return data

    def parse_operation(self, operation: Mapping[str, Any], model: str) -> VideoStatus:
        """An Operation as our status; a shape we cannot read is `ProviderProtocolError`."""
        done = operation.get("done", False)
        if not isinstance(done, bool):
            raise_protocol(self.config, f"sent an operation whose `done` is {done!r}", model)
        info: dict[str, Any] = {}
        if isinstance(name := operation.get("name"), str):
            info["operation"] = name
        if isinstance(metadata := operation.get("metadata"), dict):
            info["metadata"] = metadata
        if not done:
            return VideoStatus(state="running", info=info)
        error = operation.get("error")
        if error is not None:
            return self._failed(error, info, model)
        response = operation.get("response")
        result = response.get("generateVideoResponse") if isinstance(response, dict) else None
        if not isinstance(result, dict):
            raise_protocol(self.config, "sent a finished operation without a generateVideoResponse", model)
        samples = result.get("generatedSamples") or []
        if not isinstance(samples, list):
            raise_protocol(self.config, "sent generatedSamples that are not a list", model)
        uris: list[str] = []
        for sample in samples:
            video = sample.get("video") if isinstance(sample, dict) else None
            uri = video.get("uri") if isinstance(video, dict) else None
            if not isinstance(uri, str) or not uri:
                raise_protocol(self.config, "sent a generated sample without a video uri", model)
            uris.append(uri)
        filtered = result.get("raiMediaFilteredCount")
        reasons = [str(r) for r in result.get("raiMediaFilteredReasons") or () if r]
        if isinstance(filtered, int) and filtered:
            info["rai_media_filtered_count"] = filtered
        if reasons:
            info["rai_media_filtered_reasons"] = reasons
        if not uris:
            if not reasons and not filtered:
                raise_protocol(self.config, "sent a finished operation with no video and no reason", model)
            why = "; ".join(reasons) or f"{filtered} video(s) withheld by the safety filters"
            return VideoStatus(
                state="failed", error=redact(why, self.config.secrets), refused=True, info=info
            )
        info["uris"] = uris
        return VideoStatus(state="succeeded", progress=100.0, result_url=uris[0], info=info)

    def _failed(self, error: Any, info: dict[str, Any], model: str) -> VideoStatus:
        if not isinstance(error, dict):
            raise_protocol(self.config, f"sent an operation error that is not an object: {error!r}", model)
        message = str(error.get("message") or "no reason given")
        code = error.get("code")
        if code is not None:
            info["error_code"] = code
        text = f"{message} [code {code}]" if code is not None else message
        return VideoStatus(
            state="failed",
            error=redact(text, self.config.secrets),
            refused=bool(_REFUSAL.search(message)),
            info=info,
        )

    # -- download ------------------------------------------------------------------------------

    async def download(self, handle: str, status: VideoStatus, model: str) -> AsyncIterator[bytes]:
        """The MP4 behind the sample's uri, streamed. Redirects are followed here, not by httpx, so the
        key goes only to the uri's own origin (httpx would carry ``x-goog-api-key`` to the storage host).
        403, 404 or 410 from the file means it is gone: `ResultExpired`."""
        url = status.result_url
        if url is None:  # a status from before a restart without the uri: ask the operation again
            url = (await self.poll(handle, model)).result_url
            if url is None:
                raise_protocol(self.config, f"has no finished video for {handle}", model)
        first = _origin(url)
        keyed = first == _origin(self.config.base_url) or urlsplit(url).hostname == _GOOGLE_API_HOST
        response: httpx.Response | None = None
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                headers = self.headers() if keyed and _origin(url) == first else dict(self.config.headers)
                request = self.client.build_request("GET", url, headers=headers, timeout=self.timeout())
                with self.transport_errors(model):
                    response = await self.client.send(request, stream=True, follow_redirects=False)
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or not location:
                    break
                await response.aclose()
                url = urljoin(url, location)
            else:
                raise_protocol(
                    self.config, f"redirected the video download more than {_MAX_REDIRECTS} times", model
                )
            assert response is not None
            if response.status_code >= 400:
                with self.transport_errors(model):
                    body = await response.aread()
                if response.status_code in _EXPIRED:
                    detail = self.error_from_response(response.status_code, body, response.headers, model)
                    raise ResultExpired(
                        f"{self.label} no longer has the video of {handle}: {detail.message}",
                        provider=self.config.provider,
                        model=model,
                        status=response.status_code,
                    )
                raise self.error_from_response(response.status_code, body, response.headers, model)
            async for chunk in checked_video(
                self, response, model, label=self.label, empty=f"sent an empty video for {handle}"
            ):
                yield chunk
        finally:
            if response is not None:
                await response.aclose()

    # -- cancel, models, health ----------------------------------------------------------------

    async def cancel(self, handle: str, model: str) -> bool:
        """The Gemini API offers no cancel for Veo operations (only get): the result is discarded."""
        self._check_handle(handle, model)
        return False

    async def list_models(self) -> list[RemoteModel]:
        """The listed models that make videos (``predictLongRunning`` Veo models)."""
        found: list[RemoteModel] = []
        for model in await self._gemini.list_models():
            methods = model.details.get("supportedGenerationMethods") or ()
            if not model.id.startswith("veo") or "predictLongRunning" not in methods:
                continue
            caps = VEO_VIDEO_MODELS.get(model.id, VideoCapabilities())
            details = {**model.details, "video": True, "image_to_video": caps.image_to_video}
            found.append(
                RemoteModel(
                    id=model.id,
                    owned_by=model.owned_by,
                    capabilities=Capabilities(streaming=False, vision=caps.image_to_video),
                    details=details,
                )
            )
        return found

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models?pageSize=1")


__all__ = ["VEO_VIDEO_MODELS", "VeoVideoAdapter"]
