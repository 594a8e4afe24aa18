"""Stored messages → what a model is sent: the branch as provider messages, under one system prompt."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from mmstudio.domain.chat.types import Message, Part
from mmstudio.errors import InvalidRequest
from mmstudio.providers import base as wire

MAX_TEXT = 400_000  # characters in one message: far above any context window, below abuse
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def user_parts(content: str | Sequence[Any]) -> list[Part]:
    """Validate what a user sent (a string, or text and image parts) into stored parts."""
    if isinstance(content, str):
        items: Sequence[Any] = [{"type": "text", "text": content}]
    else:
        items = content
    parts: list[Part] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") not in ("text", "image"):
            raise InvalidRequest(
                f"content[{i}] must be a part with type 'text' or 'image'", field=f"content[{i}]"
            )
        if item["type"] == "text":
            text = item.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"content[{i}].text must be a string", field=f"content[{i}].text")
            if text.strip():
                parts.append({"type": "text", "text": text})
        else:
            parts.append(_image_part(item, i))
    if not parts:
        raise InvalidRequest("content is empty: write something (or attach an image)", field="content")
    if sum(len(p.get("text", "")) for p in parts) > MAX_TEXT:
        raise InvalidRequest(f"content is longer than {MAX_TEXT:,} characters", field="content")
    return parts


def _image_part(item: dict[str, Any], i: int) -> Part:
    url, data = item.get("url"), item.get("data")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"type": "image", "url": url}
    media_type = item.get("media_type") or "image/png"
    if media_type not in IMAGE_TYPES:
        raise InvalidRequest(
            f"content[{i}].media_type {media_type!r} is not an image type we send; allowed: "
            + ", ".join(IMAGE_TYPES),
            field=f"content[{i}].media_type",
        )
    if not isinstance(data, str) or not data:
        raise InvalidRequest(f"content[{i}] needs `data` (base64) or an http(s) `url`", field=f"content[{i}]")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"content[{i}].data is not valid base64", field=f"content[{i}].data") from None
    return {"type": "image", "media_type": media_type, "data": data}


def _wire_user(parts: list[Part]) -> wire.Message:
    content: list[wire.ContentPart] = []
    for part in parts:
        if part["type"] == "text":
            content.append(wire.TextPart(part["text"]))
        elif part["type"] == "image":
            if part.get("url"):
                content.append(wire.ImagePart(url=part["url"]))
            else:
                content.append(wire.ImagePart(base64.b64decode(part["data"]), part["media_type"]))
    return wire.Message("user", tuple(content))


def _wire_assistant(parts: list[Part]) -> list[wire.Message]:
    """An agent answer holds tool calls, their results and text, in order: replay them as the
    assistant/tool turns the model produced."""
    out: list[wire.Message] = []
    pending: list[wire.ContentPart] = []
    results: list[wire.ContentPart] = []
    for part in parts:
        kind = part.get("type")
        if kind == "tool_result":
            results.append(
                wire.ToolResultPart(
                    part["tool_call_id"],
                    part.get("name", ""),
                    str(part.get("content", "")),
                    part.get("is_error", False),
                )
            )
            continue
        if results:
            out.append(wire.Message("assistant", tuple(pending)))
            out.append(wire.Message("tool", tuple(results)))
            pending, results = [], []
        if kind == "text" and part.get("text"):
            pending.append(wire.TextPart(part["text"]))
        elif kind == "tool_call":
            pending.append(wire.ToolCall(part["id"], part["name"], dict(part.get("arguments") or {})))
    if results:
        out.append(wire.Message("assistant", tuple(pending)))
        out.append(wire.Message("tool", tuple(results)))
        pending = []
    # A tool call whose result never arrived (the answer was stopped) cannot be replayed.
    pending = [p for p in pending if not isinstance(p, wire.ToolCall)]
    if pending:
        out.append(wire.Message("assistant", tuple(pending)))
    return out


def wire_messages(branch: Sequence[Message], system: str | None) -> tuple[wire.Message, ...]:
    """The branch (root → the message being answered) as provider messages."""
    out: list[wire.Message] = [wire.Message.text("system", system)] if system else []
    for message in branch:
        if message.role == "user":
            out.append(_wire_user(message.parts))
        elif message.role == "assistant":
            out.extend(_wire_assistant(message.parts))
        elif message.role == "system" and message.text:
            out.append(wire.Message.text("system", message.text))
    return tuple(out)


def system_prompt(*sections: str | None) -> str | None:
    text = "\n\n".join(s.strip() for s in sections if s and s.strip())
    return text or None
