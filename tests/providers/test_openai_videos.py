"""OpenAIVideosAdapter against the fake OpenAI Videos API over real HTTP; the openai SDK against the fake."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import httpx
import openai
import pytest

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContentFiltered,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderUnavailable,
    ResultExpired,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media import cloud_video_models, create_video_adapter
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.openai_videos import OPENAI_VIDEO_MODELS, OpenAIVideosAdapter
from mmstudio.providers.media.video_base import VideoAdapter, VideoRequest, VideoStatus
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import Reply, closed_port
from tests.fakes.images import make_image
from tests.fakes.openai_videos_server import (
    REFUSAL_MESSAGE,
    FakeOpenAIVideosServer,
    VideoReply,
    video_bytes,
)

KEY = "sk-proj-FAKEvideosKEY-0123456789abcdef"
MODEL = "sora-2"
SDK_DEPRECATION = "ignore:The Sora API is scheduled:DeprecationWarning"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIVideosServer]:
    with FakeOpenAIVideosServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeOpenAIVideosServer) -> None:
    server.reset()
    server.default = VideoReply()
    server.poll_after_ms = 2000


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The studio's shared client (aiohttp underneath, with the direct path) and a plain httpx one."""
    made = make_http_client() if request.param == "aiohttp" else httpx.AsyncClient()
    async with made as c:
        yield c


def make(client: httpx.AsyncClient, base_url: str, *, key: str = KEY) -> OpenAIVideosAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="openai", timeout=5.0)
    return OpenAIVideosAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeOpenAIVideosServer) -> OpenAIVideosAdapter:
    return make(client, f"{server.url}/v1")


def ask(prompt: str = "A paper boat drifting down a rainy street", **kwargs: Any) -> VideoRequest:
    kwargs.setdefault("model", MODEL)
    return VideoRequest(prompt=prompt, **kwargs)


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[:12] not in str(exc) and KEY[-8:] not in str(exc)


async def until_done(adapter: OpenAIVideosAdapter, handle: str, model: str = MODEL) -> list[VideoStatus]:
    """Poll until a final state (the fake advances per poll, so no waiting is needed)."""
    seen: list[VideoStatus] = []
    for _ in range(20):
        status = await adapter.poll(handle, model)
        seen.append(status)
        if status.state in ("succeeded", "failed", "cancelled"):
            return seen
    raise AssertionError(f"never finished: {seen}")


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def mp4_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = len(list(container.decode(stream)))
        rate = stream.average_rate
        assert rate is not None
        return frames / float(rate)


# --- capability data and registry -------------------------------------------------------------


def test_capability_data() -> None:
    sora, pro = OPENAI_VIDEO_MODELS["sora-2"], OPENAI_VIDEO_MODELS["sora-2-pro"]
    for caps in (sora, pro):
        assert caps.durations == (4, 8, 12)
        assert caps.aspect_ratios == ("9:16", "16:9")
        assert caps.image_to_video and not caps.end_frame and not caps.seed
        assert caps.key_env == "OPENAI_API_KEY"
    assert sora.resolutions == ("720x1280", "1280x720")
    assert pro.resolutions == ("720x1280", "1280x720", "1024x1792", "1792x1024")
    assert sora.price_per_second_usd == 0.10 and pro.price_per_second_usd == 0.30
    assert pro.typical_seconds > sora.typical_seconds
    assert cloud_video_models("openai") == OPENAI_VIDEO_MODELS


async def test_adapter_satisfies_the_protocol(
    client: httpx.AsyncClient, server: FakeOpenAIVideosServer
) -> None:
    config = EndpointConfig(base_url=f"{server.url}/v1", api_key=KEY, provider="openai")
    adapter = create_video_adapter("openai_videos", config, client)
    assert isinstance(adapter, OpenAIVideosAdapter) and isinstance(adapter, VideoAdapter)
    assert adapter.protocol == "openai_videos"


# --- submit -------------------------------------------------------------------------------------


