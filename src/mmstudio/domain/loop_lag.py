"""How late the event loop runs: a timer that should fire every `interval` seconds, and how much later
than that it actually fired, as a Prometheus histogram (`mmstudio_event_loop_lag_seconds`).

Everything a process serves (requests, streams, the job worker's polls and heartbeats) runs on one
event loop, so a lag is time in which nothing was served: a blocking call on the loop, a garbage
collection, the GIL held by a thread, or the process not being scheduled at all. An operator alerts on
the rate of the slow buckets; `bench/jobs.py` reads the same histogram to check that running 1,000
jobs never stops the loop for more than 20 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLagMonitor:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        interval_seconds: float = 0.01,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.interval = interval_seconds
        self._clock = clock
        self._ticked = asyncio.Event()  # set (and replaced) at each observation
        self.lag = Histogram(
            "mmstudio_event_loop_lag_seconds",
            f"How much later than asked a {interval_seconds * 1000:g} ms timer of the event loop fired: "
            "time in which the process served nothing.",
            buckets=BUCKETS,
            registry=registry,
        )

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            asked = self._clock() + self.interval
            await asyncio.sleep(self.interval)
            self.lag.observe(max(0.0, self._clock() - asked))
            self._ticked.set()
            self._ticked = asyncio.Event()

    async def ticked(self) -> None:
        """Until the next observation is made."""
        await self._ticked.wait()
