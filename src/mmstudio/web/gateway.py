"""What the OpenAI-compatible and studio chat routes share: route options from the request, and the
headers that say who answered."""

from __future__ import annotations

from fastapi import Request

from mmstudio.domain.router import RouteInfo, RouteOptions, new_request_id
from mmstudio.web.auth import get_principal

FALLBACK_HEADER = "x-mmstudio-fallbacks"


def route_options(request: Request, *, route: str, fallbacks: bool = True) -> RouteOptions:
    principal = get_principal(request)
    header = request.headers.get(FALLBACK_HEADER, "").strip().lower()
    if header in ("off", "false", "0", "no"):
        fallbacks = False
    return RouteOptions(
        fallbacks=fallbacks,
        route=route,
        key_id=principal.key_id if principal else None,
        key_limit=principal.limit if principal else None,
        request_id=new_request_id(),  # ours, never the client's: metrics rows are keyed by it
    )


def route_headers(info: RouteInfo) -> dict[str, str]:
    """For a stream these describe the moment the first token arrived (a later failover is told in
    the stream itself)."""
    headers = {
        "x-request-id": info.request_id,
        "x-mmstudio-attempts": str(len(info.attempts) or 1),
        "x-mmstudio-latency-ms": str(
            round(info.latency_ms if info.latency_ms is not None else info.elapsed_ms())
        ),
    }
    if info.model_used is not None:
        headers["x-mmstudio-model"] = info.model_used
    return headers
