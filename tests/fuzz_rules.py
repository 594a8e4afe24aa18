"""Schemathesis hooks for the rules an OpenAPI document cannot state (loaded by `schemathesis.toml`).

JSON Schema describes one value at a time. A few of the studio's rules tie values together, and each
is written in its operation's description and tested on its own:

- a `tool_choice` function must be one of the request's `tools`, a tool call's `arguments` is a JSON
  object in a string, and an image by URL is for models that fetch one (`/v1/chat/completions`,
  `/api/chat`; the suite's models are Ollama's, which take inline images only);
- an imported conversation or story is a tree: ids unique, every parent before its children;
- an image size's sides are 64 to 8192 and its ratio 1:4 to 4:1; a mask needs a photo to edit; a
  ComfyUI workflow is one the server was configured with;
- a metrics window starts before it ends and holds at most 5,000 buckets.

A generated *valid* case that breaks one of these is not sent (`filter_case`): it is not valid. So are
two kinds of valid multipart case that schemathesis cannot send as generated: its coverage phase's
(which fills a part past its declared `encoding` and `pattern`), and text holding a lone surrogate. Invalid
cases are never dropped, and no check is turned off. The rules are the studio's own functions where it
has them, so this file cannot drift from the server either.

The upload routes get real files of the formats they read (`media_type`): a text or Markdown document
with words in it, a PDF with a text layer, and the smallest well-formed PNG, JPEG, WebP and GIF.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.file_samples import FILE_SAMPLES, file_extension

from mmstudio.domain.media.sizes import parse_shape
from mmstudio.domain.metrics import MAX_BUCKETS
from mmstudio.errors import InvalidRequest
from mmstudio.providers.media.comfyui import BUILTIN_WORKFLOWS
from mmstudio.web.metrics_api import BUCKETS, _parse_time


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return True
    path, body = case.operation.path, case.body
    if (case.media_type or "").startswith("multipart/"):
        if case.meta.phase.name == "coverage":
            return False  # that phase fills a form's parts past their `encoding` and `pattern` (4.32)
        if isinstance(body, dict) and _has_surrogates(body):
            return False  # a form's text is UTF-8: a lone surrogate (JSON can hold one) cannot be sent
        if isinstance(body, dict) and not _files_are_what_they_say(path, body):
            return False
    if path in ("/v1/chat/completions", "/api/chat"):
        return isinstance(body, dict) and _chat_rules(body)
    if path == "/api/chat/ui/conversations/import":
        return isinstance(body, dict) and _is_tree(body.get("messages"), "id", "parentId", root_first=False)
    if path == "/api/stories/{tier}/import":
        return isinstance(body, dict) and _story_is_tree(body.get("scenes"))
    if path in ("/api/images", "/api/images/jobs", "/v1/images/generations", "/v1/images/edits"):
        return isinstance(body, dict) and _image_rules(body)
    if path == "/api/metrics":
        return _window_fits(case.query or {})
    return True


def _files_are_what_they_say(path: str, body: dict[str, Any]) -> bool:
    """Each file part holds a file of a type its route reads (what no schema can say of bytes)."""
    for value in body.values():
        for item in value if isinstance(value, list) else [value]:
            data = getattr(item, "data", item)  # schemathesis wraps some file parts' bytes (`Binary`)
            if not isinstance(data, bytes):
                continue
            if path == "/api/chat/ui/documents":
                if not (data.startswith(b"%PDF-") or _is_text(data)):
                    return False
            elif file_extension(data) not in ("png", "jpg", "gif", "webp"):
                return False
    return True


def _is_text(data: bytes) -> bool:
    """Text a document upload reads: UTF-8 without NUL, with something in it besides spaces."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return "\x00" not in text and bool(text.strip())


def _has_surrogates(body: dict[str, Any]) -> bool:
    texts = [v for v in body.values() if isinstance(v, str) and not hasattr(v, "data")]
    return any("\ud800" <= c <= "\udfff" for text in texts for c in text)


def _chat_rules(body: dict[str, Any]) -> bool:
    """A `tool_choice` function is one of the tools; a tool call's arguments are a JSON object; and no
    image is given by URL, which the models this suite runs (Ollama's) cannot take."""
    names = {t["function"]["name"] for t in body.get("tools") or () if isinstance(t, dict)}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("function", {}).get("name") not in names:
        return False
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return False
        for call in message.get("tool_calls") or ():
            try:
                if not isinstance(json.loads(call["function"].get("arguments") or "{}"), dict):
                    return False
            except (ValueError, TypeError, KeyError):
                return False
    return True


def _is_tree(items: Any, key: str, parent_key: str, *, root_first: bool) -> bool:
    seen: set[str] = set()
    for index, item in enumerate(items or ()):
        me = str(item.get(key) if item.get(key) is not None else index) if root_first else item.get(key)
        parent = item.get(parent_key)
        parent = None if parent is None else str(parent) if root_first else parent
        if me in seen or (parent is not None and parent not in seen):
            return False
        if root_first and (parent is None) != (index == 0):
            return False
        seen.add(me)
    return True


def _story_is_tree(scenes: Any) -> bool:
    return _is_tree(scenes, "id", "parent", root_first=True)


def _image_rules(body: dict[str, Any]) -> bool:
    size = body.get("size")
    try:
        parse_shape(size if isinstance(size, str) else None)
    except InvalidRequest:
        return False
    if body.get("mask") and not body.get("references"):
        return False
    return body.get("workflow") in (None, *BUILTIN_WORKFLOWS)


def _window_fits(query: dict[str, Any]) -> bool:
    now = datetime.now(UTC)
    try:
        until = _parse_time(query["until"], now, "until") if query.get("until") else now
        since = _parse_time(query["since"], now, "since") if query.get("since") else until
    except InvalidRequest:
        return True  # not valid after all: the server says so, and the check sees it
    seconds = BUCKETS.get(query.get("bucket") or "1h", 3600)
    span = (until - since).total_seconds() if query.get("since") else 86_400
    return span > 0 and span / seconds < MAX_BUCKETS - 1


# -- files of the formats the upload routes read ----------------------------------------------------

_WORDS = st.lists(st.sampled_from(["river", "lamp", "orbit", "maple", "quartz", "violet"]), min_size=1)
_TEXT = _WORDS.map(lambda words: " ".join(words).encode())


def _pdf(text: str) -> bytes:
    """A one-page PDF whose text layer says `text`."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


schemathesis.openapi.media_type("text/plain", _TEXT)
schemathesis.openapi.media_type("text/markdown", _WORDS.map(lambda words: ("# " + " ".join(words)).encode()))
schemathesis.openapi.media_type("text/x-markdown", _TEXT)
schemathesis.openapi.media_type("application/pdf", _WORDS.map(lambda words: _pdf(" ".join(words))))
for _media_type, _extension in (
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/webp", "webp"),
    ("image/gif", "gif"),
):
    schemathesis.openapi.media_type(_media_type, st.just(FILE_SAMPLES[_extension]))
