"""The HTTP client the adapters share: one aiohttp connection pool, reached two ways.

Adapters are constructed with an `httpx.AsyncClient` (its transport seam is how tests and the studio
control connections). The client `make_http_client()` returns is a `StatelessClient` whose transport,
`AiohttpTransport`, hands httpx's requests to aiohttp's pool: httpcore's own pool cost more than
everything else on a gateway request (at 32 concurrent requests about 1.4 ms of CPU per request
against 0.3 ms through aiohttp, measured in `bench/`), because it checks every pooled socket for
readability and takes anyio locks on each request.

httpx's request and response models still cost ~15% of a gateway request's CPU on top of that (URL
parsing, header models, content encoders, redirect and auth hooks), so the same client also carries
`direct`, a `DirectHTTP` on the same aiohttp session: `HTTPAdapter` sends its requests and streams
through it, with the same headers, JSON body encoding, timeouts, content decoding and no cookies,
and maps its failures with `httpx_error` to the httpx exceptions it already translates. Any other
`httpx.AsyncClient` (a test's `MockTransport`, say) is used through httpx's API as before.
"""

from __future__ import annotations

import codecs
import json
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

# Set by httpx itself or computed by aiohttp from the body we pass; forwarding them would duplicate.
_DROPPED_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


def client_timeout(given: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeouts (connect, read, write, pool) as aiohttp's: connecting may take the pool wait
    plus the connect timeout, each read the read timeout; there is no total (streams run long)."""
    connect = given.get("connect")
    pool = given.get("pool")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=given.get("read"),
    )


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """The timeout httpx put on `request` (its per-request timeout dict)."""
    return client_timeout(request.extensions.get("timeout", {}))


# What aiohttp (and asyncio under it) raise when a request fails on the way.
FAILURES: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, ConnectionError)


def httpx_error(exc: BaseException, request: httpx.Request | None = None) -> httpx.TransportError:
    """The httpx exception standing for aiohttp's (or asyncio's) failure `exc` (one of `FAILURES`)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timed out", request=request)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return httpx.ReadTimeout(str(exc) or "timed out waiting for the server", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        message = "server disconnected without sending a complete response"
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(exc) or "incomplete response body", request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # a response aiohttp could not parse
        return httpx.RemoteProtocolError(exc.message or str(exc), request=request)
    if isinstance(exc, (aiohttp.ClientOSError, ConnectionError)):
        return httpx.ReadError(str(exc) or type(exc).__name__, request=request)
    return httpx.TransportError(str(exc) or type(exc).__name__, request=request)


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """aiohttp's (and asyncio's) failures as the httpx exceptions adapters map to ours."""
    try:
        yield
    except FAILURES as exc:
        raise httpx_error(exc, request) from exc


