"""VeoVideoAdapter against the fake Veo API over real HTTP, and google-genai against the fake."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import httpx
import pytest

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderUnavailable,
    ResultExpired,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.gemini_video import VEO_VIDEO_MODELS, VeoVideoAdapter
from mmstudio.providers.media.video_base import VideoAdapter, VideoRequest, VideoStatus
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import Reply, closed_port
from tests.fakes.gemini_server import google_error_body
from tests.fakes.images import make_image
from tests.fakes.veo_server import VEO_MODELS, FakeVeoServer, VeoReply

KEY = "AIzaFAKE-veo-video-key-0123456789"
MODEL = "veo-3.1-generate-preview"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeVeoServer]:
    with FakeVeoServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeVeoServer) -> None:
    server.reset()
    server.default = VeoReply()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(client: httpx.AsyncClient, base_url: str, *, key: str = KEY) -> VeoVideoAdapter:
    config = EndpointConfig(base_url=base_url, api_key=key, provider="gemini", timeout=5.0)
    return VeoVideoAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeVeoServer) -> VeoVideoAdapter:
    return make(client, server.base_url)


def ask(prompt: str = "A paper boat on a rainy street", **kwargs: Any) -> VideoRequest:
    kwargs.setdefault("model", MODEL)
    return VideoRequest(prompt=prompt, **kwargs)


async def until_done(adapter: VeoVideoAdapter, handle: str, limit: int = 10) -> tuple[VideoStatus, int]:
    for count in range(1, limit + 1):
        status = await adapter.poll(handle, MODEL)
        if status.state != "running":
            return status, count
    raise AssertionError("the operation never finished")


async def fetch(adapter: VeoVideoAdapter, handle: str, status: VideoStatus) -> bytes:
    return b"".join([chunk async for chunk in adapter.download(handle, status, MODEL)])


def frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[:16] not in str(exc)


# --- interface and capability data --------------------------------------------------------


def test_capability_table() -> None:
    assert set(VEO_VIDEO_MODELS) == {"veo-3.1-generate-preview", "veo-3.1-fast-generate-preview"}
    for caps in VEO_VIDEO_MODELS.values():
        assert caps.durations == (4, 6, 8)
        assert caps.aspect_ratios == ("16:9", "9:16")
        assert caps.resolutions == ("720p", "1080p")
        assert caps.image_to_video and caps.end_frame and not caps.seed
        assert caps.key_env == "GEMINI_API_KEY" and caps.poll_interval_s == 10.0
    assert (
        VEO_VIDEO_MODELS["veo-3.1-fast-generate-preview"].typical_seconds
        < VEO_VIDEO_MODELS[MODEL].typical_seconds
    )


async def test_adapter_satisfies_the_protocol(adapter: VeoVideoAdapter) -> None:
    assert isinstance(adapter, VideoAdapter)
    assert adapter.protocol == "gemini_video"


# --- the whole round trip -----------------------------------------------------------------


async def test_submit_poll_download(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    server.script(VeoReply(polls=3))
    handle = await adapter.submit(ask(duration_s=8, aspect_ratio="9:16", resolution="1080p"))
    assert handle.startswith(f"models/{MODEL}/operations/")
    assert server.submissions == 1

    first = await adapter.poll(handle, MODEL)
    assert (first.state, first.progress, first.result_url) == ("running", None, None)
    status, polls = await until_done(adapter, handle)
    assert polls == 2  # three polls in all
    assert status.state == "succeeded" and status.error is None and not status.refused
    assert status.result_url is not None and ":download?alt=media" in status.result_url

    data = await fetch(adapter, handle, status)
    assert data == server.mp4 and data[4:8] == b"ftyp"
    assert frames(data) == 8

    (sent,) = server.requests_to(f"/v1beta/models/{MODEL}:predictLongRunning")
    assert sent.headers["x-goog-api-key"] == KEY and "key" not in sent.query
    assert sent.json() == {
        "instances": [{"prompt": "A paper boat on a rainy street"}],
        "parameters": {"aspectRatio": "9:16", "resolution": "1080p", "durationSeconds": 8},
    }
    polls_sent = server.requests_to(f"/v1beta/{handle}")
    assert len(polls_sent) == 3 and all(r.headers["x-goog-api-key"] == KEY for r in polls_sent)
    file_requests = [r for r in server.requests if r.path.startswith("/v1beta/files/")]
    assert len(file_requests) == 1 and file_requests[0].headers["x-goog-api-key"] == KEY
    # The redirect went to another origin (the storage host): the key did not follow it.
    (blob,) = server.blob_requests()
    assert "x-goog-api-key" not in blob.headers and blob.headers["host"].startswith("localhost")


async def test_start_and_end_frames_and_negative_prompt(
    adapter: VeoVideoAdapter, server: FakeVeoServer
) -> None:
    start = make_image(16, 9, "PNG", (200, 10, 10))
    end = make_image(16, 9, "JPEG", (10, 10, 200))
    request = ask(
        start_image=InputImage(start, "image/png"),
        end_image=InputImage(end, "image/jpeg", "end.jpg"),
        negative_prompt="text, watermarks",
        duration_s=4,
        extra={"parameters": {"personGeneration": "allow_adult"}},
    )
    await adapter.submit(request)
    (body,) = server.create_bodies()
    assert body["instances"] == [
        {
            "prompt": "A paper boat on a rainy street",
            "image": {"bytesBase64Encoded": base64.b64encode(start).decode(), "mimeType": "image/png"},
            "lastFrame": {"bytesBase64Encoded": base64.b64encode(end).decode(), "mimeType": "image/jpeg"},
        }
    ]
    assert body["parameters"] == {
        "durationSeconds": 4,
        "negativePrompt": "text, watermarks",
        "personGeneration": "allow_adult",
    }


async def test_download_without_a_stored_url_asks_the_operation_again(
    adapter: VeoVideoAdapter, server: FakeVeoServer
) -> None:
    server.script(VeoReply(polls=1))
    handle = await adapter.submit(ask())
    await adapter.poll(handle, MODEL)
    data = await fetch(adapter, handle, VideoStatus(state="succeeded"))  # e.g. after a restart
    assert data == server.mp4


# --- failures reported by poll ------------------------------------------------------------


async def test_error_done_is_failed_with_googles_words(
    adapter: VeoVideoAdapter, server: FakeVeoServer
) -> None:
    server.script(VeoReply(polls=1, outcome="error", error_code=13, error_message="Internal failure."))
    handle = await adapter.submit(ask())
    status = await adapter.poll(handle, MODEL)
    assert status.state == "failed" and not status.refused
    assert status.error == "Internal failure. [code 13]" and status.info["error_code"] == 13


async def test_policy_error_is_a_refusal(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    message = (
        "The prompt could not be submitted. This prompt contains words that violate Veo's usage guidelines."
    )
    server.script(VeoReply(polls=1, outcome="error", error_code=3, error_message=message))
    status = await adapter.poll(await adapter.submit(ask()), MODEL)
    assert status.state == "failed" and status.refused and "usage guidelines" in (status.error or "")


async def test_rai_filtered_is_a_refusal_with_the_reason(
    adapter: VeoVideoAdapter, server: FakeVeoServer
) -> None:
    reason = "Your current safety settings for person generation blocked this video."
    server.script(VeoReply(polls=1, outcome="filtered", rai_reasons=[reason], rai_count=1))
    status = await adapter.poll(await adapter.submit(ask()), MODEL)
    assert status.state == "failed" and status.refused
    assert status.error == reason
    assert status.info["rai_media_filtered_count"] == 1
    assert status.info["rai_media_filtered_reasons"] == [reason]


async def test_rai_filtered_without_reasons_still_says_so(
    adapter: VeoVideoAdapter, server: FakeVeoServer
) -> None:
    server.script(VeoReply(polls=1, outcome="filtered", rai_reasons=[], rai_count=2))
    status = await adapter.poll(await adapter.submit(ask()), MODEL)
    assert status.refused and "2 video(s) withheld" in (status.error or "")


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>oops</html>",
        b'["not", "an", "object"]',
        b'{"name": "x", "done": "yes"}',
        b'{"name": "x", "done": true}',
        b'{"name": "x", "done": true, "response": {"generateVideoResponse": {}}}',
        b'{"name": "x", "done": true, "response": {"generateVideoResponse": {"generatedSamples": [{}]}}}',
        b'{"name": "x", "done": true, "error": "broken"}',
    ],
)
async def test_garbage_poll_is_protocol_error(
    adapter: VeoVideoAdapter, server: FakeVeoServer, raw: bytes
) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(Reply(raw=raw))
    with pytest.raises(ProviderProtocolError):
        await adapter.poll(handle, MODEL)


async def test_bad_handle_is_refused_without_a_request(
    adapter: VeoVideoAdapter, server: FakeVeoServer
) -> None:
    with pytest.raises(ProviderProtocolError, match="not a Veo operation"):
        await adapter.poll("../../models?x=1", MODEL)
    assert server.requests == []


async def test_error_object_in_a_poll_200_is_mapped(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(Reply(raw=json.dumps(google_error_body(503)).encode()))
    with pytest.raises(ProviderUnavailable):
        await adapter.poll(handle, MODEL)


# --- HTTP errors on create and poll -------------------------------------------------------


async def test_rate_limit_on_create_and_poll(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    server.script(Reply(status=429, headers={"retry-after": "7"}))
    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.submit(ask())
    assert caught.value.retry_after == 7.0 and caught.value.status == 429
    assert server.submissions == 0  # nothing was accepted, so nothing was paid for

    handle = await adapter.submit(ask())
    server.script_poll(Reply(status=429))
    with pytest.raises(ProviderRateLimited) as polled:
        await adapter.poll(handle, MODEL)
    assert polled.value.retry_after == 30.0  # the body's RetryInfo


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_on_create_and_poll(
    adapter: VeoVideoAdapter, server: FakeVeoServer, status: int
) -> None:
    server.script(Reply(status=status, headers={"retry-after": "3"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.submit(ask())
    assert caught.value.retry_after == 3.0 and caught.value.retryable
    handle = await adapter.submit(ask())
    server.script_poll(Reply(status=status))
    with pytest.raises(ProviderUnavailable):
        await adapter.poll(handle, MODEL)
    status_after = await adapter.poll(handle, MODEL)  # the operation itself is unharmed
    assert status_after.state == "running"


async def test_bad_key(client: httpx.AsyncClient, server: FakeVeoServer) -> None:
    with pytest.raises(AuthenticationError, match="API key not valid") as caught:
        await make(client, server.base_url, key="AIza-wrong-veo-key-0000").submit(ask())
    assert server.submissions == 0
    no_secret(caught.value)


async def test_fake_rejects_what_the_api_rejects(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    with pytest.raises(BadRequest, match="Unsupported duration"):
        await adapter.submit(ask(duration_s=5))
    with pytest.raises(BadRequest, match="aspect ratio"):
        await adapter.submit(ask(aspect_ratio="1:1"))
    with pytest.raises(BadRequest, match="Unknown name"):
        await adapter.submit(ask(extra={"parameters": {"seed": 7}}))
    with pytest.raises(BadRequest, match="lastFrame"):
        await adapter.submit(ask(end_image=InputImage(make_image(4, 4, "PNG", (0, 0, 0)))))
    assert server.submissions == 0


async def test_unknown_model_and_operation(adapter: VeoVideoAdapter) -> None:
    with pytest.raises(UpstreamModelNotFound):
        await adapter.submit(ask(model="veo-0-nope"))
    with pytest.raises(UpstreamModelNotFound):
        await adapter.poll(f"models/{MODEL}/operations/missing1", MODEL)


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderConnectionError):
        await make(client, f"http://127.0.0.1:{closed_port()}/v1beta").submit(ask())


# --- download failures --------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_expired_file_is_result_expired(
    adapter: VeoVideoAdapter, server: FakeVeoServer, status: int
) -> None:
    server.script(VeoReply(polls=1, file_status=status))
    handle = await adapter.submit(ask())
    done = await adapter.poll(handle, MODEL)
    with pytest.raises(ResultExpired) as caught:
        await fetch(adapter, handle, done)
    assert not caught.value.retryable
    no_secret(caught.value)


async def test_cut_download(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    server.script(VeoReply(polls=1, cut_download=True))
    handle = await adapter.submit(ask())
    done = await adapter.poll(handle, MODEL)
    with pytest.raises((ProviderConnectionError, ProviderProtocolError)):
        await fetch(adapter, handle, done)


async def test_a_file_that_is_not_mp4(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    server.script(VeoReply(polls=1, video=b"<html>sign in</html>"))
    handle = await adapter.submit(ask())
    done = await adapter.poll(handle, MODEL)
    with pytest.raises(ProviderProtocolError, match="not an MP4"):
        await fetch(adapter, handle, done)


# --- cancel, models, health ---------------------------------------------------------------


async def test_cancel_is_not_offered(adapter: VeoVideoAdapter, server: FakeVeoServer) -> None:
    handle = await adapter.submit(ask())
    before = len(server.requests)
    assert await adapter.cancel(handle, MODEL) is False
    assert len(server.requests) == before


async def test_list_models_and_probe(
    adapter: VeoVideoAdapter, client: httpx.AsyncClient, server: FakeVeoServer
) -> None:
    models = await adapter.list_models()
    assert [m.id for m in models] == VEO_MODELS
    assert all(m.details["video"] and m.capabilities is not None and m.capabilities.vision for m in models)
    assert (await adapter.probe()).ok
    bad = await make(client, server.base_url, key="AIza-wrong").probe()
    assert not bad.ok and bad.error is not None and "API key not valid" in bad.error


# --- the official SDK proves the fake faithful --------------------------------------------


def test_google_genai_sdk_talks_to_the_fake(server: FakeVeoServer) -> None:
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    server.script(VeoReply(polls=2))
    client = genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1beta")
    )
    try:
        config = types.GenerateVideosConfig(aspect_ratio="16:9", resolution="720p", duration_seconds=6)
        try:
            operation = client.models.generate_videos(
                model=MODEL, source=types.GenerateVideosSource(prompt="A lighthouse at dusk"), config=config
            )
        except ValueError as exc:
            # google-genai 3.x sends generate_videos only in Vertex mode; the Gemini-API body is the one
            # its 1.x converter wrote, sent through the SDK's own client (its auth and base URL).
            assert "only supported" in str(exc)
            body = {
                "instances": [{"prompt": "A lighthouse at dusk"}],
                "parameters": {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 6},
            }
            response = client._api_client.request("post", f"models/{MODEL}:predictLongRunning", body, None)
            operation = types.GenerateVideosOperation.from_api_response(json.loads(response.body))
        assert operation.name is not None and operation.name.startswith(f"models/{MODEL}/operations/")
        polls = 0
        while not operation.done:  # as the SDK's docs show, without the sleep
            operation = client.operations.get(operation)
            polls += 1
            assert polls < 10
        assert polls == 2
        assert operation.error is None and operation.response is not None
        videos = operation.response.generated_videos
        assert videos and videos[0].video is not None and videos[0].video.uri
        uri = videos[0].video.uri
        # The SDK fetches files/{id}:download?alt=media with the key and follows the redirect.
        name = uri.split("files/")[1].split(":")[0]
        data = client.files.download(file=name)
        assert data == server.mp4
    finally:
        client.close()
    create = server.create_bodies()[0]
    assert create["parameters"] == {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 6}
    assert all(
        r.headers.get("x-goog-api-key") == KEY for r in server.requests if r.path.startswith("/v1beta")
    )


def test_sdk_reads_the_fakes_refusals_and_errors(server: FakeVeoServer) -> None:
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    reason = "Your current safety settings for person generation blocked this video."
    server.script(
        VeoReply(polls=1, outcome="filtered", rai_reasons=[reason], rai_count=1),
        VeoReply(polls=1, outcome="error", error_code=13, error_message="Internal failure."),
    )
    client = genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1beta")
    )
    try:
        results = []
        for _ in range(2):
            response = client._api_client.request(
                "post", f"models/{MODEL}:predictLongRunning", {"instances": [{"prompt": "x"}]}, None
            )
            operation = types.GenerateVideosOperation.from_api_response(json.loads(response.body))
            results.append(client.operations.get(operation))
    finally:
        client.close()
    filtered, failed = results
    assert filtered.done and filtered.response is not None
    assert filtered.response.rai_media_filtered_count == 1
    assert filtered.response.rai_media_filtered_reasons == [reason]
    assert not filtered.response.generated_videos
    assert failed.done and failed.error == {"code": 13, "message": "Internal failure."}
