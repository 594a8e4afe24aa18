"""Real image bytes for the fakes and tests, made with Pillow (PNG, JPEG, WebP, GIF)."""

from __future__ import annotations

import base64
import io

from PIL import Image


def make_image(
    width: int, height: int, fmt: str = "PNG", color: tuple[int, int, int] = (200, 80, 40)
) -> bytes:
    """A `width` x `height` image of one colour, encoded as `fmt` (any format Pillow writes)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt.upper())
    return buffer.getvalue()


def make_b64(width: int, height: int, fmt: str = "PNG", color: tuple[int, int, int] = (200, 80, 40)) -> str:
    """`make_image` as standard base64 text."""
    return base64.b64encode(make_image(width, height, fmt, color)).decode("ascii")
