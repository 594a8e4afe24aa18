"""OpenAIImagesAdapter against the fake OpenAI Images API over real HTTP; the openai SDK against the fake."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
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
from mmstudio.providers.media.openai_images import OPENAI_IMAGE_MODELS, OpenAIImagesAdapter
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import BlackHole, Reply, closed_port
from tests.fakes.images import make_image
from tests.fakes.openai_images_server import REFUSAL_MESSAGE, FakeOpenAIImagesServer, ImagesReply

KEY = "sk-proj-FAKEimagesKEY-0123456789abcdef"
MODEL = "gpt-image-1"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIImagesServer]:
    with FakeOpenAIImagesServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeOpenAIImagesServer) -> None:
    server.reset()
    server.default = ImagesReply()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(
    client: httpx.AsyncClient, base_url: str, *, key: str = KEY, timeout: float = 5.0
) -> OpenAIImagesAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="openai", timeout=timeout)
    return OpenAIImagesAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeOpenAIImagesServer) -> OpenAIImagesAdapter:
    return make(client, f"{server.url}/v1")


def ask(prompt: str = "A red fox in snow", **kwargs: Any) -> ImageRequest:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("size", "1024x1024")
    return ImageRequest(prompt=prompt, **kwargs)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # a truncated or corrupt file fails here, not just at the header
    return image


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[:12] not in str(exc) and KEY[-8:] not in str(exc)


PHOTO = InputImage(make_image(32, 24, "PNG", (10, 200, 30)), "image/png", "photo.png")
SKETCH = InputImage(make_image(16, 16, "JPEG", (250, 250, 0)), "image/jpeg", "sketch.jpg")
STYLE = InputImage(make_image(20, 20, "WEBP", (0, 0, 250)), "image/webp", "style.webp")
MASK = InputImage(make_image(32, 24, "PNG", (0, 0, 0)), "image/png", "mask.png")


# --- interface and capability data --------------------------------------------------------


def test_capability_data() -> None:
    one, mini, one_five = (
        OPENAI_IMAGE_MODELS[m] for m in ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
    )
    for caps in (one, mini, one_five):
        assert caps.supports_references and caps.supports_edit and caps.supports_mask
        assert caps.sizes == ("1024x1024", "1536x1024", "1024x1536")
        assert caps.qualities == ("low", "medium", "high")
        assert (caps.max_n, caps.max_references, caps.key_env) == (10, 16, "OPENAI_API_KEY")
        assert caps.output_formats == ("png", "jpeg", "webp")
    assert one.supports_input_fidelity and one_five.supports_input_fidelity
    assert not mini.supports_input_fidelity


async def test_adapter_satisfies_the_protocol(adapter: OpenAIImagesAdapter) -> None:
    assert isinstance(adapter, ImageAdapter)
    assert adapter.protocol == "openai_images"
    assert adapter.capabilities is OPENAI_IMAGE_MODELS


# --- generations --------------------------------------------------------------------------


async def test_generation_sends_json_and_parses_the_images(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    server.script(ImagesReply(revised_prompt="A red fox standing in fresh snow", usage=(14, 272)))
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    request = ask(n=2, size="1536x1024", quality="high", moderation="low", extra={"background": "opaque"})
    result = await adapter.generate(request, progress)

    assert len(result.images) == 2
    for image in result.images:
        assert image.media_type == "image/png"
        assert (opened(image.data).format, opened(image.data).size) == ("PNG", (1536, 1024))
        assert image.revised_prompt == "A red fox standing in fresh snow"
    assert result.images[0].data != result.images[1].data  # two pictures, not one twice
    assert result.usage is not None
    assert result.usage["input_tokens"] == 14 and result.usage["output_tokens"] == 2 * 272
    assert result.usage["input_tokens_details"] == {"image_tokens": 0, "text_tokens": 14}
    assert result.info["size"] == "1536x1024" and result.info["quality"] == "high"
    assert result.info["output_format"] == "png" and isinstance(result.info["created"], int)
    assert [p.percent for p in seen] == [100.0]

    (sent,) = server.requests_to("/v1/images/generations")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"].startswith("application/json")
    assert sent.json() == {
        "model": MODEL,
        "prompt": "A red fox in snow",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "moderation": "low",
        "background": "opaque",
    }
    assert server.edits == []


@pytest.mark.parametrize(("fmt", "media_type"), [("jpeg", "image/jpeg"), ("webp", "image/webp")])
async def test_output_format_is_sent_and_sniffed(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer, fmt: str, media_type: str
) -> None:
    result = await adapter.generate(ask(output_format=fmt, model="gpt-image-1-mini"))
    (image,) = result.images
    assert image.media_type == media_type
    assert opened(image.data).size == (1024, 1024)
    (body,) = server.generation_bodies()
    assert body["output_format"] == fmt and "response_format" not in body


async def test_no_response_format_for_gpt_image_but_b64_for_dall_e(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    await adapter.generate(ask(model="gpt-image-1.5"))
    await adapter.generate(ask(model="dall-e-3"))
    gpt, dalle = server.generation_bodies()
    assert "response_format" not in gpt
    assert dalle["response_format"] == "b64_json"


async def test_the_fake_refuses_response_format_for_gpt_image(adapter: OpenAIImagesAdapter) -> None:
    # extra passes through as given: a caller forcing the field gets OpenAI's own refusal.
    with pytest.raises(BadRequest, match="Unknown parameter: 'response_format'") as caught:
        await adapter.generate(ask(extra={"response_format": "b64_json"}))
    assert not caught.value.retryable


# --- edits --------------------------------------------------------------------------------


async def test_edit_with_one_reference_is_multipart(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    result = await adapter.generate(ask("Make it night", references=(PHOTO,), quality="low"))

    assert len(result.images) == 1 and opened(result.images[0].data).size == (1024, 1024)
    assert result.usage is not None and result.usage["input_tokens_details"]["image_tokens"] == 323
    (edit,) = server.edits
    assert edit.image_field == "image[]"
    assert edit.images == [PHOTO.data]
    assert edit.filenames == ["photo.png"] and edit.content_types == ["image/png"]
    assert edit.mask is None
    assert edit.values == {
        "model": MODEL,
        "prompt": "Make it night",
        "n": "1",
        "size": "1024x1024",
        "quality": "low",
    }
    assert "input_fidelity" not in edit.fields and "response_format" not in edit.fields
    (sent,) = server.requests_to("/v1/images/edits")
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert server.generation_bodies() == []


async def test_edit_with_three_references_a_mask_and_input_fidelity(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    request = ask(
        "Put them together", n=3, references=(PHOTO, SKETCH, STYLE), mask=MASK, input_fidelity="high"
    )
    result = await adapter.generate(request)

    assert len(result.images) == 3
    (edit,) = server.edits
    assert edit.fields.count("image[]") == 3
    assert edit.images == [PHOTO.data, SKETCH.data, STYLE.data]  # in order
    assert edit.content_types == ["image/png", "image/jpeg", "image/webp"]
    assert edit.mask == MASK.data
    assert edit.values["input_fidelity"] == "high" and edit.values["n"] == "3"


async def test_mask_alone_or_too_many_references_are_refused_before_sending(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    with pytest.raises(InvalidRequest, match="mask needs an image"):
        await adapter.generate(ask(mask=MASK))
    with pytest.raises(InvalidRequest, match="at most 16"):
        await adapter.generate(ask(references=(PHOTO,) * 17))
    assert server.requests == []


async def test_input_fidelity_to_mini_is_the_apis_400(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    # The domain never does this (the capability data says mini has no input fidelity); the fake
    # answers it as OpenAI does, and the adapter maps that to a non-retryable BadRequest.
    with pytest.raises(BadRequest, match="input_fidelity") as caught:
        await adapter.generate(ask(model="gpt-image-1-mini", references=(PHOTO,), input_fidelity="high"))
    assert not caught.value.retryable
    assert server.edits == []


# --- errors -------------------------------------------------------------------------------


async def test_wrong_key_is_authentication_error_without_the_key(
    client: httpx.AsyncClient, server: FakeOpenAIImagesServer
) -> None:
    wrong = "sk-proj-WRONGkey-abcdefghijklmnop"
    adapter = make(client, f"{server.url}/v1", key=wrong)
    for request in (ask(), ask(references=(PHOTO,))):
        with pytest.raises(AuthenticationError, match="Incorrect API key") as caught:
            await adapter.generate(request)
        assert not caught.value.retryable and caught.value.status == 401
        assert wrong not in str(caught.value) and wrong[:8] + "*" not in str(caught.value)


async def test_unknown_size_is_bad_request(adapter: OpenAIImagesAdapter) -> None:
    with pytest.raises(BadRequest, match="Invalid value: '512x512'") as caught:
        await adapter.generate(ask(size="512x512"))
    assert caught.value.status == 400 and not caught.value.retryable
    no_secret(caught.value)


@pytest.mark.parametrize("references", [(), (PHOTO,)])
async def test_moderation_refusal_is_content_filtered(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer, references: tuple[InputImage, ...]
) -> None:
    server.script(ImagesReply(refused=True))
    with pytest.raises(ContentFiltered) as caught:
        await adapter.generate(ask(references=references))
    assert REFUSAL_MESSAGE in str(caught.value)  # the vendor's words reach the user
    assert not caught.value.retryable and caught.value.status == 400
    no_secret(caught.value)


async def test_content_policy_violation_is_content_filtered(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    body = server.error_payload(
        400,
        "Your request was rejected because it may violate our content policy.",
        code="content_policy_violation",
    )
    server.script(Reply(status=400, error_body=body))
    with pytest.raises(ContentFiltered, match="content policy"):
        await adapter.generate(ask(model="dall-e-3"))


async def test_rate_limit_carries_retry_after(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    server.script(ImagesReply(status=429, headers={"retry-after": "7"}))
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.generate(ask())
    assert caught.value.retry_after == 7.0 and caught.value.retryable


async def test_rate_limit_on_an_edit_carries_retry_after(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    server.script(ImagesReply(status=429, headers={"retry-after": "3"}))
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.generate(ask(references=(PHOTO,)))
    assert caught.value.retry_after == 3.0


async def test_server_error_is_unavailable(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer
) -> None:
    server.script(ImagesReply(status=500))
    with pytest.raises(ProviderUnavailable, match="HTTP 500") as caught:
        await adapter.generate(ask())
    assert caught.value.retryable
    no_secret(caught.value)


async def test_unknown_model_is_not_found(adapter: OpenAIImagesAdapter) -> None:
    with pytest.raises(UpstreamModelNotFound):
        await adapter.generate(ask(model="gpt-image-9"))


async def test_timeout(client: httpx.AsyncClient) -> None:
    with BlackHole() as hole:
        for request in (ask(), ask(references=(PHOTO,))):
            with pytest.raises(ProviderTimeout) as caught:
                await make(client, f"{hole.url}/v1", timeout=0.3).generate(request)
            assert caught.value.retryable
            no_secret(caught.value)


async def test_slow_edit_times_out(client: httpx.AsyncClient, server: FakeOpenAIImagesServer) -> None:
    server.script(ImagesReply(delay=30))  # the fake stops waiting when the client hangs up
    with pytest.raises(ProviderTimeout):
        await make(client, f"{server.url}/v1", timeout=0.3).generate(ask(references=(PHOTO,)))


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}/v1")
    for request in (ask(), ask(references=(PHOTO,))):
        with pytest.raises(ProviderConnectionError, match="refused") as caught:
            await adapter.generate(request)
        assert caught.value.retryable
        no_secret(caught.value)


@pytest.mark.parametrize("references", [(), (PHOTO,)])
async def test_truncated_body(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer, references: tuple[InputImage, ...]
) -> None:
    server.script(ImagesReply(drop_after=0))
    with pytest.raises(ProviderConnectionError, match="dropped the connection") as caught:
        await adapter.generate(ask(references=references))
    assert caught.value.retryable
    no_secret(caught.value)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (ImagesReply(image_data="!!! not base64 !!!"), "not valid base64"),
        (ImagesReply(image_data=base64.b64encode(b"plain text, no image").decode()), "not a PNG"),
        (ImagesReply(image_data=""), "without data"),
        (ImagesReply(images=0), "empty `data`"),
        (Reply(raw=b'{"created": 1, "data": [{"b64_json": '), "not JSON"),
        (Reply(raw=b'["a list"]'), "not an object"),
    ],
)
async def test_bad_answers_are_protocol_errors(
    adapter: OpenAIImagesAdapter, server: FakeOpenAIImagesServer, reply: Reply, match: str
) -> None:
    server.script(reply)
    with pytest.raises(ProviderProtocolError, match=match) as caught:
        await adapter.generate(ask())
    assert caught.value.retryable


# --- models and health --------------------------------------------------------------------


async def test_list_models_keeps_image_models(adapter: OpenAIImagesAdapter) -> None:
    models = {m.id: m for m in await adapter.list_models()}
    assert set(models) == {"gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-3", "dall-e-2"}
    one, mini, dalle = models["gpt-image-1"], models["gpt-image-1-mini"], models["dall-e-3"]
    assert (
        one.capabilities is not None and one.capabilities.reference_images and one.capabilities.input_fidelity
    )
    assert mini.capabilities is not None and not mini.capabilities.input_fidelity
    assert dalle.capabilities is not None and not dalle.capabilities.reference_images
    assert one.owned_by == "system" and one.details["created"] == 1_715_367_049


async def test_probe(
    adapter: OpenAIImagesAdapter, client: httpx.AsyncClient, server: FakeOpenAIImagesServer
) -> None:
    assert (await adapter.probe()).ok
    assert server.requests_to("/v1/models")
    wrong = await make(client, f"{server.url}/v1", key="sk-proj-NOPE-0000000000000000").probe()
    assert not wrong.ok and wrong.error is not None and "NOPE-00000" not in wrong.error
    refused = await make(client, f"http://127.0.0.1:{closed_port()}/v1").probe()
    assert not refused.ok and refused.error is not None and "refused" in refused.error


async def test_list_models_errors_are_mapped(
    client: httpx.AsyncClient, server: FakeOpenAIImagesServer
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await make(client, f"{server.url}/v1", key="sk-proj-NOPE-0000000000000000").list_models()
    assert "NOPE-00000" not in str(caught.value)
    server.models_reply = Reply(raw=b"not json")
    try:
        with pytest.raises(ProviderProtocolError):
            await make(client, f"{server.url}/v1").list_models()
    finally:
        server.models_reply = None


# --- the official SDK against the fake ------------------------------------------------------


@pytest.fixture
async def sdk(server: FakeOpenAIImagesServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=10) as c:
        yield c


async def test_sdk_generate_parses_the_fakes_answer(
    sdk: openai.AsyncOpenAI, server: FakeOpenAIImagesServer
) -> None:
    response = await sdk.images.generate(model="gpt-image-1", prompt="A lighthouse", n=2, size="1024x1024")
    assert response.data is not None and len(response.data) == 2
    for item in response.data:
        assert item.b64_json is not None
        picture = opened(base64.b64decode(item.b64_json))
        assert (picture.format, picture.size) == ("PNG", (1024, 1024))
    assert response.usage is not None
    assert response.usage.input_tokens_details.text_tokens == 20
    assert response.usage.output_tokens == 2 * 272
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert (response.size, response.quality, response.output_format) == ("1024x1024", "medium", "png")
    (body,) = server.generation_bodies()
    assert "response_format" not in body  # the SDK, like our adapter, leaves it out


async def test_sdk_edit_with_two_images_is_accepted_and_parses(
    sdk: openai.AsyncOpenAI, server: FakeOpenAIImagesServer
) -> None:
    files = [("a.png", PHOTO.data, "image/png"), ("b.jpg", SKETCH.data, "image/jpeg")]
    response = await sdk.images.edit(
        model="gpt-image-1", image=files, prompt="Merge them", input_fidelity="high", size="1024x1536"
    )
    (edit,) = server.edits
    assert edit.image_field == "image[]" and edit.fields.count("image[]") == 2
    assert edit.images == [PHOTO.data, SKETCH.data]
    assert edit.values["input_fidelity"] == "high"
    assert response.data is not None and len(response.data) == 1
    assert response.data[0].b64_json is not None
    assert opened(base64.b64decode(response.data[0].b64_json)).size == (1024, 1536)
    assert response.usage is not None and response.usage.input_tokens_details.image_tokens == 2 * 323


async def test_sdk_edit_with_one_image_and_a_mask(
    sdk: openai.AsyncOpenAI, server: FakeOpenAIImagesServer
) -> None:
    response = await sdk.images.edit(
        model="gpt-image-1", image=("a.png", PHOTO.data, "image/png"), mask=("m.png", MASK.data), prompt="Sky"
    )
    (edit,) = server.edits
    assert edit.image_field == "image" and edit.images == [PHOTO.data] and edit.mask == MASK.data
    assert response.data is not None and len(response.data) == 1


async def test_sdk_sees_a_refusal_as_bad_request_with_its_code(
    sdk: openai.AsyncOpenAI, server: FakeOpenAIImagesServer
) -> None:
    server.script(ImagesReply(refused=True))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(model="gpt-image-1", prompt="something refused")
    assert caught.value.status_code == 400
    assert caught.value.code == "moderation_blocked"
    assert caught.value.type == "image_generation_user_error"


async def test_sdk_sees_the_fakes_validation_errors(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(model="gpt-image-1", prompt="x", response_format="b64_json")
    assert caught.value.code == "unknown_parameter" and caught.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(
            model="gpt-image-1-mini",
            image=("a.png", PHOTO.data, "image/png"),
            prompt="x",
            input_fidelity="low",
        )
    assert caught.value.param == "input_fidelity"


async def test_sdk_sees_a_wrong_key_as_authentication_error(server: FakeOpenAIImagesServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="sk-wrong-000000000000", max_retries=0
    ) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            await c.images.generate(model="gpt-image-1", prompt="x")
    assert caught.value.code == "invalid_api_key"
