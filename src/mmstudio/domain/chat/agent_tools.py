"""The agent profile's built-in tools: calculator, date and time, conversation search, memories."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mmstudio.domain.chat.calculator import evaluate, format_result
from mmstudio.errors import InvalidRequest, StudioError
from mmstudio.providers.base import ToolSpec


class _Searchable(Protocol):
    async def search(self, q: str, *, limit: int = 10) -> Any: ...


class _Memories(Protocol):
    async def add_memory(self, content: str, conversation_id: str | None = None) -> Any: ...

    async def relevant_memories(self, query: str, limit: int | None = None) -> Any: ...

    async def list_memories(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    content: str
    is_error: bool = False


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "calculator",
        "Evaluate an arithmetic expression exactly (+ - * / // % ** ^, parentheses, sqrt, sin, cos, "
        "tan, log, exp, abs, round, floor, ceil, min, max, factorial, pi, e). Use it for any arithmetic.",
        {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "e.g. (17 * 23) / sqrt(2)"}},
            "required": ["expression"],
        },
    ),
    ToolSpec(
        "current_datetime",
        "The current date and time, in UTC or in an IANA time zone such as Europe/Paris.",
        {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA zone name; default UTC"}},
        },
    ),
    ToolSpec(
        "search_conversations",
        "Full-text search over the user's earlier conversations; returns matching snippets.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
        },
    ),
    ToolSpec(
        "read_memories",
        "What the user asked to remember (preferences, facts about them). Optional query to focus.",
        {"type": "object", "properties": {"query": {"type": "string"}}},
    ),
    ToolSpec(
        "add_memory",
        "Remember a short fact or preference the user wants kept for later conversations.",
        {
            "type": "object",
            "properties": {"content": {"type": "string", "description": "one sentence"}},
            "required": ["content"],
        },
    ),
)
TOOL_NAMES = tuple(tool.name for tool in TOOLS)


class AgentTools:
    """Runs the built-in tools for one conversation. Failures become error results for the model,
    never exceptions: the model reads what went wrong and may try again."""

    def __init__(
        self,
        conversations: _Searchable,
        memories: _Memories,
        conversation_id: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._conversations = conversations
        self._memories = memories
        self._conversation_id = conversation_id
        self._now = now
        self._handlers: Mapping[str, Callable[[dict[str, Any]], Awaitable[str]]] = {
            "calculator": self._calculator,
            "current_datetime": self._datetime,
            "search_conversations": self._search,
            "read_memories": self._read_memories,
            "add_memory": self._add_memory,
        }

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        handler = self._handlers.get(name)
        if handler is None:
            return ToolOutcome(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}", True)
        try:
            return ToolOutcome(await handler(arguments))
        except StudioError as exc:
            return ToolOutcome(exc.message, True)

    async def _calculator(self, args: dict[str, Any]) -> str:
        expression = _string(args, "expression")
        return format_result(evaluate(expression))

    async def _datetime(self, args: dict[str, Any]) -> str:
        zone_name = str(args.get("timezone") or "UTC").strip() or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidRequest(
                f"unknown time zone {zone_name!r}; use an IANA name such as UTC or Europe/Paris",
                field="timezone",
            ) from None
        moment = self._now().astimezone(zone)
        return f"{moment.strftime('%A %d %B %Y, %H:%M:%S')} ({zone_name}, ISO {moment.isoformat()})"

    async def _search(self, args: dict[str, Any]) -> str:
        query = _string(args, "query")
        limit = args.get("limit", 5)
        limit = limit if isinstance(limit, int) and 1 <= limit <= 20 else 5
        hits = await self._conversations.search(query, limit=limit)
        if not hits:
            return f"no conversation mentions {query!r}"
        return json.dumps(
            [
                {"conversation": h.title, "conversation_id": h.conversation_id, "snippet": h.snippet}
                for h in hits
            ],
            ensure_ascii=False,
        )

    async def _read_memories(self, args: dict[str, Any]) -> str:
        query = str(args.get("query") or "").strip()
        items = (
            await self._memories.relevant_memories(query) if query else await self._memories.list_memories()
        )
        if not items:
            return "nothing remembered yet"
        return "\n".join(f"- {m.content}" for m in items)

    async def _add_memory(self, args: dict[str, Any]) -> str:
        content = _string(args, "content")
        await self._memories.add_memory(content, self._conversation_id)
        return f"remembered: {content}"


def _string(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"the tool needs a non-empty string argument {name!r}", field=name)
    return value
