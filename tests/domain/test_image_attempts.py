"""Images through the router's one attempt loop (`Router.attempts`): the Gemini image adapter against its
fake, a refusal final by default or falling back when asked, retries on 5xx, attempts recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mmstudio.config import ImagesConfig, Routing, StudioConfig
from mmstudio.domain.plan import Candidate, Needs
from mmstudio.domain.router import RouteInfo, Router
from mmstudio.errors import BadRequest, ContentFiltered, ProviderError
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import ImageRequest, ImageResult
from mmstudio.providers.media.gemini_media import GeminiImagesAdapter
from mmstudio.providers.transport import make_http_client
from tests.domain.conftest import OpenStudio, local_env
from tests.fakes.gemini_images_server import FakeGeminiImagesServer, GeminiImageReply

KEY = "AIzaFAKE-image-attempts-0123456789"
FLASH = "gemini/gemini-2.5-flash-image"
PRO = "gemini/gemini-3.1-flash-image-preview"  # in the catalog, without a capability row


@pytest.fixture
def gemini() -> Iterator[FakeGeminiImagesServer]:
    with FakeGeminiImagesServer(
        api_key=KEY, models=["gemini-2.5-flash-image", "gemini-3.1-flash-image-preview"]
    ) as server:
        yield server


async def run(
    open_studio: OpenStudio, gemini: FakeGeminiImagesServer, *, fallback_on_refusal: bool
) -> tuple[RouteInfo, ImageResult | ProviderError, list[float]]:
    config = StudioConfig(
        images=ImagesConfig(fallback_chain=(FLASH, PRO), fallback_on_refusal=fallback_on_refusal),
        routing=Routing(retries=2),
    )
    env = {**local_env(None, None), "GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": gemini.base_url}
    studio = await open_studio(env, config=config)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    router = Router(studio.registry, config, sleep=sleep, jitter=lambda: 0.5)
    info = RouteInfo("req-1", FLASH)
    info.plan = router.planner.plan(FLASH, Needs(modality="image"), chain=config.images.fallback_chain)
    async with make_http_client() as client:

        async def call(candidate: Candidate) -> ImageResult:
            endpoint = candidate.resolved.endpoint
            adapter = GeminiImagesAdapter(
                EndpointConfig(base_url=endpoint.base_url, api_key=endpoint.api_key, provider="gemini"),
                client,
            )
            request = ImageRequest(model=candidate.resolved.entry.upstream, prompt="a lighthouse at dusk")
            return await adapter.generate(request)

        final: tuple[type[ProviderError], ...] = (BadRequest,)
        if not fallback_on_refusal:
            final = (BadRequest, ContentFiltered)
        try:
            result: ImageResult | ProviderError = await router.attempts(info, call, final=final)
        except ProviderError as exc:
            result = exc
    return info, result, sleeps


def models_called(gemini: FakeGeminiImagesServer) -> list[str]:
    return [r.path.rsplit("/", 1)[-1].split(":")[0] for r in gemini.requests if "generateContent" in r.path]


async def test_a_refusal_is_final_and_not_retried_by_default(
    open_studio: OpenStudio, gemini: FakeGeminiImagesServer
) -> None:
    gemini.script(GeminiImageReply(finish_reason="IMAGE_SAFETY"))
    info, result, sleeps = await run(open_studio, gemini, fallback_on_refusal=False)
    assert isinstance(result, ContentFiltered) and "IMAGE_SAFETY" in result.message
    assert models_called(gemini) == ["gemini-2.5-flash-image"] and sleeps == []
    assert [(a.model, a.outcome, a.kind) for a in info.attempts] == [(FLASH, "error", "content_filtered")]


async def test_a_refusal_falls_back_when_the_setting_says_so(
    open_studio: OpenStudio, gemini: FakeGeminiImagesServer
) -> None:
    gemini.script(GeminiImageReply(finish_reason="PROHIBITED_CONTENT"))
    info, result, _ = await run(open_studio, gemini, fallback_on_refusal=True)
    assert isinstance(result, ImageResult) and len(result.images) == 1
    assert models_called(gemini) == ["gemini-2.5-flash-image", "gemini-3.1-flash-image-preview"]
    assert info.model_used == PRO and info.fallback
    assert [a.outcome for a in info.attempts] == ["error", "ok"]


async def test_a_5xx_is_retried_on_the_same_model_with_backoff(
    open_studio: OpenStudio, gemini: FakeGeminiImagesServer
) -> None:
    gemini.script(GeminiImageReply(status=503), GeminiImageReply(status=503))
    info, result, sleeps = await run(open_studio, gemini, fallback_on_refusal=False)
    assert isinstance(result, ImageResult)
    assert models_called(gemini) == ["gemini-2.5-flash-image"] * 3 and len(sleeps) == 2
    assert info.model_used == FLASH and not info.fallback
