"""Video Studio projects and clips as the domain sees them: a project's settings for the next shot
(camera, tunes, duration, seed, loop, interpolate, prompts, frames, the chosen model) and the clips on
its timeline, each with the settings it was made with and its trim. No storage or web here.

Ranges are data (`RANGES`), so the API's schema, the checks and the page's sliders agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mmstudio.errors import InvalidRequest

CAMERA = ("pan_x", "pan_y", "zoom", "tilt", "roll")  # each -1..1, 0 is still
TUNES = ("stability", "amplitude", "coherence")  # each 0..1
RANGES: Mapping[str, tuple[float, float]] = {
    **{name: (-1.0, 1.0) for name in CAMERA},
    **{name: (0.0, 1.0) for name in TUNES},
    "duration_s": (1.0, 60.0),
}
SETTINGS = (
    "model",
    "start_frame",
    "end_frame",
    *CAMERA,
    "duration_s",
    *TUNES,
    "seed",
    "loop",
    "interpolate",
    "prompt",
    "negative_prompt",
)
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
RESOLUTIONS = ("480p", "720p", "1080p")
MAX_PROMPT = 4000


@dataclass(frozen=True, slots=True)
class ShotSettings:
    """The settings of one shot: the next one a project will make, or the one a clip was made with."""

    model: str | None = None
    start_frame: str | None = None  # image asset ids
    end_frame: str | None = None
    pan_x: float = 0.0
    pan_y: float = 0.0
    zoom: float = 0.0
    tilt: float = 0.0
    roll: float = 0.0
    duration_s: float = 4.0
    stability: float = 0.0
    amplitude: float = 0.0
    coherence: float = 0.0
    seed: int = -1  # -1: a random one (the clip keeps the seed used)
    loop: bool = False
    interpolate: bool = True
    prompt: str = ""
    negative_prompt: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTINGS}

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> ShotSettings:
        return ShotSettings(**{k: v for k, v in values.items() if k in SETTINGS})


@dataclass(frozen=True, slots=True)
class Clip:
    id: str
    project_id: str
    position: int
    job_id: str | None
    asset_id: str | None
    settings: ShotSettings
    trim_in_s: float
    trim_out_s: float | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    aspect_ratio: str
    resolution: str
    created_at: datetime
    updated_at: datetime
    next_shot: ShotSettings
    selected_clip_id: str | None = None
    playhead_s: float = 0.0
    clips: tuple[Clip, ...] = field(default=())  # the live clips, in timeline order


def check_settings(changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` checked field by field against what each setting allows (types, ranges, lengths),
    without a model: a 400 naming the first field that is wrong and what it may be."""
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in SETTINGS:
            raise InvalidRequest(f"unknown setting {name!r}; settings: {', '.join(SETTINGS)}", field=name)
        checked[name] = _check(name, value)
    return checked


def _check(name: str, value: Any) -> Any:
    if name in RANGES:
        low, high = RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise InvalidRequest(f"{name} must be a number from {low:g} to {high:g}", field=name)
        return float(value)
    if name == "seed":
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 2**31 - 1:
            raise InvalidRequest("seed must be an integer from 0 to 2147483647, or -1 for random", field=name)
        return value
    if name in ("loop", "interpolate"):
        if not isinstance(value, bool):
            raise InvalidRequest(f"{name} must be true or false", field=name)
        return value
    if name in ("prompt", "negative_prompt"):
        if not isinstance(value, str) or len(value) > MAX_PROMPT:
            raise InvalidRequest(f"{name} must be text of at most {MAX_PROMPT} characters", field=name)
        return value
    if value is not None and (not isinstance(value, str) or not value or len(value) > 400):
        raise InvalidRequest(f"{name} must be an id, or null to clear it", field=name)
    return value  # model, start_frame, end_frame: checked against the models and the media by the service


def check_project(name: Any = None, aspect_ratio: Any = None, resolution: Any = None) -> None:
    """A project's own fields (those given)."""
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise InvalidRequest("name must be 1 to 200 characters", field="name")
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise InvalidRequest(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}", field="aspect_ratio")
    if resolution is not None and resolution not in RESOLUTIONS:
        raise InvalidRequest(f"resolution must be one of {', '.join(RESOLUTIONS)}", field="resolution")
