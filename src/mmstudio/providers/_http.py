"""HTTP plumbing shared by the adapters: the base class, error mapping and stream guarding.

Each adapter subclasses `HTTPAdapter` and supplies its own request/response translation and
`error_from_response` (the vendor's error body). Transport failures are mapped here, once. Requests go
through the shared client's `direct` path when it has one (see `transport.py`), else through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NoReturn, Protocol

import httpx

from mmstudio.errors import (
    AuthenticationError,
    BadRequest,
    ContextTooLong,
    MidStreamError,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamModelNotFound,
    redact,
)
from mmstudio.providers.base import (
    Capabilities,
    ChatRequest,
    EndpointConfig,
    ProbeResult,
    StreamEvent,
    elapsed_ms,
    make_timeout,
)
from mmstudio.providers.transport import FAILURES, DirectHTTP, StatelessClient, httpx_error

LARGE_BODY = 256 * 1024  # a JSON answer this big (base64 images) is parsed in a worker thread
CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "exceeds the context",
    "input is too long",
    "exceed context",
    "context size",
    "maximum prompt length",
)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(raw_ms) / 1000.0)
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(raw)
        return max(0.0, when.timestamp() - time.time())
    return None


def error_for_status(
    status: int,
    message: str,
    *,
    config: EndpointConfig,
    model: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The generic status → exception mapping; adapters handle vendor quirks before calling it."""
    text = redact(message, config.secrets)
    label = config.provider or "upstream"
    full = f"{label} returned HTTP {status}: {text}"
    kwargs: dict[str, Any] = {"provider": config.provider, "model": model, "status": status}
    lowered = f"{code or ''} {text}".lower()
    if status in (401, 403):
        return AuthenticationError(full, **kwargs)
    if status == 429:
        return ProviderRateLimited(full, retry_after=retry_after, **kwargs)
    if status == 404:
        return UpstreamModelNotFound(full, **kwargs)
    if status == 408:
        return ProviderTimeout(full, **kwargs)
    if any(marker in lowered for marker in CONTEXT_MARKERS):
        return ContextTooLong(full, **kwargs)
    if status == 413:
        return ContextTooLong(full, **kwargs)
    if 400 <= status < 500:
        return BadRequest(full, **kwargs)
    return ProviderUnavailable(full, retry_after=retry_after, **kwargs)


