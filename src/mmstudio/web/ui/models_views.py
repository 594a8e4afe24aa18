"""The models dashboard's fragments: the model list by endpoint, registered endpoints, detection, actions.

Under /api/ui/models, so gateway keys protect them like any API route. Every action answers with an
`mm:models-changed` event (HX-Trigger) and the list and the endpoints reload themselves on it, with
the filters the page shows; an action that can move the active model also sends `mm:active-changed`
for the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse

from mmstudio.domain.types import PLATFORM_LABELS, Endpoint, HealthState, ModelEntry, ModelView
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import CHAT_MODALITIES
from mmstudio.web.ui.templating import render

router = APIRouter(prefix="/api/ui/models", include_in_schema=False)

MODALITY_ORDER = {"chat": 0, "code": 1, "image": 2, "video": 3, "embedding": 4}
HEALTH_TIMEOUT = 5.0


@dataclass(frozen=True)
class EndpointGroup:
    """One endpoint (local engine, registered server, cloud provider) and its models after filtering."""

    endpoint: Endpoint
    health: HealthState
    views: list[ModelView]
    total: int

    @property
    def usable(self) -> bool:
        return self.endpoint.enabled and self.health.status != "offline"


@dataclass(frozen=True)
class Filters:
    kind: str
    modality: str
    q: str
    available: bool

    @property
    def narrowing(self) -> bool:
        return bool(self.kind or self.modality or self.q or self.available)

    def keep(self, view: ModelView) -> bool:
        entry, needle = view.entry, self.q.strip().lower()
        return (
            (not self.kind or entry.kind == self.kind)
            and (not self.modality or entry.modality == self.modality)
            and (not self.available or view.available)
            and (
                not needle
                or needle in entry.id.lower()
                or needle in entry.display_name.lower()
                or any(needle in alias.lower() for alias in entry.aliases)
            )
        )


def endpoint_groups(studio: Any, filters: Filters) -> list[EndpointGroup]:
    """Endpoints in the registry's order (local first) with their matching models, chat models first.

    A local engine with no models still shows when nothing narrows the list: "Ollama is not running"
    is what the user needs to see on an empty dashboard.
    """
    registry = studio.registry
    by_provider: dict[str, list[ModelView]] = {}
    for view in registry.views():
        by_provider.setdefault(view.entry.provider_id, []).append(view)
    groups = []
    for endpoint in registry.endpoints():
        views = by_provider.get(endpoint.provider_id, [])
        kept = sorted(
            (v for v in views if filters.keep(v)),
            key=lambda v: (MODALITY_ORDER.get(v.entry.modality, 9), v.entry.display_name.lower()),
        )
        local_shown = endpoint.kind == "local" and not filters.narrowing
        if kept or local_shown:
            groups.append(EndpointGroup(endpoint, registry.health.state(endpoint.id), kept, len(views)))
    return groups


def context_label(tokens: int | None) -> str:
    """131072 → "128k", 200000 → "200k", 1048576 → "1M": the way vendors write context lengths."""
    if not tokens:
        return ""
    base = 1024 if tokens % 1024 == 0 and tokens % 1000 else 1000
    for size, unit in ((base * base, "M"), (base, "k")):
        if tokens >= size:
            value = tokens / size
            return (f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")) + unit
    return str(tokens)


def price_label(entry: ModelEntry) -> str:
    """ "$2.5 in · $10 out per 1M tokens", or "" for a model without prices."""
    if not entry.input_price and not entry.output_price:  # unknown, or a local model's zeros
        return ""
    parts = [f"${p:g}" if p is not None else "?" for p in (entry.input_price, entry.output_price)]
    return f"{parts[0]} in · {parts[1]} out per 1M tokens"


@router.get("/list", response_class=HTMLResponse)
async def model_list(
    request: Request,
    studio: StudioDep,
    kind: Annotated[Literal["", "local", "cloud"], Query()] = "",
    modality: Annotated[Literal["", "chat", "code", "image", "video", "embedding"], Query()] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    available: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    filters = Filters(kind, modality, q, available)
    views = studio.registry.views()
    return render(
        request,
        "partials/models_list.html",
        groups=endpoint_groups(studio, filters),
        filters=filters,
        active_id=studio.router.planner.default_model(),
        chat_modalities=CHAT_MODALITIES,
        total=len(views),
        usable=sum(1 for v in views if v.available),
        context_label=context_label,
        price_label=price_label,
    )


@router.get("/endpoints", response_class=HTMLResponse)
async def endpoint_list(request: Request, studio: StudioDep) -> HTMLResponse:
    registry = studio.registry
    rows = [(e, registry.health.state(e.id)) for e in registry.registered_endpoints()]
    return render(request, "partials/models_endpoints.html", rows=rows, labels=PLATFORM_LABELS)


@router.post("/detect", response_class=HTMLResponse)
async def detect(request: Request, studio: StudioDep) -> HTMLResponse:
    """Ask every local engine what it serves now, and how it is doing, then say what was found."""
    registry = studio.registry
    results = await registry.detect()
    local = [e for e in registry.endpoints() if e.kind == "local"]
    # Detection does not touch the health of an engine that answered; a probe makes the dots current.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(registry.health.check(e) for e in local)), HEALTH_TIMEOUT)
    names = {e.id: e for e in registry.endpoints()}
    found = [(names[r.endpoint_id], r) for r in results if r.endpoint_id in names]
    response = render(request, "partials/models_detect.html", found=found)
    response.headers["HX-Trigger"] = json.dumps({"mm:models-changed": True})
    return response


@router.post("/active", response_class=HTMLResponse)
async def make_active(
    studio: StudioDep, model: Annotated[str, Form(min_length=1, max_length=400)]
) -> HTMLResponse:
    resolved = await studio.registry.set_active_model(model)
    return _changed(
        {"model": resolved.entry.id},
        toast=f"{resolved.display_name} is now the active model.",
    )


@router.delete("/endpoints/{endpoint_id}", response_class=HTMLResponse)
async def remove_endpoint(endpoint_id: str, studio: StudioDep) -> HTMLResponse:
    registry = studio.registry
    gone = next((e for e in registry.registered_endpoints() if e.id == endpoint_id), None)
    await registry.remove_endpoint(endpoint_id)
    label = f"{gone.provider_id} ({gone.base_url})" if gone else "The endpoint"
    return _changed({"model": registry.active_model}, toast=f"{label} was removed.")


def _changed(active: dict[str, Any], *, toast: str) -> HTMLResponse:
    """An empty answer whose events refresh the list, the endpoints and the header, and say what happened."""
    events = {
        "mm:models-changed": True,
        "mm:active-changed": active,
        "mm:toast": {"message": toast, "kind": "ok"},
    }
    return HTMLResponse("", headers={"HX-Trigger": json.dumps(events)})
