"""Gateway keys: off by default; required on /v1, /api and /metrics once any key exists.

PLACEHOLDER INTERFACE — the implementation is being written (issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmstudio.config import RateLimit


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a gateway key identifies."""

    key_id: str
    name: str
    admin: bool
    limit: RateLimit | None = None


class GatewayKeys:
    def __init__(self, store: Any, env_keys: tuple[str, ...] = ()) -> None:
        self.store = store
        self.env_keys = env_keys

    async def load(self) -> None:
        raise NotImplementedError

    async def authenticate(self, raw: str | None) -> Principal | None:
        raise NotImplementedError
