"""OpenAI Images adapter (``/v1/images/generations`` JSON, ``/v1/images/edits`` multipart) and its model data.

GPT-image models always answer base64 (``b64_json``), so ``response_format`` is never sent to them (the
API refuses it); only the dall-e models, which answer a URL by default, are asked for base64. Errors are
OpenAI's ``{"error": {"message", "type", "param", "code"}}``, mapped by the chat adapter's
`payload_error`; a refusal of the safety system (``code: moderation_blocked``, HTTP 400) is
`ContentFiltered` with OpenAI's own words. `OpenAIImagesAdapter` is also the base of the xAI adapter
(`xai_media.py`): the response shape, auth and the model list are shared, only the request bodies and
the refusal phrasing differ.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from mmstudio.errors import ContentFiltered, InvalidRequest, ProviderError, redact
from mmstudio.providers._http import HTTPAdapter, raise_protocol
from mmstudio.providers.base import Capabilities, ProbeResult, RemoteModel
from mmstudio.providers.media.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageProgress,
    ImageRequest,
    ImageResult,
    InputImage,
    ProgressCallback,
    decode_image_b64,
)
from mmstudio.providers.openai_compat import _error_fields, payload_error

_GPT_IMAGE = ImageCapabilities(
    supports_references=True,
    supports_input_fidelity=True,
    supports_edit=True,
    supports_mask=True,
    supports_moderation=True,
    sizes=("1024x1024", "1536x1024", "1024x1536"),
    qualities=("low", "medium", "high"),
    max_n=10,
    max_references=16,
    output_formats=("png", "jpeg", "webp"),
    key_env="OPENAI_API_KEY",
)

OPENAI_IMAGE_MODELS: dict[str, ImageCapabilities] = {
    "gpt-image-1": _GPT_IMAGE,
    "gpt-image-1-mini": replace(_GPT_IMAGE, supports_input_fidelity=False),
    "gpt-image-1.5": _GPT_IMAGE,
}

# Listed models that make images, by id prefix.
_IMAGE_MODEL_PREFIXES = ("gpt-image", "dall-e")
# Models that answer a URL unless asked for base64; GPT-image models refuse the field altogether.
_URL_BY_DEFAULT_PREFIXES = ("dall-e",)
# OpenAI's refusals: the images API's `moderation_blocked` ("rejected by the safety system"), dall-e's
# `content_policy_violation`. Matched against "code type message", lowercased.
_OPENAI_REFUSAL = re.compile(r"moderation_blocked|content_policy|safety system|safety_violations")
# What the response says about the images beyond the images themselves.
_INFO_KEYS = ("created", "size", "quality", "output_format", "background")


def data_url(image: InputImage) -> str:
    """`image` as a ``data:`` URI, the way JSON image APIs take inline images."""
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def _form_value(value: Any) -> str:
    """A form field's text: booleans and objects as JSON (what the API parses), the rest as str."""
    if isinstance(value, bool | dict | list):
        return json.dumps(value)
    return str(value)


