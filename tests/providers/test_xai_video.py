"""XAIVideoAdapter against the fake xAI video API over real HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import httpx
import pytest

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContentFiltered,
    InvalidRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderUnavailable,
    ResultExpired,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.video_base import VideoAdapter, VideoRequest, VideoStatus
from mmstudio.providers.media.xai_video import DEFAULT_DURATION_S, XAI_VIDEO_MODELS, XAIVideoAdapter
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import Reply, closed_port
from tests.fakes.images import make_image
from tests.fakes.xai_video_server import (
    CREATE_REFUSAL,
    REFUSAL_CODE,
    REFUSAL_MESSAGE,
    FakeXAIVideoServer,
    VideoReply,
    video_bytes,
)

KEY = "xai-FAKEvideoKEY-0123456789abcdefghijkl"
MODEL = "grok-imagine-video"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeXAIVideoServer]:
    with FakeXAIVideoServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeXAIVideoServer) -> None:
    server.reset()
    server.default = VideoReply()
    server.models_reply = None


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The studio's shared client (aiohttp underneath, with the direct path) and a plain httpx one."""
    made = make_http_client() if request.param == "aiohttp" else httpx.AsyncClient()
    async with made as c:
        yield c


def make(client: httpx.AsyncClient, base_url: str, *, key: str | None = KEY) -> XAIVideoAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="xai", timeout=5.0)
    return XAIVideoAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeXAIVideoServer) -> XAIVideoAdapter:
    return make(client, f"{server.url}/v1")


def ask(prompt: str = "A paper boat drifting down a rainy street", **kwargs: Any) -> VideoRequest:
    kwargs.setdefault("model", MODEL)
    return VideoRequest(prompt=prompt, **kwargs)


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[:12] not in str(exc) and KEY[-8:] not in str(exc)


async def until_done(adapter: XAIVideoAdapter, handle: str) -> list[VideoStatus]:
    """Poll until a final state (the fake advances per poll, so no waiting is needed)."""
    seen: list[VideoStatus] = []
    for _ in range(20):
        status = await adapter.poll(handle, MODEL)
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


# --- interface and capability data --------------------------------------------------------------


async def test_adapter_and_capability_data(adapter: XAIVideoAdapter) -> None:
    assert isinstance(adapter, VideoAdapter)
    assert adapter.protocol == "xai_video"
    caps = XAI_VIDEO_MODELS["grok-imagine-video"]
    assert caps.durations == tuple(range(1, 16))
    assert caps.aspect_ratios == ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
    assert caps.resolutions == ("480p", "720p")
    assert caps.image_to_video and not caps.end_frame and not caps.seed and not caps.camera_motion
    assert caps.key_env == "XAI_API_KEY" and caps.poll_interval_s == 5.0


# --- submit -------------------------------------------------------------------------------------


