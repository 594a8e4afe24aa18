"""The HTTP client the adapters share: httpx's API on aiohttp's connection pool.

Adapters speak `httpx.AsyncClient` (its transport seam is how tests and the studio control connections).
Under load httpcore's pool costs more than everything else on a gateway request: at 32 concurrent
requests about 1.4 ms of CPU per request against 0.3 ms through this transport (measured in
`bench/`), because it checks every pooled socket for readability and takes anyio locks on each
request. `AiohttpTransport` keeps httpx's request/response objects, redirects policy, content
decoding and exceptions, and hands the bytes to aiohttp's pool, mapping aiohttp's failures back to the
httpx exceptions the adapters already translate.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

# Set by httpx itself or computed by aiohttp from the body we pass; forwarding them would duplicate.
_DROPPED_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeout dict (connect, read, write, pool) as aiohttp's timeouts."""
    given: dict[str, float | None] = request.extensions.get("timeout", {})
    connect = given.get("connect")
    pool = given.get("pool")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=given.get("read"),
    )


@contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """aiohttp's (and asyncio's) failures as the httpx exceptions adapters map to ours."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out waiting for the server", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        message = "server disconnected without sending a complete response"
        raise httpx.RemoteProtocolError(message, request=request) from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.RemoteProtocolError(str(exc) or "incomplete response body", request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a response aiohttp could not parse
        raise httpx.RemoteProtocolError(exc.message or str(exc), request=request) from exc
    except (aiohttp.ClientOSError, ConnectionError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc


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

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                auto_decompress=False,  # httpx decodes Content-Encoding
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
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


class _NoCookies(httpx.Cookies):
    """A jar that never stores anything."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class StatelessClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that keeps no cookies between requests.

    One client serves every user of the studio, so a cookie an upstream sets for one request must not
    ride along on the next user's; adapters authenticate with headers only. (It also skips the cookie
    parsing httpx does on every response, a measurable share of a gateway request.)
    """

    _NONE: httpx.Cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._NONE

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


def make_http_client(
    *, verify: ssl.SSLContext | bool = True, max_connections: int = 200, follow_redirects: bool = False
) -> httpx.AsyncClient:
    """The shared client for provider adapters (close it with `aclose()`)."""
    transport = AiohttpTransport(verify=verify, max_connections=max_connections)
    return StatelessClient(transport=transport, follow_redirects=follow_redirects)
