"""RunwayVideoAdapter against the fake Runway API (and its CDN) over real HTTP."""

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
    InvalidRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ResultExpired,
    UpstreamModelNotFound,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media.base import InputImage
from mmstudio.providers.media.runway import (
    RUNWAY_DISPLAY_NAMES,
    RUNWAY_VIDEO_MODELS,
    RunwayVideoAdapter,
)
from mmstudio.providers.media.video_base import VideoAdapter, VideoRequest, VideoStatus
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import BlackHole, Reply, closed_port
from tests.fakes.images import make_image
from tests.fakes.runway_server import SAFETY_FAILURE, FakeRunwayServer, RunwayReply

KEY = "key_" + "0123456789abcdef" * 8
START = InputImage(make_image(64, 36), "image/png", "start.png")
END = InputImage(make_image(64, 40, "JPEG", (10, 200, 90)), "image/jpeg", "end.jpg")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeRunwayServer]:
    with FakeRunwayServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeRunwayServer) -> None:
    server.reset()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(
    client: httpx.AsyncClient,
    base_url: str,
    *,
    key: str | None = KEY,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> RunwayVideoAdapter:
    config = EndpointConfig(
        base_url=base_url, api_key=key, provider="runway", timeout=timeout, headers=headers or {}
    )
    return RunwayVideoAdapter(config, client)


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeRunwayServer) -> RunwayVideoAdapter:
    return make(client, f"{server.url}/v1")


def ask(prompt: str = "The lighthouse beam sweeps across a dark sea", **kwargs: Any) -> VideoRequest:
    kwargs.setdefault("model", "gen4_turbo")
    kwargs.setdefault("start_image", START)
    return VideoRequest(prompt=prompt, **kwargs)


