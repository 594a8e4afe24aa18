"""Video files: what they are (PyAV reads the container: size, duration, frame rate) and their poster
frame (the first frame, as WebP). Synchronous functions over a file path, for a worker thread."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from mmstudio.errors import UnsupportedMediaType

FORMAT_MIME = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm", "matroska": "video/webm"}


@dataclass(frozen=True, slots=True)
class VideoInfo:
    mime: str
    width: int
    height: int
    duration_s: float | None
    fps: float | None


def looks_like_video(data: bytes) -> bool:
    """The first bytes of an MP4 or MOV (an `ftyp` box) or a WebM (the EBML magic)."""
    return data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3"


def _mime(format_name: str) -> str | None:
    """FFmpeg names the demuxer of MP4 and MOV alike ("mov,mp4,m4a,..."): MP4 is what vendors send."""
    names = format_name.split(",")
    for name in ("mp4", "webm", "matroska", "mov"):
        if name in names:
            return FORMAT_MIME[name]
    return None


def probe(path: Path, what: str = "the video") -> VideoInfo:
    """The container's type, the first video stream's size and frame rate, and the duration; anything
    PyAV cannot open, or a file without a video stream, is refused."""
    import av

    try:
        with av.open(str(path)) as container:
            mime = _mime(container.format.name)
            streams = container.streams.video
            if mime is None or not streams:
                raise UnsupportedMediaType(f"{what} is not an MP4, MOV or WebM video", field="file")
            stream = streams[0]
            rate = stream.average_rate or stream.guessed_rate
            duration = None
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            return VideoInfo(
                mime=mime,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                duration_s=round(float(duration), 3) if duration is not None else None,
                fps=round(float(rate), 3) if rate else None,
            )
    except av.FFmpegError as exc:
        raise UnsupportedMediaType(f"{what} is not a readable video ({exc})", field="file") from None


def poster(path: Path, side: int | None = None) -> bytes:
    """The first frame as WebP (scaled so its longer side is `side`, when given)."""
    import av

    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                image = frame.to_image()  # type: ignore[no-untyped-call]
                break
            else:
                raise UnsupportedMediaType("the video has no frames", field="file")
    except av.FFmpegError as exc:
        raise UnsupportedMediaType(f"the video cannot be decoded ({exc})", field="file") from None
    if side is not None:
        image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=85)
    return out.getvalue()
