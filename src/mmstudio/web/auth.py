"""Gateway key authentication: an ASGI middleware for /v1, /api and /metrics, and the admin dependency.

A pure ASGI middleware rather than Starlette's BaseHTTPMiddleware, which buffers through a task
group and gets in the way of streaming responses; this one only looks at the headers and then
hands the untouched `receive` and `send` to the app.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mmstudio.domain.keys import MISSING_KEY, Principal
from mmstudio.errors import Forbidden, NotFound, Unauthorized
from mmstudio.web.deps import READY_TIMEOUT, StudioDep
from mmstudio.web.errors import render_error

if TYPE_CHECKING:
    from mmstudio.studio import Studio

ADMIN_NEEDED = "This needs an admin gateway key"


def route_path(scope: Scope) -> str:
    """The path the router matches (without the `root_path` a proxy may add)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


# Story mode's JSON routes under a tier's pages (`/{tier}/story/image/{scene_id}`, `.../video/...`);
# the pages themselves (`/{tier}/story/{story_id}`) are public shells like every page.
_STORY_JSON = re.compile(r"^/[^/]+/story/(?:image|video)/")
# The tier a story route is about: `/api/stories/{tier}...` or `/{tier}/story/image|video/...`.
_TIER_OF = re.compile(r"^/api/stories/([^/]+)(?:/|$)|^/([^/]+)/story/(?:image|video)/")


def tier_of(path: str) -> str | None:
    match = _TIER_OF.match(path)
    return (match[1] or match[2]) if match else None


def check_scope(principal: Principal, path: str) -> None:
    """A key scoped to story tiers reaches only their routes: another tier is not found (as if it
    did not exist), any other route is forbidden."""
    if principal.tiers is None:
        return
    tier = tier_of(path)
    if tier is None:
        allowed = ", ".join(principal.tiers)
        raise Forbidden(
            f"this key is scoped to the story tiers {allowed}: it reaches only /api/stories/<tier>/... "
            "and /<tier>/story/... of those tiers"
        )
    if tier not in principal.tiers:
        raise NotFound("not found")


def is_protected(path: str) -> bool:
    """Whether `path` needs a gateway key (once keys are required)."""
    return (
        path in ("/v1", "/api", "/metrics")
        or path.startswith(("/v1/", "/api/", "/metrics/"))
        or _STORY_JSON.match(path) is not None
    )


def presented_key(scope: Scope) -> str | None:
    """The key from `Authorization: Bearer <key>` (OpenAI clients) or `x-api-key` (Anthropic clients)."""
    bearer: str | None = None
    api_key: str | None = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip() or None
    return bearer or api_key


async def _studio(scope: Scope) -> Studio | None:
    """The app's Studio, waiting for it to open as deps.get_studio does; None if it is not there."""
    state = scope["app"].state
    studio: Studio | None = getattr(state, "studio", None)
    ready: asyncio.Event | None = getattr(state, "ready", None)
    if studio is None and ready is not None:
        try:
            await asyncio.wait_for(asyncio.shield(ready.wait()), READY_TIMEOUT)
        except TimeoutError:
            return None
        studio = state.studio
    return studio


class GatewayAuth:
    """Requires a gateway key on /v1, /api and /metrics once keys are required.

    The principal is put in `scope["state"]["principal"]` (`request.state.principal`). When the
    studio is still starting past the timeout, or failed to start, the request goes on to the
    route, which reports that.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if not is_protected(path):
            await self.app(scope, receive, send)
            return
        studio = await _studio(scope)
        if studio is not None:
            try:
                principal = await studio.keys.authenticate(presented_key(scope))
            except Unauthorized as exc:
                response = render_error(path, exc)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
            try:
                if principal is not None:
                    check_scope(principal, path)
            except (Forbidden, NotFound) as exc:
                await render_error(path, exc)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def get_principal(request: Request) -> Principal | None:
    """Who is calling: None when keys are not required (or on routes that need none)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


async def require_admin(request: Request, studio: StudioDep) -> Principal | None:
    principal = get_principal(request)
    if principal is not None:
        if not principal.admin:
            raise Forbidden(ADMIN_NEEDED)
        return principal
    # No principal: auth was off when the request came in. Ask the database, not this process's
    # cache, so another process's first key locks the admin routes at once.
    await studio.keys.load()
    if studio.keys.required:
        raise Unauthorized(MISSING_KEY)
    return None


AdminDep = Annotated[Principal | None, Depends(require_admin)]
PrincipalDep = Annotated[Principal | None, Depends(get_principal)]

__all__ = ["AdminDep", "GatewayAuth", "PrincipalDep", "get_principal", "is_protected", "presented_key"]
