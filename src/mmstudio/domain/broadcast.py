"""The events of one piece of work in flight (a compare run, a code generation), for any number of
listeners, each from the very start however late it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

E = TypeVar("E")


class Broadcast(Generic[E]):
    """Publish events; `subscribe()` replays the history, then follows live until `is_last(event)`."""

    def __init__(self, is_last: Callable[[E], bool]) -> None:
        self._is_last = is_last
        self.history: list[E] = []
        self._listeners: set[asyncio.Queue[E]] = set()

    def publish(self, event: E) -> None:
        self.history.append(event)
        for queue in self._listeners:
            queue.put_nowait(event)

    def subscribe(self) -> AsyncIterator[E]:
        """Replay and subscription happen here, at once (no await in between), so no event is lost
        or seen twice however late the iteration begins."""
        queue: asyncio.Queue[E] = asyncio.Queue()
        replay = list(self.history)
        self._listeners.add(queue)
        return self._follow(queue, replay)

    async def _follow(self, queue: asyncio.Queue[E], replay: list[E]) -> AsyncIterator[E]:
        try:
            for event in replay:
                yield event
                if self._is_last(event):
                    return
            while True:
                event = await queue.get()
                yield event
                if self._is_last(event):
                    return
        finally:
            self._listeners.discard(queue)
