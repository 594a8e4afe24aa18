"""Domain objects of the model registry: endpoints, model entries, health, usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mmstudio.providers.base import Capabilities
from mmstudio.providers.media.base import ImageCapabilities

Kind = Literal["local", "cloud"]
HealthStatus = Literal["healthy", "offline", "checking"]
Modality = Literal["chat", "code", "image", "video", "embedding"]
Platform = Literal["ollama", "lmstudio", "openai_compat", "comfyui", "automatic1111", "openai_images"]

# Flavors whose endpoints make images (their adapters speak an image protocol, not chat).
IMAGE_FLAVORS = frozenset({"comfyui", "automatic1111", "openai_images"})

# Which adapter speaks to which flavor of server.
PROTOCOL_OF_FLAVOR: dict[str, str] = {
    "ollama": "ollama",
    "lmstudio": "openai_compat",
    "openai_compat": "openai_compat",
    "openai": "openai_compat",
    "xai": "openai_compat",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "comfyui": "comfyui",
    "automatic1111": "automatic1111",
    "openai_images": "openai_compat_images",
}

# Which image adapter speaks to which flavor of server (cloud vendors have a chat and an image protocol).
IMAGE_PROTOCOL_OF_FLAVOR: dict[str, str] = {
    "openai": "openai_images",
    "xai": "xai_images",
    "gemini": "gemini_images",
    "comfyui": "comfyui",
    "automatic1111": "automatic1111",
    "openai_images": "openai_compat_images",
}

PLATFORM_LABELS: dict[str, str] = {
    "ollama": "Ollama",
    "lmstudio": "LM Studio",
    "openai_compat": "OpenAI-compatible server",
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "gemini": "Google Gemini",
    "xai": "xAI",
    "comfyui": "ComfyUI",
    "automatic1111": "AUTOMATIC1111",
    "openai_images": "OpenAI-compatible images server",
}


@dataclass(frozen=True)
class Endpoint:
    """A server mmstudio talks to. `flavor` picks adapter and quirks; `provider_id` prefixes model ids."""

    id: str
    provider_id: str
    flavor: str
    base_url: str
    kind: Kind
    source: Literal["builtin", "config", "user", "cloud"]
    display_name: str
    api_key: str | None = field(default=None, repr=False)
    key_env: str | None = None  # cloud: the variable that enables it

    @property
    def protocol(self) -> str:
        return PROTOCOL_OF_FLAVOR[self.flavor]

    @property
    def enabled(self) -> bool:
        return self.kind == "local" or bool(self.api_key)

    @property
    def makes_images(self) -> bool:
        """A local image engine (ComfyUI, A1111, an images server): it has no chat protocol."""
        return self.flavor in IMAGE_FLAVORS

    @property
    def image_protocol(self) -> str | None:
        return IMAGE_PROTOCOL_OF_FLAVOR.get(self.flavor)


@dataclass(frozen=True)
class ModelEntry:
    """One model in the registry. `id` is ``provider/model``; `upstream` is the upstream's own name."""

    id: str
    provider_id: str
    upstream: str
    display_name: str
    modality: Modality
    capabilities: Capabilities
    kind: Kind
    source: Literal["catalog", "detected", "registered", "config"]
    input_price: float | None = None  # USD per million tokens
    output_price: float | None = None
    aliases: tuple[str, ...] = ()
    registered_id: str | None = None
    timeout: float | None = None
    fallbacks: tuple[str, ...] = ()
    # False when the upstream did not say what the model can do (a generic OpenAI-compatible
    # server): the router then does not skip it for lacking a capability.
    capabilities_declared: bool = True
    # Image models: what they accept (references, sizes, n, formats); None for every other modality.
    image: ImageCapabilities | None = None


@dataclass(frozen=True)
class HealthState:
    status: HealthStatus = "checking"
    latency_ms: float | None = None
    last_error: str | None = None
    last_checked: datetime | None = None
    version: str | None = None


@dataclass(frozen=True)
class ModelUsage:
    sessions: int = 0
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class ModelView:
    """What the API and CLI show for a model: entry plus availability, health and usage."""

    entry: ModelEntry
    endpoint: Endpoint
    available: bool
    unavailable_reason: str | None
    health: HealthState
    usage: ModelUsage


@dataclass(frozen=True)
class RegisteredModel:
    id: str
    endpoint_id: str
    upstream_model: str
    display_name: str
    alias: str | None
    created_at: datetime


@dataclass(frozen=True)
class RegisteredEndpoint:
    id: str
    provider_id: str
    platform: Platform
    base_url: str
    created_at: datetime
    api_key: str | None = field(default=None, repr=False)
    models: tuple[RegisteredModel, ...] = ()


Outcome = Literal["ok", "error", "rejected", "cancelled"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One routed request, for metrics. `latency_ms` is the whole request; `ttft_ms` the first token."""

    request_id: str
    created_at: datetime
    route: str  # "gateway", "studio", "chat", "codegen"
    outcome: Outcome
    status_code: int
    latency_ms: float
    model_requested: str | None = None
    model_used: str | None = None
    provider: str | None = None
    key_id: str | None = None
    attempts: int = 0
    fallback: bool = False
    error_kind: str | None = None
    stream: bool = False
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_per_second: float | None = None
    cost_usd: float | None = None
