"""Chat Studio's service: conversations as trees, sending, editing, regenerating, navigating.

Persist first: the user's message is stored before any model is called, the assistant message is
created `pending` and produced by a task the service owns (see answer.py), so a client that leaves
loses nothing and can re-attach (`running`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from mmstudio.config import ChatConfig
from mmstudio.domain.chat.agent_tools import AgentTools
from mmstudio.domain.chat.answer import AnswerPlan, AnswerRun
from mmstudio.domain.chat.context import system_prompt, user_parts
from mmstudio.domain.chat.generation import Generation
from mmstudio.domain.chat.knowledge import KnowledgeService
from mmstudio.domain.chat.store import ChatStore
from mmstudio.domain.chat.types import (
    ROUTING_PROFILES,
    Conversation,
    ConversationUpdate,
    Message,
    NewMessage,
    PromptProfile,
    RoutingProfileName,
)
from mmstudio.domain.registry import ModelRegistry
from mmstudio.domain.router import RouteOptions, Router
from mmstudio.errors import InvalidRequest, ModelNotFound, NotFound, StudioError
from mmstudio.providers.base import ChatRequest
from mmstudio.providers.base import Message as WireMessage

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New chat"
CRASHED = "the server stopped before this answer finished"

AGENT_PROMPT = (
    "You can call tools: a calculator (use it for any arithmetic), the current date and time, a "
    "search over the user's earlier conversations, and the user's memories (read them, or add one "
    "when the user asks you to remember something). Call a tool when it helps; then answer."
)


@dataclass(frozen=True)
class RoutingProfile:
    id: RoutingProfileName
    name: str
    description: str
    tools: tuple[str, ...] = ()


ROUTING: dict[str, RoutingProfile] = {
    "direct": RoutingProfile("direct", "Direct", "The selected model answers."),
    "agent": RoutingProfile(
        "agent",
        "Agent",
        "A tool-calling loop: calculator, date and time, conversation search, memories.",
        ("calculator", "current_datetime", "search_conversations", "read_memories", "add_memory"),
    ),
    "tools+data": RoutingProfile(
        "tools+data",
        "Tools + data",
        "Passages from your uploaded documents are given to the model, and the answer cites them.",
    ),
}


@dataclass
class Started:
    """A send (or edit, or regenerate) that has been stored and is being answered."""

    conversation: Conversation
    user_message: Message | None
    assistant_message: Message
    generation: Generation
    created: bool = False


class ChatService:
    def __init__(
        self,
        store: ChatStore,
        router: Router,
        registry: ModelRegistry,
        knowledge: KnowledgeService,
        config: ChatConfig,
    ) -> None:
        self.store = store
        self.router = router
        self.registry = registry
        self.knowledge = knowledge
        self.config = config
        self._running: dict[str, Generation] = {}

    # -- conversations ---------------------------------------------------------------------------

    async def create_conversation(
        self,
        *,
        title: str | None = None,
        model: str | None = None,
        prompt_profile_id: str | None = None,
        routing_profile: str | None = None,
    ) -> Conversation:
        model = self._check_model(model, routing_profile or "direct")
        if prompt_profile_id:
            await self._check_prompt_profile(prompt_profile_id)
        return await self.store.create_conversation(
            title=_clean_title(title) or DEFAULT_TITLE,
            model=model,
            prompt_profile_id=prompt_profile_id or None,
            routing_profile=_routing(routing_profile or "direct"),
        )

    async def update_conversation(self, conversation_id: str, update: ConversationUpdate) -> Conversation:
        current = await self.store.get_conversation(conversation_id)
        if update.title is not None:
            update.title = _clean_title(update.title)
            if not update.title:
                raise InvalidRequest("title cannot be empty", field="title")
        if update.routing_profile is not None:
            update.routing_profile = _routing(update.routing_profile)
        if update.prompt_profile_id:
            await self._check_prompt_profile(update.prompt_profile_id)
        profile = update.routing_profile or current.routing_profile
        if update.model is not None:
            update.model = self._check_model(update.model, profile)
        elif update.routing_profile is not None and not update.clear_model:
            self._check_model(current.model, profile)
        return await self.store.update_conversation(conversation_id, update)

    async def delete_conversation(self, conversation_id: str) -> None:
        await self.store.get_conversation(conversation_id)
        for generation in list(self._running.values()):
            if generation.conversation_id == conversation_id:
                generation.stop()
                await generation.wait()
        await self.store.delete_conversation(conversation_id)

    async def navigate(self, conversation_id: str, message_id: str) -> list[Message]:
        """Make the branch through `message_id` current (down to its newest leaf)."""
        message = await self.store.get_message(message_id)
        if message.conversation_id != conversation_id:
            raise InvalidRequest(f"message {message_id} belongs to another conversation", field="message_id")
        leaf = await self.store.newest_leaf_under(message_id)
        await self.store.set_current_leaf(conversation_id, leaf)
        return await self.store.active_branch(conversation_id)

    async def navigate_sibling(self, conversation_id: str, message_id: str, step: int) -> list[Message]:
        """Make current the branch through the sibling `step` places from `message_id`.

        The page's version arrows; steps past either end stop at the first or last sibling."""
        message = await self.store.get_message(message_id)
        if message.conversation_id != conversation_id:
            raise InvalidRequest(f"message {message_id} belongs to another conversation", field="message_id")
        siblings = await self.store.sibling_ids(message_id)
        index = siblings.index(message_id) + step
        target = siblings[max(0, min(len(siblings) - 1, index))]
        return await self.navigate(conversation_id, target)

    # -- sending ---------------------------------------------------------------------------------

    async def send(
        self,
        content: Any,
        *,
        conversation_id: str | None = None,
        parent_id: str | None = None,
        model: str | None = None,
        prompt_profile_id: str | None = None,
        routing_profile: str | None = None,
        system: str | None = None,
    ) -> Started:
        """Store the user's message (creating the conversation if needed) and start the answer.
        `system` (new conversations only) becomes the conversation's first message."""
        parts = user_parts(content)
        created = False
        path: list[Message] = []  # root → the parent of the new message
        conversation_id, parent_id = conversation_id or None, parent_id or None
        if conversation_id is None and parent_id is not None:
            conversation_id = (await self.store.get_message(parent_id)).conversation_id  # a parent names it
        if conversation_id is None:
            conversation = await self.create_conversation(
                model=model, prompt_profile_id=prompt_profile_id, routing_profile=routing_profile
            )
            created = True
            if system and system.strip():
                root = await self.store.add_message(
                    conversation.id, NewMessage("system", [{"type": "text", "text": system}])
                )
                parent_id, path = root.id, [root]
        else:
            # The parent (default: the current leaf) to check, and the history the model will see.
            conversation, path = await self.store.conversation_with_branch(conversation_id, parent_id)
            if path:
                parent_id = path[-1].id
                self._check_parent(path[-1], conversation.id)
            routing = _routing(routing_profile) if routing_profile else conversation.routing_profile
            chosen = self._check_model(model, routing) if model else None
            # The selection the user just made is the conversation's from now on; a client that sends
            # the same selection with every message costs no write.
            changes = ConversationUpdate(
                model=chosen if chosen != conversation.model else None,
                prompt_profile_id=(
                    prompt_profile_id if prompt_profile_id != conversation.prompt_profile_id else None
                ),
                routing_profile=routing if routing != conversation.routing_profile else None,
            )
            if changes.model or changes.prompt_profile_id or changes.routing_profile:
                conversation = await self.update_conversation(conversation.id, changes)
        ref, profile = await self._answer_settings(conversation, None)  # its model is the one chosen
        question = NewMessage("user", parts, parent_id=parent_id)
        return await self._answer(conversation, path, question, ref, profile, created=created)

    async def edit(self, message_id: str, content: Any, *, model: str | None = None) -> Started:
        """A new version of a user message (a sibling), then its answer."""
        path = await self.store.path_to(message_id)
        original = path[-1]
        if original.role != "user":
            raise InvalidRequest(
                f"message {message_id} is a {original.role} message; only user messages can be edited "
                "(regenerate an answer instead)",
                field="message_id",
            )
        parts = user_parts(content)
        conversation = await self.store.get_conversation(original.conversation_id)
        ref, profile = await self._answer_settings(conversation, model)
        question = NewMessage("user", parts, parent_id=original.parent_id)
        return await self._answer(conversation, path[:-1], question, ref, profile)

    async def regenerate(self, message_id: str, *, model: str | None = None) -> Started:
        """A new answer: a sibling of an assistant message, or another answer to a user message."""
        path = await self.store.path_to(message_id)
        message = path[-1]
        if message.role == "assistant":
            if message.parent_id is None:
                raise InvalidRequest(f"message {message_id} answers nothing", field="message_id")
            path = path[:-1]  # ends with the message it answered
        elif message.role != "user":
            raise InvalidRequest(
                f"message {message_id} is a {message.role} message; regenerate an assistant or user message",
                field="message_id",
            )
        conversation = await self.store.get_conversation(message.conversation_id)
        ref, profile = await self._answer_settings(conversation, model)
        return await self._answer(conversation, path, None, ref, profile)

    def running(self, message_id: str) -> Generation | None:
        return self._running.get(message_id)

    async def stop(self, message_id: str) -> bool:
        """Stop a running answer; it ends `interrupted` with its partial text. False if not running."""
        generation = self._running.get(message_id)
        if generation is None or not generation.stop():
            return False
        await generation.wait()
        return True

    async def recover(self) -> int:
        """At start-up: answers a crash left `pending`/`streaming` become `interrupted`."""
        count = await self.store.interrupt_unfinished(CRASHED)
        if count:
            log.warning("%d unfinished answers from before the restart marked interrupted", count)
        return count

    async def close(self) -> None:
        """Stop every running answer; each is stored `interrupted` before this returns."""
        running = list(self._running.values())
        for generation in running:
            generation.stop()
        for generation in running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(generation.wait(), 10)

    # -- internals -------------------------------------------------------------------------------

    def _check_model(self, model: str | None, routing_profile: str) -> str | None:
        """Resolve a model reference now (unknown, or not a chat model → ModelNotFound listing the
        chat models); the agent needs tools."""
        if not model or not model.strip():
            return None
        resolved = self.registry.resolve(model)
        entry = resolved.entry
        if entry.modality not in ("chat", "code"):
            chat = [v.entry.id for v in self.registry.views() if v.entry.modality in ("chat", "code")]
            raise ModelNotFound(
                model,
                chat,
                f"{resolved.display_name} ({entry.id}) is a {entry.modality} model, not a chat model; "
                f"chat models: {', '.join(chat) or 'none yet'}",
            )
        if routing_profile == "agent" and entry.capabilities_declared and not entry.capabilities.tools:
            tools = [
                v.entry.id
                for v in self.registry.views()
                if v.entry.modality in ("chat", "code") and v.entry.capabilities.tools
            ]
            raise ModelNotFound(
                model,
                tools,
                f"{resolved.display_name} ({entry.id}) cannot call tools, and the agent profile needs a "
                f"model that can; choose a model with tool support ({', '.join(tools[:20]) or 'none yet'}) "
                "or the direct profile",
            )
        return entry.id

    async def _check_prompt_profile(self, profile_id: str) -> None:
        try:
            await self.store.get_prompt_profile(profile_id)
        except NotFound:
            names = ", ".join(p.name for p in await self.store.list_prompt_profiles()) or "none yet"
            raise NotFound(f"unknown prompt profile {profile_id!r}; existing profiles: {names}") from None

    def _check_parent(self, parent: Message, conversation_id: str) -> None:
        if parent.conversation_id != conversation_id:
            raise InvalidRequest(
                f"parent message {parent.id} belongs to another conversation", field="parent_id"
            )
        if parent.role == "user" or (parent.role == "system" and parent.parent_id is not None):
            raise InvalidRequest(
                f"parent message {parent.id} is a user message: reply after an answer, or edit it instead",
                field="parent_id",
            )
        if parent.id in self._running:
            raise InvalidRequest(
                "the answer you reply to is still being written; wait for it or stop it", field="parent_id"
            )

    async def _answer_settings(
        self, conversation: Conversation, model: str | None
    ) -> tuple[str | None, PromptProfile | None]:
        ref = self._check_model(model, conversation.routing_profile) if model else conversation.model
        chosen = self.registry.active_model or self.router.config.default_model
        if ref is None and chosen:
            # The active (or configured default) model is what the user chose by choosing nothing:
            # recorded as the requested model, so an answer from another model shows as a fallback.
            # (With neither, the router's automatic chain picks, tools capability included.)
            ref = self._check_model(chosen, conversation.routing_profile)
        profile = (
            await self.store.get_prompt_profile(conversation.prompt_profile_id)
            if conversation.prompt_profile_id
            else None
        )
        return ref, profile

    async def _answer(
        self,
        conversation: Conversation,
        path: list[Message],
        question: NewMessage | None,
        ref: str | None,
        profile: PromptProfile | None,
        *,
        created: bool = False,
    ) -> Started:
        """Store `question` (under `path[-1]`) and the pending answer to it in one write, or with no
        question a new answer to `path[-1]`; then start producing the answer."""
        pending = NewMessage("assistant", [], status="pending", model_requested=ref)
        user: Message | None = None
        if question is not None:
            user, assistant = await self.store.add_turn(conversation.id, question, pending)
            branch = [*path, user]
        else:
            pending.parent_id = path[-1].id
            assistant = await self.store.add_message(conversation.id, pending)
            branch = path
        plan = await self._plan(conversation, assistant, branch, ref, profile)
        generation = Generation(assistant.id, conversation.id)
        run = AnswerRun(
            plan,
            generation,
            self.store,
            self.router,
            self.config.stream_write_interval_seconds,
            after=self._after_answer,
        )
        self._running[assistant.id] = generation
        generation.task = asyncio.create_task(self._produce(run), name=f"answer-{assistant.id}")
        # What adding the answer changed, without reading the row back.
        conversation = replace(
            conversation,
            current_leaf_id=assistant.id,
            updated_at=max(conversation.updated_at, assistant.created_at),
        )
        return Started(conversation, user, assistant, generation, created)

    async def _produce(self, run: AnswerRun) -> None:
        try:
            await run.run()
        finally:
            self._running.pop(run.plan.message.id, None)
            run.gen.finish()

    async def _plan(
        self,
        conversation: Conversation,
        assistant: Message,
        branch: list[Message],
        ref: str | None,
        profile: PromptProfile | None,
    ) -> AnswerPlan:
        question = branch[-1].text if branch else ""
        sections: list[str | None] = [profile.system_prompt if profile else None]
        if profile is not None and profile.memory:
            memories = await self.knowledge.relevant_memories(question, self.config.memory_items)
            sections.append(self.knowledge.memory_block(memories) if memories else None)
        citations: list[dict[str, Any]] = []
        agent = conversation.routing_profile == "agent"
        if conversation.routing_profile == "tools+data":
            passages = await self.knowledge.retrieve(
                question, conversation_id=conversation.id, limit=self.config.retrieval_chunks
            )
            if passages:
                block, citations = self.knowledge.context_for(passages)
                sections.append(block)
        if agent:
            sections.append(AGENT_PROMPT)
        return AnswerPlan(
            conversation_id=conversation.id,
            title=conversation.title,
            message=assistant,
            branch=branch,
            model=ref,
            system=system_prompt(*sections),
            parameters=dict(profile.parameters) if profile else {},
            agent=agent,
            max_steps=self.config.agent_max_steps,
            citations=citations,
            tools=AgentTools(self.store, self.knowledge, conversation.id) if agent else None,
        )

    async def _after_answer(self, run: AnswerRun) -> None:
        """After the first exchange of a conversation: give it a title."""
        plan = run.plan
        users = [m for m in plan.branch if m.role == "user"]
        if run.status != "complete" or len(users) != 1 or plan.title != DEFAULT_TITLE:
            return
        title = await self._title(users[0].text, run.text, run.model or plan.model)
        # Only over the default title: a name the user gave it while the answer ran stays.
        if await self.store.name_conversation(plan.conversation_id, title, replacing=DEFAULT_TITLE):
            run.gen.emit("title", {"conversationId": plan.conversation_id, "title": title})

    async def _title(self, question: str, answer: str, model: str | None) -> str:
        fallback = _heuristic_title(question)
        if self.config.titles != "model":
            return fallback
        prompt = (
            "Write a short title (at most six words) for a conversation that starts like this. "
            "Reply with the title only, no quotes.\n\n"
            f"User: {question[:1500]}\n\nAssistant: {answer[:1500]}"
        )
        request = ChatRequest(
            model=model or "",
            messages=(WireMessage.text("user", prompt),),
            max_tokens=24,
            temperature=0.2,
        )
        try:
            routed = await self.router.chat(request, RouteOptions(fallbacks=True, route="title"))
        except StudioError as exc:
            log.info("title generation failed (%s); using the first words", exc.message)
            return fallback
        return _clean_title(routed.response.text) or fallback


def _routing(value: str) -> RoutingProfileName:
    if value not in ROUTING_PROFILES:
        raise InvalidRequest(
            f"unknown routing profile {value!r}; allowed: {', '.join(ROUTING_PROFILES)}",
            field="routing_profile",
        )
    return value


_QUOTES = "\"'*#` \u201c\u201d\u2018\u2019"


def _clean_title(raw: str | None) -> str:
    if not raw:
        return ""
    line = next((ln for ln in raw.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(title\s*:\s*)", "", line.strip(), flags=re.IGNORECASE)
    line = line.strip().strip(_QUOTES).rstrip(".").strip()
    return line[:120]


def _heuristic_title(question: str) -> str:
    words = question.split()
    title = " ".join(words[:8])
    if len(words) > 8:
        title += "…"
    return _clean_title(title)[:80] or DEFAULT_TITLE
