"""The one exception tree of mmstudio.

    StudioError
    ├── ConfigError                    bad settings or config file (names file, field, allowed values)
    ├── NotFound
    │   └── ModelNotFound              unknown model id; carries what is available
    ├── InvalidRequest                 the caller's input is wrong
    │   ├── PayloadTooLarge            the request body (or an upload) is over the configured limit
    │   ├── UnsupportedMediaType       an upload of a type we cannot read
    │   ├── UnsafePath                 a generated file's path that would leave its project
    │   └── Conflict                   the input clashes with what is stored (a name taken, an id in use)
    │       └── OutputExists           writing generated files would overwrite existing ones
    ├── Unauthorized                   no gateway key, or an unknown or revoked one
    ├── Forbidden                      the key is valid but may not do this (admin routes)
    ├── RateLimited                    our own limits said no (retry_after)
    ├── NoModelAvailable               every candidate was skipped (offline, cooling down, lacks a capability)
    │   └── NoModelRegistered          there is no model at all: register one first (`link` to onboarding)
    ├── EndpointTestFailed             a connection test before registering an endpoint failed
    ├── JobError
    └── ProviderError                  anything an upstream did wrong; the router falls back only on these
        ├── ProviderHTTPError          an HTTP status from upstream (status, retry_after)
        │   ├── AuthenticationError        401/403, xAI's 400 for a bad key, Gemini's API_KEY_INVALID
        │   ├── ProviderRateLimited        429 (retry_after from the headers when given)
        │   ├── ContextTooLong
        │   ├── UpstreamModelNotFound
        │   ├── BadRequest                 other 4xx
        │   └── ProviderUnavailable        5xx, Anthropic's 529
        ├── ContentFiltered            the upstream refused or blocked the content
        ├── ProviderTimeout
        ├── ProviderConnectionError    connection refused, DNS, reset before a response
        ├── ProviderProtocolError      the upstream said something we cannot parse (or 200 with an error body)
        ├── ResultExpired              a finished result expired before it could be fetched
        ├── MidStreamError             a stream failed after it started (partial_text kept)
        └── AllModelsFailed            the router tried every candidate; `last` is the final cause

Only the web layer maps these to HTTP status codes. Messages never contain secrets: adapters
pass every upstream message through `redact` with the keys they know.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class StudioError(Exception):
    """Base of every error mmstudio raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(StudioError):
    """Settings or the config file are wrong."""


class NotFound(StudioError):
    """A thing the caller named does not exist; `field` is the input that named it, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ModelNotFound(NotFound):
    """A model id that resolves to nothing; `available` lists what would."""

    def __init__(self, model: str, available: Sequence[str], message: str | None = None) -> None:
        shown = (
            ", ".join(available[:50])
            if available
            else "none right now (start a local engine, register a model or set a cloud key)"
        )
        more = f" (and {len(available) - 50} more)" if len(available) > 50 else ""
        super().__init__(message or f"Unknown model {model!r}. Available: {shown}{more}")
        self.model = model
        self.available = list(available)


class InvalidRequest(StudioError):
    """The caller's input is wrong; the message says what and what is allowed."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than `limits.max_body_mb`."""


class UnsupportedMediaType(InvalidRequest):
    """An upload of a type we cannot read; the message lists the accepted types."""


