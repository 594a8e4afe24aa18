"""The event-loop lag histogram: a loop blocked by a synchronous call shows in the slow buckets, an
idle loop does not."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from mmstudio.domain.loop_lag import LoopLagMonitor


def _counts(registry: CollectorRegistry) -> dict[str, float]:
    """Observations per `le` bucket (cumulative), and the total as "count"."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "mmstudio_event_loop_lag_seconds_bucket":
                out[sample.labels["le"]] = sample.value
            elif sample.name == "mmstudio_event_loop_lag_seconds_count":
                out["count"] = sample.value
    return out


async def test_a_blocked_loop_lands_in_the_slow_buckets() -> None:
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(registry, interval_seconds=0.005)
    task = asyncio.create_task(monitor.run())
    try:
        for _ in range(3):
            await monitor.ticked()
        before = _counts(registry)
        time.sleep(0.12)  # noqa: ASYNC251 - the point: a blocking call on the loop
        for _ in range(2):
            await monitor.ticked()
        after = _counts(registry)
        assert after["count"] == before["count"] + 2
        slow = (after["count"] - after["0.1"]) - (before["count"] - before["0.1"])
        assert slow == 1  # the one tick the block delayed, by more than 100 ms
        assert after["+Inf"] == after["count"]
    finally:
        task.cancel()


def test_the_histogram_says_what_it_measures() -> None:
    registry = CollectorRegistry()
    LoopLagMonitor(registry, interval_seconds=0.01)
    text = "\n".join(f.documentation for f in registry.collect())
    assert "10 ms timer" in text
