"""The health monitor: probes every endpoint in the background and keeps the latest state.

Reading a state is a dict lookup, so requests never wait on a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from mmstudio.domain.types import Endpoint, HealthState
from mmstudio.providers.base import ProbeResult

log = logging.getLogger(__name__)

Prober = Callable[[Endpoint], Awaitable[ProbeResult]]
ChangeHook = Callable[[Endpoint, HealthState, HealthState], Awaitable[None]]


class HealthMonitor:
    def __init__(
        self,
        prober: Prober,
        endpoints: Callable[[], Iterable[Endpoint]],
        interval: float = 30.0,
        on_change: ChangeHook | None = None,
    ) -> None:
        self._prober = prober
        self._endpoints = endpoints
        self.interval = interval
        self._on_change = on_change
        self._states: dict[str, HealthState] = {}
        self._task: asyncio.Task[None] | None = None

    def state(self, endpoint_id: str) -> HealthState:
        return self._states.get(endpoint_id, HealthState())

    def states(self) -> dict[str, HealthState]:
        return dict(self._states)

    def forget(self, endpoint_id: str) -> None:
        self._states.pop(endpoint_id, None)

    async def check(self, endpoint: Endpoint) -> HealthState:
        try:
            result = await self._prober(endpoint)
        except Exception as exc:  # a probe must never take the monitor down
            log.warning("health probe of %s failed unexpectedly: %s", endpoint.id, type(exc).__name__)
            result = ProbeResult(ok=False, latency_ms=0.0, error=f"probe failed: {type(exc).__name__}")
        new = HealthState(
            status="healthy" if result.ok else "offline",
            latency_ms=result.latency_ms if result.ok else None,
            last_error=result.error,
            last_checked=datetime.now(UTC),
            version=result.version,
        )
        old = self._states.get(endpoint.id, HealthState())
        self._states[endpoint.id] = new
        if self._on_change is not None and old.status != new.status:
            try:
                await self._on_change(endpoint, old, new)
            except Exception:
                log.exception("health change hook failed for %s", endpoint.id)
        return new

    async def check_all(self) -> dict[str, HealthState]:
        endpoints = [e for e in self._endpoints() if e.enabled]
        states = await asyncio.gather(*(self.check(e) for e in endpoints))
        return {e.id: s for e, s in zip(endpoints, states, strict=True)}

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="mmstudio-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:
                log.exception("health check round failed")
            await asyncio.sleep(self.interval)
