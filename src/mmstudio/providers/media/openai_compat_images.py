"""Local OpenAI-compatible image servers (LocalAI, stable-diffusion.cpp's ``sd-server``): generations.

What these servers read of the OpenAI body, checked against their sources:

- LocalAI (``core/schema``, ``endpoints/openai/image.go``): ``model``, ``prompt``, ``n``, ``size``,
  ``response_format`` (``url`` by default: a link to ``/generated-images/<file>`` on itself, so
  ``b64_json`` is always asked for), plus its own ``seed`` and ``step``. Its image endpoint ignores the
  ``negative_prompt`` field (a negative prompt goes after a ``|`` in the prompt, which other servers
  would draw literally), so no negative prompt is sent.
- sd-server (``examples/server/routes_openai.cpp``): ``prompt``, ``n``, ``size``, ``output_format``; it
  always answers ``b64_json`` and ignores every other field.

A ``url`` answer is fetched with a GET, but only from the server's own host: any other host is refused
(the URL comes from the upstream, and following it anywhere would let it aim our requests at, say, a
cloud metadata address).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

from mmstudio.errors import ProviderError, ProviderProtocolError, redact
from mmstudio.providers._http import (
    HTTPAdapter,
    UpstreamResponse,
    error_for_status,
    parse_retry_after,
    raise_protocol,
)
from mmstudio.providers.base import ProbeResult, RemoteModel
from mmstudio.providers.media.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageRequest,
    ImageResult,
    ProgressCallback,
    decode_image_b64,
    sniff_image_type,
)

OPENAI_COMPAT_IMAGE_CAPABILITIES = ImageCapabilities(
    supports_seed=True,  # LocalAI's `seed`; sd-server ignores it
    supports_steps=True,  # LocalAI's `step`; sd-server ignores it
    sizes=("256x256", "512x512", "768x768", "1024x1024"),
    max_n=4,
    output_formats=("png",),
    key_env=None,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # a port that is not a number matches nothing
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _error_fields(body: bytes) -> tuple[str, str]:
    """(message, code) from LocalAI's ``{"error": {"code", "message", "type"}}``, sd-server's
    ``{"error": "..."}`` (with ``message`` on a 500), or a plain-text body."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:500] or "(no body)", ""
    if not isinstance(payload, dict):
        return str(payload)[:500], ""
    error = payload.get("error")
    if isinstance(error, dict):
        message = error.get("message") or json.dumps(error)[:500]
        return str(message), str(error.get("type") or "")
    message = payload.get("message")
    if isinstance(error, str) and error:
        return (f"{error}: {message}" if isinstance(message, str) and message else error), error
    if isinstance(message, str) and message:
        return message, ""
    detail = payload.get("detail")
    return (str(detail) if detail else json.dumps(payload)[:500]), ""


class OpenAICompatImagesAdapter(HTTPAdapter):
    """A local OpenAI-compatible images server; `config.base_url` ends in ``/v1``. A key, when set, is
    sent as a Bearer token (LocalAI's ``API_KEY``)."""

    protocol: ClassVar[str] = "openai_compat_images"
    capabilities: ClassVar[ImageCapabilities] = OPENAI_COMPAT_IMAGE_CAPABILITIES

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        headers.update(self.config.headers)
        return headers

    @property
    def _label(self) -> str:
        return self.config.provider or "openai_compat_images"

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        message, code = _error_fields(body)
        return error_for_status(
            status,
            message,
            config=self.config,
            model=model,
            code=code,
            retry_after=parse_retry_after(headers),
        )

    # -- generation ----------------------------------------------------------------------------

    def build_body(self, request: ImageRequest) -> dict[str, Any]:
        """The JSON body; `extra` passes through last (e.g. sd-server's ``output_format``)."""
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "n": max(1, request.n),
            "response_format": "b64_json",
        }
        if request.size:
            body["size"] = request.size
        if request.seed is not None:
            body["seed"] = request.seed
        if request.steps is not None:
            body["step"] = request.steps  # LocalAI's name for it
        body.update(request.extra)
        return body

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> ImageResult:
        # Synchronous, with no progress to report: `progress` is never called.
        data = await self.request_json(
            "POST", "images/generations", model=request.model, json_body=self.build_body(request)
        )
        if not isinstance(data, dict):
            raise_protocol(self.config, "sent a response that is not an object", request.model)
        items = data.get("data")
        if not isinstance(items, list) or not items:
            raise_protocol(self.config, "sent a response without images", request.model)
        images: list[GeneratedImage] = []
        for item in items:
            if not isinstance(item, dict):
                raise_protocol(self.config, "sent an image entry that is not an object", request.model)
            b64, url = item.get("b64_json"), item.get("url")
            inline = b64 if isinstance(b64, str) and b64 else url if isinstance(url, str) else ""
            if inline and (inline is b64 or inline.startswith("data:")):
                # Megabytes of base64: decoded in a worker thread, never on the event loop.
                image = await asyncio.to_thread(
                    decode_image_b64, inline, provider=self._label, model=request.model
                )
            elif isinstance(url, str) and url:
                image = await self._fetch(url, request.model)
            else:
                raise_protocol(
                    self.config, "sent an image entry with neither b64_json nor url", request.model
                )
            revised = item.get("revised_prompt")
            if isinstance(revised, str) and revised:
                image = GeneratedImage(image.data, image.media_type, revised_prompt=revised)
            images.append(image)
        usage = data.get("usage")
        info = {k: data[k] for k in ("id", "created", "output_format") if data.get(k) is not None}
        return ImageResult(images=tuple(images), usage=usage if isinstance(usage, dict) else None, info=info)

    async def _fetch(self, url: str, model: str) -> GeneratedImage:
        """GET an image the server linked to, from its own host only (see the module docstring)."""
        target = urljoin(self.config.base_url.rstrip("/") + "/", url)  # a relative link is the server's
        if _origin(target) != _origin(self.config.base_url):
            host = urlsplit(target).netloc or "an unknown host"
            raise ProviderProtocolError(
                f"{self._label} sent an image URL on another host ({redact(host, self.config.secrets)}); "
                "only the server's own host is fetched from",
                provider=self.config.provider,
                model=model,
            )
        response: UpstreamResponse
        with self.transport_errors(model):
            if self._direct is not None:
                response = await self._direct.send(
                    "GET", target, headers=self.headers(), timeout=self.timeout()
                )
            else:
                response = await self.client.request(
                    "GET", target, headers=self.headers(), timeout=self.timeout()
                )
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.content, response.headers, model)
        data = response.content
        media_type = sniff_image_type(data)
        if media_type is None:
            raise ProviderProtocolError(
                f"{self._label} linked to {len(data)} bytes that are not a PNG, JPEG, WebP or GIF image",
                provider=self.config.provider,
                model=model,
            )
        return GeneratedImage(data=data, media_type=media_type)

    # -- models and health ---------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        """Every model the server lists: it cannot say which make images, so none is marked."""
        data = await self.request_json("GET", "models")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise_protocol(self.config, "sent a model list without data")
        models: list[RemoteModel] = []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
                owner = item.get("owned_by")
                models.append(RemoteModel(id=item["id"], owned_by=owner if isinstance(owner, str) else None))
        return models

    async def probe(self) -> ProbeResult:
        return await self.timed_probe("models")
