"""Media adapters: one module per image wire protocol behind `base.ImageAdapter`, looked up by protocol.

Capability data lives beside each adapter (its vendor's models, or its engine's limits) and is looked up
here by provider and model, never by if/elif over vendor names. The adapter modules are imported on
first use, so importing the registry's types does not load every vendor's code.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import httpx

from mmstudio.errors import ConfigError
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import ImageAdapter, ImageCapabilities
from mmstudio.providers.media.video_base import VideoAdapter, VideoCapabilities

# protocol -> (module, adapter class name)
IMAGE_ADAPTERS: dict[str, tuple[str, str]] = {
    "gemini_images": ("gemini_media", "GeminiImagesAdapter"),
    "openai_images": ("openai_images", "OpenAIImagesAdapter"),
    "xai_images": ("xai_media", "XAIImagesAdapter"),
    "automatic1111": ("automatic1111", "Automatic1111Adapter"),
    "openai_compat_images": ("openai_compat_images", "OpenAICompatImagesAdapter"),
    "comfyui": ("comfyui", "ComfyUIAdapter"),
}

# Cloud provider -> (module, table of its image models' capabilities by upstream name).
CLOUD_IMAGE_MODELS: dict[str, tuple[str, str]] = {
    "openai": ("openai_images", "OPENAI_IMAGE_MODELS"),
    "xai": ("xai_media", "XAI_IMAGE_MODELS"),
    "gemini": ("gemini_media", "GEMINI_IMAGE_MODELS"),
}

# Local engine protocol -> (module, its capabilities).
ENGINE_CAPABILITIES: dict[str, tuple[str, str]] = {
    "automatic1111": ("automatic1111", "A1111_CAPABILITIES"),
    "openai_compat_images": ("openai_compat_images", "OPENAI_COMPAT_IMAGE_CAPABILITIES"),
    "comfyui": ("comfyui", "COMFYUI_CAPABILITIES"),
}

KEY_ENVS = {"openai": "OPENAI_API_KEY", "xai": "XAI_API_KEY", "gemini": "GEMINI_API_KEY"}

# Video: protocol -> (module, adapter class); cloud provider -> (its protocol, module, capability table).
VIDEO_ADAPTERS: dict[str, tuple[str, str]] = {
    "openai_videos": ("openai_videos", "OpenAIVideosAdapter"),
    "runway": ("runway", "RunwayVideoAdapter"),
    "xai_video": ("xai_video", "XAIVideoAdapter"),
    "gemini_video": ("gemini_video", "VeoVideoAdapter"),
    "comfyui_video": ("comfyui_video", "ComfyUIVideoAdapter"),
}
CLOUD_VIDEO_MODELS: dict[str, tuple[str, str, str]] = {
    "runway": ("runway", "runway", "RUNWAY_VIDEO_MODELS"),
    "xai": ("xai_video", "xai_video", "XAI_VIDEO_MODELS"),
    "gemini": ("gemini_video", "gemini_video", "VEO_VIDEO_MODELS"),
    "openai": ("openai_videos", "openai_videos", "OPENAI_VIDEO_MODELS"),
}
# Local engine flavor -> (its video protocol, module, table of its video workflows' capabilities, their
# display names). These need no key: a model is usable when the engine is up and can run its workflow.
LOCAL_VIDEO_MODELS: dict[str, tuple[str, str, str, str]] = {
    "comfyui": ("comfyui_video", "comfyui_video", "COMFYUI_VIDEO_MODELS", "COMFYUI_VIDEO_DISPLAY_NAMES"),
}


def _load(module: str, name: str) -> object:
    return getattr(importlib.import_module(f"mmstudio.providers.media.{module}"), name)


@cache
def cloud_image_capabilities(provider: str, upstream: str) -> ImageCapabilities | None:
    """What a cloud image model can do; a model of a known vendor that its table lacks gets the
    conservative default (one image, no references), so it is offered but never over-promised."""
    where = CLOUD_IMAGE_MODELS.get(provider)
    if where is None:
        return None
    table = _load(*where)
    assert isinstance(table, dict)
    found = table.get(upstream)
    if isinstance(found, ImageCapabilities):
        return found
    return ImageCapabilities(max_n=1, key_env=KEY_ENVS.get(provider))


@cache
def engine_image_capabilities(protocol: str) -> ImageCapabilities:
    where = ENGINE_CAPABILITIES.get(protocol)
    if where is None:
        return ImageCapabilities()
    caps = _load(*where)
    assert isinstance(caps, ImageCapabilities)
    return caps


def create_image_adapter(protocol: str, config: EndpointConfig, client: httpx.AsyncClient) -> ImageAdapter:
    try:
        module, name = IMAGE_ADAPTERS[protocol]
    except KeyError:
        known = ", ".join(sorted(IMAGE_ADAPTERS))
        raise ConfigError(f"unknown image protocol {protocol!r}; known: {known}") from None
    adapter_class = _load(module, name)
    adapter = adapter_class(config, client)  # type: ignore[operator]
    assert isinstance(adapter, ImageAdapter)
    return adapter


def _video_table(where: tuple[str, ...] | None, index: int) -> dict[str, Any]:
    if where is None:
        return {}
    table = _load(where[1], where[index])
    assert isinstance(table, dict)
    return dict(table)


def cloud_video_models(provider: str) -> dict[str, VideoCapabilities]:
    """The video models of a cloud provider and what each can do ({} for a provider without video)."""
    return _video_table(CLOUD_VIDEO_MODELS.get(provider), 2)


def local_video_models(flavor: str) -> dict[str, VideoCapabilities]:
    """The video models of a local engine flavor and what each can do ({} for one without video)."""
    return _video_table(LOCAL_VIDEO_MODELS.get(flavor), 2)


def local_video_names(flavor: str) -> dict[str, str]:
    """The display names of a local engine flavor's video models ({} for one without video)."""
    return _video_table(LOCAL_VIDEO_MODELS.get(flavor), 3)


def create_video_adapter(protocol: str, config: EndpointConfig, client: httpx.AsyncClient) -> VideoAdapter:
    try:
        module, name = VIDEO_ADAPTERS[protocol]
    except KeyError:
        known = ", ".join(sorted(VIDEO_ADAPTERS))
        raise ConfigError(f"unknown video protocol {protocol!r}; known: {known}") from None
    adapter = _load(module, name)(config, client)  # type: ignore[operator]
    assert isinstance(adapter, VideoAdapter)
    return adapter


__all__ = [
    "IMAGE_ADAPTERS",
    "ImageAdapter",
    "ImageCapabilities",
    "cloud_image_capabilities",
    "create_image_adapter",
    "engine_image_capabilities",
]
