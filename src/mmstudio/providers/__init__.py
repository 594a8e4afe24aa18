"""Provider adapters, one per wire protocol, looked up by protocol name (never an if/elif chain)."""

from __future__ import annotations

import httpx

from mmstudio.errors import ConfigError
from mmstudio.providers.anthropic import AnthropicAdapter
from mmstudio.providers.base import EndpointConfig, ProviderAdapter
from mmstudio.providers.gemini import GeminiAdapter
from mmstudio.providers.ollama import OllamaAdapter
from mmstudio.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    OpenAICompatAdapter.protocol: OpenAICompatAdapter,
    OllamaAdapter.protocol: OllamaAdapter,
    AnthropicAdapter.protocol: AnthropicAdapter,
    GeminiAdapter.protocol: GeminiAdapter,
}


def create_adapter(protocol: str, config: EndpointConfig, client: httpx.AsyncClient) -> ProviderAdapter:
    try:
        adapter_class = ADAPTERS[protocol]
    except KeyError:
        raise ConfigError(f"unknown protocol {protocol!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    return adapter_class(config, client)  # type: ignore[call-arg]


__all__ = ["ADAPTERS", "EndpointConfig", "ProviderAdapter", "create_adapter"]
