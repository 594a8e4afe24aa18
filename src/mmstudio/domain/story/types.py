"""Story mode as the domain sees it: a story of one tier, its scenes as a tree (each scene the answer
to one choice of its parent, so going back and choosing differently starts a branch and keeps both), and
the tier's characters with their reference photos. No storage or web here.

Every record carries its tier; the repository answers only within the tier it is asked for, so a story,
scene or character of another tier is simply not found (a 404 that confirms nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

SceneState = Literal["writing", "written", "failed"]
SCENE_STATES: tuple[SceneState, ...] = ("writing", "written", "failed")
StorySort = Literal["updated", "created", "title", "scenes"]
STORY_SORTS: tuple[StorySort, ...] = ("updated", "created", "title", "scenes")


@dataclass(frozen=True, slots=True)
class Story:
    id: str
    tier: str
    title: str  # the first scene's title until the user names it
    premise: str
    text_model: str
    image_model: str
    video_model: str | None
    memory_mode: bool
    video_mode: bool
    created_at: datetime
    updated_at: datetime
    scene_count: int = 0
    cover_asset_id: str | None = None  # the first scene's image, once made
    current_scene_id: str | None = None  # where the reader left off
    has_video: bool = False  # at least one scene has a finished video
    saved: bool = False  # kept in the gallery (auto-saved at each scene when the tier says so)
    legacy_format: int | None = None  # imported from the seed's older format (its version), else None


@dataclass(frozen=True, slots=True)
class Scene:
    id: str
    story_id: str
    tier: str
    parent_id: str | None  # None: the story's first scene
    choice: str | None  # the choice (of the parent's) or the user's own words that led here
    depth: int  # 0 for the first scene
    state: SceneState
    created_at: datetime
    updated_at: datetime
    title: str = ""
    narrative: str = ""
    image_prompt: str = ""
    choices: tuple[str, ...] = ()
    error: str | None = None  # why writing it failed (state "failed")
    model_used: str | None = None
    attempts: tuple[dict[str, object], ...] = ()  # the router's attempt trace
    image_job_id: str | None = None
    video_job_id: str | None = None
    image_asset_id: str | None = None
    video_asset_id: str | None = None


@dataclass(frozen=True, slots=True)
class Character:
    id: str
    tier: str
    name: str
    description: str
    photo_ids: tuple[str, ...]  # image asset ids (uploaded, checked like every upload), in order
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoryPage:
    items: tuple[Story, ...]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class StoryTree:
    """A story with all its scenes (every branch), parents before children."""

    story: Story
    scenes: tuple[Scene, ...] = field(default=())

    def path_to(self, scene_id: str) -> list[Scene]:
        """The scenes from the first one down to `scene_id` (one path of the tree)."""
        by_id = {s.id: s for s in self.scenes}
        path: list[Scene] = []
        current = by_id.get(scene_id)
        while current is not None:
            path.append(current)
            current = by_id.get(current.parent_id) if current.parent_id else None
        return path[::-1]
