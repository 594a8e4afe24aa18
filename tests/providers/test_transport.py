"""The shared client against a raw HTTP server scripted byte by byte, both ways adapters reach its
aiohttp pool: httpx's API on `AiohttpTransport`, and `DirectHTTP` (the adapters' hot path), whose
aiohttp failures `httpx_error` maps to the same httpx exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

import httpx
import pytest

from mmstudio.providers.transport import (
    FAILURES,
    DirectHTTP,
    DirectResponse,
    StatelessClient,
    _Lines,
    _text_decoder,
    httpx_error,
    make_http_client,
)

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """HTTP/1.1 on loopback; `handler` gets each request's head+body and writes bytes itself."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                await self.handler(request, reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def response(body: bytes, *, status: str = "200 OK", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.fixture
async def client() -> AsyncIterator[StatelessClient]:
    async with make_http_client() as http:
        yield http


class Reply(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def aiter_lines(self) -> AsyncIterator[str]: ...


class Via(Protocol):
    """One way to the pool: a plain request (body read), or a stream held open in a context."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Reply: ...

    def stream(
        self, method: str, url: str, *, timeout: httpx.Timeout | None = None
    ) -> contextlib.AbstractAsyncContextManager[Reply]: ...


TIMEOUT = httpx.Timeout(5.0)


class ThroughHttpx:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Reply:
        return await self.client.request(method, url, json=json, headers=headers, timeout=timeout or TIMEOUT)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, timeout: httpx.Timeout | None = None
    ) -> AsyncIterator[Reply]:
        async with self.client.stream(method, url, timeout=timeout or TIMEOUT) as reply:
            yield reply


@contextlib.contextmanager
def as_httpx() -> Iterator[None]:
    """What `HTTPAdapter.transport_errors` does with the direct path's failures, before mapping them."""
    try:
        yield
    except FAILURES as exc:
        raise httpx_error(exc) from exc


class _MappedLines:
    def __init__(self, reply: DirectResponse) -> None:
        self.reply = reply
        self.status_code = reply.status_code
        self.headers = reply.headers
        self.content = reply.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        lines = self.reply.aiter_lines()
        while True:
            with as_httpx():
                try:
                    line = await anext(lines)
                except StopAsyncIteration:
                    return
            yield line


class Direct:
    def __init__(self, direct: DirectHTTP) -> None:
        self.direct = direct

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Reply:
        with as_httpx():
            reply = await self.direct.send(
                method, url, headers=headers or {}, timeout=timeout or TIMEOUT, json_body=json
            )
        return _MappedLines(reply)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, timeout: httpx.Timeout | None = None
    ) -> AsyncIterator[Reply]:
        with as_httpx():
            reply = await self.direct.send(method, url, headers={}, timeout=timeout or TIMEOUT, stream=True)
        try:
            yield _MappedLines(reply)
        finally:
            await reply.aclose()


@pytest.fixture(params=["httpx", "direct"])
def via(request: pytest.FixtureRequest, client: StatelessClient) -> Via:
    if request.param == "httpx":
        return ThroughHttpx(client)
    assert client.direct is not None
    return Direct(client.direct)


async def test_request_line_headers_and_body_reach_the_server(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b'{"ok": true}', headers={"content-type": "application/json", "x-up": "1"}))

    async with RawServer(handler) as server:
        reply = await via.request(
            "POST", f"{server.url}/v1/chat?x=1", json={"a": "é"}, headers={"authorization": "Bearer k"}
        )
    assert reply.status_code == 200
    assert json.loads(reply.content) == {"ok": True}
    assert reply.headers["x-up"] == "1"
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat?x=1 HTTP/1.1"
    fields = [line.lower() for line in lines[1:]]
    assert "authorization: bearer k" in fields
    assert f"host: {server.url.removeprefix('http://')}" in fields
    assert sum(f.startswith("content-length:") for f in fields) == 1
    assert json.loads(body) == {"a": "é"}


async def test_keep_alive_reuses_one_connection(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b"fine"))

    async with RawServer(handler) as server:
        for _ in range(5):
            assert (await via.request("GET", server.url)).content == b"fine"
    assert server.connections == 1


async def test_gzip_bodies_are_decoded_once(via: Via) -> None:
    payload = json.dumps({"text": "squeezed " * 50}).encode()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(gzip.compress(payload), headers={"content-encoding": "gzip"}))

    async with RawServer(handler) as server:
        reply = await via.request("GET", server.url)
    assert reply.content == payload


async def test_a_stream_arrives_piece_by_piece_not_buffered(via: Via) -> None:
    first_seen = asyncio.Event()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        await first_seen.wait()  # the rest only after the client has the first piece
        writer.write(chunk(b"data: two\n\n") + b"0\r\n\r\n")

    async with RawServer(handler) as server, via.stream("GET", server.url) as reply:
        lines = []
        async for line in reply.aiter_lines():
            if line:
                lines.append(line)
                first_seen.set()
    assert lines == ["data: one", "data: two"]


