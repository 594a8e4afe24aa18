"""Map a requested image size or aspect ratio to what a model can do: never send a size raw."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mmstudio.errors import InvalidRequest
from mmstudio.providers.media.base import ImageCapabilities

# What a size may look like (its bounds are checked after): `auto` or nothing, WIDTHxHEIGHT (the
# multiplication sign too) or W:H, with spaces around. SIZE_PATTERN is all three, as the API declares it.
_AUTO_TEXT = r" *(?:[Aa][Uu][Tt][Oo])? *"
_SIZE_TEXT = r" *([0-9]{2,5}) *[xX×] *([0-9]{2,5}) *"  # noqa: RUF001 (the multiplication sign is accepted too)
_RATIO_TEXT = r" *([0-9]{1,3}) *: *([0-9]{1,3}) *"
SIZE_PATTERN = f"^(?:{_AUTO_TEXT}|{_SIZE_TEXT}|{_RATIO_TEXT})$"
_AUTO, _SIZE, _RATIO = (re.compile(rf"{p}\Z") for p in (_AUTO_TEXT, _SIZE_TEXT, _RATIO_TEXT))
MIN_SIDE, MAX_SIDE, STEP = 64, 2048, 8
FREE_FORM_LONG_SIDE = 1024  # a ratio asked of an engine that takes any size


@dataclass(frozen=True, slots=True)
class Shape:
    """A request's shape: exact pixels (`width`, `height`) or only a ratio."""

    width: int | None
    height: int | None
    ratio: float

    @property
    def text(self) -> str:
        if self.width and self.height:
            return f"{self.width}x{self.height}"
        return ratio_text(self.ratio)


@dataclass(frozen=True, slots=True)
class Mapped:
    size: str | None  # WxH sent upstream
    aspect_ratio: str | None  # W:H sent upstream
    note: str | None  # what changed, for the response ("1000x1000 is not offered: used 1024x1024")

    @property
    def used(self) -> str | None:
        return self.size or self.aspect_ratio


def parse_shape(raw: str | None) -> Shape | None:
    """`"1024x768"`, `"16:9"`, or None/"auto" (the model's default); anything else is a 400."""
    if raw is None or _AUTO.match(raw):
        return None
    if match := _SIZE.match(raw):
        width, height = int(match[1]), int(match[2])
        if not (MIN_SIDE <= width <= 8192 and MIN_SIDE <= height <= 8192):
            raise InvalidRequest(f"size {raw!r}: each side must be between {MIN_SIDE} and 8192", field="size")
        return Shape(width, height, width / height)
    if match := _RATIO.match(raw):
        w, h = int(match[1]), int(match[2])
        if not w or not h or max(w / h, h / w) > 4:
            raise InvalidRequest(f"aspect ratio {raw!r} must be between 1:4 and 4:1", field="size")
        return Shape(None, None, w / h)
    raise InvalidRequest(
        f"size {raw!r} is not a size or an aspect ratio; use WIDTHxHEIGHT (e.g. 1024x1024), "
        "W:H (e.g. 16:9) or auto",
        field="size",
    )


def map_shape(shape: Shape | None, caps: ImageCapabilities) -> Mapped:
    """The nearest thing `caps` allows: one of its sizes (nearest ratio, then nearest area), one of its
    aspect ratios, or (engines that take any size) the size snapped to multiples of 8."""
    if shape is None:
        return Mapped(None, None, None)
    if caps.sizes:
        best = min(caps.sizes, key=lambda s: _distance(shape, *_dims(s)))
        return Mapped(best, None, _note(shape, best))
    if caps.aspect_ratios:
        best = min(caps.aspect_ratios, key=lambda r: abs(math.log(_ratio(r) / shape.ratio)))
        exact = shape.width is None and abs(_ratio(best) - shape.ratio) < 1e-6
        return Mapped(None, best, None if exact else _note(shape, best))
    width, height = shape.width, shape.height
    if width is None or height is None:
        if shape.ratio >= 1:
            width, height = FREE_FORM_LONG_SIDE, round(FREE_FORM_LONG_SIDE / shape.ratio)
        else:
            width, height = round(FREE_FORM_LONG_SIDE * shape.ratio), FREE_FORM_LONG_SIDE
    snapped = f"{_snap(width)}x{_snap(height)}"
    changed = shape.width is None or snapped != shape.text
    return Mapped(snapped, None, _note(shape, snapped) if changed and shape.width is not None else None)


def ratio_text(ratio: float) -> str:
    for h in range(1, 33):
        w = ratio * h
        if abs(w - round(w)) < 0.02:
            return f"{round(w)}:{h}"
    return f"{ratio:.3f}:1"


def _note(shape: Shape, used: str) -> str | None:
    if used == shape.text:
        return None
    return f"{shape.text} is not offered by this model: used {used}, the nearest it supports"


def _dims(size: str) -> tuple[int, int]:
    w, _, h = size.partition("x")
    return int(w), int(h)


def _ratio(text: str) -> float:
    w, _, h = text.partition(":")
    return int(w) / int(h)


def _distance(shape: Shape, width: int, height: int) -> tuple[float, float]:
    ratio_gap = abs(math.log((width / height) / shape.ratio))
    area_gap = (
        abs(math.log((width * height) / (shape.width * shape.height)))
        if shape.width and shape.height
        else 0.0
    )
    return (round(ratio_gap, 6), area_gap)


def _snap(side: int) -> int:
    return max(MIN_SIDE, min(MAX_SIDE, round(side / STEP) * STEP))
