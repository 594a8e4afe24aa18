"""Fitting a video request to one model's capabilities: what is sent, what is adjusted, what is dropped.

Vendors name the shape of a video differently: OpenAI's `size` is ``720x1280``, xAI and Veo take an
aspect ratio and ``720p``, Runway a ``1280:720`` ratio. A request made for one model therefore reaches a
fallback model (or a client speaking OpenAI's shape reaches another vendor) as the nearest thing that
model can do, never as a value it would refuse, and the job records each change so the response says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmstudio.providers.media.video_base import VideoCapabilities

_SIZE = re.compile(r"^\s*(\d{2,5})\s*[xX:]\s*(\d{2,5})\s*$")
_LINES = re.compile(r"^\s*(\d{3,4})p\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Fitted:
    """The request's shape as `caps` can take it. `adjusted` maps a field to (asked, sent);
    `dropped` names the fields the model does not take at all."""

    duration_s: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    adjusted: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()

    def notes(self) -> dict[str, Any]:
        """What the response shows: ``{"adjusted": {...}, "dropped": [...]}`` (empty parts left out)."""
        out: dict[str, Any] = {}
        if self.adjusted:
            out["adjusted"] = {k: {"asked": a, "sent": s} for k, (a, s) in self.adjusted.items()}
        if self.dropped:
            out["dropped"] = list(self.dropped)
        return out


def size_of(value: str) -> tuple[int, int] | None:
    """``1280x720`` or ``1280:720`` as (width, height)."""
    match = _SIZE.match(value)
    return (int(match[1]), int(match[2])) if match else None


def ratio_of(value: str) -> float | None:
    """The width/height ratio of ``16:9``, ``1280x720`` or ``1280:720``."""
    size = size_of(value) or _ratio_pair(value)
    return size[0] / size[1] if size and size[1] else None


def _ratio_pair(value: str) -> tuple[int, int] | None:
    parts = value.split(":")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _lines_of(value: str) -> int | None:
    """The short side in pixels: ``720p`` → 720, ``1280x720`` → 720."""
    match = _LINES.match(value)
    if match:
        return int(match[1])
    size = size_of(value)
    return min(size) if size else None


def nearest_aspect(ratio: float, allowed: Sequence[str]) -> str | None:
    scored = [(abs(r - ratio), a) for a in allowed if (r := ratio_of(a)) is not None]
    return min(scored)[1] if scored else None


def nearest_resolution(asked: str, allowed: Sequence[str], ratio: float | None) -> str | None:
    """The allowed resolution closest to `asked`: first by aspect ratio (for sizes), then by short side."""
    lines = _lines_of(asked)
    if lines is None:
        return None
    scored = []
    for option in allowed:
        option_lines = _lines_of(option)
        if option_lines is None:
            continue
        option_ratio = ratio_of(option)
        shape = abs(option_ratio - ratio) if ratio is not None and option_ratio is not None else 0.0
        scored.append((round(shape, 3), abs(option_lines - lines), option))
    return min(scored)[2] if scored else None


def fit(spec: Mapping[str, Any], caps: VideoCapabilities) -> Fitted:
    """`spec` (the job's request: duration_s, aspect_ratio, resolution) fitted to `caps`."""
    adjusted: dict[str, tuple[Any, Any]] = {}
    dropped: list[str] = []

    duration = spec.get("duration_s")
    if isinstance(duration, int) and duration not in caps.durations:
        if caps.durations:
            asked = duration
            sent = min(caps.durations, key=lambda d: (abs(d - asked), d))
            adjusted["duration_s"] = (duration, sent)
            duration = sent
        else:
            dropped.append("duration_s")
            duration = None

    resolution = spec.get("resolution")
    aspect = spec.get("aspect_ratio")
    # A size such as OpenAI's 720x1280 says the aspect too, when none was asked for.
    ratio = ratio_of(aspect) if isinstance(aspect, str) else None
    if ratio is None and isinstance(resolution, str) and size_of(resolution):
        ratio = ratio_of(resolution)
    if isinstance(aspect, str) and aspect not in caps.aspect_ratios:
        sent_aspect = nearest_aspect(ratio, caps.aspect_ratios) if ratio is not None else None
        if sent_aspect is None:
            dropped.append("aspect_ratio")
        else:
            adjusted["aspect_ratio"] = (aspect, sent_aspect)
        aspect = sent_aspect
    elif aspect is None and ratio is not None and caps.aspect_ratios:
        aspect = nearest_aspect(ratio, caps.aspect_ratios)  # implied by the size: no note needed
    if isinstance(resolution, str) and resolution not in caps.resolutions:
        sent_resolution = nearest_resolution(resolution, caps.resolutions, ratio)
        if sent_resolution is None:
            dropped.append("resolution")
        else:
            adjusted["resolution"] = (resolution, sent_resolution)
        resolution = sent_resolution

    for name, supported in (
        ("seed", caps.seed),
        ("start_image", caps.image_to_video),
        ("end_image", caps.end_frame),
    ):
        if spec.get(name) is not None and not supported:
            dropped.append(name)
    camera = spec.get("camera")
    if isinstance(camera, Mapping) and camera.get("move") not in caps.camera_moves:
        dropped.append("camera")
    return Fitted(
        duration_s=duration if isinstance(duration, int) else None,
        aspect_ratio=aspect if isinstance(aspect, str) else None,
        resolution=resolution if isinstance(resolution, str) else None,
        adjusted=adjusted,
        dropped=tuple(dropped),
    )