def no_secret(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY[8:30] not in str(exc)


async def poll_until_done(
    adapter: RunwayVideoAdapter, handle: str, model: str = "gen4_turbo"
) -> list[VideoStatus]:
    seen = [await adapter.poll(handle, model)]
    while seen[-1].state in ("queued", "running"):
        assert len(seen) < 20
        seen.append(await adapter.poll(handle, model))
    return seen


async def fetch(adapter: RunwayVideoAdapter, handle: str, status: VideoStatus) -> bytes:
    return b"".join([chunk async for chunk in adapter.download(handle, status, "gen4_turbo")])


def data_uri_bytes(uri: str) -> tuple[str, bytes]:
    head, _, data = uri.partition(",")
    return head, base64.b64decode(data)


# --- the model data -----------------------------------------------------------------------


def test_capability_table() -> None:
    assert list(RUNWAY_VIDEO_MODELS) == ["gen4_turbo", "gen3a_turbo"]
    gen4, gen3 = RUNWAY_VIDEO_MODELS["gen4_turbo"], RUNWAY_VIDEO_MODELS["gen3a_turbo"]
    assert gen4.aspect_ratios == ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
    assert gen4.resolutions == ("1280x720", "720x1280", "1104x832", "832x1104", "960x960", "1584x672")
    assert gen3.aspect_ratios == ("5:3", "3:5") and gen3.resolutions == ("1280x768", "768x1280")
    for caps in (gen4, gen3):
        assert caps.durations == (5, 10)
        assert caps.image_to_video and caps.seed and not caps.camera_motion and not caps.loop
        assert caps.price_per_second_usd == 0.05 and caps.key_env == "RUNWAYML_API_SECRET"
        assert caps.poll_interval_s >= 5.0 and caps.typical_seconds > 0
    assert gen3.end_frame and not gen4.end_frame
    assert RUNWAY_DISPLAY_NAMES == {
        "gen3a_turbo": "Runway Gen-3 Alpha Turbo",
        "gen4_turbo": "Runway Gen-4 Turbo",
    }


def test_it_is_a_video_adapter(adapter: RunwayVideoAdapter) -> None:
    # The registry entry (providers/media/__init__.py) is another change's; only the shape is checked here.
    assert isinstance(adapter, VideoAdapter) and adapter.protocol == "runway"


# --- the whole course of a video ----------------------------------------------------------


async def test_submit_poll_download(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    handle = await adapter.submit(ask(aspect_ratio="16:9", duration_s=5, seed=42))
    assert server.submissions == 1 and handle in server.tasks

    (sent,) = server.requests_to("/v1/image_to_video")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-runway-version"] == "2024-11-06"
    body = sent.json()
    assert set(body) == {"model", "promptImage", "promptText", "ratio", "duration", "seed"}
    assert (body["model"], body["ratio"], body["duration"], body["seed"]) == ("gen4_turbo", "1280:720", 5, 42)
    assert body["promptText"] == "The lighthouse beam sweeps across a dark sea"
    assert data_uri_bytes(body["promptImage"]) == ("data:image/png;base64", START.data)

    seen = await poll_until_done(adapter, handle)
    assert [(s.state, s.progress) for s in seen] == [
        ("queued", None),
        ("queued", None),
        ("running", 25.0),
        ("running", 75.0),
        ("succeeded", 100.0),
    ]
    assert [s.info["status"] for s in seen[:2]] == ["PENDING", "THROTTLED"]
    assert seen[0].info["estimated_credits"] == 25 and seen[-1].info["credits"] == 25
    done = seen[-1]
    assert done.result_url is not None and done.result_url.startswith(f"{server.url}/cdn/{handle}.mp4?")
    assert done.error is None and not done.refused

    data = await fetch(adapter, handle, done)
    assert data == server.video
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 48)
    (download,) = server.downloads()
    # The signed CDN URL gets no key and no API version header.
    assert "authorization" not in download.headers and "x-runway-version" not in download.headers
    assert server.submissions == 1


async def test_only_what_was_asked_is_sent(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    await adapter.submit(ask("", start_image=END))
    (body,) = server.create_bodies()
    assert set(body) == {"model", "promptImage"}
    assert data_uri_bytes(body["promptImage"]) == ("data:image/jpeg;base64", END.data)


@pytest.mark.parametrize(
    ("fields", "ratio"),
    [
        ({"aspect_ratio": "9:16"}, "720:1280"),
        ({"aspect_ratio": "4:3"}, "1104:832"),
        ({"aspect_ratio": "21:9"}, "1584:672"),
        ({"aspect_ratio": "1:1"}, "960:960"),
        ({"aspect_ratio": "832:1104"}, "832:1104"),  # Runway's own spelling passes as it is
        ({"resolution": "720x1280", "aspect_ratio": "16:9"}, "720:1280"),  # the exact size wins
        ({"model": "gen3a_turbo", "aspect_ratio": "5:3"}, "1280:768"),
        ({"model": "gen3a_turbo", "aspect_ratio": "3:5"}, "768:1280"),
        ({"model": "gen3a_turbo", "resolution": "1280x768"}, "1280:768"),
    ],
)
async def test_ratio_per_model(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer, fields: dict[str, Any], ratio: str
) -> None:
    await adapter.submit(ask(**fields))
    (body,) = server.create_bodies()
    assert body["ratio"] == ratio


async def test_gen3a_turbo_with_a_last_frame(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    handle = await adapter.submit(
        ask(model="gen3a_turbo", end_image=END, duration_s=10, extra={"watermark": False})
    )
    (body,) = server.create_bodies()
    first, last = body["promptImage"]
    assert first["position"] == "first" and data_uri_bytes(first["uri"])[1] == START.data
    assert last["position"] == "last" and data_uri_bytes(last["uri"])[1] == END.data
    assert body["duration"] == 10 and body["watermark"] is False
    assert (await poll_until_done(adapter, handle, "gen3a_turbo"))[-1].state == "succeeded"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ask(start_image=None), "start_image"),
        (ask(model="gen3a_turbo", start_image=None, end_image=END), "start_image"),
        (ask(end_image=END), "end_image"),  # gen4_turbo takes a first frame only
        (ask(aspect_ratio="5:3"), "aspect_ratio"),
        (ask(resolution="1920x1080"), "resolution"),
        (ask(duration_s=7), "duration_s"),
        (ask(seed=-1), "seed"),
        (ask(seed=2**32), "seed"),
        (ask("x" * 1001), "prompt"),
        (ask(model="gen9_ultra"), "model"),
        (ask(start_image=InputImage(b"\0" * (4 * 1024 * 1024), "image/png")), "start_image"),
        (ask(start_image=InputImage(b"%PDF-", "application/pdf", "a.pdf")), "start_image"),
    ],
)
async def test_bad_requests_are_refused_before_sending(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer, request_: VideoRequest, field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await adapter.submit(request_)
    assert caught.value.field == field
    assert server.requests == [] and server.submissions == 0


# --- refusals and failures ----------------------------------------------------------------


@pytest.mark.parametrize("code", ["SAFETY.INPUT.TEXT", "SAFETY.INPUT.IMAGE", "SAFETY.OUTPUT.VIDEO"])
async def test_moderation_failure_is_a_refusal(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer, code: str
) -> None:
    server.script_create(RunwayReply(steps=(("PENDING", None),), end="FAILED", failure_code=code))
    handle = await adapter.submit(ask())
    queued, failed = await poll_until_done(adapter, handle)
    assert queued.state == "queued"
    assert failed.state == "failed" and failed.refused
    assert failed.error is not None and SAFETY_FAILURE in failed.error and code in failed.error
    assert failed.info["failure_code"] == code and failed.result_url is None


@pytest.mark.parametrize(("code", "shown"), [("INTERNAL.BAD_OUTPUT.CODE01", "[INTERNAL"), (None, "")])
async def test_other_failures_are_not_refusals(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer, code: str | None, shown: str
) -> None:
    reason = "The generation could not be completed."
    server.script_create(RunwayReply(steps=(), end="FAILED", failure=reason, failure_code=code))
    status = await adapter.poll(await adapter.submit(ask()), "gen4_turbo")
    assert status.state == "failed" and not status.refused
    assert status.error is not None and status.error.startswith(reason) and shown in status.error


# --- HTTP errors --------------------------------------------------------------------------


async def test_bad_key_is_authentication_error(
    client: httpx.AsyncClient, server: FakeRunwayServer, adapter: RunwayVideoAdapter
) -> None:
    handle = await adapter.submit(ask())
    wrong = make(client, f"{server.url}/v1", key="key_" + "f" * 128)
    for call in (wrong.submit(ask()), wrong.poll(handle, "gen4_turbo"), wrong.cancel(handle, "gen4_turbo")):
        with pytest.raises(AuthenticationError) as caught:
            await call
        assert caught.value.status == 401 and not caught.value.retryable
        assert "f" * 20 not in str(caught.value)
    with pytest.raises(AuthenticationError):
        await make(client, f"{server.url}/v1", key=None).submit(ask())
    assert server.submissions == 1


async def test_the_fake_wants_the_version_header(server: FakeRunwayServer) -> None:
    async with httpx.AsyncClient() as plain:
        answer = await plain.get(f"{server.url}/v1/organization", headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 400 and "X-Runway-Version" in answer.json()["error"]
        dated = await plain.get(
            f"{server.url}/v1/organization",
            headers={"Authorization": f"Bearer {KEY}", "X-Runway-Version": "2024-11-06"},
        )
        assert dated.status_code == 200


async def test_a_wrong_version_is_bad_request(client: httpx.AsyncClient, server: FakeRunwayServer) -> None:
    adapter = make(client, f"{server.url}/v1", headers={"X-Runway-Version": "2023-01-01"})
    with pytest.raises(BadRequest, match="version") as caught:
        await adapter.submit(ask())
    assert caught.value.status == 400 and not caught.value.retryable
    assert server.submissions == 0


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (RunwayReply(status=429, headers={"retry-after": "17"}), ProviderRateLimited, 17.0),
        (RunwayReply(status=503, headers={"retry-after": "4"}), ProviderUnavailable, 4.0),
        (RunwayReply(status=502), ProviderUnavailable, None),
        (RunwayReply(status=504), ProviderUnavailable, None),
        (RunwayReply(status=500), ProviderUnavailable, None),
    ],
)
async def test_create_errors_carry_retry_after(
    adapter: RunwayVideoAdapter,
    server: FakeRunwayServer,
    reply: RunwayReply,
    error: type[ProviderError],
    retry_after: float | None,
) -> None:
    server.script_create(reply)
    with pytest.raises(error) as caught:
        await adapter.submit(ask())
    assert caught.value.retryable and caught.value.retry_after == retry_after
    assert caught.value.status == reply.status
    assert server.submissions == 0  # nothing was accepted, so a retry pays once


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (Reply(status=429, headers={"retry-after": "3"}), ProviderRateLimited, 3.0),
        (Reply(status=503, headers={"retry-after": "9"}), ProviderUnavailable, 9.0),
    ],
)
async def test_poll_errors_then_the_task_goes_on(
    adapter: RunwayVideoAdapter,
    server: FakeRunwayServer,
    reply: Reply,
    error: type[ProviderError],
    retry_after: float,
) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(reply)
    with pytest.raises(error) as caught:
        await adapter.poll(handle, "gen4_turbo")
    assert caught.value.retryable and caught.value.retry_after == retry_after
    assert (await poll_until_done(adapter, handle))[-1].state == "succeeded"
    assert server.submissions == 1