class _ResponseStream(httpx.AsyncByteStream):
    """The body as it arrives; closing early drops the connection rather than reading the rest."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _mapped(self._request):
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk

    async def aclose(self) -> None:
        # aiohttp keeps the connection only when the body was read to the end; a stream closed
        # midway (the client left) closes its socket, so no half-read answer is ever reused.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport backed by one `aiohttp.ClientSession` (created on first use, in the loop)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 200,
        keepalive_seconds: float = 30.0,
    ) -> None:
        self._ssl: ssl.SSLContext | bool = (
            httpx.create_ssl_context(verify=verify) if verify is not False else False
        )
        self._max_connections = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pool's session, opened on first use (in the running loop) and after a close."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # no cookies, on either path
                auto_decompress=False,  # httpx decodes Content-Encoding; DirectHTTP asks aiohttp to
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self.session()
        body = await request.aread()  # already bytes for json=/content=; a no-op then
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _DROPPED_HEADERS
        ]
        kwargs: dict[str, Any] = {
            "headers": headers,
            "data": body or None,
            "allow_redirects": False,  # httpx follows redirects itself when asked to
            "timeout": _timeout(request),
            "compress": None,
        }
        with _mapped(request):
            response = await session.request(request.method, str(request.url), **kwargs)
        return httpx.Response(
            response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_ResponseStream(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Lines:
    """Text in pieces → whole lines, split as `str.splitlines` splits (httpx's `aiter_lines` rules): a
    line may span pieces, and a piece ending in a carriage return waits for the next, which may start
    with the line feed of the same line break."""

    __slots__ = ("_buffer", "_cr")

    _BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

    def __init__(self) -> None:
        self._buffer: list[str] = []
        self._cr = False

    def feed(self, text: str) -> list[str]:
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            self._cr = True
            text = text[:-1]
        if not text:
            return []
        complete = text[-1] in self._BREAKS
        lines = text.splitlines()
        if len(lines) == 1 and not complete:
            self._buffer.append(lines[0])
            return []
        if self._buffer:
            lines[0] = "".join(self._buffer) + lines[0]
            self._buffer = []
        if not complete:
            self._buffer = [lines.pop()]
        return lines

    def flush(self) -> list[str]:
        if not self._buffer and not self._cr:
            return []
        line = "".join(self._buffer)
        self._buffer = []
        self._cr = False
        return [line]


def _text_decoder(charset: str | None) -> codecs.IncrementalDecoder:
    """The body's charset (UTF-8 when none is given or it is unknown), replacing bad bytes."""
    try:
        return codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        return codecs.getincrementaldecoder("utf-8")(errors="replace")


class DirectResponse:
    """An upstream's answer through `DirectHTTP`: what adapters use of `httpx.Response`.

    Reading raises aiohttp's failures (see `FAILURES`, `httpx_error`); `aclose()` releases the
    connection, which aiohttp keeps only when the body was read to the end.
    """

    __slots__ = ("_response", "content", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code: int = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.content = b""

    async def aread(self) -> bytes:
        self.content = await self._response.read()
        return self.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        decoder = _text_decoder(self._response.charset)
        lines = _Lines()
        stream = self._response.content
        while chunk := await stream.readany():
            text = decoder.decode(chunk)
            if text:
                for line in lines.feed(text):
                    yield line
        for line in lines.feed(decoder.decode(b"", True)) + lines.flush():
            yield line

    async def aclose(self) -> None:
        self._response.release()


class DirectHTTP:
    """Requests on the shared aiohttp pool without httpx's models, as `HTTPAdapter` sends them.

    Sends what httpx would for the same call: the client's default headers (Accept, Accept-Encoding,
    User-Agent) overridden by the call's, a JSON body encoded as httpx encodes it (compact, UTF-8,
    no NaN) with its Content-Type, no redirects followed, and httpx's timeouts (see
    `client_timeout`). Content-Encoding is decoded by aiohttp.
    """

    def __init__(self, transport: AiohttpTransport, headers: httpx.Headers) -> None:
        self._transport = transport
        self._headers = CIMultiDict(headers.multi_items())
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _timeout(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        key = (timeout.connect, timeout.read, timeout.pool)
        found = self._timeouts.get(key)
        if found is None:
            if len(self._timeouts) > 64:  # a handful in practice; never let it grow
                self._timeouts.clear()
            found = self._timeouts[key] = client_timeout(timeout.as_dict())
        return found

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> DirectResponse:
        """Send one request; the body is read unless `stream` (then `aclose()` the response)."""
        merged = self._headers.copy()
        merged.update(headers)
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            merged.setdefault("Content-Type", "application/json")
        response = await self._transport.session().request(
            method,
            url,
            headers=merged,
            data=data,
            params=params,
            allow_redirects=False,
            timeout=self._timeout(timeout),
            compress=None,
            auto_decompress=True,
        )
        direct = DirectResponse(response)
        if not stream:
            try:
                await direct.aread()
            finally:
                response.release()
        return direct


class _NoCookies(httpx.Cookies):
    """A jar that never stores anything."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class StatelessClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` on `AiohttpTransport` that keeps no cookies between requests.

    One client serves every user of the studio, so a cookie an upstream sets for one request must not
    ride along on the next user's; adapters authenticate with headers only. (It also skips the cookie
    parsing httpx does on every response, a measurable share of a gateway request.) `direct` reaches
    the same pool without httpx's models (None when redirects are followed: only httpx does that).
    """

    _NONE: httpx.Cookies = _NoCookies()

    def __init__(self, *, transport: AiohttpTransport, follow_redirects: bool = False) -> None:
        super().__init__(transport=transport, follow_redirects=follow_redirects)
        self.direct: DirectHTTP | None = None if follow_redirects else DirectHTTP(transport, self.headers)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._NONE

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


def make_http_client(
    *, verify: ssl.SSLContext | bool = True, max_connections: int = 200, follow_redirects: bool = False
) -> StatelessClient:
    """The shared client for provider adapters (close it with `aclose()`)."""
    transport = AiohttpTransport(verify=verify, max_connections=max_connections)
    return StatelessClient(transport=transport, follow_redirects=follow_redirects)
