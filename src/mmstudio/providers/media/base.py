"""The image provider interface: request, result, progress and capability data every image adapter shares.

An image adapter translates an `ImageRequest` into one upstream wire protocol and returns the decoded
image bytes. Like the chat adapters it is built from an `EndpointConfig` and a shared
`httpx.AsyncClient`, knows nothing about storage, the web layer or other adapters, and raises only the
`ProviderError` tree (`ContentFiltered` for a vendor's refusal, with the vendor's reason). Cancelling
the awaiting task cancels the upstream work where the vendor allows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from mmstudio.providers.base import ProbeResult, RemoteModel


@dataclass(frozen=True, slots=True)
class ImageCapabilities:
    """What an image model can do, as data (never if/elif over vendor names).

    `sizes` are ``WxH`` strings the model accepts verbatim; `aspect_ratios` are ``W:H`` strings for
    models that take a ratio instead of a size. A request's size is mapped to the nearest allowed one
    before it reaches an adapter.
    """

    supports_references: bool = False
    supports_input_fidelity: bool = False
    supports_edit: bool = False
    supports_mask: bool = False
    supports_negative_prompt: bool = False
    supports_seed: bool = False
    supports_steps: bool = False
    supports_moderation: bool = False  # OpenAI's `moderation: auto | low` (GPT Image)
    sizes: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    qualities: tuple[str, ...] = ()
    max_n: int = 1
    max_references: int = 0
    max_prompt_chars: int = 32_000
    output_formats: tuple[str, ...] = ("png",)
    key_env: str | None = None


@dataclass(frozen=True, slots=True)
class InputImage:
    """An image sent upstream: a reference photo, an image to edit, or a mask."""

    data: bytes
    media_type: str = "image/png"
    name: str = "image.png"


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One image generation. `model` is the upstream's own model name (no ``provider/`` prefix).

    Exactly one of `size` (``WxH``) and `aspect_ratio` (``W:H``) is normally set, already mapped to
    what the model accepts. `references` are reference photos (or the images to edit); `mask` marks
    the area to repaint. `input_fidelity` is only set for models that support it. `workflow` is a
    ComfyUI node graph template name or None for the engine's default.
    """

    model: str
    prompt: str
    n: int = 1
    size: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None
    seed: int | None = None
    steps: int | None = None
    negative_prompt: str | None = None
    references: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    input_fidelity: str | None = None
    output_format: str | None = None
    moderation: str | None = None
    workflow: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def width_height(self) -> tuple[int, int] | None:
        if not self.size or "x" not in self.size:
            return None
        w, _, h = self.size.partition("x")
        return int(w), int(h)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image as the upstream made it: decoded bytes and what the upstream said about it."""

    data: bytes
    media_type: str
    seed: int | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: tuple[GeneratedImage, ...]
    usage: Mapping[str, Any] | None = None  # the vendor's usage object when it sends one
    info: Mapping[str, Any] = field(default_factory=dict)  # e.g. A1111's parameters, ComfyUI's prompt id
    text: str = ""  # any text the model wrote beside the images (Gemini)


@dataclass(frozen=True, slots=True)
class ImageProgress:
    """Progress of a running generation: steps when the engine reports them, else a percent."""

    step: int | None = None
    steps: int | None = None
    percent: float | None = None  # 0..100
    preview: bytes | None = None  # a partial image, when the engine streams them


ProgressCallback = Callable[[ImageProgress], Awaitable[None]]


@runtime_checkable
class ImageAdapter(Protocol):
    """One image wire protocol. Construct with an `EndpointConfig` and a shared `httpx.AsyncClient`."""

    protocol: ClassVar[str]

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> ImageResult:
        """Make the images; raises `ProviderError` (`ContentFiltered` for a refusal)."""
        ...

    async def list_models(self) -> list[RemoteModel]: ...

    async def probe(self) -> ProbeResult: ...


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, WebP or GIF bytes from their magic number, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def decode_image_b64(value: object, *, provider: str, model: str | None) -> GeneratedImage:
    """Decode one base64 image from an upstream; bad base64 or bytes that are not an image raise
    `ProviderProtocolError` (retryable: another attempt, or another model, may do better)."""
    import base64
    import binascii

    from mmstudio.errors import ProviderProtocolError

    if not isinstance(value, str) or not value:
        raise ProviderProtocolError(f"{provider} sent an image without data", provider=provider, model=model)
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderProtocolError(
            f"{provider} sent image data that is not valid base64", provider=provider, model=model
        ) from exc
    media_type = sniff_image_type(data)
    if media_type is None:
        raise ProviderProtocolError(
            f"{provider} sent {len(data)} bytes that are not a PNG, JPEG, WebP or GIF image",
            provider=provider,
            model=model,
        )
    return GeneratedImage(data=data, media_type=media_type)
