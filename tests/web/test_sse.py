"""Keep-alive comments on quiet event streams: sent while no frame comes, never in the way of one, and
the source's pending wait is never cancelled by them (no frame is lost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mmstudio.web.sse import KEEPALIVE, with_keepalive


async def test_a_quiet_stream_gets_keepalives_and_loses_no_frame() -> None:
    gate = asyncio.Event()
    closed = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"event: job\ndata: {}\n\n"
            await gate.wait()  # quiet until the test opens the gate
            yield b"event: done\ndata: {}\n\n"
        finally:
            closed.set()

    stream = with_keepalive(frames(), every_s=0.01)
    got = [await anext(stream)]
    while len(got) < 4:  # a few keep-alives while the source waits
        got.append(await anext(stream))
    assert got[0].startswith(b"event: job") and got[1:] == [KEEPALIVE] * 3
    gate.set()
    rest = [frame async for frame in stream]
    assert rest[-1] == b"event: done\ndata: {}\n\n" and set(rest[:-1]) <= {KEEPALIVE}
    assert closed.is_set()


async def test_closing_the_stream_closes_the_source() -> None:
    closed = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            await asyncio.Event().wait()  # never yields
            yield b""
        finally:
            closed.set()

    stream = with_keepalive(frames(), every_s=0.01)
    assert await anext(stream) == KEEPALIVE
    await stream.aclose()  # the client went away
    assert closed.is_set()


async def test_a_failing_source_raises_through() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"a"
        raise RuntimeError("the store went away")

    stream = with_keepalive(frames(), every_s=10)
    assert await anext(stream) == b"a"
    with pytest.raises(RuntimeError, match="the store went away"):
        await anext(stream)
