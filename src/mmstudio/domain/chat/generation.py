"""A running answer: its events, replayable by any number of listeners, independent of any client.

The task producing an assistant message belongs to the service, not to the HTTP response: a browser
that disconnects stops listening, not generating. A listener that (re)attaches gets every event from
the start, so it can rebuild the message exactly, then follows live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One server-sent event: `name` is the SSE event, `data` its JSON payload."""

    name: str
    data: dict[str, Any]


class Generation:
    """The events of one assistant message being produced."""

    def __init__(self, message_id: str, conversation_id: str) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.events: list[ChatEvent] = []
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self.stop_requested = False
        self._wake = asyncio.Event()

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.append(ChatEvent(name, data))
        self._notify()

    def finish(self) -> None:
        self.done = True
        self._notify()

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def follow(self, start: int = 0) -> AsyncIterator[ChatEvent]:
        """Every event from `start`, then new ones as they come, until the generation is done."""
        index = start
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.done:
                return
            await self._wake.wait()

    async def wait(self) -> None:
        """Until the generation has finished (whatever the outcome)."""
        async for _ in self.follow(len(self.events)):
            pass

    def stop(self) -> bool:
        """Ask the producer to stop; the message ends `interrupted` with its partial text."""
        if self.done or self.task is None:
            return False
        self.stop_requested = True
        self.task.cancel()
        return True
