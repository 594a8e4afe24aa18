"""The job engine seam: how a created job reaches a worker when a queue (procrastinate on PostgreSQL)
carries job ids, and what a worker answers for one id it was handed.

The `jobs` row stays the only truth (state, lease, upstream handle, outputs); a queue only carries ids.
Without a queue (SQLite, the `table` engine) workers find jobs by claiming rows, and nothing is enqueued.
"""

from __future__ import annotations

from typing import Literal, Protocol

from mmstudio.domain.jobs.types import Job

# What `JobWorker.run_id` did with the id a queue handed it:
# - `ran`: claimed and run to its end here (or until its lease was lost);
# - `ended`: the job had already ended (or does not exist): nothing to do;
# - `elsewhere`: another worker holds a live lease on it: that worker finishes it;
# - `waiting`: not claimable yet (its dependency is not complete, or its provider is at its cap here):
#   the queue hands it over again a little later;
# - `stopped`: this worker is shutting down; the lease went back: the queue hands it over again at once.
RunOutcome = Literal["ran", "ended", "elsewhere", "waiting", "stopped"]


class JobQueue(Protocol):
    async def enqueue(self, job: Job) -> None:
        """Hand `job` (already stored) to the workers; enqueuing one job twice queues it once."""
        ...
