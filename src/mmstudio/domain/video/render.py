"""Rendering a Video Studio timeline into one MP4, and a clip's last frame as an image.

Each cut (a trimmed window of a clip) is brought to the export's frame rate and size (scaled to fit,
centred on black), and encoded as H.264 in yuv420p without an audio track, the MP4 every browser and
editor plays. A cut with `interpolate` gets the frames between two of its own blended from both, by how
near each is (a 16 fps clip in a 24 fps film moves smoothly); without it, frames are repeated or dropped.
Synchronous functions over file paths, for a worker thread; the caller passes `progress` and `cancelled`
callbacks to follow and stop a long export.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mmstudio.errors import InvalidRequest, StudioError, UnsupportedMediaType

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

T = TypeVar("T")

# A source frame at exactly start + k/fps must count as "at or before" output frame k despite float sums.
_SLACK_S = 1e-6
# Output frames between two calls of `cancelled()`: often enough to stop within a fraction of a second.
_CHECK_EVERY = 8
# The encoder's quality and speed: visually clean at a size a browser streams, fast enough on a CPU.
_X264_OPTIONS = {"crf": "20", "preset": "veryfast"}
# The index at the front of the file, so a browser starts playing before the whole export is loaded.
_MP4_OPTIONS = {"movflags": "+faststart"}


@dataclass(frozen=True, slots=True)
class Cut:
    """One clip of the timeline: the file and the window of it that is shown. `loop` is the Studio's
    preview setting and has no meaning for an export; `interpolate` blends frames where the export's
    rate falls between two of the clip's."""

    path: Path
    start_s: float = 0.0
    end_s: float | None = None
    loop: bool = False
    interpolate: bool = False


@dataclass(frozen=True, slots=True)
class RenderSpec:
    width: int
    height: int
    fps: int


@dataclass(frozen=True, slots=True)
class RenderResult:
    duration_s: float
    frames: int


class RenderCancelled(StudioError):
    """`cancelled()` said stop; nothing of the export is left on disk."""

    def __init__(self, message: str = "the export was cancelled") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class _Window:
    """A cut checked against its file: the span it shows and how many output frames that makes."""

    index: int
    path: Path
    start_s: float
    end_s: float
    frames: int
    interpolate: bool = False


