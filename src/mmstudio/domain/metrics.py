"""Request metrics: buffered in memory, written in batches off the request path.

PLACEHOLDER INTERFACE — the implementation is being written (issue 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from mmstudio.config import MetricsConfig
from mmstudio.domain.types import RequestRecord


class MetricsStore(Protocol):
    async def insert_many(self, records: Sequence[RequestRecord]) -> None: ...

    async def delete_older_than(self, cutoff: datetime) -> int: ...


class MetricsRecorder:
    def __init__(self, store: Any, config: MetricsConfig) -> None:
        self.store = store
        self.config = config

    def record(self, record: RequestRecord) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