async def test_a_400_names_the_field(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    with pytest.raises(BadRequest, match=r"Validation of body failed \(promptImage: Only HTTPS") as caught:
        await adapter.submit(ask(extra={"promptImage": "http://example.com/a.png"}))
    assert not caught.value.retryable
    no_secret(caught.value)


async def test_model_not_available_is_not_found(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer
) -> None:
    server.script_create(
        RunwayReply(status=403, error_body={"error": "Model variant gen4_turbo is not available."})
    )
    with pytest.raises(UpstreamModelNotFound, match="not available") as caught:
        await adapter.submit(ask())
    assert caught.value.status == 403 and not caught.value.retryable


async def test_timeout_and_refused_connection(client: httpx.AsyncClient) -> None:
    with BlackHole() as hole, pytest.raises(ProviderTimeout) as caught:
        await make(client, f"{hole.url}/v1", timeout=0.3).submit(ask())
    assert caught.value.retryable
    no_secret(caught.value)
    with pytest.raises(ProviderConnectionError, match="refused"):
        await make(client, f"http://127.0.0.1:{closed_port()}/v1").poll("abc", "gen4_turbo")


# --- garbage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[1, 2, 3]", "not a task object"),
        (b'{"id": "t", "status": "EXPLODING"}', "unknown status 'EXPLODING'"),
        (b'{"id": "t", "status": "RUNNING", "progress": "half"}', "not a number"),
        (b'{"id": "t", "status": "SUCCEEDED", "output": []}', "without output URLs"),
        (b'{"id": "t", "status": "SUCCEEDED", "output": ["ftp://x/y.mp4"]}', "not a URL"),
    ],
)
async def test_garbage_polls_are_protocol_errors(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer, raw: bytes, match: str
) -> None:
    handle = await adapter.submit(ask())
    server.script_poll(Reply(raw=raw))
    with pytest.raises(ProviderProtocolError, match=match) as caught:
        await adapter.poll(handle, "gen4_turbo")
    assert caught.value.retryable


