"""API schemas (request bodies and public shapes), separate from domain objects and tables."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from mmstudio.domain.endpoints import normalize_base_url
from mmstudio.domain.patterns import SPACE
from mmstudio.domain.types import Endpoint, HealthState, ModelView, RegisteredEndpoint
from mmstudio.web.constraints import RequestModel, compile_pattern


class HealthPublic(BaseModel):
    status: Literal["healthy", "offline", "checking"]
    latency_ms: float | None
    last_error: str | None
    last_checked: datetime | None

    @classmethod
    def of(cls, state: HealthState) -> HealthPublic:
        return cls(
            status=state.status,
            latency_ms=state.latency_ms,
            last_error=state.last_error,
            last_checked=state.last_checked,
        )


class CapabilitiesPublic(BaseModel):
    streaming: bool
    tools: bool
    vision: bool
    json_mode: bool
    reference_images: bool
    input_fidelity: bool
    context_length: int | None


class PricesPublic(BaseModel):
    input_per_million: float | None
    output_per_million: float | None


class ModelPublic(BaseModel):
    id: str
    provider: str
    model: str
    name: str
    modality: str
    kind: Literal["local", "cloud"]
    source: str
    capabilities: CapabilitiesPublic
    prices: PricesPublic
    aliases: list[str]
    available: bool
    unavailable_reason: str | None
    enable_with: str | None
    health: HealthPublic
    sessions: int
    last_used: datetime | None
    endpoint_id: str
    endpoint_url: str

    @classmethod
    def of(cls, view: ModelView) -> ModelPublic:
        entry, caps = view.entry, view.entry.capabilities
        return cls(
            id=entry.id,
            provider=entry.provider_id,
            model=entry.upstream,
            name=entry.display_name,
            modality=entry.modality,
            kind=entry.kind,
            source=entry.source,
            capabilities=CapabilitiesPublic(
                streaming=caps.streaming,
                tools=caps.tools,
                vision=caps.vision,
                json_mode=caps.json_mode,
                reference_images=caps.reference_images,
                input_fidelity=caps.input_fidelity,
                context_length=caps.context_length,
            ),
            prices=PricesPublic(input_per_million=entry.input_price, output_per_million=entry.output_price),
            aliases=list(entry.aliases),
            available=view.available,
            unavailable_reason=view.unavailable_reason,
            enable_with=view.endpoint.key_env if not view.endpoint.enabled else None,
            health=HealthPublic.of(view.health),
            sessions=view.usage.sessions,
            last_used=view.usage.last_used_at,
            endpoint_id=view.endpoint.id,
            endpoint_url=view.endpoint.base_url,
        )


class ModelList(BaseModel):
    models: list[ModelPublic]
    default_model: str | None


class EndpointHealthPublic(BaseModel):
    id: str
    provider: str
    name: str
    kind: Literal["local", "cloud"]
    platform: str
    url: str
    enabled: bool
    health: HealthPublic

    @classmethod
    def of(cls, endpoint: Endpoint, state: HealthState) -> EndpointHealthPublic:
        return cls(
            id=endpoint.id,
            provider=endpoint.provider_id,
            name=endpoint.display_name,
            kind=endpoint.kind,
            platform=endpoint.flavor,
            url=endpoint.base_url,
            enabled=endpoint.enabled,
            health=HealthPublic.of(state),
        )


class HealthList(BaseModel):
    endpoints: list[EndpointHealthPublic]


class DetectionPublic(BaseModel):
    endpoint_id: str
    provider: str
    ok: bool
    models: list[str]
    error: str | None


class DetectionList(RequestModel):
    results: list[DetectionPublic]


class ModelName(RequestModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=300, description="the model's name on the endpoint")
    name: str = Field(default="", max_length=200, description="your name for it, e.g. 'My Gemma 2B'")
    alias: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")


# What a user can register by URL: the chat engines and the local image engines whose adapter exists.
RegistrablePlatform = Literal[
    "ollama", "lmstudio", "openai_compat", "comfyui", "automatic1111", "openai_images"
]


# A base URL the studio can reach: http(s), a host name or IPv4 address (or [::1]), a port up to 65535
# and a path. The domain's `normalize_base_url` says precisely what is wrong with anything else.
PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
LABEL = r"[A-Za-z0-9_~-]{1,63}"
BASE_URL = rf"^[{SPACE}]*https?://(?:{LABEL}(?:\.{LABEL})*|\[::1\])(?::{PORT})?(?:/[^{SPACE}]*)?[{SPACE}]*$"


_BASE_URL = compile_pattern(BASE_URL)


def _base_url(value: str) -> str:
    normalize_base_url(value)  # raises InvalidRequest naming the problem
    if _BASE_URL.search(value) is None:
        raise PydanticCustomError(
            "base_url", "base_url '{value}' is not http(s)://host[:port][/path]", {"value": value[:100]}
        )
    return value


BaseUrl = Annotated[
    str,
    Field(
        max_length=500,
        description="e.g. http://127.0.0.1:11434",
        json_schema_extra={"pattern": BASE_URL},
    ),
    AfterValidator(_base_url),
]


class EndpointCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}}},
                {"required": ["models"], "properties": {"models": {"type": "array", "minItems": 1}}},
            ]
        },
    )

    platform: RegistrablePlatform
    base_url: BaseUrl
    api_key: str | None = Field(default=None, max_length=500)
    name: str | None = Field(default=None, max_length=40, description="provider id for model ids")
    models: list[ModelName] = Field(default_factory=list, max_length=100)
    model: str | None = Field(default=None, max_length=300, description="shorthand for one model")
    display_name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_model_at_least(self) -> EndpointCreate:
        if self.model:
            self.models.append(ModelName(model=self.model, name=self.display_name or ""))
        if not self.models:
            raise ValueError("name at least one model: 'models': [{'model': ..., 'name': ...}] or 'model'")
        return self


class EndpointTest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    platform: RegistrablePlatform
    base_url: BaseUrl
    api_key: str | None = Field(default=None, max_length=500)


class EndpointTestResult(BaseModel):
    ok: bool
    latency_ms: float
    models: list[str]
    cause: str | None = None
    message: str | None = None


class RegisteredModelPublic(BaseModel):
    id: str
    model_id: str
    model: str
    name: str
    alias: str | None


class EndpointPublic(BaseModel):
    id: str
    provider: str
    platform: str
    base_url: str
    has_api_key: bool
    created_at: datetime
    models: list[RegisteredModelPublic]

    @classmethod
    def of(cls, endpoint: RegisteredEndpoint) -> EndpointPublic:
        return cls(
            id=endpoint.id,
            provider=endpoint.provider_id,
            platform=endpoint.platform,
            base_url=endpoint.base_url,
            has_api_key=bool(endpoint.api_key),
            created_at=endpoint.created_at,
            models=[
                RegisteredModelPublic(
                    id=m.id,
                    model_id=f"{endpoint.provider_id}/{m.upstream_model}",
                    model=m.upstream_model,
                    name=m.display_name,
                    alias=m.alias,
                )
                for m in endpoint.models
            ],
        )


class EndpointList(BaseModel):
    endpoints: list[EndpointPublic]