def render(
    cuts: Sequence[Cut],
    spec: RenderSpec,
    out: Path,
    *,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RenderResult:
    """Encode `cuts` one after the other into the MP4 `out`. Every cut is checked before anything is
    written; the file is written beside `out` and moved into place only when complete, so an error or a
    cancellation never leaves a partial export (nor replaces an earlier one)."""
    _check_spec(spec)
    if not cuts:
        raise InvalidRequest("the timeline has no clips", field="clips")
    windows = [_window(index, cut, spec.fps) for index, cut in enumerate(cuts)]
    total = sum(window.frames for window in windows)
    part = out.with_name(f".{out.name}.part")
    try:
        _encode(windows, spec, part, _Progress(total, progress), cancelled or _never)
        part.replace(out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(100.0)
    return RenderResult(duration_s=round(total / spec.fps, 3), frames=total)


def last_frame(path: Path) -> bytes:
    """The clip's last frame as PNG (lossless: it is the start image of the next generation). The
    whole stream is decoded: a container's duration or index is not trusted to find the true last one."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnsupportedMediaType("the file has no video stream", field="file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            last = None
            for frame in container.decode(stream):
                last = frame
            if last is None:
                raise UnsupportedMediaType("the video has no frames", field="file")
            image = last.to_image()  # type: ignore[no-untyped-call]
    except av.FFmpegError as exc:
        raise UnsupportedMediaType(f"the video cannot be decoded ({exc})", field="file") from None
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _never() -> bool:
    return False


def _check_spec(spec: RenderSpec) -> None:
    """H.264 in yuv420p keeps colour at half resolution, so both sides must be even."""
    for name, value in (("width", spec.width), ("height", spec.height)):
        if value < 2 or value % 2:
            raise InvalidRequest(
                f"the {name} {value} must be an even number of pixels (2 or more)", field=name
            )
    if spec.fps < 1:
        raise InvalidRequest(f"the frame rate {spec.fps} must be at least 1 fps", field="fps")


def _seconds(value: float) -> str:
    return f"{round(float(value), 3)}"


def _window(index: int, cut: Cut, fps: int) -> _Window:
    """Check `cut` against its clip's duration: an out point past the end is cut back to the end; an
    empty window, or one outside the clip, is refused with the range that is allowed."""
    duration = _duration(index, cut.path)
    where, end = f"clip {index + 1}", _seconds(duration)  # counted as on the timeline, from 1
    if not cut.start_s >= 0:  # also refuses NaN
        raise InvalidRequest(
            f"{where}: the in point {_seconds(cut.start_s)} s is before its start (0.0 s to {end} s allowed)",
            field=f"clips[{index}].start_s",
        )
    if cut.start_s >= duration:
        raise InvalidRequest(
            f"{where}: the in point {_seconds(cut.start_s)} s is past its end ({end} s)",
            field=f"clips[{index}].start_s",
        )
    if cut.end_s is not None and not cut.end_s > cut.start_s:
        raise InvalidRequest(
            f"{where}: the out point {_seconds(cut.end_s)} s is not after the in point "
            f"{_seconds(cut.start_s)} s (up to {end} s allowed)",
            field=f"clips[{index}].end_s",
        )
    end_s = duration if cut.end_s is None else min(cut.end_s, duration)
    frames = round((end_s - cut.start_s) * fps)
    if frames < 1:
        raise InvalidRequest(
            f"{where}: the window {_seconds(cut.start_s)}-{_seconds(end_s)} s is shorter than one frame "
            f"at {fps} fps",
            field=f"clips[{index}]",
        )
    return _Window(
        index=index,
        path=cut.path,
        start_s=cut.start_s,
        end_s=end_s,
        frames=frames,
        interpolate=cut.interpolate,
    )


def _unreadable(index: int, what: str) -> UnsupportedMediaType:
    """A clip PyAV cannot open or decode, or one without video, named by its index."""
    return UnsupportedMediaType(f"clip {index + 1} {what}", field=f"clips[{index}]")


def _open_clip(index: int, path: Path) -> tuple[InputContainer, VideoStream]:
    """The clip's container and first video stream; anything PyAV cannot open, or a file without video,
    is refused naming the clip."""
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise _unreadable(index, f"is not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise _unreadable(index, "has no video stream")
    return container, container.streams.video[0]


def _duration(index: int, path: Path) -> float:
    """The video stream's duration in seconds: from the stream, else the container, else (a WebM
    recorded by a browser says neither) from the end of its last packet."""
    import av

    container, stream = _open_clip(index, path)
    with container:
        try:
            if stream.duration and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return float(container.duration / av.time_base)
            return _scanned_duration(container, stream)
        except av.FFmpegError as exc:
            raise _unreadable(index, f"cannot be read ({exc})") from None


def _scanned_duration(container: InputContainer, stream: VideoStream) -> float:
    """Demux (without decoding) to the last packet: the end of the latest one, from the stream's start."""
    if stream.time_base is None:
        return 0.0
    first, end = stream.start_time or 0, 0
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = max(end, packet.pts + (packet.duration or 0))
    return float(max(0, end - first) * stream.time_base)


def _pick(frames: Iterator[tuple[float, T]], start_s: float, fps: int, count: int) -> Iterator[T]:
    """Frame-rate normalisation: output frame k (of `count`) is the latest source frame whose time is at or
    before ``start_s + k / fps``. So a slower clip repeats frames and a faster one drops some. Before the
    first source frame (an imprecise seek) that first frame stands in; past the last one, the last."""
    current: T | None = None
    k = 0
    for time, frame in frames:
        while k < count and time > start_s + k / fps + _SLACK_S:
            yield frame if current is None else current
            k += 1
        if k >= count:
            return
        current = frame
    if current is None:
        return
    for _ in range(k, count):
        yield current


# A blend this close to one of its two frames is that frame (no visible difference, no work).
_BLEND_EDGE = 0.02


def _pick_between(
    frames: Iterator[tuple[float, T]], start_s: float, fps: int, count: int
) -> Iterator[tuple[T, T, float]]:
    """Frame-rate conversion by blending: for output frame k (of `count`) at ``start_s + k / fps``, the
    source frames just before and just after it and the weight of the later one (0 at the earlier
    frame's time, towards 1 near the later one's). Before the first source frame and past the last one,
    that frame alone (weight 0)."""
    previous: tuple[float, T] | None = None
    k = 0
    for time, frame in frames:
        while k < count and time > start_s + k / fps + _SLACK_S:
            if previous is None:
                yield frame, frame, 0.0
            else:
                earlier, before = previous
                yield before, frame, (start_s + k / fps - earlier) / (time - earlier)
            k += 1
        if k >= count:
            return
        previous = (time, frame)
    if previous is None:
        return
    for _ in range(k, count):
        yield previous[1], previous[1], 0.0


def _source_frames(
    container: InputContainer, stream: VideoStream, index: int, start_s: float
) -> Generator[tuple[float, VideoFrame], None, None]:
    """The clip's decoded frames from the last key frame at or before `start_s`, each with its time in
    seconds from the stream's start. A decoding error is the clip's fault and says so."""
    import av

    first = stream.start_time or 0
    base = stream.time_base or Fraction(1, 90_000)
    try:
        if start_s > 0:
            with contextlib.suppress(av.FFmpegError):  # not seekable: decode from the beginning instead
                container.seek(first + int(Fraction(start_s) / base), stream=stream, backward=True)
        time = 0.0
        for frame in container.decode(stream):
            if frame.pts is not None:
                time = float((frame.pts - first) * (frame.time_base or base))
            yield time, frame
    except av.FFmpegError as exc:
        raise _unreadable(index, f"cannot be decoded ({exc})") from None


class _Letterbox:
    """Brings frames of any size to the export's: scaled (keeping the display aspect) to fit inside it and
    centred on black. A frame that fills it is only scaled; the others are pasted onto a black canvas."""

    def __init__(self, width: int, height: int, sample_aspect: Fraction | None) -> None:
        self.width, self.height = width, height
        self.sample_aspect = float(sample_aspect) if sample_aspect else 1.0

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The largest size of the source's display aspect that fits (both sides at least 1 pixel)."""
        shown = width * self.sample_aspect
        scale = min(self.width / shown, self.height / height)
        return (
            max(1, min(self.width, round(shown * scale))),
            max(1, min(self.height, round(height * scale))),
        )

    def place(self, frame: VideoFrame) -> VideoFrame:
        import av
        from PIL import Image

        width, height = self.fit(frame.width, frame.height)
        if (width, height) == (self.width, self.height):
            return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
        scaled = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC")
        canvas = Image.new("RGB", (self.width, self.height))
        canvas.paste(
            scaled.to_image(),  # type: ignore[no-untyped-call]
            ((self.width - width) // 2, (self.height - height) // 2),
        )
        placed: VideoFrame = av.VideoFrame.from_image(canvas)  # type: ignore[no-untyped-call]
        return placed.reformat(format="yuv420p")


def _cut_frames(window: _Window, spec: RenderSpec) -> Generator[VideoFrame, None, None]:
    """The `window.frames` output frames of one cut, at the export's size and rate. A source frame shown
    several times is converted once."""
    container, stream = _open_clip(window.index, window.path)
    with container:
        stream.thread_type = "AUTO"
        letterbox = _Letterbox(spec.width, spec.height, stream.sample_aspect_ratio)
        placed: dict[int, tuple[VideoFrame, VideoFrame]] = {}  # the last two source frames, placed once

        def place(frame: VideoFrame) -> VideoFrame:
            if id(frame) not in placed:
                if len(placed) >= 2:
                    placed.pop(next(iter(placed)))
                placed[id(frame)] = (frame, letterbox.place(frame))
            return placed[id(frame)][1]

        count = 0
        with contextlib.closing(_source_frames(container, stream, window.index, window.start_s)) as source:
            if window.interpolate:
                for before, after, weight in _pick_between(source, window.start_s, spec.fps, window.frames):
                    count += 1
                    if weight <= _BLEND_EDGE or before is after:
                        yield place(before)
                    elif weight >= 1 - _BLEND_EDGE:
                        yield place(after)
                    else:
                        yield _blend(place(before), place(after), weight)
            else:
                for frame in _pick(source, window.start_s, spec.fps, window.frames):
                    count += 1
                    yield place(frame)
        if count == 0:
            raise _unreadable(window.index, "has no frames")


def _blend(before: VideoFrame, after: VideoFrame, weight: float) -> VideoFrame:
    """`before` and `after` (placed frames of the export's size) mixed, `weight` of `after`."""
    import av
    from PIL import Image

    mixed = Image.blend(
        before.to_image(),  # type: ignore[no-untyped-call]
        after.to_image(),  # type: ignore[no-untyped-call]
        weight,
    )
    frame: VideoFrame = av.VideoFrame.from_image(mixed)  # type: ignore[no-untyped-call]
    return frame.reformat(format="yuv420p")


class _Progress:
    """Percent of the output frames written, each value larger than the last: at most once per percent
    point, and at the end of every cut. 100 is left for `render` to say when the file is complete."""

    def __init__(self, total: int, callback: Callable[[float], None] | None) -> None:
        self.total, self.callback, self.last = total, callback, -1.0

    def written(self, frames: int, *, cut_done: bool = False) -> None:
        if self.callback is None or frames >= self.total:
            return
        percent = 100 * frames / self.total
        if percent > self.last and (cut_done or percent - self.last >= 1):
            self.last = percent
            self.callback(percent)


def _encode(
    windows: Sequence[_Window],
    spec: RenderSpec,
    path: Path,
    progress: _Progress,
    cancelled: Callable[[], bool],
) -> None:
    """Write every window's frames into one H.264 stream (the only stream) of the MP4 at `path`."""
    import av

    with av.open(str(path), mode="w", format="mp4", options=_MP4_OPTIONS) as output:
        stream = output.add_stream("libx264", rate=spec.fps, options=_X264_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        written, tick = 0, Fraction(1, spec.fps)
        for window in windows:
            if cancelled():
                raise RenderCancelled()
            with contextlib.closing(_cut_frames(window, spec)) as frames:
                for frame in frames:
                    if written % _CHECK_EVERY == 0 and cancelled():
                        raise RenderCancelled()
                    frame.pts, frame.time_base = written, tick  # a source's own time base is rescaled
                    output.mux(stream.encode(frame))
                    written += 1
                    progress.written(written)
            progress.written(written, cut_done=True)
        if cancelled():
            raise RenderCancelled()
        output.mux(stream.encode())