async def test_a_stream_cut_midway_is_a_protocol_error(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server, via.stream("GET", server.url) as reply:
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in reply.aiter_lines():
                pass


async def test_a_body_shorter_than_its_length_is_a_protocol_error(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await via.request("GET", server.url)


async def test_a_server_closing_before_answering_is_a_protocol_error(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await via.request("GET", server.url)


async def test_garbage_instead_of_http_is_a_protocol_error(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await via.request("GET", server.url)


async def test_connection_refused_is_a_connect_error(via: Via) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await via.request("GET", f"http://127.0.0.1:{port}/")


async def test_waiting_longer_than_the_read_timeout_is_a_read_timeout(via: Via) -> None:
    release = asyncio.Event()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()

    async with RawServer(handler) as server:
        try:
            with pytest.raises(httpx.ReadTimeout):
                await via.request("GET", server.url, timeout=httpx.Timeout(5.0, read=0.05))
        finally:
            release.set()


async def test_a_gap_in_a_stream_longer_than_the_read_timeout_is_a_read_timeout(
    via: Via,
) -> None:
    release = asyncio.Event()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        await release.wait()

    async with RawServer(handler) as server:
        try:
            async with via.stream("GET", server.url, timeout=httpx.Timeout(5.0, read=0.05)) as reply:
                with pytest.raises(httpx.ReadTimeout):
                    async for _ in reply.aiter_lines():
                        pass
        finally:
            release.set()


async def test_closing_a_stream_early_never_reuses_the_half_read_connection(
    via: Via,
) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if request.startswith(b"GET /stream"):
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: 1\n\n"))
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await asyncio.Event().wait()  # never finishes; the client leaves
        writer.write(response(b"clean"))

    async with RawServer(handler) as server:
        async with via.stream("GET", f"{server.url}/stream") as reply:
            async for _ in reply.aiter_lines():
                break
        assert (await via.request("GET", f"{server.url}/after")).content == b"clean"
    assert server.connections == 2


async def test_cookies_from_one_answer_never_ride_on_the_next_request(
    via: Via, client: StatelessClient
) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b"ok", headers={"set-cookie": "session=user-a; Path=/"}))

    async with RawServer(handler) as server:
        first = await via.request("GET", server.url)
        assert first.headers["set-cookie"].startswith("session=")
        await via.request("GET", server.url)
        await client.get(server.url)  # neither path kept it for the other
    assert not any(b"cookie" in r.lower() for r in server.requests[1:])
    assert not client.cookies


async def test_redirects_are_not_followed_unless_asked(via: Via, client: StatelessClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if request.startswith(b"GET /old"):
            writer.write(response(b"", status="307 Temporary Redirect", headers={"location": "/new"}))
        else:
            writer.write(response(b"moved here"))

    async with RawServer(handler) as server:
        reply = await via.request("GET", f"{server.url}/old")
        assert reply.status_code == 307
        followed = await client.get(f"{server.url}/old", follow_redirects=True)
        assert followed.text == "moved here"


async def test_a_client_that_follows_redirects_has_no_direct_path() -> None:
    # Only httpx follows redirects (with its own rules), so adapters then use httpx's API.
    async with make_http_client(follow_redirects=True) as following:
        assert following.direct is None


async def test_both_paths_send_the_same_request(client: StatelessClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b"{}"))

    body = {"model": "m", "messages": [{"role": "user", "content": "héllo \u2028 😀"}], "n": 1.5}
    headers = {"Authorization": "Bearer k", "x-extra": "1", "accept": "application/json"}
    assert client.direct is not None
    async with RawServer(handler) as server:
        url = f"{server.url}/v1/chat/completions"
        await client.post(url, json=body, headers=headers, timeout=TIMEOUT)
        await client.direct.send("POST", url, headers=headers, timeout=TIMEOUT, json_body=body)
        await client.get(f"{server.url}/v1/models?x=1", headers=headers, timeout=TIMEOUT)
        await client.direct.send("GET", f"{server.url}/v1/models?x=1", headers=headers, timeout=TIMEOUT)

    def parts(raw: bytes) -> tuple[str, set[str], bytes]:
        head, _, payload = raw.partition(b"\r\n\r\n")
        first, *lines = head.decode().split("\r\n")
        return first, {line.lower() for line in lines}, payload

    for through_httpx, direct in (server.requests[0:2], server.requests[2:4]):
        assert parts(direct) == parts(through_httpx)
    assert "accept: application/json" in parts(server.requests[1])[1]  # the call's header wins


@pytest.mark.parametrize(
    "text",
    [
        "data: one\n\ndata: two\r\n\r\ndata: three\rdata: four",
        "é😀\r\n\r\n\n\r\rlast\r",
        "x\u2028y\x0bz\x85w\n",
        "",
    ],
)
def test_lines_split_as_splitlines_wherever_the_body_is_cut(text: str) -> None:
    data = text.encode()
    for cut in range(len(data) + 1):
        for pieces in ([data[:cut], data[cut:]], [data[i : i + 1] for i in range(len(data))]):
            decoder = _text_decoder(None)
            lines = _Lines()
            out: list[str] = []
            for piece in pieces:
                decoded = decoder.decode(piece)
                if decoded:
                    out += lines.feed(decoded)
            out += lines.feed(decoder.decode(b"", True)) + lines.flush()
            assert out == text.splitlines(), (cut, pieces)


async def test_concurrent_requests_each_get_their_own_answer(via: Via) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = request.split(b" ", 2)[1]
        writer.write(response(path))

    async with RawServer(handler) as server:
        replies: list[Any] = await asyncio.gather(
            *(via.request("GET", f"{server.url}/n{i}") for i in range(64))
        )
    assert [r.content for r in replies] == [f"/n{i}".encode() for i in range(64)]