class OpenAIImagesAdapter(HTTPAdapter):
    """OpenAI's Images API; `config.base_url` ends in ``/v1``; the key goes as a Bearer token.

    The call is synchronous: `progress` is told 100% once, after the images arrived.
    """

    protocol: ClassVar[str] = "openai_images"
    capabilities: ClassVar[dict[str, ImageCapabilities]] = OPENAI_IMAGE_MODELS
    image_model_prefixes: ClassVar[tuple[str, ...]] = _IMAGE_MODEL_PREFIXES
    refusal: ClassVar[re.Pattern[str]] = _OPENAI_REFUSAL
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
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")[:500] or f"HTTP {status} with an empty body"
        message, code, etype = _error_fields(payload)
        lowered = f"{code} {etype} {message}".lower()
        # A key error mentions "api key"; it must stay an AuthenticationError whatever else it says.
        if 400 <= status < 500 and "api key" not in lowered and self.refusal.search(lowered):
            return ContentFiltered(
                f"{self.label} refused the request: {redact(message, self.config.secrets)}",
                provider=self.config.provider,
                model=model,
                status=status,
            )
        return payload_error(self.config, status, payload, model, headers)

    # -- generation ----------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> ImageResult:
        self.check_request(request)
        if request.references or request.mask is not None:
            data = await self.edit(request)
        else:
            body = self.generation_body(request)
            data = await self.request_json("POST", "images/generations", model=request.model, json_body=body)
        # Decoding megabytes of base64 takes milliseconds: in a worker thread, never on the event loop.
        result = await asyncio.to_thread(self.parse_result, data, request.model)
        if progress is not None:
            await progress(ImageProgress(percent=100.0))
        return result

    def check_request(self, request: ImageRequest) -> None:
        """Refuse what the model's data says it cannot take, before uploading anything."""
        if request.mask is not None and not request.references:
            raise InvalidRequest("a mask needs an image to edit (a reference)", field="mask")
        caps = self.capabilities.get(request.model)
        if caps is not None and len(request.references) > caps.max_references:
            raise InvalidRequest(
                f"{request.model} takes at most {caps.max_references} reference images, "
                f"not {len(request.references)}",
                field="references",
            )

    def generation_body(self, request: ImageRequest) -> dict[str, Any]:
        """The generations JSON body; `extra` (e.g. ``background``, ``output_compression``) goes last."""
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": max(1, request.n)}
        for name in ("size", "quality", "output_format", "moderation"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.model.startswith(_URL_BY_DEFAULT_PREFIXES):
            body["response_format"] = "b64_json"
        body.update(request.extra)
        return body

    def edit_form(self, request: ImageRequest) -> dict[str, str]:
        """The edits form's text fields; `input_fidelity` only when the request sets it (the models
        without it refuse the field), and no `moderation` (the edits endpoint does not take it)."""
        form: dict[str, str] = {"model": request.model, "prompt": request.prompt, "n": str(max(1, request.n))}
        for name in ("size", "quality", "output_format", "input_fidelity"):
            value = getattr(request, name)
            if value is not None:
                form[name] = str(value)
        if request.model.startswith(_URL_BY_DEFAULT_PREFIXES):
            form["response_format"] = "b64_json"
        form.update({key: _form_value(value) for key, value in request.extra.items() if value is not None})
        return form

    async def edit(self, request: ImageRequest) -> Any:
        files = [("image[]", (image.name, image.data, image.media_type)) for image in request.references]
        if request.mask is not None:
            mask = request.mask
            files.append(("mask", (mask.name, mask.data, mask.media_type)))
        return await self.request_multipart(
            "images/edits", data=self.edit_form(request), files=files, model=request.model
        )

    def parse_result(self, data: Any, model: str) -> ImageResult:
        """``{created, data: [{b64_json, revised_prompt?}], usage?, ...}`` as our result."""
        if not isinstance(data, dict):
            raise_protocol(self.config, "sent a response that is not an object", model)
        items = data.get("data")
        if not isinstance(items, list) or not items:
            raise_protocol(self.config, "sent a response without images (empty `data`)", model)
        images: list[GeneratedImage] = []
        withheld = 0
        for item in items:
            if not isinstance(item, dict):
                raise_protocol(self.config, "sent an image entry that is not an object", model)
            if item.get("respect_moderation") is False:  # xAI withholds a flagged image this way
                withheld += 1
                continue
            image = decode_image_b64(item.get("b64_json"), provider=self.label, model=model)
            revised = item.get("revised_prompt")
            if isinstance(revised, str) and revised:
                image = replace(image, revised_prompt=revised)
            images.append(image)
        if not images:
            raise ContentFiltered(
                f"{self.label} withheld every image ({withheld}) for breaking its moderation rules",
                provider=self.config.provider,
                model=model,
            )
        info: dict[str, Any] = {key: data[key] for key in _INFO_KEYS if data.get(key) is not None}
        if withheld:
            info["withheld"] = withheld
        usage = data.get("usage")
        return ImageResult(images=tuple(images), usage=usage if isinstance(usage, dict) else None, info=info)

    # -- models and health ---------------------------------------------------------------------

    def is_image_model(self, model_id: str) -> bool:
        return model_id.startswith(self.image_model_prefixes)

    async def list_models(self) -> list[RemoteModel]:
        """The listed models that make images, marked with what their data says they take."""
        data = await self.request_json("GET", "models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise_protocol(self.config, "sent a model list without `data`")
        models: list[RemoteModel] = []
        for entry in entries:
            model_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(model_id, str) or not self.is_image_model(model_id):
                continue
            caps = self.capabilities.get(model_id, ImageCapabilities())
            capabilities = Capabilities(
                streaming=False,
                vision=caps.supports_references,
                reference_images=caps.supports_references,
                input_fidelity=caps.supports_input_fidelity,
            )
            owner = entry.get("owned_by")
            details = {k: v for k, v in entry.items() if k not in ("id", "object")}
            models.append(
                RemoteModel(model_id, owner if isinstance(owner, str) else None, capabilities, details)
            )
        return models

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models")


__all__ = ["OPENAI_IMAGE_MODELS", "OpenAIImagesAdapter", "data_url"]
