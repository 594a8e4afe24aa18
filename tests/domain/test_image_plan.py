"""Image models in the registry and the planner: capability data, short names, the image chain, and the
skips a request for images makes (chat models, models without reference photos, nothing usable)."""

from __future__ import annotations

import pytest

from mmstudio.config import StudioConfig
from mmstudio.domain.plan import Needs
from mmstudio.errors import NoModelAvailable
from tests.domain.conftest import OpenStudio, local_env
from tests.fakes.ollama_server import FakeOllamaServer

GEMINI_IMAGE = "gemini/gemini-2.5-flash-image"
LLAMA = "ollama/llama3.2:latest"


async def test_cloud_image_models_carry_capabilities_and_the_key_to_set(open_studio: OpenStudio) -> None:
    studio = await open_studio(local_env(None, None))
    view = studio.registry.view(studio.registry.resolve(GEMINI_IMAGE).entry)
    assert view.entry.modality == "image"
    assert view.entry.display_name == "Gemini 2.5 Flash Image"
    caps = view.entry.image
    assert caps is not None and caps.supports_references and not caps.supports_input_fidelity
    assert "16:9" in caps.aspect_ratios and caps.key_env == "GEMINI_API_KEY"
    assert not view.available and "GEMINI_API_KEY" in (view.unavailable_reason or "")


@pytest.mark.parametrize(
    ("short", "model", "shown"),
    [
        ("gemini", GEMINI_IMAGE, "Gemini 2.5 Flash Image"),
        ("dalle", "openai/gpt-image-1", "DALL-E"),
        ("grok-imagine", "xai/grok-imagine-image", "Grok Imagine"),
    ],
)
async def test_short_and_legacy_names_resolve_and_keep_their_names(
    open_studio: OpenStudio, short: str, model: str, shown: str
) -> None:
    studio = await open_studio(local_env(None, None))
    resolved = studio.registry.resolve(short)
    assert (resolved.entry.id, resolved.display_name) == (model, shown)


async def test_the_image_chain_skips_chat_models_and_models_without_references(
    open_studio: OpenStudio, ollama: FakeOllamaServer
) -> None:
    studio = await open_studio({**local_env(ollama, None), "GEMINI_API_KEY": "g", "XAI_API_KEY": "x"})
    await studio.registry.detect()
    planner = studio.router.planner
    chain = planner.image_chain()
    assert GEMINI_IMAGE in chain and all(studio.registry.resolve(m).entry.modality == "image" for m in chain)
    plan = planner.plan(LLAMA, Needs(modality="image"), chain=chain)
    assert dict(plan.skipped)[LLAMA] == "is a chat model, not an image model"
    assert plan.candidates[0].model_id in chain
    assert plan.candidates[0].timeout == StudioConfig().images.timeouts.cloud  # 180 s, not chat's 60 s
    with_refs = planner.plan(None, Needs(modality="image", references=True), chain=chain)
    assert GEMINI_IMAGE in [c.model_id for c in with_refs.candidates]
    for model_id, reason in with_refs.skipped:
        assert reason == "does not accept reference photos", model_id


async def test_no_image_model_at_all_says_how_to_add_one(open_studio: OpenStudio) -> None:
    studio = await open_studio(local_env(None, None))
    planner = studio.router.planner
    assert planner.image_chain() == []
    with pytest.raises(NoModelAvailable) as caught:
        planner.plan(None, Needs(modality="image"), chain=())
    assert "Add an image model" in caught.value.message and "ComfyUI" in caught.value.message


@pytest.mark.parametrize(
    ("model", "references", "fidelity", "shown"),
    [
        ("openai/gpt-image-1", True, True, "GPT Image 1"),
        ("openai/gpt-image-1-mini", True, False, "GPT Image 1 Mini"),
        ("openai/gpt-image-1.5", True, True, "GPT Image 1.5"),
        ("xai/grok-imagine-image", True, False, "Grok Imagine"),
        (GEMINI_IMAGE, True, False, "Gemini 2.5 Flash Image"),
    ],
)
async def test_the_five_cloud_image_models_and_what_they_can_do(
    open_studio: OpenStudio, model: str, references: bool, fidelity: bool, shown: str
) -> None:
    studio = await open_studio(local_env(None, None))
    entry = studio.registry.resolve(model).entry
    assert entry.modality == "image" and entry.display_name == shown and entry.image is not None
    assert (entry.image.supports_references, entry.image.supports_input_fidelity) == (references, fidelity)
    assert (entry.capabilities.reference_images, entry.capabilities.input_fidelity) == (references, fidelity)
    assert entry.image.key_env == f"{model.split('/')[0].upper()}_API_KEY"