async def test_submit_sends_the_multipart_form_and_returns_the_id(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    handle = await adapter.submit(ask(duration_s=8, resolution="1280x720"))

    assert handle in server.jobs and handle.startswith("video_")
    assert server.submissions == 1
    (call,) = server.creates
    assert call.values == {
        "prompt": "A paper boat drifting down a rainy street",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
    }
    assert call.reference is None and "input_reference" not in call.fields
    (sent,) = server.requests_to("/v1/videos")
    assert sent.method == "POST"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.headers["authorization"] == f"Bearer {KEY}"


async def test_an_aspect_ratio_alone_picks_the_size_and_defaults_are_left_out(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    await adapter.submit(ask(aspect_ratio="16:9"))
    await adapter.submit(ask(aspect_ratio="9:16"))
    await adapter.submit(ask())
    landscape, portrait, bare = server.creates
    assert landscape.values["size"] == "1280x720" and portrait.values["size"] == "720x1280"
    assert "size" not in bare.values and "seconds" not in bare.values  # the API's defaults apply
    assert {job.size for job in server.jobs.values()} == {"1280x720", "720x1280"}


async def test_a_start_image_goes_as_input_reference(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    frame = InputImage(make_image(1792, 1024, "JPEG", (20, 90, 160)), "image/jpeg", "frame.jpg")
    await adapter.submit(ask(model="sora-2-pro", resolution="1792x1024", duration_s=4, start_image=frame))

    (call,) = server.creates
    assert call.reference == frame.data
    assert (call.reference_name, call.reference_type) == ("frame.jpg", "image/jpeg")
    assert call.values["model"] == "sora-2-pro" and call.values["size"] == "1792x1024"


async def test_a_start_image_of_another_size_is_fitted_to_the_video_first(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    """The API answers 400 "must match the requested width and height" for any other size (the fake
    does too): the adapter scales and centre-crops the frame to the video's size, as PNG."""
    import io

    from PIL import Image

    frame = InputImage(make_image(64, 64, "JPEG"), "image/jpeg", "small.jpg")
    await adapter.submit(ask(resolution="720x1280", start_image=frame))
    (call,) = server.creates
    assert (
        call.reference is not None
        and call.reference_type == "image/png"
        and call.reference_name == "small.png"
    )
    assert Image.open(io.BytesIO(call.reference)).size == (720, 1280)
    assert server.submissions == 1


async def test_a_size_the_model_lacks_is_bad_request(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    with pytest.raises(BadRequest, match="Invalid value: '1792x1024'") as caught:
        await adapter.submit(ask(resolution="1792x1024"))  # pro only
    assert caught.value.status == 400 and not caught.value.retryable
    no_secret(caught.value)
    assert server.submissions == 0


async def test_a_refusal_at_creation_is_content_filtered(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    server.script(VideoReply(refused_at_create=True))
    with pytest.raises(ContentFiltered) as caught:
        await adapter.submit(ask())
    assert REFUSAL_MESSAGE in str(caught.value) and not caught.value.retryable
    assert server.submissions == 0


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (VideoReply(status=429, headers={"retry-after": "7"}), ProviderRateLimited, 7.0),
        (VideoReply(status=500), ProviderUnavailable, None),
        (VideoReply(status=503, headers={"retry-after-ms": "1500"}), ProviderUnavailable, 1.5),
    ],
)
async def test_create_errors_carry_retry_after_and_submit_nothing(
    adapter: OpenAIVideosAdapter,
    server: FakeOpenAIVideosServer,
    reply: Reply,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    server.script(reply)
    with pytest.raises(error) as caught:
        await adapter.submit(ask())
    assert caught.value.retryable and caught.value.retry_after == retry_after
    assert caught.value.status == reply.status
    no_secret(caught.value)
    assert server.submissions == 0 and server.jobs == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>gateway</html>",
        b'{"object": "video", "status": "queued"}',
        b'{"id": "video_1", "status": "?"}',
    ],
)
async def test_a_create_answer_without_a_job_is_a_protocol_error(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer, raw: bytes
) -> None:
    server.script(VideoReply(raw=raw))
    with pytest.raises(ProviderProtocolError):
        await adapter.submit(ask())


async def test_wrong_key_is_authentication_error_without_the_key(
    client: httpx.AsyncClient, server: FakeOpenAIVideosServer
) -> None:
    wrong = "sk-proj-WRONGkey-abcdefghijklmnop"
    adapter = make(client, f"{server.url}/v1", key=wrong)
    with pytest.raises(AuthenticationError, match="Incorrect API key") as caught:
        await adapter.submit(ask())
    assert caught.value.status == 401 and not caught.value.retryable
    assert wrong not in str(caught.value)
    with pytest.raises(AuthenticationError):
        await adapter.poll("video_anything", MODEL)


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.submit(ask())
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.poll("video_x", MODEL)


# --- poll ---------------------------------------------------------------------------------------


async def test_poll_advances_with_integer_progress_to_completed(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    server.script(VideoReply(steps=4))
    handle = await adapter.submit(ask(duration_s=12, resolution="720x1280"))

    seen = await until_done(adapter, handle)

    assert [s.state for s in seen] == ["running", "running", "running", "succeeded"]
    assert [s.progress for s in seen] == [25.0, 50.0, 75.0, 100.0]
    for running in seen[:-1]:
        assert running.info["poll_after_s"] == 2.0  # from openai-poll-after-ms
        assert running.error is None and not running.refused and running.duration_s is None
    done = seen[-1]
    assert done.duration_s == 12.0 and done.result_url is None
    assert "poll_after_s" not in done.info
    assert done.info["size"] == "720x1280" and done.info["seconds"] == "12"
    assert isinstance(done.info["expires_at"], int) and done.info["expires_at"] > done.info["completed_at"]
    assert len(server.requests_to(f"/v1/videos/{handle}")) == 4
    assert server.submissions == 1


async def test_a_queued_job_and_no_poll_header(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    server.poll_after_ms = None
    handle = await adapter.submit(ask())
    server.script_poll(Reply())  # answered as it stands, not advanced: still queued
    status = await adapter.poll(handle, MODEL)
    assert (status.state, status.progress) == ("queued", 0.0)
    assert "poll_after_s" not in status.info


async def test_a_new_adapter_resumes_polling_the_same_handle(
    client: httpx.AsyncClient, server: FakeOpenAIVideosServer
) -> None:
    handle = await make(client, f"{server.url}/v1").submit(ask())
    seen = await until_done(make(client, f"{server.url}/v1"), handle)  # as after a restart
    assert seen[-1].state == "succeeded" and server.submissions == 1


async def test_a_failed_job_carries_the_vendors_reason(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    server.script(VideoReply(outcome="failed", error_message="The render node fell over."))
    handle = await adapter.submit(ask())
    done = (await until_done(adapter, handle))[-1]
    assert done.state == "failed" and not done.refused
    assert done.error is not None and "The render node fell over." in done.error
    assert done.info["error_code"] == "internal_error"


async def test_a_moderation_failure_is_refused_with_the_vendors_words(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    server.script(VideoReply(refused=True, steps=1))
    handle = await adapter.submit(ask())
    (done,) = await until_done(adapter, handle)
    assert done.state == "failed" and done.refused
    assert done.error is not None and REFUSAL_MESSAGE in done.error
    assert done.info["error_code"] == "moderation_blocked"


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(status=429, headers={"retry-after": "3"}), ProviderRateLimited, 3.0),
        (Reply(status=502), ProviderUnavailable, None),
        (Reply(status=503, headers={"retry-after": "11"}), ProviderUnavailable, 11.0),
    ],
)
async def test_poll_errors_are_retryable_and_do_not_lose_the_job(
    adapter: OpenAIVideosAdapter,
    server: FakeOpenAIVideosServer,
    reply: Reply,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(reply)
    with pytest.raises(error) as caught:
        await adapter.poll(handle, MODEL)
    assert caught.value.retryable and caught.value.retry_after == retry_after
    no_secret(caught.value)
    assert (await until_done(adapter, handle))[-1].state == "succeeded"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (b'["a", "list"]', "not an object"),
        (b'{"object": "video", "status": "queued", "progress": 0}', "without an `id`"),
        (b'{"id": "video_1", "object": "video", "status": "rendering", "progress": 3}', "unknown status"),
        (
            b'{"id": "video_1", "object": "video", "status": "in_progress", "progress": "half"}',
            "not a number",
        ),
        (b'{"id": "video_1", "object": "video", "progress": 3}', "unknown status"),
    ],
)
async def test_garbage_polls_are_protocol_errors(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer, raw: bytes, match: str
) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(Reply(raw=raw))
    with pytest.raises(ProviderProtocolError, match=match) as caught:
        await adapter.poll(handle, MODEL)
    assert caught.value.retryable


# --- download -----------------------------------------------------------------------------------


async def finished(adapter: OpenAIVideosAdapter, **kwargs: Any) -> tuple[str, VideoStatus]:
    handle = await adapter.submit(ask(**kwargs))
    return handle, (await until_done(adapter, handle, kwargs.get("model", MODEL)))[-1]


async def test_download_streams_the_mp4(adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer) -> None:
    handle, status = await finished(adapter, duration_s=4, resolution="1280x720")

    data = await collect(adapter.download(handle, status, MODEL))

    assert data == video_bytes("1280x720", "4") and data[4:8] == b"ftyp"
    assert mp4_seconds(data) == pytest.approx(4.0)
    (sent,) = server.requests_to(f"/v1/videos/{handle}/content")
    assert sent.query == {"variant": "video"}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["accept"] == "application/binary"


async def test_a_cut_download_is_a_retryable_error(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    handle, status = await finished(adapter)
    server.script_content(Reply(drop_after=0))
    with pytest.raises(ProviderConnectionError, match="dropped the connection") as caught:
        await collect(adapter.download(handle, status, MODEL))
    assert caught.value.retryable
    no_secret(caught.value)
    # A fresh download afterwards gets the whole file.
    assert await collect(adapter.download(handle, status, MODEL)) == video_bytes("720x1280", "4")


@pytest.mark.parametrize("raw", [b"<html>not a video at all</html>", b"", b"\x00\x00"])
async def test_content_that_is_not_an_mp4_is_a_protocol_error(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer, raw: bytes
) -> None:
    handle, status = await finished(adapter)
    server.script_content(Reply(raw=raw))
    with pytest.raises(ProviderProtocolError, match=r"not an MP4|empty video"):
        await collect(adapter.download(handle, status, MODEL))


async def test_expired_content_is_result_expired(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    handle, status = await finished(adapter)
    server.expire(handle)
    with pytest.raises(ResultExpired, match="has expired") as caught:
        await collect(adapter.download(handle, status, MODEL))
    assert not caught.value.retryable
    assert str(status.info["expires_at"]) in str(caught.value)
    no_secret(caught.value)


async def test_gone_content_is_result_expired(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    handle, status = await finished(adapter)
    body = server.error_payload(410, "The video's assets are no longer available.")
    server.script_content(Reply(status=410, error_body=body))
    with pytest.raises(ResultExpired, match="no longer available"):
        await collect(adapter.download(handle, status, MODEL))


async def test_a_download_error_keeps_its_class(
    adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer
) -> None:
    handle, status = await finished(adapter)
    server.script_content(Reply(status=503, headers={"retry-after": "4"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(adapter.download(handle, status, MODEL))
    assert caught.value.retry_after == 4.0


# --- cancel, models, health ---------------------------------------------------------------------


async def test_cancel_deletes_the_video(adapter: OpenAIVideosAdapter, server: FakeOpenAIVideosServer) -> None:
    handle = await adapter.submit(ask())
    assert await adapter.cancel(handle, MODEL) is True
    (sent,) = [r for r in server.requests_to(f"/v1/videos/{handle}") if r.method == "DELETE"]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert handle not in server.jobs


async def test_list_models_keeps_the_sora_models(adapter: OpenAIVideosAdapter) -> None:
    models = {m.id: m for m in await adapter.list_models()}
    assert set(models) == {"sora-2", "sora-2-pro"}
    assert models["sora-2"].owned_by == "system" and models["sora-2"].details["video"] is True


async def test_probe(
    adapter: OpenAIVideosAdapter, client: httpx.AsyncClient, server: FakeOpenAIVideosServer
) -> None:
    assert (await adapter.probe()).ok
    wrong = await make(client, f"{server.url}/v1", key="sk-proj-NOPE-0000000000000000").probe()
    assert not wrong.ok and wrong.error is not None and "NOPE-00000" not in wrong.error


# --- the official SDK against the fake ----------------------------------------------------------


@pytest.fixture
async def sdk(server: FakeOpenAIVideosServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=10) as c:
        yield c


@pytest.mark.filterwarnings(SDK_DEPRECATION)
async def test_sdk_create_retrieve_download_list_delete(
    sdk: openai.AsyncOpenAI, server: FakeOpenAIVideosServer
) -> None:
    frame = make_image(1280, 720, "PNG", (5, 60, 90))
    video = await sdk.videos.create(
        prompt="A lighthouse at dusk",
        model="sora-2",
        seconds="8",
        size="1280x720",
        input_reference=("frame.png", frame, "image/png"),
    )
    assert (video.object, video.status, video.progress) == ("video", "queued", 0)
    assert (video.model, video.seconds, video.size) == ("sora-2", "8", "1280x720")
    (call,) = server.creates
    assert call.values == {
        "prompt": "A lighthouse at dusk",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
    }
    assert call.reference == frame

    statuses = []
    while video.status not in ("completed", "failed"):
        video = await sdk.videos.retrieve(video.id)
        statuses.append((video.status, video.progress))
    assert statuses == [("in_progress", 50), ("completed", 100)]
    assert video.expires_at is not None and video.completed_at is not None and video.error is None

    content = await sdk.videos.download_content(video.id)
    assert content.read() == video_bytes("1280x720", "8")
    thumbnail = await sdk.videos.download_content(video.id, variant="thumbnail")
    assert thumbnail.read()[:2] == b"\xff\xd8"  # a JPEG

    second = await sdk.videos.create(prompt="A second one")
    page = await sdk.videos.list(limit=1)
    assert [v.id for v in page.data] == [second.id] and page.has_more
    listed = [v.id async for v in sdk.videos.list(limit=1)]  # follows `last_id` across pages
    assert listed == [second.id, video.id]

    deleted = await sdk.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        await sdk.videos.retrieve(video.id)


@pytest.mark.filterwarnings(SDK_DEPRECATION)
async def test_sdk_create_and_poll_reads_the_poll_header(
    sdk: openai.AsyncOpenAI, server: FakeOpenAIVideosServer
) -> None:
    server.poll_after_ms = 0  # the SDK's poll helper waits what the header says: here nothing
    server.script(VideoReply(refused=True, steps=3))
    video = await sdk.videos.create_and_poll(prompt="something refused", model="sora-2")
    assert video.status == "failed"
    assert video.error is not None and video.error.code == "moderation_blocked"
    assert video.error.message == REFUSAL_MESSAGE
    assert len([r for r in server.requests if r.method == "GET"]) == 3


@pytest.mark.filterwarnings(SDK_DEPRECATION)
async def test_sdk_sees_the_fakes_errors(sdk: openai.AsyncOpenAI, server: FakeOpenAIVideosServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.videos.create(prompt="x", model="sora-2", size="1024x1792")
    assert caught.value.param == "size" and caught.value.code == "invalid_value"
    server.script(VideoReply(refused_at_create=True))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.videos.create(prompt="x")
    assert caught.value.code == "moderation_blocked"
    server.script(VideoReply(status=429))
    with pytest.raises(openai.RateLimitError):
        await sdk.videos.create(prompt="x")
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="sk-wrong-000000000000", max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError) as auth:
            await wrong.videos.retrieve("video_1")
    assert auth.value.code == "invalid_api_key"
