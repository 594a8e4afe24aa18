"""What Chat Studio needs from storage: conversations, message trees, prompt profiles, chat metrics.

`mmstudio.storage.chat_repo.ChatRepository` implements it on SQLAlchemy (SQLite or PostgreSQL).
Unknown ids raise `NotFound` with a message naming the id; wrong input raises `InvalidRequest`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from mmstudio.domain.chat.types import (
    Conversation,
    ConversationPage,
    ConversationUpdate,
    Message,
    MessageMetric,
    MessageProgress,
    ModelChatStats,
    NewMessage,
    PromptProfile,
    RoutingProfileName,
    SearchHit,
)


class ChatStore(Protocol):
    # -- conversations ---------------------------------------------------------------------------

    async def create_conversation(
        self,
        *,
        title: str = "New chat",
        model: str | None = None,
        prompt_profile_id: str | None = None,
        routing_profile: RoutingProfileName = "direct",
        id: str | None = None,
        created_at: datetime | None = None,
    ) -> Conversation: ...

    async def get_conversation(self, conversation_id: str) -> Conversation: ...

    async def conversation_with_branch(
        self, conversation_id: str, leaf_id: str | None = None
    ) -> tuple[Conversation, list[Message]]:
        """The conversation and root → `leaf_id` (None: its current leaf; none yet: empty) as `path_to`
        gives it, in one read. The leaf may be in another conversation: the caller checks."""
        ...

    async def list_conversations(
        self, *, q: str | None = None, limit: int = 50, offset: int = 0, archived: bool = False
    ) -> ConversationPage:
        """Pinned first, then most recently updated; `q` searches titles and message text (full-text,
        every word must match, prefixes allowed); `archived` lists the archived ones instead."""
        ...

    async def update_conversation(self, conversation_id: str, update: ConversationUpdate) -> Conversation: ...

    async def name_conversation(self, conversation_id: str, title: str, *, replacing: str) -> bool:
        """Set the title if it is still `replacing` (a title the user gave it meanwhile stays); bumps
        updated_at. True if it changed."""
        ...

    async def delete_conversation(self, conversation_id: str) -> None: ...

    async def set_current_leaf(self, conversation_id: str, message_id: str) -> None:
        """Make the branch ending at `message_id` the active one (the message must belong to it)."""
        ...

    # -- messages --------------------------------------------------------------------------------

    async def add_message(
        self, conversation_id: str, message: NewMessage, *, make_current: bool = True
    ) -> Message:
        """Insert a message under `message.parent_id` (None: a root). A parent from another
        conversation is an `InvalidRequest`; an unknown parent is `NotFound`. With `make_current`
        the conversation's current leaf becomes this message. Bumps the conversation's updated_at."""
        ...

    async def add_turn(
        self, conversation_id: str, question: NewMessage, answer: NewMessage
    ) -> tuple[Message, Message]:
        """`question` as `add_message` adds it, and `answer` under it (its parent_id is set to the
        question's), in one transaction; the answer becomes the current leaf."""
        ...

    async def get_message(self, message_id: str) -> Message: ...

    async def update_message(self, message_id: str, progress: MessageProgress) -> None:
        """Write the fields that are set (one UPDATE; called while streaming, so it must be cheap).
        Search sees a message's text as it was added until a write ends it (any status but
        `pending`/`streaming`): partial answers are not re-indexed on every streaming write."""
        ...

    async def finish_message(self, message_id: str, progress: MessageProgress, metric: MessageMetric) -> None:
        """An answer's last write: `update_message` and `add_metric` in one transaction."""
        ...

    async def path_to(self, message_id: str) -> list[Message]:
        """Root → `message_id`, each with its sibling count and 1-based position among siblings."""
        ...

    async def active_branch(self, conversation_id: str) -> list[Message]:
        """Root → current leaf with sibling counts and positions; empty for a new conversation."""
        ...

    async def all_messages(self, conversation_id: str) -> list[Message]:
        """Every message of every branch, oldest first, with sibling counts and positions."""
        ...

    async def newest_leaf_under(self, message_id: str) -> str:
        """The leaf reached from `message_id` by always taking the newest child (itself if none)."""
        ...

    async def sibling_ids(self, message_id: str) -> list[str]:
        """`message_id` and its siblings (same parent), oldest first. NotFound when unknown."""
        ...

    async def interrupt_unfinished(self, reason: str) -> int:
        """Mark every `pending`/`streaming` message `interrupted` with `reason` as its error (their
        partial text stays, and search sees it); returns how many. Run at start-up, after a crash."""
        ...

    async def search(self, q: str, *, limit: int = 10) -> list[SearchHit]:
        """Messages (and titles) matching `q`, best first, with a short snippet."""
        ...

    # -- prompt profiles -------------------------------------------------------------------------

    async def create_prompt_profile(
        self, *, name: str, system_prompt: str, parameters: dict[str, Any], memory: bool
    ) -> PromptProfile: ...

    async def list_prompt_profiles(self) -> list[PromptProfile]: ...

    async def get_prompt_profile(self, profile_id: str) -> PromptProfile: ...

    async def update_prompt_profile(
        self, profile_id: str, *, name: str, system_prompt: str, parameters: dict[str, Any], memory: bool
    ) -> PromptProfile: ...

    async def delete_prompt_profile(self, profile_id: str) -> None: ...

    # -- metrics ---------------------------------------------------------------------------------

    async def add_metric(self, metric: MessageMetric) -> None: ...

    async def metrics_by_model(self, *, since: datetime | None = None) -> list[ModelChatStats]: ...

    async def recent_metrics(self, *, limit: int = 100) -> Sequence[MessageMetric]: ...
