"""Chat Studio's domain objects: conversations, messages and their parts, profiles, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
MessageStatus = Literal["pending", "streaming", "complete", "error", "interrupted"]
RoutingProfileName = Literal["direct", "agent", "tools+data"]

ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
STATUSES: tuple[MessageStatus, ...] = ("pending", "streaming", "complete", "error", "interrupted")
FINAL_STATUSES: frozenset[str] = frozenset({"complete", "error", "interrupted"})
ROUTING_PROFILES: tuple[RoutingProfileName, ...] = ("direct", "agent", "tools+data")

# A message's content is a list of parts, stored as JSON objects with a "type":
#   {"type": "text", "text": str}
#   {"type": "image", "media_type": str, "data": base64 str} or {"type": "image", "url": str}
#   {"type": "tool_call", "id": str, "name": str, "arguments": dict}
#   {"type": "tool_result", "tool_call_id": str, "name": str, "content": str, "is_error": bool}
#   {"type": "citations", "items": [{"n": int, "document_id", "filename", "page", "chunk", "snippet"}]}
Part = dict[str, Any]
PART_TYPES = ("text", "image", "tool_call", "tool_result", "citations")


def text_of(parts: list[Part]) -> str:
    """The plain text of a message: its text parts joined (what search and titles see)."""
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


@dataclass
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: Role
    parts: list[Part]
    status: MessageStatus
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    model_requested: str | None = None
    model: str | None = None  # the model that actually produced it (may be a fallback)
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: list[dict[str, Any]] | None = None
    # Filled when a branch is read: how many siblings (same parent, including this one) and which
    # one this is (1-based, oldest first).
    sibling_count: int = 1
    sibling_index: int = 1

    @property
    def text(self) -> str:
        return text_of(self.parts)


@dataclass
class Conversation:
    id: str
    title: str
    model: str | None
    prompt_profile_id: str | None
    routing_profile: RoutingProfileName
    pinned: bool
    archived: bool
    current_leaf_id: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int | None = None  # filled by listings


@dataclass
class ConversationPage:
    items: list[Conversation]
    total: int
    limit: int
    offset: int


@dataclass
class PromptProfile:
    id: str
    name: str
    system_prompt: str
    parameters: dict[str, Any]  # temperature, top_p, max_tokens
    memory: bool
    created_at: datetime
    updated_at: datetime


@dataclass
class MessageMetric:
    """What one finished assistant message cost and how it went (one `chat_metrics` row)."""

    message_id: str
    conversation_id: str
    model: str | None
    provider: str | None
    outcome: str
    fallback: bool
    attempts: int
    latency_ms: float | None
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    tokens_per_second: float | None
    created_at: datetime


@dataclass
class ModelChatStats:
    model: str
    messages: int
    errors: int
    fallbacks: int
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    avg_ttft_ms: float | None
    avg_tokens_per_second: float | None
    input_tokens: int
    output_tokens: int


@dataclass
class ConversationUpdate:
    """Fields a PATCH may change; `None` means unchanged (use `clear_*` to set a field to null)."""

    title: str | None = None
    model: str | None = None
    clear_model: bool = False
    prompt_profile_id: str | None = None
    clear_prompt_profile: bool = False
    routing_profile: RoutingProfileName | None = None
    pinned: bool | None = None
    archived: bool | None = None


@dataclass
class MessageProgress:
    """A partial update of an assistant message while it streams or when it ends."""

    parts: list[Part] | None = None
    status: MessageStatus | None = None
    error: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: list[dict[str, Any]] | None = None


@dataclass
class NewMessage:
    role: Role
    parts: list[Part]
    status: MessageStatus = "complete"
    parent_id: str | None = None
    model_requested: str | None = None
    id: str | None = None  # given by importers; generated otherwise
    created_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # model, provider, usage… (imports)


@dataclass
class SearchHit:
    conversation_id: str
    message_id: str | None
    title: str
    snippet: str
