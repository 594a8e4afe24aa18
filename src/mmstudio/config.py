"""The optional YAML config file: models, aliases, fallback chains, timeouts.

Every error names the file, the field and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmstudio.errors import ConfigError

Platform = Literal["ollama", "lmstudio", "openai_compat", "comfyui", "automatic1111", "openai_images"]
Modality = Literal["chat", "code", "image", "video", "embedding"]

MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/.+$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _no_empty_refs(value: tuple[str, ...]) -> tuple[str, ...]:
    for ref in value:
        if not ref.strip():
            raise ValueError("a model in fallback_chain is empty")
    return value


# A fallback chain: model references, none of them empty.
ModelRefs = Annotated[tuple[str, ...], AfterValidator(_no_empty_refs)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CapabilityOverride(_Strict):
    streaming: bool | None = None
    tools: bool | None = None
    vision: bool | None = None
    json_mode: bool | None = None
    reference_images: bool | None = None
    input_fidelity: bool | None = None
    context_length: int | None = Field(default=None, gt=0)


class ModelConfig(_Strict):
    """A model entry: overrides a catalog or detected model, or declares one."""

    id: str = Field(description="provider/model")
    name: str | None = None
    modality: Modality | None = None
    capabilities: CapabilityOverride | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600)
    fallbacks: tuple[str, ...] = ()
    input_price: float | None = Field(default=None, ge=0, description="USD per million input tokens")
    output_price: float | None = Field(default=None, ge=0, description="USD per million output tokens")

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not MODEL_ID.match(value):
            raise ValueError(f"must look like 'provider/model', got {value!r}")
        return value


class EndpointConfigEntry(_Strict):
    """A local or self-hosted server to detect models on."""

    name: str = Field(description="provider id used in model ids, e.g. 'gpu-box'")
    platform: Platform
    base_url: str
    api_key_env: str | None = Field(default=None, description="environment variable holding the key")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("must be lowercase letters, digits, '-' or '_' (at most 40), e.g. 'gpu-box'")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class Timeouts(_Strict):
    local: float = Field(default=30.0, gt=0, le=3600)
    cloud: float = Field(default=60.0, gt=0, le=3600)


class Routing(_Strict):
    """How the router retries, falls back and cools models down."""

    retries: int = Field(default=2, ge=0, le=10, description="retries per model for retryable failures")
    backoff_base: float = Field(default=0.25, ge=0, le=60, description="first backoff in seconds")
    backoff_max: float = Field(default=8.0, ge=0, le=300)
    max_retry_after: float = Field(
        default=20.0, ge=0, le=3600, description="a longer Retry-After moves on to the next model"
    )
    deadline: float = Field(default=300.0, gt=0, le=86400, description="whole request, all attempts")
    max_candidates: int = Field(default=5, ge=1, le=50)
    auto_fallback: bool = Field(
        default=True, description="without fallback_chain: local models first, then cloud"
    )
    breaker_failures: int = Field(default=5, ge=1, le=1000, description="consecutive failures that open")
    breaker_cooldown: float = Field(default=30.0, gt=0, le=86400, description="seconds before a probe")


class RateLimit(_Strict):
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute")


class Limits(_Strict):
    """Rate limits (in-process, or shared through MMSTUDIO_REDIS_URL) and request size."""

    per_key: RateLimit = Field(default_factory=RateLimit, description="every gateway key, unless set")
    per_model: RateLimit = Field(default_factory=RateLimit, description="every model, unless set")
    models: dict[str, RateLimit] = Field(default_factory=dict, description="per model id")
    max_body_mb: float = Field(default=20.0, gt=0, le=1024)


class MetricsConfig(_Strict):
    enabled: bool = True
    retention_days: float = Field(default=30.0, gt=0, le=3650)
    flush_interval_seconds: float = Field(default=1.0, gt=0, le=600)
    batch_size: int = Field(default=500, ge=1, le=100000)
    # How often the event-loop lag timer fires (mmstudio_event_loop_lag_seconds); 0 turns it off.
    loop_lag_interval_ms: float = Field(default=10.0, ge=0, le=10000)


class ChatConfig(_Strict):
    """Chat Studio: uploads, streaming writes, the agent loop, retrieval and memory."""

    max_upload_mb: float = Field(default=20.0, gt=0, le=1024)
    stream_write_interval_seconds: float = Field(default=0.25, ge=0.01, le=10)
    agent_max_steps: int = Field(default=6, ge=1, le=50)
    retrieval_chunks: int = Field(default=5, ge=1, le=50)
    memory_items: int = Field(default=5, ge=1, le=50)
    compare_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    # "model": the answering model writes a short title after the first exchange;
    # "first_message": the first words of the first message (no extra model call).
    titles: Literal["model", "first_message"] = "model"


class CodegenConfig(_Strict):
    """Creator Studio: its fallback chain, rate limit and the bounds of what one generation produces."""

    fallback_chain: ModelRefs = Field(
        default=(),
        description="models tried after the active one; empty: one cloud model per provider whose key is set",
    )
    rate_limit: RateLimit = Field(
        default_factory=lambda: RateLimit(rpm=100), description="per user (gateway key, else client address)"
    )
    max_output_tokens: int = Field(default=8192, ge=256, le=200_000)
    max_files: int = Field(default=100, ge=1, le=1000)
    max_file_kb: int = Field(default=256, ge=1, le=10_000)
    max_total_kb: int = Field(default=2000, ge=1, le=100_000)


class ImageTimeouts(_Strict):
    local: float = Field(default=120.0, gt=0, le=3600)
    cloud: float = Field(default=180.0, gt=0, le=3600)


class ImagesConfig(_Strict):
    """Image generation: its fallback chain, what a refusal does, and per-attempt timeouts."""

    fallback_chain: ModelRefs = Field(
        default=(),
        description="image models tried after the chosen one; empty: local image engines that answer, "
        "then one cloud image model per provider whose key is set",
    )
    fallback_on_refusal: bool = Field(
        default=False,
        description="a content-policy refusal moves on to the next model (default: it is final)",
    )
    timeouts: ImageTimeouts = Field(default_factory=ImageTimeouts)
    max_upload_mb: float = Field(default=20.0, gt=0, le=500, description="largest image upload, in MB")
    max_pixels: int = Field(
        default=50_000_000,
        ge=1_000_000,
        le=1_000_000_000,
        description="largest image (width x height) decoded; more is refused as a decompression bomb",
    )
    thumbnail_px: int = Field(default=256, ge=32, le=1024, description="longer side of gallery thumbnails")
    workflows: dict[str, str] = Field(
        default_factory=dict,
        description="your own ComfyUI workflows: name -> path of an API-format workflow JSON "
        "with mmstudio slots",
    )


class VideosConfig(_Strict):
    """Video generation and the job worker that runs it."""

    concurrency: int = Field(default=8, ge=1, le=256, description="jobs this process runs at once, in all")
    per_provider: dict[str, int] = Field(
        default_factory=lambda: {"local": 2, "cloud": 4},
        description="jobs at once per provider: `local` for every local engine, `cloud` for every cloud "
        "vendor, or a provider's own name (runway, xai, gemini, openai, an endpoint id) to override",
    )
    poll_interval_s: float | None = Field(
        default=None, gt=0, le=600, description="seconds between polls; empty: what each vendor asks for"
    )
    worker: bool = Field(default=True, description="run jobs in this process (serve); false: API only")
    engine: Literal["auto", "table", "procrastinate"] = Field(
        default="auto",
        description="how jobs reach workers: `table` (workers claim rows of the jobs table), `procrastinate` "
        "(PostgreSQL only: a procrastinate queue carries job ids, the jobs table stays the truth), `auto` "
        "(procrastinate on PostgreSQL, table on SQLite)",
    )
    retry_backoff_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="wait before retrying a vendor call that failed in a retryable way (doubled each "
        "time, with jitter; a vendor's Retry-After wins)",
    )

    @field_validator("per_provider")
    @classmethod
    def _caps_are_positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cap in value.items():
            if not 1 <= cap <= 256:
                raise ValueError(f"per_provider.{name} must be between 1 and 256, got {cap}")
        return {"local": 2, "cloud": 4, **value}

    def provider_cap(self, provider: str, *, local: bool) -> int:
        """How many jobs of `provider` this process runs at once."""
        return self.per_provider.get(provider) or self.per_provider["local" if local else "cloud"]

    lease_seconds: float = Field(
        default=30.0, ge=0.5, le=3600, description="a worker that dies gives its jobs up after this long"
    )


# Page paths a tier's `/{tier}/...` pages must never shadow.
RESERVED_TIERS = frozenset(
    {
        "api", "v1", "static", "ui", "chat", "models", "onboarding", "compare", "creator-studio", "images",
        "jobs", "video-studio", "metrics", "metrics-dashboard", "healthz", "openapi.json", "docs", "redoc",
        "favicon.ico", "story", "stories",
    }
)  # fmt: skip
KIDS_INSTRUCTIONS = (
    "You write illustrated stories for children aged 6 to 10. Keep every scene kind, safe and hopeful: no "
    "violence beyond gentle peril, no romance, no frightening images, no brand names, no real people. Use "
    "short sentences and simple words. Image prompts describe a bright, friendly picture-book illustration."
)
ADULT_INSTRUCTIONS = (
    "You write interactive fiction for consenting adults. Mature themes are allowed; never involve minors, "
    "real people or non-consent, and keep image prompts within the image model's content policy."
)


class TierConfig(_Strict):
    """One audience tier of story mode: its own stories, characters and media, and the rules its text
    and image models always follow."""

    name: str = Field(min_length=1, max_length=60, description="display name")
    enabled: bool = True
    text_model: str | None = Field(default=None, description="default text model (empty: the studio's)")
    image_model: str = Field(default="openai/gpt-image-1", description="default image model")
    video_model: str | None = Field(default=None, description="default video model (empty: the first usable)")
    text_models: tuple[str, ...] = Field(default=(), description="text models allowed (empty: any)")
    image_models: tuple[str, ...] = Field(default=(), description="image models allowed (empty: any)")
    video_models: tuple[str, ...] = Field(default=(), description="video models allowed (empty: any)")
    instructions: str = Field(default="", max_length=8000, description="what the text model always gets")
    moderation: Literal["auto", "low"] | None = Field(
        default="auto", description="image moderation sent where the vendor takes it (OpenAI's)"
    )
    video: bool = Field(default=True, description="whether video mode may be turned on")
    max_scenes: int = Field(default=30, ge=1, le=500, description="scenes a story may have in all")


def _default_tiers() -> dict[str, TierConfig]:
    return {
        "kids": TierConfig(name="Kids", instructions=KIDS_INSTRUCTIONS, moderation="auto", max_scenes=30),
        "nsfw": TierConfig(
            name="Adults", enabled=False, instructions=ADULT_INSTRUCTIONS, moderation="low", max_scenes=100
        ),
    }


class StoriesConfig(_Strict):
    """Story mode: the audience tiers (`kids` and `nsfw` by default; `nsfw` is off until enabled)."""

    tiers: dict[str, TierConfig] = Field(default_factory=_default_tiers)
    auto_save: bool = Field(default=True, description="keep every story in its tier's gallery at once")

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: dict[str, TierConfig]) -> dict[str, TierConfig]:
        for key in value:
            if not SLUG.match(key) or key in RESERVED_TIERS:
                raise ValueError(
                    f"tier {key!r}: a tier is a lowercase slug (letters, digits, - and _) and not one of the "
                    f"studio's own paths ({', '.join(sorted(RESERVED_TIERS))})"
                )
        return value


class StudioConfig(_Strict):
    default_model: str | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    fallback_chain: tuple[str, ...] = ()
    timeouts: Timeouts = Field(default_factory=Timeouts)
    routing: Routing = Field(default_factory=Routing)
    limits: Limits = Field(default_factory=Limits)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    codegen: CodegenConfig = Field(default_factory=CodegenConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    videos: VideosConfig = Field(default_factory=VideosConfig)
    stories: StoriesConfig = Field(default_factory=StoriesConfig)
    health_interval_seconds: float = Field(default=30.0, ge=1, le=3600)
    detect_local: bool = True
    endpoints: tuple[EndpointConfigEntry, ...] = ()
    models: tuple[ModelConfig, ...] = ()

    @field_validator("aliases")
    @classmethod
    def _alias_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, target in value.items():
            if not MODEL_ID.match(target):
                raise ValueError(f"alias {alias!r} must point at 'provider/model', got {target!r}")
        return value


def load_config(path: Path) -> StudioConfig:
    """Read and validate a YAML config file, or raise ConfigError saying exactly what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if data is None:
        return StudioConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, got {type(data).__name__}")
    try:
        return StudioConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from exc


def format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = _allowed_fields(error["loc"])
            message = f"unknown field; allowed here: {', '.join(allowed)}" if allowed else "unknown field"
        lines.append(f"{path}: {field}: {message}")
    return "\n".join(lines)


def _allowed_fields(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = StudioConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        inner = _model_in(info.annotation)
        if inner is None:
            return []
        model = inner
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
