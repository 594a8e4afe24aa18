"""Fallback is a plan: a request becomes an ordered list of candidate models.

The selected model, its configured fallbacks, then the default chain (the configured
`fallback_chain`, or automatically: local models first, then one model per cloud provider whose
key is set), skipping models that are offline, cooling down, not chat models, or lacking a
capability the request needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from mmstudio.config import StudioConfig
from mmstudio.domain.breaker import CircuitBreaker
from mmstudio.domain.registry import ModelRegistry, Resolved
from mmstudio.errors import InvalidRequest, ModelNotFound, NoModelAvailable
from mmstudio.providers.base import ChatRequest

CandidateSource = Literal["selected", "fallback", "chain"]

# The model tried for each cloud provider in the automatic chain: the first one the catalog has.
CLOUD_DEFAULTS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini"),
    "anthropic": ("claude-haiku-4-5", "claude-3-5-haiku-latest"),
    "gemini": ("gemini-2.5-flash", "gemini-flash-latest", "gemini-2.0-flash"),
    "xai": ("grok-4.3", "grok-3-mini", "grok-3"),
}
CHAT_MODALITIES = ("chat", "code")
# The image model tried for each cloud provider in the automatic image chain: the first the catalog has.
IMAGE_CLOUD_DEFAULTS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini"),
    "gemini": ("gemini-2.5-flash-image",),
    "xai": ("grok-imagine-image",),
}
AUTO_CHAIN_TTL = 1.0  # seconds; candidates are re-checked (health, breaker) on every plan anyway


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs from a model."""

    tools: bool = False
    vision: bool = False
    modality: Literal["chat", "image"] = "chat"
    references: bool = False  # image: reference photos (or an image to edit)
    mask: bool = False

    @classmethod
    def of(cls, request: ChatRequest) -> Needs:
        return cls(tools=bool(request.tools), vision=request.has_images)


@dataclass(frozen=True, slots=True)
class Candidate:
    resolved: Resolved
    source: CandidateSource
    timeout: float  # per attempt, seconds

    @property
    def model_id(self) -> str:
        return self.resolved.entry.id


@dataclass(frozen=True, slots=True)
class Plan:
    requested: str | None  # what the caller asked for (None: the default)
    candidates: tuple[Candidate, ...]
    skipped: tuple[tuple[str, str], ...]  # (model id, why)