async def test_create_without_id_is_protocol_error(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer
) -> None:
    server.script_create(RunwayReply(raw=b'{"estimatedCost": {"credits": 25}}'))
    with pytest.raises(ProviderProtocolError, match="without an `id`"):
        await adapter.submit(ask())


# --- download -----------------------------------------------------------------------------


async def finished(adapter: RunwayVideoAdapter) -> tuple[str, VideoStatus]:
    handle = await adapter.submit(ask())
    return handle, (await poll_until_done(adapter, handle))[-1]


async def test_cut_download_raises(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    handle, done = await finished(adapter)
    server.script_download(Reply(drop_after=0))
    with pytest.raises((ProviderConnectionError, ProviderProtocolError)) as caught:
        await fetch(adapter, handle, done)
    assert caught.value.retryable


async def test_a_download_that_is_not_mp4(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    handle, done = await finished(adapter)
    server.script_download(Reply(raw=b"<html>not a video at all</html>"))
    with pytest.raises(ProviderProtocolError, match="not an MP4"):
        await fetch(adapter, handle, done)


async def test_a_lapsed_url_is_signed_again(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    handle, done = await finished(adapter)
    server.expire_urls(handle)
    polls = len(server.requests_to(f"/v1/tasks/{handle}"))
    assert await fetch(adapter, handle, done) == server.video
    first, second = server.downloads()
    assert first.query["_jwt"] != second.query["_jwt"]
    assert len(server.requests_to(f"/v1/tasks/{handle}")) == polls + 1


async def test_a_status_without_url_fetches_the_task(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer
) -> None:
    handle, _done = await finished(adapter)
    assert await fetch(adapter, handle, VideoStatus(state="succeeded")) == server.video


async def test_an_expired_task_is_result_expired(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer
) -> None:
    handle, done = await finished(adapter)
    server.expire_task(handle)
    with pytest.raises(ResultExpired, match=handle) as caught:
        await fetch(adapter, handle, done)
    assert not caught.value.retryable


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_an_output_url_gone_twice_is_result_expired(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer, status: int
) -> None:
    handle, done = await finished(adapter)
    server.script_download(Reply(status=status), Reply(status=status))
    with pytest.raises(ResultExpired, match=f"HTTP {status}") as caught:
        await fetch(adapter, handle, done)
    assert not caught.value.retryable and len(server.downloads()) == 2


async def test_a_cdn_server_error_is_unavailable(
    adapter: RunwayVideoAdapter, server: FakeRunwayServer
) -> None:
    handle, done = await finished(adapter)
    server.script_download(Reply(status=503))
    with pytest.raises(ProviderUnavailable):
        await fetch(adapter, handle, done)


# --- cancel -------------------------------------------------------------------------------


async def test_cancel_a_running_task(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    handle = await adapter.submit(ask())
    assert (await adapter.poll(handle, "gen4_turbo")).state == "queued"
    assert await adapter.cancel(handle, "gen4_turbo") is True
    (deleted,) = [r for r in server.requests if r.method == "DELETE"]
    assert deleted.path == f"/v1/tasks/{handle}" and deleted.headers["x-runway-version"] == "2024-11-06"
    assert (await adapter.poll(handle, "gen4_turbo")).state == "cancelled"


async def test_cancel_a_finished_task_deletes_it(adapter: RunwayVideoAdapter) -> None:
    handle, _done = await finished(adapter)
    assert await adapter.cancel(handle, "gen4_turbo") is True
    with pytest.raises(ResultExpired, match="no longer has task"):
        await adapter.poll(handle, "gen4_turbo")
    assert await adapter.cancel(handle, "gen4_turbo") is True  # already gone: nothing left to stop


async def test_poll_of_an_unknown_task_is_result_expired(adapter: RunwayVideoAdapter) -> None:
    with pytest.raises(ResultExpired):
        await adapter.poll("00000000-0000-0000-0000-000000000000", "gen4_turbo")


# --- models and health --------------------------------------------------------------------


async def test_list_models(adapter: RunwayVideoAdapter, server: FakeRunwayServer) -> None:
    models = {m.id: m for m in await adapter.list_models()}
    assert set(models) == {"gen4_turbo", "gen3a_turbo"}
    gen4 = models["gen4_turbo"]
    assert gen4.owned_by == "runway" and gen4.details["display_name"] == "Runway Gen-4 Turbo"
    assert gen4.details["requires_start_image"] and gen4.details["video"]
    assert server.requests == []  # Runway has no model list: nothing is asked


async def test_probe(
    adapter: RunwayVideoAdapter, client: httpx.AsyncClient, server: FakeRunwayServer
) -> None:
    assert (await adapter.probe()).ok
    (probe,) = server.requests_to("/v1/organization")
    assert probe.headers["x-runway-version"] == "2024-11-06"
    wrong = await make(client, f"{server.url}/v1", key="key_" + "9" * 128).probe()
    assert not wrong.ok and wrong.error is not None and "9" * 20 not in wrong.error
    assert not (await make(client, f"http://127.0.0.1:{closed_port()}/v1").probe()).ok


# --- the official SDK against the fake ----------------------------------------------------


def test_the_fake_speaks_to_the_official_sdk(server: FakeRunwayServer) -> None:
    """The ``runwayml`` SDK (not a dependency: skipped without it) parses the fake's answers and sends
    the same auth and version headers as the adapter."""
    runwayml = pytest.importorskip("runwayml")
    sdk = runwayml.RunwayML(api_key=KEY, base_url=server.url, max_retries=0)
    try:
        image = "data:image/png;base64," + base64.b64encode(START.data).decode()
        created = sdk.image_to_video.create(
            model="gen4_turbo", prompt_image=image, prompt_text="waves", ratio="1280:720", duration=5
        )
        states = []
        for _ in range(6):
            task = sdk.tasks.retrieve(created.id)
            states.append(task.status)
        assert states == ["PENDING", "THROTTLED", "RUNNING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
        assert task.output[0].startswith(f"{server.url}/cdn/")
        sdk.tasks.delete(created.id)
        with pytest.raises(runwayml.NotFoundError):
            sdk.tasks.retrieve(created.id)
        with pytest.raises(runwayml.AuthenticationError):
            runwayml.RunwayML(api_key="key_nope", base_url=server.url, max_retries=0).tasks.retrieve(
                created.id
            )
    finally:
        sdk.close()
    (sent,) = server.requests_to("/v1/image_to_video")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-runway-version"] == "2024-11-06"
    assert sent.json() == {
        "model": "gen4_turbo",
        "promptImage": image,
        "promptText": "waves",
        "ratio": "1280:720",
        "duration": 5,
    }
