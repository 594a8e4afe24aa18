"""The video models of local engines (ComfyUI): one model per built-in video workflow, on every endpoint of
the registry that speaks an engine with video workflows, so a user with a GPU at home needs no cloud.

A workflow's model is usable while its endpoint answers and the engine has what the workflow needs (its
node classes and model files); otherwise it is listed with the reason: the engine is offline, or the files
to download and where. What an engine can run is asked at most every `ttl_s` seconds (a check is one small
request per node class), and at once after the endpoint's health changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mmstudio.domain.registry import ModelRegistry
from mmstudio.domain.types import Endpoint
from mmstudio.errors import StudioError
from mmstudio.providers.media.video_base import VideoAdapter, VideoCapabilities

log = logging.getLogger(__name__)


@runtime_checkable
class WorkflowChecker(Protocol):
    async def check_workflows(self) -> dict[str, list[str]]:
        """Per model, what the engine lacks to run its workflow (empty: it can run)."""
        ...


@dataclass(frozen=True, slots=True)
class LocalVideoModel:
    """A workflow on one endpoint: `provider` is the endpoint's provider id, `name` the workflow model."""

    provider: str
    name: str
    display_name: str
    capabilities: VideoCapabilities
    usable: bool
    reason: str | None


@dataclass
class _Checked:
    at: float
    health: str
    problems: Mapping[str, list[str]] | None  # None: the check itself failed (see `error`)
    error: str | None = None


class LocalVideoEngines:
    """`flavors` maps an engine's image protocol (``comfyui``) to its video models and their display names;
    `adapter_for(endpoint)` builds the endpoint's video adapter (one per endpoint, kept)."""

    def __init__(
        self,
        registry: ModelRegistry,
        flavors: Mapping[str, tuple[Mapping[str, VideoCapabilities], Mapping[str, str]]],
        adapter_for: Callable[[Endpoint], VideoAdapter],
        *,
        ttl_s: float = 30.0,
        check_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.flavors = dict(flavors)
        self._adapter_for = adapter_for
        self.ttl_s = ttl_s
        self.check_timeout_s = check_timeout_s  # a listing never waits longer on an engine that hangs
        self._clock = clock
        self._adapters: dict[str, VideoAdapter] = {}
        self._checked: dict[str, _Checked] = {}
        self._lock = asyncio.Lock()

    def endpoints(self) -> list[Endpoint]:
        """The enabled local endpoints whose engine has video workflows, in the registry's order."""
        return [
            e
            for e in self.registry.endpoints()
            if e.enabled and e.kind == "local" and e.image_protocol in self.flavors
        ]

    def adapter(self, provider: str) -> VideoAdapter | None:
        endpoint = next((e for e in self.endpoints() if e.provider_id == provider), None)
        if endpoint is None:
            return None
        adapter = self._adapters.get(endpoint.id)
        if adapter is None:
            adapter = self._adapters[endpoint.id] = self._adapter_for(endpoint)
        return adapter

    async def refresh(self, *, force: bool = False) -> None:
        """Ask each endpoint what it can run, unless it was asked less than `ttl_s` ago in the same health."""
        async with self._lock:
            await asyncio.gather(*(self._check(e, force) for e in self.endpoints()))

    async def _check(self, endpoint: Endpoint, force: bool) -> None:
        health = self.registry.health.state(endpoint.id).status
        last = self._checked.get(endpoint.id)
        fresh = last is not None and self._clock() - last.at < self.ttl_s and last.health == health
        if (fresh and not force) or health == "offline":  # an offline engine is not asked: it is offline
            return
        adapter = self.adapter(endpoint.provider_id)
        if adapter is None or not isinstance(adapter, WorkflowChecker):
            return
        try:
            problems = await asyncio.wait_for(adapter.check_workflows(), self.check_timeout_s)
        except StudioError as exc:
            self._checked[endpoint.id] = _Checked(self._clock(), health, None, exc.message)
            return
        except TimeoutError:
            error = f"it did not answer within {self.check_timeout_s:g} s"
            self._checked[endpoint.id] = _Checked(self._clock(), health, None, error)
            return
        self._checked[endpoint.id] = _Checked(self._clock(), health, problems)

    def models(self) -> list[LocalVideoModel]:
        """Every local video model with whether it is usable now (as of the last `refresh`)."""
        found: list[LocalVideoModel] = []
        for endpoint in self.endpoints():
            assert endpoint.image_protocol is not None
            table, names = self.flavors[endpoint.image_protocol]
            checked = self._checked.get(endpoint.id)
            health = self.registry.health.state(endpoint.id)
            for name, caps in table.items():
                reason = _reason(endpoint, checked, health.status, health.last_error, name)
                found.append(
                    LocalVideoModel(
                        provider=endpoint.provider_id,
                        name=name,
                        display_name=names.get(name, name),
                        capabilities=caps,
                        usable=reason is None,
                        reason=reason,
                    )
                )
        return found

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            close = getattr(adapter, "aclose", None)
            if close is not None:
                await close()
        self._adapters.clear()


def _reason(
    endpoint: Endpoint, checked: _Checked | None, health: str, last_error: str | None, name: str
) -> str | None:
    where = f"{endpoint.display_name} at {endpoint.base_url}"
    if health == "offline":  # the health check's error names the engine and its address already
        return f"{last_error or where + ' does not answer'}: start it"
    if checked is None:
        return f"{where} has not been asked yet which video workflows it can run"
    if checked.problems is None:
        return f"{where} could not be asked which video workflows it can run: {checked.error}"
    missing = checked.problems.get(name)
    if missing is None:
        return f"{where} was not asked about {name}"
    if missing:
        return f"{where} needs {'; '.join(missing)} to run this workflow"
    return None
