"""Gemini image adapter: images from ``generateContent`` on the ``gemini-*-image`` models, and their data.

The wire protocol is the chat one (`providers/gemini.py`) with ``responseModalities: ["TEXT","IMAGE"]``:
reference photos go up as ``inlineData`` parts, images come back as ``inlineData`` parts beside any
text. Auth, Google's error bodies, the model list and the block checks are the chat adapter's, reused,
so the two can never disagree about what a Gemini error means.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httpx

from mmstudio.errors import ProviderError, ProviderProtocolError, redact
from mmstudio.providers._http import HTTPAdapter, raise_protocol
from mmstudio.providers.base import Capabilities, EndpointConfig, ProbeResult, RemoteModel
from mmstudio.providers.gemini import _FILTERED, GeminiAdapter, _check_feedback, _filtered, google_error
from mmstudio.providers.media.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageProgress,
    ImageRequest,
    ImageResult,
    ProgressCallback,
    decode_image_b64,
)

_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

_FLASH_IMAGE = ImageCapabilities(
    supports_references=True,
    supports_edit=True,
    aspect_ratios=_ASPECT_RATIOS,
    max_n=4,
    max_references=3,
    output_formats=("png",),
    key_env="GEMINI_API_KEY",
)

GEMINI_IMAGE_MODELS: dict[str, ImageCapabilities] = {
    "gemini-2.5-flash-image": _FLASH_IMAGE,
    "gemini-3-pro-image-preview": replace(_FLASH_IMAGE, max_references=14),
}

# What the chat adapter treats as withheld content, plus the image models' own "declined to draw"
# reasons: for an image request they are refusals too, not a broken answer.
_BLOCKED = _FILTERED | frozenset({"NO_IMAGE", "IMAGE_OTHER"})
_TEXT_SHOWN = 500  # of the model's text in a "no image" error


@dataclass
class _Answer:
    """What one generateContent call gave: the images, the model's words, and its bookkeeping."""

    images: list[GeneratedImage] = field(default_factory=list)
    text: str = ""
    usage: Mapping[str, Any] | None = None
    model_version: str | None = None
    response_id: str | None = None


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    # So extra={"generationConfig": {"imageConfig": {"imageSize": "2K"}}} adds to our aspectRatio.
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        out[key] = (
            _deep_merge(current, value) if isinstance(current, dict) and isinstance(value, Mapping) else value
        )
    return out


