"""Media assets and the recipes that made them: plain domain objects, no storage or web types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

MediaKind = Literal["image", "video", "upload"]


@dataclass(frozen=True, slots=True)
class Recipe:
    """How an image was made: enough to make it again, or to say later what made it.

    `seed` is the seed as actually used (the engine's answer when it reports one), `references` are
    media asset ids, `extra` holds what only some engines have (a display name, a revised prompt).
    """

    model_used: str
    provider: str
    prompt: str
    model_requested: str | None = None
    negative_prompt: str | None = None
    size: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None
    seed: int | None = None
    steps: int | None = None
    n: int = 1
    references: tuple[str, ...] = ()
    workflow: str | None = None
    input_fidelity: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["references"] = list(self.references)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["references"] = tuple(known.get("references") or ())
        known["extra"] = dict(known.get("extra") or {})
        known.setdefault("model_used", "")
        known.setdefault("provider", "")
        known.setdefault("prompt", "")
        return cls(**known)

    def parameters_text(self) -> str:
        """The recipe in AUTOMATIC1111's ``parameters`` convention (what image viewers and A1111's own
        "PNG Info" tab read): the prompt, a ``Negative prompt:`` line, then ``Key: value`` pairs."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        pairs: list[tuple[str, object]] = [
            ("Steps", self.steps),
            ("Seed", self.seed),
            ("Size", self.size),
            ("Aspect ratio", self.aspect_ratio),
            ("Quality", self.quality),
            ("Model", self.model_used),
            ("Provider", self.provider),
            ("Workflow", self.workflow),
        ]
        lines.append(", ".join(f"{k}: {v}" for k, v in pairs if v not in (None, "")))
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class MediaAsset:
    """One stored file: a generated image (with its recipe) or an upload (a reference photo)."""

    id: str
    kind: MediaKind
    mime: str
    width: int | None
    height: int | None
    bytes: int
    sha256: str
    created_at: datetime
    recipe: Recipe | None = None
    attempts: tuple[Mapping[str, Any], ...] = ()
    latency_ms: float | None = None
    cost_usd: float | None = None
    parent_id: str | None = None
    tier: str | None = None
    filename: str | None = None
    duration_s: float | None = None  # videos
    fps: float | None = None

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.mime, "bin")


EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
}


@dataclass(frozen=True, slots=True)
class MediaPage:
    items: list[MediaAsset]
    total: int
    limit: int
    offset: int
