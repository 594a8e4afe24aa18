"""Conversation export (lossless JSON with every branch; Markdown of the active branch) and import."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from mmstudio.domain.chat.store import ChatStore
from mmstudio.domain.chat.types import (
    PART_TYPES,
    ROLES,
    ROUTING_PROFILES,
    STATUSES,
    Conversation,
    Message,
    NewMessage,
    RoutingProfileName,
    text_of,
)
from mmstudio.domain.times import parse_time
from mmstudio.errors import InvalidRequest

FORMAT = "mmstudio.conversation"
VERSION = 1
MAX_IMPORT_MESSAGES = 200_000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "parentId": m.parent_id,
        "role": m.role,
        "parts": m.parts,
        "status": m.status,
        "error": m.error,
        "modelRequested": m.model_requested,
        "model": m.model,
        "provider": m.provider,
        "inputTokens": m.input_tokens,
        "outputTokens": m.output_tokens,
        "latencyMs": m.latency_ms,
        "ttftMs": m.ttft_ms,
        "attempts": m.attempts,
        "createdAt": _iso(m.created_at),
        "updatedAt": _iso(m.updated_at),
    }


async def export_json(store: ChatStore, conversation_id: str) -> dict[str, Any]:
    c = await store.get_conversation(conversation_id)
    messages = await store.all_messages(conversation_id)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exportedAt": datetime.now(UTC).isoformat(),
        "conversation": {
            "id": c.id,
            "title": c.title,
            "model": c.model,
            "routingProfile": c.routing_profile,
            "pinned": c.pinned,
            "archived": c.archived,
            "currentLeafId": c.current_leaf_id,
            "createdAt": _iso(c.created_at),
            "updatedAt": _iso(c.updated_at),
        },
        "messages": [message_json(m) for m in messages],
    }


def _markdown_part(part: dict[str, Any]) -> str:
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind == "image":
        return f"![image]({part['url']})" if part.get("url") else f"*[image: {part.get('media_type')}]*"
    if kind == "tool_call":
        return f"> **tool call** `{part.get('name')}` `{part.get('arguments')}`"
    if kind == "tool_result":
        flag = " (error)" if part.get("is_error") else ""
        return f"> **tool result{flag}** `{part.get('name')}`: {part.get('content')}"
    if kind == "citations":
        lines = [
            f"[{c.get('n')}] {c.get('filename')}" + (f" p.{c['page']}" if c.get("page") else "")
            for c in part.get("items", [])
        ]
        return "**Sources**\n" + "\n".join(f"- {line}" for line in lines)
    return ""


async def export_markdown(store: ChatStore, conversation_id: str) -> str:
    c = await store.get_conversation(conversation_id)
    branch = await store.active_branch(conversation_id)
    out = [f"# {c.title}", ""]
    for m in branch:
        who = "You" if m.role == "user" else (m.model or "Assistant") if m.role == "assistant" else m.role
        note = "" if m.status == "complete" else f" *({m.status}{': ' + m.error if m.error else ''})*"
        out.append(f"## {who}{note}")
        out.append("")
        body = "\n\n".join(s for s in (_markdown_part(p) for p in m.parts) if s)
        out.append(body or "*(empty)*")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _when(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_time(value, date_only=False) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidRequest(f"{field} is not an RFC 3339 date-time: {value!r}", field=field)
    return parsed


def _check(document: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidRequest(
            f'not an mmstudio conversation export (expected "format": "{FORMAT}")', field="format"
        )
    if document.get("version") != VERSION:
        raise InvalidRequest(
            f"unsupported export version {document.get('version')!r}; supported: {VERSION}", field="version"
        )
    conversation, messages = document.get("conversation"), document.get("messages")
    if not isinstance(conversation, dict) or not isinstance(messages, list):
        raise InvalidRequest(
            "an export needs a `conversation` object and a `messages` list", field="messages"
        )
    if len(messages) > MAX_IMPORT_MESSAGES:
        raise InvalidRequest(f"an import holds at most {MAX_IMPORT_MESSAGES:,} messages", field="messages")
    ids: set[str] = set()
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            raise InvalidRequest(f"{where} needs a string id", field=where)
        if m["id"] in ids:
            raise InvalidRequest(f"{where}: duplicate id {m['id']!r}", field=where)
        if m.get("parentId") is not None and m["parentId"] not in ids:
            raise InvalidRequest(
                f"{where}: parent {m['parentId']!r} must appear earlier in the list", field=where
            )
        if m.get("role") not in ROLES:
            raise InvalidRequest(f"{where}.role must be one of {', '.join(ROLES)}", field=f"{where}.role")
        if m.get("status", "complete") not in STATUSES:
            raise InvalidRequest(
                f"{where}.status must be one of {', '.join(STATUSES)}", field=f"{where}.status"
            )
        parts = m.get("parts")
        if not isinstance(parts, list) or any(
            not isinstance(p, dict) or p.get("type") not in PART_TYPES for p in parts
        ):
            raise InvalidRequest(
                f"{where}.parts must be a list of parts of type {', '.join(PART_TYPES)}",
                field=f"{where}.parts",
            )
        ids.add(m["id"])
    return conversation, messages


async def import_json(store: ChatStore, document: Any) -> Conversation:
    """A new conversation from one of our JSON exports; every id is new, the tree and content exact."""
    meta, messages = _check(document)
    created = _when(meta.get("createdAt"), "conversation.createdAt")
    routing: RoutingProfileName = "direct"
    for name in ROUTING_PROFILES:
        if meta.get("routingProfile") == name:
            routing = name
    conversation = await store.create_conversation(
        title=str(meta.get("title") or "Imported chat")[:300],
        model=meta.get("model") if isinstance(meta.get("model"), str) else None,
        routing_profile=routing,
        created_at=created,
    )
    new_ids: dict[str, str] = {}
    for m in messages:
        new_id = str(uuid.uuid4())
        extra = {
            key: m.get(name)
            for key, name in (
                ("model", "model"),
                ("provider", "provider"),
                ("input_tokens", "inputTokens"),
                ("output_tokens", "outputTokens"),
                ("latency_ms", "latencyMs"),
                ("ttft_ms", "ttftMs"),
                ("attempts", "attempts"),
                ("error", "error"),
            )
            if m.get(name) is not None
        }
        updated = _when(m.get("updatedAt"), "updatedAt")
        if updated is not None:
            extra["updated_at"] = updated
        status = m.get("status", "complete")
        await store.add_message(
            conversation.id,
            NewMessage(
                m["role"],
                m["parts"],
                status="interrupted" if status in ("pending", "streaming") else status,
                parent_id=new_ids[m["parentId"]] if m.get("parentId") else None,
                model_requested=m.get("modelRequested"),
                id=new_id,
                created_at=_when(m.get("createdAt"), "createdAt"),
                extra=extra,
            ),
            make_current=False,
        )
        new_ids[m["id"]] = new_id
    leaf = meta.get("currentLeafId")
    if isinstance(leaf, str) and leaf in new_ids:
        await store.set_current_leaf(conversation.id, new_ids[leaf])
    elif new_ids:
        await store.set_current_leaf(conversation.id, list(new_ids.values())[-1])
    return await store.get_conversation(conversation.id)


__all__ = ["export_json", "export_markdown", "import_json", "message_json", "text_of"]
