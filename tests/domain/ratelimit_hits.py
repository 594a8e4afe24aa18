"""Helper process for the shared-limit test: N concurrent hits on one key through Redis.

    python tests/domain/ratelimit_hits.py REDIS_URL RPM HITS

Prints "ready" once connected, reads a start time (epoch seconds) from stdin so several processes
fire together, then prints the number of hits admitted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from mmstudio.config import Limits, RateLimit
from mmstudio.domain.ratelimit import RateLimiter, Subject
from mmstudio.errors import RateLimited


async def admitted(url: str, rpm: int, hits: int) -> int:
    limiter = RateLimiter(Limits(per_key=RateLimit(rpm=rpm)), url)
    subject = limiter.for_key("shared")
    assert subject is not None
    try:
        # Open the pool's connections first, so the hits race each other rather than connection set-up.
        warm = Subject("key", f"warm-up-{os.getpid()}", RateLimit(rpm=1000))
        await asyncio.gather(*(limiter.hit(warm) for _ in range(100)))
        print("ready", flush=True)
        # The line is a wall-clock start time: the processes fire at about the same instant.
        start = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start - time.time()))
        results = await asyncio.gather(*(limiter.hit(subject) for _ in range(hits)), return_exceptions=True)
    finally:
        await limiter.close()
    unexpected = [r for r in results if r is not None and not isinstance(r, RateLimited)]
    if unexpected:
        raise unexpected[0]
    return sum(r is None for r in results)


if __name__ == "__main__":
    url, rpm, hits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(asyncio.run(admitted(url, rpm, hits)), flush=True)
