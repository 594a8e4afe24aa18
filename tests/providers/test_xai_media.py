"""XAIImagesAdapter against the fake xAI Images API over real HTTP."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContentFiltered,
    InvalidRequest,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import ImageAdapter, ImageProgress, ImageRequest, InputImage
from mmstudio.providers.media.xai_media import XAI_IMAGE_MODELS, XAIImagesAdapter
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import BlackHole, Reply, closed_port
from tests.fakes.images import make_image
from tests.fakes.openai_images_server import ImagesReply
from tests.fakes.xai_images_server import REFUSAL_MESSAGE, FakeXAIImagesServer

KEY = "xai-FAKEimagineKEY-0123456789abcdefghij"
MODEL = "grok-imagine-image"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeXAIImagesServer]:
    with FakeXAIImagesServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeXAIImagesServer) -> None:
    server.reset()
    server.default = ImagesReply()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(
    client: httpx.AsyncClient, base_url: str, *, key: str = KEY, timeout: float = 5.0
) -> XAIImagesAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="xai", timeout=timeout)
    return XAIImagesAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeXAIImagesServer) -> XAIImagesAdapter:
    return make(client, f"{server.url}/v1")


def ask(prompt: str = "A red fox in snow", **kwargs: Any) -> ImageRequest:
    kwargs.setdefault("model", MODEL)
    return ImageRequest(prompt=prompt, **kwargs)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[:12] not in str(exc) and KEY[-8:] not in str(exc)


def data_uri_bytes(uri: str) -> tuple[str, bytes]:
    head, _, data = uri.partition(",")
    return head, base64.b64decode(data, validate=True)


WIDE = InputImage(make_image(64, 32, "PNG", (10, 200, 30)), "image/png", "wide.png")
FACE = InputImage(make_image(16, 16, "JPEG", (250, 250, 0)), "image/jpeg", "face.jpg")
DOG = InputImage(make_image(20, 30, "PNG", (0, 0, 250)), "image/png", "dog.png")


# --- interface and capability data --------------------------------------------------------


async def test_adapter_and_capability_data(adapter: XAIImagesAdapter) -> None:
    assert isinstance(adapter, ImageAdapter)
    assert adapter.protocol == "xai_images"
    caps = XAI_IMAGE_MODELS["grok-imagine-image"]
    assert caps.supports_references and caps.supports_edit
    assert not caps.supports_input_fidelity and not caps.supports_mask
    assert caps.aspect_ratios == ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3") and caps.sizes == ()
    assert (caps.max_n, caps.max_references, caps.key_env) == (10, 3, "XAI_API_KEY")


# --- generations --------------------------------------------------------------------------


async def test_generation_sends_aspect_ratio_never_size(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer
) -> None:
    server.script(ImagesReply(revised_prompt="A red fox standing in deep snow at dusk"))
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    # The request carries a size too (as a caller might); only the ratio goes to xAI.
    request = ask(n=2, aspect_ratio="16:9", size="1024x1024", extra={"resolution": "2k"})
    result = await adapter.generate(request, progress)

    assert len(result.images) == 2
    for image in result.images:
        assert image.media_type == "image/jpeg"
        picture = opened(image.data)
        assert (picture.format, picture.size) == ("JPEG", (192, 108))  # 16:9 at the fake's 2k
        assert image.revised_prompt == "A red fox standing in deep snow at dusk"
    assert result.images[0].data != result.images[1].data
    assert result.usage is None
    assert [p.percent for p in seen] == [100.0]
    (sent,) = server.requests_to("/v1/images/generations")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "model": MODEL,
        "prompt": "A red fox in snow",
        "n": 2,
        "response_format": "b64_json",
        "aspect_ratio": "16:9",
        "resolution": "2k",
    }


async def test_generation_without_ratio(adapter: XAIImagesAdapter, server: FakeXAIImagesServer) -> None:
    result = await adapter.generate(ask())
    assert opened(result.images[0].data).size == (96, 96)
    (body,) = server.generation_bodies()
    assert "aspect_ratio" not in body and "size" not in body


async def test_the_fake_refuses_size_like_xai(adapter: XAIImagesAdapter) -> None:
    with pytest.raises(BadRequest, match="Argument not supported: size") as caught:
        await adapter.generate(ask(extra={"size": "1024x1024"}))
    assert not caught.value.retryable and caught.value.status == 400


# --- edits --------------------------------------------------------------------------------


async def test_edit_with_one_reference_sends_image_url(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer
) -> None:
    result = await adapter.generate(ask("Make it night", references=(WIDE,)))

    # No ratio asked: xAI follows the first source image's shape (2:1 here).
    assert opened(result.images[0].data).size == (96, 48)
    (sent,) = server.requests_to("/v1/images/edits")
    assert sent.headers["content-type"].startswith("application/json")
    body = sent.json()
    assert set(body) == {"model", "prompt", "n", "response_format", "image"}
    assert (body["model"], body["prompt"], body["n"], body["response_format"]) == (
        MODEL,
        "Make it night",
        1,
        "b64_json",
    )
    head, data = data_uri_bytes(body["image"]["url"])
    assert head == "data:image/png;base64" and data == WIDE.data
    assert server.generation_bodies() == []


async def test_edit_with_three_references_sends_images(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer
) -> None:
    result = await adapter.generate(
        ask("All of them in a park", n=2, references=(WIDE, FACE, DOG), aspect_ratio="3:2")
    )

    assert len(result.images) == 2 and opened(result.images[0].data).size == (96, 64)
    (body,) = server.edit_bodies()
    assert "image" not in body and body["aspect_ratio"] == "3:2" and body["n"] == 2
    sent = [data_uri_bytes(item["url"]) for item in body["images"]]
    assert sent == [
        ("data:image/png;base64", WIDE.data),
        ("data:image/jpeg;base64", FACE.data),
        ("data:image/png;base64", DOG.data),
    ]


async def test_too_many_references_or_a_mask_are_refused_before_sending(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer
) -> None:
    with pytest.raises(InvalidRequest, match="at most 3"):
        await adapter.generate(ask(references=(WIDE, FACE, DOG, WIDE)))
    with pytest.raises(InvalidRequest, match="mask"):
        await adapter.generate(ask(references=(WIDE,), mask=DOG))
    assert server.requests == []


# --- errors -------------------------------------------------------------------------------


async def test_bad_key_is_http_400_but_authentication_error(
    client: httpx.AsyncClient, server: FakeXAIImagesServer
) -> None:
    wrong = "xai-WRONGkey-abcdefghijklmnopqrstuv"
    adapter = make(client, f"{server.url}/v1", key=wrong)
    for request in (ask(), ask(references=(WIDE,))):
        with pytest.raises(AuthenticationError, match="API key") as caught:
            await adapter.generate(request)
        assert caught.value.status == 400 and not caught.value.retryable
        assert wrong not in str(caught.value)


async def test_missing_key_is_authentication_error(
    client: httpx.AsyncClient, server: FakeXAIImagesServer
) -> None:
    config = EndpointConfig(base_url=f"{server.url}/v1", provider="xai")
    with pytest.raises(AuthenticationError):
        await XAIImagesAdapter(config, client).generate(ask())


async def test_unsupported_ratio_is_bad_request(adapter: XAIImagesAdapter) -> None:
    with pytest.raises(BadRequest, match="aspect_ratio") as caught:
        await adapter.generate(ask(aspect_ratio="5:7"))
    assert not caught.value.retryable
    no_secret(caught.value)


@pytest.mark.parametrize("references", [(), (FACE,)])
async def test_refusal_is_content_filtered(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer, references: tuple[InputImage, ...]
) -> None:
    server.script(ImagesReply(refused=True))
    with pytest.raises(ContentFiltered) as caught:
        await adapter.generate(ask(references=references))
    assert REFUSAL_MESSAGE in str(caught.value)
    assert not caught.value.retryable and caught.value.status == 400
    no_secret(caught.value)


@pytest.mark.parametrize(
    "message",
    [
        "The prompt violates our usage policy.",
        "Your request was rejected by our safety filters.",
        "Content was flagged as inappropriate and has been blocked",
    ],
)
async def test_refusal_phrasings_are_content_filtered(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer, message: str
) -> None:
    server.script(
        Reply(status=400, error_body={"code": "Client specified an invalid argument", "error": message})
    )
    with pytest.raises(ContentFiltered, match=re.escape(message)):
        await adapter.generate(ask())


async def test_images_withheld_by_moderation(adapter: XAIImagesAdapter, server: FakeXAIImagesServer) -> None:
    # A 200 whose images did not pass moderation: the flagged ones are dropped and counted.
    server.script(ImagesReply(moderated=1))
    result = await adapter.generate(ask(n=3))
    assert len(result.images) == 2 and result.info["withheld"] == 1
    server.script(ImagesReply(moderated=2))
    with pytest.raises(ContentFiltered, match="withheld every image") as caught:
        await adapter.generate(ask(n=2))
    assert not caught.value.retryable


async def test_rate_limit_carries_retry_after(adapter: XAIImagesAdapter, server: FakeXAIImagesServer) -> None:
    server.script(ImagesReply(status=429, headers={"retry-after": "12"}))
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.generate(ask(references=(FACE,)))
    assert caught.value.retry_after == 12.0 and caught.value.retryable


async def test_server_error_is_unavailable(adapter: XAIImagesAdapter, server: FakeXAIImagesServer) -> None:
    server.script(ImagesReply(status=500))
    with pytest.raises(ProviderUnavailable, match="Internal error") as caught:
        await adapter.generate(ask())
    assert caught.value.retryable


async def test_unknown_model_is_not_found(adapter: XAIImagesAdapter) -> None:
    with pytest.raises(UpstreamModelNotFound):
        await adapter.generate(ask(model="grok-imagine-nothing"))


async def test_timeout(client: httpx.AsyncClient) -> None:
    with BlackHole() as hole, pytest.raises(ProviderTimeout) as caught:
        await make(client, f"{hole.url}/v1", timeout=0.3).generate(ask(references=(FACE,)))
    assert caught.value.retryable
    no_secret(caught.value)


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderConnectionError, match="refused") as caught:
        await make(client, f"http://127.0.0.1:{closed_port()}/v1").generate(ask())
    assert caught.value.retryable
    no_secret(caught.value)


async def test_truncated_body(adapter: XAIImagesAdapter, server: FakeXAIImagesServer) -> None:
    server.script(ImagesReply(drop_after=0))
    with pytest.raises(ProviderConnectionError, match="dropped the connection"):
        await adapter.generate(ask())


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (ImagesReply(image_data="%%% not base64"), "not valid base64"),
        (ImagesReply(image_data=base64.b64encode(b"GIF? no, text").decode()), "not a PNG"),
        (ImagesReply(images=0), "empty `data`"),
        (Reply(raw=b"<html>502 Bad Gateway</html>"), "not JSON"),
    ],
)
async def test_bad_answers_are_protocol_errors(
    adapter: XAIImagesAdapter, server: FakeXAIImagesServer, reply: Reply, match: str
) -> None:
    server.script(reply)
    with pytest.raises(ProviderProtocolError, match=match) as caught:
        await adapter.generate(ask())
    assert caught.value.retryable


# --- models and health --------------------------------------------------------------------


async def test_list_models_keeps_image_models(adapter: XAIImagesAdapter) -> None:
    models = {m.id: m for m in await adapter.list_models()}
    assert set(models) == {"grok-imagine-image", "grok-2-image-1212"}
    grok = models["grok-imagine-image"]
    assert grok.owned_by == "xai"
    assert grok.capabilities is not None and grok.capabilities.reference_images
    assert not grok.capabilities.input_fidelity and not grok.capabilities.streaming


async def test_probe(
    adapter: XAIImagesAdapter, client: httpx.AsyncClient, server: FakeXAIImagesServer
) -> None:
    assert (await adapter.probe()).ok
    wrong = await make(client, f"{server.url}/v1", key="xai-NOPE-000000000000000000").probe()
    assert not wrong.ok and wrong.error is not None and "NOPE-0000" not in wrong.error
    refused = await make(client, f"http://127.0.0.1:{closed_port()}/v1").probe()
    assert not refused.ok
