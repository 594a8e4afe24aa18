"""The header every page shows: the active model with its health and latency, and the model switcher.

Fragments under /api/ui/header (so gateway keys protect them like any API route). The page asks for
the status on load and every 30 s; a status older than that is probed again first (briefly: a dead
engine must not hold the header), so the dot tells how the model is doing now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from mmstudio.domain.types import ModelView
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.templating import render

router = APIRouter(prefix="/api/ui/header", include_in_schema=False)

CHAT_MODALITIES = ("chat", "code")
STALE_SECONDS = 25.0
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class ModelGroup:
    label: str
    kind: str
    views: list[ModelView]


def chat_views(studio: Any) -> list[ModelView]:
    """Chat-capable models, local first, then by provider and name."""
    views = [v for v in studio.registry.views() if v.entry.modality in CHAT_MODALITIES]
    views.sort(key=lambda v: (v.entry.kind != "local", v.entry.provider_id, v.entry.display_name.lower()))
    return views


def grouped(views: list[ModelView]) -> list[ModelGroup]:
    groups: dict[str, ModelGroup] = {}
    for view in views:
        key = view.entry.provider_id
        if key not in groups:
            groups[key] = ModelGroup(view.endpoint.display_name, view.entry.kind, [])
        groups[key].views.append(view)
    return list(groups.values())


def active_view(studio: Any) -> ModelView | None:
    model_id = studio.router.planner.default_model()
    if model_id is None:
        return None
    registry = studio.registry
    return registry.view(registry.resolve(model_id).entry)  # type: ignore[no-any-return]


async def _fresh(studio: Any, view: ModelView) -> ModelView:
    checked = view.health.last_checked
    stale = checked is None or (datetime.now(UTC) - checked).total_seconds() >= STALE_SECONDS
    if stale and view.endpoint.enabled:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(studio.registry.health.check(view.endpoint), PROBE_TIMEOUT)
        return studio.registry.view(view.entry)  # type: ignore[no-any-return]
    return view


async def _status(request: Request, studio: Any) -> HTMLResponse:
    view = active_view(studio)
    if view is not None:
        view = await _fresh(studio, view)
    has_models = any(v.available for v in chat_views(studio))
    return render(request, "partials/header_status.html", active=view, has_models=has_models)


@router.get("/status", response_class=HTMLResponse)
async def status(request: Request, studio: StudioDep) -> HTMLResponse:
    return await _status(request, studio)


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request, studio: StudioDep) -> HTMLResponse:
    active = studio.router.planner.default_model()
    return render(
        request, "partials/header_models.html", groups=grouped(chat_views(studio)), active_id=active
    )


@router.post("/active", response_class=HTMLResponse)
async def choose(
    request: Request, studio: StudioDep, model: Annotated[str, Form(max_length=400)]
) -> HTMLResponse:
    """Make `model` active and answer with the new status (the page also tells its own widgets)."""
    await studio.registry.set_active_model(model)
    response = await _status(request, studio)
    response.headers["HX-Trigger"] = json.dumps(
        {"mm:active-changed": {"model": studio.registry.active_model}}
    )
    return response
