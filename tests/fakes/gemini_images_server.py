"""A fake Gemini API for the image models (``gemini-*-image``): generateContent with real Pillow images.

It is `FakeGeminiServer` (same ``/v1beta`` routes, key check, model list and Google error bodies)
with ``POST /v1beta/models/{model}:generateContent`` answered the way the image models answer:

    {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Here you go"},
        {"inlineData": {"mimeType": "image/png", "data": "<base64 PNG>"}}]},
      "finishReason": "STOP", "index": 0}],
     "usageMetadata": {...}, "modelVersion": "...", "responseId": "..."}

The image is a real one-colour picture made with Pillow, a sixteenth of the size the real model
makes for the request's ``generationConfig.imageConfig.aspectRatio`` (``16:9`` → 84x48, default
``1:1`` → 64x64), in a new colour for every image, so tests can tell images and ratios apart.

Requests are checked like the real API checks them: unknown field names (camelCase or snake_case,
as proto JSON accepts both; google-genai sends ``inlineData`` with a snake_case ``mime_type``) at the
top level, in ``generationConfig`` or ``imageConfig`` are 400 INVALID_ARGUMENT "Unknown name"; an
``inlineData`` whose ``data`` is not base64 (standard or URL-safe) is 400; an aspect ratio the
models do not offer is 400; asking a model without "image" in its name for IMAGE output is 400.
Other methods and models fall through to `FakeGeminiServer` (chat, streaming).

Script with `GeminiImageReply` (a `Reply`): `text` (default "Here you go"; "" sends no text part);
`images` (how many image parts, default 1; 0 is a text-only answer); `image_format` (a Pillow format,
default PNG); `size` (``(w, h)`` instead of the ratio's); `image_data` (sent verbatim as every image's
``data``, e.g. text that is not base64); `finish_reason` (``IMAGE_SAFETY``, ``PROHIBITED_CONTENT``,
``NO_IMAGE``...: no image parts are sent for anything but STOP/MAX_TOKENS); `finish_message`;
`block_reason` (``promptFeedback.blockReason``, no candidates); `thought_image` (first a
``thought: true`` interim 8x8 image, as Gemini 3 Pro Image sends); `usage`; `model_version`. The `Reply`
knobs work as in every fake: `status` + `error_body` (None renders `google_error_body(status)`; 429
carries ``RetryInfo`` 30s), `raw`, `headers`, `delay` (ends early once the client hangs up) and
`drop_after` (half the body, then the connection is cut).

`generate_bodies()` returns the JSON body of every generateContent request, for assertions.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.base import Reply
from tests.fakes.gemini_server import FakeGeminiServer, google_error_body
from tests.fakes.images import make_image

IMAGE_MODELS = ["gemini-2.5-flash-image", "gemini-3-pro-image-preview"]
DEFAULT_MODELS = [*IMAGE_MODELS, "gemini-2.5-flash", "imagen-4.0-generate-001"]

# What the real models make for each ratio (gemini-2.5-flash-image), divided by 16 to keep tests fast.
RATIO_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (64, 64),
    "2:3": (52, 78),
    "3:2": (78, 52),
    "3:4": (54, 74),
    "4:3": (74, 54),
    "4:5": (56, 72),
    "5:4": (72, 56),
    "9:16": (48, 84),
    "16:9": (84, 48),
    "21:9": (96, 42),
}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# GenerateContentRequest / GenerationConfig / ImageConfig field names (v1beta), camelCase.
_REQUEST_FIELDS = frozenset(
    {"model", "contents", "tools", "toolConfig", "safetySettings", "systemInstruction"}
    | {"generationConfig", "cachedContent"}
)
_GENERATION_FIELDS = frozenset(
    {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema"}
    | {"responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed"}
    | {"presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers"}
    | {"speechConfig", "thinkingConfig", "imageConfig", "mediaResolution"}
)
_IMAGE_CONFIG_FIELDS = frozenset({"aspectRatio", "imageSize"})
_IMAGE_FINISHES = ("STOP", "MAX_TOKENS")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _get(obj: dict[str, Any], camel: str) -> Any:
    """A field by its camelCase or snake_case name: the real API's JSON parser takes either."""
    return obj[camel] if camel in obj else obj.get(_snake(camel))


