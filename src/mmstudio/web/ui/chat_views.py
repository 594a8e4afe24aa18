"""Chat Studio's page fragments (under /api/ui/chat): the conversation list, a conversation's active
branch with its toolbar, one message, and the tree as a picture.

Sending, editing, regenerating, stopping and navigating go through the Chat Studio JSON API
(`/api/chat/ui/...`); these routes only render what is stored, so a reload shows exactly what the
database holds, answers still being written included (the page re-attaches to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from mmstudio.domain.chat.service import ROUTING
from mmstudio.domain.chat.types import Conversation, Message
from mmstudio.web.bodies import MAX_OFFSET
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import chat_views, grouped
from mmstudio.web.ui.templating import render

router = APIRouter(prefix="/api/ui/chat", include_in_schema=False)

PAGE_SIZE = 50


@dataclass(frozen=True)
class MessageView:
    """A message with what the page shows beside it."""

    message: Message
    model_name: str | None
    requested_name: str | None
    fallback: bool
    tokens_per_second: float | None
    running: bool

    @property
    def id(self) -> str:
        return self.message.id


def _name(studio: Any, model_id: str | None) -> str | None:
    if not model_id:
        return None
    try:
        return str(studio.registry.resolve(model_id).display_name)
    except Exception:  # a model that is gone keeps its id as its name
        return model_id


def tokens_per_second(message: Message) -> float | None:
    if not message.output_tokens or message.latency_ms is None:
        return None
    generating_ms = message.latency_ms - (message.ttft_ms or 0.0)
    if generating_ms <= 0:
        return None
    return round(message.output_tokens / (generating_ms / 1000), 1)


def message_view(studio: Any, message: Message, names: dict[str | None, str | None]) -> MessageView:
    def name(model_id: str | None) -> str | None:
        if model_id not in names:
            names[model_id] = _name(studio, model_id)
        return names[model_id]

    requested = message.model_requested
    fallback = bool(message.model and requested and message.model != _resolved_id(studio, requested))
    return MessageView(
        message=message,
        model_name=name(message.model),
        requested_name=name(requested) if fallback else None,
        fallback=fallback,
        tokens_per_second=tokens_per_second(message),
        running=studio.conversations.running(message.id) is not None,
    )


def _resolved_id(studio: Any, ref: str) -> str:
    try:
        return str(studio.registry.resolve(ref).entry.id)
    except Exception:
        return ref


def _choices(studio: Any) -> dict[str, Any]:
    return {
        "model_groups": grouped(chat_views(studio)),
        "routing_profiles": list(ROUTING.values()),
    }


@router.get("/conversations", response_class=HTMLResponse)
async def conversations(
    request: Request,
    studio: StudioDep,
    q: str | None = Query(default=None, max_length=500),
    archived: bool = False,
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    current: str | None = Query(default=None, max_length=100),
) -> HTMLResponse:
    query = (q or "").strip() or None
    page = await studio.conversations.store.list_conversations(
        q=query, limit=PAGE_SIZE, offset=offset, archived=archived
    )
    return render(
        request,
        "partials/chat_conversations.html",
        page=page,
        q=query or "",
        archived=archived,
        current=current,
        more=page.offset + len(page.items) < page.total,
        next_offset=page.offset + len(page.items),
    )


async def _conversation(request: Request, studio: Any, conversation: Conversation | None) -> HTMLResponse:
    messages: list[Message] = []
    if conversation is not None:
        messages = await studio.conversations.store.active_branch(conversation.id)
    names: dict[str | None, str | None] = {}
    views = [message_view(studio, m, names) for m in messages if m.role != "system"]
    system = next((m for m in messages if m.role == "system"), None)
    profiles = await studio.conversations.store.list_prompt_profiles()
    return render(
        request,
        "partials/chat_conversation.html",
        conversation=conversation,
        messages=views,
        system=system,
        prompt_profiles=profiles,
        selected_model=conversation.model if conversation else None,
        default_model=studio.router.planner.default_model(),
        **_choices(studio),
    )


@router.get("/new", response_class=HTMLResponse)
async def new_conversation(request: Request, studio: StudioDep) -> HTMLResponse:
    """The empty conversation: its toolbar (model and profiles for the first send) and a welcome."""
    return await _conversation(request, studio, None)


@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
async def conversation(request: Request, studio: StudioDep, conversation_id: str) -> HTMLResponse:
    """The toolbar and the active branch of one conversation."""
    found = await studio.conversations.store.get_conversation(conversation_id)
    return await _conversation(request, studio, found)


@router.get("/messages/{message_id}", response_class=HTMLResponse)
async def message(request: Request, studio: StudioDep, message_id: str) -> HTMLResponse:
    """One message as the page shows it (after its answer finished streaming)."""
    found = (await studio.conversations.store.path_to(message_id))[-1]  # with its sibling position
    view = message_view(studio, found, {})
    return render(request, "partials/chat_message.html", m=view, **_choices(studio))


@router.get("/conversations/{conversation_id}/graph", response_class=HTMLResponse)
async def graph(request: Request, studio: StudioDep, conversation_id: str) -> HTMLResponse:
    """The whole tree as an SVG: one row per depth, siblings side by side; the current branch lit."""
    store = studio.conversations.store
    messages = [m for m in await store.all_messages(conversation_id) if m.role != "system"]
    active = {m.id for m in await store.active_branch(conversation_id)}
    layout = tree_layout(messages)
    return render(
        request,
        "partials/chat_graph.html",
        conversation_id=conversation_id,
        nodes=layout.nodes,
        edges=layout.edges,
        width=layout.width,
        height=layout.height,
        active=active,
    )


@dataclass(frozen=True)
class GraphNode:
    message: Message
    x: float
    y: float


@dataclass(frozen=True)
class Layout:
    nodes: list[GraphNode]
    edges: list[tuple[GraphNode, GraphNode]]
    width: float
    height: float


NODE_W, NODE_H, GAP_X, GAP_Y = 150.0, 44.0, 16.0, 26.0


def tree_layout(messages: list[Message]) -> Layout:
    """A tidy-enough tree: leaves take consecutive columns, a parent sits above its children's middle.

    Messages arrive oldest first, so siblings keep their order (1/3, 2/3, 3/3 left to right)."""
    ids = {m.id for m in messages}
    children: dict[str | None, list[Message]] = {}
    for m in messages:
        parent = m.parent_id if m.parent_id in ids else None  # a hidden system root: its children are roots
        children.setdefault(parent, []).append(m)
    column = 0
    placed: dict[str, GraphNode] = {}
    # Iterative post-order (a long conversation is deeper than Python's recursion limit).
    stack: list[tuple[Message, int, bool]] = [(m, 0, False) for m in reversed(children.get(None, []))]
    while stack:
        m, depth, expanded = stack.pop()
        kids = children.get(m.id, [])
        if not expanded and kids:
            stack.append((m, depth, True))
            stack.extend((k, depth + 1, False) for k in reversed(kids))
            continue
        if kids:
            xs = [placed[k.id].x for k in kids]
            x = (min(xs) + max(xs)) / 2
        else:
            x = column * (NODE_W + GAP_X)
            column += 1
        placed[m.id] = GraphNode(m, x, depth * (NODE_H + GAP_Y))
    nodes = [placed[m.id] for m in messages if m.id in placed]
    edges = [(placed[str(m.parent_id)], placed[m.id]) for m in messages if m.parent_id in placed]
    width = max((n.x for n in nodes), default=0) + NODE_W
    height = max((n.y for n in nodes), default=0) + NODE_H
    return Layout(nodes, edges, width, height)
