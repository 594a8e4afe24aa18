"""The video model table and the plan a job tries: keyed vendors only, the chosen model first, Sora only
when named, and models that only animate an image left out of a text-only video (choosing one is a 400
that says what to give it)."""

from __future__ import annotations

import pytest

from mmstudio.domain.video.models import VideoModels
from mmstudio.errors import InvalidRequest, NoModelRegistered
from mmstudio.providers.media.video_base import VideoAdapter


def no_adapter(provider: str) -> VideoAdapter:
    raise AssertionError(f"planning never builds an adapter ({provider})")


def table(*keyed: str) -> VideoModels:
    return VideoModels(dict.fromkeys(keyed, True), no_adapter)


def test_a_text_only_video_skips_models_that_need_a_start_image() -> None:
    models = table("runway", "xai", "openai")
    with_image = models.plan(None, has_image=True)
    assert with_image[0].startswith("runway/") and with_image[1] == "xai/grok-imagine-video"
    assert models.plan(None, has_image=False) == ["xai/grok-imagine-video"]  # never Sora unless named
    assert models.plan("sora", has_image=False) == ["openai/sora-2", "xai/grok-imagine-video"]
    with pytest.raises(InvalidRequest, match="makes a video from a start image") as caught:
        models.plan("runway-gen3-alpha", has_image=False)
    assert caught.value.field == "start_image"


def test_only_image_models_keyed_says_what_to_give_or_set() -> None:
    with pytest.raises(InvalidRequest, match="set XAI_API_KEY or GEMINI_API_KEY") as caught:
        table("runway").plan(None, has_image=False)
    assert caught.value.field == "start_image"
    with pytest.raises(NoModelRegistered):
        table().plan(None)
    assert table("runway").plan(None, fallbacks=False)[0].startswith("runway/")
