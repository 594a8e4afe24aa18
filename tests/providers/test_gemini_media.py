"""GeminiImagesAdapter against the fake Gemini image API over real HTTP, and google-genai against the fake."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContentFiltered,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media import cloud_image_capabilities, create_image_adapter
from mmstudio.providers.media.base import ImageAdapter, ImageProgress, ImageRequest, InputImage
from mmstudio.providers.media.gemini_media import GEMINI_IMAGE_MODELS, GeminiImagesAdapter
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import BlackHole, Reply, closed_port
from tests.fakes.gemini_images_server import FakeGeminiImagesServer, GeminiImageReply, decode_bytes
from tests.fakes.gemini_server import bad_key_body, google_error_body
from tests.fakes.images import make_image

KEY = "AIzaFAKE-gemini-image-key-0123456789"
MODEL = "gemini-2.5-flash-image"
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGeminiImagesServer]:
    with FakeGeminiImagesServer(api_key=KEY, max_page_size=2) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeGeminiImagesServer) -> None:
    server.reset()
    server.default = GeminiImageReply()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(
    client: httpx.AsyncClient, base_url: str, *, key: str = KEY, timeout: float = 5.0
) -> GeminiImagesAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="gemini", timeout=timeout)
    return GeminiImagesAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeGeminiImagesServer) -> GeminiImagesAdapter:
    return make(client, server.base_url)


def ask(prompt: str = "A red fox in snow", **kwargs: Any) -> ImageRequest:
    kwargs.setdefault("model", MODEL)
    return ImageRequest(prompt=prompt, **kwargs)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # a truncated or corrupt file fails here, not just at the header
    return image


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[:16] not in str(exc)


# --- interface and capability data --------------------------------------------------------


async def test_adapter_satisfies_the_protocol_and_is_registered(
    adapter: GeminiImagesAdapter, client: httpx.AsyncClient, server: FakeGeminiImagesServer
) -> None:
    assert isinstance(adapter, ImageAdapter)
    assert adapter.protocol == "gemini_images"
    built = create_image_adapter("gemini_images", EndpointConfig(base_url=server.base_url), client)
    assert isinstance(built, GeminiImagesAdapter)
    flash, pro = (
        GEMINI_IMAGE_MODELS["gemini-2.5-flash-image"],
        GEMINI_IMAGE_MODELS["gemini-3-pro-image-preview"],
    )
    assert cloud_image_capabilities("gemini", "gemini-2.5-flash-image") is flash
    for caps in (flash, pro):
        assert caps.supports_references and caps.supports_edit and not caps.supports_mask
        assert caps.aspect_ratios == RATIOS and caps.sizes == ()
        assert (caps.max_n, caps.output_formats, caps.key_env) == (4, ("png",), "GEMINI_API_KEY")
    assert (flash.max_references, pro.max_references) == (3, 14)


# --- generation ---------------------------------------------------------------------------


async def test_text_and_image_with_references_and_aspect_ratio(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    photo = make_image(20, 10, "PNG", (10, 200, 30))
    sketch = make_image(12, 12, "JPEG", (250, 250, 0))
    request = ask(
        aspect_ratio="16:9",
        references=(InputImage(photo, "image/png"), InputImage(sketch, "image/jpeg", "sketch.jpg")),
    )
    result = await adapter.generate(request)

    assert result.text == "Here you go"
    assert len(result.images) == 1
    image = result.images[0]
    assert image.media_type == "image/png"
    picture = opened(image.data)
    assert (picture.format, picture.size) == ("PNG", (84, 48))  # the fake's 16:9, so the ratio arrived
    assert result.usage is not None
    assert result.usage["promptTokenCount"] == 12 + 2 * 258  # two input images billed
    assert result.usage["candidatesTokenCount"] == 1290
    assert result.info["model_version"] == MODEL
    assert len(result.info["response_ids"]) == 1

    (sent,) = server.requests
    assert (sent.method, sent.path) == ("POST", f"/v1beta/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    assert "key" not in sent.query and "authorization" not in sent.headers
    assert sent.json() == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "A red fox in snow"},
                    {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(photo).decode()}},
                    {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(sketch).decode()}},
                ],
            }
        ],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "16:9"}},
    }


async def test_without_aspect_ratio_no_image_config_and_extra_merges(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    result = await adapter.generate(ask())
    assert opened(result.images[0].data).size == (64, 64)
    assert server.generate_bodies()[-1]["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"]}

    extra = {"generationConfig": {"imageConfig": {"imageSize": "2K"}}, "safetySettings": []}
    await adapter.generate(ask(aspect_ratio="3:2", extra=extra))
    body = server.generate_bodies()[-1]
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "3:2", "imageSize": "2K"}
    assert body["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]
    assert body["safetySettings"] == []


async def test_n_makes_one_call_per_image_and_merges(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(GeminiImageReply(text="First."), GeminiImageReply(text="Second."))
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    result = await adapter.generate(ask(n=2, aspect_ratio="9:16"), progress)

    assert len(server.generate_bodies()) == 2
    assert server.generate_bodies()[0] == server.generate_bodies()[1]
    assert len(result.images) == 2
    first, second = (opened(i.data) for i in result.images)
    assert first.size == second.size == (48, 84)
    assert first.getpixel((0, 0)) != second.getpixel((0, 0))  # two distinct images, not one twice
    assert result.text == "First.\n\nSecond."
    assert result.usage is not None
    assert result.usage["candidatesTokenCount"] == 2 * 1290
    assert result.usage["totalTokenCount"] == 2 * (12 + 1290)
    assert len(set(result.info["response_ids"])) == 2
    assert [p.percent for p in seen] == [50.0, 100.0]


async def test_a_call_that_returns_several_images_counts_for_them(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(GeminiImageReply(images=3))
    result = await adapter.generate(ask(n=2))
    assert len(result.images) == 2
    assert len(server.requests) == 1


async def test_thought_images_are_not_the_answer(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(GeminiImageReply(thought_image=True, size=(30, 20)))
    result = await adapter.generate(ask(model="gemini-3-pro-image-preview"))
    assert len(result.images) == 1
    assert opened(result.images[0].data).size == (30, 20)  # not the fake's 8x8 interim sketch
    assert server.requests[-1].path == "/v1beta/models/gemini-3-pro-image-preview:generateContent"


async def test_jpeg_output_is_sniffed(adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer) -> None:
    server.script(GeminiImageReply(image_format="JPEG", text=""))
    result = await adapter.generate(ask())
    assert result.images[0].media_type == "image/jpeg"
    assert opened(result.images[0].data).format == "JPEG"
    assert result.text == ""


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    ["IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "PROHIBITED_CONTENT", "SAFETY", "NO_IMAGE", "IMAGE_OTHER"],
)
async def test_refusal_finish_reasons_are_content_filtered(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer, reason: str
) -> None:
    server.script(GeminiImageReply(finish_reason=reason, text=""))
    with pytest.raises(ContentFiltered) as caught:
        await adapter.generate(ask())
    assert f"finishReason {reason}" in str(caught.value)
    assert not caught.value.retryable
    assert (caught.value.provider, caught.value.model) == ("gemini", MODEL)


async def test_refusal_carries_the_vendors_words(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(
        GeminiImageReply(finish_reason="IMAGE_SAFETY", finish_message="Unable to show the generated image."),
        GeminiImageReply(finish_reason="NO_IMAGE", text="I cannot draw real people."),
    )
    with pytest.raises(ContentFiltered, match=r"IMAGE_SAFETY.*Unable to show the generated image"):
        await adapter.generate(ask())
    with pytest.raises(ContentFiltered, match=r"NO_IMAGE.*I cannot draw real people"):
        await adapter.generate(ask())


async def test_prompt_block_reason_is_content_filtered(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(GeminiImageReply(block_reason="PROHIBITED_CONTENT"))
    with pytest.raises(ContentFiltered, match="blockReason PROHIBITED_CONTENT"):
        await adapter.generate(ask())


async def test_text_only_answer_is_a_clear_no_image_error(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(GeminiImageReply(images=0, text="Would you like the fox facing left or right?"))
    with pytest.raises(ProviderProtocolError) as caught:
        await adapter.generate(ask())
    assert type(caught.value) is ProviderProtocolError
    assert str(caught.value) == "gemini returned no image: Would you like the fox facing left or right?"

    server.script(GeminiImageReply(images=0, text="", finish_reason="MAX_TOKENS"))
    with pytest.raises(
        ProviderProtocolError, match=r"no image \(finishReason MAX_TOKENS\): \(no text either\)"
    ):
        await adapter.generate(ask())


async def test_a_refusal_midway_stops_the_run(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(GeminiImageReply(), GeminiImageReply(finish_reason="IMAGE_SAFETY", text=""))
    with pytest.raises(ContentFiltered):
        await adapter.generate(ask(n=4))
    assert len(server.requests) == 2  # no paid calls after the refusal


# --- upstream failures --------------------------------------------------------------------


async def test_bad_key_is_authentication_error(
    client: httpx.AsyncClient, server: FakeGeminiImagesServer
) -> None:
    wrong = "AIza-wrong-image-key-987654321"
    with pytest.raises(AuthenticationError, match="API key not valid") as caught:
        await make(client, server.base_url, key=wrong).generate(ask())
    assert caught.value.status == 400 and not caught.value.retryable
    assert wrong not in str(caught.value)
    no_secret(caught.value)


@pytest.mark.parametrize(
    ("reply", "error", "status"),
    [
        (Reply(status=400, error_body=bad_key_body()), AuthenticationError, 400),
        (Reply(status=403), AuthenticationError, 403),
        (
            Reply(status=400, error_body=google_error_body(400, "Invalid value at 'contents'")),
            BadRequest,
            400,
        ),
        (Reply(status=500), ProviderUnavailable, 500),
        (Reply(status=503), ProviderUnavailable, 503),
        (Reply(status=504), ProviderTimeout, 504),
        (Reply(status=502, raw=b"<html><body>Bad Gateway</body></html>"), ProviderUnavailable, 502),
    ],
)
async def test_error_statuses_map_to_our_errors(
    adapter: GeminiImagesAdapter,
    server: FakeGeminiImagesServer,
    reply: Reply,
    error: type[ProviderError],
    status: int,
) -> None:
    server.script(reply)
    with pytest.raises(error) as caught:
        await adapter.generate(ask())
    assert type(caught.value) is error
    assert (caught.value.status, caught.value.provider) == (status, "gemini")
    no_secret(caught.value)


async def test_rate_limit_reads_retry_info(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(Reply(status=429), Reply(status=429, headers={"retry-after": "4"}))
    with pytest.raises(ProviderRateLimited, match="RESOURCE_EXHAUSTED") as caught:
        await adapter.generate(ask())
    assert (caught.value.status, caught.value.retry_after) == (429, 30.0)  # the body's RetryInfo
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.generate(ask())
    assert caught.value.retry_after == 4.0  # the header wins


async def test_unknown_model_is_not_found(adapter: GeminiImagesAdapter) -> None:
    with pytest.raises(UpstreamModelNotFound, match="models/nope-image is not found"):
        await adapter.generate(ask(model="nope-image"))


async def test_key_echoed_by_upstream_is_redacted(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(
        Reply(status=403, error_body=google_error_body(403, f"Consumer 'api_key:{KEY}' has been suspended.")),
        GeminiImageReply(images=0, text=f"your key is {KEY}"),
    )
    with pytest.raises(AuthenticationError) as caught:
        await adapter.generate(ask())
    no_secret(caught.value)
    assert "***" in str(caught.value)
    with pytest.raises(ProviderProtocolError) as protocol:
        await adapter.generate(ask())
    no_secret(protocol.value)


async def test_timeout(client: httpx.AsyncClient) -> None:
    with BlackHole() as hole:
        start = time.perf_counter()
        with pytest.raises(ProviderTimeout) as caught:
            await make(client, f"{hole.url}/v1beta", timeout=0.3).generate(ask())
        assert time.perf_counter() - start < 3.0
    no_secret(caught.value)


async def test_slow_upstream_times_out(client: httpx.AsyncClient, server: FakeGeminiImagesServer) -> None:
    server.script(GeminiImageReply(delay=3.0))
    with pytest.raises(ProviderTimeout):
        await make(client, server.base_url, timeout=0.3).generate(ask())


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}/v1beta")
    with pytest.raises(ProviderConnectionError, match="refused") as caught:
        await adapter.generate(ask())
    no_secret(caught.value)


async def test_truncated_body(adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer) -> None:
    server.script(GeminiImageReply(drop_after=0))
    with pytest.raises(ProviderConnectionError, match="dropped the connection") as caught:
        await adapter.generate(ask())
    assert caught.value.retryable
    no_secret(caught.value)


async def test_malformed_json_is_protocol_error(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(Reply(raw=b'{"candidates": [{"content": '))
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        await adapter.generate(ask())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("%%% not base64 %%%", "not valid base64"),
        (base64.b64encode(b"just some text, not a picture").decode(), "not a PNG, JPEG, WebP or GIF"),
        ("", "without data"),
    ],
)
async def test_bad_image_data_is_protocol_error(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer, data: str, match: str
) -> None:
    server.script(GeminiImageReply(image_data=data))
    with pytest.raises(ProviderProtocolError, match=match):
        await adapter.generate(ask())


@pytest.mark.parametrize(
    "body",
    [
        {"candidates": []},
        {"candidates": [{"content": {"parts": "nope"}, "finishReason": "STOP"}]},
        {"promptFeedback": "blocked"},
        ["not", "an", "object"],
    ],
)
async def test_odd_shapes_are_protocol_errors(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer, body: Any
) -> None:
    server.script(Reply(raw=json.dumps(body).encode()))
    with pytest.raises(ProviderProtocolError):
        await adapter.generate(ask())


async def test_error_object_in_a_200_is_mapped(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    server.script(Reply(raw=json.dumps(google_error_body(503)).encode()))
    with pytest.raises(ProviderUnavailable, match="overloaded"):
        await adapter.generate(ask())


# --- models and health --------------------------------------------------------------------


async def test_list_models_keeps_generate_content_image_models(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    models = await adapter.list_models()
    # Imagen's name contains "image" too, but it speaks :predict; the chat model is no image model.
    assert [m.id for m in models] == ["gemini-2.5-flash-image", "gemini-3-pro-image-preview"]
    assert all(m.owned_by == "google" and m.capabilities is not None for m in models)
    assert all(m.capabilities is not None and m.capabilities.reference_images for m in models)
    assert len(server.requests_to("/v1beta/models")) == 2  # followed the pages (page size 2)


async def test_probe(
    adapter: GeminiImagesAdapter, client: httpx.AsyncClient, server: FakeGeminiImagesServer
) -> None:
    result = await adapter.probe()
    assert result.ok and result.error is None
    assert server.requests[-1].path == "/v1beta/models"
    refused = await make(client, f"http://127.0.0.1:{closed_port()}/v1beta").probe()
    assert not refused.ok and refused.error is not None and KEY not in refused.error
    bad = await make(client, server.base_url, key="AIza-wrong").probe()
    assert not bad.ok and bad.error is not None and "API key not valid" in bad.error


# --- the fake checks requests like the real API -------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseModality": ["IMAGE"]}},
            "Unknown name",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"imageConfig": {"aspect": "1:1"}},
            },
            "Unknown name",
        ),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "@@"}}]}]}, "Base64"),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"imageConfig": {"aspectRatio": "7:5"}},
            },
            "7:5",
        ),
        ({"contents": []}, "contents is not specified"),
    ],
)
async def test_fake_rejects_what_the_api_rejects(
    adapter: GeminiImagesAdapter, body: dict[str, Any], match: str
) -> None:
    with pytest.raises(BadRequest, match=match):
        await adapter.generate(ask(extra=body))


async def test_fake_refuses_image_output_from_a_chat_model(adapter: GeminiImagesAdapter) -> None:
    with pytest.raises(BadRequest, match="response modalities"):
        await adapter.generate(ask(model="gemini-2.5-flash"))


# --- the official SDK proves the fake faithful --------------------------------------------


@contextlib.asynccontextmanager
async def sdk_client(server: FakeGeminiImagesServer) -> AsyncIterator[Any]:
    """google-genai's client pointed at the fake. It gets an aiohttp session of ours: the one it
    makes itself subclasses `aiohttp.ClientSession`, which aiohttp answers with a DeprecationWarning."""
    genai = pytest.importorskip("google.genai")
    import aiohttp
    from google.genai import types

    async with aiohttp.ClientSession() as session:
        options = types.HttpOptions(base_url=server.url, api_version="v1beta", aiohttp_client=session)
        client = genai.Client(api_key=KEY, http_options=options)
        try:
            yield client
        finally:
            await client.aio.aclose()
            client.close()


async def test_google_genai_sdk_talks_to_the_fake(server: FakeGeminiImagesServer) -> None:
    png = make_image(16, 16, "PNG", (0, 0, 255))
    async with sdk_client(server) as client:
        from google.genai import types

        response = await client.aio.models.generate_content(
            model=MODEL,
            contents=["Make it a watercolour", types.Part.from_bytes(data=png, mime_type="image/png")],
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(aspect_ratio="16:9")
            ),
        )

    # The fake accepted the SDK's request (it answers 400 to unknown names or bad base64) ...
    (sent,) = server.requests
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    body = sent.json()
    parts = body["contents"][0]["parts"]
    assert parts[0] == {"text": "Make it a watercolour"}
    assert set(parts[1]) == {"inlineData"}
    inline_sent = parts[1]["inlineData"]
    # google-genai writes ``mime_type`` here in snake_case, which the real API (proto JSON) accepts.
    assert inline_sent.get("mimeType", inline_sent.get("mime_type")) == "image/png"
    assert decode_bytes(parts[1]["inlineData"]["data"]) == png  # the SDK sends URL-safe base64
    assert body["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}

    # ... and the SDK parsed the fake's reply into its own types.
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts
    assert [p.text for p in content.parts if p.text] == ["Here you go"]
    inline = [p.inline_data for p in content.parts if p.inline_data is not None]
    assert len(inline) == 1 and inline[0].mime_type == "image/png" and inline[0].data is not None
    assert opened(inline[0].data).size == (84, 48)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata is not None and response.usage_metadata.candidates_token_count == 1290
    assert response.model_version == MODEL


async def test_sdk_reads_the_fakes_refusals_as_google_sends_them(server: FakeGeminiImagesServer) -> None:
    server.script(
        GeminiImageReply(finish_reason="IMAGE_SAFETY", text="", finish_message="Unable to show the image."),
        GeminiImageReply(block_reason="PROHIBITED_CONTENT"),
    )
    async with sdk_client(server) as client:
        from google.genai import types

        refused = await client.aio.models.generate_content(model=MODEL, contents="x")
        blocked = await client.aio.models.generate_content(model=MODEL, contents="y")
    assert refused.candidates and refused.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert blocked.prompt_feedback is not None
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert not blocked.candidates


async def test_adapter_reads_what_the_sdk_reads(
    adapter: GeminiImagesAdapter, server: FakeGeminiImagesServer
) -> None:
    # The same scripted reply through both readers: the adapter must find the image the SDK finds.
    reply = GeminiImageReply(text="Done", size=(10, 30))
    server.script(reply, reply)
    async with sdk_client(server) as client:
        from google.genai import types

        sdk = await client.aio.models.generate_content(
            model=MODEL,
            contents="a tall box",
            config=types.GenerateContentConfig(response_modalities=["IMAGE", "TEXT"]),
        )
    ours = await adapter.generate(ask("a tall box"))
    assert sdk.candidates and sdk.candidates[0].content and sdk.candidates[0].content.parts
    assert "".join(p.text for p in sdk.candidates[0].content.parts if p.text) == ours.text == "Done"
    sdk_image = next(p.inline_data for p in sdk.candidates[0].content.parts if p.inline_data is not None)
    assert sdk_image.data is not None
    assert opened(sdk_image.data).size == opened(ours.images[0].data).size == (10, 30)
