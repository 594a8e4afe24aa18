"""The model registry: every model (cloud catalog, detected local, user-registered, config), resolved by
id, alias or name, with availability, health and usage."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from mmstudio.config import StudioConfig
from mmstudio.domain.catalog import cloud_catalog, legacy_alias
from mmstudio.domain.endpoints import (
    AdapterFactory,
    ImageAdapterFactory,
    Probeable,
    build_endpoints,
    check_connection,
    normalize_base_url,
)
from mmstudio.domain.health import HealthMonitor
from mmstudio.domain.types import (
    PLATFORM_LABELS,
    Endpoint,
    HealthState,
    Modality,
    ModelEntry,
    ModelUsage,
    ModelView,
    Platform,
    RegisteredEndpoint,
)
from mmstudio.errors import InvalidRequest, ModelNotFound, NotFound, ProviderError
from mmstudio.providers.base import Capabilities, ProbeResult, ProviderAdapter, RemoteModel
from mmstudio.providers.media import engine_image_capabilities
from mmstudio.providers.media.base import ImageAdapter
from mmstudio.settings import CloudProviderSettings

log = logging.getLogger(__name__)

DETECT_TIMEOUT = 10.0
REDETECT_AFTER = 5.0
_SLUG = re.compile(r"[^a-z0-9_-]+")


class EndpointStore(Protocol):
    async def list_all(self) -> list[RegisteredEndpoint]: ...

    async def add(
        self,
        *,
        provider_id: str,
        platform: Platform,
        base_url: str,
        api_key: str | None,
        models: Sequence[tuple[str, str, str | None]],
    ) -> RegisteredEndpoint: ...

    async def delete(self, endpoint_id: str) -> bool: ...


class PreferenceStore(Protocol):
    async def all(self) -> dict[str, Any]: ...

    async def set(self, key: str, value: Any) -> None: ...

    async def delete(self, key: str) -> None: ...


ACTIVE_MODEL = "active_model"
ACTIVE_MODALITIES = ("chat", "code")


class UsageStore(Protocol):
    async def record_session(
        self, model_id: str, at: datetime | None = None, count: int = 1
    ) -> ModelUsage: ...

    async def all(self) -> dict[str, ModelUsage]: ...


@dataclass(frozen=True)
class Resolved:
    """A model reference resolved to its entry and endpoint. `display_name` honours legacy aliases."""

    entry: ModelEntry
    endpoint: Endpoint
    display_name: str


@dataclass(frozen=True)
class ModelRequest:
    """One named model to register on an endpoint."""

    model: str
    name: str
    alias: str | None = None


@dataclass(frozen=True)
class DetectionResult:
    endpoint_id: str
    provider_id: str
    ok: bool
    models: tuple[str, ...] = ()
    error: str | None = None


class ModelRegistry:
    def __init__(
        self,
        *,
        config: StudioConfig,
        cloud: Mapping[str, CloudProviderSettings],
        ollama_url: str,
        lmstudio_url: str,
        endpoint_store: EndpointStore,
        usage_store: UsageStore,
        adapter_factory: AdapterFactory,
        environ: Mapping[str, str] | None = None,
        preference_store: PreferenceStore | None = None,
        image_adapter_factory: ImageAdapterFactory | None = None,
        image_engines: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._image_adapter_factory = image_adapter_factory
        self._image_engines = dict(image_engines or {})
        self._image_adapters: dict[str, ImageAdapter] = {}
        self._cloud = cloud
        self._ollama_url = ollama_url
        self._lmstudio_url = lmstudio_url
        self._endpoint_store = endpoint_store
        self._usage_store = usage_store
        self._preference_store = preference_store
        self._active: str | None = None
        self._adapter_factory = adapter_factory
        self._environ = dict(environ or {})
        self._registered: list[RegisteredEndpoint] = []
        self._endpoints: dict[str, Endpoint] = {}
        self._by_provider: dict[str, Endpoint] = {}
        self._adapters: dict[str, ProviderAdapter] = {}
        self._detected: dict[str, tuple[RemoteModel, ...]] = {}
        self._entries: dict[str, ModelEntry] = {}
        self._lookup: dict[str, str] = {}
        self._usage: dict[str, ModelUsage] = {}
        self._pending_sessions: dict[str, tuple[int, datetime]] = {}
        self._detect_lock = asyncio.Lock()
        self._last_detect = float("-inf")
        self.health = HealthMonitor(
            self._probe, self.endpoints, config.health_interval_seconds, self._health_changed
        )

    # -- loading ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read registered endpoints and usage from storage and build the model list (no network)."""
        self._registered = await self._endpoint_store.list_all()
        self._usage = await self._usage_store.all()
        if self._preference_store is not None:
            active = (await self._preference_store.all()).get(ACTIVE_MODEL)
            self._active = active if isinstance(active, str) else None
        self._rebuild()

    # -- the active model ------------------------------------------------------------------

    @property
    def active_model(self) -> str | None:
        """The model the user made active (UI header, `mmstudio models use`), if it is still there.

        Requests that name no model go to it; it wins over the configured `default_model`.
        """
        if self._active is None:
            return None
        try:
            return self.resolve(self._active).entry.id
        except ModelNotFound:
            return None  # its endpoint was removed or the model is gone: fall back to the default

    async def set_active_model(self, ref: str) -> Resolved:
        """Make `ref` the active model; it must be a chat or code model. Persisted across restarts."""
        resolved = self.resolve(ref)
        if resolved.entry.modality not in ACTIVE_MODALITIES:
            usable = [v.entry.id for v in self.views() if v.entry.modality in ACTIVE_MODALITIES]
            raise ModelNotFound(
                ref,
                usable,
                f"{resolved.entry.id} is a {resolved.entry.modality} model; the active model must be a "
                f"{' or '.join(ACTIVE_MODALITIES)} model: {', '.join(usable) or 'none yet'}",
            )
        if self._preference_store is not None:
            await self._preference_store.set(ACTIVE_MODEL, resolved.entry.id)
        self._active = resolved.entry.id
        return resolved

    async def clear_active_model(self) -> None:
        if self._preference_store is not None:
            await self._preference_store.delete(ACTIVE_MODEL)
        self._active = None

    def _rebuild(self) -> None:
        endpoints = build_endpoints(
            config=self.config,
            cloud=self._cloud,
            ollama_url=self._ollama_url,
            lmstudio_url=self._lmstudio_url,
            registered=self._registered,
            environ=self._environ,
            image_engines=self._image_engines,
        )
        old = self._endpoints
        self._endpoints = {e.id: e for e in endpoints}
        self._by_provider = {e.provider_id: e for e in endpoints}
        for endpoint_id in list(self._adapters):
            if endpoint_id not in self._endpoints or old.get(endpoint_id) != self._endpoints[endpoint_id]:
                del self._adapters[endpoint_id]
                self.health.forget(endpoint_id)
        for endpoint_id in list(self._image_adapters):
            if endpoint_id not in self._endpoints or old.get(endpoint_id) != self._endpoints[endpoint_id]:
                del self._image_adapters[endpoint_id]
                self.health.forget(endpoint_id)
        self._entries = self._build_entries()
        self._lookup = self._build_lookup()

    def _build_entries(self) -> dict[str, ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        by_provider = {e.provider_id: e for e in self._endpoints.values()}
        for entry in cloud_catalog():
            if entry.provider_id in by_provider:
                entries[entry.id] = entry
        for endpoint in self._endpoints.values():
            for remote in self._detected.get(endpoint.id, ()):
                entry = _detected_entry(endpoint, remote)
                entries[entry.id] = entry
        for reg in self._registered:
            owner = by_provider.get(reg.provider_id)
            if owner is None:
                continue
            for model in reg.models:
                model_id = f"{reg.provider_id}/{model.upstream_model}"
                base = entries.get(model_id) or _detected_entry(owner, RemoteModel(model.upstream_model))
                entries[model_id] = replace(
                    base,
                    display_name=model.display_name,
                    source="registered",
                    registered_id=model.id,
                    aliases=base.aliases + ((model.alias,) if model.alias else ()),
                )
        for override in self.config.models:
            provider = override.id.split("/", 1)[0]
            declared = by_provider.get(provider)
            if declared is None:
                log.warning("config model %s names unknown provider %r; ignored", override.id, provider)
                continue
            base = entries.get(override.id) or _detected_entry(
                declared, RemoteModel(override.id.split("/", 1)[1])
            )
            caps = base.capabilities
            caps_declared = base.capabilities_declared
            if override.capabilities is not None:
                caps = caps.merged(**override.capabilities.model_dump())
                caps_declared = True
            entries[override.id] = replace(
                base,
                display_name=override.name or base.display_name,
                modality=override.modality or base.modality,
                capabilities=caps,
                timeout=override.timeout if override.timeout is not None else base.timeout,
                fallbacks=override.fallbacks or base.fallbacks,
                input_price=override.input_price if override.input_price is not None else base.input_price,
                output_price=override.output_price
                if override.output_price is not None
                else base.output_price,
                source="config" if base.source == "detected" else base.source,
                capabilities_declared=caps_declared,
            )
        for alias, target in self.config.aliases.items():
            if target in entries:
                entries[target] = replace(entries[target], aliases=(*entries[target].aliases, alias))
        return entries

    def _build_lookup(self) -> dict[str, str]:
        lookup: dict[str, str] = {}
        names: dict[str, list[str]] = {}
        upstreams: dict[str, list[str]] = {}
        for entry in self._entries.values():
            names.setdefault(entry.display_name.lower(), []).append(entry.id)
            upstreams.setdefault(entry.upstream.lower(), []).append(entry.id)
        # Weakest first, so stronger keys overwrite: bare upstream name, display name, alias, id.
        for key, ids in upstreams.items():
            if len(ids) == 1:
                lookup[key] = ids[0]
        for key, ids in names.items():
            if len(ids) == 1:
                lookup[key] = ids[0]
        for entry in self._entries.values():
            for alias in entry.aliases:
                lookup[alias.lower()] = entry.id
        for entry in self._entries.values():
            lookup[entry.id.lower()] = entry.id
        return lookup

    # -- queries ----------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    def endpoint(self, endpoint_id: str) -> Endpoint:
        try:
            return self._endpoints[endpoint_id]
        except KeyError:
            raise NotFound(f"no endpoint {endpoint_id!r}") from None

    def registered_endpoints(self) -> list[RegisteredEndpoint]:
        return list(self._registered)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def endpoint_of(self, entry: ModelEntry) -> Endpoint:
        return self._by_provider[entry.provider_id]

    def resolve(self, ref: str) -> Resolved:
        """`provider/model`, an alias, a registered name or a bare model name → the model."""
        key = ref.strip().lower()
        model_id = self._lookup.get(key)
        display: str | None = None
        legacy = legacy_alias(key)
        if legacy is not None and model_id in (None, legacy.target) and legacy.target in self._entries:
            model_id, display = legacy.target, legacy.display_name  # old records keep their old name
        if model_id is None and "/" in key and ":" not in key.rsplit("/", 1)[1]:
            model_id = self._lookup.get(key + ":latest")  # Ollama's default tag
        if model_id is None:
            raise ModelNotFound(ref, self.available_ids())
        entry = self._entries[model_id]
        return Resolved(entry, self.endpoint_of(entry), display or entry.display_name)

    async def resolve_fresh(self, ref: str) -> Resolved:
        """`resolve`, but a miss re-runs detection first (a model pulled a moment ago), at most every few
        seconds so bad requests cannot hammer the engines."""
        try:
            return self.resolve(ref)
        except ModelNotFound:
            if time.monotonic() - self._last_detect < REDETECT_AFTER:
                raise
        await self.detect()
        return self.resolve(ref)

    def available_ids(self) -> list[str]:
        """Ids of the models that can answer now (local engines up, cloud keys set)."""
        return [e.id for e in self._entries.values() if self._availability(e)[0]]

    def _availability(self, entry: ModelEntry) -> tuple[bool, str | None]:
        endpoint = self.endpoint_of(entry)
        if endpoint.kind == "cloud":
            if not endpoint.api_key:
                return False, f"set {endpoint.key_env} to enable {endpoint.display_name} models"
            return True, None
        health = self.health.state(endpoint.id)
        if health.status == "offline":
            return (
                False,
                f"{endpoint.display_name} at {endpoint.base_url} is not answering: {health.last_error}",
            )
        return True, None

    def view(self, entry: ModelEntry) -> ModelView:
        endpoint = self.endpoint_of(entry)
        available, reason = self._availability(entry)
        health = (
            self.health.state(endpoint.id) if endpoint.enabled else HealthState("offline", last_error=reason)
        )
        return ModelView(entry, endpoint, available, reason, health, self._usage.get(entry.id, ModelUsage()))

    def views(self) -> list[ModelView]:
        return [self.view(e) for e in self._entries.values()]

    # -- adapters, health, detection -------------------------------------------------------

    def adapter(self, endpoint: Endpoint) -> ProviderAdapter:
        adapter = self._adapters.get(endpoint.id)
        if adapter is None:
            adapter = self._adapters[endpoint.id] = self._adapter_factory(endpoint)
        return adapter

    def image_adapter(self, endpoint: Endpoint) -> ImageAdapter:
        """The image adapter of a cloud vendor or a local image engine."""
        adapter = self._image_adapters.get(endpoint.id)
        if adapter is None:
            if self._image_adapter_factory is None or endpoint.image_protocol is None:
                raise InvalidRequest(f"{endpoint.display_name} does not generate images")
            adapter = self._image_adapters[endpoint.id] = self._image_adapter_factory(endpoint)
        return adapter

    def _probeable(self, endpoint: Endpoint) -> Probeable:
        return self.image_adapter(endpoint) if endpoint.makes_images else self.adapter(endpoint)

    async def _probe(self, endpoint: Endpoint) -> ProbeResult:
        return await self._probeable(endpoint).probe()

    async def _health_changed(self, endpoint: Endpoint, old: HealthState, new: HealthState) -> None:
        # A local engine that comes up after start-up gets its models detected without a restart.
        if endpoint.kind == "local" and new.status == "healthy" and not self._detected.get(endpoint.id):
            await self.detect([endpoint.id])

    async def detect(self, endpoint_ids: Sequence[str] | None = None) -> list[DetectionResult]:
        """List models on local endpoints (all of them, or those named), concurrently."""
        targets = [
            e
            for e in self._endpoints.values()
            if e.kind == "local" and (endpoint_ids is None or e.id in endpoint_ids)
        ]
        results = await asyncio.gather(*(self._detect_one(e) for e in targets))
        if endpoint_ids is None:
            self._last_detect = time.monotonic()
        async with self._detect_lock:
            self._entries = self._build_entries()
            self._lookup = self._build_lookup()
        return list(results)

    async def _detect_one(self, endpoint: Endpoint) -> DetectionResult:
        try:
            remote = await asyncio.wait_for(self._probeable(endpoint).list_models(), DETECT_TIMEOUT)
        except TimeoutError:
            await self.health.check(endpoint)
            return DetectionResult(
                endpoint.id,
                endpoint.provider_id,
                False,
                error=f"{endpoint.display_name} at {endpoint.base_url} did not answer in time",
            )
        except ProviderError as exc:
            await self.health.check(endpoint)
            return DetectionResult(endpoint.id, endpoint.provider_id, False, error=exc.message)
        self._detected[endpoint.id] = tuple(remote)
        return DetectionResult(endpoint.id, endpoint.provider_id, True, tuple(m.id for m in remote))

    # -- registration ----------------------------------------------------------------------

    async def test_endpoint(
        self, platform: Platform, base_url: str, api_key: str | None
    ) -> list[RemoteModel]:
        """The connection test run before saving anything."""
        base_url = normalize_base_url(base_url)
        probe = Endpoint(
            "test", "test", platform, base_url, "local", "user", PLATFORM_LABELS[platform], api_key=api_key
        )
        adapter: Probeable
        if probe.makes_images:
            if self._image_adapter_factory is None:
                raise InvalidRequest(f"{PLATFORM_LABELS[platform]} engines are not enabled here")
            adapter = self._image_adapter_factory(probe)
        else:
            adapter = self._adapter_factory(probe)
        return await check_connection(adapter, platform, base_url)

    async def register(
        self,
        *,
        platform: Platform,
        base_url: str,
        models: Sequence[ModelRequest],
        api_key: str | None = None,
        name: str | None = None,
    ) -> RegisteredEndpoint:
        """Test the connection, check the models are served, then save. A failure saves nothing."""
        base_url = normalize_base_url(base_url)
        remote = await self.test_endpoint(platform, base_url, api_key)
        served = {m.id for m in remote}
        for request in models:
            if request.model not in served and f"{request.model}:latest" not in served:
                listing = ", ".join(sorted(served)) or "no models"
                raise InvalidRequest(
                    f"model {request.model!r} is not served by {base_url}; it serves: {listing}",
                    field="model",
                )
        provider_id = self._provider_id_for(platform, base_url, name)
        normalized = [
            (
                m.model if m.model in served else f"{m.model}:latest",
                m.name.strip() or m.model,
                m.alias or None,
            )
            for m in models
        ]
        registered = await self._endpoint_store.add(
            provider_id=provider_id,
            platform=platform,
            base_url=base_url,
            api_key=api_key,
            models=normalized,
        )
        self._registered = await self._endpoint_store.list_all()
        self._detected[registered.id] = tuple(remote)
        self._rebuild()
        await self.health.check(self._endpoints[registered.id])
        return registered

    def _provider_id_for(self, platform: Platform, base_url: str, name: str | None) -> str:
        if name:
            slug = _SLUG.sub("-", name.strip().lower()).strip("-")[:40]
            if not slug:
                raise InvalidRequest("name must contain letters or digits", field="name")
            if slug in self._cloud:
                raise InvalidRequest(
                    f"name {slug!r} is reserved for the cloud provider; choose another", field="name"
                )
            return slug
        for endpoint in self._endpoints.values():
            if (
                endpoint.kind == "local"
                and endpoint.base_url.rstrip("/") == base_url
                and endpoint.flavor == platform
            ):
                return endpoint.provider_id
        if platform in ("ollama", "lmstudio") and platform not in {r.provider_id for r in self._registered}:
            builtin = self._endpoints.get(platform)
            if builtin is None or builtin.base_url.rstrip("/") == base_url:
                return platform
        return _SLUG.sub("-", base_url.split("://", 1)[1].lower()).strip("-")[:40]

    async def remove_endpoint(self, endpoint_id: str) -> None:
        if not await self._endpoint_store.delete(endpoint_id):
            raise NotFound(f"no registered endpoint {endpoint_id!r}")
        self._detected.pop(endpoint_id, None)
        self._registered = await self._endpoint_store.list_all()
        self._rebuild()

    async def record_session(self, model_id: str) -> ModelUsage:
        """Count one session and write it now (see `note_session` for the request path)."""
        self.note_session(model_id)
        await self.flush_sessions()
        return self._usage[model_id]

    def note_session(self, model_id: str) -> None:
        """Count one successful generation in memory (visible at once); `flush_sessions` writes it.
        Requests never wait on this write, and a burst of them becomes one upsert per model."""
        now = datetime.now(UTC)
        old = self._usage.get(model_id, ModelUsage())
        self._usage[model_id] = ModelUsage(old.sessions + 1, now)
        count, _ = self._pending_sessions.get(model_id, (0, now))
        self._pending_sessions[model_id] = (count + 1, now)

    async def flush_sessions(self) -> None:
        pending, self._pending_sessions = self._pending_sessions, {}
        for model_id, (count, at) in pending.items():
            try:
                stored = await self._usage_store.record_session(model_id, at, count)
            except Exception:
                log.exception("writing %d session(s) of %s failed; kept for the next flush", count, model_id)
                again, _ = self._pending_sessions.get(model_id, (0, at))
                self._pending_sessions[model_id] = (again + count, at)
                continue
            unflushed, _ = self._pending_sessions.get(model_id, (0, at))
            self._usage[model_id] = ModelUsage(
                stored.sessions + unflushed, self._usage[model_id].last_used_at
            )


def _detected_entry(endpoint: Endpoint, remote: RemoteModel) -> ModelEntry:
    caps = remote.capabilities or Capabilities()
    lowered = remote.id.lower()
    modality: Modality = "embedding" if "embed" in lowered else ("code" if "code" in lowered else "chat")
    image = None
    if endpoint.makes_images and endpoint.image_protocol is not None:
        # Every model of a local image engine (a checkpoint, a served model) makes images.
        modality = "image"
        image = engine_image_capabilities(endpoint.image_protocol)
        caps = Capabilities(streaming=False, reference_images=image.supports_references, input_fidelity=False)
    return ModelEntry(
        id=f"{endpoint.provider_id}/{remote.id}",
        provider_id=endpoint.provider_id,
        upstream=remote.id,
        display_name=remote.id,
        modality=modality,
        capabilities=caps,
        kind=endpoint.kind,
        source="detected",
        input_price=0.0 if endpoint.kind == "local" else None,
        output_price=0.0 if endpoint.kind == "local" else None,
        capabilities_declared=remote.capabilities is not None or image is not None,
        image=image,
    )
