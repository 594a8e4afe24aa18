"""The shared client's transport (httpx on aiohttp) against a raw HTTP server scripted byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from mmstudio.providers.transport import make_http_client

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
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as http:
        yield http


async def test_request_line_headers_and_body_reach_the_server(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b'{"ok": true}', headers={"content-type": "application/json", "x-up": "1"}))

    async with RawServer(handler) as server:
        reply = await client.post(
            f"{server.url}/v1/chat?x=1", json={"a": "é"}, headers={"authorization": "Bearer k"}
        )
    assert reply.status_code == 200
    assert reply.json() == {"ok": True}
    assert reply.headers["x-up"] == "1"
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat?x=1 HTTP/1.1"
    fields = [line.lower() for line in lines[1:]]
    assert "authorization: bearer k" in fields
    assert f"host: {server.url.removeprefix('http://')}" in fields
    assert sum(f.startswith("content-length:") for f in fields) == 1
    assert json.loads(body) == {"a": "é"}


async def test_keep_alive_reuses_one_connection(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b"fine"))

    async with RawServer(handler) as server:
        for _ in range(5):
            assert (await client.get(server.url)).text == "fine"
    assert server.connections == 1


async def test_gzip_bodies_are_decoded_once(client: httpx.AsyncClient) -> None:
    payload = json.dumps({"text": "squeezed " * 50}).encode()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(gzip.compress(payload), headers={"content-encoding": "gzip"}))

    async with RawServer(handler) as server:
        reply = await client.get(server.url)
    assert reply.content == payload


async def test_a_stream_arrives_piece_by_piece_not_buffered(client: httpx.AsyncClient) -> None:
    first_seen = asyncio.Event()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        await first_seen.wait()  # the rest only after the client has the first piece
        writer.write(chunk(b"data: two\n\n") + b"0\r\n\r\n")

    async with RawServer(handler) as server, client.stream("GET", server.url) as reply:
        lines = []
        async for line in reply.aiter_lines():
            if line:
                lines.append(line)
                first_seen.set()
    assert lines == ["data: one", "data: two"]


async def test_a_stream_cut_midway_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server, client.stream("GET", server.url) as reply:
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in reply.aiter_lines():
                pass


async def test_a_body_shorter_than_its_length_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_a_server_closing_before_answering_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_garbage_instead_of_http_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    async with RawServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_connection_refused_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_waiting_longer_than_the_read_timeout_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    release = asyncio.Event()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()

    async with RawServer(handler) as server:
        try:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(server.url, timeout=httpx.Timeout(5.0, read=0.05))
        finally:
            release.set()


async def test_a_gap_in_a_stream_longer_than_the_read_timeout_is_a_read_timeout(
    client: httpx.AsyncClient,
) -> None:
    release = asyncio.Event()

    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        await release.wait()

    async with RawServer(handler) as server:
        try:
            async with client.stream("GET", server.url, timeout=httpx.Timeout(5.0, read=0.05)) as reply:
                with pytest.raises(httpx.ReadTimeout):
                    async for _ in reply.aiter_lines():
                        pass
        finally:
            release.set()


async def test_closing_a_stream_early_never_reuses_the_half_read_connection(
    client: httpx.AsyncClient,
) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if request.startswith(b"GET /stream"):
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b"data: 1\n\n"))
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await asyncio.Event().wait()  # never finishes; the client leaves
        writer.write(response(b"clean"))

    async with RawServer(handler) as server:
        async with client.stream("GET", f"{server.url}/stream") as reply:
            async for _ in reply.aiter_lines():
                break
        assert (await client.get(f"{server.url}/after")).text == "clean"
    assert server.connections == 2


async def test_cookies_from_one_answer_never_ride_on_the_next_request(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(b"ok", headers={"set-cookie": "session=user-a; Path=/"}))

    async with RawServer(handler) as server:
        first = await client.get(server.url)
        assert first.headers["set-cookie"].startswith("session=")
        await client.get(server.url)
    assert b"cookie" not in server.requests[1].lower()
    assert not client.cookies


async def test_redirects_are_not_followed_unless_asked(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if request.startswith(b"GET /old"):
            writer.write(response(b"", status="307 Temporary Redirect", headers={"location": "/new"}))
        else:
            writer.write(response(b"moved here"))

    async with RawServer(handler) as server:
        reply = await client.get(f"{server.url}/old")
        assert reply.status_code == 307
        followed = await client.get(f"{server.url}/old", follow_redirects=True)
        assert followed.text == "moved here"


async def test_concurrent_requests_each_get_their_own_answer(client: httpx.AsyncClient) -> None:
    async def handler(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = request.split(b" ", 2)[1]
        writer.write(response(path))

    async with RawServer(handler) as server:
        replies: list[Any] = await asyncio.gather(*(client.get(f"{server.url}/n{i}") for i in range(64)))
    assert [r.text for r in replies] == [f"/n{i}" for i in range(64)]