def decode_json(body: bytes | str, config: EndpointConfig, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        snippet = body[:200] if isinstance(body, str) else body[:200].decode("utf-8", "replace")
        raise ProviderProtocolError(
            f"{config.provider or 'upstream'} sent {what} that is not JSON: "
            f"{redact(snippet, config.secrets)!r}",
            provider=config.provider,
        ) from exc


class UpstreamResponse(Protocol):
    """What adapters read of a response: `httpx.Response` or `transport.DirectResponse`."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...  # once read

    async def aread(self) -> bytes: ...

    def aiter_lines(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class HTTPAdapter:
    """Shared base: holds the endpoint config and the shared client, maps transport failures."""

    protocol: ClassVar[str] = ""
    default_capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, config: EndpointConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client
        self._direct: DirectHTTP | None = client.direct if isinstance(client, StatelessClient) else None

    # -- hooks for subclasses ----------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        return dict(self.config.headers)

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        """Turn a non-2xx response into an exception. Subclasses parse their vendor's body."""
        return error_for_status(
            status,
            body.decode("utf-8", "replace")[:500],
            config=self.config,
            model=model,
            retry_after=parse_retry_after(headers),
        )

    # -- helpers ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def timeout(self) -> httpx.Timeout:
        return make_timeout(self.config)

    @contextlib.contextmanager
    def transport_errors(self, model: str | None = None) -> Iterator[None]:
        """Map transport failures (httpx's, or aiohttp's on the direct path) to ours, with secrets
        removed from the message."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from exc
        except FAILURES as exc:
            raise self._transport_error(httpx_error(exc), model) from exc

    def _transport_error(self, exc: httpx.HTTPError, model: str | None) -> ProviderError:
        where = f"{self.config.provider or 'upstream'} at {self.config.base_url}"
        kwargs: dict[str, Any] = {"provider": self.config.provider, "model": model}
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(f"{where} timed out ({type(exc).__name__})", **kwargs)
        detail = redact(str(exc) or type(exc).__name__, self.config.secrets)
        if isinstance(exc, httpx.ConnectError):
            return ProviderConnectionError(
                f"{where} refused the connection or is unreachable: {detail}", **kwargs
            )
        if isinstance(
            exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.NetworkError)
        ):
            return ProviderConnectionError(f"{where} dropped the connection: {detail}", **kwargs)
        return ProviderProtocolError(f"{where} failed: {detail}", **kwargs)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        model: str | None = None,
        json_body: Any = None,
        timeout: httpx.Timeout | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One request whose 2xx answer is JSON; any other status raises via `error_from_response`."""
        response: UpstreamResponse
        with self.transport_errors(model):
            if self._direct is not None:
                response = await self._direct.send(
                    method,
                    self.url(path),
                    headers=self.headers(),
                    timeout=timeout or self.timeout(),
                    json_body=json_body,
                    params=params,
                )
            else:
                response = await self.client.request(
                    method,
                    self.url(path),
                    json=json_body,
                    headers=self.headers(),
                    timeout=timeout or self.timeout(),
                    params=params,
                )
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.content, response.headers, model)
        if len(response.content) > LARGE_BODY:  # images in base64: parsed off the event loop
            return await asyncio.to_thread(decode_json, response.content, self.config, "a response")
        return decode_json(response.content, self.config, "a response")

    async def request_multipart(
        self,
        path: str,
        *,
        data: Mapping[str, str],
        files: Sequence[tuple[str, tuple[str, bytes, str]]],
        model: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        """A multipart/form-data POST whose 2xx answer is JSON. `files` are ``(field, (filename, bytes,
        content type))``; a field may repeat (``image[]``). Always through httpx: `_direct` is JSON only."""
        with self.transport_errors(model):
            response = await self.client.request(
                "POST",
                self.url(path),
                data=dict(data),
                files=list(files),
                headers=self.headers(),
                timeout=timeout or self.timeout(),
            )
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.content, response.headers, model)
        if len(response.content) > LARGE_BODY:
            return await asyncio.to_thread(decode_json, response.content, self.config, "a response")
        return decode_json(response.content, self.config, "a response")

    @contextlib.asynccontextmanager
    async def open_stream(
        self, path: str, body: Any, model: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        """POST and hold the streaming response open; a non-2xx status raises before any event."""
        response: UpstreamResponse
        with self.transport_errors(model):
            if self._direct is not None:
                response = await self._direct.send(
                    "POST",
                    self.url(path),
                    headers=self.headers(),
                    timeout=self.timeout(),
                    json_body=body,
                    params=params,
                    stream=True,
                )
            else:
                request = self.client.build_request(
                    "POST",
                    self.url(path),
                    json=body,
                    headers=self.headers(),
                    timeout=self.timeout(),
                    params=params,
                )
                response = await self.client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                with self.transport_errors(model):
                    content = await response.aread()
                raise self.error_from_response(response.status_code, content, response.headers, model)
            yield response
        finally:
            await response.aclose()

    async def guard_stream(
        self, events: AsyncIterator[StreamEvent], model: str
    ) -> AsyncIterator[StreamEvent]:
        """Re-raise failures after the first event as `MidStreamError` carrying the partial text."""
        partial: list[str] = []
        started = False
        try:
            async for event in events:
                if event.type == "text":
                    partial.append(event.text)
                started = True
                yield event
        except ProviderError as exc:
            # Nothing sent yet, already wrapped, or final (a refusal, a bad request): pass it on as it is,
            # so the router does not retry what no other attempt can fix.
            if not started or isinstance(exc, MidStreamError) or not exc.retryable:
                raise
            raise MidStreamError(
                f"stream from {self.config.provider or 'upstream'} failed midway: {exc.message}",
                partial_text="".join(partial),
                provider=self.config.provider,
                model=model,
                status=exc.status,
                retry_after=exc.retry_after,
            ) from exc

    async def timed_probe(self, path: str, *, version_key: str | None = None) -> ProbeResult:
        """GET `path` with a short timeout; never raises."""
        start = time.perf_counter()
        try:
            data = await self.request_json("GET", path, timeout=httpx.Timeout(5.0, connect=2.0))
        except ProviderError as exc:
            return ProbeResult(ok=False, latency_ms=elapsed_ms(start), error=exc.message)
        version = data.get(version_key) if version_key and isinstance(data, dict) else None
        return ProbeResult(ok=True, latency_ms=elapsed_ms(start), version=version)


def raise_protocol(config: EndpointConfig, message: str, model: str | None = None) -> NoReturn:
    raise ProviderProtocolError(
        f"{config.provider or 'upstream'}: {redact(message, config.secrets)}",
        provider=config.provider,
        model=model,
    )


def require_request(request: ChatRequest) -> None:
    if not request.messages:
        from mmstudio.errors import InvalidRequest

        raise InvalidRequest("a chat request needs at least one message", field="messages")
