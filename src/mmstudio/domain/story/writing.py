"""Writing one scene: what the text model is asked (the tier's rules, the characters in memory mode, the
story so far and the choice just made) and how its answer is read.

The model answers with one JSON object ``{title, narrative, image_prompt, choices}`` (2 to 4 choices).
While it writes, `partial_scene` reads whatever part has arrived, so the page shows the narrative as it
is written; at the end `parse_scene` reads it robustly (a fenced block, text around the object, a
trailing comma) and says exactly what is wrong otherwise, which becomes the one repair request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmstudio.domain.story.types import Character, Scene
from mmstudio.providers.base import Message

MAX_CHOICES, MIN_CHOICES = 4, 2
# How much of the story so far goes back to the model: the latest scenes in full, older ones by title.
FULL_SCENES = 3
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")

FORMAT = (
    "Answer with one JSON object and nothing else, in this shape:\n"
    '{"title": "a short title for this scene", "narrative": "the scene itself, 2 to 5 short '
    'paragraphs", "image_prompt": "one picture of this moment for an image model: who is where, '
    'doing what, the light and the style, no text in the picture", "choices": ["what the reader may '
    'do next", "another option", "..."]}\n'
    f"Give {MIN_CHOICES} to {MAX_CHOICES} choices, each one short sentence."
)


class SceneText(BaseModel):
    """A scene as the text model must write it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    narrative: str = Field(min_length=1, max_length=20_000)
    image_prompt: str = Field(min_length=1, max_length=4000)
    choices: list[str] = Field(min_length=MIN_CHOICES, max_length=MAX_CHOICES)

    @field_validator("choices")
    @classmethod
    def _choices_are_text(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip() for c in value]
        if any(not c or len(c) > 300 for c in cleaned):
            raise ValueError("every choice must be 1 to 300 characters")
        return cleaned


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why an answer is not a scene, in words the repair request can quote to the model."""

    problem: str


def messages(
    *,
    instructions: str,
    premise: str,
    path: Sequence[Scene],
    choice: str | None,
    characters: Sequence[Character] = (),
    max_scenes: int,
) -> tuple[Message, ...]:
    """The request for the next scene: the tier's rules and the format as the system message, then the
    premise, the story so far (the path to this scene) and the choice just made."""
    system = [instructions.strip()] if instructions.strip() else []
    system.append("You are the narrator of an interactive illustrated story. Each answer is the next scene.")
    if characters:
        cast = "\n".join(f"- {c.name}: {c.description.strip()}" for c in characters)
        system.append(f"These characters appear in the story; keep them exactly as described:\n{cast}")
    scene_number = len(path) + 1
    if scene_number >= max_scenes:
        system.append("This is the last scene: bring the story to a satisfying end; give choices anyway.")
    system.append(FORMAT)
    user = [f"The story's premise: {premise.strip()}"]
    if path:
        told = []
        for number, scene in enumerate(path, start=1):
            if number <= len(path) - FULL_SCENES:
                told.append(f"Scene {number}: {scene.title}")
            else:
                told.append(f"Scene {number}: {scene.title}\n{scene.narrative}")
        user.append("The story so far:\n\n" + "\n\n".join(told))
    if choice:
        user.append(f"The reader chose: {choice.strip()}")
    user.append(f"Write scene {scene_number}.")
    return (Message.text("system", "\n\n".join(system)), Message.text("user", "\n\n".join(user)))


def repair_messages(original: Sequence[Message], answer: str, problem: Unreadable) -> tuple[Message, ...]:
    """The one repair request: the first request, the answer, and what was wrong with it."""
    return (
        *original,
        Message.text("assistant", answer),
        Message.text(
            "user",
            f"That answer cannot be used: {problem.problem}. Answer again with only the JSON object, "
            "in exactly the shape asked for.",
        ),
    )


def _candidate(text: str) -> str:
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    return body[start : end + 1] if start != -1 and end > start else body.strip()


def parse_scene(text: str) -> SceneText | Unreadable:
    """The scene in `text`, or what is wrong with it."""
    candidate = _candidate(text)
    if not candidate.startswith("{"):
        return Unreadable("it is not a JSON object")
    try:
        data: Any = json.loads(candidate)
    except json.JSONDecodeError:
        try:
            data = json.loads(_TRAILING_COMMA.sub(r"\1", candidate))
        except json.JSONDecodeError as exc:
            return Unreadable(f"it is not valid JSON ({exc.msg} at character {exc.pos})")
    if not isinstance(data, dict):
        return Unreadable("it is not a JSON object")
    try:
        return SceneText.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        return Unreadable(f"{where}: {first['msg']}")


def partial_scene(text: str) -> Mapping[str, Any]:
    """Whatever fields of the scene have arrived so far (the narrative as it is written)."""
    fenced = text.split("```json", 1)[-1] if "```json" in text else text
    start = fenced.find("{")
    if start == -1:
        return {}
    try:
        data = pydantic_core.from_json(fenced[start:], allow_partial="trailing-strings")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def complete_image_prompt(partial: Mapping[str, Any]) -> str | None:
    """The image prompt once it is whole: a field that another one follows (the model writes the fields
    in order, and the partial reading keeps the last one only as far as it arrived)."""
    keys = list(partial)
    if "image_prompt" not in keys or keys[-1] == "image_prompt":
        return None
    prompt = partial["image_prompt"]
    return prompt.strip() or None if isinstance(prompt, str) else None
