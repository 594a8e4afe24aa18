"""Which endpoints exist (built-in local engines, config, user-registered, cloud) and connection tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from mmstudio.config import StudioConfig
from mmstudio.domain.types import PLATFORM_LABELS, Endpoint, Platform, RegisteredEndpoint
from mmstudio.errors import (
    AuthenticationError,
    EndpointTestFailed,
    InvalidRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeout,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import ProbeResult, ProviderAdapter, RemoteModel
from mmstudio.providers.media.base import ImageAdapter
from mmstudio.settings import CloudProviderSettings

BUILTIN_OLLAMA = "ollama"
BUILTIN_LMSTUDIO = "lmstudio"
# Local image engines detected like Ollama and LM Studio: provider id (= flavor) -> display name.
BUILTIN_IMAGE_ENGINES: dict[str, str] = {"comfyui": "ComfyUI", "automatic1111": "AUTOMATIC1111"}
DEFAULT_URLS: dict[str, str] = {
    "ollama": "http://127.0.0.1:11434",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "openai_compat": "http://127.0.0.1:8000/v1",
    "comfyui": "http://127.0.0.1:8188",
    "automatic1111": "http://127.0.0.1:7860",
    "openai_images": "http://127.0.0.1:8080/v1",
}


def build_endpoints(
    *,
    config: StudioConfig,
    cloud: Mapping[str, CloudProviderSettings],
    ollama_url: str,
    lmstudio_url: str,
    registered: list[RegisteredEndpoint],
    environ: Mapping[str, str],
    image_engines: Mapping[str, str] | None = None,
) -> list[Endpoint]:
    """Every endpoint, local first. A registered endpoint with a built-in's provider id replaces it.
    `image_engines` maps a built-in image engine's flavor (`comfyui`, `automatic1111`) to its URL."""
    by_provider: dict[str, Endpoint] = {}
    if config.detect_local:
        by_provider["ollama"] = Endpoint(
            BUILTIN_OLLAMA, "ollama", "ollama", ollama_url, "local", "builtin", "Ollama"
        )
        by_provider["lmstudio"] = Endpoint(
            BUILTIN_LMSTUDIO, "lmstudio", "lmstudio", lmstudio_url, "local", "builtin", "LM Studio"
        )
        for flavor, url in (image_engines or {}).items():
            by_provider[flavor] = Endpoint(
                flavor, flavor, flavor, url, "local", "builtin", BUILTIN_IMAGE_ENGINES.get(flavor, flavor)
            )
    for entry in config.endpoints:
        key = environ.get(entry.api_key_env) if entry.api_key_env else None
        by_provider[entry.name] = Endpoint(
            f"config:{entry.name}",
            entry.name,
            entry.platform,
            entry.base_url,
            "local",
            "config",
            f"{entry.name} ({PLATFORM_LABELS[entry.platform]})",
            api_key=key or None,
        )
    for reg in registered:
        by_provider[reg.provider_id] = Endpoint(
            reg.id,
            reg.provider_id,
            reg.platform,
            reg.base_url,
            "local",
            "user",
            _registered_label(reg),
            api_key=reg.api_key,
        )
    for provider, settings in cloud.items():
        by_provider[provider] = Endpoint(
            f"cloud:{provider}",
            provider,
            provider,
            settings.base_url,
            "cloud",
            "cloud",
            PLATFORM_LABELS[provider],
            api_key=settings.api_key,
            key_env=settings.key_env,
        )
    return sorted(by_provider.values(), key=lambda e: (e.kind != "local", e.source == "cloud", e.provider_id))


def normalize_base_url(raw: str) -> str:
    """A base URL a user typed: http(s), a host, no trailing slash; else InvalidRequest saying why."""
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise InvalidRequest(f"base_url must start with http:// or https://, got {raw!r}", field="base_url")
    try:
        parsed = urlsplit(value)
        host, _port = parsed.hostname, parsed.port  # .port raises on a non-numeric port
    except ValueError as exc:
        raise InvalidRequest(f"base_url {raw!r} is not a valid URL: {exc}", field="base_url") from None
    if not host:
        raise InvalidRequest(
            f"base_url {raw!r} has no host name (e.g. http://127.0.0.1:11434)", field="base_url"
        )
    try:
        host.encode("idna")
    except UnicodeError:
        raise InvalidRequest(
            f"base_url {raw!r}: {host!r} is not a host name (labels of 1 to 63 characters between dots)",
            field="base_url",
        ) from None
    return value


def _registered_label(reg: RegisteredEndpoint) -> str:
    label = PLATFORM_LABELS[reg.platform]
    return label if reg.provider_id in (BUILTIN_OLLAMA, BUILTIN_LMSTUDIO) else f"{reg.provider_id} ({label})"


SERVER_KINDS: dict[str, str] = {
    "ollama": "an Ollama server",
    "comfyui": "a ComfyUI server",
    "automatic1111": "an AUTOMATIC1111 / Forge / SD.Next server started with --api",
    "openai_images": "an OpenAI-compatible images server",
}


def describe_failure(platform: str, base_url: str, exc: ProviderError) -> EndpointTestFailed:
    """Turn a failed connection test into the exact cause, in words a user can act on."""
    label = PLATFORM_LABELS.get(platform, platform)
    where = f"{label} at {base_url}"
    if isinstance(exc, ProviderConnectionError):
        return EndpointTestFailed(
            f"Could not connect to {where}: connection refused or unreachable. Is it running?",
            "connection_refused",
        )
    if isinstance(exc, ProviderTimeout):
        return EndpointTestFailed(f"{where} did not answer in time (timeout).", "timeout")
    if isinstance(exc, AuthenticationError):
        return EndpointTestFailed(f"{where} rejected the API key (HTTP {exc.status}).", "authentication")
    if isinstance(exc, UpstreamModelNotFound | ProviderProtocolError) or (
        isinstance(exc, ProviderHTTPError) and exc.status in (404, 405)
    ):
        kind = SERVER_KINDS.get(platform, "an OpenAI-compatible server")
        return EndpointTestFailed(
            f"{where} answered, but it is not {kind}: {exc.message}", f"not_{platform}_server"
        )
    if isinstance(exc, ProviderHTTPError):
        return EndpointTestFailed(f"{where} answered HTTP {exc.status}: {exc.message}", f"http_{exc.status}")
    return EndpointTestFailed(f"{where} failed: {exc.message}", "error")


async def check_connection(adapter: Probeable, platform: Platform, base_url: str) -> list[RemoteModel]:
    """List the endpoint's models; any failure becomes EndpointTestFailed naming the cause."""
    try:
        return await adapter.list_models()
    except ProviderError as exc:
        raise describe_failure(platform, base_url, exc) from exc


class Probeable(Protocol):
    """What the registry asks of any adapter, chat or image: its models and whether it answers."""

    async def list_models(self) -> list[RemoteModel]: ...

    async def probe(self) -> ProbeResult: ...


AdapterFactory = Callable[[Endpoint], ProviderAdapter]
ImageAdapterFactory = Callable[[Endpoint], ImageAdapter]
