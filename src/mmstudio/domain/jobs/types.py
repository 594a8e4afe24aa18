"""Jobs as plain domain objects: states, what may follow what, and one job's row as data.

A job is persisted before any upstream call. Its `upstream_handle` (a request id, an operation name, a
prompt id) is stored in the same write that records the submission, so a worker that picks up a job
another worker lost resumes polling that handle and never submits (and bills) it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

JobState = Literal["queued", "submitting", "running", "downloading", "complete", "failed", "cancelled"]

STATES: tuple[JobState, ...] = (
    "queued",
    "submitting",
    "running",
    "downloading",
    "complete",
    "failed",
    "cancelled",
)
TERMINAL: frozenset[JobState] = frozenset({"complete", "failed", "cancelled"})
ACTIVE: frozenset[JobState] = frozenset({"submitting", "running", "downloading"})

# What may follow each state. `submitting -> queued` is a retry before the upstream accepted anything,
# `submitting -> submitting` stores the handle a create is about to be made under (`JobContext.intend`);
# `downloading -> running` goes back to polling when a result must be fetched again.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    "queued": frozenset({"submitting", "failed", "cancelled"}),
    "submitting": frozenset({"submitting", "queued", "running", "failed", "cancelled"}),
    "running": frozenset({"running", "downloading", "complete", "failed", "cancelled"}),
    "downloading": frozenset({"running", "complete", "failed", "cancelled"}),
    "complete": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

DEPENDENCY_FAILED = "the {kind} it waits for {state}: {reason}"


def can_move(source: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[source]


@dataclass(frozen=True, slots=True)
class Job:
    """One job's row. `request` is what the caller asked for, `recipe` what will be stored with the
    outputs, `plan` the models in order, `attempts` each try with its outcome. `progress` is 0..100;
    `progress_estimated` says it comes from elapsed time, not from the upstream."""

    id: str
    kind: str
    state: JobState
    request: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    recipe: Mapping[str, Any] | None = None
    plan: tuple[str, ...] = ()
    attempts: tuple[Mapping[str, Any], ...] = ()
    provider: str | None = None
    model: str | None = None
    upstream_handle: str | None = None
    submitted_at: datetime | None = None
    progress: float | None = None
    progress_estimated: bool = False
    depends_on: str | None = None
    priority: int = 0
    idempotency_key: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    attempt_count: int = 0
    cancel_requested: bool = False
    error_kind: str | None = None
    error_message: str | None = None
    output_ids: tuple[str, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def reached_upstream(self) -> bool:
        """The upstream accepted it: from now on it is resumed by its handle, never submitted again."""
        return self.upstream_handle is not None


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[Job]
    total: int
    limit: int
    offset: int
