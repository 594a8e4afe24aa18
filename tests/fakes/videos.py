"""Real MP4 bytes for the video fakes and tests, encoded with PyAV (H.264, a few small frames)."""

from __future__ import annotations

import io

import av
from PIL import Image


def make_mp4(
    width: int = 64,
    height: int = 48,
    *,
    seconds: float = 1.0,
    fps: int = 8,
    color: tuple[int, int, int] = (40, 120, 200),
) -> bytes:
    """An H.264 MP4 of `seconds` at `fps`, each frame a slightly different shade of `color` (so the
    frames differ and the first one can be told apart as the poster)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for index in range(max(1, round(seconds * fps))):
            r, g, b = color
            shade = (min(255, r + index * 3), g, max(0, b - index * 3))
            frame = av.VideoFrame.from_image(Image.new("RGB", (width, height), shade))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
