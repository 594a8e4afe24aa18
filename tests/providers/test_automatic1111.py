"""Automatic1111Adapter against the fake AUTOMATIC1111 WebUI API over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.automatic1111 import (
    A1111_CAPABILITIES,
    Automatic1111Adapter,
    snap_size,
)
from mmstudio.providers.media.base import ImageAdapter, ImageProgress, ImageRequest, InputImage
from mmstudio.providers.transport import make_http_client
from tests.fakes.a1111_server import A1111Reply, FakeA1111Server, exception_body, validation_error
from tests.fakes.base import BlackHole, Reply, closed_port
from tests.fakes.images import make_image

MODELS = ["v1-5-pruned-emaonly.safetensors", "sdxl_base_1.0.safetensors"]
AUTH = "artist:hunter2-xyzzy-42"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeA1111Server]:
    with FakeA1111Server(models=MODELS) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeA1111Server) -> Iterator[None]:
    server.reset()
    server.default = A1111Reply()
    yield
    server.release()  # never leave a held generation behind for the next test


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(
    client: httpx.AsyncClient, base_url: str, *, key: str | None = None, timeout: float = 10.0
) -> Automatic1111Adapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="automatic1111", timeout=timeout)
    adapter = Automatic1111Adapter(config, client)
    adapter.progress_interval = 0.01  # the tests wait on events, not on the clock
    return adapter


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeA1111Server) -> Automatic1111Adapter:
    return make(client, server.url)


def ask(server: FakeA1111Server, **kwargs: Any) -> ImageRequest:
    values: dict[str, Any] = {"model": server.titles[0], "prompt": "a lighthouse at dusk", "size": "512x512"}
    values.update(kwargs)
    return ImageRequest(**values)


def only(server: FakeA1111Server, path: str) -> Any:
    sent = server.requests_to(path)
    assert len(sent) == 1, [r.path for r in server.requests]
    return sent[0]


def dims(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def colour(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


# --- the interface and its data -----------------------------------------------------------


async def test_adapter_satisfies_the_protocol(adapter: Automatic1111Adapter) -> None:
    assert isinstance(adapter, ImageAdapter)
    assert adapter.protocol == "automatic1111"
    caps = A1111_CAPABILITIES
    assert (caps.supports_references, caps.supports_mask, caps.max_n, caps.max_references) == (
        True,
        True,
        8,
        1,
    )
    assert caps.sizes == () and caps.key_env is None


def test_snap_size_rounds_to_multiples_of_8_within_bounds() -> None:
    assert snap_size(512, 768) == (512, 768)
    assert snap_size(650, 500) == (648, 504)
    assert snap_size(10, 99_999) == (64, 2048)
    assert snap_size(1021, 1019) == (1024, 1016)


# --- txt2img ------------------------------------------------------------------------------


async def test_txt2img_body_and_the_real_seeds(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    request = ask(
        server,
        model=server.titles[1],
        n=2,
        size="640x480",
        steps=12,
        negative_prompt="blurry",
        extra={
            "cfg_scale": 5.5,
            "sampler_name": "DPM++ 2M",
            "override_settings": {"CLIP_stop_at_last_layers": 2},
        },
    )
    result = await adapter.generate(request)

    body = only(server, "/sdapi/v1/txt2img").json()
    assert body == {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "seed": -1,
        "batch_size": 2,
        "n_iter": 1,
        "steps": 12,
        "width": 640,
        "height": 480,
        "override_settings": {"sd_model_checkpoint": server.titles[1], "CLIP_stop_at_last_layers": 2},
        "cfg_scale": 5.5,
        "sampler_name": "DPM++ 2M",
    }
    assert [(i.media_type, dims(i.data)) for i in result.images] == [("image/png", (640, 480))] * 2
    # seed -1 became a real one: the seeds come from info's all_seeds, one per image.
    assert [i.seed for i in result.images] == [1234567890, 1234567891]
    assert result.info["seed"] == 1234567890
    assert result.info["sampler_name"] == "DPM++ 2M" and result.info["steps"] == 12
    assert result.info["sd_model_name"] == "sdxl_base_1.0"


async def test_a_given_seed_is_sent_and_the_loaded_checkpoint_needs_no_override(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    result = await adapter.generate(ask(server, model="default", seed=42, size=None))
    body = only(server, "/sdapi/v1/txt2img").json()
    assert body["seed"] == 42
    assert "override_settings" not in body and "width" not in body and "steps" not in body
    assert [i.seed for i in result.images] == [42]
    assert dims(result.images[0].data) == (512, 512)  # the WebUI's default size


async def test_size_is_snapped_before_it_is_sent(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    result = await adapter.generate(ask(server, size="650x3000"))
    body = only(server, "/sdapi/v1/txt2img").json()
    assert (body["width"], body["height"]) == (648, 2048)
    assert dims(result.images[0].data) == (648, 2048)


async def test_info_sent_as_an_object_is_tolerated(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    server.script(A1111Reply(info_as_object=True))
    result = await adapter.generate(ask(server, seed=7))
    assert result.images[0].seed == 7 and result.info["all_seeds"] == [7]


async def test_extra_images_beyond_the_batch_are_dropped(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    server.script(A1111Reply(extra_images=2))  # ControlNet's detect maps after the batch
    result = await adapter.generate(ask(server, n=2, size="64x64"))
    assert len(result.images) == 2
    assert all(colour(i.data) != (0, 0, 0) for i in result.images)
    assert [i.seed for i in result.images] == [1234567890, 1234567891]


async def test_a_grid_first_is_skipped_by_index_of_first_image(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    server.script(A1111Reply(grid=True, extra_images=1))
    result = await adapter.generate(ask(server, n=2, size="64x64", seed=5))
    assert [colour(i.data) for i in result.images] == [(200, 80, 40), (40, 120, 200)]
    assert [i.seed for i in result.images] == [5, 6]


# --- progress and cancellation ------------------------------------------------------------


async def test_progress_is_reported_step_by_step_in_order(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)
        if update.step == update.steps:
            server.release()  # the last step was seen: let the generation finish

    server.hold()
    result = await adapter.generate(ask(server, steps=4), progress)

    assert len(result.images) == 1
    assert [(p.step, p.steps) for p in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    percents = [p.percent or 0.0 for p in seen]
    assert percents == sorted(percents) and percents[0] == pytest.approx(26.0) and percents[-1] == 100.0
    polls = server.requests_to("/sdapi/v1/progress")
    assert polls and all(p.query == {"skip_current_image": "true"} for p in polls)


async def test_no_progress_callback_means_no_polling(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    await adapter.generate(ask(server))
    assert server.requests_to("/sdapi/v1/progress") == []


async def test_cancelling_interrupts_the_webui(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    reached = asyncio.Event()

    async def progress(update: ImageProgress) -> None:
        if update.step == 2:
            reached.set()

    server.hold()
    task = asyncio.create_task(adapter.generate(ask(server, steps=10), progress))
    await reached.wait()
    assert not server.interrupted
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.interrupted
    assert only(server, "/sdapi/v1/interrupt").method == "POST"


async def test_failed_progress_polls_are_skipped(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)
        if update.step == update.steps:
            server.release()

    server.progress_failures = 3
    server.hold()
    result = await adapter.generate(ask(server, steps=2), progress)
    assert len(result.images) == 1
    assert [(p.step, p.steps) for p in seen] == [(1, 2), (2, 2)]
    assert len(server.requests_to("/sdapi/v1/progress")) >= 5  # the 3 failures, then the 2 steps


# --- img2img ------------------------------------------------------------------------------


async def test_img2img_sends_the_init_image_and_the_mask(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    photo = make_image(320, 256, "PNG", (10, 20, 30))
    mask = make_image(320, 256, "PNG", (255, 255, 255))  # A1111's own kind: white = repaint
    request = ask(server, size=None, references=(InputImage(photo),), mask=InputImage(mask), seed=3)
    result = await adapter.generate(request)

    assert server.requests_to("/sdapi/v1/txt2img") == []
    body = only(server, "/sdapi/v1/img2img").json()
    assert base64.b64decode(body["init_images"][0]) == photo
    assert base64.b64decode(body["mask"]) == mask  # opaque: sent as it is
    assert body["denoising_strength"] == 0.75
    assert (body["width"], body["height"]) == (320, 256)  # the photo's own size, not 512x512
    assert dims(result.images[0].data) == (320, 256) and result.images[0].seed == 3


async def test_img2img_denoising_from_extra_and_an_openai_style_mask_is_inverted(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    buffer = io.BytesIO()
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    transparent.paste((0, 0, 0, 0), (0, 0, 32, 64))  # the left half is the part to repaint
    transparent.save(buffer, format="PNG")
    photo = make_image(64, 64)
    request = ask(
        server,
        size="64x64",
        references=(InputImage(photo),),
        mask=InputImage(buffer.getvalue()),
        extra={"denoising_strength": 0.4},
    )
    await adapter.generate(request)

    body = only(server, "/sdapi/v1/img2img").json()
    assert body["denoising_strength"] == 0.4
    with Image.open(io.BytesIO(base64.b64decode(body["mask"]))) as sent:
        assert sent.mode == "L"
        assert sent.getpixel((5, 5)) == 255 and sent.getpixel((60, 5)) == 0  # white = repaint


# --- errors -------------------------------------------------------------------------------


async def test_a_422_names_the_field(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    with pytest.raises(BadRequest) as info:
        await adapter.generate(ask(server, extra={"width": "wide"}))
    assert info.value.status == 422
    assert "width: value is not a valid integer" in info.value.message


async def test_a_scripted_422_list_is_joined(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    body = validation_error("steps", "ensure this value is greater than 0", "value_error.number.not_gt")
    server.script(A1111Reply(status=422, error_body=body))
    with pytest.raises(BadRequest, match=r"steps: ensure this value is greater than 0"):
        await adapter.generate(ask(server))


async def test_a_500_names_the_exception(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    server.script(A1111Reply(status=500))
    with pytest.raises(ProviderUnavailable) as info:
        await adapter.generate(ask(server))
    assert info.value.retryable and info.value.status == 500
    assert "OutOfMemoryError: CUDA out of memory" in info.value.message


async def test_http_exception_404s(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    server.script(
        A1111Reply(
            status=404,
            error_body=exception_body("HTTPException", "404: Sampler not found", "Sampler not found"),
        ),
        A1111Reply(
            status=404, error_body=exception_body("HTTPException", "404: Model not found", "Model not found")
        ),
    )
    with pytest.raises(BadRequest, match="Sampler not found"):
        await adapter.generate(ask(server))
    with pytest.raises(UpstreamModelNotFound, match="Model not found"):
        await adapter.generate(ask(server))


async def test_img2img_with_an_unreadable_reference_is_the_webuis_500(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    with pytest.raises(ProviderUnavailable, match="Invalid encoded image"):
        await adapter.generate(ask(server, references=(InputImage(b"not an image at all"),)))


async def test_a_server_without_api_says_so(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    adapter = make(adapter.client, server.url + "/nope")
    with pytest.raises(BadRequest, match=r"--api"):
        await adapter.generate(ask(server))


async def test_bad_base64_is_a_protocol_error(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    server.script(A1111Reply(bad_image=True))
    with pytest.raises(ProviderProtocolError, match="not valid base64"):
        await adapter.generate(ask(server))


async def test_an_answer_without_images_is_a_protocol_error(
    adapter: Automatic1111Adapter, server: FakeA1111Server
) -> None:
    server.script(A1111Reply(raw=b'{"images": [], "parameters": {}, "info": "{}"}'))
    with pytest.raises(ProviderProtocolError, match="no images"):
        await adapter.generate(ask(server))


async def test_a_dropped_connection(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    server.script(A1111Reply(drop_after=1))
    with pytest.raises(ProviderConnectionError):
        await adapter.generate(ask(server))


async def test_a_timeout(client: httpx.AsyncClient, server: FakeA1111Server) -> None:
    with BlackHole() as hole:
        adapter = make(client, hole.url, timeout=0.3)
        with pytest.raises(ProviderTimeout):
            await adapter.generate(ask(server))


async def test_a_slow_generation_times_out(client: httpx.AsyncClient, server: FakeA1111Server) -> None:
    server.hold()  # released by the fixture after the test
    adapter = make(client, server.url, timeout=0.3)
    with pytest.raises(ProviderTimeout):
        await adapter.generate(ask(server))


async def test_connection_refused(client: httpx.AsyncClient, server: FakeA1111Server) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.generate(ask(server))


# --- auth ---------------------------------------------------------------------------------


async def test_basic_auth(client: httpx.AsyncClient, server: FakeA1111Server) -> None:
    server.api_auth = AUTH
    try:
        good = make(client, server.url, key=AUTH)
        result = await good.generate(ask(server))
        assert len(result.images) == 1
        sent = only(server, "/sdapi/v1/txt2img")
        assert sent.headers["authorization"] == "Basic " + base64.b64encode(AUTH.encode()).decode()

        wrong = make(client, server.url, key="artist:guessed-wrong-77")
        with pytest.raises(AuthenticationError, match="Incorrect username or password") as info:
            await wrong.generate(ask(server))
        assert "guessed-wrong-77" not in info.value.message
        with pytest.raises(AuthenticationError, match="Not authenticated"):
            await make(client, server.url).list_models()
    finally:
        server.api_auth = None


async def test_no_key_sends_no_authorization(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    await adapter.generate(ask(server))
    assert "authorization" not in only(server, "/sdapi/v1/txt2img").headers


# --- models and probe ---------------------------------------------------------------------


async def test_list_models(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    models = await adapter.list_models()
    assert [m.id for m in models] == server.titles
    assert models[0].id.startswith("v1-5-pruned-emaonly.safetensors [")
    assert models[0].details["model_name"] == "v1-5-pruned-emaonly"
    assert len(models[0].details["sha256"]) == 64
    assert "config" not in models[0].details  # null in the answer


async def test_list_models_errors(adapter: Automatic1111Adapter, server: FakeA1111Server) -> None:
    server.models_reply = Reply(raw=b'{"not": "a list"}')
    with pytest.raises(ProviderProtocolError, match="not a list"):
        await adapter.list_models()
    server.models_reply = Reply(status=500)
    with pytest.raises(ProviderUnavailable):
        await adapter.list_models()


async def test_probe(
    adapter: Automatic1111Adapter, server: FakeA1111Server, client: httpx.AsyncClient
) -> None:
    ok = await adapter.probe()
    assert ok.ok and ok.error is None and ok.latency_ms >= 0
    assert only(server, "/sdapi/v1/sd-models").method == "GET"
    down = await make(client, f"http://127.0.0.1:{closed_port()}").probe()
    assert not down.ok and down.error is not None and "refused" in down.error