@dataclass
class GeminiImageReply(Reply):
    """A `Reply` with the image knobs described in the module docstring."""

    text: str = "Here you go"
    usage: tuple[int, int] | None = (12, 1290)
    images: int = 1
    image_format: str = "PNG"
    size: tuple[int, int] | None = None
    image_data: str | None = None
    finish_message: str | None = None
    block_reason: str | None = None
    thought_image: bool = False
    model_version: str | None = None


class _Invalid(Exception):
    """A request the real API would answer with 400 INVALID_ARGUMENT; the message is Google's."""


class FakeGeminiImagesServer(FakeGeminiServer):
    """The Gemini API's image generateContent on top of the chat fake (module docstring)."""

    name = "gemini-images"

    def __init__(
        self,
        default: Reply | None = None,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        max_page_size: int = 50,
    ) -> None:
        super().__init__(
            default or GeminiImageReply(),
            models=list(models) if models is not None else list(DEFAULT_MODELS),
            api_key=api_key,
            max_page_size=max_page_size,
        )
        self._colors = itertools.count()
        self._responses = itertools.count(1)

    def generate_bodies(self) -> list[Any]:
        """The JSON body of every generateContent request so far."""
        return [r.json() for r in self.requests if r.method == "POST" and r.path.endswith(":generateContent")]

    def model_info(self, model: str) -> dict[str, Any]:
        info = super().model_info(model)
        if model.startswith("imagen"):  # Imagen speaks :predict, not generateContent
            info.update(supportedGenerationMethods=["predict"], inputTokenLimit=480, outputTokenLimit=8192)
        elif "image" in model:
            info.update(inputTokenLimit=32768, outputTokenLimit=32768, thinking="pro" in model)
        return info

    # -- the image route -----------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        model, _, method = request.path_params["target"].partition(":")
        body = await self._body(request)
        wants_image = isinstance(body, dict) and "IMAGE" in self._modalities(body)
        if method != "generateContent" or ("image" not in model and not wants_image):
            return await super().generate(request)  # chat and streaming, as the chat fake answers them
        await self.record(request)
        if (failure := self._auth_failure(request)) is not None:
            return failure
        with self._lock:
            scripted = bool(self._script)
        if model not in self.models and not scripted:
            return self._not_found(model)
        try:
            config = self._validate(body, model)
        except _Invalid as exc:
            return JSONResponse(google_error_body(400, str(exc)), status_code=400)
        reply = self.next_reply()
        await self._pause_unless_gone(request, reply.delay)
        if reply.raw is not None or reply.status >= 400:
            error = reply.error_body if reply.error_body is not None else google_error_body(reply.status)
            return self.json_response(error, reply)
        references = sum(
            1
            for c in _get(body, "contents")
            for p in _get(c, "parts")
            if isinstance(p, dict) and _get(p, "inlineData")
        )
        return self.json_response(self.render(reply, model, config, references), reply)

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            return None

    @staticmethod
    def _modalities(body: dict[str, Any]) -> list[str]:
        generation = _get(body, "generationConfig")
        found = _get(generation, "responseModalities") if isinstance(generation, dict) else None
        return [str(m).upper() for m in found] if isinstance(found, list) else []

    def _validate(self, body: Any, model: str) -> dict[str, Any]:
        """Check `body` as the real API would; return its imageConfig (possibly empty)."""
        if not isinstance(body, dict):
            raise _Invalid("Invalid JSON payload received. Expected an object.")
        _known(body, _REQUEST_FIELDS, "")
        contents = _get(body, "contents")
        if not isinstance(contents, list) or not contents:
            raise _Invalid("* GenerateContentRequest.contents: contents is not specified\n")
        for c_index, content in enumerate(contents):
            parts = _get(content, "parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not parts:
                raise _Invalid(
                    f"* GenerateContentRequest.contents[{c_index}].parts: contents.parts must not be empty.\n"
                )
            for p_index, part in enumerate(parts):
                inline = _get(part, "inlineData") if isinstance(part, dict) else None
                if inline is None:
                    continue
                where = f"contents[{c_index}].parts[{p_index}].inline_data"
                try:
                    decode_bytes(str(_get(inline, "data") or ""))
                except (binascii.Error, ValueError):
                    raise _Invalid(
                        f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed"
                    ) from None
                if not _get(inline, "mimeType"):
                    raise _Invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type is required.\n")
        generation = _get(body, "generationConfig") or {}
        _known(generation, _GENERATION_FIELDS, "generation_config")
        if "image" not in model and "IMAGE" in self._modalities(body):
            raise _Invalid("Model does not support the requested response modalities: image")
        image_config = _get(generation, "imageConfig") or {}
        _known(image_config, _IMAGE_CONFIG_FIELDS, "generation_config.image_config")
        ratio = _get(image_config, "aspectRatio")
        if ratio is not None and ratio not in RATIO_SIZES:
            raise _Invalid(f"Unsupported aspect ratio: {ratio}. Supported: {', '.join(RATIO_SIZES)}.")
        return dict(image_config)

    # -- rendering -----------------------------------------------------------------------------

    def render(
        self, reply: Reply, model: str, image_config: dict[str, Any], references: int
    ) -> dict[str, Any]:
        """The GenerateContentResponse for `reply`."""
        knobs = reply if isinstance(reply, GeminiImageReply) else GeminiImageReply(text=reply.text)
        response: dict[str, Any] = {
            "modelVersion": knobs.model_version or model,
            "responseId": f"fake-img-{next(self._responses):06d}",
        }
        made = 0
        if knobs.block_reason:
            response["promptFeedback"] = {"blockReason": knobs.block_reason}
        else:
            finish = reply.finish_reason or "STOP"
            parts: list[dict[str, Any]] = []
            if knobs.thought_image:
                parts.append({"inlineData": self._image(knobs, image_config, (8, 8)), "thought": True})
            if reply.text:
                parts.append({"text": reply.text})
            if finish in _IMAGE_FINISHES:
                for _ in range(knobs.images):
                    parts.append({"inlineData": self._image(knobs, image_config)})
                    made += 1
            candidate: dict[str, Any] = {"index": 0, "finishReason": finish}
            if parts:
                candidate = {"content": {"role": "model", "parts": parts}, **candidate}
            if knobs.finish_message:
                candidate["finishMessage"] = knobs.finish_message
            response["candidates"] = [candidate]
        if reply.usage is not None:
            prompt, output = reply.usage
            prompt += 258 * references  # what Gemini bills for each input image
            output = output * made if made else 0
            response["usageMetadata"] = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": output,
                "totalTokenCount": prompt + output,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
                **(
                    {"candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": output}]} if made else {}
                ),
            }
        return response

    def _image(
        self, knobs: GeminiImageReply, image_config: dict[str, Any], size: tuple[int, int] | None = None
    ) -> dict[str, str]:
        fmt = knobs.image_format.upper()
        mime = _MIME.get(fmt, f"image/{fmt.lower()}")
        if knobs.image_data is not None:
            return {"mimeType": mime, "data": knobs.image_data}
        width, height = (
            size or knobs.size or RATIO_SIZES.get(str(_get(image_config, "aspectRatio") or "1:1"), (64, 64))
        )
        index = next(self._colors)
        color = ((index * 67) % 256, (80 + index * 101) % 256, (160 + index * 37) % 256)
        data = make_image(width, height, fmt, color)
        return {"mimeType": mime, "data": base64.b64encode(data).decode("ascii")}


def decode_bytes(value: str) -> bytes:
    """A proto JSON ``bytes`` field: standard or URL-safe base64, as the real API takes (google-genai
    sends URL-safe, our adapter standard)."""
    alphabet = "-_" if ("-" in value or "_" in value) else None
    if alphabet is not None and ("+" in value or "/" in value):
        raise ValueError("mixed base64 alphabets")
    if alphabet:
        value = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def _known(obj: Any, fields: frozenset[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise _Invalid(f"Invalid value at '{where or 'request'}': expected an object.")
    allowed = fields | {_snake(f) for f in fields}
    for name in obj:
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise _Invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')
