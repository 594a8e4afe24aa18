"""A story as a file: the JSON the seed design saved stories in, read in both of its versions, and
written in the current one (so an export imports again, media included).

Version 1 (the seed's older stories) has no ``format`` key, names its image model ``"dalle"``, has no
``video_mode`` and its scenes no ``video_url``; a scene's text is ``text`` and its picture
``image_url``. Version 2 (``"format": 2``) adds ``video_mode``, ``video_url`` and full model ids.
Scenes form a tree by ``parent`` (an id of an earlier scene, or null for the first one) and ``choice``
(what the reader chose there). Pictures and videos travel as ``data:`` URIs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mmstudio.domain.patterns import BASE64_BODY, NOT_BLANK
from mmstudio.domain.story.types import Scene, StoryTree
from mmstudio.domain.times import parse_time
from mmstudio.errors import InvalidRequest

FORMAT = 2
MAX_SCENES = 1000
# The seed's old model names, shown as people knew them.
LEGACY_MODEL_NAMES = {
    "dalle": "DALL-E",
    "dall-e": "DALL-E",
    "dall-e-3": "DALL-E",
    "gpt-image-1": "GPT Image 1",
    "gpt-image-1.5": "GPT Image 1.5",
    "grok": "Grok Imagine",
}
_DATA_URI = re.compile(r"^data:([a-z]+/[a-z0-9.+-]+);base64,(.*)$", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ImportedScene:
    key: str  # its id in the file
    parent: str | None
    choice: str | None
    title: str
    narrative: str
    image_prompt: str
    choices: tuple[str, ...]
    image: tuple[str, bytes] | None  # (media type, bytes)
    video: tuple[str, bytes] | None


@dataclass(frozen=True, slots=True)
class ImportedStory:
    format: int
    title: str
    premise: str
    text_model: str
    image_model: str
    video_model: str | None
    video_mode: bool
    memory_mode: bool
    created_at: datetime | None
    scenes: tuple[ImportedScene, ...]  # parents before children


def _text(
    data: Mapping[str, Any], key: str, where: str, *, required: bool = False, limit: int = 20_000
) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise InvalidRequest(f"{where}.{key} must be text of 1 to {limit} characters", field=f"{where}.{key}")
    return value


def _media(value: object, where: str, kind: str) -> tuple[str, bytes] | None:
    if value in (None, ""):
        return None
    match = _DATA_URI.match(value) if isinstance(value, str) else None
    if match is None or not match[1].lower().startswith(f"{kind}/"):
        raise InvalidRequest(f"{where} must be a data: URI of an {kind} (base64), or null", field=where)
    try:
        return match[1].lower(), base64.b64decode(match[2], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where} is not valid base64", field=where) from None


def _text_schema(limit: int, *, required: bool = False) -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string", "maxLength": limit}
    if required:
        text["pattern"] = NOT_BLANK
        return text
    return {"anyOf": [text, {"type": "null"}]}


def _media_schema(kind: str) -> dict[str, Any]:
    prefix = "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in f"data:{kind}/")
    pattern = rf"^(?:{prefix}[A-Za-z0-9.+-]+;[bB][aA][sS][eE]64,{BASE64_BODY})?$"
    return {"anyOf": [{"type": "string", "pattern": pattern}, {"type": "null"}]}


_SCENE_TEXT = _text_schema(20_000, required=True)
FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a story file (an export of this studio, or the seed's older format 1)",
    "required": ["premise", "scenes"],
    "properties": {
        "format": {"enum": [1, FORMAT], "default": 1},
        "title": _text_schema(200),
        "premise": _text_schema(4000, required=True),
        "text_model": _text_schema(400),
        "image_model": _text_schema(400),
        "video_model": _text_schema(400),
        "video_mode": {"type": "boolean"},
        "memory_mode": {"type": "boolean"},
        "created": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        "scenes": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_SCENES,
            "description": "a tree: each scene's `parent` is an earlier scene's id (the first has none)",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"description": "its id in the file (default: its index)"},
                    "parent": {"description": "an earlier scene's id; null for the first scene"},
                    "choice": {"description": "what the reader chose there"},
                    "title": _text_schema(200),
                    "image_prompt": _text_schema(4000),
                    "choices": {
                        "anyOf": [
                            {"type": "array", "items": {"type": "string"}, "maxItems": 10},
                            {"type": "null"},
                        ]
                    },
                    "image_url": _media_schema("image"),
                    "video_url": _media_schema("video"),
                },
                "anyOf": [
                    {"required": ["text"], "properties": {"text": _SCENE_TEXT}},
                    {
                        "required": ["narrative"],
                        "properties": {"narrative": _SCENE_TEXT},
                        "not": {"required": ["text"]},
                    },
                ],
            },
        },
    },
}
"""The JSON Schema of what `parse` reads, but its tree rules (ids unique, parents first)."""


def parse(data: object) -> ImportedStory:
    """A story file (either version) checked field by field: a 400 naming the first wrong field."""
    if not isinstance(data, dict):
        raise InvalidRequest("a story file is a JSON object", field="body")
    version = data.get("format", 1)
    if isinstance(version, bool) or version not in (1, FORMAT):
        raise InvalidRequest(f"format must be 1 or {FORMAT}, not {version!r}", field="format")
    raw_scenes = data.get("scenes")
    if not isinstance(raw_scenes, list) or not raw_scenes or len(raw_scenes) > MAX_SCENES:
        raise InvalidRequest(f"scenes must be a list of 1 to {MAX_SCENES} scenes", field="scenes")
    scenes: list[ImportedScene] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_scenes):
        where = f"scenes[{index}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where} must be an object", field=where)
        key = str(raw.get("id") if raw.get("id") is not None else index)
        parent = raw.get("parent")
        parent = None if parent is None else str(parent)
        if parent is None and scenes:
            raise InvalidRequest(
                f"{where}.parent: only the first scene has no parent", field=f"{where}.parent"
            )
        if parent is not None and parent not in seen:
            raise InvalidRequest(
                f"{where}.parent {parent!r} is not an earlier scene's id", field=f"{where}.parent"
            )
        if key in seen:
            raise InvalidRequest(f"{where}.id {key!r} is used twice", field=f"{where}.id")
        seen.add(key)
        choices = raw.get("choices")
        choices = [] if choices is None else choices
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices) or len(choices) > 10:
            raise InvalidRequest(f"{where}.choices must be a list of texts", field=f"{where}.choices")
        choice = raw.get("choice")
        video = _media(raw.get("video_url"), f"{where}.video_url", "video")
        scenes.append(
            ImportedScene(
                key=key,
                parent=parent,
                choice=choice if isinstance(choice, str) and choice.strip() else None,
                title=_text(raw, "title", where, limit=200),
                narrative=_text(
                    raw,
                    "narrative" if "narrative" in raw and "text" not in raw else "text",
                    where,
                    required=True,
                ),
                image_prompt=_text(raw, "image_prompt", where, limit=4000),
                choices=tuple(choices),
                image=_media(raw.get("image_url"), f"{where}.image_url", "image"),
                video=video if version >= 2 else None,  # checked in either version; v1 has no videos
            )
        )
    created = data.get("created")
    created_at = parse_time(created, date_only=False) if isinstance(created, str) else None
    if created is not None and created_at is None:
        raise InvalidRequest("created must be an RFC 3339 date and time", field="created")
    for flag in ("video_mode", "memory_mode"):
        if not isinstance(data.get(flag, False), bool):
            raise InvalidRequest(f"{flag} must be true or false", field=flag)
    image_model = _text(data, "image_model", "story", limit=400) or "dalle"
    video_model = _text(data, "video_model", "story", limit=400) or None
    return ImportedStory(
        format=version,
        title=_text(data, "title", "story", limit=200) or scenes[0].title,
        premise=_text(data, "premise", "story", required=True, limit=4000),
        text_model=_text(data, "text_model", "story", limit=400),
        image_model=image_model,
        video_model=video_model if version >= 2 else None,
        video_mode=bool(data.get("video_mode", False)) if version >= 2 else False,
        memory_mode=bool(data.get("memory_mode", False)),
        created_at=created_at,
        scenes=tuple(scenes),
    )


def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def export(tree: StoryTree, media: Mapping[str, tuple[str, bytes]]) -> dict[str, Any]:
    """The story in the current format; `media` maps an asset id to its (type, bytes)."""
    story = tree.story

    def uri(asset_id: str | None) -> str | None:
        found = media.get(asset_id) if asset_id else None
        return data_uri(*found) if found else None

    return {
        "format": FORMAT,
        "title": story.title,
        "premise": story.premise,
        "text_model": story.text_model,
        "image_model": story.image_model,
        "video_model": story.video_model,
        "video_mode": story.video_mode,
        "memory_mode": story.memory_mode,
        "created": story.created_at.isoformat(),
        "scenes": [_scene(s, uri) for s in tree.scenes if s.state == "written"],
    }


def _scene(scene: Scene, uri: Any) -> dict[str, Any]:
    return {
        "id": scene.id,
        "parent": scene.parent_id,
        "choice": scene.choice,
        "title": scene.title,
        "text": scene.narrative,
        "image_prompt": scene.image_prompt,
        "choices": list(scene.choices),
        "image_url": uri(scene.image_asset_id),
        "video_url": uri(scene.video_asset_id),
    }


def model_name(model: str, known: Mapping[str, str]) -> str:
    """A model's display name: the registry's (`known`), the seed's old names, else the id."""
    if model in known:
        return known[model]
    bare = model.split("/", 1)[-1].lower()
    return LEGACY_MODEL_NAMES.get(model.lower(), LEGACY_MODEL_NAMES.get(bare, model))
