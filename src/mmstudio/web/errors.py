"""The only place that maps StudioError to HTTP status codes and JSON error bodies.

Two body shapes: the studio's `{"error": title, "message": ...}` and, under `/v1/`, OpenAI's
`{"error": {"message", "type", "param", "code"}}` so unchanged OpenAI clients understand it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from mmstudio.errors import (
    AllModelsFailed,
    ConfigError,
    Conflict,
    EndpointTestFailed,
    Forbidden,
    InvalidRequest,
    ModelNotFound,
    NoModelAvailable,
    NoModelRegistered,
    NotFound,
    PayloadTooLarge,
    ProviderError,
    RateLimited,
    StudioError,
    Unauthorized,
    UnsupportedMediaType,
)
from mmstudio.web.constraints import describe
from mmstudio.web.deps import StudioStarting

log = logging.getLogger(__name__)

STATUS: list[tuple[type[StudioError], int, str]] = [
    (StudioStarting, 503, "Starting"),
    (ModelNotFound, 404, "Model not found"),
    (NotFound, 404, "Not found"),
    (PayloadTooLarge, 413, "Request too large"),
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (Conflict, 409, "Conflict"),
    (InvalidRequest, 400, "Invalid request"),
    (EndpointTestFailed, 502, "Connection test failed"),
    (Unauthorized, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
    (RateLimited, 429, "Rate limited"),
    (NoModelAvailable, 503, "No model available"),
    (ConfigError, 500, "Configuration error"),
    (ProviderError, 502, "Upstream error"),
]

HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}

# OpenAI's `error.type` for a status code.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def provider_status(exc: ProviderError) -> int:
    """What an upstream failure means for our caller: their request was bad (400), the upstream is
    rate limiting (429), too slow (504), or it failed (502)."""
    cause = exc.last if isinstance(exc, AllModelsFailed) else exc
    kind = cause.kind
    if kind in ("bad_request", "context_too_long", "content_filtered"):
        return 400
    if kind == "rate_limited":
        return 429
    if kind == "timeout":
        return 504
    return 502


def error_body(exc: StudioError) -> tuple[int, dict[str, object]]:
    status, title = next(((s, t) for cls, s, t in STATUS if isinstance(exc, cls)), (500, "Error"))
    if isinstance(exc, ProviderError):
        status = provider_status(exc)
    body: dict[str, object] = {"error": title, "message": exc.message}
    if isinstance(exc, (InvalidRequest, NotFound)) and exc.field:
        body["field"] = exc.field
    if isinstance(exc, ModelNotFound):
        body["available"] = exc.available[:200]
    if isinstance(exc, EndpointTestFailed):
        body["cause"] = exc.cause
    if isinstance(exc, NoModelAvailable):
        body["skipped"] = [{"model": m, "reason": r} for m, r in exc.skipped]
    if isinstance(exc, NoModelRegistered):
        body["link"] = exc.link
    if isinstance(exc, ProviderError):
        body["kind"] = exc.kind
        if exc.status is not None:
            body["upstream_status"] = exc.status
    if isinstance(exc, AllModelsFailed):
        body["attempts"] = list(exc.attempts)
    return status, body


def openai_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, object]:
    kind = OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def render_error(
    path: str,
    exc: StudioError,
    *,
    extra: Mapping[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The response for `exc` on a request to `path`, in the shape that path's clients expect
    (`extra` fields join a studio-shaped body)."""
    status, body = error_body(exc)
    body.update(extra or {})
    headers = dict(headers or {})
    retry_after = exc.retry_after if isinstance(exc, (RateLimited, ProviderError)) else None
    if status == 429 and retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if is_openai_path(path):
        code = exc.kind if isinstance(exc, ProviderError) else _openai_code(exc)
        field = exc.field if isinstance(exc, (InvalidRequest, NotFound)) else None
        body = openai_body(status, exc.message, param=field, code=code)
    return JSONResponse(body, status_code=status, headers=headers or None)


def _openai_code(exc: StudioError) -> str | None:
    if isinstance(exc, ModelNotFound):
        return "model_not_found"
    if isinstance(exc, Unauthorized):
        return "invalid_api_key"
    if isinstance(exc, RateLimited):
        return "rate_limit_exceeded"
    if isinstance(exc, PayloadTooLarge):
        return "request_too_large"
    return None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this path: those of the most specific documented path
    template it fits, else (an undocumented path) asked of the routes themselves, one method at a time.
    Starlette's own 405 names only the methods of the first route that matched the path, and a path
    often has one route per method."""
    from mmstudio.web.openapi_doc import template_for  # the document's module needs this one's helpers

    schema = request.app.openapi()
    template = template_for(schema, request.url.path)
    if template is not None:  # `/conversations/import` is its own path, not `/conversations/{id}`
        return [m for m in _METHODS if m.lower() in schema["paths"][template]]
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def install(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return render_error(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        first_field = None
        for err in exc.errors():
            kind, loc = err.get("type"), tuple(err.get("loc", ()))
            if kind == "json_invalid":  # loc is ("body", <character offset>)
                detail = (err.get("ctx") or {}).get("error", "invalid JSON")
                offset = f" at character {loc[1]}" if len(loc) > 1 else ""
                first_field = first_field or "body"
                problems.append(f"the request body is not valid JSON: {detail}{offset}")
                continue
            if kind == "missing" and loc == ("body",):
                first_field = first_field or "body"
                problems.append("a JSON request body is required")
                continue
            named = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
            where = ".".join(str(p) for p in named) or "body"
            first_field = first_field or where
            problems.append(describe(err, where))
        message = "; ".join(problems) or "invalid request body"
        if is_openai_path(request.url.path):
            return JSONResponse(openai_body(400, message, param=first_field), status_code=400)
        body = {"error": "Invalid request", "message": message}
        if first_field:
            body["field"] = first_field
        return JSONResponse(body, status_code=400)  # bad input is a 400 everywhere, as in the rest

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            exc = StarletteHTTPException(
                405, f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
            )
        if is_openai_path(request.url.path):
            body = openai_body(exc.status_code, str(exc.detail))
            return JSONResponse(body, status_code=exc.status_code, headers=headers)
        title = HTTP_TITLES.get(exc.status_code, "HTTP error")
        return JSONResponse(
            {"error": title, "message": str(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        message = "an unexpected error occurred; see the server log"
        if is_openai_path(request.url.path):
            return JSONResponse(openai_body(500, message), status_code=500)
        return JSONResponse({"error": "Internal error", "message": message}, status_code=500)