class UnsafePath(InvalidRequest):
    """A path (from a model's output or a target directory) that is absolute, climbs out with `..`,
    names a drive, or goes through a symbolic link; the message says which and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unsafe path {path!r}: {reason}", field="path")
        self.path = path
        self.reason = reason


class Conflict(InvalidRequest):
    """The input is well formed but clashes with what is stored: a name that is taken, an id in use."""


class OutputExists(Conflict):
    """Writing would overwrite files that already exist (and overwriting was not asked for)."""

    def __init__(self, message: str, paths: Sequence[str]) -> None:
        super().__init__(message, field="out")
        self.paths = list(paths)


class Unauthorized(StudioError):
    """A gateway key is required and none (or an unknown or revoked one) was given."""


class Forbidden(StudioError):
    """The gateway key is valid but lacks the right (e.g. admin) for this route."""


class NoModelAvailable(StudioError):
    """The router skipped every candidate; `skipped` says why for each model."""

    def __init__(self, message: str, skipped: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.skipped = list(skipped)


class NoModelRegistered(NoModelAvailable):
    """No model at all: nothing registered or detected and no cloud key. `link` is where to fix it."""

    def __init__(self, message: str, link: str = "/onboarding") -> None:
        super().__init__(message)
        self.link = link


class RateLimited(StudioError):
    """One of our own limits refused the request."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EndpointTestFailed(StudioError):
    """Registering an endpoint failed its connection test; nothing was saved."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class JobError(StudioError):
    """A background job failed or was asked to do something its state forbids."""


class ProviderError(StudioError):
    """An upstream failed. `retryable` says whether trying again (or elsewhere) can help."""

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        """A short stable name for metrics and API bodies (e.g. ``rate_limited``)."""
        return _KIND_NAMES.get(type(self), "provider_error")


class ProviderHTTPError(ProviderError):
    """The upstream answered with an error status."""


class AuthenticationError(ProviderHTTPError):
    retryable = False


class ProviderRateLimited(ProviderHTTPError):
    retryable = True


class ContextTooLong(ProviderHTTPError):
    retryable = False


class UpstreamModelNotFound(ProviderHTTPError):
    retryable = False


class BadRequest(ProviderHTTPError):
    retryable = False


class ProviderUnavailable(ProviderHTTPError):
    retryable = True


class ContentFiltered(ProviderError):
    retryable = False


class ProviderTimeout(ProviderError):
    retryable = True


class ProviderConnectionError(ProviderError):
    retryable = True


class ProviderProtocolError(ProviderError):
    retryable = True


class ResultExpired(ProviderError):
    """A finished result (a video's temporary URL) expired before it could be fetched."""

    retryable = False


class MidStreamError(ProviderError):
    """A stream broke after it started; `partial_text` is what had arrived."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        provider: str = "",
        model: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, status=status, retry_after=retry_after)
        self.partial_text = partial_text


class AllModelsFailed(ProviderError):
    """Every candidate failed. `last` is the final error; `attempts` each try in order."""

    def __init__(
        self, message: str, *, last: ProviderError, attempts: Sequence[dict[str, object]] = ()
    ) -> None:
        super().__init__(
            message,
            provider=last.provider,
            model=last.model,
            status=last.status,
            retry_after=last.retry_after,
        )
        self.last = last
        self.attempts = list(attempts)
        self.retryable = last.retryable

    @property
    def kind(self) -> str:
        return self.last.kind


_KIND_NAMES: dict[type[ProviderError], str] = {
    ProviderError: "provider_error",
    ProviderHTTPError: "http_error",
    AuthenticationError: "authentication",
    ProviderRateLimited: "rate_limited",
    ContextTooLong: "context_too_long",
    UpstreamModelNotFound: "model_not_found",
    BadRequest: "bad_request",
    ProviderUnavailable: "unavailable",
    ContentFiltered: "content_filtered",
    ProviderTimeout: "timeout",
    ProviderConnectionError: "connection_refused",
    ProviderProtocolError: "protocol_error",
    MidStreamError: "mid_stream_error",
    ResultExpired: "expired",
}

REDACTED = "***"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Remove every secret (and any long prefix of one an upstream may echo) from `text`."""
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        text = text.replace(secret, REDACTED)
        # Vendors echo keys partially ("Incorrect API key provided: sk-abc...xyz"): cut any
        # 8+ character run of the key too.
        if len(secret) >= 8:
            for size in range(len(secret) - 1, 7, -1):
                for start in range(0, len(secret) - size + 1):
                    piece = secret[start : start + size]
                    if piece in text:
                        text = text.replace(piece, REDACTED)
    return text
