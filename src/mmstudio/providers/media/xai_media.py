"""xAI image adapter (``grok-imagine-image``: ``/v1/images/generations`` and ``/v1/images/edits``, both JSON).

xAI's Images API looks like OpenAI's but differs where it matters: the picture's shape is an
``aspect_ratio`` (and ``resolution`` ``1k|2k``), never a ``size``; edits are JSON with the source
images as ``image: {url}`` (one) or ``images: [{url}, ...]`` (up to three), where a URL may be a
``data:`` URI; and the answer is a URL unless ``response_format: "b64_json"`` is asked for, which it
always is here. Errors are ``{"code": "<description>", "error": "<message>"}``; a bad key is HTTP 400
mentioning the key (the chat adapter's `payload_error` already knows that quirk); a refusal is a 400
saying the prompt or image was rejected or violates policy, or a 200 whose images carry
``respect_moderation: false``. Everything else (auth, the response, the model list) is
`OpenAIImagesAdapter`'s.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from mmstudio.errors import InvalidRequest
from mmstudio.providers.media.base import ImageCapabilities, ImageRequest
from mmstudio.providers.media.openai_images import OpenAIImagesAdapter, data_url

XAI_IMAGE_MODELS: dict[str, ImageCapabilities] = {
    "grok-imagine-image": ImageCapabilities(
        supports_references=True,
        supports_edit=True,
        aspect_ratios=("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"),
        max_n=10,
        max_references=3,  # xAI's multi-image editing takes up to three source images
        output_formats=("jpeg",),  # xAI picks the format; it sends JPEG
        key_env="XAI_API_KEY",
    ),
}

# Matched against "code message", lowercased; a key error ("Incorrect API key") is never a refusal.
_XAI_REFUSAL = re.compile(
    r"content[ _-]?(policy|moderation)|moderat|violat|safety|"
    r"(prompt|content|image|request)s? (was |were |has been |have been )?(rejected|blocked|flagged)"
)


class XAIImagesAdapter(OpenAIImagesAdapter):
    """xAI's Images API at ``https://api.x.ai/v1``; the key goes as a Bearer token."""

    protocol: ClassVar[str] = "xai_images"
    capabilities: ClassVar[dict[str, ImageCapabilities]] = XAI_IMAGE_MODELS
    image_model_prefixes: ClassVar[tuple[str, ...]] = ("grok-imagine-image", "grok-2-image")
    refusal: ClassVar[re.Pattern[str]] = _XAI_REFUSAL
    default_label: ClassVar[str] = "xai"

    def check_request(self, request: ImageRequest) -> None:
        if request.mask is not None:
            raise InvalidRequest(f"{request.model} does not take a mask", field="mask")
        super().check_request(request)

    def generation_body(self, request: ImageRequest) -> dict[str, Any]:
        """``{model, prompt, n, response_format, aspect_ratio?}``; `extra` (e.g. ``resolution``) last.
        The request's `size` is not sent: the API refuses the field."""
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "n": max(1, request.n),
            "response_format": "b64_json",
        }
        if request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        body.update(request.extra)
        return body

    async def edit(self, request: ImageRequest) -> Any:
        body = self.generation_body(request)
        sources = [{"url": data_url(image)} for image in request.references]
        if len(sources) == 1:
            body["image"] = sources[0]
        else:
            body["images"] = sources
        return await self.request_json("POST", "images/edits", model=request.model, json_body=body)


__all__ = ["XAI_IMAGE_MODELS", "XAIImagesAdapter"]
