"""OpenAICompatImagesAdapter against fake LocalAI and sd-server image APIs over real HTTP."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from mmstudio.errors import (
    BadRequest,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import ImageAdapter, ImageRequest
from mmstudio.providers.media.openai_compat_images import (
    OPENAI_COMPAT_IMAGE_CAPABILITIES,
    OpenAICompatImagesAdapter,
)
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import BlackHole, closed_port
from tests.fakes.openai_images_local_server import FakeLocalImagesServer, LocalImagesReply, error_payload

KEY = "localai-key-0123456789"


@pytest.fixture(scope="module")
def localai() -> Iterator[FakeLocalImagesServer]:
    with FakeLocalImagesServer(flavor="localai", models=["stablediffusion", "llama-3.2-1b"]) as fake:
        yield fake


@pytest.fixture(scope="module")
def sdcpp() -> Iterator[FakeLocalImagesServer]:
    with FakeLocalImagesServer(flavor="sdcpp") as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(localai: FakeLocalImagesServer, sdcpp: FakeLocalImagesServer) -> None:
    for fake in (localai, sdcpp):
        fake.reset()
        fake.default = LocalImagesReply()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(
    client: httpx.AsyncClient, base_url: str, *, key: str | None = KEY, timeout: float = 10.0
) -> OpenAICompatImagesAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="localai", timeout=timeout)
    return OpenAICompatImagesAdapter(config, client)


def ask(**kwargs: Any) -> ImageRequest:
    values: dict[str, Any] = {"model": "stablediffusion", "prompt": "a red fox in snow", "size": "256x256"}
    values.update(kwargs)
    return ImageRequest(**values)


def dims(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def posts(server: FakeLocalImagesServer) -> list[Any]:
    return server.requests_to("/v1/images/generations")


async def test_adapter_satisfies_the_protocol(
    client: httpx.AsyncClient, localai: FakeLocalImagesServer
) -> None:
    adapter = make(client, f"{localai.url}/v1")
    assert isinstance(adapter, ImageAdapter)
    assert adapter.protocol == "openai_compat_images"
    caps = OPENAI_COMPAT_IMAGE_CAPABILITIES
    assert caps.sizes == ("256x256", "512x512", "768x768", "1024x1024")
    assert (caps.max_n, caps.supports_references, caps.max_references, caps.supports_negative_prompt) == (
        4,
        False,
        0,
        False,
    )


# --- generation ---------------------------------------------------------------------------


async def test_b64_path_and_the_body(client: httpx.AsyncClient, localai: FakeLocalImagesServer) -> None:
    adapter = make(client, f"{localai.url}/v1")
    result = await adapter.generate(ask(n=2, size="512x512", seed=11, steps=25))

    (sent,) = posts(localai)
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "model": "stablediffusion",
        "prompt": "a red fox in snow",
        "n": 2,
        "response_format": "b64_json",
        "size": "512x512",
        "seed": 11,
        "step": 25,
    }
    assert [(i.media_type, dims(i.data)) for i in result.images] == [("image/png", (512, 512))] * 2
    assert result.images[0].seed is None  # the server does not say which seed it used
    assert result.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert "id" in result.info and "created" in result.info
    assert localai.requests_to("/generated-images") == []


async def test_url_path_is_fetched_from_the_same_host(
    client: httpx.AsyncClient, localai: FakeLocalImagesServer
) -> None:
    adapter = make(client, f"{localai.url}/v1")
    # LocalAI answers a URL unless b64_json is asked for: `extra` overrides our response_format.
    result = await adapter.generate(ask(n=2, extra={"response_format": "url"}))

    fetched = [r for r in localai.requests if r.path.startswith("/generated-images/")]
    assert len(fetched) == 2 and all(r.method == "GET" for r in fetched)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fetched)
    assert [dims(i.data) for i in result.images] == [(256, 256)] * 2
    assert [i.data for i in result.images] == [localai.files[r.path.rsplit("/", 1)[1]] for r in fetched]


async def test_a_url_on_another_host_is_refused(
    client: httpx.AsyncClient, localai: FakeLocalImagesServer
) -> None:
    adapter = make(client, f"{localai.url}/v1")
    localai.script(LocalImagesReply(url_base="http://169.254.169.254"))
    with pytest.raises(ProviderProtocolError, match=r"another host \(169\.254\.169\.254\)"):
        await adapter.generate(ask(extra={"response_format": "url"}))
    # Same address, other port: another server, refused too.
    localai.script(LocalImagesReply(url_base=f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(ProviderProtocolError, match="another host"):
        await adapter.generate(ask(extra={"response_format": "url"}))


async def test_a_url_that_is_not_an_image(client: httpx.AsyncClient, localai: FakeLocalImagesServer) -> None:
    adapter = make(client, f"{localai.url}/v1")
    localai.script(LocalImagesReply(not_an_image=True), LocalImagesReply(missing_file=True))
    with pytest.raises(ProviderProtocolError, match="not a PNG"):
        await adapter.generate(ask(extra={"response_format": "url"}))
    with pytest.raises(UpstreamModelNotFound, match="HTTP 404"):
        await adapter.generate(ask(extra={"response_format": "url"}))


async def test_sd_server_always_answers_b64(client: httpx.AsyncClient, sdcpp: FakeLocalImagesServer) -> None:
    adapter = make(client, f"{sdcpp.url}/v1", key=None)
    result = await adapter.generate(ask(model="sd-cpp-local", size="768x768"))
    assert dims(result.images[0].data) == (768, 768)
    assert result.info["output_format"] == "png"
    assert "authorization" not in posts(sdcpp)[0].headers


async def test_bad_base64_is_a_protocol_error(
    client: httpx.AsyncClient, localai: FakeLocalImagesServer
) -> None:
    localai.script(LocalImagesReply(bad_image=True))
    with pytest.raises(ProviderProtocolError, match="not valid base64"):
        await make(client, f"{localai.url}/v1").generate(ask())


async def test_an_answer_without_images(client: httpx.AsyncClient, localai: FakeLocalImagesServer) -> None:
    localai.script(LocalImagesReply(raw=b'{"created": 1, "data": []}'))
    with pytest.raises(ProviderProtocolError, match="without images"):
        await make(client, f"{localai.url}/v1").generate(ask())


# --- errors -------------------------------------------------------------------------------


async def test_localai_error_body(client: httpx.AsyncClient, localai: FakeLocalImagesServer) -> None:
    body = error_payload("localai", 500, "could not load model: rpc error: code = Unknown")
    localai.script(LocalImagesReply(status=500, error_body=body))
    with pytest.raises(ProviderUnavailable, match="could not load model: rpc error") as info:
        await make(client, f"{localai.url}/v1").generate(ask())
    assert info.value.status == 500


async def test_sd_server_errors(client: httpx.AsyncClient, sdcpp: FakeLocalImagesServer) -> None:
    adapter = make(client, f"{sdcpp.url}/v1")
    with pytest.raises(BadRequest, match="prompt required"):
        await adapter.generate(ask(prompt=""))
    sdcpp.script(LocalImagesReply(status=500))
    with pytest.raises(ProviderUnavailable, match=r"server_error: scripted failure"):
        await adapter.generate(ask())


async def test_a_dropped_connection(client: httpx.AsyncClient, localai: FakeLocalImagesServer) -> None:
    localai.script(LocalImagesReply(drop_after=1))
    with pytest.raises(ProviderConnectionError):
        await make(client, f"{localai.url}/v1").generate(ask())


async def test_a_timeout(client: httpx.AsyncClient) -> None:
    with BlackHole() as hole, pytest.raises(ProviderTimeout):
        await make(client, f"{hole.url}/v1", timeout=0.3).generate(ask())


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderConnectionError, match="refused"):
        await make(client, f"http://127.0.0.1:{closed_port()}/v1").generate(ask())


# --- models and probe ---------------------------------------------------------------------


async def test_list_models_lists_everything(
    client: httpx.AsyncClient, localai: FakeLocalImagesServer, sdcpp: FakeLocalImagesServer
) -> None:
    models = await make(client, f"{localai.url}/v1").list_models()
    assert [m.id for m in models] == ["stablediffusion", "llama-3.2-1b"]
    assert all(m.capabilities is None for m in models)  # the server cannot say which make images
    (only,) = await make(client, f"{sdcpp.url}/v1").list_models()
    assert (only.id, only.owned_by) == ("sd-cpp-local", "local")


async def test_probe(client: httpx.AsyncClient, localai: FakeLocalImagesServer) -> None:
    ok = await make(client, f"{localai.url}/v1").probe()
    assert ok.ok and ok.error is None
    assert localai.requests_to("/v1/models")[0].method == "GET"
    down = await make(client, f"http://127.0.0.1:{closed_port()}/v1").probe()
    assert not down.ok and down.error is not None


def test_the_other_host_guard_compares_scheme_host_and_port() -> None:
    from mmstudio.providers.media.openai_compat_images import _origin

    assert _origin("http://127.0.0.1:8080/v1") == _origin("http://127.0.0.1:8080/generated-images/a.png")
    assert _origin("http://LOCALHOST/v1") == _origin("http://localhost:80/x")
    assert _origin("https://h/v1") != _origin("http://h/v1")
