"""Model registry API: /api/models, health, detection, endpoint registration."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from mmstudio.domain.registry import ModelRequest
from mmstudio.errors import EndpointTestFailed
from mmstudio.web.constraints import RequestModel
from mmstudio.web.deps import StudioDep
from mmstudio.web.schemas import (
    DetectionList,
    DetectionPublic,
    EndpointCreate,
    EndpointHealthPublic,
    EndpointList,
    EndpointPublic,
    EndpointTest,
    EndpointTestResult,
    HealthList,
    ModelList,
    ModelPublic,
)

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=ModelList)
async def list_models(
    studio: StudioDep,
    modality: Literal["chat", "code", "image", "video", "embedding"] | None = None,
    kind: Literal["local", "cloud"] | None = None,
    available: bool | None = None,
) -> ModelList:
    """Every model with provider, modality, capabilities, availability, health, latency and usage."""
    views = [
        v
        for v in studio.registry.views()
        if (modality is None or v.entry.modality == modality)
        and (kind is None or v.entry.kind == kind)
        and (available is None or v.available == available)
    ]
    views.sort(key=lambda v: (v.entry.kind != "local", not v.available, v.entry.provider_id, v.entry.id))
    return ModelList(
        models=[ModelPublic.of(v) for v in views], default_model=studio.router.planner.default_model()
    )


class ActiveModelIn(RequestModel):
    model: str = Field(
        min_length=1, max_length=400, description="`provider/model`, a registered name or alias"
    )


class ActiveModelPublic(BaseModel):
    model: ModelPublic | None = Field(description="the model requests without a model go to; null: none")
    source: Literal["active", "config", "auto", "none"] = Field(
        description="active: chosen in the UI/CLI; config: `default_model`; auto: first of the fallback chain"
    )


def _active(studio: Any) -> ActiveModelPublic:
    registry = studio.registry
    if registry.active_model is not None:
        model_id, source = registry.active_model, "active"
    else:
        model_id = studio.router.planner.default_model()
        source = "config" if model_id and studio.settings.config.default_model else "auto"
    if model_id is None:
        return ActiveModelPublic(model=None, source="none")
    return ActiveModelPublic(
        model=ModelPublic.of(registry.view(registry.resolve(model_id).entry)), source=source
    )


@router.get("/active", response_model=ActiveModelPublic)
async def get_active(studio: StudioDep) -> ActiveModelPublic:
    """The active model (what the studio header shows), with its health and where the choice came from."""
    return _active(studio)


@router.put("/active", response_model=ActiveModelPublic)
async def set_active(body: ActiveModelIn, studio: StudioDep) -> ActiveModelPublic:
    """Make a chat or code model active: requests that name no model go to it. Persisted."""
    await studio.registry.set_active_model(body.model)
    return _active(studio)


@router.delete("/active", response_model=ActiveModelPublic)
async def clear_active(studio: StudioDep) -> ActiveModelPublic:
    """Forget the choice: the configured default model (or the automatic chain) applies again."""
    await studio.registry.clear_active_model()
    return _active(studio)


@router.get("/health", response_model=HealthList)
async def health(
    studio: StudioDep, refresh: bool = Query(False, description="probe now instead of the last state")
) -> HealthList:
    registry = studio.registry
    if refresh:
        await registry.health.check_all()
    return HealthList(
        endpoints=[EndpointHealthPublic.of(e, registry.health.state(e.id)) for e in registry.endpoints()]
    )


@router.post("/detect", response_model=DetectionList)
async def detect(studio: StudioDep) -> DetectionList:
    """Re-run detection of local engines now."""
    results = await studio.registry.detect()
    return DetectionList(
        results=[
            DetectionPublic(
                endpoint_id=r.endpoint_id,
                provider=r.provider_id,
                ok=r.ok,
                models=list(r.models),
                error=r.error,
            )
            for r in results
        ]
    )


@router.get("/endpoints", response_model=EndpointList)
async def list_endpoints(studio: StudioDep) -> EndpointList:
    endpoints = studio.registry.registered_endpoints()
    return EndpointList(endpoints=[EndpointPublic.of(e) for e in endpoints])


@router.post("/endpoints/test", response_model=EndpointTestResult)
async def test_endpoint(body: EndpointTest, studio: StudioDep) -> EndpointTestResult:
    """Test a connection without saving: latency and served models, or the exact cause of failure."""
    start = time.perf_counter()
    try:
        remote = await studio.registry.test_endpoint(body.platform, body.base_url, body.api_key)
    except EndpointTestFailed as exc:
        return EndpointTestResult(
            ok=False, latency_ms=_ms(start), models=[], cause=exc.cause, message=exc.message
        )
    return EndpointTestResult(ok=True, latency_ms=_ms(start), models=[m.id for m in remote])


@router.post("/endpoints", response_model=EndpointPublic, status_code=201)
async def register_endpoint(body: EndpointCreate, studio: StudioDep) -> EndpointPublic:
    """Register an endpoint and name its models. The connection is tested first; a failure saves nothing."""
    registered = await studio.registry.register(
        platform=body.platform,
        base_url=body.base_url,
        api_key=body.api_key,
        name=body.name,
        models=[ModelRequest(model=m.model, name=m.name, alias=m.alias) for m in body.models],
    )
    return EndpointPublic.of(registered)


@router.delete("/endpoints/{endpoint_id}", status_code=204)
async def remove_endpoint(endpoint_id: str, studio: StudioDep) -> Response:
    await studio.registry.remove_endpoint(endpoint_id)
    return Response(status_code=204)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