async def test_submit_sends_the_documented_body_with_the_key(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    handle = await adapter.submit(ask(duration_s=10, aspect_ratio="9:16", resolution="480p"))

    assert handle in server.jobs and server.submissions == 1
    (body,) = server.generation_bodies()
    assert body == {
        "model": MODEL,
        "prompt": "A paper boat drifting down a rainy street",
        "duration": 10,
        "aspect_ratio": "9:16",
        "resolution": "480p",
    }
    (sent,) = server.requests_to("/v1/videos/generations")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"].startswith("application/json")


async def test_the_duration_is_always_sent(adapter: XAIVideoAdapter, server: FakeXAIVideoServer) -> None:
    await adapter.submit(ask())
    (body,) = server.generation_bodies()
    assert body == {"model": MODEL, "prompt": ask().prompt, "duration": DEFAULT_DURATION_S}


async def test_the_start_image_goes_as_a_data_uri(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    frame = make_image(32, 18, "PNG", (10, 120, 30))
    await adapter.submit(ask(start_image=InputImage(frame, "image/png", "frame.png"), extra={"user": "u1"}))
    (body,) = server.generation_bodies()
    head, _, data = body["image"]["url"].partition(",")
    assert head == "data:image/png;base64" and base64.b64decode(data) == frame
    assert body["user"] == "u1" and server.submissions == 1


async def test_an_end_frame_is_refused_before_anything_is_sent(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    frame = InputImage(make_image(8, 8, "PNG"), "image/png")
    with pytest.raises(InvalidRequest, match="end frame"):
        await adapter.submit(ask(end_image=frame))
    assert server.requests == []


async def test_a_refusal_at_creation_is_content_filtered(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(refused_at_create=True))
    with pytest.raises(ContentFiltered, match="rejected by content moderation") as caught:
        await adapter.submit(ask())
    assert CREATE_REFUSAL in str(caught.value) and not caught.value.retryable
    assert server.submissions == 0


async def test_a_bad_value_is_a_bad_request(adapter: XAIVideoAdapter, server: FakeXAIVideoServer) -> None:
    with pytest.raises(BadRequest, match="duration must be an integer") as caught:
        await adapter.submit(ask(duration_s=20))
    assert caught.value.status == 400 and not caught.value.retryable
    assert server.submissions == 0


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (VideoReply(status=429, headers={"retry-after": "7"}), ProviderRateLimited, 7.0),
        (VideoReply(status=500), ProviderUnavailable, None),
        (VideoReply(status=503, headers={"retry-after": "12"}), ProviderUnavailable, 12.0),
    ],
)
async def test_create_errors_are_retryable_and_nothing_was_submitted(
    adapter: XAIVideoAdapter,
    server: FakeXAIVideoServer,
    reply: VideoReply,
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


@pytest.mark.parametrize("raw", [b"<html>gateway</html>", b'{"status": "pending"}', b'{"request_id": 7}'])
async def test_a_create_answer_without_a_request_id_is_a_protocol_error(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer, raw: bytes
) -> None:
    server.script(VideoReply(raw=raw))
    with pytest.raises(ProviderProtocolError):
        await adapter.submit(ask())


async def test_a_wrong_key_is_authentication_error_without_the_key(
    client: httpx.AsyncClient, server: FakeXAIVideoServer
) -> None:
    wrong = "xai-WRONGkey-abcdefghijklmnopqrstuvwxyz"
    adapter = make(client, f"{server.url}/v1", key=wrong)
    with pytest.raises(AuthenticationError, match="Incorrect API key") as caught:
        await adapter.submit(ask())
    assert caught.value.status == 400 and not caught.value.retryable  # xAI's 400 for a bad key
    assert wrong not in str(caught.value)
    with pytest.raises(AuthenticationError):
        await adapter.poll("anything", MODEL)
    assert server.submissions == 0


async def test_no_key_is_a_401(client: httpx.AsyncClient, server: FakeXAIVideoServer) -> None:
    adapter = make(client, f"{server.url}/v1", key=None)
    with pytest.raises(AuthenticationError, match="No API key provided") as caught:
        await adapter.submit(ask())
    assert caught.value.status == 401


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.submit(ask())
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.poll("req", MODEL)


# --- poll ---------------------------------------------------------------------------------------


async def test_poll_advances_with_progress_to_done(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(steps=4))
    handle = await adapter.submit(ask(duration_s=3))

    seen = await until_done(adapter, handle)

    assert [s.state for s in seen] == ["running", "running", "running", "succeeded"]
    assert [s.progress for s in seen] == [25.0, 50.0, 75.0, 100.0]
    for running in seen[:-1]:
        assert running.error is None and not running.refused and running.result_url is None
    done = seen[-1]
    assert done.result_url == server.video_url(handle) and done.duration_s == 3.0
    assert done.info["model"] == MODEL and done.info["cost_in_usd_ticks"] == 1_500_000_000
    assert len(server.requests_to(f"/v1/videos/{handle}")) == 4
    assert server.submissions == 1


async def test_pending_without_progress_and_as_202(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(steps=3, progress=False, pending_status=202))
    handle = await adapter.submit(ask())
    first = await adapter.poll(handle, MODEL)
    assert (first.state, first.progress) == ("queued", None)
    assert (await until_done(adapter, handle))[-1].state == "succeeded"


async def test_a_new_adapter_resumes_polling_the_same_handle(
    client: httpx.AsyncClient, server: FakeXAIVideoServer
) -> None:
    handle = await make(client, f"{server.url}/v1").submit(ask())
    seen = await until_done(make(client, f"{server.url}/v1"), handle)  # as after a restart
    assert seen[-1].state == "succeeded" and server.submissions == 1


async def test_a_failure_comes_as_200_with_the_vendors_reason(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(outcome="failed", error_message="The render node fell over."))
    handle = await adapter.submit(ask())
    done = (await until_done(adapter, handle))[-1]
    assert done.state == "failed" and not done.refused
    assert done.error is not None and "The render node fell over." in done.error
    assert "internal_error" in done.error and done.info["error_code"] == "internal_error"


async def test_a_moderation_failure_is_refused_with_the_vendors_words(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(refused=True, steps=1))
    handle = await adapter.submit(ask())
    (done,) = await until_done(adapter, handle)
    assert done.state == "failed" and done.refused
    assert done.error is not None and REFUSAL_MESSAGE in done.error
    assert done.info["error_code"] == REFUSAL_CODE


async def test_a_withheld_video_is_refused(adapter: XAIVideoAdapter, server: FakeXAIVideoServer) -> None:
    server.script(VideoReply(moderated=True, steps=1))
    handle = await adapter.submit(ask())
    (done,) = await until_done(adapter, handle)
    assert done.state == "failed" and done.refused and done.result_url is None
    assert done.error is not None and "moderation" in done.error
    assert done.info["respect_moderation"] is False


async def test_an_expired_request_is_failed_not_refused(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(outcome="expired", steps=2))
    handle = await adapter.submit(ask())
    done = (await until_done(adapter, handle))[-1]
    assert done.state == "failed" and not done.refused
    assert done.error is not None and "expired" in done.error and done.info["expired"] is True


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(status=429, headers={"retry-after": "3"}), ProviderRateLimited, 3.0),
        (Reply(status=502), ProviderUnavailable, None),
        (Reply(status=503, headers={"retry-after": "11"}), ProviderUnavailable, 11.0),
    ],
)
async def test_poll_errors_are_retryable_and_do_not_lose_the_job(
    adapter: XAIVideoAdapter,
    server: FakeXAIVideoServer,
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
    assert server.submissions == 1


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (b'["a", "list"]', "not an object"),
        (b'{"progress": 3}', "unknown status"),
        (b'{"status": "rendering", "progress": 3}', "unknown status"),
        (b'{"status": "pending", "progress": "half"}', "not a number"),
        (b'{"status": "done", "video": {"duration": 6}}', "without a usable `url`"),
        (b'{"status": "done", "video": {"url": "file:///etc/passwd"}}', "without a usable `url`"),
        (b'{"status": "done", "video": "https://vidgen.x.ai/a.mp4"}', "not an object"),
    ],
)
async def test_garbage_polls_are_protocol_errors(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer, raw: bytes, match: str
) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(Reply(raw=raw))
    with pytest.raises(ProviderProtocolError, match=match) as caught:
        await adapter.poll(handle, MODEL)
    assert caught.value.retryable


