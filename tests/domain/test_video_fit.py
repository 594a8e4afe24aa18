"""Fitting a video request to a model: OpenAI's sizes reach xAI, Veo and Runway as their nearest shape,
a fallback model gets the nearest duration it offers, and every change or drop is noted."""

from __future__ import annotations

from mmstudio.domain.video.fit import fit, nearest_aspect, ratio_of
from mmstudio.providers.media.gemini_video import VEO_VIDEO_MODELS
from mmstudio.providers.media.openai_videos import OPENAI_VIDEO_MODELS
from mmstudio.providers.media.runway import RUNWAY_VIDEO_MODELS
from mmstudio.providers.media.xai_video import XAI_VIDEO_MODELS

XAI = XAI_VIDEO_MODELS["grok-imagine-video"]
VEO = VEO_VIDEO_MODELS["veo-3.1-generate-preview"]
RUNWAY = RUNWAY_VIDEO_MODELS["gen4_turbo"]
SORA = OPENAI_VIDEO_MODELS["sora-2"]


def test_an_openai_size_becomes_an_aspect_and_a_resolution() -> None:
    fitted = fit({"resolution": "720x1280", "duration_s": 4}, XAI)
    assert (fitted.aspect_ratio, fitted.resolution, fitted.duration_s) == ("9:16", "720p", 4)
    assert fitted.notes() == {"adjusted": {"resolution": {"asked": "720x1280", "sent": "720p"}}}
    veo = fit({"resolution": "1792x1024", "duration_s": 12}, VEO)
    assert (veo.aspect_ratio, veo.resolution, veo.duration_s) == ("16:9", "1080p", 8)
    assert veo.adjusted["duration_s"] == (12, 8)


def test_runway_gets_its_own_ratio_sizes() -> None:
    fitted = fit({"aspect_ratio": "9:16", "resolution": "720p"}, RUNWAY)
    assert fitted.resolution is not None and ratio_of(fitted.resolution) is not None
    assert abs((ratio_of(fitted.resolution) or 0) - 9 / 16) < 0.1
    assert fitted.aspect_ratio in RUNWAY.aspect_ratios


def test_unsupported_fields_are_dropped_and_said() -> None:
    fitted = fit({"seed": 7, "end_image": "img_1", "aspect_ratio": "4:3"}, SORA)
    assert fitted.aspect_ratio in SORA.aspect_ratios  # 4:3 is nearest to 16:9 of Sora's two
    assert fitted.notes()["dropped"] == ["seed", "end_image"]
    assert fit({"prompt": "x"}, SORA).notes() == {}


def test_nearest_aspect() -> None:
    assert nearest_aspect(1.0, ("16:9", "9:16", "1:1")) == "1:1"
    assert nearest_aspect(2.4, ("16:9", "9:16")) == "16:9"
    assert nearest_aspect(1.0, ()) is None