class Planner:
    def __init__(
        self,
        registry: ModelRegistry,
        config: StudioConfig,
        breaker: CircuitBreaker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.config = config
        self.breaker = breaker
        self._clock = clock
        self._auto: tuple[float, list[Resolved]] | None = None

    def timeout_for(self, resolved: Resolved) -> float:
        entry = resolved.entry
        if entry.timeout is not None:
            return entry.timeout
        timeouts = self.config.images.timeouts if entry.modality == "image" else self.config.timeouts
        return timeouts.local if entry.kind == "local" else timeouts.cloud

    def plan(
        self, model: str | None, needs: Needs, *, fallbacks: bool = True, chain: Sequence[str] | None = None
    ) -> Plan:
        """Raises ModelNotFound for an unknown model and NoModelAvailable when every candidate is out.
        `chain` replaces the default chain (model refs; unknown ones are skipped)."""
        ordered: list[tuple[Resolved, CandidateSource]] = []
        skipped: list[tuple[str, str]] = []
        if needs.modality == "chat":
            selected = self._selected(model)
        else:  # no active-model default for images: the caller names one or the chain decides
            selected = self.registry.resolve(model) if model is not None and model.strip() else None
        if selected is not None:
            ordered.append((selected, "selected"))
            for ref in selected.entry.fallbacks:
                self._add_ref(ref, "fallback", ordered, skipped)
        if fallbacks or selected is None:
            if chain is not None:
                for ref in chain:
                    self._add_ref(ref, "chain", ordered, skipped)
            else:
                for resolved in self._chain(skipped):
                    ordered.append((resolved, "chain"))
        candidates: list[Candidate] = []
        seen: set[str] = set()
        for resolved, source in ordered:
            model_id = resolved.entry.id
            if model_id in seen:
                continue
            seen.add(model_id)
            reason = self._unusable(resolved, needs)
            if reason is not None:
                skipped.append((model_id, reason))
                continue
            if len(candidates) < self.config.routing.max_candidates:
                candidates.append(Candidate(resolved, source, self.timeout_for(resolved)))
        if not candidates:
            raise NoModelAvailable(_nothing_left(model, skipped, needs.modality), skipped)
        return Plan(model, tuple(candidates), tuple(skipped))

    def default_model(self) -> str | None:
        """The active model, else the configured default model, else the first of the automatic chain."""
        active = self.registry.active_model
        if active is not None:
            return active
        if self.config.default_model:
            try:
                return self.registry.resolve(self.config.default_model).entry.id
            except ModelNotFound:
                return None
        first = next(iter(self._chain([])), None)
        return first.entry.id if first is not None else None

    # -- pieces -------------------------------------------------------------------------------

    def cloud_chain(self) -> list[str]:
        """The cloud part of the automatic chain: one model per cloud provider whose key is set."""
        return [r.entry.id for r in self._auto_chain() if r.entry.kind == "cloud"]

    def image_chain(self) -> list[str]:
        """The automatic image chain: local image engines that answer (registered first), then one
        image model per cloud provider whose key is set."""
        views = [v for v in self.registry.views() if v.entry.modality == "image" and v.available]
        local = [v for v in views if v.entry.kind == "local" and v.health.status != "offline"]
        local.sort(key=lambda v: (v.entry.source != "registered", -v.usage.sessions, v.entry.id))
        chain = [v.entry.id for v in local]
        cloud = {v.entry.id for v in views if v.entry.kind == "cloud"}
        for provider, names in IMAGE_CLOUD_DEFAULTS.items():
            for name in names:
                if f"{provider}/{name}" in cloud:
                    chain.append(f"{provider}/{name}")
                    break
        return chain

    def _selected(self, model: str | None) -> Resolved | None:
        if model is not None and model.strip():
            return self.registry.resolve(model)
        active = self.registry.active_model
        if active is not None:
            return self.registry.resolve(active)
        if self.config.default_model:
            try:
                return self.registry.resolve(self.config.default_model)
            except ModelNotFound as exc:
                raise ModelNotFound(
                    self.config.default_model,
                    exc.available,
                    f"The configured default_model {self.config.default_model!r} is not in the registry. "
                    f"Name a model in the request or fix the config. Available: "
                    f"{', '.join(exc.available[:20]) or 'none'}",
                ) from None
        return None

    def _add_ref(
        self,
        ref: str,
        source: CandidateSource,
        ordered: list[tuple[Resolved, CandidateSource]],
        skipped: list[tuple[str, str]],
    ) -> None:
        try:
            ordered.append((self.registry.resolve(ref), source))
        except ModelNotFound:
            skipped.append((ref, "not in the registry"))

    def _chain(self, skipped: list[tuple[str, str]]) -> Iterable[Resolved]:
        if self.config.fallback_chain:
            for ref in self.config.fallback_chain:
                try:
                    yield self.registry.resolve(ref)
                except ModelNotFound:
                    skipped.append((ref, "not in the registry"))
            return
        if not self.config.routing.auto_fallback:
            return
        yield from self._auto_chain()

    def _auto_chain(self) -> list[Resolved]:
        """Local chat models (user-registered first, then the most used), then one per cloud provider.
        Built from every model's view, so it is kept for a second: requests do not pay for it."""
        now = self._clock()
        if self._auto is not None and now - self._auto[0] < AUTO_CHAIN_TTL:
            return self._auto[1]
        chain = list(self._build_auto_chain())
        self._auto = (now, chain)
        return chain

    def _build_auto_chain(self) -> Iterable[Resolved]:
        views = [v for v in self.registry.views() if v.entry.modality in CHAT_MODALITIES and v.available]
        local = [v for v in views if v.entry.kind == "local" and v.health.status != "offline"]
        local.sort(key=lambda v: (v.entry.source != "registered", -v.usage.sessions, v.entry.id))
        for view in local:
            yield Resolved(view.entry, view.endpoint, view.entry.display_name)
        by_id = {v.entry.id: v for v in views if v.entry.kind == "cloud"}
        for provider, names in CLOUD_DEFAULTS.items():
            for name in names:
                cloud = by_id.get(f"{provider}/{name}")
                if cloud is not None:
                    yield Resolved(cloud.entry, cloud.endpoint, cloud.entry.display_name)
                    break

    def _unusable(self, resolved: Resolved, needs: Needs) -> str | None:
        entry, endpoint = resolved.entry, resolved.endpoint
        article = "an" if entry.modality[0] in "aeiou" else "a"
        if needs.modality == "image":
            if entry.modality != "image":
                return f"is {article} {entry.modality} model, not an image model"
        elif entry.modality not in CHAT_MODALITIES:
            return f"is {article} {entry.modality} model, not a chat model"
        if not endpoint.enabled:
            return f"needs {endpoint.key_env} to be set"
        health = self.registry.health.state(endpoint.id)
        if endpoint.kind == "local" and health.status == "offline":
            return f"{endpoint.display_name} at {endpoint.base_url} is offline ({health.last_error})"
        view = self.breaker.view(entry.id)
        if view.state == "open":
            wait = max(1, round(view.retry_in or 0))
            return f"cooling down after {view.failures} failures (retry in {wait} s)"
        if view.state == "half_open" and not self.breaker.available(entry.id):
            return "cooling down (a probe request is deciding whether it is back)"
        caps = entry.capabilities
        if needs.tools and entry.capabilities_declared and not caps.tools:
            return "does not support tool calling"
        if needs.vision and entry.capabilities_declared and not caps.vision:
            return "does not accept images"
        image = entry.image
        if needs.references and (image is None or not image.supports_references):
            return "does not accept reference photos"
        if needs.mask and (image is None or not image.supports_mask):
            return "does not accept a mask"
        return None


def _nothing_left(model: str | None, skipped: list[tuple[str, str]], modality: str = "chat") -> str:
    if not skipped and modality == "image":
        return (
            "No image model is available. Add an image model: start ComfyUI or AUTOMATIC1111 (--api), "
            "register an images server, or set OPENAI_API_KEY, GEMINI_API_KEY or XAI_API_KEY."
        )
    if not skipped:
        return (
            "No model is available. Start a local engine (Ollama, LM Studio), register a model "
            "(POST /api/models/endpoints) or set a cloud key (OPENAI_API_KEY, ANTHROPIC_API_KEY, "
            "GEMINI_API_KEY, XAI_API_KEY)."
        )
    reasons = "; ".join(f"{m} {why}" for m, why in skipped[:10])
    head = f"No model can answer this request for {model!r}" if model else "No model can answer this request"
    return f"{head}: {reasons}."


def check_messages(request: ChatRequest) -> None:
    if not request.messages:
        raise InvalidRequest("at least one message is needed", field="messages")