# --- download -----------------------------------------------------------------------------------


async def finished(adapter: XAIVideoAdapter, **kwargs: Any) -> tuple[str, VideoStatus]:
    handle = await adapter.submit(ask(**kwargs))
    return handle, (await until_done(adapter, handle))[-1]


async def test_download_streams_the_mp4_without_the_key(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    handle, status = await finished(adapter, duration_s=4, aspect_ratio="16:9", resolution="720p")

    data = await collect(adapter.download(handle, status, MODEL))

    assert data == video_bytes("16:9", "720p", 4) and data[4:8] == b"ftyp"
    assert mp4_seconds(data) == pytest.approx(4.0)
    (sent,) = server.requests_to(f"/vidgen/{handle}.mp4")
    assert "authorization" not in sent.headers


async def test_download_without_a_url_polls_for_it(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    handle, _status = await finished(adapter, duration_s=2)
    data = await collect(adapter.download(handle, VideoStatus(state="succeeded"), MODEL))
    assert data == video_bytes("16:9", "720p", 2)


async def test_a_cut_download_is_a_retryable_error(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    handle, status = await finished(adapter)
    server.script_video(Reply(drop_after=0))
    with pytest.raises(ProviderConnectionError, match="dropped the connection") as caught:
        await collect(adapter.download(handle, status, MODEL))
    assert caught.value.retryable
    no_secret(caught.value)
    # A fresh download afterwards gets the whole file.
    expected = video_bytes("16:9", "720p", DEFAULT_DURATION_S)
    assert await collect(adapter.download(handle, status, MODEL)) == expected


@pytest.mark.parametrize("gone", [403, 404])
async def test_an_expired_url_is_result_expired(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer, gone: int
) -> None:
    handle, status = await finished(adapter)
    server.expire_video(handle, gone)
    with pytest.raises(ResultExpired, match="the result expired before it could be fetched") as caught:
        await collect(adapter.download(handle, status, MODEL))
    assert not caught.value.retryable and caught.value.status == gone
    no_secret(caught.value)


async def test_a_gone_url_is_result_expired(adapter: XAIVideoAdapter, server: FakeXAIVideoServer) -> None:
    handle, status = await finished(adapter)
    server.script_video(Reply(status=410))
    with pytest.raises(ResultExpired, match="HTTP 410"):
        await collect(adapter.download(handle, status, MODEL))


async def test_a_download_error_keeps_its_class(adapter: XAIVideoAdapter, server: FakeXAIVideoServer) -> None:
    handle, status = await finished(adapter)
    server.script_video(Reply(status=503, headers={"retry-after": "4"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(adapter.download(handle, status, MODEL))
    assert caught.value.retry_after == 4.0


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"<html>not a video at all</html>", "text/html"),
        (b"", "application/octet-stream"),
        (b"\x00\x00", "application/octet-stream"),
    ],
)
async def test_content_that_is_not_a_video_is_a_protocol_error(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer, raw: bytes, content_type: str
) -> None:
    handle, status = await finished(adapter)
    server.script_video(Reply(raw=raw, headers={"content-type": content_type}))
    with pytest.raises(ProviderProtocolError, match=r"not a video|empty video"):
        await collect(adapter.download(handle, status, MODEL))


async def test_an_mp4_under_a_generic_type_is_accepted(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    handle, status = await finished(adapter)
    mp4 = video_bytes("1:1", "480p", 1)
    server.script_video(Reply(raw=mp4, headers={"content-type": "binary/octet-stream"}))
    assert await collect(adapter.download(handle, status, MODEL)) == mp4


async def test_download_of_an_unfinished_request_is_result_expired(
    adapter: XAIVideoAdapter, server: FakeXAIVideoServer
) -> None:
    server.script(VideoReply(outcome="expired", steps=1))
    handle = await adapter.submit(ask())
    with pytest.raises(ResultExpired, match="no video to fetch"):
        await collect(adapter.download(handle, VideoStatus(state="succeeded"), MODEL))


# --- cancel, models, health ---------------------------------------------------------------------


async def test_cancel_is_not_offered(adapter: XAIVideoAdapter, server: FakeXAIVideoServer) -> None:
    handle = await adapter.submit(ask())
    before = len(server.requests)
    assert await adapter.cancel(handle, MODEL) is False
    assert len(server.requests) == before


async def test_list_models_keeps_the_video_models(adapter: XAIVideoAdapter) -> None:
    models = {m.id: m for m in await adapter.list_models()}
    assert set(models) == {"grok-imagine-video"}
    listed = models["grok-imagine-video"]
    assert listed.owned_by == "xai" and listed.details["video"] is True
    assert listed.details["image_to_video"] is True


async def test_probe(adapter: XAIVideoAdapter, client: httpx.AsyncClient, server: FakeXAIVideoServer) -> None:
    assert (await adapter.probe()).ok
    wrong = await make(client, f"{server.url}/v1", key="xai-NOPE-00000000000000000000").probe()
    assert not wrong.ok and wrong.error is not None and "NOPE-00000" not in wrong.error
