"""The only place that maps StudioError to HTTP status codes and JSON error bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmstudio.errors import (
    ConfigError,
    EndpointTestFailed,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    ProviderError,
    RateLimited,
    StudioError,
)
from mmstudio.web.deps import StudioStarting

log = logging.getLogger(__name__)

STATUS: list[tuple[type[StudioError], int, str]] = [
    (StudioStarting, 503, "Starting"),
    (ModelNotFound, 400, "Model not found"),
    (NotFound, 404, "Not found"),
    (InvalidRequest, 400, "Invalid request"),
    (EndpointTestFailed, 400, "Connection test failed"),
    (RateLimited, 429, "Rate limited"),
    (ConfigError, 500, "Configuration error"),
    (ProviderError, 502, "Upstream error"),
]


def error_body(exc: StudioError) -> tuple[int, dict[str, object]]:
    status, title = next(((s, t) for cls, s, t in STATUS if isinstance(exc, cls)), (500, "Error"))
    body: dict[str, object] = {"error": title, "message": exc.message}
    if isinstance(exc, InvalidRequest) and exc.field:
        body["field"] = exc.field
    if isinstance(exc, ModelNotFound):
        body["available"] = exc.available[:200]
    if isinstance(exc, EndpointTestFailed):
        body["cause"] = exc.cause
    if isinstance(exc, ProviderError):
        body["kind"] = exc.kind
        if exc.status is not None:
            body["upstream_status"] = exc.status
    return status, body


def install(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def studio_error(_request: Request, exc: StudioError) -> JSONResponse:
        status, body = error_body(exc)
        headers = (
            {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, RateLimited) else None
        )
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse(
            {"error": "Invalid request", "message": "; ".join(problems) or "invalid request body"},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": "HTTP error", "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            {"error": "Internal error", "message": "an unexpected error occurred; see the server log"},
            status_code=500,
        )