def _sum_usage(usages: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """One usage object for several calls: token counts added, anything else from the first call."""
    if not usages:
        return None
    if len(usages) == 1:
        return usages[0]
    total = dict(usages[0])
    for usage in usages[1:]:
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                previous = total.get(key)
                total[key] = (previous if isinstance(previous, int) else 0) + value
    return total


class GeminiImagesAdapter(HTTPAdapter):
    """Gemini's image models (``generativelanguage.googleapis.com/v1beta``), key in ``x-goog-api-key``.

    The API makes one image per call, so ``n > 1`` is that many calls, made one after another: a
    quota error or a refusal stops the run before more paid calls are spent, and the progress
    callback gets a real percent after each image.
    """

    protocol: ClassVar[str] = "gemini_images"
    capabilities: ClassVar[dict[str, ImageCapabilities]] = GEMINI_IMAGE_MODELS

    def __init__(self, config: EndpointConfig, client: httpx.AsyncClient) -> None:
        super().__init__(config, client)
        # The chat adapter over the same config and client: its auth header, error mapping and
        # paginated model list are exactly what this protocol needs.
        self._gemini = GeminiAdapter(config, client)

    def headers(self) -> dict[str, str]:
        return self._gemini.headers()

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        return self._gemini.error_from_response(status, body, headers, model)

    @property
    def _label(self) -> str:
        return self.config.provider or "gemini"

    # -- generation ----------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> ImageResult:
        body = self.build_body(request)
        path = f"models/{request.model.removeprefix('models/')}:generateContent"
        wanted = max(1, request.n)
        answers: list[_Answer] = []
        images: list[GeneratedImage] = []
        for _ in range(wanted):
            data = await self.request_json("POST", path, model=request.model, json_body=body)
            answer = await asyncio.to_thread(self._parse, data, request.model)  # base64: off the loop
            answers.append(answer)
            images.extend(answer.images)
            if progress is not None:
                await progress(ImageProgress(percent=min(100.0, 100.0 * len(images) / wanted)))
            if len(images) >= wanted:  # a call that returned several images counts for all of them
                break
        info: dict[str, Any] = {"response_ids": [a.response_id for a in answers if a.response_id]}
        versions = [a.model_version for a in answers if a.model_version]
        if versions:
            info["model_version"] = versions[-1]
        return ImageResult(
            images=tuple(images[:wanted]),
            usage=_sum_usage([a.usage for a in answers if a.usage is not None]),
            info=info,
            text="\n\n".join(a.text for a in answers if a.text),
        )

    def build_body(self, request: ImageRequest) -> dict[str, Any]:
        """The generateContent body for `request`: the prompt, then each reference as ``inlineData``."""
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        for reference in request.references:
            data = base64.b64encode(reference.data).decode("ascii")
            parts.append({"inlineData": {"mimeType": reference.media_type, "data": data}})
        generation: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
        if request.aspect_ratio:
            generation["imageConfig"] = {"aspectRatio": request.aspect_ratio}
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": generation,
        }
        return _deep_merge(body, request.extra) if request.extra else body

    def _parse(self, data: Any, model: str) -> _Answer:
        if not isinstance(data, dict):
            raise_protocol(self.config, "sent a response that is not an object", model)
        if "error" in data:  # a 200 carrying Google's error object
            raise google_error(None, data, {}, self.config, model)
        feedback = data.get("promptFeedback")
        if feedback is not None and not isinstance(feedback, dict):
            raise_protocol(self.config, "sent a promptFeedback that is not an object", model)
        _check_feedback(data, self.config, model)  # a blocked prompt: ContentFiltered with its reason
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
            raise_protocol(self.config, "sent a response without candidates", model)
        candidate: dict[str, Any] = candidates[0]
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        answer = _Answer(
            usage=meta if isinstance(meta := data.get("usageMetadata"), dict) else None,
            model_version=str(data["modelVersion"]) if data.get("modelVersion") else None,
            response_id=str(data["responseId"]) if data.get("responseId") else None,
        )
        texts: list[str] = []
        for part in parts if isinstance(parts, list) else ():
            # Thought parts (Gemini 3's interim sketches and reasoning) are not the answer.
            if not isinstance(part, dict) or part.get("thought"):
                continue
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
            inline = part.get("inlineData")
            if isinstance(inline, dict):
                # The media type is sniffed from the bytes: a stored file must match what it holds.
                answer.images.append(decode_image_b64(inline.get("data"), provider=self._label, model=model))
        answer.text = "".join(texts)
        reason = str(candidate.get("finishReason") or "")
        if reason in _BLOCKED:
            raise _filtered(
                self.config, model, f"finishReason {reason}", candidate.get("finishMessage") or answer.text
            )
        if not answer.images:
            # A plain text answer ("I can't draw that", or a question back): nothing to save. Not a
            # block the vendor declared, so not ContentFiltered; the text says what happened.
            why = "" if reason in ("", "STOP") else f" (finishReason {reason})"
            said = redact(answer.text.strip()[:_TEXT_SHOWN], self.config.secrets) or "(no text either)"
            raise ProviderProtocolError(
                f"{self._label} returned no image{why}: {said}", provider=self.config.provider, model=model
            )
        return answer

    # -- models and health ---------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        """The listed models that make images through generateContent (Imagen's ``predict`` models,
        whose names contain "image" too, speak another protocol and are left out)."""
        found: list[RemoteModel] = []
        for model in await self._gemini.list_models():
            methods = model.details.get("supportedGenerationMethods") or ()
            if "image" not in model.id or "generateContent" not in methods:
                continue
            caps = GEMINI_IMAGE_MODELS.get(model.id, ImageCapabilities())
            capabilities = Capabilities(
                streaming=False, vision=True, reference_images=caps.supports_references
            )
            found.append(
                RemoteModel(
                    id=model.id, owned_by=model.owned_by, capabilities=capabilities, details=model.details
                )
            )
        return found

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models?pageSize=1")


__all__ = ["GEMINI_IMAGE_MODELS", "GeminiImagesAdapter"]
