"""The body of a video download, checked as it streams: every video adapter ends its download the same
way, so the checks live here once.

The first bytes are held back until they show a video (so nothing else reaches the media store), and a
body cut short of its ``Content-Length`` is a broken download, which the job system retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from mmstudio.errors import ProviderProtocolError
from mmstudio.providers._http import HTTPAdapter, raise_protocol

_MP4_BRAND = b"ftyp"  # an MP4/MOV (ISO base media) file has a box of this type at byte 4
_EBML = b"\x1a\x45\xdf\xa3"  # a WebM/Matroska file starts with this
SNIFF = 12  # bytes enough to tell


def is_mp4(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == _MP4_BRAND


def is_webm(head: bytes) -> bool:
    return head[:4] == _EBML


def mp4_problem(head: bytes) -> str | None:
    """Why `head` does not start an MP4, or None when it does."""
    return None if is_mp4(head) else f"sent a video that is not an MP4 (starts {head[:12]!r})"


async def checked_video(
    adapter: HTTPAdapter,
    response: httpx.Response,
    model: str,
    problem: Callable[[bytes], str | None] = mp4_problem,
    *,
    label: str,
    empty: str = "sent an empty video",
) -> AsyncIterator[bytes]:
    """`response`'s body, streamed; `problem(head)` says why its first bytes are not a video (None when
    they are), and that, an empty body or a short one raises `ProviderProtocolError`."""
    pending, checked, received = b"", False, 0

    def check(head: bytes) -> None:
        reason = problem(head)
        if reason is not None:
            raise_protocol(adapter.config, reason, model)

    with adapter.transport_errors(model):
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if not checked:
                pending += chunk
                if len(pending) < SNIFF:
                    continue
                check(pending)
                checked, chunk, pending = True, pending, b""
            if chunk:
                yield chunk
    if not checked:
        if not pending:
            raise_protocol(adapter.config, empty, model)
        check(pending)
        yield pending
    # The length is of the encoded body, so it is only compared for an unencoded one.
    expected = response.headers.get("content-length")
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    if expected is not None and expected.isdigit() and not encoded and int(expected) != received:
        raise ProviderProtocolError(
            f"{label} cut the video download short ({received} of {expected} bytes)",
            provider=adapter.config.provider,
            model=model,
        )
