"""Circuit breaking per model: after N consecutive failures a model cools down, then one probe
request decides whether it is back.

    closed ──N failures──▶ open ──cooldown passes──▶ half-open ──probe ok──▶ closed
                            ▲                           │
                            └──────probe failed─────────┘

State lives in this process (each `mmstudio serve` process learns on its own; a probe costs one
request per process and cooldown, which keeps the shared state out of the request path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


@dataclass(frozen=True, slots=True)
class BreakerView:
    state: BreakerState
    failures: int
    retry_in: float | None  # seconds until a probe is allowed (open only)


class CircuitBreaker:
    def __init__(
        self, failures: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def view(self, model_id: str) -> BreakerView:
        circuit = self._circuits.get(model_id)
        if circuit is None or circuit.opened_at is None:
            return BreakerView("closed", circuit.failures if circuit else 0, None)
        left = circuit.opened_at + self.cooldown - self._clock()
        if left > 0:
            return BreakerView("open", circuit.failures, left)
        return BreakerView("half_open", circuit.failures, None)

    def available(self, model_id: str) -> bool:
        """Whether a request may be sent now, without claiming the probe (for planning)."""
        view = self.view(model_id)
        if view.state == "half_open":
            return not self._circuits[model_id].probing
        return view.state == "closed"

    def acquire(self, model_id: str) -> bool:
        """Claim the right to send one request now. In half-open state only one caller (the probe) gets
        it until `success`, `failure` or `release` is called."""
        view = self.view(model_id)
        if view.state == "closed":
            return True
        if view.state == "open":
            return False
        circuit = self._circuits[model_id]
        if circuit.probing:
            return False
        circuit.probing = True
        return True

    def success(self, model_id: str) -> None:
        self._circuits.pop(model_id, None)

    def failure(self, model_id: str) -> None:
        circuit = self._circuits.setdefault(model_id, _Circuit())
        circuit.failures += 1
        if circuit.probing or circuit.failures >= self.threshold:
            circuit.opened_at = self._clock()
        circuit.probing = False

    def release(self, model_id: str) -> None:
        """The request ended without a verdict (cancelled, or failed for a reason that says nothing
        about the model's health): let the next caller probe."""
        circuit = self._circuits.get(model_id)
        if circuit is not None:
            circuit.probing = False
