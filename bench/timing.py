"""Timing an async call the way the database benchmarks report it: medians of wall and CPU time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

Timing = tuple[float, float]  # medians in ms: wall time, and CPU time of the whole process


async def timed(call: Callable[[], Awaitable[Any]], repeats: int, warmup: int = 3) -> Timing:
    """Medians of `repeats` calls after `warmup`. The CPU time counts the runner's threads too, and
    is steadier than the wall time on a busy machine."""
    for _ in range(warmup):
        await call()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        await call()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)
