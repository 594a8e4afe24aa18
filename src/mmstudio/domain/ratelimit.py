"""Rate limits per gateway key and per model: requests and tokens per minute.

PLACEHOLDER INTERFACE — the implementation is being written (issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mmstudio.config import Limits, RateLimit

SubjectKind = Literal["key", "model", "user"]


@dataclass(frozen=True, slots=True)
class Subject:
    """Who or what a limit applies to: a gateway key, a model, or a studio user."""

    kind: SubjectKind
    id: str
    limit: RateLimit


class RateLimiter:
    """Moving-window limits, exact under concurrency; shared through Redis when a URL is given."""

    def __init__(self, limits: Limits, redis_url: str | None = None) -> None:
        self.limits = limits
        self.redis_url = redis_url

    def for_key(self, key_id: str, override: RateLimit | None = None) -> Subject | None:
        raise NotImplementedError

    def for_model(self, model_id: str) -> Subject | None:
        raise NotImplementedError

    async def hit(self, subject: Subject) -> None:
        raise NotImplementedError

    async def add_tokens(self, subject: Subject, tokens: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
